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

from .evaluation import check_groups
from .training import TrainConfig, Trainer, TrainResult

__all__ = ["MONITORS", "class_weights", "fit_classifier", "kappa", "predict_proba",
           "weights_by_index"]

MONITORS = ("kappa", "balanced_accuracy", "loss")


def kappa(true: np.ndarray, pred: np.ndarray) -> float:
    """Cohen's κ; 0 (no agreement beyond chance) where it is undefined (a single class)."""
    if len(np.unique(np.concatenate([true, pred]))) < 2:
        return 0.0
    value = cohen_kappa_score(true, pred)
    return float(value) if np.isfinite(value) else 0.0


def class_weights(y: np.ndarray, n_classes: int,
                  class_weight: str | dict | None) -> np.ndarray | None:
    """Per-class loss weights ``(n_classes,)``, as scikit-learn's ``class_weight``.

    Parameters
    ----------
    y : ndarray of int, shape (n,)
        Class indices ``0 … n_classes − 1`` of the training data.
    n_classes : int
    class_weight : {"balanced"}, dict or None
        ``"balanced"``: ``n / (n_classes · count_c)`` (scikit-learn's formula), so every class
        weighs the same in the loss however rare it is; a dict maps class index to weight
        (missing classes weigh 1); None: no weighting.

    Returns
    -------
    ndarray of float64 or None
    """
    if class_weight is None:
        return None
    y = np.asarray(y)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be 'balanced', a dict or None, got "
                             f"{class_weight!r}")
        counts = np.bincount(y, minlength=n_classes).astype(float)
        if np.any(counts == 0):
            missing = np.flatnonzero(counts == 0).tolist()
            raise ValueError(f"class_weight='balanced': classes {missing} have no training "
                             f"example")
        return len(y) / (n_classes * counts)
    weights = np.ones(n_classes)
    for k, w in dict(class_weight).items():
        if not 0 <= int(k) < n_classes or not np.isfinite(w) or w < 0:
            raise ValueError(f"class_weight: class {k!r} must lie in [0, {n_classes}) and its "
                             f"weight be finite and >= 0, got {w!r}")
        weights[int(k)] = float(w)
    return weights


def weights_by_index(class_weight: str | dict | None,
                      classes: np.ndarray) -> str | dict | None:
    """A ``{label: weight}`` dict as ``{class index: weight}``; other values unchanged."""
    if not isinstance(class_weight, dict):
        return class_weight
    index = {label: k for k, label in enumerate(classes.tolist())}
    unknown = [label for label in class_weight if label not in index]
    if unknown:
        raise ValueError(f"class_weight: labels {unknown} are not among the training "
                         f"classes {classes.tolist()}")
    return {index[label]: w for label, w in class_weight.items()}


def _logits(net: nn.Module, X: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits of ``X`` in batches on the network's device, returned on the CPU."""
    device = next(net.parameters()).device
    return torch.cat([net(X[i:i + batch_size].to(device)).float().cpu()
                      for i in range(0, len(X), batch_size)])


def fit_classifier(net: nn.Module, X: torch.Tensor, y: np.ndarray, training: dict | None,
                   monitor: str, label_smoothing: float, seed: int, batch_size: int,
                   run_dir: str | None = None,
                   class_weight: str | dict | None = None,
                   groups: np.ndarray | None = None) -> TrainResult:
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
    class_weight : {"balanced"}, dict or None
        Weights of the training loss per class, from ``y`` (see :func:`class_weights`). The
        validation loss stays unweighted; κ and balanced accuracy do not depend on it.
    groups : ndarray, shape (n,), optional
        Recording (segment, run) of each row: the carved validation split then holds whole
        groups only, stratified as far as whole groups allow
        (:func:`~brainmill.training.validation_split`). Windows of one recording split
        between training and validation make the selected epoch's score optimistic.
    """
    if monitor not in MONITORS:
        raise ValueError(f"monitor must be one of {MONITORS}, got {monitor!r}")
    groups = check_groups(groups, len(y), "fit_classifier")
    config = TrainConfig(**{**(training or {}), "seed": seed, "monitor": f"val_{monitor}",
                            "mode": "min" if monitor == "loss" else "max"})
    smoothing = float(label_smoothing)
    n_classes = int(np.max(y)) + 1 if len(y) else 0
    weights = class_weights(y, n_classes, class_weight)
    weight = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)

    def loss_fn(m, batch, gen):
        logits = m(batch[0])
        w = None if weight is None else weight.to(logits.device)
        loss = F.cross_entropy(logits.float(), batch[1], weight=w, label_smoothing=smoothing)
        acc = (logits.argmax(-1) == batch[1]).float().mean()
        return loss, {"accuracy": float(acc)}

    def val_fn(m, arrays):
        logits = _logits(m, arrays[0], batch_size)  # on the CPU; the labels may be on a GPU
        loss = F.cross_entropy(logits, arrays[1].cpu(), label_smoothing=smoothing)
        pred = logits.argmax(-1).cpu().numpy()
        true = arrays[1].cpu().numpy()
        return {"val_loss": float(loss), "val_kappa": kappa(true, pred),
                "val_balanced_accuracy": float(balanced_accuracy_score(true, pred))}

    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    return Trainer(config, run_dir).fit(net, loss_fn, (X, labels), val_fn=val_fn,
                                        stratify=np.asarray(y), groups=groups)


def predict_proba(net: nn.Module, X: torch.Tensor, batch_size: int) -> np.ndarray:
    """Softmax probabilities ``(n, n_classes)`` of ``net`` in eval mode, float64."""
    net.eval()
    with torch.no_grad():
        return torch.softmax(_logits(net, X, batch_size), dim=-1).numpy().astype(np.float64)
