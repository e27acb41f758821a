"""Position encodings: fixed sinusoidal, learned absolute, and rotary (RoPE).

Transformer-side tensors are channels-last, ``(batch, tokens, dim)``; the rotary embedding acts on
per-head queries and keys ``(batch, heads, tokens, head_dim)``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LearnedPosition", "RotaryEmbedding", "SinusoidalPosition"]


def _check_length(length: int, max_len: int, name: str) -> None:
    if length > max_len:
        raise ValueError(
            f"{name}: sequence of {length} tokens is longer than max_len={max_len}; "
            "build the layer with a larger max_len"
        )


def sinusoidal_table(max_len: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """The fixed sinusoidal position table of Vaswani et al. (2017).

    ``P[p, 2i] = sin(p / base^(2i/dim))`` and ``P[p, 2i+1] = cos(p / base^(2i/dim))``.

    Parameters
    ----------
    max_len : int
        Number of positions (rows).
    dim : int
        Embedding width (columns); an odd width drops the last cosine column.
    base : float
        Wavelength base, 10000 in the paper.

    Returns
    -------
    torch.Tensor
        Float32 table of shape ``(max_len, dim)``.
    """
    half = (dim + 1) // 2
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    inv_freq = base ** (-torch.arange(half, dtype=torch.float64) * 2.0 / dim)
    angles = pos * inv_freq[None, :]
    table = torch.empty(max_len, 2 * half, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)
    return table[:, :dim].float()


class SinusoidalPosition(nn.Module):
    """Add the fixed sinusoidal position encoding to a token sequence.

    ``y[b, p, :] = x[b, p, :] + P[p, :]`` with ``P`` from :func:`sinusoidal_table`:
    ``P[p, 2i] = sin(p / 10000^(2i/dim))``, ``P[p, 2i+1] = cos(p / 10000^(2i/dim))``.

    Source: Vaswani et al., "Attention is all you need", arXiv 1706.03762, §3.5.

    Parameters
    ----------
    dim : int
        Token width.
    max_len : int
        Longest sequence the layer accepts.

    Shapes
    ------
    ``x``: ``(batch, tokens, dim)`` → ``(batch, tokens, dim)``, ``tokens <= max_len``.
    """

    def __init__(self, dim: int, max_len: int = 4096) -> None:
        super().__init__()
        self.dim = dim
        self.max_len = max_len
        # Deterministic, so it is rebuilt rather than saved in the state dict.
        self.register_buffer("table", sinusoidal_table(max_len, dim), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_length(x.shape[-2], self.max_len, type(self).__name__)
        return x + self.table[: x.shape[-2]].to(x.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_len={self.max_len}"


class LearnedPosition(nn.Module):
    """Add a learned absolute position embedding to a token sequence.

    ``y[b, p, :] = x[b, p, :] + E[p, :]`` with ``E`` a ``(max_len, dim)`` parameter initialised
    from a normal distribution with standard deviation 0.02, truncated at ±2 std (BERT, ViT).

    Source: Devlin et al., BERT, arXiv 1810.04805; Dosovitskiy et al., ViT, arXiv 2010.11929.

    Parameters
    ----------
    dim : int
        Token width.
    max_len : int
        Longest sequence the layer accepts.

    Shapes
    ------
    ``x``: ``(batch, tokens, dim)`` → ``(batch, tokens, dim)``, ``tokens <= max_len``.
    """

    def __init__(self, dim: int, max_len: int = 4096) -> None:
        super().__init__()
        self.dim = dim
        self.max_len = max_len
        self.weight = nn.Parameter(torch.empty(max_len, dim))
        nn.init.trunc_normal_(self.weight, std=0.02, a=-0.04, b=0.04)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_length(x.shape[-2], self.max_len, type(self).__name__)
        return x + self.weight[: x.shape[-2]].to(x.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_len={self.max_len}"


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[x1, x2] -> [-x2, x1]`` on the last axis, split into two halves."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE) of queries and keys.

    Each pair of features ``(i, i + d/2)`` of a head vector at position ``m`` is rotated by the
    angle ``m·θ_i`` with ``θ_i = base^(−2i/d)``:

    ``rope(x, m) = x ⊙ cos(mθ) + rotate_half(x) ⊙ sin(mθ)``,

    so that ``⟨rope(q, m), rope(k, n)⟩`` depends on the positions only through ``m − n``.
    Features are paired as the two halves of the head (the "rotate-half" layout); the paper pairs
    neighbours ``(2i, 2i+1)``, which is the same rotation up to a fixed permutation of features.

    Source: Su et al., "RoFormer: enhanced transformer with rotary position embedding",
    arXiv 2104.09864, §3.4.

    Parameters
    ----------
    head_dim : int
        Width of each head (even).
    base : float
        Wavelength base, 10000 in the paper.

    Shapes
    ------
    ``forward(q, k)``: ``q`` ``(batch, heads, L, head_dim)``, ``k`` ``(batch, heads, S, head_dim)``
    → rotated ``(q, k)`` of the same shapes and dtypes. Positions default to ``0 … L−1`` and
    ``0 … S−1``; ``q_pos`` / ``k_pos`` (1-D, length L / S) override them.
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RotaryEmbedding: head_dim must be even, got {head_dim}")
        self.head_dim = head_dim
        self.base = base
        exponent = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim
        self.register_buffer("inv_freq", base**-exponent, persistent=False)

    def _rotate(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        angles = pos.to(device=x.device, dtype=work)[:, None] * self.inv_freq.to(work)[None, :]
        angles = torch.cat((angles, angles), dim=-1)  # (L, head_dim)
        xw = x.to(work)
        return (xw * angles.cos() + rotate_half(xw) * angles.sin()).to(x.dtype)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        q_pos: torch.Tensor | None = None,
        k_pos: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if q.shape[-1] != self.head_dim or k.shape[-1] != self.head_dim:
            raise ValueError(
                f"RotaryEmbedding: expected head_dim {self.head_dim}, got q {tuple(q.shape)} "
                f"and k {tuple(k.shape)}"
            )
        if q_pos is None:
            q_pos = torch.arange(q.shape[-2], device=q.device)
        if k_pos is None:
            k_pos = torch.arange(k.shape[-2], device=k.device)
        return self._rotate(q, q_pos), self._rotate(k, k_pos)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base}"
