"""Time-frequency front end and TFM tokens as scikit-learn transformers."""

from __future__ import annotations

import mne
import numpy as np
import pytest
import torch
from sklearn.base import clone

from brainmill.features.timefreq import (
    TFMTokens,
    TimeFrequency,
    resample_signals,
    token_counts,
    tokenize,
)

TINY = {"dim": 16, "n_heads": 2, "freq_depth": 1, "time_depth": 1, "decoder_depth": 1,
        "n_codes": 16, "norm_groups": 4, "dead_code_threshold": 0.5}
QUICK = {"max_epochs": 2, "batch_size": 32, "progress": False}


def sines(freqs, n_channels=2, n_times=300, sfreq=100.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n_times) / sfreq
    X = np.sin(2 * np.pi * np.asarray(freqs)[:, None, None] * t) * np.ones((1, n_channels, 1))
    return X + 0.05 * rng.standard_normal(X.shape)


def test_resample_matches_mne_and_keeps_a_sine():
    X = sines([7.0, 12.0], sfreq=160.0, n_times=480)
    out = resample_signals(X, 160.0, 200.0)
    assert out.shape == (2, 2, 600) and out.dtype == np.float32
    ref = mne.filter.resample(X, up=200 / 160, axis=-1, verbose="error")
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    # the dominant frequency survives resampling (1 Hz bins of a 3-s signal: 1/3 Hz)
    spec = np.abs(np.fft.rfft(out[1, 0]))
    assert np.fft.rfftfreq(600, 1 / 200)[np.argmax(spec)] == pytest.approx(12.0, abs=0.34)
    assert resample_signals(X, 100.0, 100.0).shape == X.shape


def test_time_frequency_equals_scaled_stft_and_peaks_at_the_sine():
    X = sines([20.0, 45.0], n_times=400, sfreq=200.0)
    tf = TimeFrequency(sfreq=200.0)
    spec = tf.fit(X).transform(X)
    assert spec.shape == (2, 2, 1 + (400 - 200) // 100, 100)
    # by hand: scale by the 95th percentile of |x|, Hann frames, |rfft|
    x = X[1, 0] / (np.percentile(np.abs(X[1, 0]), 95) + 1e-8)
    win = np.hanning(201)[:-1]  # periodic Hann
    frame = np.abs(np.fft.rfft(x[100:300] * win))[:100]
    np.testing.assert_allclose(spec[1, 0, 1], frame, rtol=1e-4, atol=1e-4)
    assert spec[0, 0].mean(0).argmax() == 20 and spec[1, 1].mean(0).argmax() == 45
    np.testing.assert_allclose(tf.frame_times(400), [0.5, 1.0, 1.5])


def test_time_frequency_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(n_epochs, n_channels, n_times\)"):
        TimeFrequency().fit(np.zeros((3, 200)))
    X = np.zeros((1, 1, 300))
    X[0, 0, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        TimeFrequency().fit(X)


def test_tokens_shape_determinism_and_labels_ignored():
    X = sines(np.repeat([10.0, 30.0], 8))
    a = TFMTokens(sfreq=100.0, tokenizer=TINY, training=QUICK, seed=3).fit(X)
    ids = a.transform(X)
    # 300 samples at 100 Hz -> 600 at 200 Hz -> 1 + (600 - 200) // 100 = 5 frames
    assert ids.shape == (16, 2, 5) and ids.dtype == np.int64
    assert ids.min() >= 0 and ids.max() < TINY["n_codes"]
    assert a.codebook_.shape == (16, 16)
    b = TFMTokens(sfreq=100.0, tokenizer=TINY, training=QUICK, seed=3).fit(
        X, y=np.arange(16))
    np.testing.assert_array_equal(ids, b.transform(X))  # same seed, y ignored
    c = clone(a)
    assert not hasattr(c, "tokenizer_") and c.get_params()["seed"] == 3
    assert a.training_["n_steps"] > 0 and len(a.training_["history"]) == 2


def test_tokens_of_a_channel_do_not_depend_on_the_other_channels():
    X = sines(np.repeat([10.0, 30.0], 4))
    tok = TFMTokens(sfreq=100.0, tokenizer=TINY, training=QUICK, seed=0).fit(X)
    Y = X.copy()
    Y[:, 1] = np.random.default_rng(1).standard_normal(Y[:, 1].shape)
    np.testing.assert_array_equal(tok.transform(X)[:, 0], tok.transform(Y)[:, 0])


def test_tokenize_batches_give_the_same_ids_and_leave_the_mode_alone():
    X = sines(np.repeat([10.0, 30.0], 5), sfreq=200.0, n_times=400).astype(np.float32)
    tok = TFMTokens(sfreq=200.0, tokenizer=TINY, training=QUICK, seed=0).fit(X)
    model = tok.tokenizer_.train()
    one = tokenize(model, X, batch_size=3)
    assert model.training  # restored
    np.testing.assert_array_equal(one, tokenize(model, X, batch_size=1000))
    direct = model.eval().tokenize(torch.from_numpy(X[:2, :1].reshape(2, 1, -1)))
    np.testing.assert_array_equal(one[:2, 0], direct[:, 0].numpy())


@pytest.mark.parametrize("batch_size", [1, 4, 7, 1000])
@pytest.mark.parametrize("n_jobs", [2, 3])
def test_threaded_tokenize_equals_one_batch_after_another(batch_size, n_jobs):
    X = sines(np.repeat([10.0, 30.0], 5), n_channels=3, sfreq=200.0,
              n_times=400).astype(np.float32)
    tok = TFMTokens(sfreq=200.0, tokenizer=TINY, training=QUICK, seed=0).fit(X)
    threads = torch.get_num_threads()
    serial = tokenize(tok.tokenizer_, X, batch_size=batch_size, n_jobs=1)
    threaded = tokenize(tok.tokenizer_, X, batch_size=batch_size, n_jobs=n_jobs)
    assert torch.get_num_threads() == threads  # restored
    np.testing.assert_array_equal(threaded, serial)
    # and both equal the model's own forward pass, one window at a time
    direct = tok.tokenizer_.tokenize(torch.from_numpy(X.reshape(-1, 1, X.shape[-1])))
    np.testing.assert_array_equal(serial, direct.numpy().reshape(serial.shape))


def test_threaded_tokenize_restores_threads_and_mode_after_an_error():
    X = sines([10.0, 30.0, 20.0], sfreq=200.0, n_times=400).astype(np.float32)
    tok = TFMTokens(sfreq=200.0, tokenizer=TINY, training=QUICK, seed=0).fit(X)
    model = tok.tokenizer_.train()
    threads = torch.get_num_threads()
    with pytest.raises(ValueError, match="shorter than one STFT frame"):  # raised in a worker
        tokenize(model, X[..., :100], batch_size=1, n_jobs=2)
    assert torch.get_num_threads() == threads and model.training
    with pytest.raises(ValueError, match="n_jobs and batch_size must be at least 1"):
        tokenize(model, X, n_jobs=0)
    with pytest.raises(ValueError, match="n_jobs and batch_size must be at least 1"):
        tokenize(model, X, batch_size=0)


def test_short_epochs_are_a_clear_error():
    X = sines([10.0, 20.0], n_times=90)  # 0.9 s: shorter than the 1-s STFT window
    with pytest.raises(ValueError, match="shorter than one STFT window"):
        TFMTokens(sfreq=100.0, tokenizer=TINY, training=QUICK).fit(X)


def test_token_counts():
    ids = np.array([[[0, 1, 1]], [[3, 3, 3]]])
    np.testing.assert_array_equal(token_counts(ids, 5), [1, 2, 0, 3, 0])


def test_tokens_groups_need_one_label_per_epoch():
    X = sines([8.0, 12.0, 20.0])
    with pytest.raises(ValueError, match="one group label per epoch"):
        TFMTokens(sfreq=100.0, tokenizer=TINY, training=QUICK).fit(X, groups=np.zeros(len(X) + 1))
