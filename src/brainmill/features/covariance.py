"""Per-epoch spatial covariance matrices (pyriemann estimators)."""

from __future__ import annotations

import mne
import numpy as np
import pyriemann
from pyriemann.estimation import Covariances
from sklearn.base import BaseEstimator, TransformerMixin

from ..config import CovarianceFeature
from ..io import FeatureSet
from .augmented import augmented_covariances, check_embedding, check_signals
from .epochs import _feature_meta, epochs_arrays


def compute_covariances(
    epochs: mne.BaseEpochs, params: CovarianceFeature, classes: list[str]
) -> FeatureSet:
    """Estimate one covariance matrix per epoch.

    Each matrix depends on its own epoch only (shrinkage estimators such as OAS choose their
    shrinkage per matrix), so nothing here can leak across cross-validation folds.

    Parameters
    ----------
    epochs : mne.BaseEpochs
        Preprocessed epochs with brainmill metadata.
    params : CovarianceFeature
        ``estimator``: a pyriemann covariance estimator name (``oas``, ``lwf``, ``scm`` …).
    classes : list of str
        Class names in configured order.

    Returns
    -------
    FeatureSet
        ``X`` of shape (n_epochs, n_channels, n_channels).
    """
    X, y, session, run = epochs_arrays(epochs, classes)
    covs = Covariances(estimator=params.estimator).fit_transform(X.astype(np.float64))
    meta = _feature_meta("covariance", params, epochs, pyriemann=pyriemann.__version__)
    return FeatureSet(X=covs, y=y, classes=classes, session=session, run=run, meta=meta)


class AugmentedCovariance(TransformerMixin, BaseEstimator):
    """Augmented covariance matrices (delay embedding + covariance), a scikit-learn transformer.

    Carrara & Papadopoulo, arXiv:2302.04508. The embedding trims ``order·lag`` samples exactly
    as MOABB's ``AugmentedDataset`` (order 1 = plain covariance over all samples); unlike
    pyriemann's ``TimeDelayCovariances`` nothing wraps round. Computed by the fast exact path
    of :mod:`brainmill.features.augmented`. Nothing is learnt: ``fit`` only validates.

    Parameters
    ----------
    order : int
        Embedding dimension, counting the undelayed copy.
    lag : int
        Delay between copies, in samples.
    estimator : {"cov", "oas", "lwf"}
        ``cov``: unbiased empirical covariance (the paper's); ``oas``/``lwf``: shrinkage as
        pyriemann's ``Covariances("oas")``/``("lwf")``, for short or rank-deficient epochs.

    Examples
    --------
    >>> acm = AugmentedCovariance(order=8, lag=4)
    >>> covs = acm.fit_transform(X)  # X: (n_epochs, n_channels, n_times)
    >>> covs.shape  # (n_epochs, n_channels * 8, n_channels * 8)
    """

    def __init__(self, order: int = 1, lag: int = 1, estimator: str = "cov") -> None:
        self.order = order
        self.lag = lag
        self.estimator = estimator

    def _validate(self, X: np.ndarray) -> np.ndarray:
        X = check_signals(X)
        check_embedding(X.shape[-1], X.shape[1], self.order, self.lag, self.estimator)
        return X

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> AugmentedCovariance:
        """Validate ``X`` (n_epochs, n_channels, n_times) and the embedding; nothing is learnt."""
        X = self._validate(X)
        self.n_channels_ = X.shape[1]
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """ACMs of ``X``: (n_epochs, n_channels·order, n_channels·order)."""
        if not hasattr(self, "n_channels_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("AugmentedCovariance is not fitted; call fit first")
        shape = np.shape(X)
        if len(shape) == 3 and shape[1] != self.n_channels_:
            raise ValueError(
                f"X has {shape[1]} channels but AugmentedCovariance was fitted with "
                f"{self.n_channels_}"
            )
        # validates X (3-D, finite), the estimator and the embedding
        return augmented_covariances(X, self.order, self.lag, self.estimator)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.requires_fit = True
        return tags
