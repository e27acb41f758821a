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


@pytest.mark.parametrize("n_channels,n_times,order,lag", [
    (22, 1000, 8, 4), (16, 300, 4, 2), (17, 300, 10, 3), (20, 400, 6, 5), (16, 500, 11, 2),
    (16, 500, 12, 1), (18, 97, 5, 1)])
@pytest.mark.parametrize("estimator", ["cov", "oas"])
def test_one_pass_equals_the_passes_bit_for_bit(passes, n_channels, n_times, order, lag,
                                                estimator):
    from pyriemann.estimation import Covariances

    rng = np.random.default_rng(order * 10 + lag)
    X = rng.standard_normal((4, n_channels, n_times)) * 1e-5 + 3e-5
    out = augmented_covariances(X, order, lag, estimator)
    assert sum(passes) == 4
    products = LaggedProducts(X, [m * lag for m in range(order)])
    np.testing.assert_array_equal(out, products.covariances(order, lag, estimator))
    ref = Covariances(estimator).fit_transform(delay_embed(X, order, lag))
    assert rel(out, ref) <= 1e-10


def test_ledoit_wolf_and_few_channels_keep_the_passes(passes):
    X = np.random.default_rng(1).standard_normal((3, 16, 300))
    augmented_covariances(X, 4, 2, "lwf")  # needs Σ‖x‖⁴ of the whole epochs
    augmented_covariances(X[:, :8], 4, 2)  # no progression below 16 channels
    augmented_covariances(X, 2, 2)  # fewer than 4 delays
    assert passes == []


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
