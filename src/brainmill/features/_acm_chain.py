"""One epoch's augmented matrix from its first block row, block diagonal by block diagonal.

Block ``(k, k+m)`` of the scatter matrix (order ``P``, lag ``τ``, window ``N = T − P·τ``) is
the window product ``W_m(k) = Σ_{kτ ≤ t < kτ+N} x(t) x(t+mτ)ᵀ`` less ``N·μ_k μ_{k+m}ᵀ``.
Moving down its block diagonal shifts the window by ``τ`` samples:

    W_m(k) = W_m(k−1) − Σ_{s<τ} x(h+s) x(h+s+mτ)ᵀ + Σ_{s<τ} x(h+N+s) x(h+N+s+mτ)ᵀ,
    h = (k−1)·τ,

so from the first block row (:func:`~brainmill.features._acm_products.epoch_products` over
the window) each further block costs ``2τ`` rank-one updates, all of them from the first and
last ``P·τ`` samples. The single transform's pass
(:mod:`~brainmill.features._acm_single`) takes this route instead of
:class:`~brainmill.features.augmented.LaggedProducts`' head and tail tables (which serve
every order of a grid): no table is written or read, and the window's products pair
``N`` samples instead of ``T``. The order of the additions differs from the tables', so the
matrices agree with the passes' to rounding (about 1e-16 of their largest entry), not bit
for bit. Each matrix is exactly symmetric: the part left of the diagonal is copied from
the column above it.

Rows are 4-wide vectors (:mod:`~brainmill.features._simd`) padded to ``C4 = 4·⌈C/4⌉``
columns (zeros past ``C``), so every loop runs whole vectors. A vector written past a
block's last column lands in the next block or row, which is written after it; only the
matrix's last values are written masked.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._acm_kernels import copy_left_blocks, direct_mirror, gather_transposes
from ._simd import vload, vsplat, vstore, vstore_n

__all__ = ["assemble_by_recurrence", "chain_scratch", "load_chain"]


@njit(cache=True, nogil=True)
def chain_scratch(n_channels, order, lag):  # pragma: no cover - compiled
    """``(G, at, zt, mu)`` for :func:`load_chain`: shapes ``(C, P, C4)``, ``(P·τ, C4)`` twice
    and ``(P, C4)``, their columns past ``C`` zero."""
    c4 = (n_channels + 3) // 4 * 4
    w = order * lag
    return (np.zeros((n_channels, order, c4)), np.zeros((w, c4)), np.zeros((w, c4)),
            np.zeros((order, c4)))


@njit(cache=True, nogil=True)
def load_chain(first_row, head, tail, mu, G, at, zt, mup):  # pragma: no cover - compiled
    """Copy one epoch's operands into :func:`chain_scratch`'s padded layout.

    Parameters
    ----------
    first_row : ndarray, shape (P, C, C)
        ``W_m(0)``.
    head, tail : ndarray, shape (C, ≥ P·τ)
        Centred first / last samples (the last ``P·τ`` columns of ``tail`` are read).
    mu : ndarray, shape (P, C)
        Window means.
    G, at, zt, mup
        Written: ``G[i, m, j] = W_m(0)[i, j]``, ``at[s] = x(s)``, ``zt[s] = x(N + s)``,
        ``mup[k] = μ_k``.
    """
    order, c = first_row.shape[0], first_row.shape[1]
    w, t_tail = at.shape[0], tail.shape[1]
    for i in range(c):
        for m in range(order):
            src, dst = first_row[m, i], G[i, m]
            for j in range(c):
                dst[j] = src[j]
        for s in range(w):
            at[s, i] = head[i, s]
            zt[s, i] = tail[i, t_tail - w + s]
    for k in range(order):
        for i in range(c):
            mup[k, i] = mu[k, i]


@njit(cache=True, nogil=True)
def _shift_row(gf, gi, af, zf, ha, rb0, c4, lag, n_m, j00):  # pragma: no cover - compiled
    """Row ``i`` of ``W_m(k−1)`` → ``W_m(k)`` for ``m < n_m``, in place.

    ``gf[gi + m·C4 + j]``: the row (flat ``G``); ``af``/``zf``: flat ``at``/``zt``;
    ``ha = h·C4 + i`` (the head samples' channel ``i``), ``rb0 = h·C4`` (their partners at
    ``m = 0``); columns from ``j00`` for ``m = 0`` (the diagonal block's upper part), all for
    the others. Four samples at a time, their channel-``i`` values held as vectors across the
    blocks.
    """
    s = 0
    while s + 4 <= lag:
        h = ha + s * c4
        a0, a1 = vsplat(af[h]), vsplat(af[h + c4])
        a2, a3 = vsplat(af[h + 2 * c4]), vsplat(af[h + 3 * c4])
        z0, z1 = vsplat(zf[h]), vsplat(zf[h + c4])
        z2, z3 = vsplat(zf[h + 2 * c4]), vsplat(zf[h + 3 * c4])
        for m in range(n_m):
            g = gi + m * c4
            rb = rb0 + (m * lag + s) * c4
            for j in range(j00 if m == 0 else 0, c4, 4):
                p = rb + j
                heads = ((a0 * vload(af, p) + a1 * vload(af, p + c4))
                         + (a2 * vload(af, p + 2 * c4) + a3 * vload(af, p + 3 * c4)))
                tails = ((z0 * vload(zf, p) + z1 * vload(zf, p + c4))
                         + (z2 * vload(zf, p + 2 * c4) + z3 * vload(zf, p + 3 * c4)))
                vstore(gf, g + j, (vload(gf, g + j) - heads) + tails)
        s += 4
    while s < lag:
        h = ha + s * c4
        a0, z0 = vsplat(af[h]), vsplat(zf[h])
        for m in range(n_m):
            g = gi + m * c4
            rb = rb0 + (m * lag + s) * c4
            for j in range(j00 if m == 0 else 0, c4, 4):
                p = rb + j
                vstore(gf, g + j, (vload(gf, g + j) - a0 * vload(af, p)) + z0 * vload(zf, p))
        s += 1


@njit(cache=True, nogil=True)
def _write_row(gf, gi, mf, mb0, of, ob0, nmu, scale, c, c4, n_m, j00):  # pragma: no cover
    """``of[ob0 + m·C + j] = (W_m(k)[i, j] − N·μ_k[i]·μ_{k+m}[j])·scale`` for ``m < n_m``,
    ``j ≥ j00`` (``m = 0``) or all ``j``; ``mb0``: ``μ_k``'s offset in flat ``mup``."""
    size = of.shape[0]
    for m in range(n_m):
        g = gi + m * c4
        mb = mb0 + m * c4
        base = ob0 + m * c
        for j in range(j00 if m == 0 else 0, c4, 4):
            r = (vload(gf, g + j) - nmu * vload(mf, mb + j)) * scale
            if base + j + 4 <= size:
                vstore(of, base + j, r)
            else:  # the matrix's last values: nothing past it is written
                vstore_n(of, base + j, r, size - base - j)


@njit(cache=True, nogil=True)
def assemble_by_recurrence(G, at, zt, mup, order, lag, nwin, scale, lt,
                           o):  # pragma: no cover - compiled
    """One epoch's matrix ``o`` ``(P·C, P·C)``, written row after row, from
    :func:`load_chain`'s operands (``G`` advanced in place, block row by block row).

    A row of block row ``k`` holds the transposes of the blocks ``(b, k)``, ``b < k``
    (:func:`~brainmill.features._acm_kernels.copy_left_blocks`, the passes' assembly's copy;
    ``lt`` ``(P, C, C)``: scratch), then block ``(k, k)``, whose part left of the diagonal is
    the transpose of its part right of it, then the blocks ``(k, k+m)``.
    """
    c = o.shape[1] // order
    c4 = G.shape[2]
    width = o.shape[1]
    direct = direct_mirror(width)
    gf, af, zf, mf, of = G.ravel(), at.ravel(), zt.ravel(), mup.ravel(), o.ravel()
    sc = vsplat(scale)
    for k in range(order):
        rk = k * c
        if not direct:
            gather_transposes(o, k, c, lt)
        n_m = order - k
        for i in range(c):
            copy_left_blocks(o, k, i, c, direct, lt)
            gi = i * order * c4
            j00 = (i // 4) * 4
            if k > 0:
                h = (k - 1) * lag * c4
                _shift_row(gf, gi, af, zf, h + i, h, c4, lag, n_m, j00)
            _write_row(gf, gi, mf, k * c4, of, (rk + i) * width + rk,
                       vsplat(nwin * mf[k * c4 + i]), sc, c, c4, n_m, j00)
            orow, col = o[rk + i], rk + i
            for q in range(rk, rk + i):  # after the row: its vectors wrote these too
                orow[q] = o[q, col]
