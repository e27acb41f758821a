"""Functional connectivity from ROI time series, with nilearn's ``ConnectivityMeasure``.

Edges are ordered as nilearn vectorises a symmetric matrix (``sym_matrix_to_vec``: the lower
triangle row by row, i.e. the upper triangle column by column: (0, 1), (0, 2), (1, 2),
(0, 3), …), so that :func:`upper_triangle` of a matrix and :class:`ConnectivityFeatures` line
up edge for edge.

A constant ROI (zero variance, e.g. outside the brain mask of a subject: cleaning leaves it
all zeros) has no connectivity to estimate: its edges are 0 for every kind and estimator, and
the other edges are those of the estimator applied to the remaining ROIs alone (the sample
correlation of a constant is 0/0 and the empirical covariance is singular, so nilearn would
give NaN or fail).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ..errors import DataError

KINDS = ("correlation", "partial correlation", "tangent", "covariance", "precision")
#: covariance estimators: nilearn's default (Ledoit-Wolf shrinkage) or the sample covariance
#: (then ``kind="correlation"`` is Pearson's r, as ``np.corrcoef``).
ESTIMATORS = ("ledoit_wolf", "empirical")


def _check_kind(kind: str, allow_tangent: bool = True) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if kind == "tangent" and not allow_tangent:
        raise ValueError("kind 'tangent' needs a group of subjects: use ConnectivityFeatures")


def _measure(kind: str, estimator: str, vectorize: bool):
    from nilearn.connectome import ConnectivityMeasure
    from sklearn.covariance import EmpiricalCovariance, LedoitWolf

    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}; got {estimator!r}")
    cov = (LedoitWolf(store_precision=False) if estimator == "ledoit_wolf"
           else EmpiricalCovariance(store_precision=False))
    return ConnectivityMeasure(cov_estimator=cov, kind=kind, vectorize=vectorize,
                               discard_diagonal=vectorize)


#: kinds whose matrices have a unit diagonal (a constant ROI keeps its 1 there)
_UNIT_DIAGONAL = ("correlation", "partial correlation")


def constant_rois(data: np.ndarray) -> np.ndarray:
    """Which ROIs (columns) of ``(n_timepoints, n_rois)`` data are constant.

    Returns
    -------
    ndarray of bool, shape (n_rois,)
        True where every timepoint holds the same value (zero variance).
    """
    data = np.asarray(data)
    return np.ptp(data, axis=0) == 0 if len(data) else np.zeros(data.shape[1], dtype=bool)


def _subject_connectivity(x: np.ndarray, kind: str, estimator: str,
                          vectorize: bool) -> np.ndarray:
    """One subject's matrix (or edge vector) of a per-subject kind; constant ROIs give 0.

    Without a constant ROI this is nilearn's ``fit_transform([x])[0]`` itself. Otherwise the
    kept ROIs' block is nilearn's result on those ROIs alone; the constant ROIs' edges are 0
    and their diagonal is 1 for (partial) correlation, 0 for covariance and precision.
    """
    constant = constant_rois(x)
    if not constant.any():
        return _measure(kind, estimator, vectorize=vectorize).fit_transform([x])[0]
    keep = np.flatnonzero(~constant)
    matrix = np.zeros((x.shape[1], x.shape[1]))
    if keep.size:
        block = _measure(kind, estimator, vectorize=False).fit_transform([x[:, keep]])[0]
        matrix[np.ix_(keep, keep)] = block
    dropped = np.flatnonzero(constant)
    matrix[dropped, dropped] = 1.0 if kind in _UNIT_DIAGONAL else 0.0
    if not vectorize:
        return matrix
    from nilearn.connectome import sym_matrix_to_vec

    # nilearn's own vectorisation, so that kept edges equal its vector on the kept ROIs
    return sym_matrix_to_vec(matrix, discard_diagonal=True)


def _check_subjects(X: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    subjects = [np.asarray(x, dtype=np.float64) for x in X]
    if not subjects:
        raise ValueError("no subjects given")
    bad = [i for i, x in enumerate(subjects) if x.ndim != 2]
    if bad:
        raise ValueError(f"subject(s) {bad[:5]} are not 2-D (n_timepoints, n_rois) arrays")
    widths = {x.shape[1] for x in subjects}
    if len(widths) > 1:
        raise ValueError(f"subjects have different numbers of ROIs: {sorted(widths)}")
    short = [i for i, x in enumerate(subjects) if x.shape[0] < 2]
    if short:
        raise ValueError(f"subject(s) {short[:5]} have fewer than 2 timepoints")
    return subjects


def connectivity_matrix(
    data: np.ndarray,
    kind: str = "correlation",
    estimator: Literal["ledoit_wolf", "empirical"] = "ledoit_wolf",
) -> np.ndarray:
    """One subject's connectivity matrix.

    Parameters
    ----------
    data : ndarray, shape (n_timepoints, n_rois)
    kind : str
        One of :data:`KINDS` except ``"tangent"`` (which needs a group).
    estimator : {"ledoit_wolf", "empirical"}
        Covariance estimator (see :data:`ESTIMATORS`).

    Returns
    -------
    ndarray, shape (n_rois, n_rois)
        Symmetric; ``ConnectivityMeasure(kind=kind).fit_transform([data])[0]``. A constant
        ROI (see :func:`constant_rois`) has zero edges, and 1 (correlation kinds) or 0
        (covariance, precision) on the diagonal; the other entries are then those of the
        same measure on the non-constant ROIs alone.
    """
    _check_kind(kind, allow_tangent=False)
    (x,) = _check_subjects([data])
    return _subject_connectivity(x, kind, estimator, vectorize=False)


def upper_triangle(matrices: np.ndarray, k: int = 1) -> np.ndarray:
    """Edges of (stacks of) symmetric matrices.

    Parameters
    ----------
    matrices : ndarray, shape (..., n_rois, n_rois)
    k : int
        1 leaves the diagonal out, 0 keeps it.

    Returns
    -------
    ndarray, shape (..., n_edges)
        ``n_edges = n_rois (n_rois - 1) / 2`` for ``k=1``, in nilearn's order (module
        docstring). Unlike nilearn with the diagonal kept, nothing is rescaled.
    """
    matrices = np.asarray(matrices)
    if matrices.ndim < 2 or matrices.shape[-1] != matrices.shape[-2]:
        raise ValueError(f"expected (..., n, n) square matrices, got {matrices.shape}")
    if k not in (0, 1):
        raise ValueError(f"k must be 0 (keep the diagonal) or 1 (drop it), got {k}")
    rows, cols = np.tril_indices(matrices.shape[-1], -k)
    return matrices[..., cols, rows]


def n_rois_from_edges(n_edges: int) -> int:
    """The ``n_rois`` with ``n_rois (n_rois - 1) / 2 == n_edges``; ValueError if none."""
    n = int(round((1 + np.sqrt(1 + 8 * n_edges)) / 2))
    if n * (n - 1) // 2 != n_edges:
        raise ValueError(f"{n_edges} is not n(n-1)/2 for any number of ROIs n")
    return n


def matrix_from_upper(
    vectors: np.ndarray, n_rois: int, diagonal: float | np.ndarray = 1.0
) -> np.ndarray:
    """Symmetric matrices from edge vectors: the inverse of ``upper_triangle(·, k=1)``.

    Parameters
    ----------
    vectors : ndarray, shape (..., n_edges)
        ``n_edges = n_rois (n_rois - 1) / 2``.
    n_rois : int
    diagonal : float or ndarray, shape (..., n_rois)
        Value(s) for the diagonal (1 for correlation matrices).

    Returns
    -------
    ndarray, shape (..., n_rois, n_rois)
    """
    vectors = np.asarray(vectors)
    n_edges = n_rois * (n_rois - 1) // 2
    if vectors.ndim < 1 or vectors.shape[-1] != n_edges:
        raise ValueError(f"expected (..., {n_edges}) edge vectors for {n_rois} ROIs, got "
                         f"{vectors.shape}")
    out = np.zeros((*vectors.shape[:-1], n_rois, n_rois),
                   dtype=np.result_type(vectors, np.asarray(diagonal), np.float64))
    rows, cols = np.tril_indices(n_rois, -1)
    out[..., cols, rows] = vectors
    out[..., rows, cols] = vectors
    diag = np.arange(n_rois)
    out[..., diag, diag] = diagonal
    return out


class ConnectivityFeatures(BaseEstimator, TransformerMixin):
    """Subjects' ROI time series → vectorised connectivity, as a scikit-learn transformer.

    Wraps ``nilearn.connectome.ConnectivityMeasure(kind, vectorize=True,
    discard_diagonal=True)``. For ``kind="tangent"`` the group mean is estimated in
    :meth:`fit` only and :meth:`transform` projects new subjects at that mean, so the
    transformer can sit inside a cross-validated pipeline without leaking test subjects;
    a single new subject can be transformed too (nilearn alone refuses that). The other kinds
    are each subject's own matrix (nothing is fitted), with a constant ROI's edges 0 as in
    :func:`connectivity_matrix`. The tangent space needs positive definite covariances,
    which the ``"empirical"`` estimator cannot give a subject with a constant ROI: that is a
    :class:`~brainmill.errors.DataError`.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    estimator : {"ledoit_wolf", "empirical"}
        Covariance estimator (see :data:`ESTIMATORS`).

    Attributes
    ----------
    measure_ : nilearn ConnectivityMeasure or None
        The measure fitted on the training subjects for ``kind="tangent"`` (its ``mean_`` is
        the group mean); None for the other kinds.
    n_rois_ : int
    """

    def __init__(self, kind: str = "correlation",
                 estimator: Literal["ledoit_wolf", "empirical"] = "ledoit_wolf") -> None:
        self.kind = kind
        self.estimator = estimator

    def fit(self, X: Sequence[np.ndarray], y=None) -> ConnectivityFeatures:
        """Fit on a list of (n_timepoints_i, n_rois) arrays (tangent: the group mean)."""
        _check_kind(self.kind)
        subjects = _check_subjects(X)
        if self.kind == "tangent":
            self._check_tangent(subjects)
            self.measure_ = _measure(self.kind, self.estimator, vectorize=True).fit(subjects)
        else:
            self.measure_ = None
        self.n_rois_ = subjects[0].shape[1]
        return self

    def transform(self, X: Sequence[np.ndarray]) -> np.ndarray:
        """Edges of each subject, shape (n_subjects, n_rois (n_rois - 1) / 2)."""
        if not hasattr(self, "measure_"):
            raise ValueError("ConnectivityFeatures is not fitted; call fit first")
        subjects = _check_subjects(X)
        if subjects[0].shape[1] != self.n_rois_:
            raise ValueError(f"fitted on {self.n_rois_} ROIs, got {subjects[0].shape[1]}")
        if self.kind != "tangent":
            return np.stack([_subject_connectivity(x, self.kind, self.estimator, vectorize=True)
                             for x in subjects])
        self._check_tangent(subjects)
        if len(subjects) == 1:
            # nilearn refuses to project a lone subject, although each subject is projected
            # on its own at the fitted mean; a duplicated pair gives the same row
            return self.measure_.transform(subjects * 2)[:1]
        return self.measure_.transform(subjects)

    def _check_tangent(self, subjects: list[np.ndarray]) -> None:
        """Refuse constant ROIs where the covariance would be singular (empirical)."""
        if self.estimator != "empirical":
            return  # Ledoit-Wolf shrinkage keeps every covariance positive definite
        bad = [(i, rois) for i, x in enumerate(subjects)
               if (rois := np.flatnonzero(constant_rois(x))).size]
        if bad:
            first, rois = bad[0]
            raise DataError(
                f"{len(bad)} of {len(subjects)} subjects have constant ROIs (subject index "
                f"{first}: ROI columns {', '.join(str(r) for r in rois[:10])}), whose "
                "empirical covariance is singular",
                expected="positive definite covariances for the tangent space",
                hint="Use connectivity.estimator: ledoit_wolf, or another "
                     "decoding.connectivity_kind")
