"""Reading a subject's preprocessed epochs for the dataset-level neural models.

The tokenizer and the diffusion backbone both resample every subject's epochs to their own
rate and need a minimum length; :func:`read_resampled_epochs` does both with one error shape.
"""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np

from .errors import DataError
from .features.timefreq import resample_signals


def read_resampled_epochs(path: str | Path, subject: str, sfreq: float, min_samples: int,
                          needed: str, hint: str) -> tuple[mne.BaseEpochs, np.ndarray]:
    """A subject's data channels and their signals resampled to ``sfreq``.

    Parameters
    ----------
    path : str or Path
        The subject's ``epochs-epo.fif``.
    subject : str
        Named in errors.
    sfreq : float
        Target rate (Hz).
    min_samples : int
        Fewest samples per epoch at ``sfreq`` the model accepts.
    needed, hint : str
        What ``min_samples`` is ("one STFT window (n_fft=200)") and the config change that
        fixes a too-short epoch, for the error.

    Returns
    -------
    epochs : mne.Epochs
        Restricted to data channels, so ``epochs.ch_names`` names the rows of ``X``.
    X : ndarray, shape (n_epochs, n_channels, n_times at sfreq), float32

    Raises
    ------
    DataError
        No epochs left, or epochs shorter than ``min_samples`` at ``sfreq``.
    """
    epochs = mne.read_epochs(path, preload=True, verbose="error")
    if len(epochs) == 0:
        raise DataError("no epochs left after preprocessing", file=str(path), subject=subject)
    epochs.pick("data")
    X = resample_signals(epochs.get_data(), float(epochs.info["sfreq"]), sfreq)
    if X.shape[-1] < min_samples:
        raise DataError(
            f"epochs of {len(epochs.times)} samples give {X.shape[-1]} samples at {sfreq:g} Hz, "
            f"shorter than {needed}", file=str(path), subject=subject,
            expected=f"epochs of at least {min_samples / sfreq:g} s", hint=hint)
    return epochs, X
