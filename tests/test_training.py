"""Training engine: schedule, AdamW groups, learning, reproducibility, resume after SIGKILL,
early stopping, validation splits, checkpoints and logs, precision/device, import footprint."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

import brainmill.training as training
from brainmill.training import (
    CHECKPOINT_NAME,
    HISTORY_NAME,
    SUMMARY_NAME,
    TrainConfig,
    Trainer,
    count_parameters,
    ema_decay_at,
    fp32_scope,
    lr_at,
    parameter_groups,
    resolve_device,
    validation_split,
)

TESTS_DIR = Path(__file__).resolve().parent
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def quiet(**kwargs) -> TrainConfig:
    return TrainConfig(progress=False, **kwargs)


def regression_data(n: int, d: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``y = X·w + small noise`` with ``X ~ N(0, I)``."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    w = torch.randn(d, 1, generator=g)
    return X, X @ w + 0.05 * torch.randn(n, 1, generator=g)


def dropout_mlp(seed: int = 0, d: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.GELU(), nn.Dropout(0.3), nn.Linear(16, 1))


def mse(model, batch, generator):
    x, y = batch
    loss = F.mse_loss(model(x), y)
    return loss, {"mse": loss.item()}


def noisy_mse(model, batch, generator):
    """MSE on a random ~80 % of the rows of jittered inputs: both drawn from ``generator``."""
    x, y = batch
    x = x + 0.1 * torch.randn(x.shape, generator=generator, device=x.device)
    keep = (torch.rand(len(x), generator=generator, device=x.device) < 0.8).float()
    err = (model(x) - y).pow(2).squeeze(1)
    return (err * keep).sum() / keep.sum().clamp_min(1.0), {"kept": keep.mean().item()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def snapshot(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# -------------------------------------------------------------------------- config, schedule


def test_lr_schedule_warmup_peak_cosine_to_min_lr():
    cfg = TrainConfig(lr=1e-3, min_lr=1e-5, warmup_fraction=0.1)
    total, warmup = 100, 10
    lrs = np.array([lr_at(s, total, cfg) for s in range(total)])
    # warm-up: linear from lr/(W+1) ~ 0 up to the peak lr at step W
    np.testing.assert_allclose(lrs[:warmup + 1], cfg.lr * np.arange(1, warmup + 2) / (warmup + 1))
    assert lrs[0] < 0.1 * cfg.lr
    assert lrs.argmax() == warmup and lrs.max() == pytest.approx(cfg.lr)
    # then the hand-written cosine from lr (step W) to min_lr (last step), never increasing
    p = (np.arange(warmup, total) - warmup) / (total - 1 - warmup)
    np.testing.assert_allclose(
        lrs[warmup:], cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1 + np.cos(np.pi * p)))
    assert np.all(np.diff(lrs[warmup:]) <= 0)
    assert lrs[-1] == pytest.approx(cfg.min_lr)
    assert lr_at(total + 5, total, cfg) == pytest.approx(cfg.min_lr)
    # no warm-up: the first step already uses lr
    assert lr_at(0, total, TrainConfig(warmup_fraction=0.0)) == pytest.approx(1e-3)


def test_min_lr_above_lr_is_rejected():
    # the TFM reference's final_lr 5e-3 > lr 1e-3 made its "decay" rise
    with pytest.raises(ValueError, match=r"TrainConfig\.min_lr .* above lr"):
        TrainConfig(lr=1e-3, min_lr=5e-3)
    assert TrainConfig(lr=1e-3, min_lr=1e-3).min_lr == 1e-3  # constant schedule is fine


@pytest.mark.parametrize("name, value", [
    ("max_epochs", 0), ("batch_size", 0), ("batch_size", 2.0), ("lr", 0.0), ("lr", math.nan),
    ("warmup_fraction", 1.0), ("weight_decay", -1.0), ("betas", (0.9,)), ("betas", (0.9, 1.0)),
    ("grad_clip", 0.0), ("device", "gpu"), ("precision", "fp16"), ("compile", 1),
    ("val_fraction", 1.0), ("patience", 0), ("monitor", ""), ("mode", "best"),
    ("checkpoint_every", -1), ("seed", -1), ("seed", 2**32), ("progress", "yes"),
])
def test_config_rejects_bad_values_naming_the_field(name, value):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{name} = .*expected"):
        TrainConfig(**{name: value})


def test_config_accepts_betas_as_a_list():
    assert TrainConfig(betas=[0.8, 0.95]).betas == (0.8, 0.95)


# ---------------------------------------------------------------------- optimiser, counting


def test_parameter_groups_decay_only_weight_matrices_and_count_parameters():
    model = nn.ModuleDict({"emb": nn.Embedding(10, 4), "lin": nn.Linear(4, 3),
                           "conv": nn.Conv1d(4, 2, 3), "norm": nn.LayerNorm(4)})
    model.cls = nn.Parameter(torch.zeros(1, 1, 4))
    frozen = nn.Linear(2, 2)
    frozen.requires_grad_(False)
    model["frozen"] = frozen
    decay, rest = parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and rest["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model["lin"].weight), id(model["conv"].weight)}
    assert {id(p) for p in rest["params"]} == {
        id(p) for p in (model["emb"].weight, model["lin"].bias, model["conv"].bias,
                        model["norm"].weight, model["norm"].bias, model.cls)}
    trainable = 10 * 4 + (4 * 3 + 3) + (2 * 4 * 3 + 2) + (4 + 4) + 4
    assert count_parameters(model, trainable_only=True) == trainable
    assert count_parameters(model) == trainable + 2 * 2 + 2


def test_adamw_decay_is_decoupled_and_follows_the_schedule():
    # zero gradients: Adam's step is 0/(0 + eps) = 0, so only the decoupled decay moves the
    # weights, by prod_s (1 - lr_s·wd) on the matrix and not at all on the bias.
    torch.manual_seed(0)
    model = nn.Linear(3, 3)
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()

    def zero_grad_loss(model, batch, generator):
        return sum(p.sum() for p in model.parameters()) * 0.0, {}

    cfg = quiet(max_epochs=2, batch_size=4, lr=0.1, min_lr=0.01, weight_decay=0.5,
                warmup_fraction=0.25)
    result = Trainer(cfg).fit(model, zero_grad_loss, (torch.zeros(10, 3),))
    assert result.n_steps == 6
    factor = np.prod([1 - lr_at(s, 6, cfg) * cfg.weight_decay for s in range(6)])
    torch.testing.assert_close(model.weight.detach(), w0 * float(factor), rtol=1e-5, atol=0)
    assert torch.equal(model.bias.detach(), b0)


# -------------------------------------------------------------------- learning, logs, split


def test_tiny_regression_learns_and_writes_its_logs(tmp_path):
    X, y = regression_data(192, d=8)
    groups = np.arange(192) // 8  # e.g. 8 windows per recording
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 1))
    cfg = quiet(max_epochs=25, batch_size=32, lr=1e-2, val_fraction=0.25)
    result = Trainer(cfg, tmp_path).fit(model, mse, (X.numpy().astype(np.float64), y),
                                        groups=groups)
    hist = result.history
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] / 50
    assert min(r["val_loss"] for r in hist) < hist[0]["val_loss"] / 50
    # the carved rows are validation_split's, whole groups, and nothing else was trained on
    _, expected_val = validation_split(192, 0.25, cfg.seed, groups=groups)
    np.testing.assert_array_equal(result.val_index, expected_val)
    assert set(groups[result.val_index]).isdisjoint(groups[result.train_index])
    assert len(result.train_index) + len(result.val_index) == 192
    n_train = len(result.train_index)
    assert result.n_steps == 25 * math.ceil(n_train / 32) == hist[-1]["step"]
    best = int(np.argmin([r["val_loss"] for r in hist])) + 1
    assert result.best_epoch == best and not result.stopped_early
    assert (result.device, result.precision) == ("cpu", "fp32")
    # the logged lr is that of the epoch's last step
    total = result.n_steps
    assert [r["lr"] for r in hist] == [lr_at(r["step"] - 1, total, cfg) for r in hist]
    # the logged key "mse" is the row-weighted epoch mean, which equals train_loss here
    assert all(r["mse"] == pytest.approx(r["train_loss"]) for r in hist)

    with open(tmp_path / HISTORY_NAME, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["epoch", "step", "lr", "train_loss", "mse", "val_loss", "val_mse",
                             "seconds"]
    assert len(rows) == 25
    for row, ref in zip(rows, hist, strict=True):
        assert {k: float(v) for k, v in row.items()} == pytest.approx(ref)
    summary = json.loads((tmp_path / SUMMARY_NAME).read_text())
    assert summary["n_parameters"] == count_parameters(model) == 8 * 16 + 16 + 16 + 1
    assert summary["n_val"] == len(result.val_index) and summary["val_source"] == "carved"
    assert summary["best_epoch"] == best and summary["finished"] is True
    assert summary["config"]["lr"] == 1e-2 and summary["device"] == "cpu"
    assert len(summary["history"]) == 25


def test_validation_split_weighs_a_rare_class_as_much_as_a_common_one():
    # recordings that each hold many "common" rows and, in three of ten, a few "rare" ones (a
    # sleep stage seen in a few excerpts): a fifth of the common rows is two whole recordings,
    # and picking those by raw counts left the rare class out of validation altogether
    rare = [0, 0, 0, 0, 0, 0, 0, 6, 6, 6]
    groups = np.concatenate([np.full(30 + r, g) for g, r in enumerate(rare)])
    y = np.concatenate([np.r_[np.zeros(30), np.ones(r)] for r in rare])
    for seed in range(6):
        train, val = validation_split(len(y), 0.2, seed, y=y, groups=groups)
        assert set(groups[train]).isdisjoint(groups[val])
        assert (y[val] == 0).sum() == 60 and (y[val] == 1).sum() == 6  # the best whole-group split


def test_same_seed_bit_identical_weights_other_seed_differs():
    X, y = regression_data(40)

    def run(seed):
        model = dropout_mlp()
        Trainer(quiet(max_epochs=2, batch_size=8, seed=seed)).fit(model, noisy_mse, (X, y))
        return snapshot(model)

    first, second, other = run(0), run(0), run(1)
    assert same_weights(first, second)
    assert not any(torch.equal(first[k], other[k]) for k in first)


def test_validation_split_stratified_and_deterministic():
    y = np.repeat(["a", "b", "c"], [60, 30, 10])
    train, val = validation_split(100, 0.2, seed=0, y=y)
    assert {c: int((y[val] == c).sum()) for c in "abc"} == {"a": 12, "b": 6, "c": 2}
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(100))
    np.testing.assert_array_equal(val, validation_split(100, 0.2, seed=0, y=y)[1])
    assert not np.array_equal(val, validation_split(100, 0.2, seed=1, y=y)[1])
    # unstratified: round(fraction·n) rows
    assert len(validation_split(10, 0.3, seed=0)[1]) == 3


def test_validation_split_keeps_groups_whole_and_classes_balanced():
    rng = np.random.default_rng(0)
    sizes = rng.integers(3, 8, size=40)
    groups = np.repeat(np.arange(40), sizes)
    y = np.repeat(np.where(np.arange(40) % 4 == 0, "rare", "common"), sizes)  # one class/group
    n = len(groups)
    for seed in range(3):
        train, val = validation_split(n, 0.25, seed, groups=groups)
        assert set(groups[train]).isdisjoint(groups[val])
        assert abs(len(val) - 0.25 * n) <= sizes.max()
        train, val = validation_split(n, 0.25, seed, y=y, groups=groups)
        assert set(groups[train]).isdisjoint(groups[val])
        for c in ("rare", "common"):
            assert abs((y[val] == c).sum() - 0.25 * (y == c).sum()) <= sizes.max()
        np.testing.assert_array_equal(val, validation_split(n, 0.25, seed, y=y, groups=groups)[1])
    picks = {tuple(validation_split(n, 0.25, s, groups=groups)[1]) for s in range(5)}
    assert len(picks) > 1
    with pytest.raises(ValueError, match="one group .* or set TrainConfig.val_fraction=0"):
        validation_split(6, 0.5, 0, groups=np.zeros(6))
    with pytest.raises(ValueError, match="fraction"):
        validation_split(6, 0.0, 0)
    with pytest.raises(ValueError, match=r"y has shape \(5,\), expected \(6,\)"):
        validation_split(6, 0.5, 0, y=np.zeros(5))


# ------------------------------------------------------------------------- early stopping


@pytest.mark.parametrize("mode", ["min", "max"])
def test_early_stopping_stops_and_restores_the_best_weights(mode):
    # train targets 2x, validation targets 0.5x: w climbs from 0 past 0.5, so the validation
    # error falls, then rises.
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    x = torch.linspace(-1, 1, 16)[:, None]
    snapshots = []

    def val_fn(model, batch):
        xb, yb = batch
        snapshots.append(snapshot(model))
        err = F.mse_loss(model(xb), yb).item()
        return {"val_loss": err, "neg_err": -err}

    cfg = quiet(max_epochs=30, batch_size=16, lr=0.1, min_lr=0.1, warmup_fraction=0.0,
                weight_decay=0.0, patience=2, mode=mode,
                monitor="val_loss" if mode == "min" else "neg_err")
    result = Trainer(cfg).fit(model, mse, (x, 2 * x), (x, 0.5 * x), val_fn)
    errors = [r["val_loss"] for r in result.history]
    best = int(np.argmin(errors)) + 1
    assert result.stopped_early and result.best_epoch == best
    assert len(result.history) == best + cfg.patience < cfg.max_epochs
    assert len(snapshots) == len(result.history)  # one validation batch per epoch
    assert same_weights(model.state_dict(), snapshots[best - 1])
    assert not same_weights(model.state_dict(), snapshots[-1])
    assert 0.2 < model.weight.item() < 0.8


def test_val_fn_sees_the_whole_validation_set_once_per_epoch():
    # kappa-like scores do not average over batches, so val_fn must get every row at once
    X, y = regression_data(40)
    seen = []

    def val_fn(model, arrays):
        seen.append(len(arrays[0]))
        return {"val_loss": F.mse_loss(model(arrays[0]), arrays[1]).item()}

    Trainer(quiet(max_epochs=3, batch_size=4)).fit(nn.Linear(4, 1), mse, (X, y), (X[:13], y[:13]),
                                                    val_fn)
    assert seen == [13, 13, 13]


def test_patience_without_validation_and_unknown_monitor_are_errors():
    X, y = regression_data(16)
    with pytest.raises(ValueError, match="patience = 2 needs validation"):
        Trainer(quiet(patience=2)).fit(nn.Linear(4, 1), mse, (X, y))
    with pytest.raises(ValueError, match=r"monitor = 'auc' is not a validation key.*val_loss"):
        Trainer(quiet(max_epochs=1, patience=1, monitor="auc")).fit(
            nn.Linear(4, 1), mse, (X, y), (X, y))


# ------------------------------------------------------------------------------ weight EMA


def recorded_fit(config: TrainConfig, val_fn=None):
    """Fit a Linear model, recording its weight after every optimiser step."""
    X, y = regression_data(24)
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    after_step = [model.weight.detach().clone()]  # step 0: the initial weights
    hook = register_optimizer_step_post_hook(
        lambda opt, args, kwargs: after_step.append(model.weight.detach().clone()))
    try:
        result = Trainer(config).fit(model, mse, (X, y), (X[:8], y[:8]) if val_fn else None,
                                     val_fn=val_fn)
    finally:
        hook.remove()
    return model, after_step, result


def expected_ema(weights: list, decay: float, every: int, start: int) -> torch.Tensor:
    """The EMA of ``weights[0]`` (initial) … ``weights[-1]`` by the Trainer docstring's rule,
    written out independently of :func:`brainmill.training.ema_decay_at`."""
    ema, k = weights[0].clone(), 0
    for step, w in enumerate(weights[1:], start=1):
        if step <= start:
            ema = w.clone()
        elif step % every == 0:
            k += 1
            d = min(decay, 1 - (1 + k) ** (-2 / 3))
            ema = d * ema + (1 - d) * w
    return ema


def test_ema_decay_warms_up_to_its_ceiling():
    cfg = TrainConfig(ema_decay=0.99, ema_every=10, ema_start=100)
    assert ema_decay_at(110, cfg) == pytest.approx(1 - 2 ** (-2 / 3))  # first update
    assert ema_decay_at(200, cfg) == pytest.approx(1 - 11 ** (-2 / 3))
    assert ema_decay_at(100_000, cfg) == 0.99  # the ceiling


def test_ema_follows_its_schedule_and_is_the_final_model():
    config = quiet(max_epochs=3, batch_size=4, lr=5e-2, ema_decay=0.8, ema_every=2, ema_start=3)
    model, weights, _ = recorded_fit(config)
    assert len(weights) == 1 + 18
    want = expected_ema(weights, 0.8, 2, 3)
    torch.testing.assert_close(model.weight.detach(), want, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(model.weight.detach(), weights[-1])  # not the live weights
    # a plain run ends on the live weights
    plain, weights, _ = recorded_fit(quiet(max_epochs=3, batch_size=4, lr=5e-2))
    assert torch.equal(plain.weight.detach(), weights[-1])


def test_validation_and_model_selection_use_the_average():
    seen = []

    def val_fn(model, arrays):
        seen.append(model.weight.detach().clone())
        return {"val_loss": float(F.mse_loss(model(arrays[0]), arrays[1]))}

    config = quiet(max_epochs=2, batch_size=4, lr=5e-2, ema_decay=0.5)
    model, weights, result = recorded_fit(config, val_fn=val_fn)
    per_epoch = (len(weights) - 1) // 2
    assert len(seen) == 2
    for epoch, w in enumerate(seen, start=1):
        torch.testing.assert_close(w, expected_ema(weights[:1 + epoch * per_epoch], 0.5, 1, 0))
    # training goes on from the live weights after a validation, not from the average: the
    # weights after epoch 2 follow from the last live weights of epoch 1 (the recorded ones)
    assert not torch.equal(seen[0], weights[per_epoch])
    replay = recorded_fit(quiet(max_epochs=2, batch_size=4, lr=5e-2))[1]
    torch.testing.assert_close(replay[-1], weights[-1], rtol=0, atol=0)
    # the model returned is the average of the best epoch, not the live weights
    assert torch.equal(model.weight.detach(), seen[result.best_epoch - 1])
    assert not torch.equal(model.weight.detach(), weights[-1])


@pytest.mark.parametrize("name, value", [("ema_decay", 1.0), ("ema_decay", 0.0),
                                         ("ema_every", 0), ("ema_start", -1)])
def test_ema_settings_are_checked(name, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{name}"):
        TrainConfig(**{name: value})


# ------------------------------------------------------------------- checkpoints and resume

RESUME_CONFIG = {"max_epochs": 3, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 3,
                 "val_fraction": 0.2, "seed": 3, "progress": False}
# 40 training rows: 5 batches per epoch, checkpoints after steps 3, 5 (epoch end) and 6; the
# kill comes at step 8, in the middle of epoch 2, two steps after the last checkpoint.
KILL_AT_STEP = 8


# EMA on: the average must survive the kill as well (updated every 2nd step after step 2)
EMA_CONFIG = {"ema_decay": 0.9, "ema_every": 2, "ema_start": 2}


def resume_fit(run_dir, kill_at=None, log=None, ema=False):
    """One fit of the resume test; SIGKILLs its own process at training step ``kill_at``.

    Also run by the subprocess of :func:`test_resume_after_sigkill_matches_uninterrupted_run`.
    """
    X, y = regression_data(50)
    model = dropout_mlp()
    steps = 0

    def loss_fn(model, batch, generator):
        nonlocal steps
        if model.training:
            if steps == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            steps += 1
        return noisy_mse(model, batch, generator)

    config = TrainConfig(**RESUME_CONFIG, **(EMA_CONFIG if ema else {}))
    result = Trainer(config, run_dir, log=log).fit(model, loss_fn, (X, y))
    return model, result


@pytest.mark.parametrize("ema", [False, True], ids=["plain", "ema"])
def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, ema):
    killed = tmp_path / "killed"
    # the same torch thread count in the child as here (a stage run earlier in this process
    # may have set it): another count can change the last bit of the weights
    code = (f"import sys, torch; torch.set_num_threads({torch.get_num_threads()}); "
            f"sys.path.insert(0, {str(TESTS_DIR)!r}); import test_training; "
            f"test_training.resume_fit({str(killed)!r}, kill_at={KILL_AT_STEP}, ema={ema})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    checkpoint = torch.load(killed / CHECKPOINT_NAME, weights_only=True)
    state = checkpoint["state"]
    assert (state["step"], state["epoch"], state["position"]) == (6, 1, 1)  # mid-epoch
    assert not state["finished"] and len(state["history"]) == 1

    assert (state["ema"] is not None) == ema
    logs = []
    resumed, resumed_result = resume_fit(killed, log=logs.append, ema=ema)
    assert any("resuming from step 6" in line for line in logs)
    reference, reference_result = resume_fit(tmp_path / "uninterrupted", ema=ema)

    assert same_weights(resumed.state_dict(), reference.state_dict())
    assert resumed_result.n_steps == reference_result.n_steps == 15
    assert resumed_result.best_epoch == reference_result.best_epoch

    def without_seconds(history):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history]

    assert without_seconds(resumed_result.history) == without_seconds(reference_result.history)


def test_finished_run_returns_at_once_and_other_runs_are_refused(tmp_path):
    X, y = regression_data(32)
    model = dropout_mlp()
    cfg = quiet(max_epochs=2, batch_size=8)
    result = Trainer(cfg, tmp_path).fit(model, noisy_mse, (X, y))
    final = snapshot(model)
    checkpoint = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert {"torch", "numpy", "python", "generator"} <= set(checkpoint["rng"])
    assert checkpoint["state"]["finished"] and checkpoint["optimizer"]["state"]
    assert same_weights(checkpoint["model"], final)

    def must_not_train(*args):
        raise AssertionError("a finished run was trained again")

    other = dropout_mlp(seed=5)
    again = Trainer(cfg, tmp_path).fit(other, must_not_train, (X, y))
    assert same_weights(other.state_dict(), final)
    assert again.n_steps == result.n_steps == 8 and again.history == result.history

    path = re.escape(str(tmp_path / CHECKPOINT_NAME))
    with pytest.raises(ValueError, match=path) as err:
        Trainer(quiet(max_epochs=2, batch_size=8, lr=2e-3), tmp_path).fit(
            dropout_mlp(), noisy_mse, (X, y))
    assert "config.lr" in str(err.value) and "delete it" in str(err.value)
    with pytest.raises(ValueError, match=rf"{path} .*differs in: train"):
        Trainer(cfg, tmp_path).fit(dropout_mlp(), noisy_mse, (X[:24], y[:24]))


class MethodLoss(nn.Module):
    """A model whose training loss is a method of its own, not ``forward`` (as the tokenizer's
    ``training_loss`` and the diffusion model's ``loss``)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

    def loss(self, x, y):
        return F.mse_loss(self.net(x), y)


def test_compile_compiles_the_loss_so_methods_other_than_forward_are_compiled(tmp_path,
                                                                            monkeypatch):
    compiled, graphs = [], []
    real_compile = torch.compile

    def counting(gm, example_inputs):  # dynamo without inductor: seconds, not minutes
        graphs.append(gm)
        return gm.forward

    def eager_compile(fn, **kwargs):
        compiled.append(fn)
        return real_compile(fn, backend=counting)

    monkeypatch.setattr(torch, "compile", eager_compile)
    X, y = regression_data(16)
    seen = []

    def loss_fn(model, batch, generator):
        seen.append(type(model).__name__)
        return model.loss(*batch), {}

    torch.manual_seed(0)
    model = MethodLoss()
    torch.manual_seed(0)
    eager_model = MethodLoss()
    cfg = dict(max_epochs=2, batch_size=8)
    Trainer(quiet(**cfg, compile=True), tmp_path / "c").fit(model, loss_fn, (X, y))
    assert compiled == [loss_fn] and graphs, "the loss (and the model's method) was compiled"
    n_graphs = len(graphs)
    Trainer(quiet(**cfg), tmp_path / "e").fit(eager_model, loss_fn, (X, y))
    assert len(graphs) == n_graphs  # the eager run compiled nothing
    assert set(seen) == {"MethodLoss"}  # the loss gets the module itself
    for a, b in zip(model.parameters(), eager_model.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    saved = torch.load(tmp_path / "c" / CHECKPOINT_NAME, weights_only=True)["model"]
    assert list(saved) == list(model.state_dict()) and not any("_orig_mod" in k for k in saved)


# ------------------------------------------------------------------ precision, device, import


def test_bf16_autocast_runs_on_cpu_and_auto_is_fp32():
    X, y = regression_data(32)
    dtypes = []

    def loss_fn(model, batch, generator):
        x, t = batch
        out = model(x)
        dtypes.append(out.dtype)
        return F.mse_loss(out.float(), t), {}

    model = nn.Linear(4, 1)
    result = Trainer(quiet(max_epochs=2, batch_size=16, precision="bf16", device="cpu")).fit(
        model, loss_fn, (X, y))
    assert result.precision == "bf16" and set(dtypes) == {torch.bfloat16}
    assert all(math.isfinite(r["train_loss"]) for r in result.history)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert model.weight.dtype == torch.float32  # autocast: the weights stay fp32

    dtypes.clear()
    result = Trainer(quiet(max_epochs=1, batch_size=16, device="cpu")).fit(
        nn.Linear(4, 1), loss_fn, (X, y))
    assert result.precision == "fp32" and set(dtypes) == {torch.float32}


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_a_clear_error():
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="'cuda' was asked for but CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="'cuda:1' was asked for.*device='cpu'"):
        Trainer(quiet(device="cuda:1")).fit(nn.Linear(4, 1), mse, regression_data(8))


@needs_cuda
def test_cuda_bf16_auto_and_resume_after_a_crash(tmp_path):
    X, y = regression_data(40)
    cfg = quiet(max_epochs=2, batch_size=8, checkpoint_every=3, device="cuda")
    reference = dropout_mlp()
    result = Trainer(cfg, tmp_path / "ref").fit(reference, noisy_mse, (X, y))
    assert result.precision == "bf16" and result.device.startswith("cuda")
    assert all(math.isfinite(r["train_loss"]) for r in result.history)

    steps = 0

    def crash_at_step_7(model, batch, generator):
        nonlocal steps
        assert generator.device.type == "cuda"
        steps += 1
        if steps == 8:
            raise KeyboardInterrupt
        return noisy_mse(model, batch, generator)

    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, tmp_path / "crash").fit(dropout_mlp(), crash_at_step_7, (X, y))
    resumed = dropout_mlp()
    Trainer(cfg, tmp_path / "crash").fit(resumed, noisy_mse, (X, y))
    assert same_weights(resumed.state_dict(), reference.state_dict())


def test_import_needs_only_torch_and_numpy():
    code = ("import sys, brainmill.training; "
            "print(sorted(m for m in ('scipy', 'sklearn', 'mne', 'pandas', 'pydantic') "
            "if m in sys.modules), 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[]", "True"]
    assert training.__doc__ and "AdamW" in training.__doc__


# ------------------------------------------------------- CUDA-only logic, checked on the CPU


def test_precision_auto_and_bf16_follow_the_training_devices_capability(monkeypatch):
    """bf16 only where the card computes it natively (capability ≥ 8.0), asked of that card."""
    asked = []

    def capability(device):
        asked.append(device)
        return {0: (9, 0), 1: (7, 0)}[device.index]

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Tesla V100")
    assert training._resolve_precision("auto", torch.device("cuda", 0)) == "bf16"
    assert training._resolve_precision("auto", torch.device("cuda", 1)) == "fp32"
    with pytest.raises(ValueError, match="V100 does not compute in bfloat16 natively"):
        training._resolve_precision("bf16", torch.device("cuda", 1))
    assert [d.index for d in asked] == [0, 1, 1]
    assert training._resolve_precision("auto", torch.device("cpu")) == "fp32"


def test_fp32_on_cuda_turns_tf32_convolutions_off_and_restores_the_setting():
    before = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = True
        with fp32_scope(torch.device("cuda", 0), "fp32"):
            assert torch.backends.cudnn.allow_tf32 is False
        assert torch.backends.cudnn.allow_tf32 is True
        with pytest.raises(RuntimeError), fp32_scope(torch.device("cuda", 0), "fp32"):
            raise RuntimeError("inside")
        assert torch.backends.cudnn.allow_tf32 is True
        with fp32_scope(torch.device("cpu"), "fp32"):
            assert torch.backends.cudnn.allow_tf32 is True
    finally:
        torch.backends.cudnn.allow_tf32 = before


def test_cuda_rng_state_is_the_training_devices_only(monkeypatch):
    """Saved and restored for the training card alone, so a run checkpointed with several
    visible GPUs resumes with one; a checkpoint holding every card's state still loads."""
    saved, restored = [], []
    monkeypatch.setattr(torch.cuda, "get_rng_state",
                        lambda device: saved.append(device) or torch.tensor([7], dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "set_rng_state",
                        lambda state, device: restored.append((state.tolist(), device)))
    generator = torch.Generator()
    device = torch.device("cuda", 1)
    state = training._rng_state(device, generator)
    assert saved == [device] and state["cuda"].tolist() == [7]
    training._set_rng_state(state, device, generator)
    old_format = {**state, "cuda": [torch.tensor([1], dtype=torch.uint8),
                                    torch.tensor([2], dtype=torch.uint8)]}
    training._set_rng_state(old_format, device, generator)
    assert restored == [([7], device), ([2], device)]
