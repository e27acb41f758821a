"""Inner-CV scorers without scikit-learn's per-call input validation.

A nested order/lag search scores hundreds of small inner test folds. scikit-learn's
``get_scorer("roc_auc")`` spends about 1.5 ms per call validating its inputs (dataframe
detection, ``type_of_target``) around a 0.1-ms computation, which was a tenth of the whole
search (BENCHMARKS.md). :func:`binary_roc_auc` repeats scikit-learn's own arithmetic, operation
for operation, so the scores are equal to :func:`sklearn.metrics.roc_auc_score`'s bit for bit
(the tests compare them with ``==``), so a search that breaks ties by the first best score
ranks its candidates as ``GridSearchCV`` would on the same decision values.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import get_scorer

__all__ = ["binary_roc_auc", "inner_scorer"]


def binary_roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve, computed as :func:`sklearn.metrics.roc_auc_score` does.

    Parameters
    ----------
    positive : ndarray of bool, shape (n_samples,)
        Whether each sample belongs to the positive class.
    score : ndarray, shape (n_samples,)
        Finite scores, larger for the positive class.

    Returns
    -------
    float
        The AUC, or NaN when only one class is present (scikit-learn warns and returns NaN).
    """
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=float)
    if positive.all() or not positive.any():
        warnings.warn("Only one class is present in y_true. ROC AUC score is not defined in "
                      "that case.", UndefinedMetricWarning, stacklevel=2)
        return float("nan")
    # descending by score; the order inside a run of ties does not matter, only where the
    # runs end (the cumulative sums are read at the run ends and are exact integers)
    order = np.argsort(-score, kind="stable")
    score, hits = score[order], positive[order].astype(np.float64)
    ends = np.r_[np.nonzero(np.diff(score))[0], score.size - 1]
    tps = np.cumsum(hits)[ends]
    fps = 1 + ends.astype(np.float64) - tps
    if fps.size > 2:  # roc_curve's drop_intermediate: the trapezoid sum is over these points
        keep = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        tps, fps = tps[keep], fps[keep]
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    return float(np.trapezoid(tps / tps[-1], fps / fps[-1]))


def inner_scorer(scoring: str) -> Callable:
    """A scorer ``(estimator, X, y) -> float`` for ``scoring``, as :func:`get_scorer` gives.

    ``"roc_auc"`` on two classes goes through :func:`binary_roc_auc` and the estimator's
    ``decision_function`` (what scikit-learn's scorer calls first) when the test labels are
    exactly the estimator's two classes and the decision values are finite and 1-D;
    everything else (other scorings, estimators without ``decision_function``, a test fold
    with one class or an unseen label) goes through scikit-learn's scorer, with its warnings
    and errors.
    """
    sklearn_scorer = get_scorer(scoring)
    if scoring != "roc_auc":
        return sklearn_scorer

    def score(estimator, X, y) -> float:
        classes = getattr(estimator, "classes_", ())
        y = np.asarray(y)
        if (len(classes) != 2 or not hasattr(estimator, "decision_function")
                or not np.array_equal(np.unique(y), classes)):
            return sklearn_scorer(estimator, X, y)
        decision = estimator.decision_function(X)
        if decision.ndim != 1 or not np.all(np.isfinite(decision)):
            return sklearn_scorer(estimator, X, y)
        return binary_roc_auc(y == classes[1], decision)

    return score
