"""Feature extractors: per-epoch features written to ``features/{name}.npz``."""

from .bandpower import compute_bandpower
from .covariance import AugmentedCovariance, compute_covariances, epoch_signals

#: feature name → function ``(epochs, params) -> FeatureSet``.
FEATURES = {"covariance": compute_covariances, "signals": epoch_signals,
            "bandpower": compute_bandpower}

__all__ = ["FEATURES", "AugmentedCovariance", "compute_bandpower", "compute_covariances",
           "epoch_signals"]
