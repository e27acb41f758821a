"""Per-epoch spatial covariance matrices (pyriemann estimators)."""

from __future__ import annotations

import mne
import numpy as np
import pyriemann
from pyriemann.estimation import Covariances
from sklearn.base import BaseEstimator, TransformerMixin

from ..config import CovarianceFeature, SignalsFeature
from ..io import FeatureSet
from .augmented import ESTIMATORS, augmented_covariances, check_embedding, check_signals


def epochs_arrays(
    epochs: mne.BaseEpochs, classes: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Data, class indices, sessions and runs of epochs carrying brainmill metadata.

    Parameters
    ----------
    epochs : mne.BaseEpochs
        Epochs whose metadata has ``label``, ``session`` and ``run`` columns.
    classes : list of str
        Class names; ``y`` indexes into this list.

    Returns
    -------
    X : ndarray, shape (n_epochs, n_channels, n_times)
    y : ndarray of int, shape (n_epochs,)
    session, run : ndarray of str, shape (n_epochs,)
    """
    meta = epochs.metadata
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[label] for label in meta["label"]], dtype=np.int64)
    X = epochs.get_data(picks="data", copy=False)
    return X, y, meta["session"].to_numpy(str), meta["run"].to_numpy(str)


def _feature_meta(
    feature: str, params: CovarianceFeature | SignalsFeature, epochs: mne.BaseEpochs,
    **versions: str,
) -> dict:
    """Metadata stored with every feature file: name, parameters, channels, timing, versions."""
    return {
        "feature": feature,
        "params": params.model_dump(),
        "ch_names": list(epochs.ch_names),
        "sfreq": float(epochs.info["sfreq"]),
        "tmin": float(epochs.tmin),
        "tmax": float(epochs.tmax),
        "versions": {**versions, "mne": mne.__version__},
    }


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


def epoch_signals(
    epochs: mne.BaseEpochs, params: SignalsFeature, classes: list[str]
) -> FeatureSet:
    """The preprocessed epoch time series, for decoders that build their features per fold.

    ACM decoders choose the delay embedding on each training fold, so their feature file holds
    the signals themselves (float64, as the exact ACM path needs).

    Returns
    -------
    FeatureSet
        ``X`` of shape (n_epochs, n_channels, n_times).
    """
    X, y, session, run = epochs_arrays(epochs, classes)
    X = check_signals(X, what=f"epochs ({len(X)} epochs)")
    meta = _feature_meta("signals", params, epochs)
    return FeatureSet(X=X, y=y, classes=classes, session=session, run=run, meta=meta)


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
        if self.estimator not in ESTIMATORS:
            raise ValueError(
                f"unknown estimator '{self.estimator}'; valid: {', '.join(ESTIMATORS)}"
            )
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
