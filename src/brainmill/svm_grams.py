"""SVC kernel matrices computed once and shared by every ``C`` of an inner-CV split.

``SVC(kernel=k, C=c)`` computes the same kernel matrix for every ``C``, and pays scikit-learn's
input validation on the full feature matrix each time. The nested ACM search fits several
``C`` per (order, lag, inner split), so it computes each kernel's Gram matrices once
(scikit-learn's own kernel functions, with ``SVC``'s defaults: ``gamma="scale"``, ``degree=3``,
``coef0=0``) and fits ``SVC(kernel="precomputed")``. The decision values equal those of
``SVC(kernel=k)`` up to rounding (up to ~1e-12; libsvm sums the products in its own
order), which the tests check for two and three classes; a near-tie between two decision
values could therefore rank differently, and ``tests/test_acm.py`` checks that the nested
search still chooses what ``GridSearchCV`` chooses on its data.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics.pairwise import (
    linear_kernel,
    polynomial_kernel,
    rbf_kernel,
    sigmoid_kernel,
)

__all__ = ["PRECOMPUTABLE", "svc_grams"]

#: ``SVC``'s kernels by name, as ``(a, b, gamma) -> Gram matrix`` with ``SVC``'s defaults
_KERNELS = {
    "linear": lambda a, b, g: linear_kernel(a, b),
    "rbf": lambda a, b, g: rbf_kernel(a, b, gamma=g),
    "poly": lambda a, b, g: polynomial_kernel(a, b, degree=3, gamma=g, coef0=0.0),
    "sigmoid": lambda a, b, g: sigmoid_kernel(a, b, gamma=g, coef0=0.0),
}
#: SVC kernels given by name whose Gram matrices :func:`svc_grams` computes
PRECOMPUTABLE = tuple(_KERNELS)


def _scale_gamma(z_train: np.ndarray) -> float:
    """``SVC(gamma="scale")``: 1 / (n_features · Var(z_train))."""
    var = z_train.var()
    return 1.0 / (z_train.shape[1] * var) if var != 0 else 1.0


def svc_grams(
    kernels, z_train: np.ndarray, z_test: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Gram matrices of ``z_train`` with itself and of ``z_test`` with ``z_train``, per kernel.

    Parameters
    ----------
    kernels : iterable of str
        SVC kernel names; those outside :data:`PRECOMPUTABLE` are left out of the result.
    z_train : ndarray, shape (n_train, n_features)
    z_test : ndarray, shape (n_test, n_features)

    Returns
    -------
    dict
        ``kernel -> (K_train (n_train, n_train), K_test (n_test, n_train))``, for
        ``SVC(kernel="precomputed").fit(K_train, y).decision_function(K_test)``.
    """
    gamma = _scale_gamma(z_train)
    return {k: (_KERNELS[k](z_train, z_train, gamma), _KERNELS[k](z_test, z_train, gamma))
            for k in dict.fromkeys(kernels) if k in _KERNELS}
