"""Per-epoch log band power, checked against scipy's Welch estimate summed by hand."""

import mne
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy.signal import welch

from brainmill.config import BandpowerFeature
from brainmill.errors import DataError
from brainmill.features import FEATURES
from brainmill.features.bandpower import band_power, compute_bandpower

SFREQ = 200.0
CLINICAL = ["delta", "theta", "alpha", "beta", "gamma"]


def _epochs(X: np.ndarray, sfreq: float = SFREQ, ch_names=None) -> mne.EpochsArray:
    n = len(X)
    info = mne.create_info(ch_names or [f"E{i}" for i in range(X.shape[1])], sfreq, "eeg")
    meta = pd.DataFrame({"label": ["a", "b"] * (n // 2), "session": ["1"] * n,
                         "run": [str(i) for i in range(n)]})
    events = np.c_[np.arange(n) * 10 * X.shape[-1], np.zeros(n, int), [1, 2] * (n // 2)]
    return mne.EpochsArray(X, info, events=events, event_id={"a": 1, "b": 2}, metadata=meta,
                           verbose="error")


@pytest.fixture
def sines():
    """Epoch 0: 10 Hz (alpha) on E0, 20 Hz (beta) on E1; epoch 1: 6 Hz (theta) on both;
    plus 0.5 µV white noise. 4 s at 200 Hz, amplitude 10 µV."""
    rng = np.random.default_rng(0)
    t = np.arange(800) / SFREQ
    X = 0.5e-6 * rng.standard_normal((2, 2, 800))
    X[0, 0] += 10e-6 * np.sin(2 * np.pi * 10 * t)
    X[0, 1] += 10e-6 * np.sin(2 * np.pi * 20 * t + 1)
    X[1] += 10e-6 * np.sin(2 * np.pi * 6 * t)
    return X


def test_equals_scipy_welch_summed_by_hand(sines):
    fs = compute_bandpower(_epochs(sines), BandpowerFeature(), ["a", "b"])
    # independent reference: scipy Welch, Hamming, 2-s segments, 50 % overlap, mean removed
    freqs, psd = welch(sines, SFREQ, window="hamming", nperseg=400, noverlap=200,
                       detrend="constant")
    bands = BandpowerFeature().bands
    ref = np.stack([psd[..., (freqs >= lo) & (freqs < hi)].sum(-1) * 0.5 * 1e12
                    for lo, hi in bands.values()], axis=-1)
    np.testing.assert_allclose(fs.X, np.log10(ref).reshape(2, -1), rtol=1e-10)
    assert fs.X.shape == (2, 2 * 5)
    assert fs.meta["columns"] == [f"{ch}_{b}" for ch in ("E0", "E1") for b in CLINICAL]
    assert fs.meta["unit"] == "log10(µV²)"
    assert fs.meta["welch"]["n_per_seg"] == 400 and fs.meta["welch"]["n_overlap"] == 200
    np.testing.assert_array_equal(fs.y, [0, 1])


def test_the_band_holding_the_sine_dominates_with_the_sine_power(sines):
    fs = compute_bandpower(_epochs(sines), BandpowerFeature(), ["a", "b"])
    X = fs.X.reshape(2, 2, 5)
    assert CLINICAL[X[0, 0].argmax()] == "alpha" and CLINICAL[X[0, 1].argmax()] == "beta"
    assert [CLINICAL[k] for k in X[1].argmax(axis=1)] == ["theta", "theta"]
    # a sine of amplitude A carries A²/2 = 50 µV²; Hamming leakage stays inside the band
    assert 10 ** X[0, 0, 2] == pytest.approx(50, rel=0.05)


def test_bands_covering_the_spectrum_sum_to_the_variance():
    """Welch's density integrates to the signal's power (Parseval): white noise's variance."""
    x = np.random.default_rng(3).standard_normal((1, 1, 20000)) * 1e-5
    power, _ = band_power(x, SFREQ, {"all": (0.0, 100.0)})
    assert power[0, 0, 0] == pytest.approx(np.var(x) * 1e12, rel=0.03)


def test_segment_is_the_epoch_when_shorter():
    x = np.random.default_rng(1).standard_normal((2, 1, 150)) * 1e-5
    fs = compute_bandpower(_epochs(x), BandpowerFeature(), ["a", "b"])
    assert fs.meta["welch"]["n_per_seg"] == 150
    assert fs.meta["welch"]["freq_resolution_hz"] == pytest.approx(SFREQ / 150)


def test_each_row_depends_on_its_epoch_only(sines):
    full = compute_bandpower(_epochs(sines), BandpowerFeature(), ["a", "b"]).X
    X = np.concatenate([sines, sines[::-1]])
    both = compute_bandpower(_epochs(X), BandpowerFeature(), ["a", "b"]).X
    np.testing.assert_allclose(both[:2], full, rtol=1e-12)
    np.testing.assert_allclose(both[2:], full[::-1], rtol=1e-12)


def test_band_above_nyquist_is_named(sines):
    with pytest.raises(DataError, match=r"band 'gamma' \[30, 45\] Hz reaches above the "
                                        r"Nyquist frequency \(40 Hz\)"):
        compute_bandpower(_epochs(sines, sfreq=80.0), BandpowerFeature(), ["a", "b"])


def test_band_without_a_bin_and_flat_signal_are_errors(sines):
    with pytest.raises(DataError, match="band 'thin' .* holds no frequency bin"):
        compute_bandpower(_epochs(sines), BandpowerFeature(bands={"thin": (10.1, 10.2)}),
                          ["a", "b"])
    flat = sines.copy()
    flat[1, 1] = 0.0
    with pytest.raises(DataError, match="1 epoch.* no power in band 'delta' of channel 'E1'"):
        compute_bandpower(_epochs(flat), BandpowerFeature(), ["a", "b"])


def test_config_validation_and_registry():
    assert list(BandpowerFeature().bands) == CLINICAL
    with pytest.raises(ValidationError, match="expected 0 <= low < high"):
        BandpowerFeature(bands={"x": (8, 4)})
    with pytest.raises(ValidationError, match="letters, digits"):
        BandpowerFeature(bands={"a-b": (1, 4)})
    assert FEATURES["bandpower"] is compute_bandpower
