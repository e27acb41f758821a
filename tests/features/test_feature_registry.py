"""The feature registry: one submodule per feature, imported only when that feature is asked for."""

import pytest

from brainmill.features import feature_function
from brainmill.features.covariance import compute_covariances


def test_the_signals_feature_does_not_import_pyriemann(modules_loaded_by):
    # the signals job runs once per subject; pyriemann (and the torch it imports) cost seconds
    loaded = modules_loaded_by("from brainmill.features import feature_function\n"
                               "feature_function('signals')")
    assert "pyriemann" not in loaded and "torch" not in loaded
    assert feature_function("covariance") is compute_covariances


def test_an_unknown_feature_name_lists_the_valid_ones():
    with pytest.raises(KeyError, match="valid features: bandpower, covariance, signals"):
        feature_function("covariances")
