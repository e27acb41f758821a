"""Dynamical-systems choice of the delay embedding (order, lag) of augmented covariances.

This is the "Takens / aFNN" route of Carrara & Papadopoulo, "Classification of BCI-EEG based on
augmented covariance matrix" (arXiv:2302.04508), who used Julia's ``DelayEmbeddings.jl``; here it
is re-implemented from the published formulas with numpy/scipy:

* the lag ``τ`` is the first minimum of the average mutual information (AMI) between ``x(t)``
  and ``x(t+k)``, ``k = 1..30``, averaged over channels × epochs (Fraser & Swinney 1986);
* the embedding dimension ("order", counting the undelayed copy) is read off Cao's averaged
  false-nearest-neighbour statistic ``E1(d)`` (Cao 1997), computed with that lag.

Both are computed from the epochs they are given only, so calling :func:`select_order_lag` on
the training epochs of a cross-validation fold keeps the choice free of test data.

References
----------
.. [1] S. Carrara, T. Papadopoulo, "Classification of BCI-EEG based on augmented covariance
   matrix", arXiv:2302.04508 (2023).
.. [2] L. Cao, "Practical method for determining the minimum embedding dimension of a scalar
   time series", Physica D 110 (1997) 43-50.
.. [3] A. M. Fraser, H. L. Swinney, "Independent coordinates for strange attractors from mutual
   information", Phys. Rev. A 33 (1986) 1134-1140.
.. [4] F. Takens, "Detecting strange attractors in turbulence", Lecture Notes in Mathematics 898
   (1981) 366-381.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .augmented import check_signals

__all__ = [
    "average_mutual_information",
    "cao_dimension",
    "cao_e1",
    "first_minimum",
    "select_order_lag",
]

#: AMI is always evaluated up to at least this lag in :func:`select_order_lag` (as the paper).
AMI_MIN_LAGS = 30

#: max-norm distances up to this fraction of a series' range count as duplicate points in
#: Cao's statistic (exact zeros, and rounding-level ones that would blow up the ratio).
_DUPLICATE_RTOL = 1e-9


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}; got {value!r}")
    return int(value)


def _check_signals(X, *, min_times: int, why: str) -> np.ndarray:
    """``X`` as float64 (n_epochs, n_channels, n_times), finite, with ``n_times > min_times``."""
    X = check_signals(X)  # 3-D, finite (the same checks and messages as the ACM features)
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X has no epochs or no channels (shape {X.shape})")
    if X.shape[2] <= min_times:
        raise ValueError(
            f"epochs are too short: n_times = {X.shape[2]} but {why} needs n_times > {min_times}"
        )
    return X


def _series(X: np.ndarray, max_series: int, random_state) -> np.ndarray:
    """The (epoch, channel) series of ``X`` as rows, at most ``max_series`` of them.

    Returns an array of shape (n_series, n_times). When there are more than ``max_series``
    series a subset is drawn without replacement with ``np.random.default_rng(random_state)``
    (kept in (epoch, channel) order).
    """
    S = X.reshape(-1, X.shape[-1])
    if S.shape[0] > max_series:
        rng = np.random.default_rng(random_state)
        S = S[np.sort(rng.choice(S.shape[0], size=max_series, replace=False))]
    return S


def average_mutual_information(
    X, max_lag: int = 30, n_bins: int = 16, max_series: int = 256, random_state=0
) -> np.ndarray:
    """Average (self) mutual information of each series with its delayed copy.

    For a series ``x`` and a lag ``k`` the histogram (plug-in) estimate is ::

        I(k) = Σ_ab p_ab(k) · ln( p_ab(k) / (p_a(k) · p_b(k)) )

    where ``p_ab(k)`` is the fraction of the ``n_times - k`` pairs ``(x(t), x(t+k))`` falling
    in bin ``a`` for ``x(t)`` and bin ``b`` for ``x(t+k)``, and ``p_a``, ``p_b`` are the two
    marginals of those same pairs (so ``I(k) ≥ 0``). Bins are ``n_bins`` equal-width bins
    spanning ``[min x, max x]`` of each series separately (the maximum goes in the last bin);
    a constant series has ``I = 0``. The result is in nats, averaged over the (epoch, channel)
    series. One ``np.bincount`` per lag counts all series at once (offset bin indices).

    With the plug-in estimator, independent samples give a small positive bias of about
    ``(n_bins - 1)² / (2 (n_times - k))`` nats rather than exactly 0.

    Parameters
    ----------
    X : array_like, shape (n_epochs, n_channels, n_times)
        Finite signals; ``n_times > 2 · max_lag``.
    max_lag : int
        Largest lag (in samples); lags ``1..max_lag`` are evaluated.
    n_bins : int
        Equal-width bins per series (≥ 2).
    max_series : int
        At most this many (epoch, channel) series are used, drawn at random without
        replacement when there are more (for speed).
    random_state : int, numpy Generator or None
        Seed of ``np.random.default_rng`` for that subsampling.

    Returns
    -------
    ami : ndarray, shape (max_lag,)
        ``ami[k - 1] = I(k)`` averaged over the series, for ``k = 1..max_lag``.

    Raises
    ------
    ValueError
        For non-3-D input, NaN/inf values, ``n_times ≤ 2 · max_lag`` or invalid parameters.

    References
    ----------
    A. M. Fraser, H. L. Swinney, Phys. Rev. A 33 (1986) 1134-1140.
    """
    max_lag = _check_int(max_lag, "max_lag", 1)
    n_bins = _check_int(n_bins, "n_bins", 2)
    max_series = _check_int(max_series, "max_series", 1)
    X = _check_signals(X, min_times=2 * max_lag, why=f"max_lag = {max_lag} (n_times > 2·max_lag)")
    S = _series(X, max_series, random_state)
    n_series, n_times = S.shape

    lo = S.min(axis=1, keepdims=True)
    span = S.max(axis=1, keepdims=True) - lo
    span[span == 0] = 1.0  # constant series: every sample in bin 0
    bins = np.floor((S - lo) / span * n_bins).astype(np.int64)
    np.clip(bins, 0, n_bins - 1, out=bins)
    # bin index of x(t) in a flat (series, a, b) table: series·n_bins² + a·n_bins
    row = bins * n_bins + (np.arange(n_series, dtype=np.int64) * n_bins * n_bins)[:, None]

    ami = np.empty(max_lag)
    size = n_series * n_bins * n_bins
    for k in range(1, max_lag + 1):
        flat = (row[:, :-k] + bins[:, k:]).ravel()
        p = np.bincount(flat, minlength=size).reshape(n_series, n_bins, n_bins)
        p = p / float(n_times - k)
        pa = p.sum(axis=2, keepdims=True)
        pb = p.sum(axis=1, keepdims=True)
        outer = pa * pb
        nz = p > 0
        terms = np.zeros_like(p)
        terms[nz] = p[nz] * np.log(p[nz] / outer[nz])
        ami[k - 1] = terms.sum(axis=(1, 2)).mean()
    return ami


def first_minimum(curve) -> int:
    """1-based position of the first local minimum of a curve sampled at lags 1, 2, ….

    A local minimum is an interior index ``i`` (0-based, ``1 ≤ i ≤ len - 2``) with
    ``curve[i] < curve[i-1]`` and ``curve[i] ≤ curve[i+1]`` (strict descent into it, so
    a flat start is not a minimum; a plateau after a descent counts at its first point).
    If the curve has no such point (monotone, or shorter than 3) the position of its global
    minimum (first occurrence, ``argmin``) is returned instead, e.g. the last lag for a
    monotonically decreasing AMI.

    Parameters
    ----------
    curve : array_like, shape (n_lags,)
        Values at lags ``1..n_lags`` (e.g. :func:`average_mutual_information`).

    Returns
    -------
    int
        The lag ``i + 1`` of that minimum, in ``1..n_lags``.
    """
    c = np.asarray(curve, dtype=np.float64)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"curve must be a non-empty 1-D array; got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError("curve contains NaN/inf values")
    if c.size >= 3:
        mid = c[1:-1]
        hits = np.flatnonzero((mid < c[:-2]) & (mid <= c[2:]))
        if hits.size:
            return int(hits[0]) + 2  # mid index h is curve index h + 1, lag h + 2
    return int(np.argmin(c)) + 1


def _cao_e_series(x: np.ndarray, lag: int, n_dims: int, theiler: int) -> np.ndarray:
    """Cao's ``E(d)``, ``d = 1..n_dims``, of one series (NaN where no valid pair exists)."""
    n_times = x.size
    E = np.full(n_dims, np.nan)
    tol = _DUPLICATE_RTOL * (x.max() - x.min())  # distances ≤ tol count as duplicates
    for d in range(1, n_dims + 1):
        m = n_times - d * lag  # points whose (d+1)-th coordinate x(t + d·lag) exists
        Y = np.stack([x[j * lag: j * lag + m] for j in range(d)], axis=1)  # (m, d)
        extra = x[d * lag: d * lag + m]  # the (d+1)-th coordinate
        tree = cKDTree(Y)
        t = np.arange(m)
        nn = np.full(m, -1)
        dist = np.zeros(m)
        pending = t
        k = min(m, 2 * theiler + 3)
        while pending.size:
            dd, ii = tree.query(Y[pending], k=k, p=np.inf)
            dd, ii = dd.reshape(pending.size, k), ii.reshape(pending.size, k)
            ok = (np.abs(ii - pending[:, None]) > theiler) & (dd > tol) & (ii < m)
            found = ok.any(axis=1)
            first = np.argmax(ok, axis=1)
            sel = pending[found]
            nn[sel] = ii[found, first[found]]
            dist[sel] = dd[found, first[found]]
            pending = pending[~found]
            if k >= m:
                break  # the rest have no admissible neighbour: skipped
            k = min(m, 2 * k)
        valid = nn >= 0
        if not valid.any():
            continue
        tv, nv = t[valid], nn[valid]
        dist_next = np.maximum(dist[valid], np.abs(extra[tv] - extra[nv]))
        E[d - 1] = np.mean(dist_next / dist[valid])
    return E


def cao_e1(X, lag: int, max_dim: int = 10, max_series: int = 64, theiler: int = 0,
           random_state=0) -> np.ndarray:
    """Cao's averaged false-nearest-neighbour ratio ``E1(d)``, ``d = 1..max_dim``.

    For one series ``x`` with delay vectors ``y_d(t) = (x(t), x(t+τ), …, x(t+(d-1)τ))``,
    ``t = 0..n_times-1-dτ`` (those for which ``y_{d+1}(t)`` exists), let ``n(t)`` be the
    nearest neighbour of ``y_d(t)`` among them in the maximum norm. Then (Cao 1997) ::

        a(t, d) = ‖y_{d+1}(t) − y_{d+1}(n(t))‖_∞ / ‖y_d(t) − y_d(n(t))‖_∞
        E(d)    = mean_t a(t, d)
        E1(d)   = E(d+1) / E(d)

    ``E(d)`` is computed per series, **averaged over the series first, and then the ratio is
    taken**: ``E1(d) = mean_s E_s(d+1) / mean_s E_s(d)``. For a deterministic signal ``E1(d)``
    stops changing (saturates near 1) once ``d`` reaches the minimum embedding dimension; for
    noise it keeps increasing slowly towards 1. ``E(d)`` is a ratio of distances, so it does
    not depend on the amplitude of each series.

    Neighbours are found with ``scipy.spatial.cKDTree`` (``p=inf``). Candidates are only
    admissible if ``|t − n(t)| > theiler`` (a Theiler window; ``theiler=0`` excludes only
    the point itself) and at a **non-zero** distance: duplicate points (distance 0, which
    would divide by zero, or at most ``1e-9 ×`` the series' range, i.e. zero up to rounding)
    are passed over in favour of the next nearest neighbour, as Cao prescribes. A point with no admissible neighbour at all is skipped; a series with no
    admissible pair at some ``d`` (e.g. a constant one) is left out of the average for
    that ``d``.

    Parameters
    ----------
    X : array_like, shape (n_epochs, n_channels, n_times)
        Finite signals; needs ``n_times − (max_dim + 1)·lag ≥ 2``.
    lag : int
        Delay ``τ`` in samples (e.g. from :func:`average_mutual_information`).
    max_dim : int
        Largest ``d``; ``E`` is computed for ``d = 1..max_dim + 1``.
    max_series : int
        At most this many (epoch, channel) series are used, drawn at random without
        replacement when there are more (neighbour searches are the costly part).
    theiler : int
        Theiler window in samples (temporal neighbours ``|t − s| ≤ theiler`` are excluded).
    random_state : int, numpy Generator or None
        Seed of ``np.random.default_rng`` for the subsampling.

    Returns
    -------
    e1 : ndarray, shape (max_dim,)
        ``e1[d - 1] = E1(d)``.

    Raises
    ------
    ValueError
        For non-3-D input, NaN/inf values, epochs too short for ``(max_dim + 1)·lag``,
        invalid parameters, or when no series has a valid nearest-neighbour pair.

    References
    ----------
    L. Cao, Physica D 110 (1997) 43-50.
    """
    lag = _check_int(lag, "lag", 1)
    max_dim = _check_int(max_dim, "max_dim", 1)
    max_series = _check_int(max_series, "max_series", 1)
    theiler = _check_int(theiler, "theiler", 0)
    need = (max_dim + 1) * lag + 1
    X = _check_signals(
        X, min_times=need,
        why=f"Cao's E1 up to max_dim = {max_dim} with lag = {lag} ((max_dim + 1)·lag + 2 samples)",
    )
    S = _series(X, max_series, random_state)
    E = np.array([_cao_e_series(x, lag, max_dim + 1, theiler) for x in S])  # (n_series, D+1)
    if np.isnan(E).all(axis=0).any():
        raise ValueError(
            "Cao's E(d) is undefined: no series has two distinct delay vectors outside the "
            "Theiler window (constant signals, or epochs too short?)"
        )
    E_mean = np.nanmean(E, axis=0)
    return E_mean[1:] / E_mean[:-1]


def cao_dimension(e1, threshold: float = 0.9) -> int:
    """Embedding dimension read off Cao's ``E1`` curve: the first ``d`` where it saturates.

    Cao's criterion is that ``E1(d)`` stops changing (close to 1) for ``d > d0``, giving the
    minimum embedding dimension ``d0 + 1``, i.e. the first ``d`` whose ``E1(d)`` is already on
    the plateau. Operationalised here as: the smallest ``d`` with ``E1(d) ≥ threshold``; if
    ``E1`` never reaches the threshold (no saturation, e.g. noise-dominated data), the ``d``
    where ``E1`` is largest (first occurrence). The result is at most ``len(e1)``.

    Parameters
    ----------
    e1 : array_like, shape (max_dim,)
        ``E1(d)`` for ``d = 1..max_dim`` (from :func:`cao_e1`).
    threshold : float
        Saturation level (``E1`` tends to 1).

    Returns
    -------
    int
        Dimension ``d`` in ``1..len(e1)`` (counting the undelayed copy, i.e. the ACM order).
    """
    e = np.asarray(e1, dtype=np.float64)
    if e.ndim != 1 or e.size == 0:
        raise ValueError(f"e1 must be a non-empty 1-D array; got shape {e.shape}")
    if not np.isfinite(e).all():
        raise ValueError("e1 contains NaN/inf values")
    hits = np.flatnonzero(e >= threshold)
    d = int(hits[0]) + 1 if hits.size else int(np.argmax(e)) + 1
    return min(d, e.size)


def select_order_lag(X, max_order: int = 10, max_lag: int = 10, random_state=0) -> dict:
    """Choose the ACM (order, lag) by AMI first minimum and Cao's averaged FNN.

    1. ``ami = average_mutual_information(X, max_lag=L)`` with
       ``L = min(max(max_lag, 30), (n_times - 1) // 2)`` (the paper evaluates lags 1..30; the cap
       keeps at least half of the samples in every lagged pair);
       ``lag = min(first_minimum(ami), max_lag)``.
    2. ``e1 = cao_e1(X, lag, max_dim=D)`` with ``D = min(max_order, (n_times − 2) // lag − 1)``
       (Cao's ``E(D+1)`` needs ``n_times − (D+1)·lag ≥ 2`` points);
       ``order = cao_dimension(e1)`` clipped to ``[1, max_order]``.
    3. The order is then reduced, if needed, until ``order·lag < n_times − 1`` so that the
       delay embedding keeps at least 2 samples per copy (with ``D`` as above this always
       holds already). If not even ``D = 1`` fits (``n_times < 2·lag + 3``), ``e1`` is empty
       and ``order = 1`` (no embedding).

    Everything is computed from ``X`` alone: pass only the training epochs of a fold.

    Parameters
    ----------
    X : array_like, shape (n_epochs, n_channels, n_times)
        Training epochs; finite, ``n_times > 2·max_lag``.
    max_order : int
        Largest order (embedding dimension, counting the undelayed copy).
    max_lag : int
        Largest lag in samples.
    random_state : int, numpy Generator or None
        Seed for the subsampling of series in both estimators.

    Returns
    -------
    dict
        ``order`` (int), ``lag`` (int), ``ami`` (list of float: AMI at lags ``1..L``) and
        ``e1`` (list of float: ``E1(d)``, ``d = 1..D``).

    Raises
    ------
    ValueError
        For non-3-D input, NaN/inf values, ``n_times ≤ 2·max_lag`` or invalid parameters.

    References
    ----------
    S. Carrara, T. Papadopoulo, arXiv:2302.04508; L. Cao, Physica D 110 (1997) 43-50.
    """
    max_order = _check_int(max_order, "max_order", 1)
    max_lag = _check_int(max_lag, "max_lag", 1)
    X = _check_signals(X, min_times=2 * max_lag, why=f"max_lag = {max_lag} (n_times > 2·max_lag)")
    n_times = X.shape[-1]

    ami_lags = min(max(max_lag, AMI_MIN_LAGS), (n_times - 1) // 2)
    ami = average_mutual_information(X, max_lag=ami_lags, random_state=random_state)
    lag = min(first_minimum(ami), max_lag)

    max_dim = min(max_order, (n_times - 2) // lag - 1)
    if max_dim < 1:
        e1 = np.empty(0)
        order = 1
    else:
        e1 = cao_e1(X, lag, max_dim=max_dim, random_state=random_state)
        order = int(np.clip(cao_dimension(e1), 1, max_order))
    while order > 1 and order * lag >= n_times - 1:
        order -= 1
    return {"order": order, "lag": int(lag), "ami": ami.tolist(), "e1": e1.tolist()}
