"""Feature extractors: per-epoch features written to ``features/{name}.npz``.

The names below are imported on first use (PEP 562), so a job that needs one submodule, e.g.
the fMRI ``connectivity``, does not pay for pyriemann and MNE.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "compute_bandpower": ".bandpower",
    "AugmentedCovariance": ".covariance",
    "compute_covariances": ".covariance",
    "epoch_signals": ".epochs",
}

# feature name -> its function (a key of _LAZY); each job imports only the one it computes
_FEATURE_FUNCTIONS = {
    "covariance": "compute_covariances",
    "signals": "epoch_signals",
    "bandpower": "compute_bandpower",
}

__all__ = ["FEATURES", "AugmentedCovariance", "compute_bandpower", "compute_covariances",
           "epoch_signals", "feature_function"]


def feature_function(name: str) -> Any:
    """The function computing feature ``name``, importing only its own submodule."""
    if name not in _FEATURE_FUNCTIONS:
        raise KeyError(f"unknown feature {name!r}; valid features: "
                       f"{', '.join(sorted(_FEATURE_FUNCTIONS))}")
    return __getattr__(_FEATURE_FUNCTIONS[name])


def __getattr__(name: str) -> Any:
    if name == "FEATURES":
        return {feature: feature_function(feature) for feature in _FEATURE_FUNCTIONS}
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
