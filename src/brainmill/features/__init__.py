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
    "epoch_signals": ".covariance",
}

__all__ = ["FEATURES", "AugmentedCovariance", "compute_bandpower", "compute_covariances",
           "epoch_signals"]


def __getattr__(name: str) -> Any:
    if name == "FEATURES":
        from .bandpower import compute_bandpower
        from .covariance import compute_covariances, epoch_signals

        return {"covariance": compute_covariances, "signals": epoch_signals,
                "bandpower": compute_bandpower}
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
