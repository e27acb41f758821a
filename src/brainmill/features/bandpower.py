"""Per-epoch log band power of every channel (Welch spectrum).

For each epoch and channel the power spectral density is estimated with
:func:`mne.time_frequency.psd_array_welch` (Hamming window, segments of ``segment_s`` or the
whole epoch if shorter, ``overlap`` between segments, mean removed per segment), and the power
of each band ``[low, high)`` is the sum of the PSD over the frequency bins in the band times
the bin width (rectangle rule), in µV². The feature is ``log10`` of that power: band powers are
log-normal-ish and span decades, so the logarithm makes a linear classifier's job additive.
Shared edges count in the upper band only, so no bin is counted twice.

Default bands (the conventional clinical set): delta 0.5-4, theta 4-8, alpha 8-13, beta
13-30, gamma 30-45 Hz. Nothing is fitted across epochs, so nothing can leak across folds.
"""

from __future__ import annotations

import mne
import numpy as np

from ..config import BandpowerFeature
from ..errors import DataError
from ..io import FeatureSet
from .epochs import _feature_meta, epochs_arrays


def welch_lengths(n_times: int, sfreq: float, segment_s: float,
                  overlap: float) -> tuple[int, int]:
    """Segment length and overlap (samples) of the Welch estimate of an ``n_times`` epoch."""
    n_per_seg = int(min(round(segment_s * sfreq), n_times))
    return n_per_seg, int(round(overlap * n_per_seg))


def band_power(
    X: np.ndarray, sfreq: float, bands: dict[str, tuple[float, float]], segment_s: float = 2.0,
    overlap: float = 0.5,
) -> tuple[np.ndarray, dict]:
    """Absolute band power of every epoch, channel and band.

    Parameters
    ----------
    X : ndarray, shape (n_epochs, n_channels, n_times)
        Signals in V.
    sfreq : float
        Sampling frequency (Hz).
    bands : dict of str to (float, float)
        Band name → ``[low, high)`` edges (Hz).
    segment_s, overlap : float
        Welch segment length (s; the epoch length if shorter) and overlap fraction.

    Returns
    -------
    power : ndarray, shape (n_epochs, n_channels, n_bands)
        Band power in µV², bands in the order given.
    info : dict
        ``n_per_seg``, ``n_overlap``, ``freq_resolution_hz`` and ``bins`` (frequency bins
        summed per band).

    Raises
    ------
    DataError
        If a band reaches above the Nyquist frequency or holds no frequency bin.
    """
    X = np.asarray(X, dtype=np.float64)
    nyquist = sfreq / 2
    for name, (lo, hi) in bands.items():
        if hi > nyquist:
            raise DataError(
                f"band '{name}' [{lo:g}, {hi:g}] Hz reaches above the Nyquist frequency "
                f"({nyquist:g} Hz) of epochs sampled at {sfreq:g} Hz",
                expected=f"band edges at or below {nyquist:g} Hz",
                hint="Remove or narrow the band in features.bandpower.bands, or do not "
                     "resample below twice its upper edge",
            )
    n_per_seg, n_overlap = welch_lengths(X.shape[-1], sfreq, segment_s, overlap)
    psd, freqs = mne.time_frequency.psd_array_welch(
        X, sfreq, fmin=0.0, fmax=nyquist, n_fft=n_per_seg, n_per_seg=n_per_seg,
        n_overlap=n_overlap, window="hamming", average="mean", verbose="error")
    df = sfreq / n_per_seg
    power = np.empty(X.shape[:2] + (len(bands),))
    bins = {}
    for b, (name, (lo, hi)) in enumerate(bands.items()):
        mask = (freqs >= lo) & (freqs < hi)
        if not mask.any():
            raise DataError(
                f"band '{name}' [{lo:g}, {hi:g}) Hz holds no frequency bin of the Welch "
                f"spectrum (bins every {df:g} Hz)",
                expected=f"bands at least {df:g} Hz wide",
                hint="Widen the band, or lengthen features.bandpower.segment_s (and the "
                     "epochs)",
            )
        power[..., b] = psd[..., mask].sum(axis=-1) * df * 1e12
        bins[name] = [float(freqs[mask][0]), float(freqs[mask][-1])]
    info = {"n_per_seg": n_per_seg, "n_overlap": n_overlap, "freq_resolution_hz": df,
            "bins": bins}
    return power, info


def compute_bandpower(
    epochs: mne.BaseEpochs, params: BandpowerFeature, classes: list[str]
) -> FeatureSet:
    """log10 band power (µV²) of every channel and band, one row per epoch.

    Parameters
    ----------
    epochs : mne.BaseEpochs
        Preprocessed epochs with brainmill metadata.
    params : BandpowerFeature
        ``bands``, ``segment_s``, ``overlap``.
    classes : list of str
        Class names in configured order.

    Returns
    -------
    FeatureSet
        ``X`` of shape (n_epochs, n_channels · n_bands), channel-major (all bands of the
        first channel, then the next); ``meta["columns"]`` names them ``<channel>_<band>``.

    Raises
    ------
    DataError
        A band above Nyquist or without a frequency bin, or an epoch with zero power in a
        band (a flat signal), naming the band.
    """
    X, y, session, run = epochs_arrays(epochs, classes)
    sfreq = float(epochs.info["sfreq"])
    power, info = band_power(X, sfreq, params.bands, params.segment_s, params.overlap)
    bad = ~(power > 0) | ~np.isfinite(power)
    if bad.any():
        _, ch, b = np.argwhere(bad)[0]
        raise DataError(
            f"{int(bad.any(axis=(1, 2)).sum())} epoch(s) have no power in band "
            f"'{list(params.bands)[b]}' of channel '{epochs.ch_names[ch]}', so its log is "
            "undefined",
            expected="signals with power in every band",
            hint="Check for flat or zeroed stretches, or drop the band",
        )
    features = np.log10(power).reshape(len(power), -1)
    meta = _feature_meta("bandpower", params, epochs, mne=mne.__version__)
    meta.update(
        columns=[f"{ch}_{band}" for ch in epochs.ch_names for band in params.bands],
        unit="log10(µV²)",
        welch={"window": "hamming", "average": "mean", "detrend": "constant (per segment)",
               **info},
    )
    return FeatureSet(X=features, y=y, classes=classes, session=session, run=run, meta=meta)
