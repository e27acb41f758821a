"""Supervised training and prediction of a torch classifier, shared by the neural decoders.

:func:`fit_classifier` trains any ``nn.Module`` that maps a batch of inputs to class logits with
label-smoothed cross-entropy through :class:`brainmill.training.Trainer`, selecting the epoch on
a validation split carved (stratified) from the training data only; :func:`predict_proba`
applies it in batches. Used by the token Transformer and the latent fusion classifier.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score
from torch import nn

from .training import TrainConfig, Trainer, TrainResult

__all__ = ["MONITORS", "fit_classifier", "kappa", "predict_proba"]

MONITORS = ("kappa", "balanced_accuracy", "loss")


def kappa(true: np.ndarray, pred: np.ndarray) -> float:
    """Cohen's κ; 0 (no agreement beyond chance) where it is undefined (a single class)."""
    if len(np.unique(np.concatenate([true, pred]))) < 2:
        return 0.0
    value = cohen_kappa_score(true, pred)
    return float(value) if np.isfinite(value) else 0.0


def _logits(net: nn.Module, X: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([net(X[i:i + batch_size]).float() for i in range(0, len(X), batch_size)])


def fit_classifier(net: nn.Module, X: torch.Tensor, y: np.ndarray, training: dict | None,
                   monitor: str, label_smoothing: float, seed: int, batch_size: int,
                   run_dir: str | None = None) -> TrainResult:
    """Train ``net`` in place on ``(X, y)``; the selected epoch's weights stay in ``net``.

    Parameters
    ----------
    net : nn.Module
        ``net(X[rows])`` → logits ``(rows, n_classes)``.
    X : Tensor, shape (n, ...)
    y : ndarray of int, shape (n,)
        Class indices ``0 … n_classes − 1``.
    training : dict or None
        :class:`~brainmill.training.TrainConfig` fields (the seed, monitor and mode are set
        here). ``val_fraction > 0`` carves a stratified validation split from ``X``.
    monitor : {"kappa", "balanced_accuracy", "loss"}
        Validation score that selects the epoch.
    label_smoothing : float
    seed : int
    batch_size : int
        Rows per forward pass in validation.
    run_dir : str, optional
        Checkpoint folder of the trainer (resume after a kill).
    """
    if monitor not in MONITORS:
        raise ValueError(f"monitor must be one of {MONITORS}, got {monitor!r}")
    config = TrainConfig(**{**(training or {}), "seed": seed, "monitor": f"val_{monitor}",
                            "mode": "min" if monitor == "loss" else "max"})
    smoothing = float(label_smoothing)

    def loss_fn(m, batch, gen):
        logits = m(batch[0])
        loss = F.cross_entropy(logits.float(), batch[1], label_smoothing=smoothing)
        acc = (logits.argmax(-1) == batch[1]).float().mean()
        return loss, {"accuracy": float(acc)}

    def val_fn(m, arrays):
        logits = _logits(m, arrays[0], batch_size)
        loss = F.cross_entropy(logits, arrays[1], label_smoothing=smoothing)
        pred = logits.argmax(-1).cpu().numpy()
        true = arrays[1].cpu().numpy()
        return {"val_loss": float(loss), "val_kappa": kappa(true, pred),
                "val_balanced_accuracy": float(balanced_accuracy_score(true, pred))}

    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    return Trainer(config, run_dir).fit(net, loss_fn, (X, labels), val_fn=val_fn,
                                        stratify=np.asarray(y))


def predict_proba(net: nn.Module, X: torch.Tensor, batch_size: int) -> np.ndarray:
    """Softmax probabilities ``(n, n_classes)`` of ``net`` in eval mode, float64."""
    net.eval()
    with torch.no_grad():
        return torch.softmax(_logits(net, X, batch_size), dim=-1).numpy().astype(np.float64)
