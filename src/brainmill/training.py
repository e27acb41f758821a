"""Training engine: one resumable loop for every torch model brainmill trains.

:class:`Trainer` fits any ``nn.Module`` to tensors with a caller-given ``loss_fn(model, batch,
generator) -> (loss, logs)``; the model decides what a loss is (tokenizer reconstruction, masked
token prediction, classification), the trainer owns everything else. The choices:

- **Optimiser**: AdamW (decoupled weight decay, Loshchilov & Hutter, arXiv 1711.05101). Weight
  decay only on the weight matrices/kernels of ``Linear``/``Conv``/``MultiheadAttention``
  layers; biases, norm weights, embeddings, position tables, free tokens and other
  parameters are not decayed (:func:`parameter_groups`).
- **Schedule**: per optimiser step, linear warm-up over ``floor(warmup_fraction·total)`` steps
  from ``lr/(W+1)`` to ``lr``, then cosine down to ``min_lr`` at the last step
  (:func:`lr_at`). Its only state is the step counter.
- **Batches**: epoch ``e`` visits the training rows in the permutation drawn by
  ``numpy.random.default_rng([seed, e])``, in batches of ``batch_size`` (the last one may be
  smaller), so a resumed run sees exactly the batches of an uninterrupted one.
- **Randomness**: :func:`seed_everything` at the start of :meth:`Trainer.fit`; the loss draws its
  masks from a ``torch.Generator`` on the model's device that the trainer seeds and checkpoints.
  On CPU two fits with the same seed give bit-identical weights.
- **Precision**: ``bf16`` runs forward and loss under ``torch.autocast(dtype=bfloat16)`` (fp32
  weights, no loss scaling: bf16 has fp32's exponent range); ``auto`` is bf16 on CUDA, fp32 on
  CPU.
- **EMA of weights** (``ema_decay``): up to step ``ema_start`` the average copies the
  weights; then after every ``ema_every``-th optimiser step, ``ema ← d_k·ema + (1 − d_k)·θ``
  for every floating-point parameter, with the warm-up ``d_k = min(ema_decay,
  1 − (1 + k)^(−2/3))`` at the ``k``-th update (:func:`ema_decay_at`; the defaults of
  ``ema-pytorch``, which EEGDM uses), so short runs are not dominated by early weights.
  Validation, model selection and the returned model use the averaged weights; buffers are
  the live model's.
- **Validation** (given, or carved from the training rows by :func:`validation_split`): after
  every epoch, in eval mode under ``no_grad``, averaged over rows. Early stopping on
  ``monitor``/``mode`` after ``patience`` epochs without a strict improvement; the best
  weights are loaded into the model at the end (the last weights when there is no validation).
- **Checkpoints** (with a ``run_dir``): ``checkpoint.pt`` every ``checkpoint_every`` steps and at
  every epoch end, written atomically, holding everything needed to continue bit-exactly on
  the CPU: weights, optimiser, step/epoch/position, all RNG states, early-stopping state,
  history. (On CUDA the continuation follows the same data and random draws, but not bit for
  bit: ``index_add_``, ``bincount``, attention and cuDNN convolution backward passes are not
  deterministic there.) A later ``fit`` with the same fingerprint resumes from it;
  ``history.csv`` and ``training.json`` are rewritten every epoch.

Only torch and numpy are imported (tqdm optionally, for the progress bar).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
import math
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from brainmill.io import atomic_path, write_json

__all__ = [
    "CHECKPOINT_NAME",
    "HISTORY_NAME",
    "SUMMARY_NAME",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "count_parameters",
    "ema_decay_at",
    "lr_at",
    "parameter_groups",
    "resolve_device",
    "seed_everything",
    "validation_split",
]

CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.csv"
SUMMARY_NAME = "training.json"

LossFn = Callable[[nn.Module, tuple[Tensor, ...], torch.Generator], tuple[Tensor, dict[str, float]]]
ValFn = Callable[[nn.Module, tuple[Tensor, ...]], dict[str, float]]

_DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?")
_PRECISIONS = ("auto", "fp32", "bf16")
_CHECKPOINT_FORMAT = 1
# TrainConfig fields that change the trained weights (device and precision enter resolved).
_RESULT_FIELDS = ("max_epochs", "batch_size", "lr", "min_lr", "warmup_fraction", "weight_decay",
                  "betas", "grad_clip", "compile", "val_fraction", "patience", "monitor", "mode",
                  "seed")
# Part of the fingerprint only when averaging is on, so runs without EMA keep their checkpoints.
_EMA_FIELDS = ("ema_decay", "ema_every", "ema_start")
_RESERVED_COLUMNS = ("epoch", "step", "lr", "train_loss", "seconds")
_DECAYED_MODULES = (nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
                    nn.ConvTranspose2d, nn.ConvTranspose3d)


# ------------------------------------------------------------------------------ configuration


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float | np.integer | np.floating)
            and not isinstance(value, bool) and math.isfinite(value))


@dataclass
class TrainConfig:
    """How :class:`Trainer` optimises a model. Validated on construction.

    Attributes
    ----------
    max_epochs : int
        Passes over the training rows. Default 20.
    batch_size : int
        Rows per optimiser step (the last batch of an epoch may be smaller). Default 64.
    lr : float
        Peak learning rate, reached at the end of the warm-up. Default 1e-3.
    min_lr : float
        Learning rate of the last step, the end of the cosine decay; at most ``lr`` (a larger
        value would make the "decay" rise). Default 1e-5.
    warmup_fraction : float
        Fraction of all optimiser steps spent in the linear warm-up, in ``[0, 1)``. Default 0.1.
    weight_decay : float
        Decoupled AdamW weight decay of the weight matrices (see :func:`parameter_groups`).
        Default 1e-2.
    betas : tuple[float, float]
        AdamW moment decays. Default (0.9, 0.99).
    grad_clip : float | None
        Clip the global gradient L2 norm to this value; None disables. Default 1.0.
    device : str
        ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    precision : str
        ``auto`` (bf16 on CUDA, fp32 on CPU), ``fp32`` or ``bf16`` (autocast; also on CPU).
    compile : bool
        Train through ``torch.compile`` of the loss function, so that what it calls on the
        model (``forward`` or any other method, e.g. a model's own ``loss``) is compiled.
        Default False.
    val_fraction : float
        When ``fit`` gets no ``val``, the fraction of the training rows held out for validation
        (0: no validation). Default 0.
    patience : int | None
        Stop after this many epochs without improvement of ``monitor``; needs validation.
        None: never stop early.
    monitor : str
        Validation key that selects the best epoch. Default ``val_loss``.
    mode : str
        ``min`` or ``max``: whether a smaller or a larger ``monitor`` is better.
    checkpoint_every : int
        Optimiser steps between checkpoints within an epoch; 0: only at epoch ends.
    ema_decay : float | None
        Keep an exponential moving average of the parameters with this (largest) decay (e.g.
        0.999, as EEGDM), after a warm-up (:func:`ema_decay_at`); validation and the final
        model use it. None: no averaging. Default None.
    ema_every : int
        Optimiser steps between EMA updates. Default 1 (EEGDM: 10).
    ema_start : int
        Steps during which the average just copies the weights. Default 0 (EEGDM: 100).
    seed : int
        Seed of every random number generator, in ``[0, 2**32)``. Default 0.
    progress : bool
        Show a tqdm progress bar on stderr when tqdm is installed. Default True.
    """

    max_epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_fraction: float = 0.1
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float | None = 1.0
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    val_fraction: float = 0.0
    patience: int | None = None
    monitor: str = "val_loss"
    mode: str = "min"
    checkpoint_every: int = 0
    ema_decay: float | None = None
    ema_every: int = 1
    ema_start: int = 0
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        def require(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise ValueError(f"TrainConfig.{name} = {getattr(self, name)!r}: expected "
                                 f"{expected}")

        require(_is_int(self.max_epochs) and self.max_epochs >= 1, "max_epochs", "an int >= 1")
        require(_is_int(self.batch_size) and self.batch_size >= 1, "batch_size", "an int >= 1")
        require(_is_number(self.lr) and self.lr > 0, "lr", "a finite number > 0")
        require(_is_number(self.min_lr) and self.min_lr >= 0, "min_lr", "a finite number >= 0")
        if self.min_lr > self.lr:
            raise ValueError(f"TrainConfig.min_lr = {self.min_lr!r} is above lr = {self.lr!r}: "
                             "the cosine schedule decays lr to min_lr, so it would rise instead; "
                             "set min_lr <= lr")
        require(_is_number(self.warmup_fraction) and 0 <= self.warmup_fraction < 1,
                "warmup_fraction", "a number in [0, 1)")
        require(_is_number(self.weight_decay) and self.weight_decay >= 0, "weight_decay",
                "a finite number >= 0")
        require(isinstance(self.betas, tuple | list) and len(self.betas) == 2
                and all(_is_number(b) and 0 <= b < 1 for b in self.betas), "betas",
                "two numbers in [0, 1)")
        self.betas = (float(self.betas[0]), float(self.betas[1]))  # YAML/JSON give lists
        require(self.grad_clip is None or (_is_number(self.grad_clip) and self.grad_clip > 0),
                "grad_clip", "None or a finite number > 0")
        require(isinstance(self.device, str) and _DEVICE_RE.fullmatch(self.device) is not None,
                "device", "'auto', 'cpu', 'cuda' or 'cuda:N'")
        require(self.precision in _PRECISIONS, "precision", f"one of {_PRECISIONS}")
        require(isinstance(self.compile, bool), "compile", "a bool")
        require(_is_number(self.val_fraction) and 0 <= self.val_fraction < 1, "val_fraction",
                "a number in [0, 1)")
        require(self.patience is None or (_is_int(self.patience) and self.patience >= 1),
                "patience", "None or an int >= 1")
        require(isinstance(self.monitor, str) and self.monitor != "", "monitor",
                "a non-empty validation key such as 'val_loss'")
        require(self.mode in ("min", "max"), "mode", "'min' or 'max'")
        require(_is_int(self.checkpoint_every) and self.checkpoint_every >= 0,
                "checkpoint_every", "an int >= 0 (0: checkpoint at epoch ends only)")
        require(self.ema_decay is None or (_is_number(self.ema_decay) and 0 < self.ema_decay < 1),
                "ema_decay", "None or a number in (0, 1)")
        require(_is_int(self.ema_every) and self.ema_every >= 1, "ema_every", "an int >= 1")
        require(_is_int(self.ema_start) and self.ema_start >= 0, "ema_start", "an int >= 0")
        require(_is_int(self.seed) and 0 <= self.seed < 2**32, "seed", "an int in [0, 2**32)")
        require(isinstance(self.progress, bool), "progress", "a bool")


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns; the model itself is trained in place.

    Attributes
    ----------
    history : list[dict[str, float]]
        One row per epoch: ``epoch`` (1-based), ``step`` (optimiser steps so far), ``lr`` (of
        the epoch's last step), ``train_loss`` and every key the loss logged (row-weighted means
        over the epoch), the validation keys, ``seconds``.
    best_epoch : int | None
        1-based epoch whose weights the model holds; None when no validation ran (the model
        then holds the last weights).
    stopped_early : bool
        Whether ``patience`` ended the run before ``max_epochs``.
    device : str
        The device trained on, e.g. ``cpu`` or ``cuda:0``.
    precision : str
        ``fp32`` or ``bf16``.
    n_steps : int
        Optimiser steps taken.
    seconds : float
        Wall time of the training, summed over resumed runs.
    train_index : ndarray, shape (n_train,)
        Rows of the ``train`` arrays given to ``fit`` that were trained on.
    val_index : ndarray, shape (n_val,) | None
        Rows of ``train`` held out for validation when they were carved from it; None when
        ``val`` was given separately or there was no validation.
    """

    history: list[dict[str, float]]
    best_epoch: int | None
    stopped_early: bool
    device: str
    precision: str
    n_steps: int
    seconds: float
    train_index: np.ndarray
    val_index: np.ndarray | None

    def summary(self) -> dict[str, Any]:
        """JSON-able summary (everything but the row indices, which are counted)."""
        return {
            "history": self.history,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "device": str(self.device),
            "precision": self.precision,
            "n_steps": self.n_steps,
            "seconds": self.seconds,
            "n_train": int(len(self.train_index)),
            "n_val": None if self.val_index is None else int(len(self.val_index)),
        }


# ----------------------------------------------------------------------------------- helpers


def resolve_device(name: str) -> torch.device:
    """Turn a :attr:`TrainConfig.device` name into a torch device, checking it exists.

    Parameters
    ----------
    name : str
        ``auto`` (``cuda`` when available, else ``cpu``), ``cpu``, ``cuda`` or ``cuda:N``.

    Returns
    -------
    torch.device
        With its index for CUDA (``cuda`` becomes ``cuda:<current device>``).

    Raises
    ------
    ValueError
        For another name, or a CUDA device this machine does not have.
    """
    if not isinstance(name, str) or _DEVICE_RE.fullmatch(name) is None:
        raise ValueError(f"device {name!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r} was asked for but CUDA is not available (torch "
                f"{torch.__version__}, built for CUDA {torch.version.cuda}); use device='cpu' or "
                "'auto', or install a CUDA build of torch on a machine with a GPU")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {name!r}: this machine has {count} CUDA device(s), "
                             f"cuda:0 to cuda:{count - 1}")
        if device.index is None:  # name the card, for logs and reports
            device = torch.device("cuda", torch.cuda.current_device())
    return device


@contextlib.contextmanager
def full_fp32_convolutions():
    """cuDNN convolutions in full fp32 inside the block (torch lets them use TF32 by default).

    ``precision="fp32"`` promises fp32 arithmetic; with TF32 (10-bit mantissa) every
    ``Conv1d`` on an Ampere or newer GPU would run at lower precision than the linear layers.
    The previous setting is restored after the block.
    """
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = previous


def fp32_scope(device: torch.device, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """:func:`full_fp32_convolutions` for ``precision="fp32"`` on a CUDA device, else nothing."""
    if device.type == "cuda" and precision == "fp32":
        return full_fp32_convolutions()
    return contextlib.nullcontext()


def _native_bf16(device: torch.device) -> bool:
    """Whether this CUDA device computes in bfloat16 natively (compute capability ≥ 8.0).

    ``torch.cuda.is_bf16_supported()`` asks about the current device, not ``device``, and
    counts emulation (a V100 or T4 would say yes and run bf16 slowly).
    """
    return torch.cuda.get_device_capability(device) >= (8, 0)


def _resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        if device.type == "cuda" and _native_bf16(device):
            return "bf16"
        return "fp32"
    if precision == "bf16" and device.type == "cuda" and not _native_bf16(device):
        raise ValueError(f"precision 'bf16' was asked for but {torch.cuda.get_device_name(device)} "
                         "does not compute in bfloat16 natively (compute capability below 8.0); "
                         "use precision='fp32'")
    return precision


def set_threads(threads: int | None) -> None:
    """Use the job's cores for torch (Snakemake's ``threads``)."""
    if threads:
        torch.set_num_threads(max(1, int(threads)))


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch (CPU and every CUDA device).

    Parameters
    ----------
    seed : int
        In ``[0, 2**32)`` (numpy's limit).
    """
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the legacy global state is what we seed
    torch.manual_seed(seed)


def lr_at(step: int, total_steps: int, config: TrainConfig) -> float:
    """Learning rate of optimiser step ``step`` (0-based) out of ``total_steps``.

    With ``W = floor(warmup_fraction·total_steps)`` warm-up steps:

    - ``step < W``: ``lr·(step + 1)/(W + 1)`` (linear, from about 0);
    - ``step >= W``: ``min_lr + (lr − min_lr)·(1 + cos(π·p))/2`` with
      ``p = (step − W)/(total_steps − 1 − W)`` clipped to ``[0, 1]``, so step ``W`` uses ``lr``
      and the last step ``total_steps − 1`` uses ``min_lr``.

    Parameters
    ----------
    step : int
        Steps already taken, >= 0.
    total_steps : int
        Steps of the whole run, >= 1.
    config : TrainConfig
        Supplies ``lr``, ``min_lr`` and ``warmup_fraction``.

    Returns
    -------
    float
    """
    if total_steps < 1:
        raise ValueError(f"lr_at: total_steps = {total_steps}, expected >= 1")
    if step < 0:
        raise ValueError(f"lr_at: step = {step}, expected >= 0")
    warmup = math.floor(config.warmup_fraction * total_steps + 1e-9)
    if step < warmup:
        return config.lr * (step + 1) / (warmup + 1)
    span = total_steps - 1 - warmup
    progress = min(1.0, (step - warmup) / span) if span > 0 else float(step > warmup)
    return config.min_lr + (config.lr - config.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def ema_decay_at(step: int, config: TrainConfig) -> float:
    """Decay of the EMA update after optimiser step ``step`` (1-based; past ``ema_start``).

    ``min(ema_decay, 1 − (1 + k)^(−2/3))`` where ``k`` counts the updates so far, this one
    included: the multiples of ``ema_every`` in ``(ema_start, step]``.
    """
    k = step // config.ema_every - config.ema_start // config.ema_every
    return min(float(config.ema_decay), 1.0 - (1.0 + k) ** (-2.0 / 3.0))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (shared parameters counted once).

    Parameters
    ----------
    model : nn.Module
    trainable_only : bool
        Count only parameters with ``requires_grad``. Default False.

    Returns
    -------
    int
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split the trainable parameters into a decayed and an undecayed AdamW group.

    Decayed: the ``weight`` of ``Linear``, ``Bilinear``, ``Conv*d``, ``ConvTranspose*d`` layers
    (subclasses included) and the input projections of ``nn.MultiheadAttention``. Everything
    else (biases, norm scales, embedding and position tables, learned tokens, activation or SSM
    parameters) is not: decay would pull those towards 0, which is not the prior they need.

    Parameters
    ----------
    model : nn.Module
    weight_decay : float

    Returns
    -------
    list of dict
        ``[{"params": decayed, "weight_decay": weight_decay}, {"params": rest,
        "weight_decay": 0.0}]``, leaving out an empty group.
    """
    decay: list[nn.Parameter] = []
    rest: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen or not param.requires_grad:
                continue
            seen.add(id(param))
            is_matrix = param.ndim >= 2 and (
                (isinstance(module, _DECAYED_MODULES) and name == "weight")
                or (isinstance(module, nn.MultiheadAttention) and name.endswith("proj_weight")))
            (decay if is_matrix else rest).append(param)
    if not decay and not rest:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    groups = [{"params": decay, "weight_decay": float(weight_decay)},
              {"params": rest, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def window_epochs(n_epochs: int, n_channels: int, first: int = 0) -> np.ndarray:
    """The epoch of each single-channel window cut epoch-major from ``(n_epochs, n_channels,
    n_times)`` epochs (``X.reshape(-1, 1, n_times)``): shape ``(n_epochs·n_channels,)``,
    numbered from ``first`` (to number the epochs of several subjects apart)."""
    return np.repeat(first + np.arange(n_epochs), n_channels)


def validation_split(
    n: int,
    fraction: float,
    seed: int,
    y: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out about ``fraction`` of ``n`` rows for validation, deterministically in ``seed``.

    - neither ``y`` nor ``groups``: a random ``round(fraction·n)`` rows;
    - ``y``: the same fraction of every class, ``round(fraction·n_c)`` rows of class ``c``;
    - ``groups``: whole groups only, chosen greedily: at each step the group that brings the
      validation set's per-class row counts (one class when ``y`` is None) closest to
      ``fraction`` times the class totals, the distance being the sum over classes of each
      class's deviation as a share of its total, so a rare class weighs as much as a common
      one. It stops when no group brings it closer (the first group is taken even if it
      overshoots, so validation is never empty; if every group was taken, the last is given
      back to training). Ties go to the first group of a random order drawn from ``seed``;
      so class proportions are kept as far as whole groups allow. The cost grows with the
      square of the number of groups: meant for recordings or segments, not single rows.

    Parameters
    ----------
    n : int
        Number of rows, >= 2.
    fraction : float
        In ``(0, 1)``.
    seed : int
        Seed of ``numpy.random.default_rng``.
    y : ndarray, shape (n,) | None
        Class labels to stratify by.
    groups : ndarray, shape (n,) | None
        Group labels (e.g. recording or segment): a group is never split.

    Returns
    -------
    train_index, val_index : ndarray of int64
        Sorted, disjoint, together ``arange(n)``; both non-empty.

    Raises
    ------
    ValueError
        Bad arguments, a single group, or a fraction that leaves one side empty.
    """
    if not _is_int(n) or n < 2:
        raise ValueError(f"validation_split: n = {n!r}, expected an int >= 2 rows")
    if not (_is_number(fraction) and 0 < fraction < 1):
        raise ValueError(f"validation_split: fraction = {fraction!r}, expected a number in (0, 1)")
    for label, values in (("y", y), ("groups", groups)):
        if values is not None and np.shape(values) != (n,):
            raise ValueError(f"validation_split: {label} has shape {np.shape(values)}, expected "
                             f"({n},), one label per row")
    rng = np.random.default_rng(seed)
    if groups is None:
        if y is None:
            n_val = min(max(round(fraction * n), 1), n - 1)
            val = rng.permutation(n)[:n_val]
        else:
            _, y_codes = np.unique(np.asarray(y), return_inverse=True)
            parts = []
            for c in range(y_codes.max() + 1):
                members = rng.permutation(np.flatnonzero(y_codes == c))
                parts.append(members[:round(fraction * len(members))])
            val = np.concatenate(parts)
    else:
        _, g_codes = np.unique(np.asarray(groups), return_inverse=True)
        n_groups = g_codes.max() + 1
        if n_groups < 2:
            raise ValueError("validation_split: all rows belong to one group (e.g. every "
                             "window comes from one epoch), so no whole group can be held out; "
                             "pass separate validation data or more groups, or set "
                             "TrainConfig.val_fraction=0 to train without validation")
        y_codes = (np.zeros(n, dtype=np.int64) if y is None
                   else np.unique(np.asarray(y), return_inverse=True)[1])
        counts = np.zeros((n_groups, y_codes.max() + 1))
        np.add.at(counts, (g_codes, y_codes), 1.0)
        totals = counts.sum(axis=0)
        target, weight = fraction * totals, 1.0 / totals
        order = rng.permutation(n_groups)  # ties go to the first in this order
        pool = counts[order]
        taken = np.zeros(n_groups, dtype=bool)  # in ``order``'s positions
        current, distance = np.zeros_like(target), fraction * len(totals)
        last = -1
        while not taken.all():
            after = np.abs(current + pool - target) @ weight
            after[taken] = np.inf
            best = int(np.argmin(after))
            if after[best] >= distance and taken.any():
                break  # the first group is taken even if it overshoots: val must not be empty
            taken[best], last = True, best
            current, distance = current + pool[best], after[best]
        if taken.all():
            taken[last] = False
        val = np.flatnonzero(np.isin(g_codes, order[taken]))
    val = np.sort(val).astype(np.int64)
    if len(val) == 0 or len(val) == n:
        raise ValueError(f"validation_split: fraction = {fraction} of {n} rows leaves "
                         f"{'no validation' if len(val) == 0 else 'no training'} rows (classes "
                         "too small?); choose another fraction or pass validation data")
    train = np.setdiff1d(np.arange(n, dtype=np.int64), val)
    return train, val


def _as_tensors(arrays: Sequence[Tensor | np.ndarray], what: str) -> list[Tensor]:
    """CPU tensors with a common first axis; numpy floats become torch's default dtype."""
    if isinstance(arrays, Tensor | np.ndarray) or not isinstance(arrays, Sequence):
        raise TypeError(f"{what} must be a sequence of arrays such as (X, y), got "
                        f"{type(arrays).__name__}; wrap a single array as ({what[0]},)")
    if len(arrays) == 0:
        raise ValueError(f"{what} is empty: expected at least one array")
    out = []
    for i, a in enumerate(arrays):
        if isinstance(a, np.ndarray):
            t = torch.from_numpy(np.ascontiguousarray(a))
            if t.is_floating_point():
                t = t.to(torch.get_default_dtype())
        elif isinstance(a, Tensor):
            t = a.detach()
        else:
            raise TypeError(f"{what}[{i}] is a {type(a).__name__}: expected a torch.Tensor or a "
                            "numpy array")
        if t.ndim == 0:
            raise ValueError(f"{what}[{i}] is a scalar: expected rows along the first axis")
        out.append(t)
    lengths = [len(t) for t in out]
    if len(set(lengths)) != 1:
        raise ValueError(f"the arrays of {what} have first axes {lengths}: expected one row "
                         "count for all of them")
    if lengths[0] == 0:
        raise ValueError(f"{what} has no rows")
    return out


# ------------------------------------------------------------------------------------ trainer


@dataclass
class _State:
    """Everything that changes while training; what a checkpoint restores."""

    step: int = 0
    epoch: int = 0  # epochs completed
    position: int = 0  # batches of the current epoch completed
    history: list[dict[str, float]] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int | None = None
    best_state: dict[str, Tensor] | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    finished: bool = False
    seconds: float = 0.0  # wall time of earlier runs
    ema: dict[str, Tensor] | None = None  # averaged floating-point parameters (on the device)
    # running sums of the current epoch: rows, loss·rows, log·rows, lr of the last step, seconds
    epoch_sums: dict[str, Any] = field(default_factory=dict)


def _fresh_sums() -> dict[str, Any]:
    return {"n": 0, "loss": 0.0, "logs": {}, "lr": 0.0, "seconds": 0.0}


def _rng_state(device: torch.device, generator: torch.Generator) -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    return {
        "torch": torch.get_rng_state(),
        # the training device's state only: a run resumed with fewer visible GPUs (a requeued
        # cluster job) has no generator for the others
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        # numpy's keys as a tensor so the checkpoint loads with weights_only=True
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
        "generator": generator.get_state(),
    }


def _set_rng_state(state: dict[str, Any], device: torch.device,
                   generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"] is not None:
        cuda_state = state["cuda"]
        if isinstance(cuda_state, (list, tuple)):  # written by brainmill ≤ 2026-12-05: all GPUs
            cuda_state = cuda_state[device.index or 0]
        torch.cuda.set_rng_state(cuda_state, device)
    np_state = state["numpy"]
    keys = np_state["keys"].numpy().astype(np.uint32)
    np.random.set_state((np_state["kind"], keys, np_state["pos"],  # noqa: NPY002
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    random.setstate(state["python"])
    generator.set_state(state["generator"])


def _averaged_parameters(model: nn.Module) -> list[tuple[str, Tensor]]:
    """The parameters an EMA averages: every floating-point one, by name."""
    return [(name, p) for name, p in model.named_parameters() if p.is_floating_point()]


def _copy_parameters(dst: nn.Module | dict[str, Tensor], src: nn.Module | dict[str, Tensor]
                     ) -> None:
    """Copy averaged parameters between a model and an EMA dict (either direction)."""
    with torch.no_grad():
        if isinstance(dst, dict):
            for name, p in _averaged_parameters(src):
                dst[name].copy_(p)
        else:
            for name, p in _averaged_parameters(dst):
                p.copy_(src[name])


@contextlib.contextmanager
def _swapped_in(model: nn.Module, ema: dict[str, Tensor] | None):
    """Run the block with the averaged parameters in ``model``, then restore its own."""
    if ema is None:
        yield
        return
    live = {name: p.detach().clone() for name, p in _averaged_parameters(model)}
    _copy_parameters(model, ema)
    try:
        yield
    finally:
        _copy_parameters(model, live)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _progress_bar(enabled: bool, total: int, initial: int) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc="training", unit="step", file=sys.stderr,
                leave=False, dynamic_ncols=True)


class Trainer:
    """Fit a torch model with AdamW, warm-up + cosine schedule, validation and checkpoints.

    Parameters
    ----------
    config : TrainConfig
    run_dir : str | Path | None
        Folder for ``checkpoint.pt``, ``history.csv`` and ``training.json``; None keeps nothing
        on disk (no resume).
    log : callable | None
        Receives one line per event (start, resume, epoch summary, early stop). Default: the
        ``brainmill.training`` logger at INFO level.

    Examples
    --------
    >>> def loss_fn(model, batch, generator):
    ...     x, y = batch
    ...     loss = torch.nn.functional.mse_loss(model(x), y)
    ...     return loss, {}
    >>> model = torch.nn.Linear(3, 1)
    >>> X, y = torch.randn(32, 3), torch.randn(32, 1)
    >>> result = Trainer(TrainConfig(max_epochs=2, progress=False)).fit(model, loss_fn, (X, y))
    >>> len(result.history)
    2
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.log = log if log is not None else logging.getLogger(__name__).info

    @property
    def checkpoint_path(self) -> Path | None:
        """``run_dir/checkpoint.pt``, or None without a run folder."""
        return None if self.run_dir is None else self.run_dir / CHECKPOINT_NAME

    # -------------------------------------------------------------------------------- fit

    def fit(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        train: Sequence[Tensor | np.ndarray],
        val: Sequence[Tensor | np.ndarray] | None = None,
        val_fn: ValFn | None = None,
        *,
        stratify: np.ndarray | None = None,
        groups: np.ndarray | None = None,
    ) -> TrainResult:
        """Train ``model`` in place (resuming from ``run_dir/checkpoint.pt`` when there is one).

        Parameters
        ----------
        model : nn.Module
            Moved to the configured device.
        loss_fn : callable
            ``loss_fn(model, batch, generator) -> (loss, logs)``: ``batch`` is a tuple of tensors
            (one per array of ``train``, rows of one batch) already on the device,
            ``generator`` the trainer's ``torch.Generator`` on that device for any random
            masking; returns a scalar loss tensor and a dict of floats to log.
        train : sequence of Tensor or ndarray
            Arrays with a common first axis (rows), e.g. ``(X, y)``. Numpy floating arrays are
            converted to torch's default dtype; tensors are used as they are.
        val : sequence of Tensor or ndarray | None
            Validation arrays in the same layout. None: carve ``config.val_fraction`` of
            ``train`` (no validation when that is 0).
        val_fn : callable | None
            ``val_fn(model, arrays) -> dict of floats``, called once per epoch with the whole
            validation set (tensors on the device; batch inside if it is large), so scores that
            do not average over batches (Cohen's kappa, AUROC) are exact. Default: the
            row-weighted mean of ``loss_fn`` over validation batches as ``val_loss`` (and each
            of its logs as ``val_<key>``), with a generator re-seeded with ``config.seed`` at
            every validation.
        stratify : ndarray, shape (n,) | None
            Labels of the ``train`` rows that a carved validation split is stratified by.
        groups : ndarray, shape (n,) | None
            Group labels of the ``train`` rows; a carved split keeps groups whole.

        Returns
        -------
        TrainResult

        Raises
        ------
        ValueError
            Inconsistent data, ``patience`` without validation, an unknown ``monitor``, an
            unavailable device, or a checkpoint in ``run_dir`` from a different run.
        FloatingPointError
            The loss became NaN or infinite.
        """
        cfg = self.config
        t_start = time.perf_counter()
        device = resolve_device(cfg.device)
        precision = _resolve_precision(cfg.precision, device)
        arrays = _as_tensors(train, "train")
        n_rows = len(arrays[0])

        val_index = None
        val_arrays = None if val is None else _as_tensors(val, "val")
        train_index = np.arange(n_rows, dtype=np.int64)
        if val_arrays is None and cfg.val_fraction > 0:
            train_index, val_index = validation_split(n_rows, cfg.val_fraction, cfg.seed,
                                                      y=stratify, groups=groups)
            rows = torch.from_numpy(val_index)
            val_arrays = [a[rows] for a in arrays]
            rows = torch.from_numpy(train_index)
            arrays = [a[rows] for a in arrays]
        elif val_arrays is not None and cfg.val_fraction > 0:
            self.log("validation data given: TrainConfig.val_fraction is not used")
        if cfg.patience is not None and val_arrays is None:
            raise ValueError(f"TrainConfig.patience = {cfg.patience} needs validation data: pass "
                             "val to fit, set val_fraction > 0, or set patience=None")

        n_train = len(arrays[0])
        n_batches = math.ceil(n_train / cfg.batch_size)
        total_steps = cfg.max_epochs * n_batches

        seed_everything(cfg.seed)
        model.to(device)
        generator = torch.Generator(device=device)
        generator.manual_seed(cfg.seed)
        optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay),
                                      lr=lr_at(0, total_steps, cfg), betas=cfg.betas)
        fingerprint = self._fingerprint(model, device, precision, arrays, val_arrays, val_index)
        meta = {"device": str(device), "precision": precision,
                "n_parameters": count_parameters(model),
                "n_trainable_parameters": count_parameters(model, trainable_only=True),
                "n_train": n_train, "n_val": 0 if val_arrays is None else len(val_arrays[0]),
                "val_source": ("none" if val_arrays is None
                               else "given" if val_index is None else "carved"),
                "n_batches_per_epoch": n_batches, "total_steps": total_steps}

        state = _State(epoch_sums=_fresh_sums())
        checkpoint = self._read_checkpoint(fingerprint)
        if checkpoint is not None:
            state = self._restore(checkpoint, model, optimizer, device, generator)
            if state.finished:
                self.log(f"{self.checkpoint_path} is a finished run ({state.step} steps): "
                         "returning its final weights")
                return self._result(state, meta, train_index, val_index, state.seconds)
            self.log(f"resuming from step {state.step} (epoch {state.epoch + 1}, batch "
                     f"{state.position} of {n_batches}) in {self.checkpoint_path}")
        else:
            self.log(f"training {type(model).__name__} ({meta['n_parameters']} parameters) on "
                     f"{device} in {precision}: {n_train} rows, {meta['n_val']} validation rows, "
                     f"{cfg.max_epochs} epochs of {n_batches} batches")
        if cfg.ema_decay is not None and state.ema is None:
            state.ema = {name: p.detach().clone() for name, p in _averaged_parameters(model)}

        def elapsed() -> float:
            return state.seconds + time.perf_counter() - t_start

        # compile the loss, not the module: torch.compile(model) compiles forward only, and the
        # losses call other methods (tokenizer.training_loss, diffusion.loss, mtp_loss)
        step_loss = torch.compile(loss_fn) if cfg.compile else loss_fn
        params = [p for g in optimizer.param_groups for p in g["params"]]
        bar = _progress_bar(cfg.progress, total_steps, state.step)
        # fp32 on CUDA: no TF32 in the convolutions, forward and backward (cuDNN reads the flag
        # when the backward runs) and validation, restored when training ends
        precision_scope = contextlib.ExitStack()
        precision_scope.enter_context(fp32_scope(device, precision))
        try:
            for epoch in range(state.epoch, cfg.max_epochs):
                order = torch.from_numpy(np.random.default_rng([cfg.seed, epoch])
                                         .permutation(n_train))
                if state.position == 0:
                    state.epoch_sums = _fresh_sums()
                sums = state.epoch_sums
                t_epoch = time.perf_counter()
                model.train()
                for b in range(state.position, n_batches):
                    rows = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                    batch = tuple(a[rows].to(device, non_blocking=True) for a in arrays)
                    lr = lr_at(state.step, total_steps, cfg)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    with self._autocast(device, precision):
                        loss, logs = step_loss(model, batch, generator)
                    value = self._check_loss(loss, state.step, epoch)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip is not None:
                        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    optimizer.step()
                    state.step += 1
                    self._update_ema(model, state)
                    state.position = b + 1
                    k = len(rows)
                    sums["n"] += k
                    sums["loss"] += value * k
                    sums["lr"] = lr
                    for key, v in logs.items():
                        sums["logs"][key] = sums["logs"].get(key, 0.0) + float(v) * k
                    if bar is not None:
                        bar.set_postfix(epoch=epoch + 1, loss=f"{value:.4g}", refresh=False)
                        bar.update(1)
                    if (self.run_dir is not None and cfg.checkpoint_every
                            and state.step % cfg.checkpoint_every == 0 and b + 1 < n_batches):
                        # (the epoch-end checkpoint follows the last batch anyway)
                        now = time.perf_counter()
                        sums["seconds"] += now - t_epoch
                        t_epoch = now
                        self._write_checkpoint(model, optimizer, device, generator, state,
                                               fingerprint, elapsed())

                row = self._epoch_row(epoch, state.step, sums)
                if val_arrays is not None:
                    with _swapped_in(model, state.ema):  # validate and select the average
                        scores = self._validate(model, loss_fn, val_fn, val_arrays, device,
                                                precision)
                        self._add_columns(row, scores, "validation")
                        self._early_stopping(state, model, scores, epoch)
                row["seconds"] = sums["seconds"] + time.perf_counter() - t_epoch
                state.history.append(row)
                state.epoch = epoch + 1
                state.position = 0
                self.log(self._describe_row(row))
                if state.stopped_early:
                    self.log(f"early stopping after epoch {epoch + 1}: {cfg.monitor} did not "
                             f"improve for {cfg.patience} epochs (best epoch {state.best_epoch})")
                    break
                self._write_checkpoint(model, optimizer, device, generator, state, fingerprint,
                                       elapsed())
                self._write_logs(state, meta, elapsed())
        finally:
            precision_scope.close()
            if bar is not None:
                bar.close()

        if state.best_state is not None:
            model.load_state_dict(state.best_state)
        elif state.ema is not None:
            _copy_parameters(model, state.ema)
        state.finished = True
        seconds = elapsed()
        self._write_checkpoint(model, optimizer, device, generator, state, fingerprint, seconds)
        self._write_logs(state, meta, seconds)
        return self._result(state, meta, train_index, val_index, seconds)

    # ------------------------------------------------------------------------ pieces of fit

    def _update_ema(self, model: nn.Module, state: _State) -> None:
        """Average after optimiser step ``state.step`` (copy up to ``ema_start``)."""
        cfg = self.config
        if state.ema is None:
            return
        if state.step <= cfg.ema_start:
            _copy_parameters(state.ema, model)
        elif state.step % cfg.ema_every == 0:
            weight = 1.0 - ema_decay_at(state.step, cfg)
            with torch.no_grad():
                for name, p in _averaged_parameters(model):
                    state.ema[name].lerp_(p.detach(), weight)

    @staticmethod
    def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
        if precision == "bf16":
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @staticmethod
    def _check_loss(loss: Any, step: int, epoch: int) -> float:
        if not isinstance(loss, Tensor) or loss.numel() != 1 or not loss.requires_grad:
            raise TypeError("loss_fn must return (loss, logs) with loss a scalar tensor that "
                            f"requires grad; got {type(loss).__name__}"
                            + (f" of shape {tuple(loss.shape)}, requires_grad="
                               f"{loss.requires_grad}" if isinstance(loss, Tensor) else ""))
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(
                f"the loss is {value} at step {step} (epoch {epoch + 1}): training diverged; "
                "lower TrainConfig.lr, set grad_clip, or use precision='fp32' (the checkpoint "
                "in run_dir, if any, is from before this step)")
        return value

    def _validate(self, model: nn.Module, loss_fn: LossFn, val_fn: ValFn | None,
                  val_arrays: list[Tensor], device: torch.device,
                  precision: str) -> dict[str, float]:
        """Row-weighted means of the validation keys over all validation batches."""
        bs = self.config.batch_size
        generator = torch.Generator(device=device)
        generator.manual_seed(self.config.seed)
        totals: dict[str, float] = {}
        n_rows = len(val_arrays[0])
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                if val_fn is not None:
                    # once on the whole set: scores such as Cohen's kappa do not average
                    with self._autocast(device, precision):
                        scores = val_fn(model, tuple(a.to(device) for a in val_arrays))
                    if not isinstance(scores, dict):
                        raise TypeError("val_fn must return a dict of floats, got "
                                        f"{type(scores).__name__}")
                    return {key: float(v) for key, v in scores.items()}
                for start in range(0, n_rows, bs):
                    batch = tuple(a[start:start + bs].to(device, non_blocking=True)
                                  for a in val_arrays)
                    with self._autocast(device, precision):
                        loss, logs = loss_fn(model, batch, generator)
                    scores = {"val_loss": loss, **{f"val_{key}": v for key, v in logs.items()}}
                    k = len(batch[0])
                    for key, v in scores.items():
                        totals[key] = totals.get(key, 0.0) + float(v) * k
        finally:
            model.train(was_training)
        return {key: v / n_rows for key, v in totals.items()}

    def _early_stopping(self, state: _State, model: nn.Module, scores: dict[str, float],
                        epoch: int) -> None:
        cfg = self.config
        if cfg.monitor not in scores:
            raise ValueError(f"TrainConfig.monitor = {cfg.monitor!r} is not a validation key; "
                             f"the validation gave {sorted(scores)}: set monitor to one of them")
        value = scores[cfg.monitor]
        better = math.isfinite(value) and (
            state.best_value is None
            or (value < state.best_value if cfg.mode == "min" else value > state.best_value))
        if better:
            state.best_value = value
            state.best_epoch = epoch + 1
            state.best_state = {k: v.detach().to("cpu", copy=True)
                                for k, v in model.state_dict().items()}
            state.bad_epochs = 0
        else:
            state.bad_epochs += 1
            if cfg.patience is not None and state.bad_epochs >= cfg.patience:
                state.stopped_early = True

    @staticmethod
    def _add_columns(row: dict[str, float], values: dict[str, float], source: str) -> None:
        for key, v in values.items():
            if key in row or key in _RESERVED_COLUMNS:
                raise ValueError(f"the {source} key {key!r} is already a column of the epoch "
                                 f"history ({sorted(row)}); rename it in the "
                                 f"{'loss_fn logs' if source == 'loss' else 'val_fn'}")
            row[key] = v

    def _epoch_row(self, epoch: int, step: int, sums: dict[str, Any]) -> dict[str, float]:
        n = max(sums["n"], 1)
        row: dict[str, float] = {"epoch": epoch + 1, "step": step, "lr": sums["lr"],
                                 "train_loss": sums["loss"] / n}
        self._add_columns(row, {k: v / n for k, v in sums["logs"].items()}, "loss")
        return row

    @staticmethod
    def _describe_row(row: dict[str, float]) -> str:
        parts = [f"epoch {int(row['epoch'])}", f"step {int(row['step'])}"]
        parts += [f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "step")]
        return ", ".join(parts)

    def _fingerprint(self, model: nn.Module, device: torch.device, precision: str,
                     arrays: list[Tensor], val_arrays: list[Tensor] | None,
                     val_index: np.ndarray | None) -> dict[str, Any]:
        """What must match for a checkpoint to continue this run: result-changing settings,
        data shapes/dtypes, the carved validation rows and the model's tensor layout."""
        cfg = asdict(self.config)
        keys = _RESULT_FIELDS + (_EMA_FIELDS if self.config.ema_decay is not None else ())
        layout = "\n".join(f"{k}:{tuple(v.shape)}:{v.dtype}" for k, v in
                           model.state_dict().items())
        return {
            "config": {k: list(cfg[k]) if k == "betas" else cfg[k] for k in keys},
            "device_type": device.type,
            "precision": precision,
            "train": [[list(a.shape), str(a.dtype)] for a in arrays],
            "val": None if val_arrays is None else [[list(a.shape), str(a.dtype)]
                                                    for a in val_arrays],
            "val_index": None if val_index is None else _digest(val_index.tobytes().hex()),
            "model": _digest(layout),
        }

    def _read_checkpoint(self, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
        path = self.checkpoint_path
        if path is None or not path.exists():
            return None
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"{path} cannot be read as a brainmill checkpoint ({err}); delete "
                             "it or use another run_dir") from err
        old = checkpoint.get("fingerprint") if isinstance(checkpoint, dict) else None
        if old != fingerprint:
            differ = sorted(
                [f"config.{k}" for k in fingerprint["config"]
                 if (old or {}).get("config", {}).get(k) != fingerprint["config"][k]]
                + [k for k in fingerprint if k != "config"
                   and (old or {}).get(k) != fingerprint[k]])
            raise ValueError(f"{path} was written by a different run (differs in: "
                             f"{', '.join(differ) or 'format'}); delete it to start afresh or "
                             "pass another run_dir")
        return checkpoint

    def _restore(self, checkpoint: dict[str, Any], model: nn.Module,
                 optimizer: torch.optim.Optimizer, device: torch.device,
                 generator: torch.Generator) -> _State:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        _set_rng_state(checkpoint["rng"], device, generator)
        state = _State(**checkpoint["state"])
        if state.ema is not None:
            state.ema = {k: v.to(device) for k, v in state.ema.items()}
        return state

    def _write_checkpoint(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                          device: torch.device, generator: torch.Generator, state: _State,
                          fingerprint: dict[str, Any], seconds: float) -> None:
        if self.run_dir is None:
            return
        state_dict = {f.name: getattr(state, f.name) for f in fields(state)}
        state_dict["seconds"] = seconds
        checkpoint = {
            "format": _CHECKPOINT_FORMAT,
            "fingerprint": fingerprint,
            "model": model.state_dict(),  # the original module: no "_orig_mod." prefixes
            "optimizer": optimizer.state_dict(),
            "rng": _rng_state(device, generator),
            "state": state_dict,
        }
        with atomic_path(self.run_dir / CHECKPOINT_NAME) as tmp:
            torch.save(checkpoint, tmp)

    def _write_logs(self, state: _State, meta: dict[str, Any], seconds: float) -> None:
        if self.run_dir is None:
            return
        columns: list[str] = []
        for row in state.history:
            columns += [k for k in row if k not in columns and k != "seconds"]
        columns.append("seconds")
        with atomic_path(self.run_dir / HISTORY_NAME) as tmp:
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=columns, restval="")
                writer.writeheader()
                writer.writerows(state.history)
        write_json(self.run_dir / SUMMARY_NAME, {
            "config": asdict(self.config), **meta, "best_epoch": state.best_epoch,
            "best_value": state.best_value, "stopped_early": state.stopped_early,
            "finished": state.finished, "n_steps": state.step, "seconds": seconds,
            "torch": torch.__version__, "history": state.history})

    @staticmethod
    def _result(state: _State, meta: dict[str, Any], train_index: np.ndarray,
                val_index: np.ndarray | None, seconds: float) -> TrainResult:
        return TrainResult(history=[dict(row) for row in state.history],
                           best_epoch=state.best_epoch, stopped_early=state.stopped_early,
                           device=meta["device"], precision=meta["precision"],
                           n_steps=state.step, seconds=seconds, train_index=train_index,
                           val_index=val_index)

