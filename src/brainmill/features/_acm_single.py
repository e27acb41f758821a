"""One (order, lag) transform in one pass over the epochs (numba).

:class:`~brainmill.features.augmented.LaggedProducts` computes the lagged products of every
epoch, then the rank check, then the edges, window means, tables and matrices, each pass
over all epochs. A single transform needs nothing shared between epochs, so this kernel
does every step for one epoch while its data are in the core's cache: the channel means,
the products of the delay progression (:func:`~brainmill.features._acm_products.
epoch_products`), the Cholesky bound of the rank check on ``R(0)``, the centred edges and
window means, the head/tail tables and the assembly
(:mod:`~brainmill.features._acm_kernels`). No array of every epoch's products is written
or read back; the edges, window means, tables and assembly are the passes' own kernels,
called on one epoch. Same operations in the same order as the passes, so the same bits
(``tests/features/test_acm_single.py``). A prototype of this pass took 33.0 against 37.2 ms
for the synthetic (8, 4) transform of 288 × 22 × 1000 epochs, the same products in separate
passes (2 threads, medians of 31 alternating calls, one process). The threads share the
epochs by claiming them one at a time
(:func:`~brainmill.features._acm_kernels.over_claimed_epochs`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._acm_kernels import (
    _assemble_epoch,
    _epoch_tables,
    _time_major_edges,
    centred_edges,
    next_epoch,
    surely_full_rank_one,
    window_means,
)
from ._acm_products import epoch_products, progression_scratch

__all__ = ["single_pass"]


@njit(cache=True, nogil=True)
def single_pass(X, order, lag, levels, groups, picks, sources, n_slots, hpos, epos, n_head,
                n_tail, nwin, scale, rtol, mean, total, sure, r0, out,
                counter):  # pragma: no cover
    """Augmented scatter matrices of the epochs this thread claims, ``scale · Σ (x − m)(x − m)ᵀ``,
    in one pass.

    Parameters
    ----------
    X : ndarray, shape (n, C, T)
    order, lag : int
        ``order ≥ 2``; the products of ``0, lag, …, (order−1)·lag`` by the progression.
    levels, groups, picks, sources, n_slots
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
    counter : int64 ndarray, shape (1,)
        Shared by the threads that run this kernel on the same epochs: each takes its next
        epoch from it (:func:`~brainmill.features._acm_kernels.next_epoch`) until none is
        left (:func:`~brainmill.features._acm_kernels.over_claimed_epochs`).

    Returns
    -------
    int
        How many epochs this call computed.
    """
    n, c, t = X.shape
    work, M, dst, plain, rest = progression_scratch(c, t, lag, levels, groups, n_slots,
                                                    order)
    R = np.empty((order, c, c))
    slots = np.arange(order)
    w = order * lag
    at, zt = np.empty((w, c)), np.empty((w, c))
    head, tail = np.empty((1, c, w)), np.empty((1, c, w))
    head_cs, tail_cs = np.empty((1, w, c)), np.empty((1, w, c))
    mu = np.empty((1, order, c))
    f = np.empty((c, c))
    He, Ee = np.zeros((n_head, c, c)), np.zeros((n_tail, c, c))
    lt, nw = np.empty((order, c, c)), np.empty(c)
    # this epoch's means and sums, copied out once it is done: written in place, they would
    # share cache lines with the next epoch's, which the other thread may be writing
    ep_mean, ep_total = np.empty((1, c)), np.empty((1, c))
    done = 0
    while True:
        ep = next_epoch(counter)
        if ep >= n:
            return done
        done += 1
        epoch_products(X, ep, ep_mean[0], True, lag, levels, groups, picks, sources, work, M,
                       dst, plain, rest, ep_total[0], R)
        if rtol >= 0.0:
            cleared = surely_full_rank_one(R[0], rtol, f)
            sure[ep] = cleared
            if not cleared:
                r0[ep] = R[0]
        # the edges and window means as LaggedProducts makes them, for this epoch alone
        centred_edges(X[ep:ep + 1], ep_mean, head, tail, head_cs, tail_cs)
        window_means(ep_total, head_cs, tail_cs, order, lag, nwin, mu)
        _time_major_edges(head, tail, 0, at, zt)
        _epoch_tables(at, zt, order, lag, hpos, epos, He, Ee)
        _assemble_epoch(R, slots, He, hpos, Ee, epos, mu[0], order, nwin, scale, lt, nw,
                        out[ep])
        mean[ep], total[ep] = ep_mean[0], ep_total[0]
