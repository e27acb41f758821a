"""Choice of the ACM (order, lag) by AMI first minimum and Cao's averaged FNN."""

import numpy as np
import pytest

from brainmill.features.embedding_selection import (
    average_mutual_information,
    cao_dimension,
    cao_e1,
    first_minimum,
    select_order_lag,
)

# --------------------------------------------------------------------------- signals


def henon_x(n, x0=0.1, burn=500):
    """x-component of the Hénon map (a = 1.4, b = 0.3): a 2-D attractor (Cao: dimension 2)."""
    x, y = x0, 0.0
    out = np.empty(n + burn)
    for i in range(n + burn):
        x, y = 1.0 - 1.4 * x * x + y, 0.3 * x
        out[i] = x
    return out[burn:]


def lorenz_x(n, dt=0.01, s0=(1.0, 1.0, 1.0), burn=1000):
    """x-component of the Lorenz system (σ=10, ρ=28, β=8/3), RK4 with step ``dt``."""

    def f(s):
        return np.array([10.0 * (s[1] - s[0]), s[0] * (28.0 - s[2]) - s[1],
                         s[0] * s[1] - 8.0 / 3.0 * s[2]])

    s = np.asarray(s0, dtype=float)
    out = np.empty(n + burn)
    for i in range(n + burn):
        k1 = f(s)
        k2 = f(s + dt / 2 * k1)
        k3 = f(s + dt / 2 * k2)
        k4 = f(s + dt * k3)
        s = s + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        out[i] = s[0]
    return out[burn:]


def as3d(x):
    return np.asarray(x, dtype=float)[None, None, :]


# --------------------------------------------------------------------------- references


def ami_reference(x, lag, n_bins):
    """Plain plug-in mutual information of one series with its lagged copy (histogram2d)."""
    edges = np.linspace(x.min(), x.max(), n_bins + 1)
    counts, _, _ = np.histogram2d(x[:-lag], x[lag:], bins=[edges, edges])
    p = counts / counts.sum()
    pa, pb = p.sum(axis=1), p.sum(axis=0)
    mi = 0.0
    for a in range(n_bins):
        for b in range(n_bins):
            if p[a, b] > 0:
                mi += p[a, b] * np.log(p[a, b] / (pa[a] * pb[b]))
    return mi


def cao_e_reference(x, lag, n_dims, theiler):
    """Cao's E(d), d = 1..n_dims, of one series by brute force (all pairwise distances)."""
    E = []
    for d in range(1, n_dims + 1):
        m = len(x) - d * lag
        Yd = np.array([[x[t + j * lag] for j in range(d)] for t in range(m)])
        Yd1 = np.array([[x[t + j * lag] for j in range(d + 1)] for t in range(m)])
        ratios = []
        for i in range(m):
            dist = np.max(np.abs(Yd - Yd[i]), axis=1)
            admissible = (np.abs(np.arange(m) - i) > theiler) & (dist > 0)
            j = np.flatnonzero(admissible)[np.argmin(dist[admissible])]
            ratios.append(np.max(np.abs(Yd1[i] - Yd1[j])) / dist[j])
        E.append(np.mean(ratios))
    return np.array(E)


# --------------------------------------------------------------------------- AMI


@pytest.mark.parametrize("n_bins", [4, 16])
def test_ami_matches_independent_histogram2d(n_bins):
    rng = np.random.default_rng(0)
    x = np.convolve(rng.normal(size=700), np.ones(5) / 5, mode="valid")  # correlated
    ami = average_mutual_information(as3d(x), max_lag=6, n_bins=n_bins)
    ref = [ami_reference(x, k, n_bins) for k in range(1, 7)]
    np.testing.assert_allclose(ami, ref, rtol=1e-10, atol=1e-12)
    assert ami.shape == (6,)


def test_ami_is_the_mean_over_epochs_and_channels():
    rng = np.random.default_rng(1)
    X = np.cumsum(rng.normal(size=(2, 3, 300)), axis=-1)
    X[1, 2] *= 1e-6  # per-series bins: the amplitude of a series does not matter
    ami = average_mutual_information(X, max_lag=4, n_bins=8)
    ref = np.mean([[ami_reference(s, k, 8) for k in range(1, 5)] for s in X.reshape(6, -1)],
                  axis=0)
    np.testing.assert_allclose(ami, ref, rtol=1e-10)


def test_ami_of_noise_is_near_zero_and_far_below_a_smooth_signal():
    rng = np.random.default_rng(2)
    noise = rng.normal(size=(4, 2, 4000))
    ami_noise = average_mutual_information(noise, max_lag=10)
    # plug-in bias for independent samples ≈ (16 - 1)² / (2 · 4000) ≈ 0.03 nats
    assert np.all(ami_noise >= 0)
    assert np.all(ami_noise < 0.05)
    smooth = np.cumsum(rng.normal(size=(4, 2, 4000)), axis=-1)  # random walk
    ami_smooth = average_mutual_information(smooth, max_lag=10)
    assert np.all(ami_smooth > 10 * ami_noise.max())
    assert np.all(np.diff(ami_smooth) < 0)  # dependence decays with the lag


@pytest.mark.parametrize("period", [20.0, 40.0, 60.9])
def test_ami_first_minimum_of_a_sinusoid_is_a_quarter_period(period):
    # A little additive noise: for a noise-free sine (x(t), x(t+k)) lies on an ellipse, the
    # true MI is infinite and the histogram estimate only reflects the cell grid.
    rng = np.random.default_rng(3)
    t = np.arange(3000)
    X = np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi, size=(8, 2, 1)))
    X += 0.2 * rng.normal(size=X.shape)
    ami = average_mutual_information(X, max_lag=int(period / 2))
    assert abs(first_minimum(ami) - period / 4) <= 2


def test_ami_subsampling_is_seeded():
    rng = np.random.default_rng(4)
    # heterogeneous series (different smoothness) so that different subsets differ
    X = np.stack([np.cumsum(rng.normal(size=(6, 500)), axis=-1),
                  rng.normal(size=(6, 500))], axis=1)
    a = average_mutual_information(X, max_lag=5, max_series=3, random_state=7)
    b = average_mutual_information(X, max_lag=5, max_series=3, random_state=7)
    np.testing.assert_array_equal(a, b)
    others = [average_mutual_information(X, max_lag=5, max_series=3, random_state=s)
              for s in range(8, 14)]
    assert any(not np.allclose(a, o) for o in others)
    full = average_mutual_information(X, max_lag=5)
    np.testing.assert_allclose(full, average_mutual_information(X, max_lag=5, random_state=99))


# --------------------------------------------------------------------------- first minimum


@pytest.mark.parametrize(
    ("curve", "expected"),
    [
        ([3, 2, 1, 2, 3], 3),
        ([1, 0, 1, -5, 0], 2),  # the first local minimum, not the global one
        ([5, 4, 4, 5], 2),  # a plateau counts at its first point
        ([5, 5, 4, 6], 3),  # a flat start is not a minimum
        ([3, 2, 1], 3),  # decreasing: no local minimum → argmin (the last lag)
        ([1, 2, 3], 1),  # increasing → argmin (lag 1)
        ([2, 2, 2], 1),
        ([7], 1),
        ([2, 1], 2),
    ],
)
def test_first_minimum_on_hand_made_curves(curve, expected):
    assert first_minimum(np.asarray(curve, dtype=float)) == expected
    assert isinstance(first_minimum(curve), int)


@pytest.mark.parametrize("curve", [[], [[1, 2], [3, 4]], [1.0, np.nan, 2.0]])
def test_first_minimum_rejects_bad_curves(curve):
    with pytest.raises(ValueError):
        first_minimum(curve)


# --------------------------------------------------------------------------- Cao


@pytest.mark.parametrize("theiler", [0, 4])
def test_cao_e1_matches_brute_force(theiler):
    rng = np.random.default_rng(5)
    x1 = henon_x(130)
    x2 = np.convolve(rng.normal(size=134), np.ones(5) / 5, mode="valid")
    X = np.stack([x1, x2])[None]  # (1, 2, 130)
    lag, max_dim = 2, 4
    e1 = cao_e1(X, lag, max_dim=max_dim, theiler=theiler)
    E = np.array([cao_e_reference(x, lag, max_dim + 1, theiler) for x in (x1, x2)])
    # E(d) averaged over the series first, then the ratio
    expected = E.mean(axis=0)[1:] / E.mean(axis=0)[:-1]
    np.testing.assert_allclose(e1, expected, rtol=1e-10)
    assert e1.shape == (max_dim,)
    assert not np.allclose(e1, np.mean(E[:, 1:] / E[:, :-1], axis=0))


def test_cao_sine_saturates_at_dimension_two():
    period = 40.7
    x = np.sin(2 * np.pi * np.arange(2000) / period)
    e1 = cao_e1(as3d(x), lag=round(period / 4), max_dim=6)
    assert e1[0] < 0.5  # d = 1: the two branches of the sine are false neighbours
    assert np.all(e1[1:] > 0.95)
    assert cao_dimension(e1) == 2


@pytest.mark.parametrize("x0", [0.1, -0.3])
def test_cao_henon_has_dimension_two(x0):
    e1 = cao_e1(as3d(henon_x(1500, x0=x0)), lag=1, max_dim=6)
    assert e1[0] < 0.1
    assert np.all(e1[1:] > 0.9)
    assert cao_dimension(e1) == 2


def test_cao_lorenz_has_dimension_three_to_five():
    x = lorenz_x(3000)
    lag = first_minimum(average_mutual_information(as3d(x), max_lag=40))
    assert 12 <= lag <= 22  # the usual ~0.17 time units for dt = 0.01
    e1 = cao_e1(as3d(x), lag=lag, max_dim=7)
    assert e1[1] < 0.7  # d = 2 is not enough for the Lorenz attractor
    assert 3 <= cao_dimension(e1) <= 5


def test_cao_noise_does_not_saturate_early():
    rng = np.random.default_rng(6)
    e1 = cao_e1(rng.normal(size=(2, 2, 1500)), lag=1, max_dim=6)
    assert e1[0] < 0.1
    assert e1[1] < 0.5
    assert np.all(np.diff(e1) > 0)  # keeps rising slowly
    assert cao_dimension(e1) >= 5


def test_cao_handles_duplicate_points_and_constant_series():
    x = henon_x(600)
    X = np.zeros((1, 3, 1200))
    X[0, 0] = np.tile(x, 2)  # every delay vector has an exact duplicate
    X[0, 1] = np.round(np.tile(x, 2), 2)  # quantised: many coincident values
    # X[0, 2] stays constant: no valid pair, left out of the average
    e1 = cao_e1(X, lag=1, max_dim=5)
    assert np.all(np.isfinite(e1))
    assert cao_dimension(cao_e1(X[:, :1], lag=1, max_dim=5)) == 2
    with pytest.raises(ValueError, match="undefined"):
        cao_e1(np.ones((2, 2, 100)), lag=1, max_dim=3)


def test_cao_is_deterministic_with_a_seed():
    rng = np.random.default_rng(7)
    X = np.concatenate([rng.normal(size=(4, 3, 300)),
                        np.cumsum(rng.normal(size=(4, 3, 300)), axis=-1)])
    a = cao_e1(X, lag=2, max_dim=4, max_series=5, random_state=3)
    np.testing.assert_array_equal(a, cao_e1(X, lag=2, max_dim=4, max_series=5, random_state=3))
    others = [cao_e1(X, lag=2, max_dim=4, max_series=5, random_state=s) for s in range(4, 8)]
    assert any(not np.allclose(a, o) for o in others)


# --------------------------------------------------------------------------- dimension rule


@pytest.mark.parametrize(
    ("e1", "threshold", "expected"),
    [
        ([0.1, 0.95, 0.97, 0.99], 0.9, 2),
        ([0.95, 0.97], 0.9, 1),
        ([0.1, 0.5, 0.85], 0.9, 3),  # no saturation: d of the maximum
        ([0.2, 0.8, 0.6], 0.9, 2),
        ([0.1, 0.5, 0.85], 0.8, 3),
        ([0.1, 0.85, 0.95], 0.8, 2),
    ],
)
def test_cao_dimension_rule(e1, threshold, expected):
    assert cao_dimension(np.asarray(e1), threshold=threshold) == expected


def test_cao_dimension_rejects_bad_input():
    with pytest.raises(ValueError):
        cao_dimension([])
    with pytest.raises(ValueError):
        cao_dimension([0.1, np.nan])


# --------------------------------------------------------------------------- select_order_lag


def test_select_order_lag_on_sinusoids():
    rng = np.random.default_rng(8)
    t = np.arange(1000)
    X = np.sin(2 * np.pi * t / 24.3 + rng.uniform(0, 2 * np.pi, size=(10, 3, 1)))
    out = select_order_lag(X, max_order=10, max_lag=10)
    assert set(out) == {"order", "lag", "ami", "e1"}
    assert isinstance(out["order"], int) and isinstance(out["lag"], int)
    assert abs(out["lag"] - 24.3 / 4) <= 2
    assert out["order"] == 2
    assert len(out["ami"]) == 30 and len(out["e1"]) == 10
    assert isinstance(out["ami"], list) and isinstance(out["e1"], list)
    assert out == select_order_lag(X, max_order=10, max_lag=10)


def test_select_order_lag_clips_lag_and_order():
    rng = np.random.default_rng(9)
    t = np.arange(1000)
    X = np.sin(2 * np.pi * t / 80.3 + rng.uniform(0, 2 * np.pi, size=(6, 2, 1)))
    X += 0.1 * rng.normal(size=X.shape)
    out = select_order_lag(X, max_order=3, max_lag=10)
    assert first_minimum(out["ami"]) > 10  # quarter period ≈ 20
    assert out["lag"] == 10
    assert 1 <= out["order"] <= 3 and len(out["e1"]) == 3


@pytest.mark.parametrize("n_times", [21, 25, 40])
def test_select_order_lag_keeps_the_embedding_inside_short_epochs(n_times):
    rng = np.random.default_rng(10)
    X = np.cumsum(rng.normal(size=(8, 3, n_times)), axis=-1)  # slowly decaying AMI: long lag
    out = select_order_lag(X, max_order=10, max_lag=10)
    assert 1 <= out["lag"] <= 10
    assert 1 <= out["order"] <= 10
    assert out["order"] * out["lag"] < n_times - 1
    assert len(out["ami"]) == min(30, (n_times - 1) // 2)
    if n_times == 21 and out["lag"] == 10:
        assert out["order"] == 1 and out["e1"] == []


def test_select_order_lag_is_seeded():
    rng = np.random.default_rng(11)
    X = np.concatenate([rng.normal(size=(40, 4, 200)),
                        np.cumsum(rng.normal(size=(40, 4, 200)), axis=-1)])
    a = select_order_lag(X, max_order=5, max_lag=5, random_state=1)
    assert a == select_order_lag(X, max_order=5, max_lag=5, random_state=1)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.zeros((10, 100)), "shape"),
        (np.zeros((2, 2, 2, 100)), "shape"),
        (np.zeros((0, 2, 100)), "no epochs"),
        (np.zeros((2, 2, 20)), "too short"),  # n_times ≤ 2 · max_lag
    ],
)
def test_select_order_lag_rejects_bad_shapes(X, match):
    with pytest.raises(ValueError, match=match):
        select_order_lag(X, max_lag=10)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(bad):
    X = np.random.default_rng(12).normal(size=(3, 2, 200))
    X[1, 0, 5] = bad
    for call in (lambda: select_order_lag(X), lambda: average_mutual_information(X),
                 lambda: cao_e1(X, lag=1, max_dim=3)):
        with pytest.raises(ValueError, match="NaN/inf"):
            call()


def test_other_invalid_arguments():
    X = np.random.default_rng(13).normal(size=(3, 2, 100))
    with pytest.raises(ValueError, match="too short"):
        average_mutual_information(X, max_lag=50)
    with pytest.raises(ValueError, match="too short"):
        cao_e1(X, lag=10, max_dim=10)
    with pytest.raises(ValueError, match="max_lag"):
        average_mutual_information(X, max_lag=0)
    with pytest.raises(ValueError, match="n_bins"):
        average_mutual_information(X, n_bins=1)
    with pytest.raises(ValueError, match="lag"):
        cao_e1(X, lag=0)
    with pytest.raises(ValueError, match="max_order"):
        select_order_lag(X, max_order=0)
