"""Compiled kernels of the augmented-covariance fast path (numba, no Python objects).

The numpy version of the assembly needed about ten passes over each output matrix (gathers,
running sums along block diagonals, the mean correction, the scale, the mirrored triangle),
each a separate numpy call; these kernels write every output element once, from inputs that
stay in the per-core cache. Notation as in :mod:`brainmill.features.augmented`: ``P`` order,
``τ`` lag, ``C`` channels, blocks ``(k, l)`` with ``m = l − k``.

Edge tables
    ``H[hpos[m, k]] = Σ_{s<kτ} x(s) x(s+mτ)ᵀ`` (the first ``k·τ`` terms of the lagged
    product, ``1 ≤ k ≤ P−1−m``) and ``E[epos[m, j]]`` = the last ``j·τ`` terms of the lagged
    product ``R(mτ)`` (``1 ≤ j ≤ P−m``), built by rank-one updates from the first and last
    ``P·τ`` centred samples. Slot 0 of each table is zero. Neither depends on the order
    actually assembled, so one table of order ``P`` serves every order ``≤ P`` of that lag.
Assembly
    ``S[k, l] = (R(mτ) − H_m(k) − E_m(p−l) − N·μ_k μ_lᵀ)·scale`` for the upper triangle,
    the strictly lower triangle equal to it bit for bit, so every matrix is exactly
    symmetric; written row after row (see :func:`_assemble_epoch`).

Every kernel is ``nogil``: callers may split the epochs over threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache, partial

import numba
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._simd import vload_n, vsplat, vstore_n

__all__ = ["acm_fused", "assemble", "blas_held", "blas_one_thread", "centred_edges",
           "copy_left_blocks", "direct_mirror", "edge_tables", "gather_transposes",
           "next_epoch", "over_claimed_epochs", "over_epochs", "splits", "surely_full_rank",
           "surely_full_rank_one", "table_positions", "window_means"]

_EPS = float(np.finfo(np.float64).eps)

#: Below this much work a call is not split over threads (thread start-up and the split cost
#: more than they save on a few small matrices).
PARALLEL_MIN_VALUES = 200_000
#: The assembly copies the part of a row left of the diagonal straight from the column above
#: it (one read per row of the matrix) where the matrix is at most this wide and its row
#: stride is not a multiple of ``8·DIRECT_MIRROR_STRIDE`` bytes; elsewhere it gathers each
#: block's transpose from rows first. Columns read at such strides fall into few sets of the
#: L1 cache: at width 176 (8 × 22) the direct copy took 0.83–0.86× the gather's time, at
#: 80–300 0.81–0.93×, at 128, 192, 256, 320, 630 and 640 1.03–1.74× (one thread, 20–100
#: epochs, throw-away timings, BENCHMARKS.md, thirteenth session).
DIRECT_MIRROR_MAX = 384
DIRECT_MIRROR_STRIDE = 32
_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (pid that made it, pool)


def splits(n_epochs: int, n_values: int) -> bool:
    """Whether :func:`over_epochs` runs a call of this size on more than one thread."""
    return min(numba.get_num_threads(), n_epochs) > 1 and n_values >= PARALLEL_MIN_VALUES


def over_epochs(call: Callable[[slice], object], n_epochs: int, n_values: int,
                hold_blas: bool = False) -> None:
    """Run ``call(epochs)`` on contiguous slices of the epochs, one per thread.

    The kernels release the GIL, so the slices run in parallel: the calling thread runs the
    last slice and pool threads the others. Threads:
    ``numba.get_num_threads()`` (set ``NUMBA_NUM_THREADS`` or :func:`numba.set_num_threads`
    to change it); one slice when ``n_values`` (the work of the call: the size of what is
    written, for the assembly kernels) is small. ``hold_blas``: ``call`` uses BLAS, which
    is held to one thread while the slices run (:func:`blas_one_thread`); not the default, as a
    hold costs about 14 µs and the compiled kernels use no BLAS.
    """
    if not splits(n_epochs, n_values):
        call(slice(0, n_epochs))
        return
    threads = min(numba.get_num_threads(), n_epochs)
    bounds = [n_epochs * k // threads for k in range(threads + 1)]
    _on_threads([partial(call, slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:],
                                                            strict=True)], hold_blas)


def over_claimed_epochs(call: Callable[[np.ndarray], object], n_epochs: int, n_values: int,
                        hold_blas: bool = False) -> None:
    """Run ``call(counter)`` on every thread, the kernel claiming epochs one at a time.

    ``counter`` ``(1,)`` int64 starts at 0; a kernel takes its next epoch with
    :func:`next_epoch` until it gets one ``≥ n_epochs``, so every epoch is computed once and
    a thread that starts late or runs slow (the cores here are shared with other guests)
    takes fewer epochs instead of holding up the others. Against :func:`over_epochs`' fixed
    halves, PhysioNet's single (8, 4) transform took 0.81–0.88× the time in noisy minutes
    and 0.99–1.00× in quiet ones (2 threads, medians of 31–41 paired rounds; BENCHMARKS.md,
    fourteenth session). A kernel keeps what it updates often in its own scratch and writes
    each epoch's rows once: neighbouring epochs, on other threads, share cache lines.
    Threads, ``n_values`` and ``hold_blas`` as in :func:`over_epochs`; the calling thread
    runs ``call`` too.
    """
    counter = np.zeros(1, dtype=np.int64)
    if not splits(n_epochs, n_values):
        call(counter)
        return
    threads = min(numba.get_num_threads(), n_epochs)
    _on_threads([partial(call, counter)] * threads, hold_blas)


def _on_threads(calls: list[Callable[[], object]], hold_blas: bool) -> None:
    """Run ``calls[-1]`` on the calling thread and the others on the pool, in parallel."""
    global _POOL
    # a pool made before a fork has no threads in the child: make a new one there
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1]._max_workers < len(calls) - 1:
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=len(calls) - 1,
                                                 thread_name_prefix="brainmill-acm"))
    with blas_one_thread() if hold_blas else nullcontext():
        futures = [_POOL[1].submit(call) for call in calls[:-1]]
        try:  # the calling thread runs the last call (over_epochs': the largest slice), unwoken
            calls[-1]()
        finally:
            wait(futures)  # every call done before an error propagates (a caller may free memory)
    for future in futures:
        future.result()


@intrinsic
def next_epoch(typingctx, counter):  # pragma: no cover - compiled
    """``counter[0]``, incremented atomically: the next epoch for the calling thread
    (:func:`over_claimed_epochs`). ``counter``: a 1-D int64 array."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64):
        return None
    sig = types.int64(counter)

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        first = cgutils.get_item_pointer(context, builder, signature.args[0], array,
                                         [context.get_constant(types.intp, 0)])
        # monotonic: each epoch's results are published by the join, not by the counter
        return builder.atomic_rmw("add", first, context.get_constant(types.int64, 1),
                                  "monotonic")

    return sig, codegen


class _OneThreadBLAS:
    """BLAS at one thread until the last of any overlapping holds ends (reentrant, shared).

    Two holds from two threads may end in either order: the first hold sets every BLAS to
    one thread, the last one restores what the first saw. Each BLAS is set through
    threadpoolctl's controller of it, found once (the libraries loaded at the first hold,
    scipy's, which ``np.dot`` in the compiled kernels calls, among them), and only where it
    is not at one thread already. A hold and its release took 24 against 59 µs for
    threadpoolctl's ``limit`` and its restore, whose objects are made anew each time, right
    after a PhysioNet (8, 4) transform had filled the caches, and 11 against 15 µs warm
    (two OpenBLAS libraries loaded; medians of 400 and 3000 alternating rounds).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._holds = 0
        self._blas = None  # threadpoolctl's controllers of the BLAS libraries
        self._saved = []  # (controller, threads) set to one thread by the open holds

    def __enter__(self) -> None:
        with self._lock:
            if self._holds == 0:
                if self._blas is None:
                    self._blas = _blas_controllers()
                saved = [(lib, lib.get_num_threads()) for lib in self._blas]
                self._saved = [(lib, n) for lib, n in saved if n is not None and n != 1]
                for lib, _ in self._saved:
                    _set_threads(lib, 1)
            self._holds += 1

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._holds -= 1
            if self._holds == 0:
                for lib, n in self._saved:
                    _set_threads(lib, n)
                self._saved = []


def _set_threads(lib, n: int) -> None:
    """``lib.set_num_threads(n)`` from whichever thread calls it.

    threadpoolctl lets one "controlling" thread set OpenBLAS's process-wide pool (the first
    to set it, while it lives, unless cleared) and silently ignores the others; a hold may
    begin and end on different threads. So a set that did not take is repeated after taking
    control (about 1.8 µs a set when it took, against 3.5 µs for clearing the control around
    every set).
    """
    lib.set_num_threads(n)
    if lib.get_num_threads() != n and hasattr(lib, "clear_controlling_thread"):
        lib.clear_controlling_thread(force=True)  # threadpoolctl ≥ 3.6, OpenBLAS
        lib.set_num_threads(n)


def _blas_controllers() -> list:
    """threadpoolctl's controllers of the BLAS libraries loaded now."""
    # scipy's own BLAS, which np.dot in compiled kernels calls, loaded first
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]


_ONE_THREAD_BLAS = _OneThreadBLAS()


def blas_one_thread() -> AbstractContextManager:
    """A hold of BLAS at one thread (:class:`_OneThreadBLAS`): ``with blas_one_thread():``."""
    return _ONE_THREAD_BLAS


def blas_held(n_epochs: int, n_values: int) -> AbstractContextManager:
    """BLAS held to one thread while :func:`over_epochs` splits a call of this size, else
    untouched.

    The epochs' slices already occupy the cores; a BLAS call inside them that also went over
    threads would oversubscribe them. Held around the whole call from the calling thread:
    OpenBLAS's idle workers spin for a while after each product on the main thread, and two
    threads limited only inside gained nothing over one (BENCHMARKS.md, the tangent space).
    Holds may nest and overlap across threads. The libraries limited are those loaded at the
    first hold (numpy's BLAS, which every split call here uses, is always among them).
    """
    if not splits(n_epochs, n_values):
        return nullcontext()
    return blas_one_thread()


@lru_cache(maxsize=64)
def table_positions(order: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Slots of the head and tail tables for orders up to ``order``.

    Returns
    -------
    hpos : ndarray of int64, shape (order, order)
        ``hpos[m, k]`` slot of ``H_m(k)``; 0 (the zero slot) for ``k = 0`` and unused pairs.
    epos : ndarray of int64, shape (order, order + 1)
        ``epos[m, j]`` slot of ``E_m(j)``; 0 where unused.
    n_head, n_tail : int
        Slots in each table (the zero slot included).
    """
    hpos = np.zeros((order, order), dtype=np.int64)
    epos = np.zeros((order, order + 1), dtype=np.int64)
    # slots in the order the assembly reads them, block row k by block row: H_m(k) for
    # m = 0, 1, … (k-major) and E_m(j) with j = s − m for m = 0, 1, … (s = order − k)
    nh = ne = 1
    for k in range(1, order):
        for m in range(order - k):
            hpos[m, k] = nh
            nh += 1
    for total in range(order, 0, -1):
        for m in range(total):
            epos[m, total - m] = ne
            ne += 1
    hpos.flags.writeable = epos.flags.writeable = False  # shared by the cache
    return hpos, epos, nh, ne


@njit(cache=True, nogil=True)
def centred_edges(X, mean, head, tail, head_cs, tail_cs):  # pragma: no cover - compiled
    """Centred first/last ``W`` samples of every epoch and their running sums.

    Parameters
    ----------
    X : ndarray, shape (n, C, T)
        Epochs; ``W ≤ T`` (not checked here: the caller's).
    mean : ndarray, shape (n, C)
        Channel means of each epoch.
    head, tail : ndarray, shape (n, C, W)
        Written: ``X − mean`` over the first / last ``W`` samples.
    head_cs, tail_cs : ndarray, shape (n, W, C)
        Written: ``head_cs[e, s]`` the sum of the first ``s + 1`` centred samples,
        ``tail_cs[e, s]`` of the last ``s + 1``, each added in time order from its end of the
        epoch (as ``np.cumsum`` does), so the same bits.
    """
    n, c, t = X.shape
    w = head.shape[2]
    for e in range(n):
        for i in range(c):
            m = mean[e, i]
            acc = 0.0
            for s in range(w):
                v = X[e, i, s] - m
                head[e, i, s] = v
                acc += v
                head_cs[e, s, i] = acc
            for s in range(w):
                tail[e, i, s] = X[e, i, t - w + s] - m
            acc = 0.0
            for s in range(w):
                acc += tail[e, i, w - 1 - s]
                tail_cs[e, s, i] = acc


@njit(cache=True, nogil=True)
def window_means(total, head_cs, tail_cs, order, lag, nwin, mu):  # pragma: no cover
    """Mean of each delayed copy over its window, from the edges' running sums.

    ``mu[e, k] = (total[e] − head_cs[e, k·lag − 1] − tail_cs[e, (order−k)·lag − 1]) / nwin``,
    subtracted in that order (window 0 has no head term): the first ``k·lag`` and last
    ``(order−k)·lag`` samples are outside window ``k``. Shapes: ``total`` (n, C), the
    running sums of :func:`centred_edges` (n, ≥ order·lag, C), ``mu`` (n, order, C).
    """
    for e in range(mu.shape[0]):
        for k in range(order):
            for i in range(mu.shape[2]):
                v = total[e, i]
                if k > 0:
                    v -= head_cs[e, k * lag - 1, i]
                v -= tail_cs[e, (order - k) * lag - 1, i]
                mu[e, k, i] = v / nwin


@njit(cache=True, nogil=True)
def _time_major_edges(head, tail, e, at, zt):  # pragma: no cover - compiled
    """Epoch ``e``'s first and last ``span = len(at)`` samples, time-major ``(span, C)``."""
    span, t_tail = at.shape[0], tail.shape[2]
    for i in range(at.shape[1]):
        for s in range(span):
            at[s, i] = head[e, i, s]
            zt[s, i] = tail[e, i, t_tail - span + s]


#: Widest rows (channels) :func:`_add_lagged` updates with its row operands held in registers
#: (six 4-wide vectors for each of four samples).
REGISTER_COLUMNS = 24


@njit(cache=True, nogil=True, inline="always")
def _lanes(c, j):  # pragma: no cover - compiled
    """Columns of a 4-wide chunk at ``j`` within ``c``: 0 … 4."""
    return min(max(c - j, 0), 4)


@njit(cache=True, nogil=True, inline="always")
def _chunks(row, n0, n1, n2, n3, n4, n5):  # pragma: no cover - compiled
    """``row[:24]`` as six 4-wide vectors, chunk ``k`` holding its first ``n_k`` lanes."""
    return (vload_n(row, 0, n0), vload_n(row, 4, n1), vload_n(row, 8, n2),
            vload_n(row, 12, n3), vload_n(row, 16, n4), vload_n(row, 20, n5))


@njit(cache=True, nogil=True, inline="always")
def _update_chunk(row, base, j, n, a0, a1, a2, a3, b0, b1, b2, b3):  # pragma: no cover
    """``row[j:j+n] = (((base + a0·b0) + a1·b1) + a2·b2) + a3·b3`` on the chunk at ``j``."""
    vstore_n(row, j, (((vload_n(base, j, n) + a0 * b0) + a1 * b1) + a2 * b2) + a3 * b3, n)


@njit(cache=True, nogil=True, inline="always")
def _four_in_registers(src, s, d, prev, acc):  # pragma: no cover - compiled
    """``acc = prev + Σ_{r<4} src[s+r] src[s+d+r]ᵀ`` for ``C ≤ REGISTER_COLUMNS``.

    The four ``src[s+d+r]`` rows are loaded once, as six 4-wide vectors each (the last ones
    masked), and every row of ``acc`` is then four broadcasts and 24 vector multiplies and
    adds; each element gets the same operations in the same order as :func:`_add_lagged`'s
    loops (so the same bits). The tables of a PhysioNet (8, 4) epoch (22 channels): 10.4
    against 15.0 µs (one thread, throw-away timings); from 28 channels the loops were as fast.
    """
    c = src.shape[1]
    n0, n1, n2 = _lanes(c, 0), _lanes(c, 4), _lanes(c, 8)
    n3, n4, n5 = _lanes(c, 12), _lanes(c, 16), _lanes(c, 20)
    p00, p01, p02, p03, p04, p05 = _chunks(src[s + d], n0, n1, n2, n3, n4, n5)
    p10, p11, p12, p13, p14, p15 = _chunks(src[s + d + 1], n0, n1, n2, n3, n4, n5)
    p20, p21, p22, p23, p24, p25 = _chunks(src[s + d + 2], n0, n1, n2, n3, n4, n5)
    p30, p31, p32, p33, p34, p35 = _chunks(src[s + d + 3], n0, n1, n2, n3, n4, n5)
    for i in range(c):
        a0, a1 = vsplat(src[s, i]), vsplat(src[s + 1, i])
        a2, a3 = vsplat(src[s + 2, i]), vsplat(src[s + 3, i])
        row, base = acc[i], prev[i]
        _update_chunk(row, base, 0, n0, a0, a1, a2, a3, p00, p10, p20, p30)
        _update_chunk(row, base, 4, n1, a0, a1, a2, a3, p01, p11, p21, p31)
        _update_chunk(row, base, 8, n2, a0, a1, a2, a3, p02, p12, p22, p32)
        _update_chunk(row, base, 12, n3, a0, a1, a2, a3, p03, p13, p23, p33)
        _update_chunk(row, base, 16, n4, a0, a1, a2, a3, p04, p14, p24, p34)
        _update_chunk(row, base, 20, n5, a0, a1, a2, a3, p05, p15, p25, p35)


@njit(cache=True, nogil=True, inline="always")
def _four_in_loops(src, s, d, prev, acc):  # pragma: no cover - compiled
    """``acc = prev + Σ_{r<4} src[s+r] src[s+d+r]ᵀ``, a row of ``acc`` at a time."""
    c = src.shape[1]
    b0, b1, b2, b3 = src[s + d], src[s + d + 1], src[s + d + 2], src[s + d + 3]
    for i in range(c):
        a0, a1, a2, a3 = src[s, i], src[s + 1, i], src[s + 2, i], src[s + 3, i]
        row, base = acc[i], prev[i]
        for j in range(c):
            row[j] = (((base[j] + a0 * b0[j]) + a1 * b1[j]) + a2 * b2[j]) + a3 * b3[j]


@njit(cache=True, nogil=True)
def _add_lagged(src, lo, hi, d, prev, acc):  # pragma: no cover - compiled
    """``acc = prev + Σ_{lo ≤ s < hi} src[s] src[s+d]ᵀ``, in ``s`` order, for ``src`` ``(S, C)``
    (``src``, ``prev`` and ``acc`` C-contiguous: the register path's masked access needs it).

    Four samples per pass over ``acc``, each element updated in the same order as one
    sample at a time (so the same bits), with a quarter of the loads and stores of ``acc``:
    the tables of a PhysioNet grid build 1.25× faster (one thread, throw-away timing). Up to
    :data:`REGISTER_COLUMNS` channels a pass keeps its four rows of ``src[s+d]`` in registers
    (:func:`_four_in_registers`). The first pass reads ``prev`` (which may be ``acc``
    itself), so that a running sum is written straight into its next table instead of being
    accumulated and copied there; the later ones update ``acc`` in place.
    """
    if hi - lo < 1:
        acc[:, :] = prev
        return
    c = src.shape[1]
    base = prev
    s = lo
    while s + 4 <= hi:
        if c <= REGISTER_COLUMNS:
            _four_in_registers(src, s, d, base, acc)
        else:
            _four_in_loops(src, s, d, base, acc)
        base = acc
        s += 4
    while s < hi:
        b0 = src[s + d]
        for i in range(c):
            a0 = src[s, i]
            row, prow = acc[i], base[i]
            for j in range(c):
                row[j] = prow[j] + a0 * b0[j]
        base = acc
        s += 1


@njit(cache=True, nogil=True)
def _epoch_tables(at, zt, order, lag, hpos, epos, H, E):  # pragma: no cover - compiled
    """One epoch's head/tail tables from its time-major edges ``at``/``zt`` ``(P·τ, C)``.

    Each table is the one before it (slot 0, all zeros, for the first) plus one block of
    ``τ`` samples, written in place: a PhysioNet (8, 4) transform's tables took 0.68 against
    1.18 ms when each running sum was accumulated apart and copied out (45 epochs, one
    thread; same bits).
    """
    for m in range(order):
        d = m * lag
        for k in range(order - 1 - m):
            _add_lagged(at, k * lag, (k + 1) * lag, d, H[hpos[m, k]], H[hpos[m, k + 1]])
        for jj in range(1, order - m + 1):
            lo = (order - m - jj) * lag
            _add_lagged(zt, lo, lo + lag, d, E[epos[m, jj - 1]], E[epos[m, jj]])


@njit(cache=True, nogil=True)
def edge_tables(head, tail, order, lag, hpos, epos, H, E):  # pragma: no cover - compiled
    """Fill ``H`` ``(n, n_head, C, C)`` and ``E`` ``(n, n_tail, C, C)`` for every epoch.

    ``head``/``tail``: ``(n, C, ≥ order·lag)`` centred first / last samples of each epoch
    (only the first / last ``order·lag`` are read).
    """
    n, c = head.shape[0], head.shape[1]
    span = order * lag
    at = np.empty((span, c))
    zt = np.empty((span, c))
    for e in range(n):
        _time_major_edges(head, tail, e, at, zt)
        H[e, 0] = 0.0
        E[e, 0] = 0.0
        _epoch_tables(at, zt, order, lag, hpos, epos, H[e], E[e])


@njit(cache=True, nogil=True)
def direct_mirror(width):  # pragma: no cover - compiled
    """Whether a matrix ``width`` wide copies its transposed blocks straight down the column
    above (:data:`DIRECT_MIRROR_MAX`, :data:`DIRECT_MIRROR_STRIDE`)."""
    return width <= DIRECT_MIRROR_MAX and width % DIRECT_MIRROR_STRIDE != 0


@njit(cache=True, nogil=True, inline="always")
def gather_transposes(o, k, c, lt):  # pragma: no cover - compiled
    """``lt[b] = `` block ``(b, k)`` of ``o`` transposed, ``b < k`` (the mirror's gathered
    path, once per block row ``k``; ``lt`` ``(P, C, C)``)."""
    rk = k * c
    for b in range(k):
        tb = lt[b]
        for j in range(c):
            src = o[b * c + j, rk:rk + c]
            for i in range(c):
                tb[i, j] = src[i]


@njit(cache=True, nogil=True, inline="always")
def copy_left_blocks(o, k, i, c, direct, lt):  # pragma: no cover - compiled
    """Row ``i`` of block row ``k`` left of block ``(k, k)``: the transposes of the blocks
    above, down column ``k·C + i`` (``direct``) or from :func:`gather_transposes`' ``lt``."""
    rk = k * c
    orow = o[rk + i]
    if direct:
        col = rk + i
        for q in range(rk):
            orow[q] = o[q, col]
    else:
        for b in range(k):
            src = lt[b, i]
            dst = orow[b * c:(b + 1) * c]
            for j in range(c):
                dst[j] = src[j]


@njit(cache=True, nogil=True)
def _assemble_epoch(prod_e, slots, He, hpos, Ee, epos, mu_e, order, nwin, scale, lt, nw,
                    o):  # pragma: no cover - compiled
    """One epoch's matrix ``o`` ``(P·C, P·C)``, written row after row; ``prod_e[slot] = R(d)``.

    Every output row is written left to right in one pass: writing constants into the
    matrices of a PhysioNet grid block by block (each row in ``C``-long pieces, then each
    mirror block) took 2.5–3.5× as long as writing them row by row, and this kernel assembles
    that grid 1.25× faster than the block-by-block one did (single thread). A row of block row
    ``k`` holds, in order:

    * blocks ``b < k``: the transposes of the upper blocks ``(b, k)``, already written in
      block row ``b``: read down the column above (``DIRECT_MIRROR_MAX``), or gathered into
      the scratch ``lt`` ``(P, C, C)`` once per block row;
    * the diagonal block: its upper part (``j ≥ i``) directly, and ``j < i`` as the value of
      the mirrored element computed with the same operands in the same order: column ``i`` of
      ``R(0)`` (which BLAS need not make bit-symmetric), and ``H_0``/``E_0`` are sums of
      ``x xᵀ`` products, so bit-symmetric;
    * blocks ``b > k``: directly, from row ``i`` of ``R(mτ)``.

    So each matrix is exactly symmetric, equal bit for bit to computing the upper triangle
    and copying it. ``lt`` ``(P, C, C)`` and ``nw`` ``(C,)`` are scratch. The products are
    stored as ``R(d)``, not ``R(d)ᵀ``, so that their rows are read in place: gathering the
    transposes into a scratch first took about 11 % of this kernel (PhysioNet 10 × 10 grid,
    one thread, same bits).
    """
    c = mu_e.shape[1]
    pr0 = prod_e[slots[0]]
    direct = direct_mirror(order * c)
    for k in range(order):
        rk = k * c
        if not direct:
            gather_transposes(o, k, c, lt)
        mu_k = mu_e[k]
        h0, t0 = He[hpos[0, k]], Ee[epos[0, order - k]]
        for j in range(c):
            nw[j] = nwin * mu_k[j]
        for i in range(c):
            orow = o[rk + i]
            copy_left_blocks(o, k, i, c, direct, lt)
            mu_ki = mu_k[i]
            dst = orow[rk:rk + c]
            p, hr, tr = pr0[:, i], h0[i], t0[i]
            for j in range(i):  # mirrored: the upper element (j, i)'s operands and order
                dst[j] = (p[j] - nw[j] * mu_ki - hr[j] - tr[j]) * scale
            nmu = nw[i]
            # j ≥ i through slices from i: a loop over range(i, c) took 1.02–1.37× as long
            d, r, mu_j, h, t = dst[i:], pr0[i, i:], mu_k[i:], hr[i:], tr[i:]
            for j in range(c - i):
                d[j] = (r[j] - nmu * mu_j[j] - h[j] - t[j]) * scale
            for b in range(k + 1, order):
                m = b - k
                r, hr, tr = prod_e[slots[m], i], He[hpos[m, k], i], Ee[epos[m, order - b], i]
                mu_b = mu_e[b]
                dst = orow[b * c:(b + 1) * c]
                for j in range(c):
                    dst[j] = (r[j] - nmu * mu_b[j] - hr[j] - tr[j]) * scale


@njit(cache=True, nogil=True)
def assemble(prod, slots, H, hpos, epos, E, mu, order, nwin, scale, out):  # pragma: no cover
    """Augmented scatter matrices of every epoch from the products and shared edge tables.

    Parameters
    ----------
    prod : ndarray, shape (n, n_delays, C, C)
        ``prod[e, slots[m]] = R(m·τ)`` of the centred epoch.
    slots : int64 array, shape (order,)
    H, E : ndarrays from :func:`edge_tables` (of any order ``≥ order``, same lag)
    hpos, epos : int64 arrays from :func:`table_positions` (same order as the tables);
        pass ``epos`` all zeros for order 1 (no crop)
    mu : ndarray, shape (n, order, C)
        Window mean of every delayed copy.
    nwin : float
        Window length ``N``.
    scale : float
        Applied to every entry (``1/(N−1)``, ``1/N`` or 1).
    out : ndarray, shape (n, order·C, order·C)
    """
    c = mu.shape[2]
    lt, nw = np.empty((order, c, c)), np.empty(c)
    for e in range(out.shape[0]):
        _assemble_epoch(prod[e], slots, H[e], hpos, E[e], epos, mu[e], order, nwin, scale,
                        lt, nw, out[e])


@njit(cache=True, nogil=True)
def acm_fused(prod, slots, head, tail, hpos, epos, n_head, n_tail, mu, order, lag, nwin,
              scale, out):  # pragma: no cover - compiled
    """:func:`edge_tables` + :func:`assemble` one epoch at a time, tables kept in cache.

    For a single (order, lag): no table of all epochs is ever held. ``order ≥ 2``.
    """
    n, c = head.shape[0], head.shape[1]
    span = order * lag
    at = np.empty((span, c))
    zt = np.empty((span, c))
    He = np.zeros((n_head, c, c))
    Ee = np.zeros((n_tail, c, c))
    lt, nw = np.empty((order, c, c)), np.empty(c)
    for e in range(n):
        _time_major_edges(head, tail, e, at, zt)
        _epoch_tables(at, zt, order, lag, hpos, epos, He, Ee)
        _assemble_epoch(prod[e], slots, He, hpos, Ee, epos, mu[e], order, nwin, scale, lt,
                        nw, out[e])


@njit(cache=True, nogil=True)
def surely_full_rank(cov, rtol, sure):  # pragma: no cover - compiled
    """Which symmetric matrices certainly have ``λ_min > rtol · λ_max``, without eigenvalues.

    A Cholesky factor ``L`` of ``A`` bounds both ends: ``λ_min ≥ 1 / ‖L⁻¹‖_F²`` (as
    ``‖A⁻¹‖₂ = ‖L⁻¹‖₂² ≤ ‖L⁻¹‖_F²``) and ``λ_max ≤ trace(A)``. ``sure[e]`` is set where
    ``1 / ‖L⁻¹‖_F² > (2·rtol + 64·C·ε)·trace`` (the margin covers the rounding of both this
    bound and the eigenvalues, down to ``rtol = 0``); elsewhere, and where the
    factorisation breaks down or overflows, it is cleared and the caller decides from the
    eigenvalues.
    About a fifth of ``np.linalg.eigvalsh``'s time on 22 × 22 matrices.

    Parameters
    ----------
    cov : ndarray, shape (n, C, C)
        Symmetric matrices (the lower triangle is read).
    rtol : float
    sure : bool ndarray, shape (n,)
        Written.
    """
    f = np.empty((cov.shape[1], cov.shape[1]))
    for e in range(cov.shape[0]):
        sure[e] = surely_full_rank_one(cov[e], rtol, f)


@njit(cache=True, nogil=True)
def surely_full_rank_one(a, rtol, f):  # pragma: no cover - compiled
    """:func:`surely_full_rank` of one matrix ``a`` ``(C, C)``; ``f`` ``(C, C)``: scratch."""
    c = a.shape[0]
    trace = 0.0
    for i in range(c):
        trace += a[i, i]
    ok = 0.0 < trace < np.inf
    for j in range(c):  # Cholesky, column by column, into the lower triangle of f
        if not ok:
            break
        d = a[j, j]
        for k in range(j):
            d -= f[j, k] * f[j, k]
        if not d > 0.0:  # not positive definite in floating point (or NaN)
            ok = False
            break
        d = np.sqrt(d)
        f[j, j] = d
        for i in range(j + 1, c):
            s = a[i, j]
            for k in range(j):
                s -= f[i, k] * f[j, k]
            f[i, j] = s / d
    if ok:  # L⁻¹ in place (lower triangular), summing its squares
        sq = 0.0
        for j in range(c):
            f[j, j] = 1.0 / f[j, j]
            sq += f[j, j] * f[j, j]
            for i in range(j + 1, c):
                s = 0.0
                for k in range(j, i):
                    s -= f[i, k] * f[k, j]
                f[i, j] = s / f[i, i]
                sq += f[i, j] * f[i, j]
        # 1/sq > bound, written so that an overflow or NaN leaves the epoch unsure
        ok = sq > 0.0 and sq * (2.0 * rtol + 64.0 * c * _EPS) * trace < 1.0
    return ok
