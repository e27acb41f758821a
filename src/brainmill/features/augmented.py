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
lag ``d`` (one batched matrix product for all lags), the edge terms in chunks of ``τ`` samples,
and the window means from a cumulative sum, so every (order, lag) of a grid costs ``O(p²·τ·C²)``
per epoch on top of the shared ``R``. Each channel is first centred on its epoch mean (a
covariance is invariant to that) so the final mean correction does not cancel catastrophically.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

#: estimators computed exactly by the fast path (pyriemann / scikit-learn semantics).
ESTIMATORS = ("cov", "oas", "lwf")
#: Output bytes assembled per chunk of epochs (temporaries are about half of it): cache-sized.
CHUNK_BYTES = 2_000_000


def check_signals(X: np.ndarray, *, what: str = "X") -> np.ndarray:
    """Return ``X`` as a float64 array of shape (n_epochs, n_channels, n_times), finite.

    Raises
    ------
    ValueError
        For a wrong number of dimensions or NaN/inf values (with their epoch and channel).
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3:
        raise ValueError(
            f"{what} must have shape (n_epochs, n_channels, n_times); got {X.ndim}-D "
            f"array of shape {X.shape}. Reshape your data: a single epoch is X[None]"
        )
    if not np.isfinite(X).all():
        bad = np.argwhere(~np.isfinite(X))
        epochs, channels = np.unique(bad[:, 0]), np.unique(bad[:, 1])
        raise ValueError(
            f"{what} contains {len(bad)} NaN/inf values (epochs {epochs[:10].tolist()}, "
            f"channels {channels[:10].tolist()}); interpolate or drop those channels or epochs"
            " first"
        )
    return X


def n_window(n_times: int, order: int, lag: int) -> int:
    """Samples per delayed copy: ``T`` for order 1, else ``T - order·lag``."""
    return n_times if order == 1 else n_times - order * lag


def check_embedding(n_times: int, n_channels: int, order: int, lag: int, estimator: str) -> int:
    """Validate (order, lag) against the epoch length; return the window length ``N``.

    Raises
    ------
    ValueError
        If ``order``/``lag`` < 1, if ``order·lag ≥ n_times`` (nothing left after the crop), or
        if the plain estimator would be rank-deficient (``N - 1 < C·order``).
    """
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
    """Oracle-approximating shrinkage of a stack of 1/N empirical covariances (sklearn's OAS)."""
    p = emp.shape[-1]
    alpha = np.mean(emp**2, axis=(-2, -1))
    mu = np.trace(emp, axis1=-2, axis2=-1) / p
    num = alpha + mu**2
    den = (n_samples + 1) * (alpha - mu**2 / p)
    with np.errstate(divide="ignore", invalid="ignore"):
        shrinkage = np.where(den == 0, 1.0, np.minimum(num / np.where(den == 0, 1, den), 1.0))
    return _shrunk(emp, shrinkage, mu)


def _shrunk(emp: np.ndarray, shrinkage: np.ndarray, mu: np.ndarray) -> np.ndarray:
    out = (1.0 - shrinkage)[:, None, None] * emp
    idx = np.arange(emp.shape[-1])
    out[:, idx, idx] += (shrinkage * mu)[:, None]
    return out


def _lwf_shrink(emp: np.ndarray, n_samples: int, sq_norm_sum: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf shrinkage (sklearn's formula) from 1/N covariances and Σ_t ‖x_t‖⁴."""
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


class LaggedProducts:
    """Lagged cross-products of centred epochs, shared by every (order, lag) of a grid.

    Parameters
    ----------
    X : ndarray, shape (n_epochs, n_channels, n_times)
        Epochs (validated: finite, 3-D).
    delays : iterable of int
        Lags ``d`` whose full products ``R(d)`` to precompute; others are computed on demand.

    Attributes
    ----------
    Xc : ndarray, shape (n_epochs, n_channels, n_times), or None
        Epochs centred on each channel's epoch mean; None after :meth:`release_signals`.
    shape : tuple of int
        ``(n_epochs, n_channels, n_times)`` of the epochs.
    """

    def __init__(self, X: np.ndarray, delays: Iterable[int] = (0,)) -> None:
        X = check_signals(X)
        self.Xc = X - X.mean(axis=-1, keepdims=True)
        self.shape = self.Xc.shape
        self._total = self.Xc.sum(axis=-1)  # ≈ 0 after centring, kept for exactness
        self._edges: tuple[np.ndarray, np.ndarray] | None = None  # after release_signals
        self._R: dict[int, np.ndarray] = {}
        self._rank_checked = False
        self.add_delays(delays)

    @classmethod
    def for_grid(cls, X: np.ndarray, orders: Sequence[int], lags: Sequence[int]) -> LaggedProducts:
        """Precompute every delay needed by ``orders × lags``."""
        return cls(X, grid_delays(orders, lags))

    def add_delays(self, delays: Iterable[int]) -> None:
        """Compute ``R(d) = Σ_t x(t) x(t+d)ᵀ`` for new delays.

        One matrix product per epoch, zero-padded shifted copies of the epoch ``(C·k, T)``
        against the epoch ``(T, C)``, so BLAS sees one large product rather than ``k`` small
        ones.
        """
        n, c, t = self.shape
        new = sorted({int(d) for d in delays} - set(self._R))
        if not new:
            return
        self._need_signals(f"the lagged products of delays {new}")
        if any(d < 0 or d >= t for d in new):
            raise ValueError(f"delays must lie in 0..{t - 1}; got {new}")
        k = len(new)
        padded = np.zeros((c, t + max(new)))
        shifted = np.empty((k * c, t))
        # (k·C, T) @ (T, C) rather than (C, T) @ (T, k·C): the same products, but OpenBLAS
        # runs the tall-left shape about 1.5× faster when C is small (22: 59 vs 36-39 GFLOP/s)
        prod = np.empty((n, k * c, c))
        for e in range(n):
            padded[:, :t] = self.Xc[e]
            for i, d in enumerate(new):
                shifted[i * c:(i + 1) * c] = padded[:, d:d + t]
            np.dot(shifted, self.Xc[e].T, out=prod[e])
        for i, d in enumerate(new):
            # block i is Σ_t x(t+d) x(t)ᵀ = R(d)ᵀ: a transposed view, no second copy
            self._R[d] = prod[:, i * c:(i + 1) * c, :].transpose(0, 2, 1)

    def release_signals(self, span: int) -> None:
        """Free the centred epochs, keeping only their first and last ``span`` samples.

        Once every lagged product a grid needs is computed, the plain and OAS covariances of
        any (order, lag) with ``order·lag ≤ span`` need only the edges of the epochs; the
        nested search calls this so that it holds less than the direct pipeline.
        Ledoit-Wolf and new delays need the whole epochs and raise afterwards.
        """
        t = self.shape[-1]
        span = min(int(span), t)
        self._edges = (self.Xc[:, :, :span].copy(), self.Xc[:, :, t - span:].copy())
        self.Xc = None

    def _need_signals(self, what: str) -> None:
        if self.Xc is None:
            raise RuntimeError(f"LaggedProducts: {what} needs the whole epochs, which "
                               "release_signals() freed; compute it before releasing")

    def _edge_samples(self, k: int, from_end: bool) -> np.ndarray:
        """The first (or last) ``k`` samples of the centred epochs, also after
        :meth:`release_signals`."""
        if self.Xc is not None:
            return self.Xc[:, :, self.shape[-1] - k:] if from_end else self.Xc[:, :, :k]
        edge = self._edges[1 if from_end else 0]
        if k > edge.shape[-1]:
            self._need_signals(f"an embedding spanning {k} samples")
        return edge[:, :, edge.shape[-1] - k:] if from_end else edge[:, :, :k]

    def _lagged(self, d: int) -> np.ndarray:
        if d not in self._R:
            self.add_delays([d])
        return self._R[d]

    def _edge_gram(self, sl: slice, from_end: bool, order: int, lag: int) -> np.ndarray:
        """Gram matrices of the ``order`` consecutive ``lag``-sample blocks of an epoch edge.

        The edge is the first ``order·lag`` samples, or the last ones when ``from_end``.

        Returns
        -------
        ndarray, shape (n_epochs_in_slice, order, order, C, C)
            ``G[:, j, i] = B_j B_iᵀ`` with ``B_j = x[:, s + j·lag : s + (j+1)·lag]``, ``s`` the
            edge's first sample.
        """
        seg = self._edge_samples(order * lag, from_end)[sl]
        n_ep, c = seg.shape[:2]
        blocks = np.ascontiguousarray(
            seg.reshape(n_ep, c, order, lag).transpose(0, 2, 1, 3)).reshape(n_ep, order * c, lag)
        gram = np.matmul(blocks, blocks.transpose(0, 2, 1))
        return gram.reshape(n_ep, order, c, order, c).transpose(0, 1, 3, 2, 4)

    def window_means(self, order: int, lag: int) -> np.ndarray:
        """Mean of each embedded row over its window: shape (n_epochs, order, C)."""
        n_ep, c, t = self.shape
        n = n_window(t, order, lag)
        if order == 1:
            return (self._total / n)[:, None, :]
        # window k = total − (first k·τ samples) − (last (order−k)·τ samples): only the
        # edges are summed, never the whole epoch again
        edge = order * lag
        head = np.zeros((n_ep, c, order))
        head[:, :, 1:] = np.cumsum(self._edge_samples(edge - lag, False),
                                   axis=-1)[:, :, lag - 1::lag]
        tail_cs = np.cumsum(self._edge_samples(edge, True)[:, :, ::-1], axis=-1)  # from the end
        tail = tail_cs[:, :, (order - np.arange(order)) * lag - 1]
        mu = (self._total[:, :, None] - head - tail) / n
        return np.ascontiguousarray(mu.transpose(0, 2, 1))

    def scatter(self, order: int, lag: int, scale: float = 1.0
                ) -> tuple[np.ndarray, np.ndarray, int]:
        """Centred scatter ``scale · Σ_t (x_t - m)(x_t - m)ᵀ`` of the embedding.

        Block ``(k, k+m)`` is ``R(mτ)`` minus the head terms (block-diagonal prefix sum of the
        Gram matrix of the first ``p·τ`` samples, cut in ``τ``-blocks) minus the tail terms
        (block-diagonal suffix sum of the Gram matrix of the last ``p·τ`` samples), minus
        ``N·m_k m_lᵀ``. Each block diagonal is written through one strided view of the output,
        and epochs go ``CHUNK_BYTES`` of output at a time, so temporaries stay cache-sized and
        ``scale`` (e.g. ``1/(N−1)``) is applied while the chunk is still in cache.

        Returns
        -------
        scatter : ndarray, shape (n_epochs, C·order, C·order)
        means : ndarray, shape (n_epochs, C·order)
            Mean of each embedded row over its window.
        n : int
            Window length ``N``.
        """
        n_ep, c, t = self.shape
        n = n_window(t, order, lag)
        mu = self.window_means(order, lag)
        out = np.empty((n_ep, order * c, order * c))
        chunk = max(1, CHUNK_BYTES // out[0].nbytes)
        for first in range(0, n_ep, chunk):
            sl = slice(first, min(first + chunk, n_ep))
            self._scatter_chunk(sl, order, lag, n, mu[sl], out[sl], scale)
        return out, mu.reshape(n_ep, order * c), n

    def _scatter_chunk(self, sl: slice, order: int, lag: int, n: int, mu: np.ndarray,
                       out: np.ndarray, scale: float) -> None:
        c = self.shape[1]
        if order == 1:
            np.subtract(self._lagged(0)[sl], n * mu[:, 0, :, None] * mu[:, 0, None, :], out=out)
            if scale != 1.0:
                out *= scale
            return
        head = self._edge_gram(sl, False, order, lag)
        tail = self._edge_gram(sl, True, order, lag)
        s_e, s_row, s_col = out.strides
        step = c * (s_row + s_col)  # from block (k, k+m) to block (k+1, k+m+1)
        n_mu = n * mu
        for m in range(order):
            k = np.arange(order - m)
            # edge[k] = Σ_{j<k} head[j, j+m] + Σ_{j≥k} tail[j, j+m]: a strict prefix and an
            # inclusive suffix sum along the m-th block diagonal, plus the centring term
            # (running sums by whole-slab additions: np.cumsum along a middle axis is slower)
            edge = tail[:, k, k + m]  # a copy (fancy indexing), summed in place
            for j in range(len(k) - 2, -1, -1):
                edge[:, j] += edge[:, j + 1]
            h = head[:, k[:-1], k[:-1] + m]
            for j in range(1, len(k) - 1):
                h[:, j] += h[:, j - 1]
            edge[:, 1:] += h
            edge += n_mu[:, k, :, None] * mu[:, k + m, None, :]
            lagged = self._lagged(m * lag)[sl][:, None]
            if scale != 1.0:
                edge *= scale
                lagged = lagged * scale
            # the blocks (k, k+m), k = 0..order-m-1, as one (epochs, order-m, C, C) view
            upper = np.lib.stride_tricks.as_strided(
                out[:, :, m * c:], (len(out), len(k), c, c), (s_e, step, s_row, s_col))
            np.subtract(lagged, edge, out=upper)
            if m:
                lower = np.lib.stride_tricks.as_strided(
                    out[:, m * c:], (len(out), len(k), c, c), (s_e, step, s_row, s_col))
                lower[...] = upper.transpose(0, 1, 3, 2)

    def _sum_sq_norms_squared(self, order: int, lag: int, means: np.ndarray, n: int) -> np.ndarray:
        """``Σ_t ‖x_t - m‖⁴`` over the embedded samples (needed by Ledoit-Wolf)."""
        self._need_signals("the Ledoit-Wolf estimator")
        n_ep, c, _ = self.shape
        norms = np.zeros((n_ep, n))
        for k in range(order):
            block = self.Xc[:, :, k * lag:k * lag + n] - means[:, k * c:(k + 1) * c, None]
            norms += np.einsum("ect,ect->et", block, block)
        return np.sum(norms**2, axis=-1)

    def covariances(self, order: int, lag: int, estimator: str = "cov") -> np.ndarray:
        """Augmented covariance matrices, shape (n_epochs, C·order, C·order).

        ``cov``: unbiased empirical covariance (``np.cov``, the paper's estimator);
        ``oas``/``lwf``: scikit-learn's OAS / Ledoit-Wolf shrinkage of the 1/N covariance
        (pyriemann's ``Covariances("oas")``/``("lwf")``).
        """
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator '{estimator}'; valid: {', '.join(ESTIMATORS)}")
        _, c, t = self.shape
        n = check_embedding(t, c, order, lag, estimator)
        if estimator == "cov":
            self.check_full_rank()
            return self.scatter(order, lag, scale=1.0 / (n - 1))[0]
        emp, means, _ = self.scatter(order, lag, scale=1.0 / n)
        if estimator == "oas":
            return _oas_shrink(emp, n)
        return _lwf_shrink(emp, n, self._sum_sq_norms_squared(order, lag, means, n))

    def check_full_rank(self, rtol: float = 1e-10) -> None:
        """Raise if an epoch's channel covariance is singular (then every ACM of it is).

        Average referencing, for instance, removes one dimension: the plain estimator then
        gives singular matrices that have no tangent space or Riemannian distance.
        """
        if self._rank_checked:
            return
        eig = np.linalg.eigvalsh(self._lagged(0))
        bad = np.flatnonzero(eig[:, 0] <= rtol * eig[:, -1])
        if len(bad):
            raise ValueError(
                f"{len(bad)} of {len(eig)} epochs (e.g. {bad[:5].tolist()}) have a singular "
                f"{self.shape[1]}-channel covariance (smallest/largest eigenvalue ≤ {rtol:g}; "
                "average referencing or a flat or duplicated channel does this), so the plain "
                "estimator 'cov' gives singular augmented covariances; use estimator='oas' or "
                "'lwf', or drop one channel after average referencing"
            )
        self._rank_checked = True

    def iter_grid(
        self, orders: Sequence[int], lags: Sequence[int], estimator: str = "cov"
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(order, lag, covariances)`` for each grid point, one at a time."""
        for order in orders:
            for lag in lags:
                yield order, lag, self.covariances(order, lag, estimator)


def grid_delays(orders: Sequence[int], lags: Sequence[int]) -> list[int]:
    """Every lagged product ``d = m·τ`` (``0 ≤ m < order``) a grid needs."""
    return sorted({m * lag for order in orders for lag in lags for m in range(order)})


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
    """
    products = LaggedProducts(X)  # validates X once; R(0) only
    check_embedding(products.Xc.shape[-1], products.Xc.shape[1], order, lag, estimator)
    products.add_delays(m * lag for m in range(order))
    return products.covariances(order, lag, estimator)
