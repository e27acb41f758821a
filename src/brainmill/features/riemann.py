"""pyriemann's affine-invariant mean and tangent space, with the matrix logarithms over threads.

The nested order/lag search of :class:`brainmill.acm.ACMClassifier` spends most of its time in
the Riemannian mean of :class:`pyriemann.tangentspace.TangentSpace`: every iteration of
:func:`pyriemann.geometry.mean.mean_riemann` takes one ``eigh`` per training matrix (the
logarithm of ``M^{-1/2} C_i M^{-1/2}``), and the projection one more per matrix. Those
decompositions are independent, and numpy's ``eigh`` releases the GIL, so this module runs
them on contiguous slices of the stack, one per thread.

Every step is pyriemann's, operation for operation (the same ``eigh``, the same products in
the same order, ``V (f(λ) Vᵀ)``, the same ``tensordot`` for the weighted sum, the same step
size rule and stopping test), so the results are pyriemann's bit for bit: the test suite
compares them with :func:`numpy.testing.assert_array_equal`. The one shortcut is that
``M^{1/2}`` and ``M^{-1/2}`` come from one ``eigh`` of ``M`` where pyriemann takes two of the
same matrix. Threads: ``numba.get_num_threads()``, through the ACM kernels' own
:func:`~brainmill.features._acm_kernels.over_epochs` (so small stacks stay on one thread).
While a stack goes over threads, BLAS runs one thread, so the two levels do not compete for
the cores; for matrices large enough that OpenBLAS would split a product over threads (about
200 × 200 here), that changes the last bits (~1e-15 relative) against pyriemann run with
several BLAS threads, not against pyriemann run with one.
"""

from __future__ import annotations

import warnings

import numpy as np
from pyriemann.tangentspace import TangentSpace

try:
    from pyriemann.geometry.tangentspace import upper
except ImportError:  # pyriemann < 0.12
    from pyriemann.utils.tangentspace import upper
from ._acm_kernels import blas_held, over_epochs

__all__ = ["ThreadedTangentSpace", "mean_riemann"]


#: Matrices decomposed at a time in :func:`_logm_congruence`: its temporaries are this many
#: matrices, not the stack (whose four stack-sized temporaries made most of the nested
#: search's peak memory).
LOGM_CHUNK = 8


def _eigh_work(n_matrices: int, n: int) -> int:
    """Work of ``n_matrices`` ``eigh`` calls of ``n × n`` (∝ n³), for :func:`over_epochs`."""
    return n_matrices * n**3


def _blas(n_matrices: int, n: int):
    """BLAS held to one thread where the stack's logarithms go over threads (for the whole
    mean: see :func:`~brainmill.features._acm_kernels.blas_held`), else untouched."""
    return blas_held(n_matrices, _eigh_work(n_matrices, n))


def _rows(X: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """``X[rows]`` (a copy), or ``X`` itself for ``rows=None``."""
    return X if rows is None else X[rows]


def _operator(w: np.ndarray, v: np.ndarray, f, out: np.ndarray | None = None) -> np.ndarray:
    """``V (f(λ) Vᴴ)``: pyriemann's ``_matrix_operator`` after its ``eigh``."""
    vh = (np.conj(v) if np.iscomplexobj(v) else v).swapaxes(-1, -2)  # a view when real
    return np.matmul(v, f(w)[..., None] * vh, out=out)


def _check_finite(X: np.ndarray) -> None:
    finite = np.isfinite(X)
    if not np.all(finite):
        bad = int((~finite.reshape(-1, *X.shape[-2:]).all(axis=(-2, -1))).sum())
        raise ValueError(f"Matrices must be positive definite: {bad} of "
                         f"{finite.size // (X.shape[-1] * X.shape[-2])} hold NaN or inf. "
                         "Regularise them (e.g. estimator='oas') or drop the epochs they come "
                         "from.")


def _matrix_function(M: np.ndarray, f) -> np.ndarray:
    """pyriemann's ``_matrix_operator`` of one matrix (its decomposition freed on return)."""
    _check_finite(M)
    w, v = np.linalg.eigh(M)
    return _operator(w, v, f)


def _inverse_sqrt(x: np.ndarray) -> np.ndarray:
    return 1.0 / np.sqrt(x)  # pyriemann's, so the rounding is the same


def _sqrt_pair(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``M^{1/2}`` and ``M^{-1/2}`` from one ``eigh``."""
    _check_finite(M)
    w, v = np.linalg.eigh(M)
    return _operator(w, v, np.sqrt), _operator(w, v, _inverse_sqrt)


def _logm_congruence(X: np.ndarray, W: np.ndarray, rows: np.ndarray | None = None
                     ) -> np.ndarray:
    """``logm(W @ X @ W)`` of every matrix of the stack, on slices over threads.

    Parameters
    ----------
    X : ndarray, shape (n_all, n, n)
        SPD matrices, finite (the callers check them once).
    W : ndarray, shape (n, n)
        Symmetric matrix (here ``M^{-1/2}``).
    rows : int ndarray, shape (n_matrices,), optional
        Use ``X[rows]``, gathered a chunk at a time.

    Returns
    -------
    ndarray, shape (n_matrices, n, n)
        Equal to pyriemann's ``logm(W @ X @ W)``.
    """
    n_matrices, n = len(X if rows is None else rows), X.shape[1]
    out = np.empty((n_matrices, n, n), dtype=np.result_type(X, W))

    def work(part: slice) -> None:
        # a few matrices at a time: the temporaries (W X W, the eigenvectors, f(Λ) Vᵀ) stay
        # small beside ``out``; each matrix gets the same operations whatever the chunk
        for start in range(part.start, part.stop, LOGM_CHUNK):
            chunk = slice(start, min(part.stop, start + LOGM_CHUNK))
            a = W @ (X[chunk] if rows is None else X[rows[chunk]]) @ W
            w, v = np.linalg.eigh(a)
            del a
            _operator(w, v, np.log, out=out[chunk])

    over_epochs(work, n_matrices, _eigh_work(n_matrices, n))
    return out


def mean_riemann(X: np.ndarray, tol: float = 10e-9, maxiter: int = 50,
                 sample_weight: np.ndarray | None = None, rows: np.ndarray | None = None
                 ) -> np.ndarray:
    """pyriemann's :func:`~pyriemann.geometry.mean.mean_riemann` (Euclidean start), threaded.

    Parameters
    ----------
    X : ndarray, shape (n_matrices, n, n)
        SPD matrices.
    tol, maxiter : float, int
        pyriemann's stopping rule: ‖J‖_F ≤ tol or step ≤ tol, at most ``maxiter`` steps.
    sample_weight : ndarray, shape (n_matrices,), optional
        Weights, normalised to sum 1 (default: equal).
    rows : int ndarray, optional
        The mean of ``X[rows]`` (the same bits), without holding that copy while iterating
        (the finite check and the Euclidean start share one brief copy of the rows).

    Returns
    -------
    ndarray, shape (n, n)
        The affine-invariant mean, equal to pyriemann's.
    """
    n_matrices, n = len(X if rows is None else rows), X.shape[1]
    selected = _rows(X, rows)  # one copy of the rows: checked, then averaged for the start
    _check_finite(selected)
    if sample_weight is None:
        weight = np.ones(n_matrices, dtype=float)
    else:
        weight = np.asarray(sample_weight)
        if weight.shape != (n_matrices,):
            raise ValueError(f"sample_weight must have shape ({n_matrices},), got "
                             f"{weight.shape}")
    weight = weight / np.sum(weight)
    # the starting point: pyriemann's mean_euclid, given the normalised weights, which it
    # normalises again (a sum of n copies of 1/n need not be exactly 1)
    M = np.tensordot(weight / np.sum(weight), selected, axes=([0], [-3]))
    del selected  # not held while the mean iterates
    nu, tau = 1.0, np.finfo(np.float64).max
    with _blas(n_matrices, n):
        for _ in range(maxiter):
            M12, Mm12 = _sqrt_pair(M)
            J = np.tensordot(weight, _logm_congruence(X, Mm12, rows), axes=([0], [0]))
            M = M12 @ _matrix_function(nu * J, np.exp) @ M12
            crit = np.linalg.matrix_norm(J, ord="fro")
            h = nu * crit
            if h < tau:
                nu, tau = 0.95 * nu, h
            else:
                nu = 0.5 * nu
            if crit <= tol or nu <= tol:
                break
        else:
            warnings.warn("Convergence not reached", stacklevel=2)
    return M


class ThreadedTangentSpace(TangentSpace):
    """:class:`pyriemann.tangentspace.TangentSpace` whose ``riemann`` mean and map use threads.

    Same parameters, attributes and results as pyriemann's (bit for bit; see the module
    docstring). Any other metric, or ``tsupdate=True``, is pyriemann's own code.
    """

    def _threaded(self) -> bool:
        return self.metric == "riemann" and not self.tsupdate

    def fit(self, X, y=None, sample_weight=None):
        if not self._threaded():
            return super().fit(X, y, sample_weight=sample_weight)
        self._metric_mean, self._metric_map = "riemann", "riemann"
        self.reference_ = mean_riemann(np.asarray(X), sample_weight=sample_weight)
        return self

    def fit_transform(self, X, y=None, sample_weight=None):
        # pyriemann's fit_transform computes its own mean rather than calling fit, and a
        # Pipeline calls fit_transform on every step but the last
        if not self._threaded():
            return super().fit_transform(X, y, sample_weight=sample_weight)
        return self.fit(X, y, sample_weight=sample_weight).transform(X)

    def transform(self, X):
        if not self._threaded():
            return super().transform(X)
        return self.transform_rows(X, None)

    def fit_rows(self, X: np.ndarray, rows: np.ndarray) -> ThreadedTangentSpace:
        """``fit(X[rows])`` (the same bits) without holding the copy ``X[rows]`` while the
        mean iterates (its finite check and start share one brief copy of the rows).

        For a caller that fits and maps many row subsets of one stack, as an inner CV does.
        """
        if not self._threaded():
            return self.fit(X[rows])
        self._metric_mean, self._metric_map = "riemann", "riemann"
        self.reference_ = mean_riemann(np.asarray(X), rows=rows)
        return self

    def transform_rows(self, X: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        """``transform(X[rows])`` (the same bits), the rows gathered a chunk at a time (the
        finite check copies them briefly); ``rows=None`` for all of ``X``."""
        if not self._threaded():
            return self.transform(_rows(X, rows))
        self._check_reference_points(X)
        X = np.asarray(X)
        _check_finite(_rows(X, rows))
        with _blas(len(X if rows is None else rows), X.shape[1]):
            return upper(_logm_congruence(X, _matrix_function(self.reference_, _inverse_sqrt),
                                          rows))
