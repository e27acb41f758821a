"""The single (order, lag) transform in one pass against the passes of LaggedProducts."""

import warnings

import numba
import numpy as np
import pytest

import brainmill.features._acm_single as acm_single
from brainmill.features.augmented import LaggedProducts, augmented_covariances, delay_embed


@pytest.fixture()
def passes(monkeypatch):
    """The epochs each call of the one-pass kernel computed (one call per thread)."""
    calls = []
    real = acm_single.single_pass

    def recording(*args):
        calls.append(real(*args))
        return calls[-1]

    monkeypatch.setattr(acm_single, "single_pass", recording)
    return calls


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


CASES = [(22, 1000, 8, 4), (16, 300, 4, 2), (17, 300, 10, 3), (20, 400, 6, 5), (16, 500, 11, 2),
         (16, 500, 12, 1), (18, 97, 5, 1), (21, 130, 4, 7), (23, 260, 9, 2), (2, 481, 8, 4),
         (3, 120, 4, 2), (8, 481, 8, 4), (13, 300, 10, 1)]


@pytest.mark.parametrize("n_channels,n_times,order,lag", CASES)
@pytest.mark.parametrize("estimator", ["cov", "oas"])
def test_one_pass_equals_the_passes_to_rounding(passes, n_channels, n_times, order, lag,
                                                estimator):
    """The recurrence adds in another order than the passes' tables: equal to rounding, each
    matrix exactly symmetric. The cases cover both ways of copying the transposed blocks
    (widths 64, 128, 176, …), channels ≡ 0–3 (mod 4) and 2–13 channels (taken by the single
    pass with the register kernel's products), lags below, at and above 4, and windows
    whose paired rows leave 0 to 31 samples."""
    from pyriemann.estimation import Covariances

    from brainmill.features._small_products import uses_blas

    if n_channels < 16 and uses_blas(n_channels):
        pytest.skip("below 16 channels the single pass needs the register kernel's products")
    rng = np.random.default_rng(order * 10 + lag)
    X = rng.standard_normal((4, n_channels, n_times)) * 1e-5 + 3e-5
    out = augmented_covariances(X, order, lag, estimator)
    assert sum(passes) == 4
    np.testing.assert_array_equal(out, out.transpose(0, 2, 1))
    products = LaggedProducts(X, [m * lag for m in range(order)])
    assert rel(out, products.covariances(order, lag, estimator)) <= 1e-14
    ref = Covariances(estimator).fit_transform(delay_embed(X, order, lag))
    assert rel(out, ref) <= 1e-10


def test_window_products_are_the_first_block_row():
    """``epoch_products`` over a window (``n_a < T``) sums the first ``n_a`` samples against
    their partners; over ``T`` it is ``R(m·e)``, all the samples that have one."""
    from brainmill.features._acm_products import (
        epoch_products,
        leaf_sources,
        progression_plan,
        progression_scratch,
        recombination_picks,
    )

    rng = np.random.default_rng(3)
    X = rng.standard_normal((2, 17, 301))
    order, lag = 8, 3
    levels, groups = progression_plan(order)
    sources, n_slots = leaf_sources(levels)
    x = X[1] - X[1].mean(axis=1, keepdims=True)
    for n_a in (301 - order * lag, 200, 97, 47, 12, 301):
        scratch = progression_scratch(17, 301, lag, levels, groups, n_slots, order)
        mean, total = np.empty(17), np.empty(17)
        prod = np.full((order, 17, 17), np.nan)
        epoch_products(X, 1, mean, True, lag, levels, groups, recombination_picks(levels),
                       sources, *scratch, n_a, total, prod)
        for m in range(order):
            last = min(n_a, 301 - m * lag)
            expected = x[:, :last] @ x[:, m * lag:m * lag + last].T
            np.testing.assert_allclose(prod[m], expected, rtol=0, atol=1e-12,
                                       err_msg=f"n_a {n_a}, delay {m * lag}")


@pytest.mark.parametrize("c,order", [(6, 5), (8, 4)])
def test_recurrence_assembly_equals_the_block_formula(c, order):
    """Every block ``(k, k+m)`` is its window product less the window means' term, and the
    last row of the matrix (written masked) leaves what follows it alone. Widths 30 and 32:
    the transposes copied down the column and gathered (``direct_mirror``)."""
    from brainmill.features._acm_chain import assemble_by_recurrence, chain_scratch, load_chain
    from brainmill.features._acm_kernels import direct_mirror

    assert direct_mirror(c * order) == (c * order == 30)
    rng = np.random.default_rng(4)
    lag, t = 3, 60
    x = rng.standard_normal((c, t))
    w, nwin = order * lag, t - order * lag
    first = np.stack([x[:, :nwin] @ x[:, m * lag:m * lag + nwin].T for m in range(order)])
    mu = np.stack([x[:, k * lag:k * lag + nwin].mean(axis=1) for k in range(order)])
    G, at, zt, mup = chain_scratch(c, order, lag)
    load_chain(first, x[:, :w], x[:, -w:], mu, G, at, zt, mup)
    out = np.full((2, order * c, order * c), np.nan)
    assemble_by_recurrence(G, at, zt, mup, order, lag, float(nwin), 0.5,
                           np.empty((order, c, c)), out[0])
    assert np.isnan(out[1]).all()
    for k in range(order):
        for b in range(order):
            lo, hi = min(k, b), max(k, b)
            win = x[:, lo * lag:lo * lag + nwin] @ x[:, hi * lag:hi * lag + nwin].T
            block = (win - nwin * np.outer(mu[lo], mu[hi])) * 0.5
            if k > b:
                block = block.T
            np.testing.assert_allclose(out[0, k * c:(k + 1) * c, b * c:(b + 1) * c],
                                       block, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(out[0], out[0].T)


def test_ledoit_wolf_and_few_channels_keep_the_passes(passes):
    from brainmill.features._small_products import uses_blas

    X = np.random.default_rng(1).standard_normal((3, 16, 300))
    augmented_covariances(X, 4, 2, "lwf")  # needs Σ‖x‖⁴ of the whole epochs
    augmented_covariances(X, 2, 2)  # fewer than 4 delays
    assert passes == []
    # below 16 channels the progression only with the register kernel's products
    augmented_covariances(X[:, :8], 4, 2)
    assert passes == ([] if uses_blas(8) else [3])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("route", ["one pass", "passes"])
def test_nan_or_inf_is_named_without_warnings(passes, monkeypatch, bad, route):
    """Both routes compute the channel means in the products' pass; a NaN or inf is still
    named, and nothing warns on the way (warnings as errors)."""
    import brainmill.features._acm_products as acm_products

    progressions = []
    real = acm_products.progression_products
    monkeypatch.setattr(acm_products, "progression_products",
                        lambda *a: progressions.append(len(a[0])) or real(*a))
    X = np.random.default_rng(2).standard_normal((5, 16, 300))
    X[3, 7, 100] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError,
                           match=r"1 NaN/inf values \(epochs \[3\], channels \[7\]\)"):
            if route == "one pass":
                augmented_covariances(X, 4, 2)
            else:
                LaggedProducts(X, [0, 2, 4, 6])
    assert (sum(passes), sum(progressions)) == ((5, 0) if route == "one pass" else (0, 5))


def test_rank_check_decides_unsure_epochs_by_their_eigenvalues(passes, monkeypatch):
    """Epochs the Cholesky bound cannot clear are decided by the eigenvalues of their own
    ``R(0)``: an ill-conditioned one passes, a singular one is named, wherever it lies in
    the thread split."""
    from brainmill.features import _acm_kernels

    monkeypatch.setattr(_acm_kernels, "PARALLEL_MIN_VALUES", 0)  # split even this small call
    rng = np.random.default_rng(3)
    X = rng.standard_normal((6, 16, 400))
    X[4, 2] *= 3e-5  # λ_min/λ_max about 1e-9: above rtol, but the bound does not clear it
    sure = np.empty(1, dtype=bool)
    xc = X[4] - X[4].mean(axis=-1, keepdims=True)
    eig = np.linalg.eigvalsh(xc @ xc.T)
    _acm_kernels.surely_full_rank((xc @ xc.T)[None], 1e-10, sure)
    assert not sure[0] and eig[0] > 1e-10 * eig[-1]
    out = augmented_covariances(X, 4, 3)
    assert np.isfinite(out).all()
    X[1, 5] = X[1, 4]  # a duplicated channel: singular
    with pytest.raises(ValueError, match=r"1 of 6 epochs \(e\.g\. \[1\]\) have a singular "
                                         r"16-channel covariance"):
        augmented_covariances(X, 4, 3)
    # OAS has no rank check and takes the same pass
    assert np.isfinite(augmented_covariances(X, 4, 3, "oas")).all()
    assert sum(passes) == 3 * 6


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 kernel threads")
def test_bits_do_not_depend_on_the_thread_split():
    X = np.random.default_rng(4).standard_normal((40, 16, 300))
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = augmented_covariances(X, 8, 2)
        numba.set_num_threads(2)
        split = augmented_covariances(X, 8, 2)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(one, split)


def test_the_rank_check_names_the_passes_singular_epochs(passes):
    """The one pass checks the first window's ``W_0(0)``, which ``R(0)`` dominates: the
    epochs the passes find singular are found, by name, with the same message."""
    rng = np.random.default_rng(6)
    X = rng.standard_normal((9, 16, 300))
    for e in (2, 7):  # channel 3 a copy of channel 0 plus noise at 1e-7 of its scale
        X[e, 3] = X[e, 0] + 1e-7 * rng.standard_normal(300)
    message = r"2 of 9 epochs \(e.g. \[2, 7\]\) have a singular 16-channel covariance"
    with pytest.raises(ValueError, match=message):
        augmented_covariances(X, 4, 2)
    assert sum(passes) == 9
    with pytest.raises(ValueError, match=message):
        LaggedProducts(X).check_full_rank()
    X -= X.mean(axis=1, keepdims=True)  # average reference: every epoch singular
    with pytest.raises(ValueError, match=r"9 of 9 epochs .* use estimator='oas'"):
        augmented_covariances(X, 4, 2)
    assert np.all(np.linalg.eigvalsh(augmented_covariances(X, 4, 2, "oas")) > 0)
