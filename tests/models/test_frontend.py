"""Front end: STFT magnitude against numpy's rfft of Hann frames, robust scaling against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainmill.models.frontend import n_frames, robust_scale, stft_magnitude


def _numpy_stft(x: np.ndarray, n_fft: int, hop: int, n_bins: int) -> np.ndarray:
    """Independent reference: frame, multiply by the periodic Hann window, |rfft|."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    starts = range(0, x.shape[-1] - n_fft + 1, hop)
    frames = np.stack([x[..., s : s + n_fft] * window for s in starts], axis=-2)
    return np.abs(np.fft.rfft(frames, axis=-1))[..., :n_bins]


@pytest.mark.parametrize(("n_times", "n_fft", "hop", "n_bins"),
                         [(1000, 200, 100, 100), (999, 200, 100, 100), (257, 64, 17, 33),
                          (200, 200, 100, 101)])
def test_stft_matches_numpy_and_frame_formula(n_times, n_fft, hop, n_bins):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, n_times))
    got = stft_magnitude(torch.from_numpy(x), n_fft, hop, n_bins)
    expected = _numpy_stft(x, n_fft, hop, n_bins)
    frames = 1 + (n_times - n_fft) // hop
    assert got.shape == (2, 3, frames, n_bins) == expected.shape
    assert n_frames(n_times, n_fft, hop) == frames
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-10)
    # float32 input stays float32 and agrees to single precision
    got32 = stft_magnitude(torch.from_numpy(x).float(), n_fft, hop, n_bins)
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_stft_sine_peaks_at_its_bin():
    sfreq, f0 = 200.0, 12.0
    t = np.arange(1000) / sfreq
    spec = stft_magnitude(torch.from_numpy(np.sin(2 * np.pi * f0 * t)))
    assert spec.shape == (9, 100)
    assert (spec.argmax(-1) == 12).all()  # 1-Hz bins at 200 Hz with n_fft = 200
    # Hann-windowed unit sine: peak |X| = n_fft/4 when f0 is on a bin
    np.testing.assert_allclose(spec[:, 12].numpy(), 50.0, rtol=1e-6)


def test_stft_errors_and_autocast():
    with pytest.raises(ValueError, match="shorter than one STFT frame"):
        stft_magnitude(torch.zeros(1, 199))
    with pytest.raises(ValueError, match="n_bins"):
        stft_magnitude(torch.zeros(1, 400), n_fft=200, n_bins=102)
    with pytest.raises(ValueError, match="shorter"):
        n_frames(10, 20, 5)
    x = torch.randn(2, 400)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = stft_magnitude(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, stft_magnitude(x))


def test_robust_scale_matches_numpy_quantile():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 2, 333)) * rng.uniform(0.1, 100.0, (4, 2, 1))
    # both sides of the partial sort (upper tail for q ≥ 0.5, lower tail below), and rows of
    # one and two samples
    for arr in (x, x[..., :1], x[..., :2]):
        for q in (0.95, 0.5, 1.0, 0.0, 0.05, 0.33, 0.999):
            got = robust_scale(torch.from_numpy(arr), q=q, eps=1e-8).numpy()
            ref = arr / (np.percentile(np.abs(arr), 100 * q, axis=-1, keepdims=True) + 1e-8)
            np.testing.assert_allclose(got, ref, rtol=1e-12)
    # scale invariance per row and a zero row stays finite (eps)
    y = torch.from_numpy(x)
    torch.testing.assert_close(robust_scale(7.5 * y), robust_scale(y), rtol=1e-6, atol=1e-6)
    z = robust_scale(torch.zeros(1, 50))
    assert torch.isfinite(z).all() and (z == 0).all()
    with pytest.raises(ValueError, match="q must be"):
        robust_scale(y, q=95)
