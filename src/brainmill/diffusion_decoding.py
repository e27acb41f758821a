"""The diffusion decoder as scikit-learn estimators, and the functions the workflow calls.

* :func:`train_diffusion` fits :class:`~brainmill.models.diffusion.EEGDiffusion` on
  single-channel windows (no labels unless class-conditional generation is asked for);
  :func:`diffusion_representations` turns multichannel epochs into the backbone's std-pooled
  gate activations; :func:`generate` samples windows for given channels (and classes).
* :class:`DiffusionFeatures` (transformer): ``fit`` pretrains the backbone on the training
  epochs' channels without labels, ``transform`` returns representations
  ``(n_epochs, n_channels, n_layers, dim, n_pools)``.
* :class:`LatentFusionClassifier` (classifier on those representations): the latent fusion
  Transformer trained with the backbone frozen, label-smoothed cross-entropy, epoch chosen on a
  validation split carved from the training data.

``make_pipeline(DiffusionFeatures(...), LatentFusionClassifier(...))`` pretrains the backbone
inside each training fold, the protocol of every accuracy claim in ``BENCHMARKS.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .classifier_training import fit_classifier, predict_proba, weights_by_index
from .evaluation import check_groups
from .features.timefreq import resample_signals
from .models.diffusion import DiffusionConfig, EEGDiffusion
from .models.latent_fusion import LatentFusionConfig, LatentFusionTransformer
from .training import TrainConfig, Trainer, TrainResult, resolve_device, window_epochs

__all__ = ["DiffusionFeatures", "LatentFusionClassifier", "diffusion_representations",
           "generate", "single_channel_windows", "train_diffusion"]


def _check_epochs(X: Any, name: str, n_channels: int | None = None) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 3:
        raise ValueError(f"{name}: signals must be (n_epochs, n_channels, n_times), got shape "
                         f"{X.shape}")
    if n_channels is not None and X.shape[1] != n_channels:
        raise ValueError(f"{name}: got {X.shape[1]} channels, expected {n_channels} (ch_names)")
    if not np.all(np.isfinite(X)):
        bad = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"{name}: signals contain NaN or inf (first at epoch {bad[0]}, channel "
                         f"{bad[1]}); clean or drop those epochs first")
    return X


def single_channel_windows(X: np.ndarray, ch_names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Every channel of every epoch as a window: ``(n_epochs·n_channels, 1, n_times)`` and the
    channel name of each (epoch-major)."""
    n, c, t = X.shape
    return X.reshape(n * c, 1, t), [ch_names[i] for _ in range(n) for i in range(c)]


def train_diffusion(windows: np.ndarray, channels: list[str], config: DiffusionConfig,
                    training: dict | None, seed: int, run_dir: str | None = None,
                    labels: np.ndarray | None = None, groups: np.ndarray | None = None,
                    ) -> tuple[EEGDiffusion, TrainResult]:
    """Train a diffusion backbone on single-channel windows (signal units, model ``sfreq``).

    Parameters
    ----------
    windows : ndarray, shape (n_windows, 1, n_times)
    channels : list of str, length n_windows
        Channel name of each window (mapped through ``config.channel_names``).
    config : DiffusionConfig
        With ``n_classes > 0`` the model is class-conditional and ``labels`` is required.
    training : dict or None
        :class:`~brainmill.training.TrainConfig` fields (the seed is ``seed``).
    seed : int
    run_dir : str, optional
        Checkpoint folder (a killed run resumes from it).
    labels : ndarray of int, shape (n_windows,), optional
        Class indices for class-conditional training.
    groups : ndarray, shape (n_windows,), optional
        What each window was cut from (its epoch, see
        :func:`~brainmill.training.window_epochs`, or its recording): a validation
        split (``val_fraction > 0``) holds whole groups, so the channels of one epoch are not
        on both sides of early stopping. None: every window its own.

    Returns
    -------
    model : EEGDiffusion
        Trained (EMA weights when the training config asks for them), eval mode, on CPU. Its
        ``config.clip_sample`` is lowered to the largest ``|x₀|`` of the training windows (model
        units), so sampling never leaves the range of the data.
    result : TrainResult
    """
    if (labels is None) != (config.n_classes == 0):
        raise ValueError("train_diffusion: give labels exactly when config.n_classes > 0 "
                         f"(n_classes={config.n_classes}, labels given: {labels is not None})")
    torch.manual_seed(seed)
    model = EEGDiffusion(config)
    x = model.encode(torch.as_tensor(np.asarray(windows), dtype=torch.float32))
    if config.clip_sample is not None:
        # generated windows stay within the range of the training data: µ-law expansion is
        # exponential beyond ±1 unit, so an overshoot would otherwise become a huge spike
        config.clip_sample = min(config.clip_sample, max(float(x.abs().max()), 1.0 + 1e-6))
    arrays: list[torch.Tensor] = [x, model.channel_ids(channels)]
    if labels is not None:
        arrays.append(torch.as_tensor(np.asarray(labels), dtype=torch.int64))

    def loss_fn(m, batch, gen):
        return m.loss(batch[0], batch[1], batch[2] if len(batch) > 2 else None, generator=gen)

    result = Trainer(TrainConfig(**{**(training or {}), "seed": seed}), run_dir).fit(
        model, loss_fn, arrays, groups=groups)
    return model.cpu().eval(), result


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def diffusion_representations(model: EEGDiffusion, X: np.ndarray, ch_names: list[str],
                              pool: int, t: int = 1, batch_size: int = 256) -> np.ndarray:
    """Representations ``(n_epochs, n_channels, n_layers, dim, n_times // pool)``, float32.

    ``X`` ``(n_epochs, n_channels, n_times)`` in signal units at the model's ``sfreq``; every
    channel is one noiseless pass (:meth:`EEGDiffusion.representations`).
    """
    X = _check_epochs(X, "diffusion_representations", len(ch_names))
    windows, names = single_channel_windows(X, list(ch_names))
    ids = model.channel_ids(names)
    device = _device_of(model)
    model.eval()
    out = []
    for start in range(0, len(windows), batch_size):
        x = model.encode(torch.as_tensor(windows[start:start + batch_size],
                                         dtype=torch.float32).to(device))
        out.append(model.representations(x, ids[start:start + batch_size].to(device), pool,
                                         t).cpu())
    reps = torch.cat(out).numpy()
    return reps.reshape(X.shape[0], X.shape[1], *reps.shape[1:])


def generate(model: EEGDiffusion, channels: list[str], length: int, seed: int,
             labels: np.ndarray | None = None, n_steps: int | None = None,
             batch_size: int = 256) -> np.ndarray:
    """Generated windows ``(len(channels), n_times)`` in signal units (DDIM, see
    :meth:`EEGDiffusion.sample`), reproducible for a seed."""
    device = _device_of(model)
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    ids = model.channel_ids(channels)
    out = []
    for start in range(0, len(ids), batch_size):
        lab = None if labels is None else torch.as_tensor(
            np.asarray(labels[start:start + batch_size]), dtype=torch.int64)
        y = model.sample(ids[start:start + batch_size], length, label=lab, n_steps=n_steps,
                         generator=generator)
        out.append(model.decode(y).squeeze(1).cpu())
    return torch.cat(out).numpy().astype(np.float64)


class DiffusionFeatures(TransformerMixin, BaseEstimator):
    """Diffusion-backbone representations of multichannel epochs (backbone fitted in ``fit``).

    Parameters
    ----------
    sfreq : float
        Sampling rate of the input; epochs are resampled to ``model['sfreq']``.
    ch_names : list of str
        Channel names of the input's channel axis (the backbone's vocabulary).
    model : dict or None
        :class:`~brainmill.models.diffusion.DiffusionConfig` fields other than
        ``channel_names`` and ``n_classes``.
    training : dict or None
        :class:`~brainmill.training.TrainConfig` fields of the pretraining.
    pool_s : float
        Std-pooling window (s). Default 1 (the reference's 200 samples at 200 Hz).
    t : int
        Diffusion step of the noiseless feature pass. Default 1 (the reference's).
    max_windows : int or None
        Pretrain on at most this many single-channel windows, drawn with ``seed``.
    seed : int
    batch_size : int
        Windows per forward pass in ``transform``.

    Attributes
    ----------
    model_ : EEGDiffusion
    training_ : dict
        Summary of the pretraining run.
    """

    def __init__(self, sfreq: float = 200.0, ch_names: list[str] | None = None,
                 model: dict | None = None, training: dict | None = None, pool_s: float = 1.0,
                 t: int = 1, max_windows: int | None = None, seed: int = 0,
                 batch_size: int = 256) -> None:
        self.sfreq = sfreq
        self.ch_names = ch_names
        self.model = model
        self.training = training
        self.pool_s = pool_s
        self.t = t
        self.max_windows = max_windows
        self.seed = seed
        self.batch_size = batch_size

    def _names(self, X: np.ndarray) -> list[str]:
        if self.ch_names is None:
            return [f"ch{i}" for i in range(X.shape[1])]
        return [str(n) for n in self.ch_names]

    def _resampled(self, X: np.ndarray, target: float) -> np.ndarray:
        return resample_signals(X, float(self.sfreq), float(target))

    def fit(self, X: np.ndarray, y: np.ndarray | None = None,
            groups: np.ndarray | None = None) -> DiffusionFeatures:
        """Pretrain the backbone on every channel of ``X`` (``y`` is ignored).

        ``groups`` (one label per epoch, optional): a validation split of the backbone's
        training (``val_fraction > 0``) holds whole groups; by default whole epochs.
        """
        X = _check_epochs(X, type(self).__name__)
        groups = check_groups(groups, len(X), type(self).__name__)
        names = self._names(X)
        config = DiffusionConfig(**{**(self.model or {}), "channel_names": names,
                                    "n_classes": 0})
        windows, channels = single_channel_windows(self._resampled(X, config.sfreq), names)
        rows = window_epochs(len(X), X.shape[1])
        if groups is not None:
            rows = np.asarray(groups)[rows]
        if self.max_windows is not None and len(windows) > self.max_windows:
            keep = np.sort(np.random.default_rng(self.seed).choice(len(windows),
                                                                   self.max_windows,
                                                                   replace=False))
            windows, channels, rows = windows[keep], [channels[i] for i in keep], rows[keep]
        self.model_, result = train_diffusion(windows, channels, config, self.training,
                                              self.seed, groups=rows)
        self.training_ = result.summary()
        self.n_features_in_ = X.shape[1]
        return self

    @property
    def pool_(self) -> int:
        """Pooling window in samples at the model's rate."""
        return max(1, int(round(self.pool_s * self.model_.config.sfreq)))

    def transform(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = _check_epochs(X, type(self).__name__, self.n_features_in_)
        Xr = self._resampled(X, self.model_.config.sfreq)
        self.model_.to(resolve_device((self.training or {}).get("device", "auto")))
        return diffusion_representations(self.model_, Xr, self._names(X), self.pool_, self.t,
                                         self.batch_size)


def _check_representations(F: Any, name: str) -> np.ndarray:
    F = np.asarray(F, dtype=np.float32)
    if F.ndim != 5:
        raise ValueError(f"{name}: representations must be (n_epochs, n_channels, n_layers, "
                         f"dim, n_pools), got shape {F.shape}")
    return F


class LatentFusionClassifier(ClassifierMixin, BaseEstimator):
    """Latent fusion Transformer on diffusion representations (the backbone stays frozen).

    Parameters
    ----------
    model : dict or None
        :class:`~brainmill.models.latent_fusion.LatentFusionConfig` fields other than
        ``n_classes``, ``n_layers`` and ``feature_dim`` (read from the input).
    training : dict or None
        :class:`~brainmill.training.TrainConfig` fields; ``val_fraction > 0`` carves a
        stratified validation split from the training data.
    label_smoothing : float
        Default 0.1 (the reference's).
    monitor : {"kappa", "balanced_accuracy", "loss"}
        Validation score that picks the epoch. Default ``loss``: on validation splits of tens
        of epochs κ saturates at 1 early and picks an undertrained epoch (measured on the
        rhythm task of ``tests/test_diffusion_decoding.py``: one fold at 0.6 accuracy with κ,
        all folds at 1.0 with the loss); the reference selects on κ with thousands.
    seed : int
    batch_size : int
        Epochs per forward pass at prediction.
    class_weight : {"balanced"}, dict or None
        Weights of the training loss per class, as in scikit-learn (``"balanced"``:
        ``n / (n_classes · n_c)``; a dict maps class labels to weights). Default None.

    Attributes
    ----------
    classes_ : ndarray
    model_ : LatentFusionTransformer (eval mode, CPU)
    fit_info_ : dict
    """

    def __init__(self, model: dict | None = None, training: dict | None = None,
                 label_smoothing: float = 0.1, monitor: str = "loss", seed: int = 0,
                 batch_size: int = 128, class_weight: str | dict | None = None) -> None:
        self.model = model
        self.training = training
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.monitor = monitor
        self.seed = seed
        self.batch_size = batch_size

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None
            ) -> LatentFusionClassifier:
        """Train on representations ``X``; ``groups`` (one label per epoch, optional) keeps
        each recording whole on one side of the validation split."""
        name = type(self).__name__
        X = _check_representations(X, name)
        self.classes_, y_idx = np.unique(np.asarray(y), return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{name}: need at least two classes, got {self.classes_}")
        fixed = {"n_classes", "n_layers", "feature_dim"} & set(self.model or {})
        if fixed:
            raise ValueError(f"{name}: model must not set {sorted(fixed)}; they are read from "
                             "the classes and the representations")
        cfg = LatentFusionConfig(n_classes=len(self.classes_), n_layers=X.shape[2],
                                 feature_dim=X.shape[3], **(self.model or {}))
        torch.manual_seed(self.seed)
        net = LatentFusionTransformer(cfg)
        result = fit_classifier(net, torch.from_numpy(X), y_idx, self.training, self.monitor,
                                self.label_smoothing, self.seed, self.batch_size,
                                class_weight=weights_by_index(self.class_weight, self.classes_),
                                groups=groups)
        self.model_ = net.cpu().eval()
        self.fit_info_ = {"n_parameters": int(sum(p.numel() for p in net.parameters())),
                          "training": result.summary()}
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n_epochs, n_classes)`` in ``classes_`` order."""
        check_is_fitted(self, "model_")
        X = _check_representations(X, type(self).__name__)
        return predict_proba(self.model_, torch.from_numpy(X), self.batch_size)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
