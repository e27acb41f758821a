"""Augmented covariance matrices (ACM): covariance of the delay-embedded signal.

Carrara & Papadopoulo, "Classification of BCI-EEG based on augmented covariance matrix"
(arXiv:2302.04508). With order ``p`` and lag ``τ`` the embedding stacks ``p`` delayed copies of
the ``C`` channels, exactly as MOABB's ``AugmentedDataset``::

    X_aug = concat_{k=0..p-1} X[:, :, k·τ : T - (p-k)·τ]      # (n, C·p, N),  N = T - p·τ

so block ``k`` holds ``x(t + kτ)`` for ``t = 0..N-1`` and the first block the earliest samples.
Order 1 is the plain covariance over all ``T`` samples (MOABB returns ``X`` unchanged; no crop).
The crop is ``p·τ``, one lag more than the minimal ``(p-1)·τ``; we keep it so results equal the
paper's pipeline.

This differs from pyriemann's ``TimeDelayCovariances(delays)``, which shifts with ``np.roll``
(the end of the epoch wraps round to the start), uses delays ``1..d-1`` with no lag stride and
keeps all ``T`` samples: its matrices are *not* ACMs.

The fast exact path
-------------------
Block ``(k, l)`` (``k ≤ l``, ``d = (l-k)τ``) of the un-normalised scatter matrix is a lagged
cross-product over a shifted window::

    S_kl = Σ_{s=kτ}^{kτ+N-1} x(s) x(s+d)ᵀ = R(d) - H_d(kτ) - E_d((p-l)τ)

with ``R(d) = Σ_{s=0}^{T-1-d} x(s) x(s+d)ᵀ`` the full lagged product, ``H_d(a)`` the sum over the
first ``a`` terms and ``E_d(m)`` the sum over the last ``m`` terms. ``R(d)`` is computed once per
delay (one matrix product per epoch for every delay at once); ``H`` and ``E`` at multiples of
``τ`` are tables of running sums over the first and last ``p·τ`` samples, which do not depend
on the order, so a grid builds them once per lag and every order reads them; window means
come from running sums of the same edges. The assembly that combines them is compiled
(:mod:`brainmill.features._acm_kernels`) and writes each output value once. Each channel is
first centred on its epoch mean (a covariance is invariant to that) so the final mean
correction does not cancel catastrophically.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np

#: estimators computed exactly by the fast path (pyriemann / scikit-learn semantics).
ESTIMATORS = ("cov", "oas", "lwf")
#: The rank check's tolerance (:meth:`LaggedProducts.check_full_rank`'s default): singular when
#: the smallest eigenvalue of an epoch's channel covariance is ``≤ RANK_RTOL ×`` the largest.
RANK_RTOL = 1e-10
#: Output bytes assembled per chunk of epochs (temporaries are about half of it): cache-sized.
CHUNK_BYTES = 2_000_000


def check_signals(X: np.ndarray, *, what: str = "X", finite: bool = True) -> np.ndarray:
    """Return ``X`` as a float64 array of shape (n_epochs, n_channels, n_times), finite.

    Parameters
    ----------
    X : array-like, shape (n_epochs, n_channels, n_times)
        Real signals.
    what : str
        The name the errors give ``X``.
    finite : bool
        Check for NaN/inf (``False``: the caller checks another way).

    Raises
    ------
    ValueError
        For a wrong number of dimensions or NaN/inf values (with their epoch and channel).
    """
    if np.iscomplexobj(X):  # np.asarray would drop the imaginary part with only a warning
        raise ValueError(f"{what} has complex values; complex data is not supported: pass "
                         "real signals (e.g. np.real(X) or np.abs(X), whichever you mean)")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3:
        raise ValueError(
            f"{what} must have shape (n_epochs, n_channels, n_times); got {X.ndim}-D "
            f"array of shape {X.shape}. Reshape your data: a single epoch is X[None]"
        )
    if finite and not np.isfinite(X).all():
        bad = np.argwhere(~np.isfinite(X))
        epochs, channels = np.unique(bad[:, 0]), np.unique(bad[:, 1])
        raise ValueError(
            f"{what} contains {len(bad)} NaN/inf values (epochs {epochs[:10].tolist()}, "
            f"channels {channels[:10].tolist()}); interpolate or drop those channels or epochs"
            " first"
        )
    return X


def _channel_means(X: np.ndarray) -> np.ndarray:
    """``X.mean(axis=-1)`` (same bits), the epochs split over the kernel threads.

    Silent on NaN/inf (the caller checks the means and names the bad samples): numpy's error
    state is per thread, so it is set inside each slice.
    """
    from ._acm_kernels import over_epochs

    means = np.empty(X.shape[:2])

    def mean(epochs: slice) -> None:
        with np.errstate(over="ignore", invalid="ignore"):
            np.mean(X[epochs], axis=-1, out=means[epochs])

    over_epochs(mean, len(X), X.size)
    return means


def n_window(n_times: int, order: int, lag: int) -> int:
    """Samples per delayed copy: ``T`` for order 1, else ``T - order·lag``."""
    return n_times if order == 1 else n_times - order * lag


def check_embedding(n_times: int, n_channels: int, order: int, lag: int, estimator: str) -> int:
    """Validate the estimator and (order, lag) against the epoch length; return the window
    length ``N``.

    Raises
    ------
    ValueError
        For an estimator not in :data:`ESTIMATORS`, if ``order``/``lag`` < 1, if
        ``order·lag ≥ n_times`` (nothing left after the crop), or if the plain estimator
        would be rank-deficient (``N - 1 < C·order``).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator '{estimator}'; valid: {', '.join(ESTIMATORS)}")
    if int(order) != order or order < 1 or int(lag) != lag or lag < 1:
        raise ValueError(f"order and lag must be integers ≥ 1; got order={order}, lag={lag}")
    n = n_window(n_times, order, lag)
    if n < 2:
        raise ValueError(
            f"order·lag = {order}·{lag} = {order * lag} leaves {max(n, 0)} of {n_times} samples "
            "per delayed copy; use a smaller order or lag (order·lag must be below n_times - 1) "
            "or longer epochs"
        )
    if estimator == "cov" and n - 1 < n_channels * order:
        raise ValueError(
            f"the plain covariance of {n_channels} channels × order {order} = "
            f"{n_channels * order} dimensions from {n} samples is rank-deficient; use "
            "estimator='oas' or 'lwf', a smaller order, or longer epochs"
        )
    return n


def feasible(n_times: int, n_channels: int, order: int, lag: int, estimator: str) -> bool:
    """Whether (order, lag) gives a valid embedding of epochs of this shape."""
    try:
        check_embedding(n_times, n_channels, order, lag, estimator)
    except ValueError:
        return False
    return True


def delay_embed(X: np.ndarray, order: int, lag: int) -> np.ndarray:
    """Delay embedding exactly as MOABB's ``AugmentedDataset`` (the reference, direct path).

    Parameters
    ----------
    X : ndarray, shape (n_epochs, n_channels, n_times)
    order, lag : int

    Returns
    -------
    ndarray, shape (n_epochs, n_channels·order, n_times - order·lag)
        ``X`` itself for order 1.
    """
    if order == 1:
        return X
    return np.concatenate(
        [X[:, :, k * lag: X.shape[-1] - (order - k) * lag] for k in range(order)], axis=1
    )


def _oas_shrink(emp: np.ndarray, n_samples: int) -> np.ndarray:
    """Oracle-approximating shrinkage (sklearn's OAS) of a stack of 1/N empirical
    covariances, in place."""
    p = emp.shape[-1]
    alpha = np.mean(emp**2, axis=(-2, -1))
    mu = np.trace(emp, axis1=-2, axis2=-1) / p
    num = alpha + mu**2
    den = (n_samples + 1) * (alpha - mu**2 / p)
    with np.errstate(divide="ignore", invalid="ignore"):
        shrinkage = np.where(den == 0, 1.0, np.minimum(num / np.where(den == 0, 1, den), 1.0))
    return _shrunk(emp, shrinkage, mu)


def _shrunk(emp: np.ndarray, shrinkage: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """``(1 − s)·emp + s·mu·I`` per matrix, written over ``emp``."""
    np.multiply((1.0 - shrinkage)[:, None, None], emp, out=emp)
    idx = np.arange(emp.shape[-1])
    emp[:, idx, idx] += (shrinkage * mu)[:, None]
    return emp


def _lwf_shrink(emp: np.ndarray, n_samples: int, sq_norm_sum: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf shrinkage (sklearn's formula) from 1/N covariances and Σ_t ‖x_t‖⁴, in
    place."""
    p = emp.shape[-1]
    trace = np.trace(emp, axis1=-2, axis2=-1)
    mu = trace / p
    delta_ = np.sum(emp**2, axis=(-2, -1))
    beta = (sq_norm_sum / n_samples - delta_) / (p * n_samples)
    delta = (delta_ - 2.0 * mu * trace + p * mu**2) / p
    beta = np.minimum(beta, delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        shrinkage = np.where(delta == 0, 0.0, beta / np.where(delta == 0, 1, delta))
    return _shrunk(emp, shrinkage, mu)


#: Epochs are centred for the lagged products in chunks of about this many bytes.
CENTRING_CHUNK_BYTES = 4 << 20


class LaggedProducts:
    """Lagged cross-products of centred epochs, shared by every (order, lag) of a grid.

    Parameters
    ----------
    X : ndarray, shape (n_epochs, n_channels, n_times)
        Epochs (validated: finite, 3-D). Held by reference, not copied: the epochs are
        centred on their channel means a chunk (about 4 MB) at a time while their products
        are computed.
    delays : iterable of int
        Lags ``d`` whose full products ``R(d)`` to precompute; others are computed on demand.
    max_orders : mapping of int to int, optional
        ``{lag: largest order}`` that will be asked for at that lag. The edge tables of a lag
        are built once for its largest order and shared by every smaller one (see
        :meth:`covariances`); without it they are built for the order asked.

    Attributes
    ----------
    shape : tuple of int
        ``(n_epochs, n_channels, n_times)`` of the epochs.
    released : bool
        Whether :meth:`release_signals` has dropped the epochs.
    """

    def __init__(self, X: np.ndarray, delays: Iterable[int] = (0,),
                 max_orders: dict[int, int] | None = None) -> None:
        X = check_signals(X, finite=False)
        self._X: np.ndarray | None = X
        self.shape = X.shape
        # (n, C): every epoch is centred on it; computed by add_delays below, in the same
        # pass as the products where it can
        self._mean: np.ndarray | None = None
        n, c, _ = X.shape
        self._total: np.ndarray | None = None  # Σ_t of the centred epochs: ≈ 0, for exactness
        # centred first/last samples and their running sums (from the start / from the end)
        self._edges: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._prod = np.empty((n, 0, c, c))  # [:, slot] = R(d)
        self._slot: dict[int, int] = {}
        self._max_orders = dict(max_orders or {})
        self._tables: tuple[int, int, np.ndarray, np.ndarray] | None = None  # lag, order, H, E
        # the tables' memory, kept from lag to lag: fresh arrays for every lag's tables cost
        # about 10 ms of page faults over a PhysioNet grid's 10 lags (one thread). So one
        # instance must not build tables from two threads at once (nothing here does).
        self._table_memory = np.empty(0)
        self._rank_checked = False
        self.add_delays(delays)
        if self._mean is None:
            self._set_means(_channel_means(X))

    def _set_means(self, mean: np.ndarray) -> None:
        self._mean = mean
        if not np.isfinite(mean).all():  # a NaN or inf sample makes its mean NaN or inf
            check_signals(self._X)  # names them (a mean that overflowed passes, as before)

    @property
    def released(self) -> bool:
        return self._X is None

    @classmethod
    def for_grid(cls, X: np.ndarray, orders: Sequence[int], lags: Sequence[int]) -> LaggedProducts:
        """Precompute every delay needed by ``orders × lags`` (embeddings that fit the epochs)."""
        n_times = np.shape(X)[-1]
        return cls.for_points(X, [(o, lg) for lg in lags for o in orders
                                  if n_window(n_times, o, lg) >= 2])

    @classmethod
    def for_points(cls, X: np.ndarray, points: Iterable[tuple[int, int]]) -> LaggedProducts:
        """Precompute the delays of the given ``(order, lag)`` points, and no others.

        A point that does not fit the epochs may need a delay longer than them: pass only the
        points that fit. Each lag's edge tables are built once, for its largest order.
        """
        max_orders: dict[int, int] = {}
        for order, lag in points:
            max_orders[int(lag)] = max(int(order), max_orders.get(int(lag), 0))
        return cls(X, [0, *_delays(max_orders)], max_orders)

    def add_delays(self, delays: Iterable[int]) -> None:
        """Compute ``R(d) = Σ_t x(t) x(t+d)ᵀ`` for new delays.

        Epochs are centred a chunk at a time (about 4 MB), and each delay is one batched
        ``np.matmul`` over the chunk's epochs on views of it (no shifted copies): 60 against
        86 ms for the 8 delays of one (8, 4) transform of 288 × 22 × 1000 epochs, 18 against
        25 ms for the 42 delays of a 10 × 10 grid of 45 × 22 × 481 (one product of the stacked
        shifted copies per epoch before; throw-away timings, medians of 7). The epochs are
        split over the kernel threads (:func:`~brainmill.features._acm_kernels.over_epochs`,
        BLAS on one thread meanwhile): OpenBLAS runs products this small on one thread, so
        two threads took 31 against 62 ms for those 8 delays. Each epoch's products are the
        same BLAS calls on the same values whatever the split, so the same bits. Where the
        register kernel of :mod:`~brainmill.features._small_products` applies (AVX-512, up
        to 96 channels) each chunk is made time-major and every product goes through it
        instead, with no BLAS hold: the 42 delays of PhysioNet's 10 × 10 grid took 5.7
        against 15.7 ms and the whole grid 73 against 84 ms (two threads, medians of 15
        alternating rounds; BENCHMARKS.md, nineteenth session).

        The delays of one transform, ``0, τ, …, (p−1)·τ``, take
        :mod:`~brainmill.features._acm_products` instead where it pays off
        (:func:`progression_step`): 27/64 of the multiplications for 8 delays, 9/16 for 4
        (:func:`~brainmill.features._acm_products.progression_plan`); 24.7 against 30.5 ms
        for that (8, 4) transform with 9/16 (2 threads, medians of 15 alternating rounds),
        and 27/64 takes 0.87× the time of 9/16. Those products differ from the direct ones
        by rounding (about 1e-15 of their largest entry).
        """
        from ._acm_kernels import over_epochs

        n, c, t = self.shape
        new = sorted({int(d) for d in delays} - set(self._slot))
        if not new:
            return
        self._need_signals(f"the lagged products of delays {new}")
        if any(d < 0 or d >= t for d in new):
            raise ValueError(f"delays must lie in 0..{t - 1}; got {new}")
        prod = np.empty((n, len(new), c, c))  # [:, i] = R(d) = Σ_t x(t) x(t+d)ᵀ
        total = np.empty((n, c)) if self._total is None else None
        X = self._X
        step = progression_step(new, t, c)
        if step:  # 0, τ, 2τ, …: the single transform's delays
            from ._acm_products import (
                leaf_sources,
                progression_plan,
                progression_products,
                recombination_picks,
            )
            from ._small_products import uses_blas

            levels, groups = progression_plan(len(new))
            picks, (sources, n_slots) = recombination_picks(levels), leaf_sources(levels)
            sums = np.empty((n, c)) if total is None else total
            fill = self._mean is None
            mean = np.empty((n, c)) if fill else self._mean
            over_epochs(lambda sl: progression_products(X[sl], mean[sl], fill, step, levels,
                                                        groups, picks, sources, n_slots,
                                                        prod[sl], sums[sl]),
                        n, X.size * len(new), hold_blas=uses_blas(c))
            if fill:
                self._set_means(mean)
            self._store(new, prod, total)
            return
        if self._mean is None:  # and checked before any product sees a NaN or inf
            self._set_means(_channel_means(X))
        mean = self._mean
        chunk = max(1, CENTRING_CHUNK_BYTES // (8 * c * t))
        from ._small_products import delay_products, uses_blas

        blas = uses_blas(c)
        delays = np.array(new, dtype=np.int64)

        def products(epochs: slice) -> None:
            for a in range(epochs.start, epochs.stop, chunk):
                b = min(epochs.stop, a + chunk)
                centred = X[a:b] - mean[a:b, :, None]
                if total is not None:
                    centred.sum(axis=-1, out=total[a:b])
                if not blas:  # the register kernel, on the chunk made time-major
                    delay_products(np.ascontiguousarray(centred.transpose(0, 2, 1)), delays,
                                   prod[a:b])
                    continue
                for i, d in enumerate(new):
                    np.matmul(centred[:, :, :t - d], centred[:, :, d:].transpose(0, 2, 1),
                              out=prod[a:b, i])

        over_epochs(products, n, X.size * len(new), hold_blas=blas)
        self._store(new, prod, total)

    def _store(self, new: list[int], prod: np.ndarray, total: np.ndarray | None) -> None:
        """Keep the products of the delays ``new`` (and the epochs' sums, if computed)."""
        if total is not None:
            self._total = total
        start = self._prod.shape[1]
        self._prod = prod if start == 0 else np.concatenate([self._prod, prod], axis=1)
        self._slot.update({d: start + i for i, d in enumerate(new)})

    def release_signals(self, span: int) -> None:
        """Drop the epochs, keeping only their first and last ``span`` centred samples.

        Once every lagged product a grid needs is computed, the plain and OAS covariances of
        any (order, lag) with ``order·lag ≤ span`` need only the edges of the epochs; the
        nested search calls this so that it holds less than the direct pipeline.
        Ledoit-Wolf and new delays need the whole epochs and raise afterwards.
        """
        self._epoch_totals()
        self._edge_cache(min(int(span), self.shape[-1]), exact=True)
        self._X = None

    def _need_signals(self, what: str) -> None:
        if self._X is None:
            raise RuntimeError(f"LaggedProducts: {what} needs the whole epochs, which "
                               "release_signals() freed; compute it before releasing")

    def _centred(self, what: str) -> np.ndarray:
        self._need_signals(what)
        return self._X - self._mean[..., None]

    def _epoch_totals(self) -> np.ndarray:
        """``Σ_t`` of every centred epoch ``(n, C)`` (≈ 0; kept for exactness)."""
        if self._total is None:  # add_delays fills it on its way
            self._total = self._centred("the window means").sum(axis=-1)
        return self._total

    def _edge_cache(self, span: int, exact: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Centred first and last samples (at least ``span``) and their running sums.

        Returns ``head`` (n, C, W), ``tail`` (n, C, W), ``cumsum(head)`` and the running sum
        of ``tail`` from the last sample backwards, both time-major (n, W, C). Built once for
        the largest span a grid needs (``max_orders``), or exactly ``span`` with ``exact``.
        """
        if self._edges is not None and self._edges[0].shape[-1] >= span and not exact:
            return self._edges
        self._need_signals(f"an embedding spanning {span} samples")
        from ._acm_kernels import centred_edges, over_epochs

        n, c, t = self.shape
        width = span if exact else min(t, max([span] + [o * lg for lg, o in
                                                          self._max_orders.items()]))
        if width > t:  # the compiled kernel reads X unchecked
            raise ValueError(f"edges of {width} samples asked of epochs of {t}")
        head, tail = np.empty((n, c, width)), np.empty((n, c, width))
        # the running sums time-major (n, W, C), the layout of the window means
        head_cs, tail_cs = np.empty((n, width, c)), np.empty((n, width, c))
        X, mean = self._X, self._mean
        over_epochs(lambda sl: centred_edges(X[sl], mean[sl], head[sl], tail[sl], head_cs[sl],
                                             tail_cs[sl]), n, 4 * head.size)
        self._edges = (head, tail, head_cs, tail_cs)
        return self._edges

    def _slots(self, order: int, lag: int) -> np.ndarray:
        missing = [m * lag for m in range(order) if m * lag not in self._slot]
        if missing:
            self.add_delays(missing)
        return np.array([self._slot[m * lag] for m in range(order)], dtype=np.int64)

    def _lagged(self, d: int) -> np.ndarray:
        """``R(d)`` of every epoch, shape (n_epochs, C, C) (a view)."""
        if d not in self._slot:
            self.add_delays([d])
        return self._prod[:, self._slot[d]]

    def window_means(self, order: int, lag: int) -> np.ndarray:
        """Mean of each embedded row over its window: shape (n_epochs, order, C)."""
        n_ep, c, t = self.shape
        n = n_window(t, order, lag)
        total = self._epoch_totals()
        if order == 1:
            return (total / n)[:, None, :]
        # from running sums of the edges, never the whole epoch again
        from ._acm_kernels import window_means

        _, _, head_cs, tail_cs = self._edge_cache(order * lag)
        mu = np.empty((n_ep, order, c))
        window_means(total, head_cs, tail_cs, order, lag, float(n), mu)
        return mu

    def _shares_tables(self, order: int, lag: int) -> bool:
        """Whether lag's tables are (or will be) built for a larger order than this one."""
        cached = self._tables is not None and self._tables[0] == lag \
            and self._tables[1] >= order
        return cached or self._max_orders.get(lag, order) > order

    def _edge_tables(self, order: int, lag: int):
        """Head/tail tables of ``lag`` for at least ``order`` (cached: one lag at a time)."""
        if self._tables is not None:
            t_lag, t_order, H, E = self._tables
            if t_lag == lag and t_order >= order:
                return t_order, H, E
        from ._acm_kernels import edge_tables, over_epochs, table_positions

        big = max(order, self._max_orders.get(lag, order))
        if big * lag > self.shape[-1] - 2:
            big = order
        hpos, epos, nh, ne = table_positions(big)
        n, c, _ = self.shape
        self._tables = None  # one lag at a time: the next lag's tables reuse the memory
        size = n * (nh + ne) * c * c
        if self._table_memory.size < size:
            self._table_memory = np.empty(0)  # free the smaller one first
            self._table_memory = np.empty(size)
        H = self._table_memory[:n * nh * c * c].reshape(n, nh, c, c)
        E = self._table_memory[n * nh * c * c:size].reshape(n, ne, c, c)
        head, tail = self._edge_cache(big * lag)[:2]
        over_epochs(lambda sl: edge_tables(head[sl], tail[sl], big, lag, hpos, epos, H[sl],
                                           E[sl]), n, H.size + E.size)
        self._tables = (lag, big, H, E)
        return big, H, E

    def scatter(self, order: int, lag: int, scale: float = 1.0, out: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, int]:
        """Centred scatter ``scale · Σ_t (x_t - m)(x_t - m)ᵀ`` of the embedding.

        Block ``(k, k+m)`` is ``R(mτ)`` minus the head terms ``H_m(k)`` (the first ``k·τ``
        terms of the lagged product) minus the tail terms ``E_m(order−k−m)`` (its last
        ``(order−k−m)·τ`` terms), minus ``N·m_k m_lᵀ``; the strictly lower triangle is copied
        from the upper one, so each matrix is exactly symmetric. The edge terms come from
        tables of running sums over the first and last ``order·τ`` samples
        (:mod:`brainmill.features._acm_kernels`): built per epoch in cache for a single
        (order, lag), or once per lag for a grid (``max_orders``) and shared by its orders.

        ``out``, optional: where to write the scatter (see :func:`covariances`).

        Returns
        -------
        scatter : ndarray, shape (n_epochs, C·order, C·order)
        means : ndarray, shape (n_epochs, C·order)
            Mean of each embedded row over its window.
        n : int
            Window length ``N``.
        """
        from ._acm_kernels import acm_fused, assemble, over_epochs, table_positions

        n_ep, c, t = self.shape
        n = n_window(t, order, lag)
        mu = self.window_means(order, lag)
        slots = self._slots(order, lag)
        out = _output(out, (n_ep, order * c, order * c))
        prod, nwin = self._prod, float(n)
        if order == 1:  # no crop: R(0) − T·μμᵀ, through the zero slots of empty tables
            zero, none = np.zeros((n_ep, 1, c, c)), np.zeros((1, 2), dtype=np.int64)
            over_epochs(lambda sl: assemble(prod[sl], slots, zero[sl], none[:, :1], none,
                                            zero[sl], mu[sl], 1, nwin, scale, out[sl]),
                        n_ep, out.size)
        elif self._shares_tables(order, lag):
            big, H, E = self._edge_tables(order, lag)
            hpos, epos, _, _ = table_positions(big)
            over_epochs(lambda sl: assemble(prod[sl], slots, H[sl], hpos, epos, E[sl], mu[sl],
                                            order, nwin, scale, out[sl]), n_ep, out.size)
        else:
            hpos, epos, nh, ne = table_positions(order)
            head, tail = self._edge_cache(order * lag)[:2]
            over_epochs(lambda sl: acm_fused(prod[sl], slots, head[sl], tail[sl], hpos, epos,
                                             nh, ne, mu[sl], order, lag, nwin, scale, out[sl]),
                        n_ep, out.size)
        return out, mu.reshape(n_ep, order * c), n

    def _sum_sq_norms_squared(self, order: int, lag: int, means: np.ndarray, n: int) -> np.ndarray:
        """``Σ_t ‖x_t - m‖⁴`` over the embedded samples (needed by Ledoit-Wolf)."""
        n_ep, c, _ = self.shape
        xc = self._centred("the Ledoit-Wolf estimator")
        norms = np.zeros((n_ep, n))
        for k in range(order):
            block = xc[:, :, k * lag:k * lag + n] - means[:, k * c:(k + 1) * c, None]
            norms += np.einsum("ect,ect->et", block, block)
        return np.sum(norms**2, axis=-1)

    def covariances(self, order: int, lag: int, estimator: str = "cov",
                    out: np.ndarray | None = None) -> np.ndarray:
        """Augmented covariance matrices, shape (n_epochs, C·order, C·order).

        ``cov``: unbiased empirical covariance (``np.cov``, the paper's estimator);
        ``oas``/``lwf``: scikit-learn's OAS / Ledoit-Wolf shrinkage of the 1/N covariance
        (pyriemann's ``Covariances("oas")``/``("lwf")``). ``out``, optional: a C-contiguous
        float64 array of that shape to write the matrices into, or a flat float64 buffer of
        at least that many values, whose start is used; the matrices are returned (a view of
        the buffer).
        """
        _, c, t = self.shape
        n = check_embedding(t, c, order, lag, estimator)
        if estimator == "cov":
            self.check_full_rank()
            return self.scatter(order, lag, scale=1.0 / (n - 1), out=out)[0]
        emp, means, _ = self.scatter(order, lag, scale=1.0 / n, out=out)
        if estimator == "oas":  # shrunk in place: emp is ``out`` or our own new array
            return _oas_shrink(emp, n)
        return _lwf_shrink(emp, n, self._sum_sq_norms_squared(order, lag, means, n))

    def check_full_rank(self, rtol: float = RANK_RTOL) -> None:
        """Raise if an epoch's channel covariance is singular (then every ACM of it is).

        Average referencing, for instance, removes one dimension: the plain estimator then
        gives singular matrices that have no tangent space or Riemannian distance.
        """
        if self._rank_checked:
            return
        from ._acm_kernels import over_epochs, surely_full_rank

        lagged = self._lagged(0)
        n_ep = lagged.shape[0]
        # a Cholesky bound clears almost every epoch (0.8 against 4.6 ms for 288 epochs of
        # 22 channels, one thread); eigenvalues decide the rest, so the verdict is theirs
        sure = np.empty(n_ep, dtype=bool)
        over_epochs(lambda sl: surely_full_rank(lagged[sl], rtol, sure[sl]), n_ep,
                    n_ep * lagged.shape[1] ** 3 // 3)
        unsure = np.flatnonzero(~sure)
        raise_if_singular(lagged[unsure], unsure, n_ep, rtol)
        self._rank_checked = True

    def iter_grid(
        self, orders: Sequence[int], lags: Sequence[int], estimator: str = "cov",
        reuse: bool = False,
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(order, lag, covariances)`` for each grid point, one at a time.

        Lag varies slowest (``GridSearchCV``'s candidate order for ``augment__lag``,
        ``augment__order``), so that the edge tables of one lag serve all its orders.

        With ``reuse=True`` every point is written into one buffer, sized for the largest
        point that fits, and yielded as a view of it: **the next point overwrites it** (copy
        what you keep). A consumer that uses each point and drops it, as a grid search does, then
        avoids a fresh allocation per point, whose new pages cost about 3–9 % (15 % in one
        run) of a 10 × 10 PhysioNet grid (670 MB of matrices in all).
        """
        buffer = None
        if reuse:  # a point that does not fit raises in its turn, before using the buffer
            n, c, t = self.shape
            fitting = [o for lg in lags for o in orders if feasible(t, c, o, lg, estimator)]
            buffer = np.empty(n * (c * max(fitting, default=0)) ** 2)
        for lag in lags:
            for order in orders:
                yield order, lag, self.covariances(order, lag, estimator, out=buffer)


def raise_if_singular(channel_covs: np.ndarray, epochs: np.ndarray, n_epochs: int,
                      rtol: float) -> None:
    """Raise if any of these epochs' channel covariances is singular, by its eigenvalues.

    Parameters
    ----------
    channel_covs : ndarray, shape (k, C, C)
        ``R(0)`` (or any positive multiple) of the epochs a Cholesky bound did not clear.
    epochs : ndarray of int, shape (k,)
        Their indices, for the message.
    n_epochs : int
        Epochs in all, for the message.
    rtol : float
        Singular when the smallest eigenvalue is ``≤ rtol ×`` the largest.
    """
    if not len(epochs):  # the usual case: the bound cleared every epoch (saves ~10 µs)
        return
    eig = np.linalg.eigvalsh(channel_covs)
    bad = epochs[eig[:, 0] <= rtol * eig[:, -1]]
    if len(bad):
        raise ValueError(
            f"{len(bad)} of {n_epochs} epochs (e.g. {bad[:5].tolist()}) have a singular "
            f"{channel_covs.shape[-1]}-channel covariance (smallest/largest eigenvalue ≤ "
            f"{rtol:g}; average referencing or a flat or duplicated channel does this), so the "
            "plain estimator 'cov' gives singular augmented covariances; use estimator='oas' "
            "or 'lwf', or drop one channel after average referencing"
        )


def _output(out: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """``out`` checked for the compiled kernels (shape, float64, C order), the start of a
    flat buffer ``out`` viewed as ``shape``, or a new array."""
    if out is None:
        return np.empty(shape)
    size = int(np.prod(shape))
    if out.ndim == 1 and out.size >= size:
        out = out[:size].reshape(shape)
    if out.shape != shape or out.dtype != np.float64 or not out.flags.c_contiguous \
            or not out.flags.writeable:
        raise ValueError(f"out must be a writeable C-contiguous float64 array of shape {shape}; "
                         f"got {out.dtype} {out.shape} (C-contiguous: {out.flags.c_contiguous}, "
                         f"writeable: {out.flags.writeable})")
    return out


#: Fewest paired blocks (of ``τ`` samples), and fewest channels, for which the progression's
#: products pay off: their sums of samples cost ``O(C)`` per sample against the products'
#: ``O(C²)``. Below 16 channels they were slower (3–12 channels: 0.3–1.0× the speed of the
#: direct products), from 16 channels 0.8–2.0× (median 1.2×; throw-away timings, 2 threads,
#: orders 4–10, lags 1–10; BENCHMARKS.md, eleventh session). With the phases and three
#: levels (twelfth session) 16–32 channels ran at 0.77–2.45× (below 1× on 100-sample epochs,
#: 0.77–1.08×, and once on 250 samples, 0.97×), 10–12 channels at 0.57–1.46× and 2–8 channels
#: at 0.31–1.42×: the thresholds stay. These were measured with BLAS products.
PROGRESSION_MIN_BLOCKS = 8
PROGRESSION_MIN_CHANNELS = 16
#: Fewest channels where the products go through the register kernel
#: (:func:`~brainmill.features._small_products.uses_blas` false). There, one transform by the
#: progression's single pass took 0.32–0.70× the time of the direct products' passes for 2–12
#: channels (60 epochs of 100–2000 samples, orders 4–10, lags 1–10, 2 threads, medians of 15
#: alternating rounds; BENCHMARKS.md, nineteenth session).
PROGRESSION_MIN_CHANNELS_REGISTER = 2
#: Longest epoch (bytes) the progression takes: its scratch is about 8 epochs per thread,
#: where the direct products centre at most a 4-MiB chunk (or one epoch) at a time.
PROGRESSION_MAX_EPOCH_BYTES = 4 << 20


def progression_step(delays: Sequence[int], n_times: int, n_channels: int) -> int:
    """``τ`` if ``delays`` are ``0, τ, …, (p−1)·τ`` with ``p ≥ 4``, on epochs where
    :mod:`~brainmill.features._acm_products` pays off (at least 16 channels, or 2 where the
    products go through the register kernel, and 8 paired blocks) and whose scratch stays
    small (epochs of at most 4 MiB); else 0 (the direct products)."""
    from ._acm_products import GROUP, paired_blocks
    from ._small_products import uses_blas

    min_channels = PROGRESSION_MIN_CHANNELS if uses_blas(n_channels) \
        else PROGRESSION_MIN_CHANNELS_REGISTER
    if len(delays) < GROUP or delays[0] != 0 or n_channels < min_channels \
            or 8 * n_channels * n_times > PROGRESSION_MAX_EPOCH_BYTES:
        return 0
    step = delays[1]
    if list(delays) != list(range(0, step * len(delays), step)):
        return 0
    enough = paired_blocks(n_times, step, len(delays) // GROUP) >= PROGRESSION_MIN_BLOCKS
    return step if enough else 0


def grid_delays(orders: Sequence[int], lags: Sequence[int]) -> list[int]:
    """Every lagged product ``d = m·τ`` (``0 ≤ m < order``) a grid needs."""
    return _delays({int(lag): max(orders, default=0) for lag in lags})


def _delays(max_orders: dict[int, int]) -> list[int]:
    """The delays ``m·τ``, ``0 ≤ m < max_orders[τ]``, sorted."""
    return sorted({m * lag for lag, order in max_orders.items() for m in range(order)})


def augmented_covariances(
    X: np.ndarray, order: int, lag: int, estimator: str = "cov"
) -> np.ndarray:
    """Augmented covariance matrices by the fast exact path.

    Parameters
    ----------
    X : ndarray, shape (n_epochs, n_channels, n_times)
    order, lag : int
    estimator : {"cov", "oas", "lwf"}

    Returns
    -------
    ndarray, shape (n_epochs, n_channels·order, n_channels·order)

    Raises
    ------
    ValueError
        For an embedding that does not fit the epochs (checked first, from the shape alone)
        or NaN/inf values (found with the channel means, in the same pass as the products
        where it can).
    """
    X = check_signals(X, finite=False)  # LaggedProducts / the single pass check the values
    plan = _single_pass_plan(X.shape[1], X.shape[-1], order, lag, estimator)
    if plan is not None:
        return _single_pass_covariances(X, order, lag, estimator, plan)
    products = LaggedProducts(X, [m * lag for m in range(order)])
    return products.covariances(order, lag, estimator)


class _SinglePassPlan(NamedTuple):
    """:func:`~brainmill.features._acm_single.single_pass`'s arguments after ``order, lag``
    that depend on the shape, order, lag and estimator only, in its order."""

    levels: int
    groups: int
    picks: np.ndarray
    sources: np.ndarray
    n_slots: int
    nwin: float
    scale: float
    rtol: float


@lru_cache(maxsize=64)
def _single_pass_plan(n_channels: int, n_times: int, order: int, lag: int,
                      estimator: str) -> _SinglePassPlan | None:
    """What :func:`_single_pass_covariances` passes its kernel for epochs of this shape, or
    ``None`` where the transform takes :class:`LaggedProducts` (``lwf``, or delays that are
    not a progression ``progression_step`` takes).

    Raises ``check_embedding``'s errors (not cached), an unknown estimator among them.
    Cached, as the kernel is fast enough that working this out again took a noticeable part
    of a call: the plan's pieces, each cached but looked up apart, and the checks took 28 µs
    of a 2.6-ms PhysioNet (8, 4) transform with the caches cold from the kernel before
    (BENCHMARKS.md, sixteenth session).
    """
    from ._acm_products import leaf_sources, progression_plan, recombination_picks

    nwin = check_embedding(n_times, n_channels, order, lag, estimator)
    if estimator == "lwf" or not progression_step([m * lag for m in range(order)], n_times,
                                                  n_channels):
        return None
    levels, groups = progression_plan(order)
    sources, n_slots = leaf_sources(levels)
    plain = estimator == "cov"
    scale, rtol = (1.0 / (nwin - 1), RANK_RTOL) if plain else (1.0 / nwin, -1.0)
    return _SinglePassPlan(levels, groups, recombination_picks(levels), sources, n_slots,
                           float(nwin), scale, rtol)


def _single_pass_covariances(X: np.ndarray, order: int, lag: int, estimator: str,
                             plan: _SinglePassPlan) -> np.ndarray:
    """``cov`` or ``oas`` ACMs of a progression (``progression_step``) in one pass over the
    epochs (:mod:`~brainmill.features._acm_single`) with :func:`_single_pass_plan`'s
    ``plan``; then the same checks as :class:`LaggedProducts`: NaN/inf named, singular
    channel covariances (``cov``)."""
    from ._acm_kernels import over_claimed_epochs
    from ._acm_single import single_pass
    from ._small_products import uses_blas

    n_ep, c, _ = X.shape
    mean, total = np.empty((2, n_ep, c))
    sure, r0 = np.ones(n_ep, dtype=bool), np.empty((n_ep, c, c))
    out = np.empty((n_ep, order * c, order * c))
    over_claimed_epochs(lambda counter: single_pass(X, order, lag, *plan, mean, total, sure, r0,
                                                    out, counter),
                        n_ep, X.size * order, hold_blas=uses_blas(c))
    if not np.isfinite(mean).all():  # a NaN or inf sample makes its mean NaN or inf
        check_signals(X)  # names them (a mean that overflowed passes, as LaggedProducts')
    if estimator == "cov":
        if not sure.all():  # the bound cleared every epoch in the usual case
            unsure = np.flatnonzero(~sure)
            raise_if_singular(r0[unsure], unsure, n_ep, plan.rtol)
        return out
    return _oas_shrink(out, plan.nwin)
