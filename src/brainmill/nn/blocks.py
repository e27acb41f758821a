"""Residual blocks assembled from the layer core: a pre-norm Transformer block and a gated SSM block.

* :class:`TransformerBlock` — channels-last ``(batch, tokens, dim)``: pre-norm self- (or cross-)
  attention and MLP, each with a residual connection.
* :class:`GatedSSMBlock` — channels-first ``(batch, channels, length)``: the WaveNet-style gated
  residual block around an S4D layer that EEGDM's diffusion backbone stacks
  (``shared/reference/layers.md`` §7 "What EEGDM uses", ``methods.md`` §3).

Norms and activations are chosen by name through :func:`brainmill.nn.registry.make_norm` and
:func:`brainmill.nn.registry.make_act`, so every block accepts every registry name.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MultiHeadAttention, RopeFn
from .mlp import MLP
from .norms import UnifiedNorm
from .registry import make_norm
from .ssm import S4D

__all__ = ["GatedSSMBlock", "TransformerBlock"]

#: Norms whose statistics pool over tokens (batch or positions), not over one token's channels.
TOKEN_POOLING_NORMS = frozenset({"batch_channel", "evonorm_s0", "evonorm_b0"})


class TransformerBlock(nn.Module):
    r"""Pre-norm Transformer block: attention then MLP, each inside a residual connection.

    .. math::

        h &= x + \mathrm{drop}(\mathrm{Attn}(\mathrm{norm}_1(x),\ \mathrm{context}))\\
        y &= h + \mathrm{drop}(\mathrm{MLP}(\mathrm{norm}_2(h)))

    ``Attn`` is :class:`brainmill.nn.attention.MultiHeadAttention` (self-attention, or
    cross-attention whose keys/values are ``context`` when it is given; ``context`` is used as
    is, not normalised by the block), ``MLP`` is :class:`brainmill.nn.mlp.MLP` with hidden width
    ``int(mlp_ratio·dim)`` (a gated activation such as SwiGLU doubles fc1's output, so it has
    about 1.5× the MLP parameters of GELU at the same ratio). Pre-norm placement: Xiong et al.,
    "On Layer Normalization in the Transformer Architecture", arXiv 2002.04745; attention:
    Vaswani et al., arXiv 1706.03762.

    Padding. With ``key_padding_mask`` (self-attention), padded tokens are ignored as keys, and
    for norms that pool statistics over tokens (``batch_channel``, ``evonorm_s0``,
    ``evonorm_b0``) they are set to zero before each norm, so their *content* cannot reach the
    outputs at real tokens (their number still enters those statistics). ``unified`` receives
    the mask as its ``pad_mask`` and leaves padded tokens out of its statistics. The outputs at
    padded positions are meaningless.

    At inference a ``unified`` norm can be folded into the Linear layers that follow it
    (:meth:`brainmill.nn.norms.UnifiedNorm.fold_into`: ``norm1`` into ``attn.q_proj`` and, for
    self-attention, ``attn.k_proj``/``attn.v_proj``; ``norm2`` into ``mlp.fc1``); the block does
    not do this by itself.

    Parameters
    ----------
    dim : int
        Model width; divisible by ``n_heads``.
    n_heads : int
        Attention heads.
    mlp_ratio : float
        MLP hidden width over ``dim``. Default 4.
    norm : str
        A :data:`brainmill.nn.registry.NORMS` name (channels-last layout): ``layernorm``,
        ``rmsnorm``, ``unified``, ``batch_channel``, ``evonorm_s0``, ``evonorm_b0``. Default
        ``layernorm``.
    act : str
        A :data:`brainmill.nn.registry.ACTS` name for the MLP: ``gelu``, ``swiglu``,
        ``rational``, ``crrelu``. Default ``gelu``.
    qk_norm : bool
        LayerNorm on queries and keys (Wortsman et al., arXiv 2309.14322). Default False.
    dropout : float
        Attention-probability dropout, MLP hidden dropout and dropout on both residual branches.
        Default 0.

    Shapes
    ------
    ``forward(x, key_padding_mask=None, rope=None, context=None)``:

    - ``x``: ``(B, L, dim)``.
    - ``key_padding_mask``: ``(B, S)`` bool, True = padded key (``S = L`` for self-attention,
      the context length for cross-attention).
    - ``rope``: callable ``(q, k) -> (q, k)`` on ``(B, heads, ·, head_dim)``, e.g.
      :class:`brainmill.nn.positions.RotaryEmbedding`.
    - ``context``: ``(B, S, dim)`` keys/values for cross-attention, or None.
    - returns ``(B, L, dim)``.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        mlp_ratio: float = 4.0,
        norm: str = "layernorm",
        act: str = "gelu",
        qk_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        hidden = int(round(mlp_ratio * dim))
        if hidden < 1:
            raise ValueError(f"TransformerBlock: mlp_ratio={mlp_ratio} gives no hidden units")
        self.dim = dim
        self.norm_name = norm
        self.act_name = act
        self.norm1 = make_norm(norm, dim, layout="channels_last")
        self.attn = MultiHeadAttention(dim, n_heads, qk_norm=qk_norm, dropout=dropout)
        self.norm2 = make_norm(norm, dim, layout="channels_last")
        self.mlp = MLP(dim, hidden, act=act, dropout=dropout)
        self.drop = nn.Dropout(dropout)
        self._zero_padded = norm in TOKEN_POOLING_NORMS

    def _norm(self, norm: nn.Module, x: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        if pad is None:
            return norm(x)
        if isinstance(norm, UnifiedNorm):
            return norm(x, pad_mask=pad)
        if self._zero_padded:
            x = x.masked_fill(pad[..., None], 0.0)
        return norm(x)

    def forward(
        self,
        x: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        rope: RopeFn | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # Only in self-attention are the padded keys also tokens of x (to keep out of norms).
        pad = None
        if key_padding_mask is not None and context is None:
            if key_padding_mask.shape != x.shape[:2]:
                raise ValueError(f"key_padding_mask must be (B, L) = {tuple(x.shape[:2])}, got "
                                 f"{tuple(key_padding_mask.shape)}")
            pad = key_padding_mask.bool()
        h = self._norm(self.norm1, x, pad)
        h = self.attn(h, context=context, key_padding_mask=key_padding_mask, rope=rope)
        x = x + self.drop(h)
        h = self.mlp(self._norm(self.norm2, x, pad))
        return x + self.drop(h)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, norm={self.norm_name!r}, act={self.act_name!r}"


class GatedSSMBlock(nn.Module):
    r"""WaveNet-style gated residual block around an S4D layer (channels-first).

    For input ``x`` ``(B, C, L)`` and optional conditioning ``c``:

    .. math::

        h &= \mathrm{S4D}(\mathrm{norm}(x)) + W_c\, c\\
        f, g &= \mathrm{split}(W_{in} h)\qquad (W_{in}: C \to 2C,\ 1{\times}1\ \text{conv})\\
        z &= \mathrm{drop}(\tanh(f) \odot \sigma(g))\\
        r, s &= \mathrm{split}(W_{out} z)\qquad (W_{out}: C \to 2C,\ 1{\times}1\ \text{conv})\\
        \text{returns}\quad &\big((x + r)/\sqrt 2,\ s\big)

    ``W_c`` is a 1×1 convolution of ``cond_channels → C`` applied to ``c`` ``(B, cond_channels,
    L)``, or a Linear on ``c`` ``(B, cond_channels)`` broadcast over the length (e.g. a
    diffusion-step embedding). It is **zero-initialised** by default, as EEGDM's conditioning
    Linear is, so a fresh block ignores ``c`` until training moves ``W_c``.

    This is the DiffWave / SSSD residual block with the dilated convolution replaced by S4D, as in
    EEGDM's "SSMDP" backbone (Puah et al., arXiv 2508.14086, code ``jhpuah/EEGDM``
    ``WavenetBlock``: LayerNorm, conditioning bias, gate = σ, filter = tanh, residual and skip
    projections; layers.md §7, methods.md §3). Differences from that code, by design of this
    package: S4D runs on the C normalised channels before the 2C gate/filter projection (EEGDM
    projects to 2C first and runs the SSM on 2C channels), the conditioning is added after the
    SSM, and the residual sum is scaled by 1/√2 as in DiffWave (Kong et al., arXiv 2009.09761).
    S4D: Gu et al., arXiv 2206.11893. The skip outputs of a stack are summed by the caller
    (DiffWave scales that sum by 1/√(n_layers)).

    Causality: with ``bidirectional=False`` the S4D convolution is causal, so the block's output
    at step t depends only on inputs at steps ≤ t **if the norm is per-time-step**
    (``layernorm``, ``rmsnorm``, or ``unified`` in eval mode) and ``cond`` is causal. The other
    norms (``batch_channel``, ``evonorm_*``, ``unified`` in training) pool statistics over the
    length, which leaks the future into every step.

    Parameters
    ----------
    channels : int
        C, the residual width.
    d_state : int
        S4D state size N (even). Default 64 (EEGDM uses 128).
    cond_channels : int, optional
        Width of the conditioning input; None → the block takes no conditioning.
    norm : str
        A :data:`brainmill.nn.registry.NORMS` name, built with ``layout="channels_first"``.
        Default ``layernorm``.
    dropout : float
        Dropout on the gated activation ``z``. Default 0.
    bidirectional : bool
        Bidirectional (non-causal) S4D, as EEGDM. Default True.
    zero_init_cond : bool
        Zero-initialise ``W_c`` (weight and bias). Default True.
    ssm_init : {"lin", "inv"}
        S4D imaginary-part init (EEGDM: S4D-Lin). Default "lin".

    Shapes
    ------
    ``forward(x, cond=None, return_gated=False)``: ``x`` ``(B, C, L)``; ``cond``
    ``(B, cond_channels, L)`` or ``(B, cond_channels)``; returns ``(residual_out, skip)``, both
    ``(B, C, L)``, and with ``return_gated=True`` also the gated activation ``z`` ``(B, C, L)``
    (before dropout): the "gate activations" EEGDM reads as representations.
    """

    def __init__(
        self,
        channels: int,
        d_state: int = 64,
        cond_channels: int | None = None,
        norm: str = "layernorm",
        dropout: float = 0.0,
        bidirectional: bool = True,
        zero_init_cond: bool = True,
        ssm_init: str = "lin",
    ) -> None:
        super().__init__()
        self.channels = channels
        self.cond_channels = cond_channels
        self.norm_name = norm
        self.norm = make_norm(norm, channels, layout="channels_first")
        self.ssm = S4D(channels, d_state, init=ssm_init, bidirectional=bidirectional)
        if cond_channels is not None:
            self.cond_proj = nn.Conv1d(cond_channels, channels, 1)
            if zero_init_cond:
                nn.init.zeros_(self.cond_proj.weight)
                nn.init.zeros_(self.cond_proj.bias)
        else:
            self.register_module("cond_proj", None)
        self.gate_proj = nn.Conv1d(channels, 2 * channels, 1)
        self.out_proj = nn.Conv1d(channels, 2 * channels, 1)
        self.drop = nn.Dropout(dropout)

    def _conditioning(self, cond: torch.Tensor, length: int) -> torch.Tensor:
        if self.cond_proj is None:
            raise ValueError("GatedSSMBlock was built with cond_channels=None but got cond")
        if cond.ndim == 2:
            w = self.cond_proj.weight.squeeze(-1)
            return F.linear(cond, w, self.cond_proj.bias)[..., None]
        if cond.ndim == 3:
            if cond.shape[-1] != length:
                raise ValueError(f"cond length {cond.shape[-1]} != input length {length}")
            return self.cond_proj(cond)
        raise ValueError(f"cond must be (B, {self.cond_channels}) or (B, {self.cond_channels}, L),"
                         f" got {tuple(cond.shape)}")

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor | None = None, return_gated: bool = False
    ) -> tuple[torch.Tensor, ...]:
        if x.ndim != 3 or x.shape[1] != self.channels:
            raise ValueError(f"GatedSSMBlock({self.channels}): x must be (B, {self.channels}, L),"
                             f" got {tuple(x.shape)}")
        h = self.ssm(self.norm(x))
        if cond is not None:
            h = h + self._conditioning(cond, x.shape[-1])
        filt, gate = self.gate_proj(h).chunk(2, dim=1)
        gated = torch.tanh(filt) * torch.sigmoid(gate)
        res, skip = self.out_proj(self.drop(gated)).chunk(2, dim=1)
        out = (x + res) * (1.0 / math.sqrt(2.0))
        return (out, skip, gated) if return_gated else (out, skip)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, cond_channels={self.cond_channels}, norm={self.norm_name!r}"
