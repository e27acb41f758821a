"""Feature extractors: per-epoch features written to ``features/{name}.npz``."""

from .covariance import compute_covariances

#: feature name → function ``(epochs, params) -> FeatureSet``.
FEATURES = {"covariance": compute_covariances}

__all__ = ["FEATURES", "compute_covariances"]
