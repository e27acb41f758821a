"""Feature extractors: per-epoch features written to ``features/{name}.npz``."""

from .covariance import AugmentedCovariance, compute_covariances, epoch_signals

#: feature name → function ``(epochs, params) -> FeatureSet``.
FEATURES = {"covariance": compute_covariances, "signals": epoch_signals}

__all__ = ["FEATURES", "AugmentedCovariance", "compute_covariances", "epoch_signals"]
