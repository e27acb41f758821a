"""Tests of brainmill.evaluation: splits, metrics, chance levels and leak-free CV."""

from __future__ import annotations

import numpy as np
import pytest
from pyriemann.geometry.mean import mean_riemann
from pyriemann.tangentspace import TangentSpace
from scipy.stats import binom
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from brainmill.errors import DataError
from brainmill.evaluation import (
    chance_level,
    chance_threshold,
    classification_metrics,
    cross_session_splits,
    cross_validate,
    grouped_kfold_splits,
    pretraining_note,
    within_session_splits,
)


def _design(n_per_class=10, sessions=("1", "2"), n_classes=2):
    """Labels, sessions and runs for ``n_per_class`` trials of each class in each session."""
    y = np.tile(np.repeat(np.arange(n_classes), n_per_class), len(sessions))
    session = np.repeat(np.array(sessions), n_classes * n_per_class)
    run = np.array([f"{s}-{i % 2}" for i, s in enumerate(session)])
    return y, session, run


# ------------------------------------------------------------------------------- splits


def test_within_session_splits_stratified_per_session_and_numbered_globally():
    y, session, _ = _design(n_per_class=10)
    splits = within_session_splits(y, session, n_folds=5, shuffle=True, seed=0)
    assert [s.fold for s in splits] == list(range(10))
    assert [s.test_session for s in splits] == ["1"] * 5 + ["2"] * 5
    for s in splits:
        assert set(session[s.train]) == set(session[s.test]) == {s.test_session}
        assert s.train_sessions == [s.test_session]
        assert not set(s.train) & set(s.test)
        # stratified: 10 trials per class over 5 folds -> 2 of each class per test fold
        assert np.bincount(y[s.test]).tolist() == [2, 2]
    tested = np.concatenate([s.test for s in splits])
    assert sorted(tested.tolist()) == list(range(len(y)))  # every trial tested once


def test_within_session_shuffle_depends_on_seed_only_when_shuffling():
    y, session, _ = _design(n_per_class=10)
    a = within_session_splits(y, session, 5, True, seed=1)
    b = within_session_splits(y, session, 5, True, seed=1)
    c = within_session_splits(y, session, 5, True, seed=2)
    assert all(np.array_equal(p.test, q.test) for p, q in zip(a, b, strict=True))
    assert any(not np.array_equal(p.test, q.test) for p, q in zip(a, c, strict=True))
    d = within_session_splits(y, session, 5, False, seed=1)
    e = within_session_splits(y, session, 5, False, seed=2)
    assert all(np.array_equal(p.test, q.test) for p, q in zip(d, e, strict=True))
    # without shuffling the first fold holds the first trials of each class
    assert d[0].test.tolist() == [0, 1, 10, 11]


def test_within_session_too_few_trials_names_session_class_count_and_folds():
    y, session, _ = _design(n_per_class=10)
    drop = np.flatnonzero((session == "2") & (y == 1))[3:]  # leave 3 trials of class 1
    keep = np.setdiff1d(np.arange(len(y)), drop)
    with pytest.raises(DataError) as info:
        within_session_splits(y[keep], session[keep], 5, True, 0, classes=["left", "right"])
    msg = str(info.value)
    assert "session '2'" in msg and "class 'right'" in msg
    assert "3 trial" in msg and "5-fold" in msg and "n_folds" in msg


def test_cross_session_splits_leave_one_session_out():
    y, session, _ = _design(n_per_class=4, sessions=("b", "a", "c"))
    splits = cross_session_splits(y, session)
    assert [s.test_session for s in splits] == ["b", "a", "c"]  # recording order
    for s in splits:
        assert set(session[s.test]) == {s.test_session}
        assert s.test_session not in set(session[s.train])
        assert len(s.train) + len(s.test) == len(y)
        assert s.train_sessions == [x for x in ("b", "a", "c") if x != s.test_session]
    assert cross_session_splits(*_design(sessions=("1",))[:2]) == []


# ------------------------------------------------------------------------------ metrics


def test_classification_metrics_match_hand_computed_values():
    y_true = np.array([0, 0, 1, 1, 1, 1])
    y_pred = np.array([0, 1, 1, 1, 1, 0])
    p1 = np.array([0.1, 0.6, 0.7, 0.8, 0.9, 0.4])
    m = classification_metrics(y_true, y_pred, np.c_[1 - p1, p1], n_classes=2)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 3 / 4) / 2)
    # p_o = 4/6, p_e = (2/6)(2/6) + (4/6)(4/6) = 5/9 -> kappa = (2/3 - 5/9) / (4/9)
    assert m["kappa"] == pytest.approx(0.25)
    # 8 positive-negative pairs, 7 ranked correctly (0.4 < 0.6)
    assert m["roc_auc"] == pytest.approx(7 / 8)
    assert m["confusion_matrix"] == [[1, 1], [1, 3]]


def test_classification_metrics_multiclass_has_no_auc_and_full_confusion():
    y_true = np.array([0, 1, 1])
    y_pred = np.array([0, 1, 0])
    m = classification_metrics(y_true, y_pred, None, n_classes=3)
    assert m["roc_auc"] is None
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert m["accuracy"] == pytest.approx(2 / 3)


def test_classification_metrics_single_class_fold_gives_none_not_nan():
    m = classification_metrics(np.array([1, 1]), np.array([1, 1]), np.array([[0.2, 0.8]] * 2), 2)
    assert m["accuracy"] == 1.0
    assert m["roc_auc"] is None and m["kappa"] is None


def test_chance_level_and_threshold():
    assert chance_level(np.array([0, 0, 0, 1])) == 0.75
    # Combrisson & Jerbi 2015: 2 classes, 40 trials, p < 0.05 -> 62.5 %
    assert chance_threshold(40, 2) == pytest.approx(0.625)
    assert chance_threshold(100, 2) == pytest.approx(0.58)
    # definition: the smallest k with P(X > k) <= alpha
    k = round(chance_threshold(60, 3, 0.01) * 60)
    assert binom.sf(k, 60, 1 / 3) <= 0.01 < binom.sf(k - 1, 60, 1 / 3)
    # unbalanced classes: always answering the majority class (80 %) must stay below it
    assert chance_threshold(100, 2, rate=0.8) == pytest.approx(0.86)
    assert chance_threshold(100, 2, rate=0.8) > 0.8 > chance_threshold(100, 2)
    assert chance_threshold(100, 2, rate=0.3) == chance_threshold(100, 2)  # never below 1/K


def test_unbalanced_classes_raise_the_threshold_above_the_majority_rate():
    X, y, session, run = _separable()
    keep = (y == 0) | (np.arange(len(y)) % 4 == 0)  # class 1 thinned to a quarter
    results, _ = cross_validate(LogisticRegression, X[keep], y[keep], session[keep],
                                run[keep], ["within_session"], 2, True, 0)
    res = results["within_session"]
    assert res["chance_level"] == pytest.approx(np.mean(y[keep] == 0))
    assert res["chance_threshold_p05"] > res["chance_level"] > 0.5


def test_pretraining_note_replaces_the_no_leak_claim():
    X, y, session, run = _separable()
    seen = pretraining_note("TFM tokenizer", ["1", "2"], "2", "tokenizer.subjects")
    unseen = pretraining_note("TFM tokenizer", ["1", "3"], "2", "tokenizer.subjects")
    assert "transductive" in seen and "sub-1, sub-2" in seen
    assert "other subjects only" in unseen and "transductive" not in unseen
    for note in (seen, unseen):
        results, _ = cross_validate(LogisticRegression, X, y, session, run,
                                    ["within_session", "cross_session"], 5, True, 0,
                                    pretraining=note)
        for res in results.values():
            assert note in res["description"]
            assert "ever saw the test trials" not in res["description"]


# -------------------------------------------------------------------------- no leakage

_FIT_ROWS: list[set[int]] = []
_PREDICT_ROWS: list[set[int]] = []


class RowRecorder(ClassifierMixin, BaseEstimator):
    """Predicts the majority class and records which rows (ids in column 0) it saw."""

    def fit(self, X, y):
        _FIT_ROWS.append(set(X[:, 0].astype(int)))
        self.classes_ = np.unique(y)
        self.majority_ = int(np.bincount(y).argmax())
        return self

    def predict(self, X):
        _PREDICT_ROWS.append(set(X[:, 0].astype(int)))
        return np.full(len(X), self.majority_)


def test_cross_validate_fits_only_on_train_rows_for_every_split():
    _FIT_ROWS.clear()
    _PREDICT_ROWS.clear()
    y, session, run = _design(n_per_class=10, sessions=("1", "2", "3"))
    X = np.arange(len(y), dtype=float)[:, None]
    results, preds = cross_validate(
        RowRecorder, X, y, session, run, ["within_session", "cross_session"], 5, True, 3
    )
    splits = within_session_splits(y, session, 5, True, 3) + cross_session_splits(y, session)
    assert len(_FIT_ROWS) == len(splits) == 15 + 3
    for split, fit_rows, pred_rows in zip(splits, _FIT_ROWS, _PREDICT_ROWS, strict=True):
        assert fit_rows == set(split.train.tolist())
        assert pred_rows == set(split.test.tolist())
        assert not fit_rows & pred_rows
    for protocol in ("within_session", "cross_session"):
        rows = preds[preds.protocol == protocol]
        assert sorted(rows.epoch) == list(range(len(y)))  # each epoch predicted once
        fold_tests = rows.groupby("fold").epoch.apply(set)
        for fold in results[protocol]["folds"]:
            assert fold["n_test"] == len(fold_tests[fold["fold"]])


_SCALER_MEANS: list[np.ndarray] = []
_TS_REFS: list[np.ndarray] = []


class LoggingScaler(StandardScaler):
    def fit(self, X, y=None, sample_weight=None):
        super().fit(X, y, sample_weight)
        _SCALER_MEANS.append(self.mean_.copy())
        return self


class LoggingTangentSpace(TangentSpace):
    # a Pipeline fits its transformers through fit_transform, which TangentSpace overrides
    def fit_transform(self, X, y=None, sample_weight=None):
        Xt = super().fit_transform(X, y, sample_weight=sample_weight)
        _TS_REFS.append(self.reference_.copy())
        return Xt


def test_stateful_transformer_is_refitted_on_each_training_fold():
    _SCALER_MEANS.clear()
    rng = np.random.default_rng(0)
    y, session, run = _design(n_per_class=10)
    X = rng.normal(size=(len(y), 3)) + y[:, None]
    shared = Pipeline([("scale", LoggingScaler()), ("clf", LogisticRegression())])
    shared.fit(X, y)  # a pre-fitted shared object must not carry its state into the folds
    _SCALER_MEANS.clear()
    cross_validate(lambda: shared, X, y, session, run, ["within_session"], 5, True, 0)
    splits = within_session_splits(y, session, 5, True, 0)
    assert len(_SCALER_MEANS) == len(splits)
    for split, mean in zip(splits, _SCALER_MEANS, strict=True):
        np.testing.assert_allclose(mean, X[split.train].mean(axis=0))
        assert not np.allclose(mean, X.mean(axis=0))


def test_tangent_space_reference_is_the_training_mean_of_each_fold():
    _TS_REFS.clear()
    rng = np.random.default_rng(1)
    y, session, run = _design(n_per_class=6)
    A = rng.normal(size=(len(y), 3, 3))
    X = A @ A.transpose(0, 2, 1) + 0.5 * np.eye(3)
    make = lambda: Pipeline([("ts", LoggingTangentSpace()), ("lr", LogisticRegression())])  # noqa: E731
    cross_validate(make, X, y, session, run, ["cross_session"], 3, True, 0)
    splits = cross_session_splits(y, session)
    assert len(_TS_REFS) == 2
    for split, ref in zip(splits, _TS_REFS, strict=True):
        np.testing.assert_allclose(ref, mean_riemann(X[split.train]), rtol=1e-6)
        assert not np.allclose(ref, mean_riemann(X), rtol=1e-3)


# --------------------------------------------------------------------- cross_validate


def _separable(seed=0, sessions=("1", "2")):
    rng = np.random.default_rng(seed)
    y, session, run = _design(n_per_class=10, sessions=sessions)
    X = rng.normal(size=(len(y), 2)) + 3.0 * y[:, None]
    return X, y, session, run


def test_cross_validate_layout_summary_and_pooled_confusion():
    X, y, session, run = _separable()
    results, preds = cross_validate(
        LogisticRegression, X, y, session, run, ["within_session", "cross_session"], 5, True,
        0, classes=["a", "b"],
    )
    within = results["within_session"]
    assert within["n_folds"] == 5 and len(within["folds"]) == 10
    accs = [f["accuracy"] for f in within["folds"]]
    assert within["summary"]["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert within["summary"]["accuracy"]["sd"] == pytest.approx(np.std(accs, ddof=1))
    rows = preds[preds.protocol == "within_session"]
    cm = np.zeros((2, 2), int)
    np.add.at(cm, (rows.y_true, rows.y_pred), 1)
    assert within["confusion_matrix"] == cm.tolist()
    assert np.sum(within["confusion_matrix"]) == len(y)
    assert within["chance_level"] == 0.5
    assert within["chance_threshold_p05"] == pytest.approx(chance_threshold(40, 2))
    assert "5-fold" in within["description"] and "shuffled" in within["description"]
    assert "nothing fitted" in within["description"]
    cross = results["cross_session"]
    assert cross["n_folds"] == 2 and [f["test_session"] for f in cross["folds"]] == ["1", "2"]
    assert cross["folds"][0]["n_train"] == 20 and cross["folds"][0]["train_sessions"] == ["2"]
    assert list(preds.columns) == ["protocol", "fold", "epoch", "session", "run", "y_true",
                                   "y_pred", "label_true", "label_pred", "proba_a", "proba_b"]
    assert (preds.label_true == np.array(["a", "b"])[preds.y_true]).all()
    np.testing.assert_allclose(preds[["proba_a", "proba_b"]].sum(axis=1), 1.0)
    assert (preds.y_pred == preds[["proba_a", "proba_b"]].to_numpy().argmax(axis=1)).all()
    assert within["summary"]["accuracy"]["mean"] > 0.8


def test_cross_session_with_one_session_is_skipped_not_an_error():
    X, y, session, run = _separable(sessions=("1",))
    results, preds = cross_validate(
        LogisticRegression, X, y, session, run, ["within_session", "cross_session"], 5, True, 0
    )
    assert set(results["cross_session"]) == {"skipped"}
    assert "session" in results["cross_session"]["skipped"]
    assert set(preds.protocol) == {"within_session"}


def test_same_seed_same_results_other_seed_other_folds():
    X, y, session, run = _separable()
    args = (X, y, session, run, ["within_session"], 5, True)
    r1, p1 = cross_validate(LogisticRegression, *args, 11)
    r2, p2 = cross_validate(LogisticRegression, *args, 11)
    r3, p3 = cross_validate(LogisticRegression, *args, 12)
    assert r1 == r2
    assert p1.equals(p2)
    assert not np.array_equal(p1.sort_values("epoch").fold, p3.sort_values("epoch").fold)


def test_cross_validate_rejects_bad_input():
    X, y, session, run = _separable()
    with pytest.raises(ValueError, match="unknown protocol"):
        cross_validate(LogisticRegression, X, y, session, run, ["loso"], 5, True, 0)
    with pytest.raises(ValueError, match="length"):
        cross_validate(LogisticRegression, X[:-1], y, session, run, ["within_session"], 5,
                       True, 0)


# ------------------------------------------------------------------------ grouped_kfold


def _windows(n_runs=40, per_run=8, n_classes=2, sessions=("1",)):
    """Windows cut from runs: every run holds one class; run labels repeat across sessions."""
    y = np.repeat(np.arange(n_runs) % n_classes, per_run)
    run = np.repeat([f"r{i:02d}" for i in range(n_runs)], per_run)
    session = np.repeat(np.resize(np.array(sessions), n_runs), per_run)
    return y, session, run


def test_grouped_kfold_keeps_runs_whole_stratifies_and_tests_each_epoch_once():
    y, session, run = _windows(n_runs=40, per_run=8, n_classes=2)
    splits = grouped_kfold_splits(y, session, run, n_folds=5, shuffle=True, seed=0)
    assert [s.fold for s in splits] == list(range(5))
    for s in splits:
        assert not set(run[s.train]) & set(run[s.test])  # no run on both sides
        assert not set(s.train) & set(s.test)
        assert np.bincount(y[s.test]).tolist() == [32, 32]  # 4 runs of each class
        assert s.protocol == "grouped_kfold" and s.test_session == "1"
        assert s.train_sessions == ["1"]
    tested = np.concatenate([s.test for s in splits])
    assert sorted(tested.tolist()) == list(range(len(y)))


def test_grouped_kfold_groups_are_session_run_pairs():
    # run "1" in each of 6 sessions: six groups, not one
    y = np.repeat([0, 1, 0, 1, 0, 1], 5)
    session = np.repeat([f"excerpt{i}" for i in range(1, 7)], 5)
    run = np.full(len(y), "1")
    splits = grouped_kfold_splits(y, session, run, n_folds=3, shuffle=False, seed=0)
    for s in splits:
        assert not set(session[s.train]) & set(session[s.test])
        assert len(set(session[s.test])) == 2
        assert s.test_session == "+".join(sorted(set(session[s.test])))
        assert s.train_sessions == [x for x in dict.fromkeys(session) if x in set(session[s.train])]


def test_grouped_kfold_shuffle_follows_the_seed():
    y, session, run = _windows(n_runs=30, per_run=3, n_classes=3)
    folds = {}
    for seed in (1, 1, 2):
        splits = grouped_kfold_splits(y, session, run, 5, True, seed)
        fold_of = np.empty(len(y), int)
        for s in splits:
            fold_of[s.test] = s.fold
        folds.setdefault(seed, []).append(fold_of)
    assert np.array_equal(folds[1][0], folds[1][1])
    assert not np.array_equal(folds[1][0], folds[2][0])


def test_grouped_kfold_too_few_runs_names_class_and_fix():
    y, session, run = _windows(n_runs=7, per_run=4, n_classes=2)  # class 1 in 3 runs
    with pytest.raises(DataError, match=r"class 'b' occurs in 3 run\(s\), too few for "
                                        r"5-fold.*at most 3"):
        grouped_kfold_splits(y, session, run, 5, True, 0, classes=["a", "b"])
    with pytest.raises(DataError, match=r"only 3 run\(s\), too few for 5-fold"):
        grouped_kfold_splits(y[:12], session[:12], run[:12], 5, True, 0)


def test_grouped_kfold_stops_a_decoder_that_memorises_runs():
    """Each run has its own random class and a run-specific feature: 1-NN memorises runs.
    Windows of a run split across folds (within_session) let it score ~100 %; grouped folds
    hold whole runs out, so it falls to chance."""
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(0)
    n_runs, per_run = 60, 6
    y = np.repeat(rng.permutation(np.arange(n_runs) % 2), per_run)
    run = np.repeat(np.arange(n_runs).astype(str), per_run)
    session = np.full(len(y), "1")
    X = np.repeat(rng.normal(size=(n_runs, 3)), per_run, axis=0)
    X += 0.01 * rng.normal(size=X.shape)
    results, preds = cross_validate(lambda: KNeighborsClassifier(1), X, y, session, run,
                                    ["within_session", "grouped_kfold"], 5, True, 0,
                                    classes=["a", "b"])
    assert results["within_session"]["summary"]["accuracy"]["mean"] > 0.95
    assert results["grouped_kfold"]["summary"]["accuracy"]["mean"] < 0.7
    grouped = results["grouped_kfold"]
    assert grouped["n_folds"] == 5 and len(grouped["folds"]) == 5
    assert "Grouped stratified 5-fold" in grouped["description"]
    assert "60 runs" in grouped["description"] and "nothing fitted" in grouped["description"]
    rows = preds[preds.protocol == "grouped_kfold"]
    assert sorted(rows.epoch) == list(range(len(y)))
    assert (rows.groupby("run").fold.nunique() == 1).all()  # a run's windows share a fold
