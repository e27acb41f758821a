"""Token Transformer decoders as scikit-learn classifiers.

* :class:`TokenTransformerClassifier` takes token ids ``(n_epochs, n_channels, n_frames)``
  (from a frozen tokenizer) and trains a :class:`brainmill.models.transformer.TokenTransformer`:
  optional masked-token pretraining on the training fold's tokens (no labels), then
  fine-tuning with label-smoothed cross-entropy, early stopping on a validation split carved
  from the training fold only.
* :class:`TokenPipelineClassifier` takes signals and fits the tokenizer itself inside
  ``fit``, so under cross-validation the tokenizer never sees a test fold — the protocol used
  for every accuracy claim in ``BENCHMARKS.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .classifier_training import MONITORS, fit_classifier, predict_proba, weights_by_index
from .evaluation import check_groups
from .features.timefreq import TFMTokens
from .models.transformer import TokenTransformer, TokenTransformerConfig
from .training import TrainConfig, Trainer

__all__ = ["TokenPipelineClassifier", "TokenTransformerClassifier", "discriminative_tokens"]

def _check_ids(X: Any, n_codes: int | None, name: str) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 3:
        raise ValueError(f"{name}: token ids must be (n_epochs, n_channels, n_frames), got "
                         f"shape {X.shape}")
    if not np.issubdtype(X.dtype, np.integer):
        if not np.all(np.mod(X, 1) == 0):
            raise ValueError(f"{name}: token ids must be integers")
        X = X.astype(np.int64)
    if X.min() < 0 or (n_codes is not None and X.max() >= n_codes):
        raise ValueError(f"{name}: token ids must lie in [0, {n_codes}); got "
                         f"[{X.min()}, {X.max()}]")
    return X.astype(np.int64)


class TokenTransformerClassifier(ClassifierMixin, BaseEstimator):
    """Transformer over a multi-channel token sequence, [CLS] pooled.

    Parameters
    ----------
    codebook : ndarray of shape (n_codes, dim) or None
        The tokenizer's codebook; initialises the token embedding (its ``dim`` is the model
        width). None: a random embedding of width ``model['dim']`` over ``n_codes`` codes.
    n_codes : int or None
        Vocabulary size when ``codebook`` is None (default: ``X.max() + 1`` at fit).
    model : dict or None
        :class:`~brainmill.models.transformer.TokenTransformerConfig` fields other than
        ``n_codes``/``n_classes`` (and ``dim`` when a codebook is given).
    pretraining : dict or None
        :class:`~brainmill.training.TrainConfig` fields of masked-token pretraining on the
        training fold's tokens; None skips it.
    training : dict or None
        ``TrainConfig`` fields of fine-tuning. ``val_fraction`` > 0 carves a stratified
        validation split from the training data for early stopping and model selection.
    label_smoothing : float
        Of the fine-tuning cross-entropy. Default 0.1 (the reference's).
    class_weight : {"balanced"}, dict or None
        Weights of the fine-tuning loss per class, as in scikit-learn: ``"balanced"`` weighs
        class ``c`` by ``n / (n_classes · n_c)`` on the training data (for imbalanced data such
        as sleep stages, where an unweighted model can settle on the majority class); a dict
        maps class labels to weights; None (default) weighs every epoch the same.
    monitor : {"kappa", "balanced_accuracy", "loss"}
        Validation score that selects the epoch (the reference selects on Cohen's κ).
    seed : int
        Seed of initialisation, masks, batch order and the validation split.
    batch_size : int
        Epochs per forward pass at prediction.

    Attributes
    ----------
    classes_ : ndarray
    model_ : TokenTransformer (eval mode, CPU)
    fit_info_ : dict
        JSON-able training summary per stage (history, best epoch, device, seconds).
    """

    def __init__(self, codebook: np.ndarray | None = None, n_codes: int | None = None,
                 model: dict | None = None, pretraining: dict | None = None,
                 training: dict | None = None, label_smoothing: float = 0.1,
                 class_weight: str | dict | None = None, monitor: str = "kappa",
                 seed: int = 0, batch_size: int = 256) -> None:
        self.codebook = codebook
        self.n_codes = n_codes
        self.model = model
        self.pretraining = pretraining
        self.training = training
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.monitor = monitor
        self.seed = seed
        self.batch_size = batch_size

    def _vocabulary(self, X: np.ndarray) -> int:
        if self.codebook is not None:
            return int(np.asarray(self.codebook).shape[0])
        return int(self.n_codes) if self.n_codes is not None else int(X.max()) + 1

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None
            ) -> TokenTransformerClassifier:
        """Train on token ids ``(n_epochs, n_channels, n_frames)``; ``groups`` (one label per
        epoch, optional) keeps each recording whole on one side of the validation splits."""
        if self.monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {MONITORS}, got {self.monitor!r}")
        name = type(self).__name__
        X = _check_ids(X, None, name)
        n_codes = self._vocabulary(X)
        X = _check_ids(X, n_codes, name)
        y = np.asarray(y)
        groups = check_groups(groups, len(X), name)  # before the pretraining uses them
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{name}: need at least two classes, got {self.classes_}")
        fields = dict(self.model or {})
        codebook = None
        if self.codebook is not None:
            codebook = torch.as_tensor(np.asarray(self.codebook), dtype=torch.float32)
            fields["dim"] = int(codebook.shape[1])
        cfg = TokenTransformerConfig(n_codes=n_codes, n_classes=len(self.classes_), **fields)
        torch.manual_seed(self.seed)
        net = TokenTransformer(cfg, codebook=codebook)
        ids = torch.from_numpy(X)
        info: dict[str, Any] = {"n_parameters": int(sum(p.numel() for p in net.parameters()))}
        if self.pretraining is not None:
            pre = Trainer(TrainConfig(**{**self.pretraining, "seed": self.seed}))
            res = pre.fit(net, lambda m, batch, gen: m.mtp_loss(batch[0], gen), (ids,),
                          groups=groups)
            info["pretraining"] = res.summary()
        res = fit_classifier(net, ids, y_idx, self.training, self.monitor,
                             self.label_smoothing, self.seed, self.batch_size,
                             class_weight=weights_by_index(self.class_weight, self.classes_),
                             groups=groups)
        info["training"] = res.summary()
        self.model_ = net.cpu().eval()
        self.fit_info_ = info
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n_epochs, n_classes), columns in ``classes_`` order."""
        check_is_fitted(self, "model_")
        X = _check_ids(X, self.model_.config.n_codes, type(self).__name__)
        return predict_proba(self.model_, torch.from_numpy(X), self.batch_size)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class TokenPipelineClassifier(ClassifierMixin, BaseEstimator):
    """Tokenizer + token Transformer fitted together on each training set (signals in).

    ``fit(X, y)`` trains :class:`~brainmill.features.timefreq.TFMTokens` on ``X`` without
    labels, tokenizes ``X`` and fits :class:`TokenTransformerClassifier` with the tokenizer's
    codebook. Use it under cross-validation so the tokenizer is fitted per training fold.

    Parameters
    ----------
    sfreq : float
        Sampling frequency of ``X``.
    tokenizer, tokenizer_training : dict or None
        Passed to :class:`TFMTokens` as ``tokenizer`` and ``training``.
    model, pretraining, training, label_smoothing, class_weight, monitor :
        Passed to :class:`TokenTransformerClassifier`.
    seed : int
    """

    def __init__(self, sfreq: float = 200.0, tokenizer: dict | None = None,
                 tokenizer_training: dict | None = None, model: dict | None = None,
                 pretraining: dict | None = None, training: dict | None = None,
                 label_smoothing: float = 0.1, class_weight: str | dict | None = None,
                 monitor: str = "kappa", seed: int = 0) -> None:
        self.sfreq = sfreq
        self.tokenizer = tokenizer
        self.tokenizer_training = tokenizer_training
        self.model = model
        self.pretraining = pretraining
        self.training = training
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.monitor = monitor
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None
            ) -> TokenPipelineClassifier:
        """Fit the tokenizer, then the Transformer, on ``X, y`` only; ``groups`` (one label
        per epoch, optional) keeps each recording whole on one side of every validation
        split."""
        self.tokens_ = TFMTokens(sfreq=self.sfreq, tokenizer=self.tokenizer,
                                 training=self.tokenizer_training, seed=self.seed
                                 ).fit(X, groups=groups)
        ids = self.tokens_.transform(X)
        self.classifier_ = TokenTransformerClassifier(
            codebook=self.tokens_.codebook_, model=self.model, pretraining=self.pretraining,
            training=self.training, label_smoothing=self.label_smoothing,
            class_weight=self.class_weight, monitor=self.monitor, seed=self.seed,
        ).fit(ids, y, groups=groups)
        self.classes_ = self.classifier_.classes_
        self.fit_info_ = {"tokenizer": self.tokens_.training_,
                          **self.classifier_.fit_info_}
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "classifier_")
        return self.classifier_.predict_proba(self.tokens_.transform(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def discriminative_tokens(ids: np.ndarray, y: np.ndarray, classes: list[str], n_codes: int,
                          top: int = 5, min_count: int = 5) -> list[dict[str, Any]]:
    """Tokens whose frequency differs most between one class and the others.

    For each class ``c`` and code ``k`` the smoothed log-odds ratio
    ``log((n_ck + 1/2) / (N_c − n_ck + 1/2)) − log((n_¬ck + 1/2) / (N_¬c − n_¬ck + 1/2))``
    of the token's share among the class's tokens against the other classes' (Haldane's
    correction), divided by its standard error ``sqrt(Σ 1/(cell + 1/2))`` — a z-score, so rare
    codes do not win by chance.

    Parameters
    ----------
    ids : ndarray of int, shape (n_epochs, n_channels, n_frames)
    y : ndarray of int, shape (n_epochs,)
        Class index of each epoch.
    classes : list of str
    n_codes : int
    top : int
        Codes reported per class.
    min_count : int
        Codes seen fewer times overall are ignored.

    Returns
    -------
    list of dict
        ``{"class", "token", "z", "share_in_class", "share_elsewhere", "count"}`` rows, the
        ``top`` highest ``z`` per class.
    """
    ids = np.asarray(ids)
    y = np.asarray(y)
    counts = np.stack([np.bincount(ids[y == k].ravel(), minlength=n_codes)
                       for k in range(len(classes))]).astype(float)
    total = counts.sum()
    rows = []
    seen = counts.sum(0) >= min_count
    for k, name in enumerate(classes):
        a = counts[k]
        b = counts.sum(0) - a
        na, nb = a.sum(), total - a.sum()
        if na == 0 or nb == 0:
            continue
        h = 0.5
        log_or = (np.log(a + h) - np.log(na - a + h)) - (np.log(b + h) - np.log(nb - b + h))
        se = np.sqrt(1 / (a + h) + 1 / (na - a + h) + 1 / (b + h) + 1 / (nb - b + h))
        z = np.where(seen, log_or / se, -np.inf)
        for code in np.argsort(-z)[:top]:
            if not np.isfinite(z[code]):
                break
            rows.append({"class": name, "token": int(code), "z": float(z[code]),
                         "share_in_class": float(a[code] / na),
                         "share_elsewhere": float(b[code] / nb),
                         "count": int(counts[:, code].sum())})
    return rows
