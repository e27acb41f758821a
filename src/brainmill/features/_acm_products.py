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
("leaves"). The leaves of one group of four delays serve the next group too (its leaves are
the same sequences shifted), so ``4·G`` delays take ``9·G`` products.

Each leaf is a sum or difference of the blocks ``4v + j`` (``j = 0 … 3``) of ``e`` samples,
and of ``4v + 4 … 4v + 6`` for ``b``. The epoch is therefore centred straight into its four
*phases* (the blocks ``4v + j``, one array per ``j``), padded with zeros to whole rows of four
blocks so that every sample is paired and none is left over. Five of the nine ``a`` leaves
and one of the ``b`` leaves are phases themselves; the other twelve are built in one pass
over the phases. Built level by level from the whole time-major epoch instead, with the
samples past the paired blocks added directly, the products took 1.07× as long (synthetic
(8, 4) transform, 2 threads). Only additions, subtractions and the products are involved:
the result differs from the direct products by rounding (about 1e-15 of their largest
entry).

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
    """Whole blocks of ``step`` samples whose partners for every delay of the groups lie
    inside the epoch (a multiple of :data:`GROUP`; 0: too short).

    :func:`progression_products` pairs every sample, padding the epoch with zeros; this
    count of the blocks no padding touches is what ``progression_step`` requires enough of.
    """
    return max(0, (n_times // step - (GROUP * groups - 1)) // GROUP * GROUP)


#: Where :func:`progression_products` finds each leaf of a: ``phase`` ``j ≥ 0``, the centred
#: samples of blocks ``4v + j`` themselves; else ``slot`` of the sums it builds.
_A_PHASE = np.array([0, -1, 2, -1, -1, -1, 1, -1, 3], dtype=np.int64)
_A_SLOT = np.array([-1, 0, -1, 1, 2, 3, -1, 4, -1], dtype=np.int64)
#: Slot of each leaf of b among the differences it builds (leaf 4: blocks ``4v + 3``).
_B_SLOT = np.array([0, 1, 2, 3, -1, 4, 5, 6, 7], dtype=np.int64)
#: Samples per tile of the centring transposition (measured: 32 against 8–64, one thread).
_TILE = 32


@njit(cache=True, nogil=True)
def _centre_by_phase(X, ep, mean, e, xcp, total, dst):  # pragma: no cover - compiled
    """Centred epoch ``ep``, time-major and split by block phase.

    ``xcp[j, v·e + r] = X[ep, :, (4v + j)·e + r] − mean`` for every sample (slots past the
    epoch are left as they are: zero); ``total`` the sum of the centred samples. The
    transposition goes a tile of samples at a time, so that the rows it writes stay in L1:
    1.2–1.9× faster than sample by sample over the whole epoch. ``dst`` ``(TILE,)``: scratch.
    """
    c, t = X.shape[1], X.shape[2]
    width = xcp.shape[1]
    flat = xcp.ravel()
    tile = dst.shape[0]
    total[:] = 0.0
    k0 = 0
    while k0 < t:
        w = min(tile, t - k0)
        for q in range(w):
            s = k0 + q
            blk = s // e
            dst[q] = ((blk & 3) * width + (blk >> 2) * e + s - blk * e) * c
        for i in range(c):
            mu = mean[i]
            acc = total[i]
            for q in range(w):
                v = X[ep, i, k0 + q] - mu
                flat[dst[q] + i] = v
                acc += v
            total[i] = acc
        k0 += tile


@njit(cache=True, nogil=True)
def _leaves_a(xcp, rows, span, out):  # pragma: no cover - compiled
    """The five leaves of a that are sums: ``a0 + a2``, ``a0 + a1``, ``(a0 + a1) + (a2 + a3)``,
    ``a2 + a3``, ``a1 + a3`` (``aj`` the phase-``j`` rows of ``span`` values), into ``out``
    ``(5, rows·e, C)``; the other four leaves are the phases themselves."""
    p, o = xcp.reshape(4, -1), out.reshape(5, -1)
    for q in range(rows * span):
        a0, a1, a2, a3 = p[0, q], p[1, q], p[2, q], p[3, q]
        s01 = a0 + a1
        s23 = a2 + a3
        o[0, q] = a0 + a2
        o[1, q] = s01
        o[2, q] = s01 + s23
        o[3, q] = s23
        o[4, q] = a1 + a3


@njit(cache=True, nogil=True)
def _leaves_b(xcp, rows, span, out):  # pragma: no cover - compiled
    """The eight leaves of b that are differences, into ``out`` ``(8, rows·e, C)``, from the
    phases of rows ``v`` (``b0 … b3``) and ``v + 1`` (``b4 … b6``); leaf 4 is ``b3``."""
    p, o = xcp.reshape(4, -1), out.reshape(8, -1)
    for q in range(rows * span):
        n = q + span
        b0, b1, b2, b3 = p[0, q], p[1, q], p[2, q], p[3, q]
        b4, b5, b6 = p[0, n], p[1, n], p[2, n]
        d23 = b2 - b3
        d43 = b4 - b3
        o[0, q] = (b0 - b1) - d23
        o[1, q] = d23
        o[2, q] = (b4 - b5) - d23
        o[3, q] = b1 - b3
        o[4, q] = b5 - b3
        o[5, q] = (b2 - b1) - d43
        o[6, q] = d43
        o[7, q] = (b6 - b5) - d43


@njit(cache=True, nogil=True)
def _plain(xcp, e, out):  # pragma: no cover - compiled
    """``out[s]`` = centred sample ``s`` (time-major ``(T, C)``), gathered from the phases."""
    for s in range(out.shape[0]):
        blk = s // e
        out[s] = xcp[blk & 3, (blk >> 2) * e + s - blk * e]


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
def progression_products(X, mean, fill_mean, e, groups, recon, prod,
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
    recon : ndarray, shape (4, 9)
        :func:`recombination` of two levels; the leaves are in its order.
    prod : ndarray, shape (n, p, C, C)
        Written.
    total : ndarray, shape (n, C)
        Written: ``Σ_t`` of each centred epoch.
    """
    n, c, t = X.shape
    n_leaves = recon.shape[1]
    rows_a = -(-t // (GROUP * e))  # rows of 4 blocks of e samples covering the epoch
    rows_b = rows_a + groups - 1
    width = rows_a * e
    span = e * c
    # the phases, zero past the epoch: one row more than the last group's b reads
    xcp = np.zeros((GROUP, (rows_b + 1) * e, c))
    A = np.empty((5, width, c))
    B = np.empty((8, rows_b * e, c))
    M = np.empty((n_leaves, c, c))
    dst = np.empty(_TILE, dtype=np.int64)
    n_grouped = groups * GROUP
    plain = np.empty((t if prod.shape[1] > n_grouped else 0, c))
    for ep in range(n):
        if fill_mean:
            _channel_sums(X, ep, mean[ep])
            for i in range(c):
                mean[ep, i] /= t
        _centre_by_phase(X, ep, mean[ep], e, xcp, total[ep], dst)
        _leaves_a(xcp, rows_a, span, A)
        _leaves_b(xcp, rows_b, span, B)
        for g in range(groups):
            lo, hi = g * e, (g + rows_a) * e
            for leaf in range(n_leaves):
                j = _A_PHASE[leaf]
                a = xcp[j, :width] if j >= 0 else A[_A_SLOT[leaf]]
                b = B[_B_SLOT[leaf], lo:hi] if leaf != 4 else xcp[3, lo:hi]
                np.dot(a.T, b, M[leaf])
            for k in range(GROUP):
                out = prod[ep, g * GROUP + k]
                out[:, :] = 0.0
                for leaf in range(n_leaves):
                    if recon[k, leaf] != 0.0:
                        out += M[leaf]
        if plain.shape[0]:
            _plain(xcp, e, plain)
            for m in range(n_grouped, prod.shape[1]):
                d = m * e
                np.dot(plain[:t - d].T, plain[d:], prod[ep, m])
