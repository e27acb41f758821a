"""EEG diffusion model: a state-space denoiser trained as a DDPM, after EEGDM.

Re-implemented from ``shared/reference/methods.md`` §3 (Puah et al., "EEGDM: EEG Representation
Learning via Generative Diffusion Model", arXiv 2508.14086) with the layer core:

- **Denoiser** (:class:`EEGDiffusion`): single-channel windows ``(B, 1, L)``; a 1×1 input
  projection + ReLU, ``n_layers`` :class:`brainmill.nn.GatedSSMBlock` (bidirectional S4D-Lin,
  gate/filter, residual and skip paths), the skip sum scaled by ``1/√n_layers`` through
  1×1 conv → ReLU → 1×1 conv (zero-initialised). Every block is conditioned on the sum of a
  sinusoidal diffusion-step embedding (through an MLP) and a learned embedding of the **EEG
  channel name**, so one network serves any montage; an optional class embedding makes it
  class-conditional for generation. With probability ``p_uncond`` a training window's channel
  (and class) is replaced by the "unknown" id, so the model also generates and describes
  channels it never saw (classifier-free-guidance style dropout; not in the reference).
- **DDPM**: ``n_steps`` (default 50) steps of the cosine schedule (Nichol & Dhariwal 2021,
  ``ᾱ(t) = cos²((t/T + s)/(1 + s)·π/2)``, ``s = 0.008``, β capped at 0.999: diffusers'
  ``squaredcos_cap_v2``), **velocity prediction** ``v = √ᾱ·ε − √(1−ᾱ)·x₀`` trained with MSE
  (Salimans & Ho 2022). Deterministic DDIM sampling (η = 0, Song et al. 2020) over any number
  of the steps, ending at ``ᾱ = 1``.
- **Signal scaling** (the reference's "staged µ-law"): signal units × ``unit_scale`` → µV,
  divided by ``scale_uv`` (100), then µ-law companding ``sign(x)·ln(1 + µ|x|)/ln(1 + µ)``
  (µ = 255) only where ``|x| > 1`` (continuous at ±1). :meth:`EEGDiffusion.decode` inverts it
  exactly.
- **Representations** (:meth:`EEGDiffusion.representations`): one noiseless pass of the clean
  window at diffusion step ``t`` (default 1), the gated activations of every block,
  **std-pooled** over windows of ``pool`` samples: ``(B, n_layers, dim, L // pool)``.

Differences from the reference (by design): S4D runs on ``dim`` channels before the gate
projection (see :class:`~brainmill.nn.GatedSSMBlock`); the channel embedding is a table rather
than a table + MLP (equivalent for a lookup); the reference's EMA (0.999, every 10 steps after
step 100) is the trainer's ``ema_*`` setting; sizes default smaller than the reference (d_model
128, d_state 128, 20 layers) for CPU runs.

Imports only torch and numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from brainmill.nn.blocks import GatedSSMBlock
from brainmill.nn.registry import NORMS

from ._config import ConfigMixin, check

__all__ = ["DiffusionConfig", "EEGDiffusion", "cosine_alphas_cumprod", "mu_law_compress",
           "mu_law_expand", "step_embedding"]


@dataclass
class DiffusionConfig(ConfigMixin):
    """Hyper-parameters of :class:`EEGDiffusion`.

    Attributes
    ----------
    channel_names : list of str
        Channel vocabulary; id ``len(channel_names)`` is "unknown channel".
    n_classes : int
        Classes of the optional class conditioning (0: none); id ``n_classes`` is "no class".
    dim, d_state, n_layers : int
        Residual width, S4D state size and number of gated SSM blocks (reference: 128, 128, 20).
    cond_dim : int
        Width of the conditioning vector.
    norm : str
        :data:`brainmill.nn.registry.NORMS` name of the blocks (reference: LayerNorm).
    dropout : float
        Dropout on the gated activations.
    ssm_init : {"lin", "inv"}
        S4D init (reference: S4D-Lin).
    n_steps : int
        Diffusion steps T (reference: 50).
    sfreq : float
        Sampling rate (Hz) the model is trained at; callers resample to it.
    unit_scale : float
        Multiplier from the signal's units to µV (1e6 for MNE's volts).
    scale_uv : float
        µV per model unit before companding (reference: 100).
    mu : float
        µ of the companding (reference: 255).
    p_uncond : float
        Training probability of replacing the channel (and class) by the unknown id.
    clip_sample : float or None
        Clip the predicted clean window to ``±clip_sample`` model units while sampling (2.0 is
        about ±26 mV after expansion); :func:`brainmill.diffusion_decoding.train_diffusion`
        lowers it to the training data's largest ``|x₀|``. None: no clipping.
    """

    channel_names: list[str] = field(default_factory=lambda: ["EEG"])
    n_classes: int = 0
    dim: int = 64
    d_state: int = 64
    n_layers: int = 8
    cond_dim: int = 128
    norm: str = "layernorm"
    dropout: float = 0.0
    ssm_init: str = "lin"
    n_steps: int = 50
    sfreq: float = 200.0
    unit_scale: float = 1e6
    scale_uv: float = 100.0
    mu: float = 255.0
    p_uncond: float = 0.1
    clip_sample: float | None = 2.0

    def __post_init__(self) -> None:
        c = "DiffusionConfig"
        self.channel_names = [str(n) for n in self.channel_names]
        check(len(self.channel_names) >= 1 and len(set(self.channel_names)) ==
              len(self.channel_names), c, "channel_names", self.channel_names,
              "a non-empty list of distinct names")
        for name in ("dim", "n_layers", "cond_dim", "n_steps"):
            v = getattr(self, name)
            check(isinstance(v, int) and v >= 1, c, name, v, "a positive integer")
        check(isinstance(self.d_state, int) and self.d_state >= 2 and self.d_state % 2 == 0, c,
              "d_state", self.d_state, "an even integer >= 2")
        check(isinstance(self.n_classes, int) and self.n_classes >= 0, c, "n_classes",
              self.n_classes, "an integer >= 0")
        check(self.norm in NORMS, c, "norm", self.norm, f"one of {', '.join(NORMS)}")
        check(self.ssm_init in ("lin", "inv"), c, "ssm_init", self.ssm_init, "'lin' or 'inv'")
        check(0.0 <= self.dropout < 1.0, c, "dropout", self.dropout, "in [0, 1)")
        check(0.0 <= self.p_uncond < 1.0, c, "p_uncond", self.p_uncond, "in [0, 1)")
        for name in ("sfreq", "unit_scale", "scale_uv", "mu"):
            v = getattr(self, name)
            check(isinstance(v, int | float) and v > 0, c, name, v, "a positive number")
        check(self.clip_sample is None or self.clip_sample > 1.0, c, "clip_sample",
              self.clip_sample, "None or a number > 1 (1 is where companding starts)")

    @property
    def unknown_channel(self) -> int:
        """Id of the "unknown channel" embedding."""
        return len(self.channel_names)


# ----------------------------------------------------------------------------- pieces


def cosine_alphas_cumprod(n_steps: int, s: float = 0.008, max_beta: float = 0.999
                          ) -> torch.Tensor:
    """``ᾱ_t`` of the capped cosine schedule, ``t = 0 … n_steps − 1`` (float64).

    ``β_t = min(1 − ᾱ((t+1)/T)/ᾱ(t/T), max_beta)`` with ``ᾱ(u) = cos²((u + s)/(1 + s)·π/2)``,
    then ``ᾱ_t = Π_{k≤t} (1 − β_k)`` (Nichol & Dhariwal, arXiv 2102.09672, eq. 17; the
    ``squaredcos_cap_v2`` schedule of diffusers).
    """
    u = torch.arange(n_steps + 1, dtype=torch.float64) / n_steps
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    return torch.cumprod(1 - betas, dim=0)


def mu_law_compress(x: torch.Tensor, mu: float) -> torch.Tensor:
    """Identity on ``[−1, 1]``, ``sign(x)·ln(1 + µ|x|)/ln(1 + µ)`` outside (continuous)."""
    big = x.abs() > 1
    squashed = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    return torch.where(big, squashed, x)


def mu_law_expand(y: torch.Tensor, mu: float) -> torch.Tensor:
    """Exact inverse of :func:`mu_law_compress`: ``sign(y)·((1 + µ)^|y| − 1)/µ`` outside ±1."""
    big = y.abs() > 1
    expanded = torch.sign(y) * torch.expm1(y.abs() * math.log1p(mu)) / mu
    return torch.where(big, expanded, y)


def step_embedding(t: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``(B, dim)`` of integer diffusion steps ``t`` ``(B,)``
    (``[sin(t·ω_k), cos(t·ω_k)]``, ``ω_k = base^(−k/(dim/2))``; odd ``dim`` pads a zero)."""
    half = dim // 2
    freqs = torch.exp(-math.log(base) * torch.arange(half, device=t.device,
                                                     dtype=torch.float32) / max(half, 1))
    angles = t.float()[:, None] * freqs[None]
    emb = torch.cat([angles.sin(), angles.cos()], dim=1)
    return F.pad(emb, (0, dim - 2 * half))


# ----------------------------------------------------------------------------- the model


class EEGDiffusion(nn.Module):
    """Conditional state-space denoiser with its DDPM schedule (see the module docstring).

    Parameters
    ----------
    config : DiffusionConfig

    Shapes
    ------
    Windows are ``(B, 1, L)`` in **model units** (:meth:`encode` of the signal); ``channel``
    ``(B,)`` int64 ids (:meth:`channel_ids`); ``label`` ``(B,)`` int64 class ids or None;
    ``t`` ``(B,)`` int64 steps in ``[0, n_steps)``.
    """

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__()
        cfg = config
        self.config = cfg
        d = cfg.dim
        self.input_proj = nn.Conv1d(1, d, 1)
        self.step_mlp = nn.Sequential(nn.Linear(d, cfg.cond_dim), nn.SiLU(),
                                      nn.Linear(cfg.cond_dim, cfg.cond_dim))
        self.channel_embed = nn.Embedding(len(cfg.channel_names) + 1, cfg.cond_dim)
        self.class_embed = (nn.Embedding(cfg.n_classes + 1, cfg.cond_dim) if cfg.n_classes
                            else None)
        self.blocks = nn.ModuleList(
            GatedSSMBlock(d, d_state=cfg.d_state, cond_channels=cfg.cond_dim, norm=cfg.norm,
                          dropout=cfg.dropout, bidirectional=True, ssm_init=cfg.ssm_init)
            for _ in range(cfg.n_layers))
        self.skip_proj = nn.Conv1d(d, d, 1)
        self.output_proj = nn.Conv1d(d, 1, 1)
        nn.init.zeros_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)
        # fixed by the config: rebuilt, not saved
        self.register_buffer("alphas_cumprod", cosine_alphas_cumprod(cfg.n_steps).float(),
                             persistent=False)
        self._channel_index = {name: i for i, name in enumerate(cfg.channel_names)}

    # ------------------------------------------------------------------ units and ids

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Signal units → model units (µV / ``scale_uv``, µ-law outside ±1)."""
        cfg = self.config
        return mu_law_compress(x * (cfg.unit_scale / cfg.scale_uv), cfg.mu)

    def decode(self, y: torch.Tensor) -> torch.Tensor:
        """Model units → signal units; the exact inverse of :meth:`encode`."""
        cfg = self.config
        return mu_law_expand(y, cfg.mu) * (cfg.scale_uv / cfg.unit_scale)

    def channel_ids(self, names: list[str] | tuple[str, ...]) -> torch.Tensor:
        """Ids ``(len(names),)`` of channel names; names not in the vocabulary get the
        unknown-channel id."""
        unknown = self.config.unknown_channel
        return torch.tensor([self._channel_index.get(str(n), unknown) for n in names],
                            dtype=torch.int64)

    # ------------------------------------------------------------------ network

    def _check(self, x: torch.Tensor, channel: torch.Tensor, label: torch.Tensor | None) -> None:
        if x.ndim != 3 or x.shape[1] != 1:
            raise ValueError(f"EEGDiffusion: windows must be (batch, 1, length), got "
                             f"{tuple(x.shape)}; reshape multichannel epochs to one window "
                             "per channel")
        if channel.shape != x.shape[:1]:
            raise ValueError(f"EEGDiffusion: channel ids must be ({x.shape[0]},), got "
                             f"{tuple(channel.shape)}")
        if label is not None and self.class_embed is None:
            raise ValueError("EEGDiffusion: labels given but the model was built with "
                             "n_classes=0 (unconditional)")

    def _condition(self, t: torch.Tensor, channel: torch.Tensor,
                   label: torch.Tensor | None) -> torch.Tensor:
        cond = self.step_mlp(step_embedding(t, self.config.dim)) + self.channel_embed(channel)
        if self.class_embed is not None:
            if label is None:
                label = torch.full_like(channel, self.config.n_classes)
            cond = cond + self.class_embed(label)
        return cond

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, channel: torch.Tensor,
                label: torch.Tensor | None = None, return_gates: bool = False,
                gate_fn: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Predicted velocity ``(B, 1, L)`` of ``x_t`` at steps ``t``; with ``return_gates``
        also the gated activation ``(B, dim, L)`` of every block, each passed through
        ``gate_fn`` first when given (e.g. pooling, so only the pooled values are kept)."""
        self._check(x_t, channel, label)
        cond = self._condition(t, channel, label)
        h = F.relu(self.input_proj(x_t))
        skips, gates = 0.0, []
        for block in self.blocks:
            h, skip, gated = block(h, cond, return_gated=True)
            skips = skips + skip
            if return_gates:
                gates.append(gated if gate_fn is None else gate_fn(gated))
        out = self.output_proj(F.relu(self.skip_proj(skips / math.sqrt(len(self.blocks)))))
        return (out, gates) if return_gates else out

    forward = denoise

    # ------------------------------------------------------------------ training

    def noisy(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε`` and the velocity target ``√ᾱ_t·ε − √(1−ᾱ_t)·x₀``."""
        a = self.alphas_cumprod[t].to(x0.dtype)[:, None, None]
        sa, sb = a.sqrt(), (1 - a).sqrt()
        return sa * x0 + sb * noise, sa * noise - sb * x0

    def loss(self, x0: torch.Tensor, channel: torch.Tensor, label: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Velocity MSE at uniformly drawn steps (logs ``v_mse``).

        ``x0`` ``(B, 1, L)`` clean windows in model units; ``generator`` draws the steps, the
        noise and the condition dropout (torch's default generator when None).
        """
        cfg = self.config
        b = x0.shape[0]
        dev = generator.device if generator is not None else torch.device("cpu")
        t = torch.randint(0, cfg.n_steps, (b,), generator=generator, device=dev).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=dev).to(x0.device, x0.dtype)
        # channel and class are dropped independently, so every combination of known and
        # unknown is trained (e.g. a known channel without a class)
        drop = (torch.rand(b, generator=generator, device=dev) < cfg.p_uncond).to(x0.device)
        channel = torch.where(drop, torch.full_like(channel, cfg.unknown_channel), channel)
        if label is not None:
            drop = (torch.rand(b, generator=generator, device=dev) < cfg.p_uncond).to(x0.device)
            label = torch.where(drop, torch.full_like(label, cfg.n_classes), label)
        x_t, v = self.noisy(x0, t, noise)
        loss = F.mse_loss(self.denoise(x_t, t, channel, label).float(), v.float())
        return loss, {"v_mse": loss.item()}

    # ------------------------------------------------------------------ representations

    @torch.no_grad()
    def representations(self, x0: torch.Tensor, channel: torch.Tensor, pool: int,
                        t: int = 1) -> torch.Tensor:
        """Std-pooled gate activations ``(B, n_layers, dim, L // pool)`` of a noiseless pass.

        ``x0`` ``(B, 1, L)`` clean windows in model units, fed as they are (no noise) with the
        step embedding of ``t``; each block's gated activation is pooled by its standard
        deviation over consecutive windows of ``pool`` samples (a trailing remainder is
        dropped).
        """
        if not 1 <= pool <= x0.shape[-1]:
            raise ValueError(f"representations: pool={pool} must be in [1, {x0.shape[-1]}] "
                             "(the window length)")
        n_pools = x0.shape[-1] // pool

        def std_pool(gated: torch.Tensor) -> torch.Tensor:
            return (gated[..., :n_pools * pool].unflatten(-1, (n_pools, pool)).float()
                    .std(dim=-1, correction=0))

        steps = torch.full((x0.shape[0],), int(t), dtype=torch.int64, device=x0.device)
        _, pooled = self.denoise(x0, steps, channel, return_gates=True, gate_fn=std_pool)
        return torch.stack(pooled, dim=1)

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def sample(self, channel: torch.Tensor, length: int, label: torch.Tensor | None = None,
               n_steps: int | None = None, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """Generate windows ``(B, 1, length)`` in model units by deterministic DDIM.

        Starts from ``x ~ N(0, I)`` (drawn from ``generator``) at step ``T − 1`` and visits
        ``n_steps`` (default all ``T``) evenly spaced steps from ``T − 1`` down to 0 (one step:
        ``T − 1`` only); at each,
        ``x̂₀ = √ᾱ·x − √(1−ᾱ)·v̂`` (clipped to ``±clip_sample``), ``ε̂ = (x − √ᾱ·x̂₀)/√(1−ᾱ)``
        and ``x ← √ᾱ'·x̂₀ + √(1−ᾱ')·ε̂`` with ``ᾱ'`` of the next visited step (1 after the
        last). Apply :meth:`decode` for signal units.
        """
        cfg = self.config
        n_steps = cfg.n_steps if n_steps is None else int(n_steps)
        if not 1 <= n_steps <= cfg.n_steps:
            raise ValueError(f"sample: n_steps={n_steps} must be in [1, {cfg.n_steps}]")
        dev = self.alphas_cumprod.device
        channel = channel.to(dev)
        label = None if label is None else label.to(dev)
        gen_dev = generator.device if generator is not None else torch.device("cpu")
        x = torch.randn((len(channel), 1, int(length)), generator=generator,
                        device=gen_dev).to(dev)
        # always from T − 1 (pure noise) down to 0, evenly spaced
        steps = np.unique(np.round(np.linspace(cfg.n_steps - 1, 0, n_steps)).astype(int))[::-1]
        for i, t in enumerate(steps):
            a = self.alphas_cumprod[t]
            a_next = self.alphas_cumprod[steps[i + 1]] if i + 1 < len(steps) else a.new_ones(())
            tt = torch.full((len(channel),), int(t), dtype=torch.int64, device=dev)
            v = self.denoise(x, tt, channel, label).float()
            x0 = a.sqrt() * x - (1 - a).sqrt() * v
            if cfg.clip_sample is not None:
                x0 = x0.clamp(-cfg.clip_sample, cfg.clip_sample)
            eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
            x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
        return x
