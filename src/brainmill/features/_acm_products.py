"""Lagged products of a progression of delays with 9/16 of the multiplications (numba).

The single (order, lag) transform needs ``R(m·e) = Σ_{t < T − m·e} x(t) x(t + m·e)ᵀ`` for
``m = 0 … p−1`` (``e`` the lag, ``p`` the order). Computed one delay at a time, these products
are most of its time: ``p·C²·T`` multiply-adds an epoch. This module computes them with fewer,
by Karatsuba's trick on the time axis (Winograd's minimal filtering for correlations).

One level, delays ``d`` and ``d + s``: pair every sample ``t`` of a block of ``s`` with
``t + s`` (blocks ``[2ks, 2ks + s)``), so that over the paired range

    y(d)     = Σ a(t) b(t+d)ᵀ   + a(t+s) b(t+s+d)ᵀ
    y(d + s) = Σ a(t) b(t+d+s)ᵀ + a(t+s) b(t+d+2s)ᵀ

equal ``M1 + M2`` and ``M2 + M3`` with

    M1 = Σ a(t) [b(t+d) − b(t+d+s)]ᵀ,  M2 = Σ [a(t) + a(t+s)] b(t+d+s)ᵀ,
    M3 = Σ a(t+s) [b(t+d+2s) − b(t+d+s)]ᵀ:

three products over half the samples instead of two over all of them. Applied again to each
``M`` (``s = e``, then ``2e``), four consecutive delays come from nine products over a quarter
of the samples each: 9/16 of the multiplications, plus sums and differences of the samples
("leaves", built level by level), which take about 30 % of the time of the products
themselves (22 channels, one thread; the reason for the 16-channel threshold in
``progression_step``). The leaves of one group of
four delays serve the next group too (its leaves are the same sequences shifted), so ``4·G``
delays take ``9·G`` products. The samples past the last whole block of the paired range are
added directly. Only additions, subtractions and the products are involved: the result
differs from the direct products by rounding (about 1e-15 of their largest entry).

The operands are time-major ``(samples, C)`` and the products are BLAS calls (``np.dot``)
from the compiled kernel.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
from numba import njit

__all__ = ["GROUP", "paired_blocks", "progression_products", "recombination"]

#: Delays per group: two levels of the trick.
GROUP = 4
_LEVELS = 2


@lru_cache(maxsize=4)
def recombination(levels: int = _LEVELS) -> np.ndarray:
    """How the products of ``levels`` nested levels make the group's delays.

    Each level splits every operand pair in three (``M1``, ``M2``, ``M3`` above), so there
    are ``3^levels`` leaf products; leaf ``Σ_l i_l·3^(levels−1−l)`` is operand ``i_0`` of
    level 1 (the finest, pairing blocks of ``e`` samples), split into operand ``i_1`` by
    level 2, and so on: the order in which :func:`progression_products` builds them.

    Returns
    -------
    recon : ndarray, shape (2^levels, 3^levels)
        ``y(k) = Σ_i recon[k, i] · M_i`` for delays ``k·e``, ``k < 2^levels`` (0 or 1):
        level ``l`` takes ``M1 + M2`` for bit ``l`` of ``k`` clear, ``M2 + M3`` for it set.
    """
    recombine = [[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]  # y(d) = M1 + M2, y(d+s) = M2 + M3
    leaves = itertools.product(range(3), repeat=levels)
    recon = np.array([[np.prod([recombine[(k >> lv) & 1][leaf[lv]] for lv in range(levels)])
                       for k in range(2**levels)] for leaf in leaves]).T
    recon.flags.writeable = False  # shared by the cache
    return recon


def paired_blocks(n_times: int, step: int, groups: int) -> int:
    """Blocks of ``step`` samples the groups pair (a multiple of :data:`GROUP`; 0: too short).

    The last group's largest delay, ``(4·groups − 1)·step``, must still find its partner
    samples inside the epoch.
    """
    return max(0, (n_times // step - (GROUP * groups - 1)) // GROUP * GROUP)


@njit(cache=True, nogil=True)
def _split_a(src, n_rows, span, first, both, second):  # pragma: no cover - compiled
    """One level's ``a`` operands: for rows ``2v`` and ``2v + 1`` of ``span`` values,
    ``first[v] = src[2v]``, ``both[v] = src[2v] + src[2v+1]``, ``second[v] = src[2v+1]``.

    Unsigned indices, so that numba adds no wrap-around check and the loop vectorises.
    """
    s, o0, o1, o2 = src.ravel(), first.ravel(), both.ravel(), second.ravel()
    width = np.uint64(span)
    for v in range(n_rows):
        o = np.uint64(v * span)
        p = np.uint64(2 * v * span)
        q = p + width
        for k in range(width):
            x0, x1 = s[p + k], s[q + k]
            o0[o + k] = x0
            o1[o + k] = x0 + x1
            o2[o + k] = x1


@njit(cache=True, nogil=True)
def _split_b(src, n_rows, span, first, middle, second):  # pragma: no cover - compiled
    """One level's ``b`` operands: ``first[v] = src[2v] − src[2v+1]``,
    ``middle[v] = src[2v+1]``, ``second[v] = src[2v+2] − src[2v+1]`` (rows of ``span``)."""
    s, o0, o1, o2 = src.ravel(), first.ravel(), middle.ravel(), second.ravel()
    width = np.uint64(span)
    for v in range(n_rows):
        o = np.uint64(v * span)
        p = np.uint64(2 * v * span)
        q = p + width
        r = q + width
        for k in range(width):
            x0, x1, x2 = s[p + k], s[q + k], s[r + k]
            o0[o + k] = x0 - x1
            o1[o + k] = x1
            o2[o + k] = x2 - x1


@njit(cache=True, nogil=True)
def _channel_sums(X, ep, out):  # pragma: no cover - compiled
    """``out[i] = Σ_t X[ep, i, t]`` in four interleaved partial sums (not latency-bound)."""
    t = X.shape[2]
    for i in range(X.shape[1]):
        row = X[ep, i]
        s0 = s1 = s2 = s3 = 0.0
        k = 0
        while k + 4 <= t:
            s0 += row[k]
            s1 += row[k + 1]
            s2 += row[k + 2]
            s3 += row[k + 3]
            k += 4
        while k < t:
            s0 += row[k]
            k += 1
        out[i] = (s0 + s1) + (s2 + s3)


@njit(cache=True, nogil=True)
def progression_products(X, mean, fill_mean, e, groups, blocks, recon, prod,
                         total):  # pragma: no cover - compiled
    """``prod[:, m] = R(m·e)`` of the centred epochs, ``m < prod.shape[1]``.

    Parameters
    ----------
    X : ndarray, shape (n, C, T)
    mean : ndarray, shape (n, C)
        Channel means; the epochs are centred on them first (``X − mean``).
    fill_mean : bool
        Compute ``mean`` here first (written; four interleaved partial sums, so not
        numpy's bits), while each epoch is read into the cache anyway: one pass over
        the epochs instead of two.
    e : int
        Delay step (the lag).
    groups : int
        Delays ``m < 4·groups`` by the leaves; the rest directly.
    blocks : int
        :func:`paired_blocks` ``(T, e, groups)`` (≥ 4).
    recon : ndarray, shape (4, 9)
        :func:`recombination` of two levels; the leaves are built level by level here
        (:func:`_split_a`, :func:`_split_b`), in its order.
    prod : ndarray, shape (n, p, C, C)
        Written.
    total : ndarray, shape (n, C)
        Written: ``Σ_t`` of each centred epoch.
    """
    n, c, t = X.shape
    n_leaves = recon.shape[1]
    rows_a = blocks // GROUP
    rows_b = rows_a + groups - 1
    paired = blocks * e
    span = e * c
    xc = np.empty((t, c))
    A1 = np.empty((3, 2 * rows_a * e, c))  # level 1's operands
    B1 = np.empty((3, (2 * rows_b + 1) * e, c))
    A = np.empty((n_leaves, rows_a * e, c))
    B = np.empty((n_leaves, rows_b * e, c))
    M = np.empty((n_leaves, c, c))
    extra = np.empty((c, c))
    for ep in range(n):
        if fill_mean:
            _channel_sums(X, ep, mean[ep])
            for i in range(c):
                mean[ep, i] /= t
        for i in range(c):
            mu = mean[ep, i]
            s = 0.0
            for k in range(t):
                v = X[ep, i, k] - mu
                xc[k, i] = v
                s += v
            total[ep, i] = s
        # the leaves level by level: blocks of e samples paired, then pairs of those; leaf
        # 3·i1 + i2 is level 1's operand i1 split by level 2 (recombination's order)
        _split_a(xc, 2 * rows_a, span, A1[0], A1[1], A1[2])
        _split_b(xc, 2 * rows_b + 1, span, B1[0], B1[1], B1[2])
        for i1 in range(3):
            _split_a(A1[i1], rows_a, span, A[3 * i1], A[3 * i1 + 1], A[3 * i1 + 2])
            _split_b(B1[i1], rows_b, span, B[3 * i1], B[3 * i1 + 1], B[3 * i1 + 2])
        for g in range(groups):
            for leaf in range(n_leaves):
                np.dot(A[leaf].T, B[leaf, g * e:(g + rows_a) * e], M[leaf])
            for k in range(GROUP):
                out = prod[ep, g * GROUP + k]
                out[:, :] = 0.0
                for leaf in range(n_leaves):
                    if recon[k, leaf] != 0.0:
                        out += M[leaf]
                d = (g * GROUP + k) * e
                if t - d > paired:  # the samples past the paired blocks
                    np.dot(xc[paired:t - d].T, xc[paired + d:], extra)
                    out += extra
        for m in range(groups * GROUP, prod.shape[1]):
            d = m * e
            np.dot(xc[:t - d].T, xc[d:], prod[ep, m])
