"""The feature registry: one submodule per feature, imported only when that feature is asked for."""

import importlib
import subprocess
import sys

import pytest


def _modules_loaded_by(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\n"
                          "print(' '.join(sorted(m for m in sys.modules if '.' not in m)))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_the_signals_feature_does_not_import_pyriemann():
    # the signals job runs once per subject; pyriemann (and the torch it imports) cost seconds
    loaded = _modules_loaded_by("from brainmill.features import feature_function\n"
                                "feature_function('signals')")
    assert "pyriemann" not in loaded and "torch" not in loaded
    assert importlib.import_module("brainmill.features").feature_function("covariance")


def test_an_unknown_feature_name_lists_the_valid_ones():
    from brainmill.features import feature_function

    with pytest.raises(KeyError, match="valid features: bandpower, covariance, signals"):
        feature_function("covariances")
