"""Lagged products of a progression of delays with 27/64 or 9/16 of the multiplications.

An (order, lag) transform needs the lagged products ``R(m·e) = Σ_{t < T − m·e} x(t)
x(t + m·e)ᵀ`` (the passes of :class:`~brainmill.features.augmented.LaggedProducts`), or the
same products over the first ``N`` samples only (the single pass,
:mod:`~brainmill.features._acm_single`), for ``m = 0 … p−1`` (``e`` the lag, ``p`` the order).
Computed one delay at a time, these products are most of its time: ``p·C²·T`` multiply-adds
an epoch. This module computes them with fewer, by Karatsuba's trick on the time axis
(Winograd's minimal filtering for correlations).

One level, delays ``d`` and ``d + s``: pair every sample ``t`` of a block of ``s`` with
``t + s`` (blocks ``[2ks, 2ks + s)``), so that over the paired range

    y(d)     = Σ a(t) b(t+d)ᵀ   + a(t+s) b(t+s+d)ᵀ
    y(d + s) = Σ a(t) b(t+d+s)ᵀ + a(t+s) b(t+d+2s)ᵀ

equal ``M1 + M2`` and ``M2 + M3`` with

    M1 = Σ a(t) [b(t+d) − b(t+d+s)]ᵀ,  M2 = Σ [a(t) + a(t+s)] b(t+d+s)ᵀ,
    M3 = Σ a(t+s) [b(t+d+2s) − b(t+d+s)]ᵀ:

three products over half the samples instead of two over all of them. Applied again to each
``M`` (``s = e``, then ``2e``, ``4e``), ``L`` nested levels make ``2^L`` consecutive delays
from ``3^L`` products over ``1/2^L`` of the samples each: for ``L = 2`` four delays from nine
products (9/16 of the multiplications), for ``L = 3`` eight from 27 (27/64). The operands of
these products ("leaves") are sums and differences of the samples. The leaves of one group of
delays serve the next group too (its leaves are the same sequences shifted), so ``G`` groups
take ``3^L·G`` products. :func:`progression_plan` picks ``L`` and ``G`` for the number of
delays.

Each leaf is a sum or difference of the blocks ``2^L·v + j`` of ``e`` samples (of rows ``v``
and, for ``b``, ``v + 1``). The epoch is therefore centred straight into its ``2^L`` *phases*
(the blocks ``2^L·v + j``, one array per ``j``), padded with zeros past the epoch. The leaves
pair whole rows of ``2^L`` blocks; the few samples past the last whole row are either paired
against the zeros of one more row or added one product at a time, whichever costs less
(:func:`paired_rows`). For two levels, four of the nine ``a`` leaves and one
of the ``b`` leaves are phases themselves and the others are built in one pass over the
phases; three levels split the phases once (level 1) into three sequences of four phases
each and take two levels of each. Built level by level from the whole time-major epoch
instead, with the samples past the paired blocks added directly, two levels' products took
1.07× as long; three levels take 0.87× the time of two (synthetic (8, 4) transform, 2
threads, alternating in one process). Only additions, subtractions and the products are
involved: the result differs from the direct products by rounding (about 1e-15 of their
largest entry).

The operands are time-major ``(samples, C)``; the products are
:func:`~brainmill.features._small_products.lagged_product` calls from the compiled kernel (a
register kernel on cores with AVX-512, BLAS elsewhere).
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
from numba import njit

from ._acm_kernels import _add_lagged
from ._simd import vget, vload, vsplat, vstore, vtranspose4
from ._small_products import lagged_product

__all__ = ["GROUP", "epoch_products", "leaf_sources", "paired_blocks", "progression_plan",
           "progression_products", "progression_scratch", "recombination",
           "recombination_picks"]

#: Fewest delays a group makes (two levels of the trick); ``progression_step`` needs as many.
GROUP = 4
#: Levels a group may have: 2 (4 delays from 9 products) or 3 (8 delays from 27).
LEVEL_CHOICES = (2, 3)


@lru_cache(maxsize=4)
def recombination(levels: int) -> np.ndarray:
    """How the products of ``levels`` nested levels make the group's delays.

    Each level splits every operand pair in three (``M1``, ``M2``, ``M3`` above), so there
    are ``3^levels`` leaf products; leaf ``Σ_l i_l·3^(levels−1−l)`` is operand ``i_0`` of
    level 1 (the finest, pairing blocks of ``e`` samples), split into operand ``i_1`` by
    level 2, and so on: the order of :func:`leaf_sources`.

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


@lru_cache(maxsize=4)
def recombination_picks(levels: int) -> np.ndarray:
    """The leaves each delay of :func:`recombination` adds, in leaf order.

    Returns
    -------
    picks : int64 ndarray, shape (2^levels, 2^levels)
        ``y(k) = Σ_q M[picks[k, q]]`` (each level keeps two of its three operands).
    """
    picks = np.array([np.flatnonzero(row) for row in recombination(levels)], dtype=np.int64)
    picks.flags.writeable = False  # shared by the cache
    return picks


#: Two levels' leaves from four phases ``x0 … x3`` (blocks ``4v + j``): ``x_j`` for ``j ≥ 0``,
#: else built slot ``−1 − k`` of :func:`_leaves_a2` / :func:`_leaves_b2`, in leaf order.
_TWO_LEVEL_A = (0, -1, 2, -2, -3, -4, 1, -5, 3)
_TWO_LEVEL_B = (-1, -2, -3, -4, 3, -5, -6, -7, -8)


@lru_cache(maxsize=4)
def leaf_sources(levels: int) -> tuple[np.ndarray, int]:
    """Where :func:`progression_products` keeps each leaf's operands, in its scratch ``work``.

    ``work[0 … 2^levels − 1]`` hold the phases of the epoch (the blocks ``2^levels·v + j``);
    the slots after them the leaves that are not phases themselves and, for three levels,
    the first level's operands:

    * two levels: a's five sums (slots 4–8), b's eight differences (9–16);
    * three levels: level 1 splits the eight phases into three sequences of four phases each
      (for a: the even phases, their pair sums, the odd phases; for b: differences,
      the odd phases, differences), and each of them takes two more levels as above: a's
      pair sums in slots 13–16 and their leaves in 8–12, 17–21, 22–26; b's level-1
      differences in 27–34 and their leaves in 35–58.

    Returns
    -------
    sources : int64 ndarray, shape (2, 3^levels)
        Slot of each leaf of ``a`` (row 0) and ``b`` (row 1), leaf ``Σ_l i_l·3^(levels−1−l)``
        as in :func:`recombination`.
    n_slots : int
    """
    if levels == 2:
        branches_a = [((0, 1, 2, 3), 4)]
        branches_b = [((0, 1, 2, 3), 9)]
        n_slots = 17
    elif levels == 3:
        # (phases of the branch's sequence, its first built slot), level-1 operand order
        branches_a = [((0, 2, 4, 6), 8), ((13, 14, 15, 16), 17), ((1, 3, 5, 7), 22)]
        branches_b = [((27, 28, 29, 30), 35), ((1, 3, 5, 7), 43), ((31, 32, 33, 34), 51)]
        n_slots = 59
    else:
        raise ValueError(f"levels must be 2 or 3; got {levels}")
    sources = np.array([[phases[j] if j >= 0 else first - 1 - j
                         for phases, first in branches for j in table]
                        for branches, table in ((branches_a, _TWO_LEVEL_A),
                                                (branches_b, _TWO_LEVEL_B))], dtype=np.int64)
    sources.flags.writeable = False  # shared by the cache
    return sources, n_slots


def progression_plan(n_delays: int) -> tuple[int, int]:
    """``(levels, groups)`` that compute ``n_delays ≥ 4`` delays of a progression with the
    fewest multiplications.

    ``groups`` groups of ``2^levels`` delays cost ``(3/2)^levels`` full products each (a
    group may reach past the last delay: its extra delays are dropped); delays past the
    groups cost one each. Ties go to two levels (fewer leaves to build). Eight delays: one
    three-level group, 3.375 full products, against 4.5 for two two-level groups.
    """
    best = None
    for levels in LEVEL_CHOICES:
        size = 2**levels
        for groups in {max(1, n_delays // size), -(-n_delays // size)}:
            cost = groups * 1.5**levels + max(0, n_delays - groups * size)
            if best is None or cost < best[0]:
                best = (cost, levels, groups)
    return best[1], best[2]


def paired_blocks(n_times: int, step: int, groups: int) -> int:
    """Whole blocks of ``step`` samples whose partners for every delay of ``groups`` groups of
    4 lie inside the epoch (a multiple of :data:`GROUP`; 0: too short).

    :func:`progression_products` pairs the epoch's samples against zeros past its end; this
    count of the blocks no padding touches is what ``progression_step`` requires enough of.
    """
    return max(0, (n_times // step - (GROUP * groups - 1)) // GROUP * GROUP)


@njit(cache=True, nogil=True)
def paired_rows(n_times, e, levels, n_delays):  # pragma: no cover - compiled
    """Rows of ``2^levels`` blocks of ``e`` samples that the leaves pair.

    Whole rows only (the samples past them added one product at a time, ``Σ_m max(0, r −
    m·e)`` products of a channel pair for ``r`` samples left over) when that costs less
    than the zeros padding one more row would multiply: ``(3/2)^levels`` products of a
    channel pair for each padded sample, in BLAS, about twice as fast a product as the
    tables' kernel (:func:`~brainmill.features._acm_kernels._add_lagged`) that adds the
    rest. PhysioNet's 481 samples, (8, 4): 15 rows and one sample left instead of 16 rows,
    31 of them zeros (6 % of the leaves' products).
    """
    step = (1 << levels) * e
    full, left = n_times // step, n_times % step
    if left == 0 or full == 0:
        return -(-n_times // step)
    singles = 0
    for m in range(n_delays):
        singles += max(0, left - m * e)
    return full if 2 * singles <= (step - left) * 1.5**levels else full + 1


#: Samples per tile of the centring transposition (measured: 32 against 8–128, one thread).
_TILE = 32


@njit(cache=True, nogil=True)
def _centre_by_phase(X, ep, mean, e, levels, xcp, total, dst):  # pragma: no cover - compiled
    """Centred epoch ``ep``, time-major and split by block phase.

    ``xcp[j, v·e + r] = X[ep, :, (P·v + j)·e + r] − mean`` (``P = 2^levels`` phases) for every
    sample; slots past the epoch are left as they are (zero). ``total``: the sum of the
    centred samples. The transposition goes a tile of samples at a time, so that the rows
    it writes stay in L1 (1.9–2.5× faster than sample by sample over the whole epoch), and
    four channels at a time, so that each sample's writes are contiguous (1.3× faster than
    one channel at a time; one thread, throw-away timings); four samples of them at a time
    are transposed in registers (:mod:`~brainmill.features._simd`: PhysioNet's 45 epochs,
    4.0 against 6.2 µs an epoch, same bits). Each sample's block and place in it are
    counted on rather than divided out (no integer division by the lag a sample: 0.82× the
    time, same bits). ``dst`` ``(TILE,)``: scratch.
    """
    c, t = X.shape[1], X.shape[2]
    width = xcp.shape[1]
    flat = xcp.ravel()
    tile = dst.shape[0]
    last = (1 << levels) - 1
    c4 = c - c % 4
    total[:] = 0.0
    k0 = 0
    blk, r = 0, 0  # sample k0 + q is sample r of block blk
    while k0 < t:
        w = min(tile, t - k0)
        for q in range(w):
            dst[q] = ((blk & last) * width + (blk >> levels) * e + r) * c
            r += 1
            if r == e:
                r, blk = 0, blk + 1
        w4 = w - w % 4
        for i in range(0, c4, 4):
            x0, x1 = X[ep, i, k0:k0 + w], X[ep, i + 1, k0:k0 + w]
            x2, x3 = X[ep, i + 2, k0:k0 + w], X[ep, i + 3, k0:k0 + w]
            # four samples of four channels at a time, transposed in registers: each
            # channel's sum still adds its samples in time order
            m = vload(mean, i)
            sums = vsplat(0.0)
            for q in range(0, w4, 4):
                v0, v1, v2, v3 = vtranspose4(vload(x0, q), vload(x1, q), vload(x2, q),
                                             vload(x3, q))
                v0, v1, v2, v3 = v0 - m, v1 - m, v2 - m, v3 - m
                vstore(flat, dst[q] + i, v0)
                vstore(flat, dst[q + 1] + i, v1)
                vstore(flat, dst[q + 2] + i, v2)
                vstore(flat, dst[q + 3] + i, v3)
                sums = (((sums + v0) + v1) + v2) + v3
            t0, t1, t2, t3 = vget(sums, 0), vget(sums, 1), vget(sums, 2), vget(sums, 3)
            m0, m1, m2, m3 = mean[i], mean[i + 1], mean[i + 2], mean[i + 3]
            for q in range(w4, w):
                d = dst[q] + i
                v0, v1, v2, v3 = x0[q] - m0, x1[q] - m1, x2[q] - m2, x3[q] - m3
                flat[d] = v0
                flat[d + 1] = v1
                flat[d + 2] = v2
                flat[d + 3] = v3
                t0 += v0
                t1 += v1
                t2 += v2
                t3 += v3
            total[i] += t0
            total[i + 1] += t1
            total[i + 2] += t2
            total[i + 3] += t3
        for i in range(c4, c):
            mu = mean[i]
            acc = 0.0
            for q in range(w):
                v = X[ep, i, k0 + q] - mu
                flat[dst[q] + i] = v
                acc += v
            total[i] += acc
        k0 += tile


@njit(cache=True, nogil=True)
def _leaves_a2(x0, x1, x2, x3, n, out):  # pragma: no cover - compiled
    """Two levels of a from four phases ``x_j`` (flat, blocks ``4v + j``): the five leaves
    that are sums, ``x0 + x2``, ``x0 + x1``, ``(x0 + x1) + (x2 + x3)``, ``x2 + x3``,
    ``x1 + x3``, into ``out`` ``(5, ≥ n)`` (the other four are the phases)."""
    for q in range(n):
        a0, a1, a2, a3 = x0[q], x1[q], x2[q], x3[q]
        s01 = a0 + a1
        s23 = a2 + a3
        out[0, q] = a0 + a2
        out[1, q] = s01
        out[2, q] = s01 + s23
        out[3, q] = s23
        out[4, q] = a1 + a3


@njit(cache=True, nogil=True)
def _leaves_b2(x0, x1, x2, x3, n, span, out):  # pragma: no cover - compiled
    """Two levels of b from four phases: the eight leaves that are differences, into ``out``
    ``(8, ≥ n)``, from rows ``v`` (``b0 … b3``) and ``v + 1`` (``b4 … b6``, ``span`` values
    on); the ninth leaf is ``x3``."""
    for q in range(n):
        r = q + span
        b0, b1, b2, b3 = x0[q], x1[q], x2[q], x3[q]
        b4, b5, b6 = x0[r], x1[r], x2[r]
        d23 = b2 - b3
        d43 = b4 - b3
        out[0, q] = (b0 - b1) - d23
        out[1, q] = d23
        out[2, q] = (b4 - b5) - d23
        out[3, q] = b1 - b3
        out[4, q] = b5 - b3
        out[5, q] = (b2 - b1) - d43
        out[6, q] = d43
        out[7, q] = (b6 - b5) - d43


@njit(cache=True, nogil=True)
def _level_one(work, n_a, n_b, span):  # pragma: no cover - compiled
    """Level 1 of three: a's pair sums (slots 13–16, ``n_a`` values) and b's differences
    (27–34, ``n_b`` values and one row more, ``span``) of the eight phases."""
    for j in range(4):
        e0, o1 = work[2 * j], work[2 * j + 1]
        pair = work[13 + j]
        for q in range(n_a):
            pair[q] = e0[q] + o1[q]
    m = n_b + span
    for j in range(4):
        e0, o1 = work[2 * j], work[2 * j + 1]
        first, second = work[27 + j], work[31 + j]
        if j < 3:
            e2 = work[2 * j + 2]
            for q in range(m):
                first[q] = e0[q] - o1[q]
                second[q] = e2[q] - o1[q]
        else:  # block 8v + 8 is phase 0 of the next row
            e2 = work[0, span:]
            for q in range(m):
                first[q] = e0[q] - o1[q]
                second[q] = e2[q] - o1[q]


@njit(cache=True, nogil=True)
def _build_leaves(work, levels, n_a, n_b, span):  # pragma: no cover - compiled
    """Every leaf that is not a phase, into ``work`` (:func:`leaf_sources`' slots): ``n_a``
    values of each of a's, ``n_b`` of b's."""
    if levels == 2:
        _leaves_a2(work[0], work[1], work[2], work[3], n_a, work[4:9])
        _leaves_b2(work[0], work[1], work[2], work[3], n_b, span, work[9:17])
        return
    _level_one(work, n_a, n_b, span)
    _leaves_a2(work[0], work[2], work[4], work[6], n_a, work[8:13])
    _leaves_a2(work[13], work[14], work[15], work[16], n_a, work[17:22])
    _leaves_a2(work[1], work[3], work[5], work[7], n_a, work[22:27])
    _leaves_b2(work[27], work[28], work[29], work[30], n_b, span, work[35:43])
    _leaves_b2(work[1], work[3], work[5], work[7], n_b, span, work[43:51])
    _leaves_b2(work[31], work[32], work[33], work[34], n_b, span, work[51:59])


@njit(cache=True, nogil=True)
def _plain(xcp, e, levels, out):  # pragma: no cover - compiled
    """``out[s]`` = centred sample ``s`` (time-major ``(T, C)``), gathered from the phases."""
    last = (1 << levels) - 1
    for s in range(out.shape[0]):
        blk = s // e
        out[s] = xcp[blk & last, (blk >> levels) * e + s - blk * e]


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
def _recombine(M, picks, prod, first, n_out):  # pragma: no cover - compiled
    """``prod[first + k] = 0 + Σ_q M[picks[k, q]]``, the leaves added in order, for
    ``k < n_out`` (``picks``: :func:`recombination_picks`); eight values of every output at a
    time.

    Each element gets the additions of zeroing the output and adding the leaves one at a
    time, in the same order, so the same bits. Going over the outputs a few values at a time
    reads each leaf product once (its lines stay in L1 while the outputs that use it are
    summed) instead of once for every output that uses it: PhysioNet's 27 products into 8
    outputs (22 channels) took 2.1 against 4.2 µs as one pass over each output for every four
    leaves (L1/L2-resident, one thread).
    """
    cc = M.shape[1] * M.shape[2]
    leaves, outs = M.reshape(M.shape[0] * cc), prod.reshape(prod.shape[0] * cc)
    base = first * cc
    j = 0
    while j + 8 <= cc:  # two chains of additions at a time: 2.1 against 2.8 µs for one
        for k in range(n_out):
            lo, hi = vsplat(0.0), vsplat(0.0)
            for q in range(picks.shape[1]):
                at = picks[k, q] * cc + j
                lo = lo + vload(leaves, at)
                hi = hi + vload(leaves, at + 4)
            vstore(outs, base + k * cc + j, lo)
            vstore(outs, base + k * cc + j + 4, hi)
        j += 8
    for jj in range(j, cc):
        for k in range(n_out):
            acc = 0.0
            for q in range(picks.shape[1]):
                acc += leaves[picks[k, q] * cc + jj]
            outs[base + k * cc + jj] = acc


@njit(cache=True, nogil=True)
def progression_scratch(n_channels, n_times, e, levels, groups, n_slots,
                        n_delays):  # pragma: no cover - compiled
    """The scratch :func:`epoch_products` needs (one set per thread): ``work`` (its phases
    zeroed, so that they are zero past the epoch; every other slot is written before it is
    read), ``M``, ``dst``, ``plain`` and ``rest``."""
    c, t = n_channels, n_times
    size = 1 << levels
    rows_b = -(-t // (size * e)) + groups - 1
    # b reads one row past its leaves, and three levels' level-1 differences one more
    work = np.empty((n_slots, (rows_b + levels - 1) * e, c))
    work[:size] = 0.0
    M = np.empty((3**levels, c, c))
    dst = np.empty(_TILE, dtype=np.int64)
    plain = np.empty((t if n_delays > groups * size else 0, c))
    # the samples past the paired rows: fewer than a row of them, and a window's partners
    rest = np.empty((size * e + n_delays * e, c))
    return work, M, dst, plain, rest


@njit(cache=True, nogil=True)
def epoch_products(X, ep, mean, fill_mean, e, levels, groups, picks, sources, work, M, dst,
                   plain, rest, n_a, total, prod):  # pragma: no cover - compiled
    """``prod[m] = Σ_{t < min(n_a, T − m·e)} x(t) x(t + m·e)ᵀ`` of epoch ``ep`` centred,
    ``m < prod.shape[0]``: ``R(m·e)`` for ``n_a = T``, the products over the window of the
    first ``n_a`` samples for ``n_a ≤ T − (prod.shape[0] − 1)·e``; ``mean`` and ``total``
    (``(C,)``) as in :func:`progression_products`; the rest from :func:`progression_scratch`.

    A window's leaves pair whole rows only (padding one more row would pair samples past the
    window: they are not zeros there), the samples after them one product at a time.
    """
    c, t = X.shape[1], X.shape[2]
    n_leaves = sources.shape[1]
    size = 1 << levels  # delays a group, phases of the blocks
    n_grouped = min(prod.shape[0], groups * size)  # delays the leaves make
    n_a = min(n_a, t)
    rows_a = paired_rows(t, e, levels, n_grouped) if n_a == t else n_a // (size * e)
    rows_b = rows_a + groups - 1
    width = rows_a * e
    span = e * c
    n_slots, length = work.shape[0], work.shape[1]
    if fill_mean:
        _channel_sums(X, ep, mean)
        for i in range(c):
            mean[i] /= t
    _centre_by_phase(X, ep, mean, e, levels, work[:size], total, dst)
    _build_leaves(work.reshape(n_slots, length * c), levels, rows_a * span, rows_b * span,
                  span)
    for g in range(groups):
        lo, hi = g * e, (g + rows_a) * e
        for leaf in range(n_leaves):
            lagged_product(work[sources[0, leaf], :width], work[sources[1, leaf], lo:hi],
                           M[leaf])
        _recombine(M, picks, prod, g * size, min(size, prod.shape[0] - g * size))
    paired = rows_a * size * e
    if paired < n_a:  # the samples past the paired rows, one product at a time
        for s in range(paired, min(t, n_a + (n_grouped - 1) * e)):
            row = rest[s - paired]
            for i in range(c):
                row[i] = X[ep, i, s] - mean[i]
        for m in range(n_grouped):
            last = min(n_a, t - m * e)
            if paired < last:
                _add_lagged(rest, 0, last - paired, m * e, prod[m], prod[m])
    if plain.shape[0]:
        _plain(work[:size], e, levels, plain)
        for m in range(groups * size, prod.shape[0]):
            d = m * e
            last = min(n_a, t - d)
            lagged_product(plain[:last], plain[d:d + last], prod[m])


@njit(cache=True, nogil=True)
def progression_products(X, mean, fill_mean, e, levels, groups, picks, sources, n_slots, prod,
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
    levels, groups : int
        :func:`progression_plan`: delays ``m < 2^levels·groups`` by the leaves (those past
        ``prod.shape[1]`` dropped), the rest directly.
    picks : ndarray, shape (2^levels, 2^levels)
        :func:`recombination_picks` ``(levels)``.
    sources, n_slots
        :func:`leaf_sources` ``(levels)``.
    prod : ndarray, shape (n, p, C, C)
        Written.
    total : ndarray, shape (n, C)
        Written: ``Σ_t`` of each centred epoch.
    """
    n, c, t = X.shape
    work, M, dst, plain, rest = progression_scratch(c, t, e, levels, groups, n_slots,
                                                    prod.shape[1])
    for ep in range(n):
        epoch_products(X, ep, mean[ep], fill_mean, e, levels, groups, picks, sources, work, M,
                       dst, plain, rest, t, total[ep], prod[ep])
