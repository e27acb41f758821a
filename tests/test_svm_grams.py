"""Precomputed SVC kernels against SVC's own, and the kernels they leave to SVC."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import SVC

from brainmill.svm_grams import PRECOMPUTABLE, svc_grams


@pytest.mark.parametrize("kernel", PRECOMPUTABLE)
@pytest.mark.parametrize("C", [0.5, 2.0])
def test_precomputed_decisions_equal_svc(kernel, C):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((50, 300)) * 0.1
    y = (z[:, 0] + 0.05 * rng.standard_normal(50) > 0).astype(int)
    k_train, k_test = svc_grams([kernel], z[:36], z[36:])[kernel]
    assert k_train.shape == (36, 36) and k_test.shape == (14, 36)
    ours = SVC(C=C, kernel="precomputed").fit(k_train, y[:36]).decision_function(k_test)
    ref = SVC(C=C, kernel=kernel).fit(z[:36], y[:36]).decision_function(z[36:])
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-11)


def test_scale_gamma_is_svcs_and_unknown_kernels_are_left_out():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((20, 7)) * 3.0
    grams = svc_grams(["rbf", "rbf", "my_kernel"], z[:15], z[15:])
    assert list(grams) == ["rbf"]
    gamma = SVC(kernel="rbf").fit(z[:15], np.arange(15) % 2)._gamma
    d2 = ((z[15:, None, :] - z[None, :15, :]) ** 2).sum(-1)
    np.testing.assert_allclose(grams["rbf"][1], np.exp(-gamma * d2), rtol=1e-12)
    const = np.ones((6, 3))
    assert np.allclose(svc_grams(["rbf"], const, const)["rbf"][0], 1.0)  # Var 0: gamma 1
