"""DemoVAE: a demographic-conditioned autoencoder that removes confounds from connectivity.

Re-implemented from the description in ``shared/reference/methods.md`` §4 (Orlichenko et al.,
"A Demographic-Conditioned Variational Autoencoder for fMRI Distribution Sampling and Removal
of Confounds", arXiv 2405.07977). An MLP encoder maps a subject's connectivity vector ``x`` to a
latent ``z``; the decoder sees ``[z, d]`` with ``d`` the subject's encoded demographics. Losses
push ``z`` towards N(0, I) and away from ``d``, so the demographic information travels through
``d`` only: ``transform`` gives confound-free latents, ``reconstruct`` with other demographics
harmonises, ``sample`` draws synthetic subjects with chosen demographics.

Per batch of ``n`` rows (weights in :data:`DEFAULT_LOSS_WEIGHTS`, all terms logged unweighted):

- ``rec``: ``RMSE(x, x̂)``;
- ``cov``: ``RMSE(zᵀz, n·I)`` and ``mean``: ``RMSE(mean_rows(z), 0)``, the moment matching that
  replaces the KL in the deterministic (reference) mode;
- ``decor``: for every encoded demographic column ``d`` (centred ``d̃``, sample standard
  deviation ``s_d``) and latent ``j``: ``p_dj = (d̃ · z_j) / s_d / (z_j · z_j)``; the loss is
  ``Σ_d RMSE_j(p_dj, 0)``;
- ``guide``: predictors fitted on the real training rows before training (``Ridge(α=100)`` per
  continuous, ``LogisticRegression(C=100)`` per categorical demographic), frozen as a torch
  linear map, score decoder samples from ``z ~ N(0, I)`` with random demographics (continuous
  ~ N(0, 1) in standardised units, i.e. N(mean, std) in raw units; categorical levels uniform):
  ``Σ RMSE`` over continuous plus ``Σ`` cross-entropy over categorical demographics;
- ``kl`` (``variational=True`` only): ``mean_rows ½Σ_j(μ² + σ² − 1 − log σ²)``; ``z`` is then
  ``μ + σ·ε`` in training and ``μ`` otherwise (``transform`` returns ``μ``).

Differences from the reference code, by choice (the pitfalls it lists):

- trained by :class:`brainmill.training.Trainer`: shuffled batches, AdamW with warm-up and
  cosine decay, device ``auto``, bf16 on CUDA, checkpoints, resume, optional validation and
  early stopping; bit-identical results on CPU for a fixed ``seed``;
- continuous demographics are standardised with the fit data's mean and std
  (:class:`DemographicEncoder`); an unseen categorical level is a :class:`DataError` that names
  it;
- ``decor`` is the same formula, but guarded: a column that is constant within a batch (e.g.
  every row of one sex) contributes 0 instead of 0/0, and every RMSE has a zero-safe gradient;
- in variational mode ``cov``/``mean`` act on the sampled ``z`` and ``decor`` on ``μ`` (what
  ``transform`` returns);
- checkpoints load with ``torch.load(weights_only=True)``.

Imports only torch and numpy at module level; pandas and scikit-learn are imported when a
:class:`DemoVAE` is fitted or demographics are encoded.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from brainmill.errors import DataError
from brainmill.io import atomic_path
from brainmill.nn.registry import ACTS, NORMS, make_act, make_norm
from brainmill.training import TrainConfig, Trainer, validation_split

from ._config import ConfigMixin, check
from .demographics import DemographicEncoder, _as_frame, _labels, _python_scalar

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_LOSS_WEIGHTS", "DEFAULT_TRAINING", "DemoVAE", "DemoVAENet",
           "DemoVAENetConfig", "DemographicEncoder", "GuidancePredictors", "VAEOutput",
           "covariance_loss", "decorrelation_loss", "guidance_loss", "kl_loss", "mean_loss",
           "rmse"]

#: Loss weights of the reference (``kl`` only matters with ``variational=True``).
DEFAULT_LOSS_WEIGHTS: dict[str, float] = {"rec": 100.0, "cov": 1.0, "mean": 1.0, "decor": 10.0,
                                          "guide": 0.001, "kl": 1e-3}

#: TrainConfig fields a DemoVAE uses unless ``training`` overrides them (the rest keep the
#: TrainConfig defaults). On ABIDE CC200 correlation connectivity (241 subjects × 19,900 edges,
#: hidden 1000, latent 30, batch 64) 40 epochs at peak lr 1e-3 reach a training RMSE of 0.130
#: (mean predictor 0.157) where the reference's lr 1e-4 reaches 0.148; with 20 % held out the
#: validation RMSE levels off (0.138) after ~45 epochs without rising, so 100 epochs leave a
#: margin. No weight decay, as the reference (Adam, wd 0).
DEFAULT_TRAINING: dict[str, Any] = {"max_epochs": 100, "batch_size": 64, "lr": 1e-3,
                                    "min_lr": 1e-5, "weight_decay": 0.0}

_SAVE_FORMAT = 1
_SAVE_KIND = "demovae"
_EPS = 1e-8
_TINY = 1e-12  # floor of a mean square under a square root: keeps its gradient finite at 0
_ABSENT_LEVEL_LOGIT = -20.0  # a level absent from the guidance rows is predicted "never"


# ------------------------------------------------------------------------------- the network


@dataclass
class DemoVAENetConfig(ConfigMixin):
    """Shape of :class:`DemoVAENet`.

    Attributes
    ----------
    n_features : int
        Width of ``x`` (e.g. 19,900 edges of CC200 connectivity).
    n_demographics : int
        Width of the encoded demographics (:attr:`DemographicEncoder.n_features_`), may be 0.
    latent_dim : int
        Width of ``z``. Default 30 (the paper's notebooks; the pip package uses 60).
    hidden : int
        Hidden width of encoder and decoder. Default 1000 (the reference).
    variational : bool
        Encoder outputs ``μ`` and ``log σ²``. Default False (the reference).
    norm : str | None
        A :data:`brainmill.nn.registry.NORMS` name applied to the hidden layer before the
        activation; None (the reference) for none.
    act : str
        ``relu`` (the reference) or an :data:`brainmill.nn.registry.ACTS` name.
    """

    n_features: int
    n_demographics: int
    latent_dim: int = 30
    hidden: int = 1000
    variational: bool = False
    norm: str | None = None
    act: str = "relu"

    def __post_init__(self) -> None:
        c = "DemoVAENetConfig"
        for name in ("n_features", "latent_dim", "hidden"):
            v = getattr(self, name)
            check(_is_int(v) and v >= 1, c, name, v, "a positive integer")
        check(_is_int(self.n_demographics) and self.n_demographics >= 0, c, "n_demographics",
              self.n_demographics, "a non-negative integer")
        check(isinstance(self.variational, bool), c, "variational", self.variational, "a bool")
        check(self.norm is None or self.norm in NORMS, c, "norm", self.norm,
              f"None or one of {', '.join(NORMS)}")
        check(self.act == "relu" or self.act in ACTS, c, "act", self.act,
              f"'relu' or one of {', '.join(ACTS)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


class _TwoLayer(nn.Module):
    """Linear → [norm] → activation → Linear, ``(n, d_in) → (n, d_out)``."""

    def __init__(self, d_in: int, hidden: int, d_out: int, norm: str | None, act: str) -> None:
        super().__init__()
        self.act = nn.ReLU() if act == "relu" else make_act(act, dim=hidden)
        width = hidden * (2 if getattr(self.act, "gated", False) else 1)
        self.fc1 = nn.Linear(d_in, width)
        self.norm = nn.Identity() if norm is None else make_norm(norm, width)
        self.fc2 = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.norm(self.fc1(x))))


class VAEOutput(NamedTuple):
    """What :meth:`DemoVAENet.forward` returns for ``n`` rows.

    Attributes
    ----------
    reconstruction : torch.Tensor
        ``(n, n_features)`` decoded ``[z, d]``.
    z : torch.Tensor
        ``(n, latent_dim)`` latent the decoder saw (``μ + σ·ε`` when variational and training).
    mu : torch.Tensor
        ``(n, latent_dim)`` encoder mean (``z`` itself in deterministic mode).
    logvar : torch.Tensor | None
        ``(n, latent_dim)`` ``log σ²``; None in deterministic mode.
    """

    reconstruction: torch.Tensor
    z: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor | None


class DemoVAENet(nn.Module):
    """Encoder ``x → z`` and demographic-conditioned decoder ``[z, d] → x̂``.

    Encoder: Linear(n_features → hidden) → [norm] → act → Linear(hidden → latent_dim, ×2 when
    variational). Decoder: Linear(latent_dim + n_demographics → hidden) → [norm] → act →
    Linear(hidden → n_features). The demographics enter the decoder only.

    Parameters
    ----------
    config : DemoVAENetConfig

    Shapes
    ------
    ``x`` ``(n, n_features)``, ``d`` ``(n, n_demographics)``, ``z`` ``(n, latent_dim)``.
    """

    def __init__(self, config: DemoVAENetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder = _TwoLayer(c.n_features, c.hidden, c.latent_dim * (2 if c.variational else 1),
                                 c.norm, c.act)
        self.decoder = _TwoLayer(c.latent_dim + c.n_demographics, c.hidden, c.n_features, c.norm,
                                 c.act)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(μ, log σ²)`` of ``x`` (``log σ²`` None in deterministic mode), clamped to
        [−30, 20] so that ``σ`` stays finite."""
        h = self.encoder(x)
        if not self.config.variational:
            return h, None
        mu, logvar = h.chunk(2, dim=-1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """``x̂`` ``(n, n_features)`` from ``z`` ``(n, latent_dim)`` and ``d`` ``(n, n_demographics)``."""
        return self.decoder(torch.cat([z, d.to(z.dtype)], dim=-1))

    def forward(self, x: torch.Tensor, d: torch.Tensor,
                generator: torch.Generator | None = None) -> VAEOutput:
        """Encode, reparameterise (variational mode, training only; ``ε`` from ``generator``),
        decode with ``d``."""
        mu, logvar = self.encode(x)
        z = mu
        if logvar is not None and self.training:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + torch.exp(0.5 * logvar) * eps
        return VAEOutput(self.decode(z, d), z, mu, logvar)


# ------------------------------------------------------------------------------------ losses


def rmse(a: torch.Tensor, b: torch.Tensor | float = 0.0) -> torch.Tensor:
    """``sqrt(mean((a − b)²))`` over all elements; the mean square is floored at 1e-12 so the
    gradient stays finite (zero) where ``a == b`` exactly."""
    return (a - b).pow(2).mean().clamp_min(_TINY).sqrt()


def covariance_loss(z: torch.Tensor) -> torch.Tensor:
    """``RMSE(zᵀz, n·I)`` for ``z`` ``(n, latent_dim)`` (uncentred, as the reference)."""
    n, k = z.shape
    return rmse(z.T @ z, n * torch.eye(k, device=z.device, dtype=z.dtype))


def mean_loss(z: torch.Tensor) -> torch.Tensor:
    """``RMSE(mean over rows of z, 0)`` for ``z`` ``(n, latent_dim)``."""
    return rmse(z.mean(dim=0))


def decorrelation_loss(z: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``Σ_c RMSE_j(p_cj, 0)`` with ``p_cj = (d̃_c · z_j) / s_c / (z_j · z_j)``.

    ``d̃_c`` is demographic column ``c`` centred over the batch and ``s_c`` its sample standard
    deviation (ddof 1, as the reference; ddof 0 for a single row). A column that is constant in
    the batch has ``d̃_c = 0`` and contributes 0 (``s_c`` and ``z_j · z_j`` are floored at 1e-8).

    Parameters
    ----------
    z : Tensor, shape (n, latent_dim)
    d : Tensor, shape (n, n_demographics)

    Returns
    -------
    Tensor
        Scalar; 0 when there are no demographic columns.
    """
    if d.shape[1] == 0:
        return z.new_zeros(())
    n = z.shape[0]
    d = d.to(z.dtype)
    centred = d - d.mean(dim=0)
    std = (centred.pow(2).sum(dim=0) / max(n - 1, 1)).sqrt().clamp_min(_EPS)
    p = (centred.T @ z) / std[:, None] / z.pow(2).sum(dim=0).clamp_min(_EPS)[None, :]
    return p.pow(2).mean(dim=1).clamp_min(_TINY).sqrt().sum()


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) summed over latents, averaged over rows:
    ``mean_rows ½Σ_j(μ² + exp(log σ²) − 1 − log σ²)``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1).mean()


def guidance_loss(outputs: torch.Tensor, targets: torch.Tensor,
                  blocks: Sequence[tuple[str, str, slice]]) -> torch.Tensor:
    """Error of the frozen predictors' ``outputs`` against the demographics they should show.

    Parameters
    ----------
    outputs : Tensor, shape (m, n_demographics)
        :class:`GuidancePredictors` output: a standardised prediction per continuous column,
        logits per categorical block.
    targets : Tensor, shape (m, n_demographics)
        Encoded demographics the samples were decoded with.
    blocks : sequence of (name, kind, slice)
        :attr:`DemographicEncoder.blocks_`.

    Returns
    -------
    Tensor
        ``Σ_continuous RMSE(pred, target) + Σ_categorical cross-entropy(logits, level)``.
    """
    loss = outputs.new_zeros(())
    for _, kind, sl in blocks:
        if kind == "continuous":
            loss = loss + rmse(outputs[:, sl], targets[:, sl])
        else:
            loss = loss + F.cross_entropy(outputs[:, sl], targets[:, sl].argmax(dim=1))
    return loss


class GuidancePredictors(nn.Module):
    """Frozen linear demographic predictors ``x → x·W + b`` (buffers, no parameters).

    Output columns follow :attr:`DemographicEncoder.blocks_`: a ``Ridge(α)`` prediction of each
    standardised continuous demographic, and the ``LogisticRegression(C)`` logits of each
    categorical one (binary: ``[0, s]``, whose softmax is sklearn's ``predict_proba``).

    Parameters
    ----------
    weight : Tensor, shape (n_features, n_demographics)
    bias : Tensor, shape (n_demographics,)
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().float().clone())
        self.register_buffer("bias", bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.to(x.dtype) + self.bias.to(x.dtype)

    @classmethod
    def fit(cls, X: np.ndarray, encoded: np.ndarray, blocks: Sequence[tuple[str, str, slice]],
            alpha: float = 100.0, C: float = 100.0, max_iter: int = 1000) -> GuidancePredictors:
        """Fit one predictor per demographic on real data and freeze it.

        Parameters
        ----------
        X : ndarray, shape (n, n_features)
        encoded : ndarray, shape (n, n_demographics)
            :meth:`DemographicEncoder.transform` of the same rows.
        blocks : sequence of (name, kind, slice)
        alpha, C : float
            Ridge regularisation and LogisticRegression inverse regularisation (the
            reference's 100 and 100).
        max_iter : int
            LogisticRegression iterations.

        Notes
        -----
        A categorical demographic with a single level in these rows gets all-zero logits (a
        constant loss, no gradient); levels absent from the rows get logit −20 ("never").
        """
        from sklearn.linear_model import LogisticRegression, Ridge

        X = np.asarray(X, dtype=np.float64)
        weight = np.zeros((X.shape[1], encoded.shape[1]))
        bias = np.zeros(encoded.shape[1])
        for _, kind, sl in blocks:
            if kind == "continuous":
                model = Ridge(alpha=alpha).fit(X, encoded[:, sl.start])
                weight[:, sl.start], bias[sl.start] = model.coef_, model.intercept_
                continue
            y = encoded[:, sl].argmax(axis=1)
            present = np.unique(y)
            if len(present) < 2:
                continue
            model = LogisticRegression(C=C, max_iter=max_iter).fit(X, y)
            bias[sl] = _ABSENT_LEVEL_LOGIT
            cols = sl.start + model.classes_
            if len(present) == 2:
                weight[:, cols[0]], bias[cols[0]] = 0.0, 0.0
                weight[:, cols[1]], bias[cols[1]] = model.coef_[0], model.intercept_[0]
            else:
                weight[:, cols], bias[cols] = model.coef_.T, model.intercept_
        return cls(torch.from_numpy(weight), torch.from_numpy(bias))


def _random_demographics(blocks: Sequence[tuple[str, str, slice]], n_demographics: int, m: int,
                         generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``(m, n_demographics)`` encoded demographics: continuous N(0, 1), categorical uniform."""
    d = torch.zeros(m, n_demographics, device=device)
    for _, kind, sl in blocks:
        if kind == "continuous":
            d[:, sl] = torch.randn(m, 1, generator=generator, device=device)
        else:
            k = sl.stop - sl.start
            level = torch.randint(k, (m,), generator=generator, device=device)
            d[torch.arange(m, device=device), sl.start + level] = 1.0
    return d


# -------------------------------------------------------------------------------- estimator


class DemoVAE:
    """Demographic-conditioned (variational) autoencoder with a scikit-learn-like API.

    Parameters
    ----------
    latent_dim : int
        Latent width. Default 30 (the paper's notebooks).
    hidden : int
        Hidden width of encoder and decoder. Default 1000 (the reference).
    variational : bool
        False (the reference): ``z`` is the encoder output, kept near N(0, I) by the ``cov``
        and ``mean`` losses. True: reparameterised ``z = μ + σ·ε`` plus a ``kl`` term. On
        ABIDE (BENCHMARKS.md) True with one batch of 256 per step decorrelated the held-out
        latents to chance where False left site in them, at a worse reconstruction; the
        workflow's config defaults to True.
    norm : str | None
        Hidden-layer norm by :data:`brainmill.nn.registry.NORMS` name; None (the reference).
    act : str
        ``relu`` (the reference) or an :data:`brainmill.nn.registry.ACTS` name.
    continuous, categorical : sequence of str
        Demographic columns the decoder is conditioned on (see :class:`DemographicEncoder`).
        Default ``("age",)`` and ``("sex", "site")``.
    loss_weights : mapping | None
        Overrides of :data:`DEFAULT_LOSS_WEIGHTS` (``rec``, ``cov``, ``mean``, ``decor``,
        ``guide``, ``kl``); missing keys keep the default. None: the defaults.
    guidance : bool
        Use the ``guide`` loss (fits the frozen predictors first). Default True.
    n_guide_samples : int
        Random samples decoded per batch for the ``guide`` loss. Default 100 (the reference).
    training : TrainConfig | mapping | None
        How to train. A mapping overrides :data:`DEFAULT_TRAINING` (then the TrainConfig
        defaults); a TrainConfig is used as it is. Its ``seed`` is replaced by ``seed``.
    seed : int
        Seeds the weight initialisation, the batches, the random draws of the losses and the
        default of :meth:`sample`. Default 0.
    run_dir : str | Path | None
        Trainer folder for ``checkpoint.pt``/``history.csv``/``training.json``; a second
        ``fit`` with the same settings resumes there. None: nothing written.

    Attributes
    ----------
    net_ : DemoVAENet
        The trained network (eval mode), on the training device.
    encoder_ : DemographicEncoder
    guidance_ : GuidancePredictors | None
        The frozen predictors used in training (not saved).
    history_ : list[dict]
        One row per epoch from the Trainer (``train_loss``, ``rec``, ``cov``, ``mean``,
        ``decor``, ``guide``, ``kl``, validation keys, ...).
    training_seconds_ : float
    train_result_ : brainmill.training.TrainResult
        Only after :meth:`fit` (not restored by :meth:`load`).
    n_features_in_ : int
    """

    def __init__(self, latent_dim: int = 30, hidden: int = 1000, variational: bool = False,
                 norm: str | None = None, act: str = "relu",
                 continuous: Sequence[str] = ("age",),
                 categorical: Sequence[str] = ("sex", "site"),
                 loss_weights: Mapping[str, float] | None = None, guidance: bool = True,
                 n_guide_samples: int = 100,
                 training: TrainConfig | Mapping[str, Any] | None = None, seed: int = 0,
                 run_dir: str | Path | None = None) -> None:
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.variational = variational
        self.norm = norm
        self.act = act
        self.continuous = continuous
        self.categorical = categorical
        self.loss_weights = loss_weights
        self.guidance = guidance
        self.n_guide_samples = n_guide_samples
        self.training = training
        self.seed = seed
        self.run_dir = run_dir

    # --------------------------------------------------------------------- parameters

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments (scikit-learn convention)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> DemoVAE:
        """Set constructor arguments (scikit-learn convention); takes effect at the next fit."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"DemoVAE.set_params: unknown parameter {name!r}; valid: "
                                 f"{', '.join(valid)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        return (f"DemoVAE(latent_dim={self.latent_dim}, hidden={self.hidden}, "
                f"variational={self.variational})")

    def _weights(self) -> dict[str, float]:
        given = dict(self.loss_weights or {})
        unknown = sorted(set(given) - set(DEFAULT_LOSS_WEIGHTS))
        if unknown:
            raise ValueError(f"DemoVAE.loss_weights: unknown term(s) {unknown}; valid: "
                             f"{', '.join(DEFAULT_LOSS_WEIGHTS)}")
        weights = {**DEFAULT_LOSS_WEIGHTS, **given}
        for key, w in weights.items():
            if not (isinstance(w, int | float) and not isinstance(w, bool) and math.isfinite(w)
                    and w >= 0):
                raise ValueError(f"DemoVAE.loss_weights[{key!r}] = {w!r}: expected a finite "
                                 "number >= 0")
        return {k: float(w) for k, w in weights.items()}

    def _train_config(self) -> TrainConfig:
        if not (_is_int(self.seed) and 0 <= self.seed < 2**32):
            raise ValueError(f"DemoVAE.seed = {self.seed!r}: expected an int in [0, 2**32)")
        if isinstance(self.training, TrainConfig):
            return dataclasses.replace(self.training, seed=int(self.seed))
        if self.training is not None and not isinstance(self.training, Mapping):
            raise ValueError(f"DemoVAE.training: expected a TrainConfig, a mapping of its fields "
                             f"or None, got {type(self.training).__name__}")
        given = dict(self.training or {})
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(given) - names)
        if unknown:
            raise ValueError(f"DemoVAE.training: unknown TrainConfig field(s) {unknown}; valid: "
                             f"{sorted(names)}")
        return TrainConfig(**{**DEFAULT_TRAINING, **given, "seed": int(self.seed)})

    def _check_params(self) -> None:
        if not (_is_int(self.n_guide_samples) and self.n_guide_samples >= 1):
            raise ValueError(f"DemoVAE.n_guide_samples = {self.n_guide_samples!r}: expected an "
                             "int >= 1")
        if not isinstance(self.guidance, bool):
            raise ValueError(f"DemoVAE.guidance = {self.guidance!r}: expected a bool")
        for name in ("continuous", "categorical"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise ValueError(f"DemoVAE.{name} = {value!r}: expected a sequence of column "
                                 f"names, e.g. ({value!r},)")

    # --------------------------------------------------------------------- fitting

    def fit(self, X: np.ndarray, demographics: pd.DataFrame) -> DemoVAE:
        """Train on ``X`` conditioned on ``demographics``.

        Parameters
        ----------
        X : ndarray, shape (n_subjects, n_features)
            E.g. upper-triangle connectivity vectors.
        demographics : pandas.DataFrame
            One row per row of ``X`` (index: subject labels, used in error messages), with the
            ``continuous`` and ``categorical`` columns.

        Returns
        -------
        DemoVAE
            ``self``, with the fitted attributes.
        """
        self._check_params()
        weights = self._weights()
        config = self._train_config()
        df = _as_frame(demographics)
        X = self._check_X(X, df=df, fitted=False)
        encoder = DemographicEncoder().fit(df, self.continuous, self.categorical)
        D = encoder.transform(df)
        net_config = DemoVAENetConfig(n_features=X.shape[1], n_demographics=D.shape[1],
                                      latent_dim=self.latent_dim, hidden=self.hidden,
                                      variational=self.variational, norm=self.norm, act=self.act)

        guide = None
        if self.guidance and weights["guide"] > 0 and D.shape[1] > 0:
            rows = np.arange(len(X))
            if config.val_fraction > 0:  # the rows the Trainer will train on
                rows = validation_split(len(X), config.val_fraction, config.seed)[0]
            guide = GuidancePredictors.fit(X[rows], D[rows], encoder.blocks_)

        torch.manual_seed(config.seed)
        net = DemoVAENet(net_config)
        loss_fn = _LossFn(weights, guide, encoder.blocks_, D.shape[1], self.n_guide_samples)
        result = Trainer(config, self.run_dir).fit(
            net, loss_fn, (X.astype(np.float32), D.astype(np.float32)))

        self.net_ = net.eval()
        self.encoder_ = encoder
        self.guidance_ = guide
        self.history_ = result.history
        self.training_seconds_ = result.seconds
        self.train_result_ = result
        self.n_features_in_ = X.shape[1]
        return self

    # --------------------------------------------------------------------- inference

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise ValueError("this DemoVAE is not fitted: call fit(X, demographics) or "
                             "DemoVAE.load(path) first")

    def _check_X(self, X: Any, df: pd.DataFrame | None = None, fitted: bool = True) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or not np.issubdtype(X.dtype, np.number):
            raise ValueError(f"X must be a numeric (n_subjects, n_features) array, got shape "
                             f"{X.shape} and dtype {X.dtype}")
        if fitted and X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features per row, but this DemoVAE was "
                             f"fitted on {self.n_features_in_}")
        if df is not None and len(df) != len(X):
            raise ValueError(f"X has {len(X)} rows but demographics has {len(df)}: expected one "
                             "demographics row per row of X")
        bad = ~np.isfinite(X).all(axis=1)
        if bad.any():
            where = (f"subjects {_labels(df, bad)}" if df is not None
                     else f"rows {np.flatnonzero(bad)[:10].tolist()}")
            raise DataError(f"X has NaN or infinite values in {int(bad.sum())} row(s): {where}",
                            expected="finite features for every subject",
                            hint="exclude those subjects or fix their connectivity")
        return X

    @property
    def _device(self) -> torch.device:
        return next(self.net_.parameters()).device

    def _batches(self, *arrays: np.ndarray, batch_size: int = 512):
        device = self._device
        for start in range(0, len(arrays[0]), batch_size):
            yield tuple(torch.from_numpy(np.ascontiguousarray(a[start:start + batch_size],
                                                              dtype=np.float32)).to(device)
                        for a in arrays)

    @torch.no_grad()
    def transform(self, X: np.ndarray) -> np.ndarray:
        """Confound-free latents: the encoder output (``μ`` in variational mode).

        Parameters
        ----------
        X : ndarray, shape (n, n_features)

        Returns
        -------
        ndarray, shape (n, latent_dim), float32
        """
        self._check_fitted()
        X = self._check_X(X)
        self.net_.eval()
        parts = [self.net_.encode(x)[0].float().cpu().numpy() for (x,) in self._batches(X)]
        return np.concatenate(parts) if parts else np.zeros((0, self.latent_dim), np.float32)

    @torch.no_grad()
    def reconstruct(self, X: np.ndarray, demographics: pd.DataFrame) -> np.ndarray:
        """``decode(transform(X), demographics)``: with the subjects' own demographics a
        reconstruction; with others a counterfactual (e.g. every subject moved to one site).

        Parameters
        ----------
        X : ndarray, shape (n, n_features)
        demographics : pandas.DataFrame
            ``n`` rows with the model's demographic columns.

        Returns
        -------
        ndarray, shape (n, n_features), float32
        """
        self._check_fitted()
        df = _as_frame(demographics)
        X = self._check_X(X, df=df)
        D = self.encoder_.transform(df)
        self.net_.eval()
        parts = [self.net_.decode(self.net_.encode(x)[0], d).float().cpu().numpy()
                 for x, d in self._batches(X, D)]
        return np.concatenate(parts) if parts else np.zeros((0, X.shape[1]), np.float32)

    @torch.no_grad()
    def sample(self, demographics: pd.DataFrame, n_per_row: int = 1,
               seed: int | None = None) -> np.ndarray:
        """Synthetic subjects: decode ``z ~ N(0, I)`` with the given demographics.

        Parameters
        ----------
        demographics : pandas.DataFrame
            Rows of demographics to condition on.
        n_per_row : int
            Samples per row; the output repeats each row's samples together (row 0's
            ``n_per_row`` samples first).
        seed : int | None
            Seed of the CPU generator ``z`` is drawn from (the same samples on every device);
            None: the model's ``seed``.

        Returns
        -------
        ndarray, shape (len(demographics) · n_per_row, n_features), float32
        """
        self._check_fitted()
        if not (_is_int(n_per_row) and n_per_row >= 1):
            raise ValueError(f"sample: n_per_row = {n_per_row!r}, expected an int >= 1")
        D = np.repeat(self.encoder_.transform(_as_frame(demographics)), n_per_row, axis=0)
        generator = torch.Generator().manual_seed(int(self.seed if seed is None else seed))
        Z = torch.randn(len(D), self.net_.config.latent_dim, generator=generator).numpy()
        self.net_.eval()
        parts = [self.net_.decode(z, d).float().cpu().numpy() for z, d in self._batches(Z, D)]
        return (np.concatenate(parts) if parts
                else np.zeros((0, self.n_features_in_), np.float32))

    # --------------------------------------------------------------------- persistence

    def save(self, path: str | Path) -> Path:
        """Write the fitted model to ``path`` atomically (a torch file that loads with
        ``weights_only=True``): constructor arguments, demographic encoder, network config and
        weights, training history.

        Returns
        -------
        pathlib.Path
            ``path``.
        """
        self._check_fitted()
        params = self.get_params()
        training = params["training"]
        if isinstance(training, TrainConfig):
            training = dataclasses.asdict(training)
        params.update(continuous=list(self.continuous), categorical=list(self.categorical),
                      loss_weights=None if self.loss_weights is None else dict(self.loss_weights),
                      training=None if training is None else _plain(dict(training)),
                      run_dir=None if self.run_dir is None else str(self.run_dir))
        payload = {"kind": _SAVE_KIND, "format": _SAVE_FORMAT, "params": params,
                   "encoder": self.encoder_.to_dict(), "net_config": self.net_.config.to_dict(),
                   "state_dict": {k: v.detach().cpu() for k, v in self.net_.state_dict().items()},
                   "history": _plain(self.history_),
                   "training_seconds": float(self.training_seconds_)}
        path = Path(path)
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        return path

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> DemoVAE:
        """Rebuild a model written by :meth:`save` (network in eval mode on ``map_location``).

        Raises
        ------
        FileNotFoundError
            No file at ``path``.
        ValueError
            The file is not a saved DemoVAE.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"DemoVAE.load: no saved model at {path}")
        payload = torch.load(path, map_location=map_location, weights_only=True)
        keys = {"kind", "format", "params", "encoder", "net_config", "state_dict"}
        if (not isinstance(payload, dict) or not keys <= set(payload)
                or payload["kind"] != _SAVE_KIND):
            raise ValueError(f"DemoVAE.load: {path} is not a saved DemoVAE (expected the keys "
                             f"{sorted(keys)} with kind {_SAVE_KIND!r}, written by DemoVAE.save)")
        if payload["format"] != _SAVE_FORMAT:
            raise ValueError(f"DemoVAE.load: {path} has format {payload['format']!r}; this "
                             f"brainmill reads format {_SAVE_FORMAT}")
        model = cls(**payload["params"])
        net = DemoVAENet(DemoVAENetConfig.from_dict(payload["net_config"]))
        net.load_state_dict(payload["state_dict"])
        model.net_ = net.to(map_location).eval()
        model.encoder_ = DemographicEncoder.from_dict(payload["encoder"])
        model.guidance_ = None
        model.history_ = list(payload.get("history", []))
        model.training_seconds_ = float(payload.get("training_seconds", 0.0))
        model.n_features_in_ = net.config.n_features
        return model


def _plain(obj: Any) -> Any:
    """Tuples → lists and numpy scalars → python, recursively (for weights_only loading)."""
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return _python_scalar(obj)


class _LossFn:
    """The Trainer's ``loss_fn(model, batch, generator) -> (loss, logs)`` for a DemoVAE."""

    def __init__(self, weights: dict[str, float], guide: GuidancePredictors | None,
                 blocks: list[tuple[str, str, slice]], n_demographics: int,
                 n_guide_samples: int) -> None:
        self.weights = weights
        self.guide = guide
        self.blocks = blocks
        self.n_demographics = n_demographics
        self.n_guide_samples = n_guide_samples

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, ...],
                 generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        x, d = batch
        out = model(x, d, generator)
        device = x.device
        # the loss statistics in fp32 even when the network runs under bf16 autocast
        with torch.autocast(device.type, enabled=False):
            z, mu = out.z.float(), out.mu.float()
            terms = {"rec": rmse(out.reconstruction.float(), x.float()),
                     "cov": covariance_loss(z), "mean": mean_loss(z),
                     "decor": decorrelation_loss(mu, d.float())}
            if out.logvar is not None:
                terms["kl"] = kl_loss(mu, out.logvar.float())
        if self.guide is not None:
            guide = self.guide.to(device)  # a no-op after the first batch
            m = self.n_guide_samples
            z_s = torch.randn(m, z.shape[1], generator=generator, device=device)
            d_s = _random_demographics(self.blocks, self.n_demographics, m, generator, device)
            x_s = model.decode(z_s, d_s)
            with torch.autocast(device.type, enabled=False):
                terms["guide"] = guidance_loss(guide(x_s.float()), d_s, self.blocks)
        loss = sum(self.weights[k] * v for k, v in terms.items())
        return loss, {k: float(v.detach()) for k, v in terms.items()}
