"""Multi-head self- and cross-attention with optional QK-layernorm and rotary positions."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MultiHeadAttention"]

RopeFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention, self or cross, on PyTorch's fused kernel.

    For each head ``h`` with width ``d_h = dim / n_heads``:

    ``q = x W_q``, ``k = c W_k``, ``v = c W_v`` (``c = x`` for self-attention, the context
    otherwise), optionally ``q ← LN(q)``, ``k ← LN(k)`` over ``d_h`` (QK-layernorm), optionally
    rotary positions, then

    ``z_ij = ⟨q_i, k_j⟩ / sqrt(d_h) + M_ij``,   ``o_i = Σ_j softmax_j(z_i)_j v_j``,

    and the heads are concatenated and projected by ``W_o``. ``M`` is ``−∞`` on masked pairs
    (padded keys, ``True`` entries of a boolean ``attn_mask``) plus any additive float
    ``attn_mask``. A query whose keys are all masked gets a zero output instead of NaN.

    QK-layernorm (one ``LayerNorm(d_h)`` for queries and one for keys, shared across heads, as in
    timm) bounds ``|z_ij| ≤ sqrt(d_h)·max|γ|²`` and so stops attention-logit growth.
    Sources: Vaswani et al., arXiv 1706.03762 (attention); Dehghani et al., arXiv 2302.05442 and
    Wortsman et al., arXiv 2309.14322 §3.1 (QK-layernorm).

    Parameters
    ----------
    dim : int
        Model width; must be divisible by ``n_heads``.
    n_heads : int
        Number of heads.
    qk_norm : bool
        Apply LayerNorm over ``d_h`` to queries and keys before the dot product.
    dropout : float
        Dropout on the attention probabilities (training only).
    bias : bool
        Bias in the four projections.

    Shapes
    ------
    ``forward(x, context=None, key_padding_mask=None, attn_mask=None, rope=None)``:

    - ``x``: ``(B, L, dim)`` queries (and keys/values when ``context`` is None).
    - ``context``: ``(B, S, dim)`` keys/values for cross-attention.
    - ``key_padding_mask``: ``(B, S)`` bool, ``True`` = padded key, ignored.
    - ``attn_mask``: bool, ``True`` = *not* attended (the ``torch.nn.MultiheadAttention``
      convention, the opposite of ``scaled_dot_product_attention``'s), or float, added to the
      logits; broadcastable to ``(B, n_heads, L, S)``, e.g. ``(L, S)``.
    - ``rope``: a callable ``(q, k) -> (q, k)`` on ``(B, n_heads, ·, d_h)`` tensors, e.g.
      :class:`brainmill.nn.positions.RotaryEmbedding`; applied after QK-norm.
    - returns ``(B, L, dim)``.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        qk_norm: bool = False,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"MultiHeadAttention: dim={dim} is not divisible by n_heads={n_heads}")
        self.dim = dim
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(dim, dim, bias=bias)
        self.v_proj = nn.Linear(dim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()

    # ------------------------------------------------------------------ pieces

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """``(B, N, dim) -> (B, n_heads, N, head_dim)``."""
        b, n, _ = t.shape
        return t.view(b, n, self.n_heads, self.head_dim).transpose(1, 2)

    def _qkv(
        self, x: torch.Tensor, context: torch.Tensor | None, rope: RopeFn | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c = x if context is None else context
        if c.shape[0] != x.shape[0] or c.shape[-1] != self.dim or x.shape[-1] != self.dim:
            raise ValueError(
                f"MultiHeadAttention(dim={self.dim}): got x {tuple(x.shape)} and context "
                f"{tuple(c.shape)}; expected (B, L, {self.dim}) and (B, S, {self.dim})"
            )
        q = self._heads(self.q_proj(x))
        k = self._heads(self.k_proj(c))
        v = self._heads(self.v_proj(c))
        # LayerNorm runs in float32 under autocast; bring q, k back to v's dtype for SDPA.
        q = self.q_norm(q).to(v.dtype)
        k = self.k_norm(k).to(v.dtype)
        if rope is not None:
            q, k = rope(q, k)
        return q, k, v

    @staticmethod
    def _blocked(
        key_padding_mask: torch.Tensor | None,
        attn_mask: torch.Tensor | None,
        shape: tuple[int, int, int, int],
    ) -> torch.Tensor | None:
        """Boolean ``(B, ·, L, S)`` mask, True where the logit is −∞ (or None if nothing is)."""
        b, _, _, s = shape
        blocked = None
        if key_padding_mask is not None:
            if key_padding_mask.shape != (b, s):
                raise ValueError(
                    f"key_padding_mask must be (B, S) = {(b, s)}, got "
                    f"{tuple(key_padding_mask.shape)}"
                )
            blocked = key_padding_mask.bool()[:, None, None, :]
        if attn_mask is not None:
            extra = attn_mask if attn_mask.dtype == torch.bool else torch.isneginf(attn_mask)
            blocked = extra if blocked is None else blocked | extra
        return blocked

    def attention_logits(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        rope: RopeFn | None = None,
    ) -> torch.Tensor:
        """Unmasked logits ``⟨q_i, k_j⟩ / sqrt(d_h)``, shape ``(B, n_heads, L, S)``.

        For monitoring attention-logit growth (Wortsman et al. §3.1) and for tests.
        """
        q, k, _ = self._qkv(x, context, rope)
        return q @ k.transpose(-2, -1) / self.head_dim**0.5

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        rope: RopeFn | None = None,
    ) -> torch.Tensor:
        q, k, v = self._qkv(x, context, rope)
        shape = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        blocked = self._blocked(key_padding_mask, attn_mask, shape)

        mask = None
        dead = None  # queries with every key masked
        if blocked is not None:
            blocked = torch.broadcast_to(blocked, shape)
            dead = blocked.all(dim=-1, keepdim=True)
            # Unblock dead rows so the softmax stays finite; their output is zeroed below.
            blocked = blocked & ~dead
            if attn_mask is not None and attn_mask.dtype != torch.bool:
                additive = torch.where(torch.isneginf(attn_mask), 0.0, attn_mask).to(q.dtype)
                mask = torch.where(blocked, float("-inf"), additive)
            else:
                mask = ~blocked  # SDPA: True = take part in attention

        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        if dead is not None:
            out = out.masked_fill(dead, 0.0)
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, self.dim))

    def extra_repr(self) -> str:
        qk = not isinstance(self.q_norm, nn.Identity)
        return (
            f"dim={self.dim}, n_heads={self.n_heads}, qk_norm={qk}, dropout={self.dropout}"
        )
