"""The threaded Riemannian mean and tangent space against pyriemann's, bit for bit."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from pyriemann.geometry.mean import mean_riemann as pyriemann_mean
from pyriemann.tangentspace import TangentSpace
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from threadpoolctl import threadpool_limits

from brainmill.features.riemann import ThreadedTangentSpace, _logm_congruence, mean_riemann


def spd(n: int, p: int, seed: int = 0) -> np.ndarray:
    a = np.random.default_rng(seed).standard_normal((n, p, 3 * p))
    return a @ a.transpose(0, 2, 1) / (3 * p)


@pytest.fixture(params=[1, 2], ids=["1 thread", "2 threads"])
def threads(request):
    before = numba.get_num_threads()
    numba.set_num_threads(min(request.param, numba.config.NUMBA_NUM_THREADS))
    yield request.param
    numba.set_num_threads(before)


# 7 matrices: n copies of 1/n do not sum to exactly 1, which pyriemann's start depends on
@pytest.mark.parametrize("n, p", [(7, 5), (24, 44), (30, 22), (12, 88)])
def test_mean_and_tangent_space_equal_pyriemann_bit_for_bit(n, p, threads):
    X = spd(n, p)
    with threadpool_limits(1, "blas"):
        np.testing.assert_array_equal(mean_riemann(X), pyriemann_mean(X))
        w = np.random.default_rng(1).uniform(0.5, 2.0, n)
        np.testing.assert_array_equal(mean_riemann(X, sample_weight=w),
                                      pyriemann_mean(X, sample_weight=w))
        ours = ThreadedTangentSpace().fit(X[: n // 2 + 1])
        ref = TangentSpace().fit(X[: n // 2 + 1])
        np.testing.assert_array_equal(ours.reference_, ref.reference_)
        np.testing.assert_array_equal(ours.transform(X), ref.transform(X))


def test_fit_transform_is_threaded_and_equal_pyriemann(monkeypatch):
    # a Pipeline calls fit_transform, which pyriemann implements without fit
    from brainmill.features import riemann

    X = spd(20, 22, seed=2)
    calls = []
    monkeypatch.setattr(riemann, "mean_riemann",
                        lambda *a, **k: calls.append(1) or mean_riemann(*a, **k))
    w = np.random.default_rng(4).uniform(0.5, 2.0, 20)
    pipe = make_pipeline(ThreadedTangentSpace(), LogisticRegression())
    with threadpool_limits(1, "blas"):
        pipe.fit(X, np.arange(20) % 2)
        ours = ThreadedTangentSpace().fit_transform(X, sample_weight=w)
        ref = TangentSpace().fit_transform(X, sample_weight=w)
    assert len(calls) == 2
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(
        ThreadedTangentSpace(metric="logeuclid").fit_transform(X),
        TangentSpace(metric="logeuclid").fit_transform(X))


def test_threads_do_not_change_the_result():
    X = spd(40, 66, seed=3)
    W = np.linalg.inv(np.linalg.cholesky(X.mean(0)))
    W = (W + W.T) / 2
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _logm_congruence(X, W), mean_riemann(X)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = _logm_congruence(X, W), mean_riemann(X)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


def test_other_metrics_and_tsupdate_are_pyriemanns():
    X = spd(10, 6)
    for kwargs in ({"metric": "logeuclid"}, {"metric": "riemann", "tsupdate": True}):
        np.testing.assert_array_equal(ThreadedTangentSpace(**kwargs).fit(X[:6]).transform(X),
                                      TangentSpace(**kwargs).fit(X[:6]).transform(X))
    est = clone(ThreadedTangentSpace(metric="logeuclid"))
    assert est.get_params()["metric"] == "logeuclid"


def test_bad_input():
    X = spd(6, 4)
    X[2, 0, 0] = np.nan
    with pytest.raises(ValueError, match="positive definite: 1 of 6 hold NaN or inf"):
        ThreadedTangentSpace().fit(X)
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(6,\)"):
        mean_riemann(spd(6, 4), sample_weight=np.ones(5))
    with pytest.warns(UserWarning, match="Convergence not reached"):
        mean_riemann(spd(6, 4), maxiter=1)


def test_rows_variants_equal_fitting_and_mapping_the_copied_rows(threads):
    """fit_rows / transform_rows gather the rows a chunk at a time: same bits as the copy."""
    X = spd(30, 22, seed=5)
    rows = np.random.default_rng(6).permutation(30)[:19]  # unordered, ragged chunks of 8
    with threadpool_limits(1, "blas"):
        ours = ThreadedTangentSpace().fit_rows(X, rows)
        ref = TangentSpace().fit(X[rows])
        np.testing.assert_array_equal(ours.reference_, ref.reference_)
        np.testing.assert_array_equal(ours.transform_rows(X, rows), ref.transform(X[rows]))
        np.testing.assert_array_equal(ours.transform_rows(X, None), ref.transform(X))
    logeuclid = ThreadedTangentSpace(metric="logeuclid").fit_rows(X, rows)  # pyriemann's path
    np.testing.assert_array_equal(logeuclid.transform_rows(X, rows),
                                  TangentSpace(metric="logeuclid").fit(X[rows]).transform(X[rows]))
