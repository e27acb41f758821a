"""Augmented covariance matrices: the fast exact path against the reference pipeline."""

import numpy as np
import pytest
from numba import njit
from pyriemann.estimation import Covariances, TimeDelayCovariances
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from brainmill.features._acm_kernels import next_epoch, table_positions
from brainmill.features.augmented import (
    LaggedProducts,
    augmented_covariances,
    delay_embed,
    grid_delays,
)
from brainmill.features.covariance import AugmentedCovariance


def max_rel_diff(a, b):
    """Largest entry-wise difference relative to each reference matrix's largest entry."""
    return float(np.max(np.abs(a - b).max(axis=(1, 2)) / np.abs(b).max(axis=(1, 2))))


@pytest.fixture(scope="module")
def signals():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 4, 120))
    X[:, 1, 1:] += 0.8 * X[:, 1, :-1]  # some autocorrelation so lags matter
    return X * 1e-5 + 2e-5  # volts, with a DC offset


def reference(X, order, lag, estimator):
    return Covariances(estimator).fit_transform(delay_embed(X, order, lag))


@pytest.mark.parametrize("estimator", ["cov", "oas", "lwf"])
@pytest.mark.parametrize("order,lag", [(1, 1), (1, 5), (2, 1), (3, 4), (5, 2), (7, 3)])
def test_fast_path_equals_embedding_then_covariance(signals, order, lag, estimator):
    out = augmented_covariances(signals, order, lag, estimator)
    ref = reference(signals, order, lag, estimator)
    assert out.shape == (6, 4 * order, 4 * order)
    assert max_rel_diff(out, ref) <= 1e-10


def test_equals_moabb_augmented_dataset(signals):
    moabb_features = pytest.importorskip("moabb.pipelines.features")
    aug = moabb_features.AugmentedDataset(order=4, lag=3).transform(signals)
    ref = Covariances("cov").fit_transform(aug)
    assert max_rel_diff(augmented_covariances(signals, 4, 3), ref) <= 1e-10
    # the crop is order·lag, one lag more than the minimal (order-1)·lag
    assert aug.shape[-1] == 120 - 4 * 3


def test_large_dc_offset_does_not_cancel():
    """Centring first keeps the mean correction exact even for a huge offset."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3, 3, 200)) + 1e4
    assert max_rel_diff(augmented_covariances(X, 3, 2), reference(X, 3, 2, "cov")) <= 1e-10


def test_order_one_is_the_plain_covariance_over_all_samples(signals):
    np.testing.assert_allclose(
        augmented_covariances(signals, 1, 7), np.array([np.cov(x) for x in signals]),
        rtol=1e-11, atol=0,
    )


def test_blocks_are_lagged_covariances(signals):
    """Block (0, 1) of order 2, lag τ is cov(x(t), x(t+τ)) over the cropped window."""
    tau, n = 3, 120 - 2 * 3
    acm = augmented_covariances(signals, 2, tau)
    x0, x1 = signals[0][:, :n], signals[0][:, tau:tau + n]
    expected = (x0 - x0.mean(1, keepdims=True)) @ (x1 - x1.mean(1, keepdims=True)).T / (n - 1)
    np.testing.assert_allclose(acm[0, :4, 4:], expected, rtol=1e-10)


def test_differs_from_pyriemann_time_delay_covariances(signals):
    """pyriemann's version wraps round (np.roll) and keeps every sample: not an ACM."""
    theirs = TimeDelayCovariances(delays=2).fit_transform(signals)
    ours = augmented_covariances(signals, 2, 1)
    assert theirs.shape == ours.shape
    assert max_rel_diff(ours, theirs) > 1e-3


def test_grid_iteration_equals_each_point(signals):
    orders, lags = [1, 2, 4], [1, 3]
    products = LaggedProducts.for_grid(signals, orders, lags)
    seen = []
    for order, lag, covs in products.iter_grid(orders, lags, "oas"):
        seen.append((order, lag))
        assert max_rel_diff(covs, reference(signals, order, lag, "oas")) <= 1e-10
    assert seen == [(o, lg) for lg in lags for o in orders]  # lag slowest, as GridSearchCV
    assert grid_delays(orders, lags) == [0, 1, 2, 3, 6, 9]


def test_products_do_not_depend_on_how_epochs_are_chunked(signals, monkeypatch):
    import brainmill.features.augmented as augmented

    whole = LaggedProducts.for_grid(signals, [1, 3], [2])
    monkeypatch.setattr(augmented, "CENTRING_CHUNK_BYTES", 4 * 8 * 4 * 120)  # 4 + 2 epochs
    chunked = LaggedProducts.for_grid(signals, [1, 3], [2])
    np.testing.assert_array_equal(chunked._prod, whole._prod)
    np.testing.assert_array_equal(chunked._epoch_totals(), whole._epoch_totals())
    for d in (0, 2, 4):  # R(d) = Σ_t x(t) x(t+d)ᵀ of the centred epochs
        xc = signals - signals.mean(axis=-1, keepdims=True)
        direct = np.einsum("eit,ejt->eij", xc[:, :, :120 - d], xc[:, :, d:])
        assert max_rel_diff(chunked._lagged(d), direct) <= 1e-12
    assert max_rel_diff(chunked.covariances(3, 2), reference(signals, 3, 2, "cov")) <= 1e-10


@pytest.mark.parametrize("estimator", ["cov", "oas"])
def test_grid_tables_shared_across_orders_give_the_single_point_matrices(estimator):
    """One lag's edge tables, built for its largest order, serve every smaller order: the
    matrices are bit-identical to those of each point computed on its own."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5, 3, 150)) + 0.3
    orders, lags = [1, 2, 3, 5, 6], [1, 2, 7]
    shared = LaggedProducts.for_grid(X, orders, lags)
    # the same products (BLAS rounding depends on how many delays share a product), but no
    # order hint: every point builds its own tables, one epoch at a time
    alone = LaggedProducts(X, grid_delays(orders, lags))
    for order, lag, covs in shared.iter_grid(orders, lags, estimator):
        np.testing.assert_array_equal(covs, alone.covariances(order, lag, estimator),
                                      err_msg=f"order {order}, lag {lag}")
        assert max_rel_diff(covs, reference(X, order, lag, estimator)) <= 1e-10


@pytest.mark.parametrize("estimator", ["cov", "oas", "lwf"])
def test_grid_reusing_one_buffer_yields_the_same_matrices(estimator):
    """``iter_grid(reuse=True)`` writes every point into one buffer (each overwrites the
    last) and gives the same bits as a fresh array per point."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((5, 3, 150)) + 0.3
    orders, lags = [1, 2, 5, 3], [2, 1]
    fresh = LaggedProducts.for_grid(X, orders, lags).iter_grid(orders, lags, estimator)
    reused = LaggedProducts.for_grid(X, orders, lags).iter_grid(orders, lags, estimator,
                                                                reuse=True)
    first = None
    for (o, lg, a), (o2, lg2, b) in zip(fresh, reused, strict=True):
        assert (o, lg) == (o2, lg2) and b.shape == (5, 3 * o, 3 * o)
        np.testing.assert_array_equal(b, a, err_msg=f"order {o}, lag {lg}")
        first = b if first is None else first
        assert np.shares_memory(first, b)  # one buffer, as documented
    assert max_rel_diff(b, reference(X, 3, 1, estimator)) <= 1e-10


@pytest.mark.parametrize("lo,hi,d", [(0, 9, 0), (3, 14, 5), (2, 4, 1), (0, 0, 2), (7, 8, 3),
                                     (1, 5, 2)])
@pytest.mark.parametrize("in_place", [True, False])
@pytest.mark.parametrize("c", [5, 1, 22, 24, 25])  # registers up to 24 channels, loops above
def test_table_accumulation_adds_one_sample_at_a_time_in_order(lo, hi, d, in_place, c):
    """The tables' kernel adds four samples per pass over the accumulator but each element
    in sample order, one product at a time: the bits of a plain loop (summing the four
    products first would change them, and the grid/single-point tests cannot see that as
    both paths share the kernel). Starting from another table (``prev``) gives the bits of
    copying it first and accumulating in place, and leaves ``prev`` as it was."""
    from brainmill.features._acm_kernels import _add_lagged

    rng = np.random.default_rng(hi)
    src = rng.standard_normal((20, c)) * 10.0 ** rng.uniform(-3, 3, (20, 1))
    prev = rng.standard_normal((c, c))
    expected = prev.copy()
    for s in range(lo, hi):
        expected = expected + np.outer(src[s], src[s + d])  # each element: one product added
    before = prev.copy()
    acc = prev if in_place else np.full((c, c), np.nan)
    _add_lagged(src, lo, hi, d, prev, acc)
    np.testing.assert_array_equal(acc, expected)
    if not in_place:
        np.testing.assert_array_equal(prev, before)


def test_grid_reuse_checks_each_point_before_sizing_the_buffer():
    """``reuse=True`` behaves as the default on empty and infeasible grids: nothing to
    yield, or the valid points first and then the clear error (no huge buffer first)."""
    X = np.random.default_rng(0).standard_normal((3, 2, 60))
    products = LaggedProducts(X, [0, 1])
    assert list(products.iter_grid([], [1], reuse=True)) == []
    seen = []
    with pytest.raises(ValueError, match="order·lag"):
        for order, _, covs in products.iter_grid([1, 2, 10**6], [1], "oas", reuse=True):
            seen.append((order, covs.shape))
    assert seen == [(1, (3, 2, 2)), (2, (3, 4, 4))]


def test_tables_reused_across_lags_never_read_stale_slots():
    """A lag's edge tables are written into the memory of the previous lag's tables, of
    another size: poisoning that memory before each point's tables must not change a bit."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((4, 3, 150)) - 0.5
    points = [(8, 1), (2, 1), (3, 20), (2, 20), (8, 7), (5, 7)]  # table orders 8, 3, 8
    products = LaggedProducts.for_points(X, points)
    alone = LaggedProducts(X, products._slot)  # same products, tables per point
    for order, lag in points:
        products._table_memory[:] = np.nan
        products._tables = None  # rebuilt in the poisoned memory
        np.testing.assert_array_equal(products.covariances(order, lag),
                                      alone.covariances(order, lag),
                                      err_msg=f"order {order}, lag {lag}")
    n_values = 4 * 3 * 3 * sum(table_positions(8)[2:])
    assert products._table_memory.size == n_values  # kept, sized for the largest tables


def test_out_is_written_and_checked(signals):
    products = LaggedProducts(signals, [0, 2, 4])
    out = np.full((6, 12, 12), np.nan)
    assert products.covariances(3, 2, "oas", out=out) is out
    np.testing.assert_array_equal(out, augmented_covariances(signals, 3, 2, "oas"))
    read_only = np.empty((6, 12, 12))
    read_only.flags.writeable = False
    for bad in (np.empty((6, 12, 11)), np.empty((6, 12, 12), np.float32),
                np.empty((6, 12, 24))[:, :, ::2], read_only):
        with pytest.raises(ValueError, match=r"out must be .* shape \(6, 12, 12\)"):
            products.covariances(3, 2, out=bad)
    with pytest.raises(ValueError, match="writeable: False"):
        products.covariances(3, 2, out=read_only)


@pytest.mark.parametrize("order,lag", [(1, 1), (2, 3), (6, 2)])
def test_matrices_are_exactly_symmetric(signals, order, lag):
    out = augmented_covariances(signals, order, lag)
    np.testing.assert_array_equal(out, out.transpose(0, 2, 1))


def _assembly_by_blocks(prod, slots, H, hpos, epos, E, mu, order, nwin, scale):
    """The assembly formula block by block in numpy: upper blocks, then their mirror."""
    n, _, c = mu.shape
    out = np.empty((n, order * c, order * c))
    for k in range(order):
        for b in range(k, order):
            m = b - k
            r = prod[:, slots[m]]  # R(mτ)
            nmu = (nwin * mu[:, k])[:, :, None] * mu[:, b][:, None, :]
            block = (r - nmu - H[:, hpos[m, k]] - E[:, epos[m, order - b]]) * scale
            if m == 0:
                block = np.triu(block) + np.triu(block, 1).transpose(0, 2, 1)
            out[:, k * c:(k + 1) * c, b * c:(b + 1) * c] = block
            out[:, b * c:(b + 1) * c, k * c:(k + 1) * c] = block.transpose(0, 2, 1)
    return out


@pytest.mark.parametrize("order", [1, 2, 5])
def test_row_order_assembly_equals_the_blockwise_formula_bit_for_bit(order):
    """The kernel writes rows and computes mirrored elements itself: same bits as copying."""
    from brainmill.features._acm_kernels import assemble, table_positions

    rng = np.random.default_rng(order)
    n, c = 3, 4
    hpos, epos, nh, ne = table_positions(max(order, 2))
    if order == 1:  # as LaggedProducts.scatter: zero tables, no crop
        hpos, epos, nh, ne = np.zeros((1, 1), np.int64), np.zeros((1, 2), np.int64), 1, 1
    prod = rng.standard_normal((n, order + 2, c, c))
    slots = rng.permutation(order + 2)[:order].astype(np.int64)
    # R(0) from BLAS need not be bit-symmetric: left as is, the mirror must not read it twice

    def table(slots_):
        t = rng.standard_normal((n, slots_, c, c))
        t[:, 0] = 0.0  # the zero slot
        for s in range(slots_):  # lag-0 terms are sums of x xᵀ: symmetric
            if s in set(hpos[0].tolist()) | set(epos[0].tolist()):
                t[:, s] = t[:, s] + t[:, s].transpose(0, 2, 1)
        return t

    H, E = table(nh), table(ne)
    mu = rng.standard_normal((n, order, c))
    out = np.empty((n, order * c, order * c))
    assemble(prod, slots, H, hpos, epos, E, mu, order, 97.0, 1 / 96, out)
    np.testing.assert_array_equal(
        out, _assembly_by_blocks(prod, slots, H, hpos, epos, E, mu, order, 97.0, 1 / 96))


def test_transformer_matches_function_and_is_stateless(signals):
    acm = AugmentedCovariance(order=3, lag=2).fit(signals[:2])
    np.testing.assert_array_equal(acm.transform(signals), augmented_covariances(signals, 3, 2))
    # each matrix depends on its own epoch only
    np.testing.assert_allclose(acm.transform(signals[3:4])[0], acm.transform(signals)[3])


# ------------------------------------------------------------------------------ bad input


def test_order_lag_too_large_for_epoch(signals):
    with pytest.raises(ValueError, match=r"order·lag = 12·10 = 120 .*smaller order or lag"):
        augmented_covariances(signals, 12, 10, "oas")


def test_nan_in_signal_is_named():
    X = np.ones((3, 2, 50))
    X[1, 0, 5] = np.nan
    X[2, 1, 7] = np.inf
    with pytest.raises(ValueError, match=r"2 NaN/inf values \(epochs \[1, 2\], channels \[0, 1\]"):
        AugmentedCovariance(order=2, lag=1).fit(X)


@pytest.mark.parametrize("bad", [[np.nan], [np.inf], [-np.inf], [np.inf, -np.inf]])
def test_nan_or_inf_reaching_the_products_is_named(bad, monkeypatch):
    """LaggedProducts finds NaN/inf through its channel means (split over threads here);
    the error is check_signals', even with warnings as errors (inf − inf warns in a mean)."""
    import warnings

    from brainmill.features import _acm_kernels

    monkeypatch.setattr(_acm_kernels, "PARALLEL_MIN_VALUES", 0)
    X = np.ones((3, 2, 50))
    X[2, 1, 7:7 + len(bad)] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=rf"{len(bad)} NaN/inf values \(epochs \[2\], "
                                             r"channels \[1\]"):
            AugmentedCovariance(order=2, lag=1).fit(X[:2]).transform(X)
        with pytest.raises(ValueError, match="NaN/inf"):
            LaggedProducts.for_grid(X, [1, 2], [1])


def test_edges_wider_than_the_epochs_are_refused():
    products = LaggedProducts(np.random.default_rng(0).standard_normal((2, 3, 10)))
    with pytest.raises(ValueError, match="edges of 14 samples asked of epochs of 10"):
        products._edge_cache(14, exact=True)


def test_channel_means_and_edges_equal_numpy_bit_for_bit(monkeypatch):
    """The compiled edges and the threaded means repeat numpy's operations in its order."""
    from brainmill.features import _acm_kernels

    monkeypatch.setattr(_acm_kernels, "PARALLEL_MIN_VALUES", 0)  # split even tiny work
    X = np.random.default_rng(3).standard_normal((7, 4, 90)) * 1e-5 + 2e-4
    # two lags: not one progression, so the direct products and numpy's means (a single
    # lag's progression computes the means its own way, in the same pass as its products)
    products = LaggedProducts.for_grid(X, [2, 5], [3, 4])
    mean = X.mean(axis=-1)
    np.testing.assert_array_equal(products._mean, mean)
    head, tail, head_cs, tail_cs = products._edge_cache(15)
    width = head.shape[-1]
    assert width == 20  # the grid's widest span, 5 · 4
    np.testing.assert_array_equal(head, X[:, :, :width] - mean[..., None])
    np.testing.assert_array_equal(tail, X[:, :, -width:] - mean[..., None])
    np.testing.assert_array_equal(head_cs, np.cumsum(head, axis=-1).transpose(0, 2, 1))
    np.testing.assert_array_equal(tail_cs,
                                  np.cumsum(tail[:, :, ::-1], axis=-1).transpose(0, 2, 1))


def test_complex_signal_is_rejected_not_cast():
    X = np.random.default_rng(0).standard_normal((3, 2, 50)) * (1 + 1j)
    with pytest.raises(ValueError, match="X has complex values; complex data is not supported"):
        AugmentedCovariance(order=2, lag=1).fit(X)


def test_too_few_samples_for_plain_estimator_says_use_oas():
    X = np.random.default_rng(0).standard_normal((2, 8, 40))
    with pytest.raises(ValueError, match="rank-deficient; use estimator='oas'"):
        augmented_covariances(X, 5, 1, "cov")
    assert np.all(np.linalg.eigvalsh(augmented_covariances(X, 5, 1, "oas")) > 0)


def test_average_reference_is_singular_for_plain_estimator():
    X = np.random.default_rng(0).standard_normal((3, 5, 300))
    X -= X.mean(axis=1, keepdims=True)  # average reference: channels sum to zero
    with pytest.raises(ValueError, match="singular .*use estimator='oas'"):
        augmented_covariances(X, 2, 1, "cov")
    assert np.all(np.linalg.eigvalsh(augmented_covariances(X, 2, 1, "lwf")) > 0)


def _with_spectrum(rng, eigenvalues):
    q, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return (q * eigenvalues) @ q.T


def test_rank_screen_never_clears_a_matrix_the_eigenvalues_reject():
    """The Cholesky bound clears only matrices with ``λ_min > rtol·λ_max``; well-conditioned
    ones it clears, and the ones near the line it leaves to the eigenvalues."""
    from brainmill.features._acm_kernels import surely_full_rank

    rng = np.random.default_rng(3)
    ratios = np.geomspace(1e-14, 1e-1, 40)
    mats = np.stack([_with_spectrum(rng, np.geomspace(r, 1.0, 12)) for r in ratios])
    mats[-1] = np.diag(np.arange(1.0, 13.0))
    sure = np.empty(len(mats), dtype=bool)
    surely_full_rank(mats, 1e-10, sure)
    eig = np.linalg.eigvalsh(mats)
    assert not np.any(sure & (eig[:, 0] <= 1e-10 * eig[:, -1]))
    assert sure[ratios > 1e-7].all() and not sure[ratios < 1e-10].any()
    bad = np.stack([np.zeros((3, 3)), np.diag([1.0, -1e-3, 2.0]), np.full((3, 3), np.nan)])
    surely_full_rank(bad, 1e-10, sure[:3])
    assert not sure[:3].any()  # zero, indefinite, NaN: left to the eigenvalues


@pytest.mark.parametrize("rtol", [0.0, 1e-16, 1e-13])
def test_rank_screen_agrees_with_the_eigenvalues_for_any_rtol(rtol):
    """Down to ``rtol = 0`` the bound's margin keeps it from clearing a matrix whose computed
    eigenvalues fall under the line (rank-deficient products of 22 channels)."""
    from brainmill.features._acm_kernels import surely_full_rank

    rng = np.random.default_rng(12)
    X = rng.standard_normal((400, 22, 60))
    X[:200, 21] = X[:200, :21].sum(axis=1) / 7  # singular but for rounding
    mats = X @ X.transpose(0, 2, 1)
    sure = np.empty(len(mats), dtype=bool)
    surely_full_rank(mats, rtol, sure)
    eig = np.linalg.eigvalsh(mats)
    assert not np.any(sure & (eig[:, 0] <= rtol * eig[:, -1]))
    assert sure.any()


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_rank_screen_leaves_overflow_to_the_eigenvalues():
    from brainmill.features._acm_kernels import surely_full_rank

    sure = np.ones(2, dtype=bool)
    surely_full_rank(np.stack([np.diag([np.inf, 1.0]), np.diag([1e308, 1e308])]), 1e-10, sure)
    assert not sure[0]  # an infinite trace
    X = np.random.default_rng(13).standard_normal((2, 1, 300)) * 1e160  # products overflow
    with pytest.raises(ValueError, match="singular"):
        augmented_covariances(X, 1, 1)


def test_rank_check_names_exactly_the_singular_epochs():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((9, 4, 200))
    for e in (2, 7):  # channel 3 a copy of channel 0 plus noise at 1e-7 of its scale
        X[e, 3] = X[e, 0] + 1e-7 * rng.standard_normal(200)
    products = LaggedProducts(X)
    with pytest.raises(ValueError, match=r"2 of 9 epochs \(e.g. \[2, 7\]\) have a singular "
                                         r"4-channel covariance"):
        products.check_full_rank()
    X[7, 3] = X[7, 0] + 1e-3 * rng.standard_normal(200)  # conditioned ~1e-7: accepted
    with pytest.raises(ValueError, match=r"1 of 9 epochs \(e.g. \[2\]\)"):
        LaggedProducts(X).check_full_rank()


def test_unknown_estimator_and_2d_input(signals):
    with pytest.raises(ValueError, match="unknown estimator 'scm'"):
        AugmentedCovariance(estimator="scm").fit(signals)
    with pytest.raises(ValueError, match=r"shape \(n_epochs, n_channels, n_times\); got 2-D"):
        AugmentedCovariance().fit(signals[0])


def test_transform_checks_channel_count(signals):
    acm = AugmentedCovariance(order=2).fit(signals)
    with pytest.raises(ValueError, match="3 channels but AugmentedCovariance was fitted with 4"):
        acm.transform(signals[:, :3])


# ------------------------------------------------------------ scikit-learn API conformance


class _SingleChannelView(AugmentedCovariance):
    """AugmentedCovariance seen through 2-D arrays, so scikit-learn's generic checks can run:
    (n_samples, n_features) is read as one-channel epochs of n_features samples and the
    (1, 1) matrices are returned flat. Every check exercises the real fit/transform."""

    def fit(self, X, y=None):
        X = self._as_epochs(X)
        super().fit(X, y)
        self.n_features_in_ = X.shape[-1]  # this view's features are the time samples
        return self

    def transform(self, X):
        X = self._as_epochs(X)
        if hasattr(self, "n_features_in_") and X.shape[-1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[-1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input")
        return super().transform(X).reshape(len(X), -1)

    @staticmethod
    def _as_epochs(X):
        if hasattr(X, "toarray"):
            raise TypeError("sparse input is not supported; AugmentedCovariance needs dense epochs")
        X = np.asarray(X)
        return X[:, None, :] if X.ndim == 2 else X

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.three_d_array = False
        return tags


_EXPECTED_FAILURES = {
    # one-channel one-sample "epochs" have no covariance; the error names the real problem
    "check_fit2d_1feature": "a 1-sample epoch has no covariance; error says 'samples'",
    "check_estimators_empty_data_messages": "empty epochs are reported in epoch terms",
    "check_complex_data": "complex epochs are rejected by the float64 conversion",
}


@parametrize_with_checks(
    [_SingleChannelView(order=1, lag=1, estimator="oas")],
    expected_failed_checks=lambda est: _EXPECTED_FAILURES,
)
def test_sklearn_conventions(estimator, check):
    check(estimator)


def test_clone_keeps_parameters():
    acm = AugmentedCovariance(order=8, lag=4, estimator="lwf")
    assert clone(acm).get_params() == {"order": 8, "lag": 4, "estimator": "lwf"}


def test_release_signals_keeps_the_grid_exact_and_refuses_what_needs_whole_epochs():
    from brainmill.features.augmented import LaggedProducts

    rng = np.random.default_rng(5)
    X = rng.standard_normal((7, 3, 120)) + 4.0
    orders, lags = [1, 2, 4], [1, 3]
    ref = LaggedProducts.for_grid(X, orders, lags)
    kept = LaggedProducts.for_grid(X, orders, lags)
    kept.release_signals(max(orders) * max(lags))
    assert kept.released and not ref.released
    for estimator in ("cov", "oas"):
        for (o, lg, a), (_, _, b) in zip(ref.iter_grid(orders, lags, estimator),
                                         kept.iter_grid(orders, lags, estimator), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{o}, {lg}, {estimator}")
    with pytest.raises(RuntimeError, match="release_signals"):
        kept.covariances(2, 1, "lwf")
    with pytest.raises(RuntimeError, match="release_signals"):
        kept.covariances(5, 3, "cov")  # spans 15 > 12 kept samples and needs a new delay


@pytest.mark.parametrize("grid", [False, True])
def test_kernel_threads_split_epochs_without_changing_a_bit(monkeypatch, grid):
    """The compiled kernels run on slices of the epochs in parallel threads: the matrices
    are the same, bit for bit, on one thread and on several."""
    import numba

    from brainmill.features import _acm_kernels

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one CPU: numba has a single thread, there is nothing to split")
    rng = np.random.default_rng(7)
    X = rng.standard_normal((9, 5, 160)) + 1.0
    monkeypatch.setattr(_acm_kernels, "PARALLEL_MIN_VALUES", 0)  # split even tiny work
    threads = numba.get_num_threads()

    def compute():  # the lagged products go over the same threads as the kernels
        if grid:
            products = LaggedProducts.for_grid(X, [1, 3, 4], [2, 5])
            return [products._prod, *(c for _, _, c in
                                       products.iter_grid([1, 3, 4], [2, 5], "oas"))]
        return [augmented_covariances(X, 6, 3, "cov")]

    try:
        numba.set_num_threads(1)
        alone = compute()
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        split = compute()
    finally:
        numba.set_num_threads(threads)
    for a, b in zip(alone, split, strict=True):
        np.testing.assert_array_equal(a, b)


def test_blas_is_held_to_one_thread_only_while_epochs_are_split(monkeypatch):
    """Products inside the epochs' threads must not also go over BLAS threads."""
    import numba
    from threadpoolctl import threadpool_info

    from brainmill.features import _acm_kernels

    def blas_threads():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    if numba.get_num_threads() < 2 or not blas_threads():
        pytest.skip("needs two numba threads and a BLAS that threadpoolctl can see")
    before = blas_threads()
    big, small = (100, _acm_kernels.PARALLEL_MIN_VALUES), (100, 1)
    with _acm_kernels.blas_held(*big):
        assert blas_threads() == {1}
    assert blas_threads() == before
    with _acm_kernels.blas_held(*small):  # not split
        assert blas_threads() == before
    # overlapping holds (as from two threads) that end in the other order: the last restores
    first, second = _acm_kernels.blas_held(*big), _acm_kernels.blas_held(*big)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert blas_threads() == {1}
    second.__exit__(None, None, None)
    assert blas_threads() == before


def test_blas_holds_begun_and_ended_on_different_threads_still_limit_and_restore():
    """threadpoolctl lets one thread at a time set OpenBLAS's process-wide pool and silently
    ignores the others. A hold begun on one thread while another controls it must still
    limit BLAS, and overlapping holds whose first ends first, on a thread that lives on,
    must still restore it."""
    import threading

    from threadpoolctl import threadpool_info

    from brainmill.features._acm_kernels import blas_one_thread

    def blas_threads():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    with blas_one_thread():  # loads every BLAS the hold sets (scipy's among them)
        pass
    before = blas_threads()
    if not before or max(before) < 2:
        pytest.skip("needs a BLAS that threadpoolctl sees at more than one thread")
    first_in, second_in, first_out, finish = (threading.Event() for _ in range(4))
    seen = {}

    def first():
        hold = blas_one_thread()
        hold.__enter__()
        first_in.set()
        second_in.wait()
        hold.__exit__(None, None, None)
        first_out.set()
        finish.wait()  # alive until the second hold has ended

    def second():
        first_in.wait()
        hold = blas_one_thread()
        hold.__enter__()
        second_in.set()
        first_out.wait()
        seen["after first"] = blas_threads()
        hold.__exit__(None, None, None)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    threads[1].join()
    try:
        assert seen["after first"] == {1}
        assert blas_threads() == before
    finally:
        finish.set()
        threads[0].join()

    def alone():  # a thread other than the one that set BLAS last
        with blas_one_thread():
            seen["pool"] = blas_threads()

    worker = threading.Thread(target=alone)
    worker.start()
    worker.join()
    assert seen["pool"] == {1}
    assert blas_threads() == before


def test_single_pass_rejects_an_unknown_estimator():
    """The single pass (22 channels, a progression) must not take an unknown estimator for
    OAS."""
    X = np.random.default_rng(0).standard_normal((4, 22, 481))
    for estimator in ("xyz", "LWF", "scm"):
        with pytest.raises(ValueError, match=f"unknown estimator '{estimator}'; valid: cov"):
            augmented_covariances(X, 8, 4, estimator)


def test_lagged_products_hold_blas_while_split(monkeypatch):
    """add_delays and the rank check ask for the hold with the size they split by, where
    the products use BLAS."""
    from brainmill.features import _acm_kernels
    from brainmill.features._small_products import uses_blas

    asked = []
    real = _acm_kernels.over_epochs

    def recording(call, n, work, hold_blas=False):
        if hold_blas:
            asked.append((n, work))
        return real(call, n, work, hold_blas)

    monkeypatch.setattr(_acm_kernels, "over_epochs", recording)
    X = np.random.default_rng(1).standard_normal((6, 3, 40))
    LaggedProducts.for_grid(X, [1, 2], [3]).check_full_rank()
    # delays 0 and 3; the rank check's kernel uses no BLAS, nor the register kernel
    assert asked == ([(6, X.size * 2)] if uses_blas(3) else [])


@pytest.mark.parametrize("n_channels", [16, 97])
def test_the_single_pass_holds_blas_only_where_its_products_use_it(monkeypatch, n_channels):
    """The register kernel takes the products up to MAX_CHANNELS channels where it is
    compiled in: no BLAS call there, so no hold (about 14 µs a call)."""
    from brainmill.features import _acm_kernels
    from brainmill.features._small_products import uses_blas

    asked = []
    real = _acm_kernels.over_claimed_epochs

    def recording(call, n, work, hold_blas=False):
        asked.append(hold_blas)
        return real(call, n, work, hold_blas)

    monkeypatch.setattr(_acm_kernels, "over_claimed_epochs", recording)
    X = np.random.default_rng(2).standard_normal((3, n_channels, 481))
    augmented_covariances(X, 8, 4, "oas")  # a single pass (16 channels or more)
    assert asked == [uses_blas(n_channels)]
    assert asked[0] or n_channels <= 96


@pytest.mark.parametrize("runner", ["over_epochs", "over_claimed_epochs"])
@pytest.mark.parametrize("on_caller", [False, True], ids=["pool call fails", "caller's call fails"])
def test_a_failing_call_waits_for_the_others(monkeypatch, runner, on_caller):
    """over_epochs and over_claimed_epochs re-raise only once every thread's call has
    finished (their memory may be freed), whether the failing call ran on a pool thread or on
    the calling thread (over_epochs': the last slice)."""
    import threading
    import time

    import numba

    from brainmill.features import _acm_kernels

    monkeypatch.setattr(_acm_kernels, "PARALLEL_MIN_VALUES", 0)
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)  # two calls on any machine
    finished = threading.Event()
    caller = threading.get_ident()

    def call(arg) -> None:  # a slice of the epochs, or the claims' counter
        mine = threading.get_ident() == caller
        if isinstance(arg, slice):
            assert mine == (arg.start == 2)
        if mine == on_caller:
            raise RuntimeError("this call fails")
        time.sleep(0.2)
        finished.set()

    with pytest.raises(RuntimeError, match="this call fails"):
        getattr(_acm_kernels, runner)(call, 4, 10)
    assert finished.is_set()


@njit(nogil=True)
def _claim_all(counter, claims, owner, me):
    """Claim epochs until none is left; count each claim, and which thread made it."""
    done = 0
    while True:
        ep = next_epoch(counter)
        if ep >= claims.shape[0]:
            return done
        claims[ep] += 1
        owner[ep] = me
        done += 1


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_claimed_epochs_are_each_computed_once(monkeypatch, threads):
    """Every thread of over_claimed_epochs gets the same counter; the epochs they claim from
    it cover every epoch exactly once, whatever the interleaving."""
    import threading

    import numba

    from brainmill.features import _acm_kernels

    monkeypatch.setattr(_acm_kernels, "PARALLEL_MIN_VALUES", 0)
    monkeypatch.setattr(numba, "get_num_threads", lambda: threads)
    n = 200_000  # enough claims for the threads to race on the counter
    claims, owner = np.zeros(n, dtype=np.int64), np.full(n, -1)
    counters, done = [], []
    lock = threading.Lock()

    def call(counter):
        with lock:
            counters.append(counter)
            me = len(counters) - 1
        done.append(_claim_all(counter, claims, owner, me))

    _acm_kernels.over_claimed_epochs(call, n, n)
    assert len(counters) == threads and all(c is counters[0] for c in counters)
    assert (claims == 1).all() and sum(done) == n
    assert sorted(np.bincount(owner, minlength=threads)) == sorted(done)
    assert counters[0][0] >= n  # each thread's last claim found nothing left


def test_claimed_epochs_run_on_one_thread_when_small(monkeypatch):
    from brainmill.features import _acm_kernels

    calls = []
    claims, owner = np.zeros(5, dtype=np.int64), np.full(5, -1)
    _acm_kernels.over_claimed_epochs(
        lambda counter: calls.append(_claim_all(counter, claims, owner, 0)), 5, 10)
    assert calls == [5] and (claims == 1).all()


def test_table_slots_are_laid_out_in_assembly_order():
    """Head slots go block row by block row, tail slots by j + m: each assembled block row
    reads two contiguous runs of the tables; every slot is used once, slot 0 is the zero."""
    from brainmill.features._acm_kernels import table_positions

    hpos, epos, n_head, n_tail = table_positions(5)
    used_h = [hpos[m, k] for k in range(1, 5) for m in range(5 - k)]
    used_e = [epos[m, s - m] for s in range(5, 0, -1) for m in range(s)]
    assert used_h == list(range(1, n_head)) and used_e == list(range(1, n_tail))
    assert hpos[:, 0].tolist() == [0] * 5


def _threaded_in_child(queue):
    from brainmill.features import _acm_kernels

    _acm_kernels.PARALLEL_MIN_VALUES = 0
    X = np.random.default_rng(2).standard_normal((8, 3, 100))
    queue.put(augmented_covariances(X, 3, 2).sum())


def test_kernel_threads_still_run_in_a_forked_child():
    """A thread pool made before a fork has no threads in the child; the child makes its own
    instead of waiting forever on the parent's (e.g. a multiprocessing worker)."""
    import multiprocessing
    import queue as queue_module

    import numba

    from brainmill.features import _acm_kernels

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one CPU: the kernels never use the pool")
    X = np.random.default_rng(2).standard_normal((8, 3, 100))
    saved = _acm_kernels.PARALLEL_MIN_VALUES
    try:
        _acm_kernels.PARALLEL_MIN_VALUES = 0
        expected = augmented_covariances(X, 3, 2).sum()  # the parent's pool now exists
    finally:
        _acm_kernels.PARALLEL_MIN_VALUES = saved
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=_threaded_in_child, args=(results,))
    child.start()
    try:
        got = results.get(timeout=60)
    except queue_module.Empty:
        child.kill()
        pytest.fail("the forked child hung on the parent's thread pool")
    child.join(10)
    assert got == expected
