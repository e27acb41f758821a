"""Diffusion decoder estimators: windows, representations, generation, per-fold pipeline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline

from brainmill.diffusion_decoding import (
    DiffusionFeatures,
    LatentFusionClassifier,
    generate,
    single_channel_windows,
    train_diffusion,
)
from brainmill.models.diffusion import DiffusionConfig

TINY_BACKBONE = {"dim": 12, "d_state": 8, "n_layers": 2, "cond_dim": 16, "sfreq": 100.0}
FAST = {"max_epochs": 2, "batch_size": 32, "lr": 2e-3, "progress": False}
TINY_LFT = {"dim": 16, "n_heads": 2, "n_fusion_tokens": 4, "depth": 1}
LFT_TRAINING = {"max_epochs": 40, "batch_size": 8, "lr": 3e-3, "val_fraction": 0.2,
                "progress": False}


def rhythm_task(n=60, channels=3, length=300, sfreq=100.0, seed=0):
    """Class 1 carries a 10 Hz rhythm on channel 0; everything else is white noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    X = 10e-6 * rng.standard_normal((n, channels, length))
    t = np.arange(length) / sfreq
    X[y == 1, 0] += 20e-6 * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 6.3, (n // 2, 1)))
    return X, y


def test_single_channel_windows_are_epoch_major():
    X = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    windows, names = single_channel_windows(X, ["a", "b", "c"])
    assert windows.shape == (6, 1, 4)
    assert names == ["a", "b", "c", "a", "b", "c"]
    np.testing.assert_array_equal(windows[4, 0], X[1, 1])


def test_features_shape_and_resampling():
    X, _ = rhythm_task(n=8, length=400, sfreq=200.0)
    feats = DiffusionFeatures(sfreq=200.0, ch_names=["C3", "Cz", "C4"], model=TINY_BACKBONE,
                              training=FAST, pool_s=0.5).fit(X)
    assert feats.model_.config.channel_names == ["C3", "Cz", "C4"]
    assert feats.pool_ == 50
    F = feats.transform(X)
    assert F.shape == (8, 3, 2, 12, 4)  # 2 s at 100 Hz in 0.5-s pools
    assert F.dtype == np.float32 and np.all(np.isfinite(F))
    # the rhythm on channel 0 of class 1 shows in its representations, not in channel 2's
    _, y8 = rhythm_task(n=8, length=400, sfreq=200.0)
    gap = np.abs(F[y8 == 1].mean(0) - F[y8 == 0].mean(0)).mean(axis=(1, 2, 3))
    assert gap[0] > 2 * gap[2]
    assert feats.training_["n_train"] == 24  # every channel of every epoch
    with pytest.raises(ValueError, match="NaN or inf"):
        feats.transform(np.where(np.arange(400) == 3, np.nan, X))
    with pytest.raises(ValueError, match="expected 3"):
        feats.transform(X[:, :2])


def test_max_windows_bounds_the_pretraining_set():
    X, _ = rhythm_task(n=10)
    feats = DiffusionFeatures(sfreq=100.0, model=TINY_BACKBONE, training=FAST, max_windows=7,
                              seed=1).fit(X)
    assert feats.training_["n_train"] == 7


def test_pipeline_decodes_a_rhythm_under_cross_validation():
    X, y = rhythm_task()
    pipe = make_pipeline(
        DiffusionFeatures(sfreq=100.0, ch_names=["a", "b", "c"], model=TINY_BACKBONE,
                          training=FAST),
        LatentFusionClassifier(model=TINY_LFT, training=LFT_TRAINING))
    scores = cross_val_score(pipe, X, y, cv=StratifiedKFold(3, shuffle=True, random_state=0))
    assert scores.mean() >= 0.85, scores


def test_classifier_is_deterministic_and_its_probabilities_normalised():
    X, y = rhythm_task(n=24)
    F = DiffusionFeatures(sfreq=100.0, model=TINY_BACKBONE, training=FAST).fit_transform(X)
    a = LatentFusionClassifier(model=TINY_LFT, training={**LFT_TRAINING, "max_epochs": 3})
    b = LatentFusionClassifier(model=TINY_LFT, training={**LFT_TRAINING, "max_epochs": 3})
    pa, pb = a.fit(F, y).predict_proba(F), b.fit(F, y).predict_proba(F)
    np.testing.assert_array_equal(pa, pb)
    np.testing.assert_allclose(pa.sum(1), 1.0, rtol=1e-6)
    assert a.fit_info_["training"]["n_val"] == 4  # round(0.2 · 12) of each class
    with pytest.raises(ValueError, match="two classes"):
        a.fit(F, np.zeros(len(F)))
    with pytest.raises(ValueError, match="n_pools"):
        a.predict_proba(F[:, 0])
    with pytest.raises(ValueError, match="must not set"):
        LatentFusionClassifier(model={"n_layers": 3}).fit(F, y)
    with pytest.raises(ValueError, match="monitor must be one of"):
        LatentFusionClassifier(monitor="auc").fit(F, y)


def test_generate_is_reproducible_and_in_signal_units():
    X, _ = rhythm_task(n=6)
    windows, names = single_channel_windows(X, ["a", "b", "c"])
    cfg = DiffusionConfig(channel_names=["a", "b", "c"], **TINY_BACKBONE)
    model, _ = train_diffusion(windows, names, cfg, FAST, seed=0)
    g1 = generate(model, ["a", "c", "zz"], 120, seed=5, n_steps=4)
    g2 = generate(model, ["a", "c", "zz"], 120, seed=5, n_steps=4)
    assert g1.shape == (3, 120)
    np.testing.assert_array_equal(g1, g2)
    # sampling is clipped to the training data's range, in volts
    data_max = float(model.encode(torch.as_tensor(windows, dtype=torch.float32)).abs().max())
    assert model.config.clip_sample == pytest.approx(max(data_max, 1.0), rel=1e-5)
    bound = float(model.decode(torch.tensor(model.config.clip_sample)))
    assert 1e-7 < np.abs(g1).max() <= bound * (1 + 1e-5)
    with pytest.raises(ValueError, match="labels exactly when"):
        train_diffusion(windows, names, cfg, FAST, seed=0, labels=np.zeros(len(windows)))


def test_a_finished_pretraining_returns_its_weights_at_once(tmp_path):
    X, _ = rhythm_task(n=8)
    windows, names = single_channel_windows(X, ["a", "b", "c"])
    cfg = DiffusionConfig(channel_names=["a", "b", "c"], **TINY_BACKBONE)
    training = {**FAST, "max_epochs": 3, "ema_decay": 0.9}
    done, _ = train_diffusion(windows, names, cfg, training, seed=0, run_dir=tmp_path)
    again, result = train_diffusion(windows, names, cfg, training, seed=0, run_dir=tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(done.state_dict().values(),
                                                 again.state_dict().values(), strict=True))
    assert result.n_steps == 3


KILL_AT_STEP = 5
RESUME_TRAINING = {**FAST, "max_epochs": 3, "batch_size": 8, "checkpoint_every": 2,
                   "ema_decay": 0.9, "ema_start": 1}


def resume_fit(run_dir, kill_at=None):
    """Pretrain on the rhythm task; SIGKILL the process at training step ``kill_at``.

    Run in a subprocess by :func:`test_pretraining_killed_mid_run_resumes_to_the_same_weights`.
    """
    from brainmill.models.diffusion import EEGDiffusion

    X, _ = rhythm_task(n=8)
    windows, names = single_channel_windows(X, ["a", "b", "c"])
    cfg = DiffusionConfig(channel_names=["a", "b", "c"], dropout=0.1, **TINY_BACKBONE)
    loss, steps = EEGDiffusion.loss, [0]

    def killing_loss(self, *args, **kwargs):
        if self.training:
            if steps[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            steps[0] += 1
        return loss(self, *args, **kwargs)

    EEGDiffusion.loss = killing_loss
    try:
        return train_diffusion(windows, names, cfg, RESUME_TRAINING, seed=3, run_dir=run_dir)
    finally:
        EEGDiffusion.loss = loss


def test_pretraining_killed_mid_run_resumes_to_the_same_weights(tmp_path):
    killed = tmp_path / "killed"
    tests = Path(__file__).resolve().parent
    # the same torch thread count on both sides (an earlier test's stage may have set this
    # process's): another count sums in another order, and the weights differ in the last bit
    code = (f"import sys, torch; torch.set_num_threads({torch.get_num_threads()}); "
            f"sys.path.insert(0, {str(tests)!r}); import test_diffusion_decoding "
            f"as t; t.resume_fit({str(killed)!r}, kill_at={KILL_AT_STEP})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    state = torch.load(killed / "checkpoint.pt", weights_only=True)["state"]
    assert state["step"] == 4 and not state["finished"] and state["ema"] is not None
    resumed, resumed_result = resume_fit(killed)
    reference, reference_result = resume_fit(tmp_path / "uninterrupted")
    assert resumed_result.n_steps == reference_result.n_steps == 9
    for (name, a), b in zip(resumed.state_dict().items(), reference.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name


def test_classifier_groups_keep_each_recording_whole_in_the_validation_split(carved_splits,
                                                                            whole_groups):
    """With ``groups`` the early-stopping split holds whole recordings (windows of one
    recording are near duplicates); the default stratified split cuts them apart."""
    calls = carved_splits
    rng = np.random.default_rng(0)
    F = rng.standard_normal((40, 2, 3, 8, 2)).astype(np.float32)
    y = np.repeat([0, 1], 20)
    recording = np.arange(40) // 4
    for groups in (recording, None):
        LatentFusionClassifier(model=TINY_LFT, training={**LFT_TRAINING, "max_epochs": 1}
                               ).fit(F, y, groups=groups)
    (given, val), (default, val_default) = calls
    np.testing.assert_array_equal(given, recording)
    assert default is None

    assert whole_groups(recording, val) and not whole_groups(recording, val_default)
    with pytest.raises(ValueError, match="one group label per epoch"):  # even unused
        LatentFusionClassifier(model=TINY_LFT, training={"max_epochs": 1, "progress": False}
                               ).fit(F, y, groups=[1, 2])


def test_backbone_validation_holds_whole_epochs_or_the_given_groups(carved_splits,
                                                                   whole_groups):
    calls = carved_splits
    X, _ = rhythm_task(n=12, channels=3, length=200)
    training_cfg = {**FAST, "max_epochs": 1, "val_fraction": 0.3}
    recording = np.arange(12) // 3
    for groups in (None, recording):
        DiffusionFeatures(sfreq=100.0, model=TINY_BACKBONE, training=training_cfg,
                          seed=0).fit(X, groups=groups)
    (by_epoch, val_epoch), (by_recording, val_recording) = calls
    np.testing.assert_array_equal(by_epoch, np.repeat(np.arange(12), 3))  # epoch-major
    np.testing.assert_array_equal(by_recording, np.repeat(recording, 3))
    for groups, val in ((by_epoch, val_epoch), (by_recording, val_recording)):
        assert whole_groups(groups, val)
    with pytest.raises(ValueError, match="one group label per epoch"):
        DiffusionFeatures(sfreq=100.0, model=TINY_BACKBONE, training=training_cfg).fit(
            X, groups=recording[:5])


def test_max_windows_keeps_each_window_with_its_epoch(monkeypatch):
    import brainmill.diffusion_decoding as diffusion_decoding

    seen, original = {}, diffusion_decoding.train_diffusion

    def recorded(windows, channels, config, training, seed, run_dir=None, labels=None,
                 groups=None):
        seen.update(windows=windows, channels=channels, groups=groups)
        return original(windows, channels, config, training, seed, run_dir, labels, groups)

    monkeypatch.setattr(diffusion_decoding, "train_diffusion", recorded)
    X, _ = rhythm_task(n=10, channels=3, length=200)  # at the model's 100 Hz: no resampling
    DiffusionFeatures(sfreq=100.0, ch_names=["a", "b", "c"], model=TINY_BACKBONE,
                      training={**FAST, "max_epochs": 1}, max_windows=11, seed=3).fit(X)
    assert len(seen["windows"]) == len(seen["groups"]) == len(seen["channels"]) == 11
    for window, epoch, channel in zip(seen["windows"], seen["groups"], seen["channels"],
                                      strict=True):
        np.testing.assert_allclose(window[0], X[epoch, "abc".index(channel)], rtol=1e-6)
