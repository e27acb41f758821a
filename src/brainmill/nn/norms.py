"""Normalisation layers beyond torch's own LayerNorm / RMSNorm.

* :class:`UnifiedNorm` — Unified Normalization (Yang et al. 2022), channels-last, foldable at
  inference.
* :class:`BatchChannelNorm` — Batch-Channel Normalization (Qiao et al. 2019), channels-first.
* :class:`WSLinear`, :class:`WSConv1d` — Weight Standardization (Qiao et al. 2019).
* :class:`EvoNormS0`, :class:`EvoNormB0` — EvoNorm (Liu et al. 2020), channels-first.

Channels-last tensors are ``(..., C)``; channels-first tensors are ``(N, C, *)`` (braindecode's
``(batch, channels, time)``, or images ``(N, C, H, W)``). The statistics are computed in at least
float32 (the input is promoted to the parameters' dtype), so under ``torch.autocast`` these layers
return float32, as torch's LayerNorm does. Formulas, defaults and pitfalls follow
``shared/reference/layers.md`` §1, §3, §4.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

__all__ = [
    "BatchChannelNorm",
    "EstimatedBatchNorm",
    "EvoNormB0",
    "EvoNormS0",
    "UnifiedNorm",
    "WSConv1d",
    "WSLinear",
    "fit_num_groups",
    "standardize_weight",
]


def _compute_dtype(x: torch.Tensor, ref: torch.Tensor) -> torch.dtype:
    """The dtype statistics are computed in: the input promoted to the parameters' dtype."""
    return torch.promote_types(x.dtype, ref.dtype)


def fit_num_groups(num_channels: int, num_groups: int) -> int:
    """The largest group count ``<= num_groups`` that divides ``num_channels``.

    EvoNorm's rule (layers.md §4): start at ``num_groups`` and reduce by one until it divides
    ``C``; e.g. ``C = 48`` with 32 groups gives 24.
    """
    if num_channels < 1 or num_groups < 1:
        raise ValueError(f"num_channels and num_groups must be >= 1, got {num_channels}, "
                         f"{num_groups}")
    g = min(num_groups, num_channels)
    while num_channels % g:
        g -= 1
    return g


def _channel_view(p: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape a per-channel vector (C,) to broadcast over a channels-first (N, C, *) tensor."""
    return p.view(1, -1, *([1] * (ndim - 2)))


# =============================================================================================
# Unified Normalization
# =============================================================================================


@dataclass
class _UNBackwardState:
    """What the hand-written backward of one UN training step needs besides saved tensors."""

    t: int
    skip: bool
    warmup_iters: int
    momentum: float
    buffer_gz: torch.Tensor  # the module's buffer, updated in place by the backward
    ema_gz: torch.Tensor  # idem


class _UnifiedNormFunction(torch.autograd.Function):
    """y = γ·z + β with z = x / sqrt(σ² + eps), and UN's approximate backward (layers.md §1).

    Inputs: ``x`` (P, C) flattened tokens, ``weight``/``bias`` (C,), ``inv_std`` = 1/sqrt(σ²+eps)
    (C,), ``r`` the gradient-compensation factor (C,), and a :class:`_UNBackwardState`.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, inv_std, r, state):
        z = x * inv_std
        ctx.save_for_backward(z, weight, inv_std, r)
        ctx.state = state
        return z * weight + bias

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        z, weight, inv_std, r = ctx.saved_tensors
        st: _UNBackwardState = ctx.state
        g = dy * (weight * r)
        gz = (g * z).mean(dim=0)  # padded tokens included, as in the reference
        m_b = st.buffer_gz.shape[0]
        st.buffer_gz[st.t % m_b] = st.ema_gz if st.skip else gz
        if st.t <= m_b or st.t < st.warmup_iters or st.skip:
            psi = gz
        else:
            psi = st.buffer_gz.mean(dim=0).to(gz.dtype)
        st.ema_gz.mul_(st.momentum).add_((1.0 - st.momentum) * psi.to(st.ema_gz.dtype))
        centre = psi if st.skip else st.ema_gz.to(gz.dtype)
        dx = (g - centre * z) * inv_std
        dweight = (dy * (r * z)).sum(dim=0)
        dbias = dy.sum(dim=0)
        return dx, dweight, dbias, None, None, None


class UnifiedNorm(nn.Module):
    r"""Unified Normalization (UN): offline-foldable replacement for LayerNorm in Transformers.

    Source: Yang et al., "Unified Normalization for Accelerating and Stabilizing Transformers",
    ACM MM 2022, arXiv 2208.01313 (re-implemented from layers.md §1).

    UN normalises each channel by its **second moment** over the batch's tokens (no mean is
    subtracted, as in PowerNorm). For training step ``t`` (1-based):

    1. :math:`x^2_c = \operatorname{mean}_{tokens}(x_c^2)` over the non-padded tokens.
    2. ``rec`` = unbiased variance of ``sqrt(buffer_x2)`` (a scalar), taken before step 3.
    3. ``buffer_x2[t mod M] = x2``.
    4. Outlier filtration (optional, ``t >= warmup_iters``): if for any channel the arithmetic
       mean minus the geometric mean of the window exceeds ``M·rec``, the slot is overwritten with
       ``running_var`` and the step is "skipped" (``skip_counter += 1``).
    5. :math:`\sigma^2 = x^2` during warm-up (``t <= M`` or ``t < warmup_iters``) or on a skipped
       step, otherwise the **geometric mean** of the window (fluctuation smoothing).
    6. :math:`z = x/\sqrt{\sigma^2+\epsilon}`, :math:`y = \gamma z + \beta`.
    7. :math:`r = \sqrt{\sigma^2+\epsilon}/\sqrt{\mathrm{running\_var}+\epsilon}` clamped to
       [1/5, 5]; :math:`r = 1` while ``t <= max(1000, warmup_iters)`` or on a skipped step.
    8. ``running_var = momentum·running_var + (1 − momentum)·σ²``.

    The backward is hand-written and **deliberately not the exact gradient** (PowerNorm-style):
    with :math:`g = dy\,\gamma\, r` and :math:`gz = \operatorname{mean}(g z)`,
    :math:`\psi` = ``gz`` in warm-up / skipped steps, else the arithmetic mean of a window of
    ``gz``; ``ema_gz = momentum·ema_gz + (1 − momentum)·ψ`` and
    :math:`dx = (g - \mathrm{ema\_gz}\, z)/\sqrt{\sigma^2+\epsilon}` (ψ instead of ``ema_gz`` on
    a skipped step); :math:`d\gamma = \sum dy\, r z`, :math:`d\beta = \sum dy`. So
    ``torch.autograd.gradcheck`` fails by design.

    In ``eval()`` mode, :math:`y = \gamma x/\sqrt{\mathrm{running\_var}+\epsilon} + \beta`, a fixed
    per-channel affine map that :meth:`fold_into` merges into the following Linear layer.
    Reported by the paper: about 31% faster inference and 18% less memory on GPU than LN
    (paper, unverified).

    Parameters
    ----------
    dim : int
        Number of channels C (last axis).
    window_size : int or (int, int)
        Window length M of the forward second moments and of the backward ``gz`` statistics;
        a pair gives ``(M_f, M_b)``. Default 4.
    warmup_iters : int
        Steps of plain per-batch RMS normalisation before smoothing starts. Default 4000.
    outlier_filtration : bool
        Enable step 4 (the authors suggest False for NLP, True for vision). Default False.
    eps : float
        Added to the second moment. Default 1e-5.
    momentum : float
        EMA coefficient on the *old* value of ``running_var`` and ``ema_gz``. Default 0.9.

    Shapes
    ------
    ``x``: (..., C), usually (B, N, C); ``pad_mask``: ``x.shape[:-1]`` bool, True = padding.
    Padded tokens are left out of the statistics but are still normalised and still enter the
    backward's ``gz`` average. Output: same shape as ``x``.

    Notes
    -----
    After loading pretrained weights call :meth:`restart_warmup` so fine-tuning passes through
    warm-up again (the authors' README advice). ``running_var`` starts at 1, so a model evaluated
    after only a few steps behaves far from training.
    """

    def __init__(
        self,
        dim: int,
        window_size: int | tuple[int, int] = 4,
        warmup_iters: int = 4000,
        outlier_filtration: bool = False,
        eps: float = 1e-5,
        momentum: float = 0.9,
    ):
        super().__init__()
        if isinstance(window_size, int):
            m_f = m_b = window_size
        else:
            m_f, m_b = window_size
        if m_f < 1 or m_b < 1:
            raise ValueError(f"window sizes must be >= 1, got {window_size}")
        self.dim = dim
        self.warmup_iters = int(warmup_iters)
        self.outlier_filtration = bool(outlier_filtration)
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))
        self.register_buffer("ema_gz", torch.zeros(dim))
        self.register_buffer("iters", torch.zeros((), dtype=torch.long))
        self.register_buffer("buffer_x2", torch.zeros(m_f, dim))
        self.register_buffer("buffer_gz", torch.zeros(m_b, dim))
        self.register_buffer("skip_counter", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return (f"{self.dim}, window=({self.buffer_x2.shape[0]}, {self.buffer_gz.shape[0]}), "
                f"warmup_iters={self.warmup_iters}, outlier_filtration={self.outlier_filtration}, "
                f"eps={self.eps}, momentum={self.momentum}")

    def restart_warmup(self) -> None:
        """Set the step counter back to 0 (e.g. before fine-tuning pretrained weights)."""
        self.iters.zero_()

    @torch.no_grad()
    def _step_statistics(self, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool, int]:
        """Steps 2–5, 7 and 8 of the training forward; returns (σ², r, skip, t)."""
        self.iters += 1
        t = int(self.iters)
        buf = self.buffer_x2
        m_f = buf.shape[0]
        filtering = self.outlier_filtration and t >= self.warmup_iters
        if filtering:
            rec = torch.var(buf.sqrt())  # scalar, unbiased, before inserting x2
        slot = t % m_f
        buf[slot] = x2
        skip = m_f == 1
        gm = buf.log().mean(dim=0).exp()
        if filtering:
            am = buf.mean(dim=0)
            if bool(((am - gm) > m_f * rec).any()):
                buf[slot] = self.running_var
                skip = True
                self.skip_counter += 1
        if t <= m_f or t < self.warmup_iters or skip:
            sigma2 = x2
        else:
            sigma2 = gm.to(x2.dtype)
        if t <= max(1000, self.warmup_iters) or skip:
            r = torch.ones_like(sigma2)
        else:
            r = ((sigma2 + self.eps).sqrt() / (self.running_var + self.eps).sqrt()).clamp(0.2, 5.0)
        rv = self.running_var
        rv.mul_(self.momentum).add_((1.0 - self.momentum) * sigma2.to(rv.dtype))
        return sigma2, r.to(x2.dtype), skip, t

    def eval_scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The inference map as ``y = x·s + β``: returns ``(s, β)`` with s = γ/sqrt(rv + eps)."""
        return self.weight * torch.rsqrt(self.running_var + self.eps), self.bias

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        dtype = _compute_dtype(x, self.weight)
        x = x.to(dtype)
        if not self.training:
            s, b = self.eval_scale_shift()
            return x * s.to(dtype) + b.to(dtype)
        shape = x.shape
        flat = x.reshape(-1, self.dim)
        valid = flat
        if pad_mask is not None:
            if pad_mask.shape != shape[:-1]:
                raise ValueError(f"pad_mask shape {tuple(pad_mask.shape)} must equal the input's "
                                 f"leading shape {tuple(shape[:-1])}")
            valid = flat[~pad_mask.reshape(-1).to(torch.bool)]
        x2 = valid.detach().square().mean(dim=0)
        sigma2, r, skip, t = self._step_statistics(x2)
        state = _UNBackwardState(t=t, skip=skip, warmup_iters=self.warmup_iters,
                                 momentum=self.momentum, buffer_gz=self.buffer_gz,
                                 ema_gz=self.ema_gz)
        inv_std = torch.rsqrt(sigma2 + self.eps)
        y = _UnifiedNormFunction.apply(flat, self.weight.to(dtype), self.bias.to(dtype),
                                       inv_std, r, state)
        return y.reshape(shape)

    @torch.no_grad()
    def fold_into(self, linear: nn.Linear) -> nn.Linear:
        """A new Linear equal to ``linear(self.eval()(x))`` (the module itself is not changed).

        With s = γ/sqrt(running_var + eps): ``W' = W·diag(s)``, ``b' = b + W β``. The result
        always has a bias. Uses the running statistics, whatever the current mode.

        Parameters
        ----------
        linear : nn.Linear
            The layer that follows UN; ``in_features`` must equal ``dim``.
        """
        if linear.in_features != self.dim:
            raise ValueError(f"linear.in_features={linear.in_features} != UN dim {self.dim}")
        w = linear.weight
        s, beta = (t.to(w.dtype) for t in self.eval_scale_shift())
        folded = nn.Linear(linear.in_features, linear.out_features, bias=True,
                           device=w.device, dtype=w.dtype)
        folded.weight.copy_(w * s)
        b = w @ beta
        if linear.bias is not None:
            b = b + linear.bias
        folded.bias.copy_(b)
        return folded


# =============================================================================================
# Weight Standardization
# =============================================================================================


def standardize_weight(weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    r"""Weight Standardization of each output filter over its fan-in.

    :math:`\hat W_o = (W_o - \operatorname{mean}(W_o)) / (\operatorname{std}(W_o) + \epsilon)`,
    with the unbiased (N−1) std and eps added to the std (the WS README's variant; the BCN repo
    uses ``sqrt(var + eps)``, which differs only through eps). ``weight``: (C_out, ...).
    """
    flat = weight.reshape(weight.shape[0], -1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    std = centred.std(dim=1, keepdim=True, unbiased=True)
    return (centred / (std + eps)).view_as(weight)


class WSLinear(nn.Linear):
    r"""Linear layer with Weight Standardization: :math:`y = x \hat W^T + b`.

    Source: Qiao et al., "Micro-Batch Training with Batch-Channel Normalization and Weight
    Standardization", arXiv 1903.10520 (layers.md §3). Each row of W is standardised over its
    fan-in at every forward (train and eval), see :func:`standardize_weight`; the bias is left
    alone. Use only before a normalisation layer. Shapes: (..., in_features) → (..., out_features).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, eps: float = 1e-5,
                 device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, standardize_weight(self.weight, self.eps), self.bias)


class WSConv1d(nn.Conv1d):
    r"""1-D convolution with Weight Standardization: ``conv1d(x, Ŵ)``.

    Source: Qiao et al., arXiv 1903.10520 (layers.md §3). Each output filter
    (C_in/groups × kernel_size values) is standardised at every forward, see
    :func:`standardize_weight`; the bias is left alone. Takes :class:`torch.nn.Conv1d`'s
    arguments plus ``eps``. Shapes: (N, C_in, L) → (N, C_out, L_out).
    """

    def __init__(self, *args, eps: float = 1e-5, **kwargs):
        super().__init__(*args, **kwargs)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, standardize_weight(self.weight, self.eps), self.bias)


# =============================================================================================
# Batch-Channel Normalization
# =============================================================================================


class EstimatedBatchNorm(nn.Module):
    r"""BCN's micro-batch batch step ("EstBN"): always normalise with the running estimates.

    :math:`\hat x = \gamma_b (x - \hat\mu)/\sqrt{\hat\sigma^2 + 10^{-5}} + \beta_b`, in train and
    eval. In training the estimates first move (no gradient flows through them):
    :math:`\hat\mu \leftarrow (1-r)\hat\mu + r\,\operatorname{mean}(x)`,
    :math:`\hat\sigma^2 \leftarrow (1-r)\hat\sigma^2 + r\,\operatorname{mean}((x-\hat\mu_{old})^2)`
    — the variance uses the **old** mean. The moving speed ``r`` is the buffer
    ``estbn_moving_speed``, initialised to 0 (frozen); the training loop sets it.
    Source: Qiao et al., arXiv 1903.10520 (layers.md §3). Shapes: (N, C, L) → (N, C, L).
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("estbn_moving_speed", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                r = self.estbn_moving_speed
                xt = x.detach().transpose(0, 1).reshape(x.shape[1], -1)
                mean = xt.mean(dim=1)
                var = (xt - self.running_mean[:, None]).square().mean(dim=1)
                self.running_mean.mul_(1 - r).add_((r * mean).to(self.running_mean.dtype))
                self.running_var.mul_(1 - r).add_((r * var).to(self.running_var.dtype))
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return x * _channel_view(scale, x.ndim) + _channel_view(shift, x.ndim)


class BatchChannelNorm(nn.Module):
    r"""Batch-Channel Normalization (BCN): batch norm, then group norm with a per-group affine.

    Source: Qiao et al., "Micro-Batch Training with Batch-Channel Normalization and Weight
    Standardization", arXiv 1903.10520 (layers.md §3).

    1. Batch step: :math:`\hat x = \mathrm{BN}(x)` — a standard BatchNorm (per-channel affine,
       momentum 0.1, batch statistics in train, running statistics in eval), or
       :class:`EstimatedBatchNorm` when ``estimate=True``.
    2. Channel step (per sample, train and eval): :math:`\tilde x` = group norm of
       :math:`\hat x` into G groups, biased variance, no affine.
    3. Per-**group** affine: :math:`y = \gamma_g \tilde x + \beta_g`, γ, β of shape (1, G, 1).

    Eval is not foldable: step 2 stays data-dependent.

    Parameters
    ----------
    num_channels : int
        C.
    num_groups : int
        G, default 32. When it does not divide C, the largest divisor of C below it is used
        (:func:`fit_num_groups`; a brainmill convenience, the reference requires C % G == 0).
    eps : float
        Of both steps, default 1e-5.
    estimate : bool
        Use the micro-batch batch step :class:`EstimatedBatchNorm`. Default False.

    Shapes
    ------
    Channels-first (N, C, *) → same shape.
    """

    def __init__(self, num_channels: int, num_groups: int = 32, eps: float = 1e-5,
                 estimate: bool = False):
        super().__init__()
        self.num_channels = num_channels
        self.num_groups = fit_num_groups(num_channels, num_groups)
        self.eps = eps
        self.bn = (EstimatedBatchNorm(num_channels, eps=eps) if estimate
                   else nn.BatchNorm1d(num_channels, eps=eps, momentum=0.1))
        self.weight = nn.Parameter(torch.ones(1, self.num_groups, 1))
        self.bias = nn.Parameter(torch.zeros(1, self.num_groups, 1))

    def extra_repr(self) -> str:
        return f"{self.num_channels}, num_groups={self.num_groups}, eps={self.eps}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(_compute_dtype(x, self.weight))
        n = x.shape[0]
        out = self.bn(x.reshape(n, self.num_channels, -1))
        out = F.group_norm(out, self.num_groups, eps=self.eps)
        out = out.reshape(n, self.num_groups, -1) * self.weight + self.bias
        return out.reshape(x.shape)


# =============================================================================================
# EvoNorm
# =============================================================================================


class _EvoNorm(nn.Module):
    """Shared parameters of EvoNorm-S0/B0: β = 0, γ = 1 (0 with ``init_zero``), v = 1."""

    def __init__(self, num_channels: int, eps: float, nonlinearity: bool, init_zero: bool):
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.nonlinearity = nonlinearity
        self.weight = nn.Parameter(torch.zeros(num_channels) if init_zero
                                   else torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        if nonlinearity:
            self.v = nn.Parameter(torch.ones(num_channels))
        else:
            self.register_parameter("v", None)

    def _affine(self, x: torch.Tensor) -> torch.Tensor:
        return x * _channel_view(self.weight, x.ndim) + _channel_view(self.bias, x.ndim)


class EvoNormS0(_EvoNorm):
    r"""EvoNorm-S0: batch-independent normalisation-activation layer (identical in train/eval).

    :math:`y = \dfrac{x\,\sigma(v x)}{\sqrt{\operatorname{Var}_{C/G,\,*}(x) + \epsilon}}\,\gamma
    + \beta`, with the per-sample **biased** variance over each group's channels and positions
    (no mean is subtracted from x). With ``nonlinearity=False`` the layer is affine only:
    :math:`y = \gamma x + \beta`.

    Source: Liu, Brock, Simonyan, Le, "Evolving Normalization-Activation Layers",
    arXiv 2004.02967; TF reference ``tensorflow/tpu`` ``resnet_model.py::evonorm``
    (layers.md §4).

    Parameters
    ----------
    num_channels : int
        C.
    num_groups : int
        Default 32, reduced by one until it divides C (:func:`fit_num_groups`).
    eps : float
        Default 1e-5.
    nonlinearity : bool
        False → affine only. Default True.
    init_zero : bool
        Initialise γ to 0 (last norm of a residual block). Default False.

    Shapes
    ------
    Channels-first (N, C, *) → same shape; γ, β, v have shape (C,).
    """

    def __init__(self, num_channels: int, num_groups: int = 32, eps: float = 1e-5,
                 nonlinearity: bool = True, init_zero: bool = False):
        super().__init__(num_channels, eps, nonlinearity, init_zero)
        self.num_groups = fit_num_groups(num_channels, num_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(_compute_dtype(x, self.weight))
        if not self.nonlinearity:
            return self._affine(x)
        n = x.shape[0]
        grouped = x.reshape(n, self.num_groups, -1)
        inv_std = torch.rsqrt(grouped.var(dim=-1, unbiased=False, keepdim=True) + self.eps)
        num = x * torch.sigmoid(_channel_view(self.v, x.ndim) * x)
        out = (num.reshape(n, self.num_groups, -1) * inv_std).reshape(x.shape)
        return self._affine(out)


class EvoNormB0(_EvoNorm):
    r"""EvoNorm-B0: batch-dependent normalisation-activation layer.

    :math:`y = \dfrac{x}{\max\big(\sqrt{\operatorname{Var}_{N,*}(x)+\epsilon},\;
    v x + \sqrt{\operatorname{Var}_{*}(x)+\epsilon}\big)}\,\gamma + \beta` (element-wise max;
    biased variances; batch variance per channel over (N, *), instance variance per sample and
    channel over the positions *). In training the batch variance is used and
    ``moving_var ← moving_var − (1 − decay)·(moving_var − var)`` (decay 0.9, ``moving_var``
    starts at 1); in eval the left term uses ``moving_var``, the instance term stays
    data-dependent. With ``nonlinearity=False`` the layer is affine only: :math:`y = \gamma x +
    \beta`.

    Source: Liu, Brock, Simonyan, Le, arXiv 2004.02967; TF reference ``tensorflow/tpu``
    ``resnet_model.py::evonorm`` (layers.md §4).

    Parameters
    ----------
    num_channels : int
        C.
    eps : float
        Default 1e-5.
    decay : float
        Moving-average decay of ``moving_var``, default 0.9.
    nonlinearity : bool
        False → affine only. Default True.
    init_zero : bool
        Initialise γ to 0. Default False.

    Shapes
    ------
    Channels-first (N, C, *) → same shape; γ, β, v and ``moving_var`` have shape (C,).
    """

    def __init__(self, num_channels: int, eps: float = 1e-5, decay: float = 0.9,
                 nonlinearity: bool = True, init_zero: bool = False):
        super().__init__(num_channels, eps, nonlinearity, init_zero)
        self.decay = decay
        self.register_buffer("moving_var", torch.ones(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(_compute_dtype(x, self.weight))
        if not self.nonlinearity:
            return self._affine(x)
        n = x.shape[0]
        per_channel = x.transpose(0, 1).reshape(self.num_channels, -1)
        if self.training:
            batch_var = per_channel.var(dim=1, unbiased=False)
            with torch.no_grad():
                mv = self.moving_var
                mv.sub_((1.0 - self.decay) * (mv - batch_var.detach().to(mv.dtype)))
        else:
            batch_var = self.moving_var.to(x.dtype)
        inst_var = x.reshape(n, self.num_channels, -1).var(dim=-1, unbiased=False)
        inst_std = torch.sqrt(inst_var + self.eps).view(n, self.num_channels,
                                                        *([1] * (x.ndim - 2)))
        left = _channel_view(torch.sqrt(batch_var + self.eps), x.ndim)
        right = _channel_view(self.v, x.ndim) * x + inst_std
        return self._affine(x / torch.maximum(left, right))
