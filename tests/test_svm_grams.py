"""Precomputed SVC kernels against SVC's own, and the kernels they leave to SVC."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import SVC

from brainmill.svm_grams import PRECOMPUTABLE, svc_grams


@pytest.mark.parametrize("kernel", PRECOMPUTABLE)
@pytest.mark.parametrize("C", [0.5, 2.0])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_precomputed_decisions_equal_svc(kernel, C, n_classes):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((60, 300)) * 0.1
    y = np.digitize(z[:, 0] + 0.05 * rng.standard_normal(60),
                    np.quantile(z[:, 0], np.linspace(0, 1, n_classes + 1)[1:-1]))
    k_train, k_test = svc_grams([kernel], z[:42], z[42:])[kernel]
    assert k_train.shape == (42, 42) and k_test.shape == (18, 42)
    ours = SVC(C=C, kernel="precomputed").fit(k_train, y[:42])
    ref = SVC(C=C, kernel=kernel).fit(z[:42], y[:42])
    np.testing.assert_allclose(ours.decision_function(k_test), ref.decision_function(z[42:]),
                               rtol=1e-9, atol=1e-11)
    np.testing.assert_array_equal(ours.predict(k_test), ref.predict(z[42:]))


def test_scale_gamma_is_svcs_and_unknown_kernels_are_left_out():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((20, 7)) * 3.0
    grams = svc_grams(["rbf", "rbf", "my_kernel"], z[:15], z[15:])
    assert list(grams) == ["rbf"]
    gamma = SVC(kernel="rbf").fit(z[:15], np.arange(15) % 2)._gamma
    d2 = ((z[15:, None, :] - z[None, :15, :]) ** 2).sum(-1)
    np.testing.assert_allclose(grams["rbf"][1], np.exp(-gamma * d2), rtol=1e-12)
    # constant training rows: Var 0, SVC falls back to gamma 1; the test rows differ
    const, other = np.ones((6, 3)), np.full((2, 3), 1.5)
    k_test = svc_grams(["rbf"], const, other)["rbf"][1]
    assert SVC(kernel="rbf").fit(const, np.arange(6) % 2)._gamma == 1.0
    np.testing.assert_allclose(k_test, np.exp(-1.0 * 3 * 0.5**2))
