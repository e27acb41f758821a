"""Per-epoch spatial covariance matrices (pyriemann estimators)."""

from __future__ import annotations

import mne
import numpy as np
import pyriemann
from pyriemann.estimation import Covariances

from ..config import CovarianceFeature
from ..io import FeatureSet


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
    meta = {
        "feature": "covariance",
        "params": params.model_dump(),
        "ch_names": list(epochs.ch_names),
        "sfreq": float(epochs.info["sfreq"]),
        "tmin": float(epochs.tmin),
        "tmax": float(epochs.tmax),
        "versions": {"pyriemann": pyriemann.__version__, "mne": mne.__version__},
    }
    return FeatureSet(X=covs, y=y, classes=classes, session=session, run=run, meta=meta)
