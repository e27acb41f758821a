"""One (order, lag) transform in one pass over the epochs (numba).

:class:`~brainmill.features.augmented.LaggedProducts` computes the lagged products of every
epoch, then the rank check, then the edges, window means, tables and matrices, each pass
over all epochs. A single transform needs nothing shared between epochs, so this kernel
does every step for one epoch while its data are in the core's cache: the channel means,
the products of the delay progression (:func:`~brainmill.features._acm_products.
epoch_products`), the Cholesky bound of the rank check on ``R(0)``, the centred edges and
window means, the head/tail tables and the assembly
(:mod:`~brainmill.features._acm_kernels`). No array of every epoch's products is written
or read back. Same operations in the same order as the passes, so the same bits
(``tests/features/test_acm_single.py``); 33.0 against 37.2 ms for the synthetic (8, 4)
transform of 288 × 22 × 1000 epochs (2 threads, medians of 31 alternating calls).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._acm_kernels import _assemble_epoch, _epoch_tables, surely_full_rank_one
from ._acm_products import epoch_products, progression_scratch

__all__ = ["single_pass"]


@njit(cache=True, nogil=True)
def _edges_and_window_means(X, ep, mean, total, order, lag, nwin, at, zt, head_sum, tail_sum,
                            mu):  # pragma: no cover - compiled
    """Epoch ``ep``'s centred first/last ``order·lag`` samples (time-major ``at``/``zt``) and
    the mean of each delayed copy over its window, ``mu`` ``(order, C)``.

    As :func:`~brainmill.features._acm_kernels.centred_edges` and ``window_means``: the
    running sums go in time order from each end of the epoch, and window ``k`` is
    ``(total − first k·lag − last (order−k)·lag) / N``, subtracted in that order.
    """
    c, t = X.shape[1], X.shape[2]
    w = order * lag
    for i in range(c):
        m = mean[i]
        acc = 0.0
        for s in range(w):
            v = X[ep, i, s] - m
            at[s, i] = v
            acc += v
            head_sum[s, i] = acc
        for s in range(w):
            zt[s, i] = X[ep, i, t - w + s] - m
        acc = 0.0
        for s in range(w):
            acc += zt[w - 1 - s, i]
            tail_sum[s, i] = acc
    for k in range(order):
        for i in range(c):
            v = total[i]
            if k > 0:
                v -= head_sum[k * lag - 1, i]
            v -= tail_sum[(order - k) * lag - 1, i]
            mu[k, i] = v / nwin


@njit(cache=True, nogil=True)
def single_pass(X, order, lag, levels, groups, recon, sources, n_slots, hpos, epos, n_head,
                n_tail, nwin, scale, rtol, mean, total, sure, r0, out):  # pragma: no cover
    """Augmented scatter matrices of every epoch, ``scale · Σ (x − m)(x − m)ᵀ``, in one pass.

    Parameters
    ----------
    X : ndarray, shape (n, C, T)
    order, lag : int
        ``order ≥ 2``; the products of ``0, lag, …, (order−1)·lag`` by the progression.
    levels, groups, recon, sources, n_slots
        :mod:`~brainmill.features._acm_products`' plan for ``order`` delays.
    hpos, epos, n_head, n_tail
        ``table_positions(order)``.
    nwin, scale : float
        Window length ``N``; the factor applied to every entry.
    rtol : float
        The rank check's tolerance; negative: no check (``sure`` left as it is).
    mean, total : ndarray, shape (n, C)
        Written: channel means, sums of the centred epochs.
    sure : bool ndarray, shape (n,)
        Written (``rtol ≥ 0``): whether the Cholesky bound cleared the epoch's ``R(0)``.
    r0 : ndarray, shape (n, C, C)
        ``R(0)`` written for the epochs the bound did not clear (the others untouched).
    out : ndarray, shape (n, order·C, order·C)
        Written.
    """
    n, c, t = X.shape
    work, M, dst, plain = progression_scratch(c, t, lag, levels, groups, n_slots, order)
    R = np.empty((order, c, c))
    slots = np.arange(order)
    w = order * lag
    at, zt = np.empty((w, c)), np.empty((w, c))
    head_sum, tail_sum = np.empty((w, c)), np.empty((w, c))
    mu = np.empty((order, c))
    acc, f = np.empty((c, c)), np.empty((c, c))
    He, Ee = np.zeros((n_head, c, c)), np.zeros((n_tail, c, c))
    lt, nw = np.empty((order, c, c)), np.empty(c)
    for ep in range(n):
        epoch_products(X, ep, mean[ep], True, lag, levels, groups, recon, sources, work, M, dst,
                       plain, total[ep], R)
        if rtol >= 0.0:
            sure[ep] = surely_full_rank_one(R[0], rtol, f)
            if not sure[ep]:
                r0[ep] = R[0]
        _edges_and_window_means(X, ep, mean[ep], total[ep], order, lag, nwin, at, zt,
                                head_sum, tail_sum, mu)
        _epoch_tables(at, zt, order, lag, hpos, epos, He, Ee, acc)
        _assemble_epoch(R, slots, He, hpos, Ee, epos, mu, order, nwin, scale, lt, nw, out[ep])
