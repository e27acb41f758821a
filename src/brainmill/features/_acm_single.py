"""One (order, lag) transform in one pass over the epochs (numba).

:class:`~brainmill.features.augmented.LaggedProducts` computes the lagged products of every
epoch, then the rank check, then the edges, window means, tables and matrices, each pass
over all epochs. A single transform needs nothing shared between epochs, so this kernel
does every step for one epoch while its data are in the core's cache: the channel means,
the products of the delay progression over the first block row's window
(:func:`~brainmill.features._acm_products.epoch_products`), the Cholesky bound of the rank
check on the window's channel scatter ``W_0(0)``, the centred edges and window means, and
the matrix, block diagonal by block diagonal from the first block row
(:mod:`~brainmill.features._acm_chain`, no head/tail tables). No array of every epoch's
products is written or read back. The matrices agree with the passes' to rounding, not bit
for bit (``tests/features/test_acm_single.py``). Against the passes' tables and assembly
on one epoch at a time, PhysioNet's (8, 4) transform took 0.92× the time on one thread
(BENCHMARKS.md, seventeenth session). The threads share the epochs by claiming them one at a
time (:func:`~brainmill.features._acm_kernels.over_claimed_epochs`).

The rank check looks at ``W_0(0)`` rather than the passes' ``R(0)``: both are centred on the
epoch's channel means and ``R(0) − W_0(0)`` is the scatter of the last ``order·lag`` samples,
so ``W_0(0)``'s smallest eigenvalue is at most ``R(0)``'s. Singular epochs (a duplicated
channel, average reference) are found by both, with the same message
(``tests/features/test_acm_single.py``); the verdicts can differ only near the tolerance.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._acm_chain import assemble_by_recurrence, chain_scratch, load_chain
from ._acm_kernels import centred_edges, next_epoch, surely_full_rank_one, window_means
from ._acm_products import epoch_products, progression_scratch

__all__ = ["single_pass"]


@njit(cache=True, nogil=True)
def single_pass(X, order, lag, levels, groups, picks, sources, n_slots, nwin, scale, rtol,
                mean, total, sure, r0, out, counter):  # pragma: no cover
    """Augmented scatter matrices of the epochs this thread claims, ``scale · Σ (x − m)(x − m)ᵀ``,
    in one pass.

    Parameters
    ----------
    X : ndarray, shape (n, C, T)
    order, lag : int
        ``order ≥ 2``; the products of ``0, lag, …, (order−1)·lag`` by the progression.
    levels, groups, picks, sources, n_slots
        :mod:`~brainmill.features._acm_products`' plan for ``order`` delays.
    nwin, scale : float
        Window length ``N = T − order·lag``; the factor applied to every entry.
    rtol : float
        The rank check's tolerance; negative: no check (``sure`` left as it is).
    mean, total : ndarray, shape (n, C)
        Written: channel means, sums of the centred epochs.
    sure : bool ndarray, shape (n,)
        Written (``rtol ≥ 0``): whether the Cholesky bound cleared the epoch's ``W_0(0)``.
    r0 : ndarray, shape (n, C, C)
        ``W_0(0)`` written for the epochs the bound did not clear (the others untouched).
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
    W = np.empty((order, c, c))
    w = order * lag
    n_a = t - w
    head, tail = np.empty((1, c, w)), np.empty((1, c, w))
    head_cs, tail_cs = np.empty((1, w, c)), np.empty((1, w, c))
    mu = np.empty((1, order, c))
    f = np.empty((c, c))
    G, at, zt, mup = chain_scratch(c, order, lag)
    lt = np.empty((order, c, c))
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
                       dst, plain, rest, n_a, ep_total[0], W)
        if rtol >= 0.0:
            cleared = surely_full_rank_one(W[0], rtol, f)
            sure[ep] = cleared
            if not cleared:
                r0[ep] = W[0]
        # the edges and window means as LaggedProducts makes them, for this epoch alone
        centred_edges(X[ep:ep + 1], ep_mean, head, tail, head_cs, tail_cs)
        window_means(ep_total, head_cs, tail_cs, order, lag, nwin, mu)
        load_chain(W, head[0], tail[0], mu[0], G, at, zt, mup)
        assemble_by_recurrence(G, at, zt, mup, order, lag, nwin, scale, lt, out[ep])
        mean[ep], total[ep] = ep_mean[0], ep_total[0]
