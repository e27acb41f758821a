"""How close generated EEG is to real EEG: spectra, a two-sample classifier test, a baseline.

* :func:`log_spectral_distance`: root-mean-square difference (dB) between the mean Welch power
  spectra of two sets of windows over a band.
* :func:`classifier_two_sample_test`: can a classifier tell the sets apart? (Lopez-Paz & Oquab,
  "Revisiting classifier two-sample tests", ICLR 2017.) Cross-validated accuracy of a logistic
  regression on per-window descriptors (:func:`window_descriptors`): 0.5 means
  indistinguishable; the one-sided binomial p-value of that accuracy against 0.5.
* :func:`phase_randomized`: the trivial generator to beat: each training window with its
  Fourier phases drawn at random (Theiler et al. 1992). Its power spectrum is that of the
  training data exactly, so a generator must match it on spectra and beat it on everything
  the spectrum does not hold (amplitude distribution, waveform asymmetry, transients).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.signal import welch
from scipy.stats import binomtest, kurtosis, skew
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = [
    "C2ST_FOLDS",
    "channel_groups",
    "classifier_two_sample_test",
    "log_spectral_distance",
    "mean_psd",
    "phase_randomized",
    "window_descriptors",
]

#: Bands of the descriptors' relative powers (Hz); those above Nyquist are left out.
DESCRIPTOR_BANDS = ((0.5, 4.0), (4.0, 8.0), (8.0, 13.0), (13.0, 30.0), (30.0, 45.0))


#: 10-20 name prefixes of each scalp region, longest first so "FC" is central, not frontal.
_REGIONS = (("FP", "frontal"), ("AF", "frontal"), ("FT", "temporal"), ("FC", "central"),
            ("CP", "central"), ("TP", "temporal"), ("PO", "parietal"), ("F", "frontal"),
            ("C", "central"), ("T", "temporal"), ("P", "parietal"), ("O", "occipital"),
            ("I", "occipital"))


def channel_groups(ch_names: list[str]) -> dict[str, list[int]]:
    """Channel indices per scalp region from 10-20 names (``frontal``, ``central``,
    ``temporal``, ``parietal``, ``occipital``; anything else is ``other``), plus ``all``."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(ch_names):
        upper = str(name).upper()
        region = next((r for prefix, r in _REGIONS if upper.startswith(prefix)), "other")
        groups.setdefault(region, []).append(i)
    return {**dict(sorted(groups.items())), "all": list(range(len(ch_names)))}


def _windows(X: Any, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) == 0:
        raise ValueError(f"{name}: windows must be a non-empty (n_windows, n_times) array, got "
                         f"shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name}: windows contain NaN or inf")
    return X


def mean_psd(X: np.ndarray, sfreq: float, nperseg: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and the mean Welch PSD over windows ``(n_windows, n_times)``
    (Hann segments of ``nperseg`` samples, default ``min(n_times, 2·sfreq)``, 50 % overlap)."""
    X = _windows(X, "mean_psd")
    nperseg = min(X.shape[1], int(nperseg or 2 * sfreq))
    f, p = welch(X, fs=sfreq, nperseg=nperseg, axis=-1)
    return f, p.mean(axis=0)


def log_spectral_distance(A: np.ndarray, B: np.ndarray, sfreq: float,
                          band: tuple[float, float] = (0.5, 45.0),
                          nperseg: int | None = None) -> float:
    """RMS over ``band`` of ``10·log10(P_A(f) / P_B(f))`` for the mean PSDs of two window sets (dB).

    0 for identical spectra; 3 dB is a factor of 2 in power on average.
    """
    f, pa = mean_psd(A, sfreq, nperseg)
    _, pb = mean_psd(B, sfreq, nperseg)
    keep = (f >= band[0]) & (f <= min(band[1], sfreq / 2))
    if not keep.any():
        raise ValueError(f"log_spectral_distance: no frequency bin in {band} Hz at "
                         f"{sfreq:g} Hz with {len(f)} bins")
    tiny = np.finfo(float).tiny
    diff = 10 * np.log10(np.maximum(pa[keep], tiny) / np.maximum(pb[keep], tiny))
    return float(np.sqrt(np.mean(diff ** 2)))


def window_descriptors(X: np.ndarray, sfreq: float) -> np.ndarray:
    """Per-window descriptors ``(n_windows, n_features)`` for the two-sample test.

    Log variance; relative log power in :data:`DESCRIPTOR_BANDS`; skewness and excess kurtosis
    (amplitude distribution); Hjorth mobility and complexity; log line length; zero-crossing
    rate; time-reversal asymmetry ``E[(x_{t+1} − x_t)³] / E[(x_{t+1} − x_t)²]^{3/2}``.
    """
    X = _windows(X, "window_descriptors")
    Xc = X - X.mean(axis=1, keepdims=True)
    var = Xc.var(axis=1) + 1e-30
    d1 = np.diff(Xc, axis=1)
    d2 = np.diff(d1, axis=1)
    v1, v2 = d1.var(axis=1) + 1e-30, d2.var(axis=1) + 1e-30
    mobility = np.sqrt(v1 / var)
    complexity = np.sqrt(v2 / v1) / mobility
    f, p = welch(Xc, fs=sfreq, nperseg=min(X.shape[1], int(2 * sfreq)), axis=-1)
    total = p.sum(axis=1) + 1e-30
    bands = [np.log(p[:, (f >= lo) & (f < hi)].sum(axis=1) / total + 1e-12)
             for lo, hi in DESCRIPTOR_BANDS if lo < sfreq / 2 and ((f >= lo) & (f < hi)).any()]
    zero_crossings = np.mean(np.diff(np.signbit(Xc), axis=1), axis=1)
    asymmetry = np.mean(d1 ** 3, axis=1) / v1 ** 1.5
    return np.column_stack([np.log(var), *bands, skew(Xc, axis=1), kurtosis(Xc, axis=1),
                            mobility, complexity, np.log(np.abs(d1).sum(axis=1) + 1e-30),
                            zero_crossings, asymmetry])


#: Folds of :func:`classifier_two_sample_test` by default; with groups, each side needs at
#: least this many.
C2ST_FOLDS = 5


def classifier_two_sample_test(real: np.ndarray, fake: np.ndarray, sfreq: float,
                               n_folds: int = C2ST_FOLDS, seed: int = 0, *,
                               real_groups: np.ndarray | None = None,
                               fake_groups: np.ndarray | None = None) -> dict[str, Any]:
    """Cross-validated accuracy of telling ``real`` from ``fake`` windows apart.

    Both sets are cut to the smaller size (drawn with ``seed``) so chance is 0.5; a
    standardised logistic regression on :func:`window_descriptors` is scored by stratified
    ``n_folds``-fold cross-validation (every window predicted once, out of fold).

    Parameters
    ----------
    real, fake : ndarray, shape (n_windows, n_times)
    sfreq : float
    n_folds : int
    seed : int
    real_groups, fake_groups : ndarray, shape (n_windows,), optional
        What each window was cut from (its epoch, or its segment when windows overlap):
        windows of one group stay in one fold (``StratifiedGroupKFold``). Without groups
        every window is its own, which suits independent draws (generated windows) only:
        the channels of one epoch, or overlapping windows of one segment, on both sides of a
        split would let the classifier recognise their recording rather than its realism.

    Returns
    -------
    dict
        ``accuracy``, ``p_value`` (one-sided binomial against 0.5 over all out-of-fold
        predictions), ``n_per_set``, ``grouped`` (whether any groups were given).
    """
    real = _windows(real, "classifier_two_sample_test(real)")
    fake = _windows(fake, "classifier_two_sample_test(fake)")
    n = min(len(real), len(fake))
    if n < n_folds:
        raise ValueError(f"classifier_two_sample_test: {n} windows per set, fewer than "
                         f"n_folds={n_folds}")
    rng = np.random.default_rng(seed)
    pick_real = rng.choice(len(real), n, replace=False)
    pick_fake = rng.choice(len(fake), n, replace=False)
    X = window_descriptors(np.concatenate([real[pick_real], fake[pick_fake]]), sfreq)
    y = np.repeat([0, 1], n)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    grouped = real_groups is not None or fake_groups is not None
    if grouped:
        groups = np.concatenate([_group_codes(real_groups, len(real), "real")[pick_real],
                                 _group_codes(fake_groups, len(fake), "fake")[pick_fake]
                                 + len(real)])
        for side, g in (("real", groups[:n]), ("fake", groups[n:])):
            if len(np.unique(g)) < n_folds:
                raise ValueError(f"classifier_two_sample_test: the {side} windows come from "
                                 f"{len(np.unique(g))} groups, fewer than n_folds={n_folds}")
        cv = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed)
        pred = cross_val_predict(clf, X, y, cv=cv, groups=groups)
    else:
        pred = cross_val_predict(clf, X, y, cv=StratifiedKFold(n_folds, shuffle=True,
                                                               random_state=seed))
    correct = int((pred == y).sum())
    return {"accuracy": correct / len(y),
            "p_value": float(binomtest(correct, len(y), 0.5, alternative="greater").pvalue),
            "n_per_set": int(n), "grouped": bool(grouped)}


def _group_codes(groups: np.ndarray | None, n: int, side: str) -> np.ndarray:
    """Integer codes ``0..n-1`` of one side's groups (each window its own when None)."""
    if groups is None:
        return np.arange(n)
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"classifier_two_sample_test: {side}_groups has shape {groups.shape}; "
                         f"expected ({n},), one group per window")
    return np.unique(groups, return_inverse=True)[1]


def phase_randomized(X: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each window with uniformly random Fourier phases (amplitudes kept; DC and, for an even
    length, Nyquist untouched so the result is real): the same periodogram, Gaussianised."""
    X = _windows(X, "phase_randomized")
    spectrum = np.fft.rfft(X, axis=1)
    phases = np.random.default_rng(seed).uniform(0, 2 * np.pi, spectrum.shape)
    shuffled = np.abs(spectrum) * np.exp(1j * phases)
    shuffled[:, 0] = spectrum[:, 0]
    if X.shape[1] % 2 == 0:
        shuffled[:, -1] = spectrum[:, -1]
    return np.fft.irfft(shuffled, n=X.shape[1], axis=1)
