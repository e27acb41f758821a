"""The inner-CV ROC-AUC against scikit-learn's, bit for bit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import get_scorer, roc_auc_score
from sklearn.naive_bayes import GaussianNB
from sklearn.svm import SVC

from brainmill.scoring import binary_roc_auc, inner_scorer


@pytest.mark.parametrize("seed", range(200))
def test_binary_roc_auc_equals_sklearn_exactly(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    # ties are what the drop of intermediate points and the run ends are about
    score = rng.integers(0, 5, n) / 3.0 if seed % 2 else rng.standard_normal(n)
    assert binary_roc_auc(y == 1, score) == roc_auc_score(y, score)


def test_known_values_and_one_class():
    assert binary_roc_auc(np.array([0, 0, 1, 1], bool), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert binary_roc_auc(np.array([1, 0], bool), np.array([0.5, 0.5])) == 0.5
    with pytest.warns(UndefinedMetricWarning, match="Only one class"):
        assert np.isnan(binary_roc_auc(np.ones(4, bool), np.arange(4.0)))


def test_inner_scorer_equals_sklearn_scorer():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 5))
    y = np.where(X[:, 0] + rng.standard_normal(60) > 0, "right", "left")
    ours, ref = inner_scorer("roc_auc"), get_scorer("roc_auc")
    for est in (SVC(kernel="rbf"), SVC(kernel="linear"), LinearDiscriminantAnalysis(),
                GaussianNB()):  # GaussianNB has no decision_function: sklearn's path
        est.fit(X[:40], y[:40])
        assert ours(est, X[40:], y[40:]) == ref(est, X[40:], y[40:])
    est = SVC().fit(X[:40], y[:40])
    one_class = y[40:] == "left"
    with pytest.warns(UndefinedMetricWarning):  # sklearn's path, with its warning
        assert np.isnan(ours(est, X[40:][one_class], y[40:][one_class]))
    three = np.array(["a", "b", "c"] * 20)
    est = SVC().fit(X[:40], three[:40])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert inner_scorer("accuracy")(est, X[40:], three[40:]) == \
            get_scorer("accuracy")(est, X[40:], three[40:])
