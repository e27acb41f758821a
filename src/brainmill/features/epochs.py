"""Epoch arrays, feature metadata and the ``signals`` feature: what every feature shares.

No pyriemann here, so a job that only needs the epochs' time series (the ``signals`` feature,
the token and diffusion stages) does not pay for importing it.
"""

from __future__ import annotations

import mne
import numpy as np

from ..config import CovarianceFeature, SignalsFeature
from ..io import FeatureSet
from .augmented import check_signals


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
