"""Cross-validation protocols and classification metrics.

Three protocols, all leak-free: every fold gets a freshly cloned estimator that is fitted on
that fold's training rows only and then predicts the test rows.

* ``within_session``: stratified k-fold inside each session separately; folds are numbered
  globally (session after session) and pooled for the summary.
* ``cross_session``: leave-one-session-out; train on every other session, test on the one left
  out. Skipped (not an error) when there are fewer than two sessions.
* ``grouped_kfold``: stratified group k-fold over all epochs, the groups being the runs (a
  session/run pair), so the windows cut from one run (e.g. one Bonn segment) are never split
  between training and test. For pooled datasets whose runs are independent recordings.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binom
from sklearn.base import clone
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    roc_auc_score,
)
from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold, StratifiedKFold

from .errors import DataError

PROTOCOLS = ("within_session", "cross_session", "grouped_kfold")
SCORES = ("accuracy", "balanced_accuracy", "kappa", "roc_auc")


@dataclass
class Split:
    """One train/test split of one protocol.

    Attributes
    ----------
    protocol : str
        ``"within_session"``, ``"cross_session"`` or ``"grouped_kfold"``.
    fold : int
        Fold number, 0-based and unique within the protocol.
    train, test : ndarray of int
        Row indices into the feature set; never overlapping.
    test_session : str
        Session the test rows come from (``grouped_kfold``: the sessions present in the test
        rows, joined by ``"+"``).
    train_sessions : list of str
        Sessions the training rows come from.
    """

    protocol: str
    fold: int
    train: np.ndarray
    test: np.ndarray
    test_session: str
    train_sessions: list[str] = field(default_factory=list)


def _sessions_in_order(session: np.ndarray) -> list[str]:
    """Distinct session labels in order of first appearance (recording order)."""
    return [str(s) for s in pd.unique(pd.Series(np.asarray(session, dtype=str)))]


def _session_seed(seed: int, index: int) -> int:
    """An independent 32-bit random state for the ``index``-th session, derived from ``seed``."""
    seq = np.random.SeedSequence(seed % 2**32, spawn_key=(index,))
    return int(seq.generate_state(1)[0])


def _class_name(k: int, classes: Sequence[str] | None) -> str:
    return str(classes[k]) if classes is not None and 0 <= k < len(classes) else str(k)


def within_session_splits(
    y: np.ndarray,
    session: np.ndarray,
    n_folds: int,
    shuffle: bool,
    seed: int,
    *,
    classes: Sequence[str] | None = None,
) -> list[Split]:
    """Stratified k-fold inside each session.

    Parameters
    ----------
    y : ndarray of int, shape (n_epochs,)
        Class index of each epoch.
    session : ndarray of str, shape (n_epochs,)
        Session label of each epoch.
    n_folds : int
        Folds per session.
    shuffle : bool
        Shuffle each session's trials before splitting (random state derived from ``seed``
        and the session's position); otherwise folds follow the recorded order.
    seed : int
        Seed of every shuffle.
    classes : sequence of str, optional
        Class names, used in error messages only.

    Returns
    -------
    list of Split
        ``n_sessions * n_folds`` splits, numbered 0.. across sessions.

    Raises
    ------
    DataError
        If a class has fewer than ``n_folds`` trials in a session.
    """
    y = np.asarray(y)
    session = np.asarray(session, dtype=str)
    labels = np.unique(y)
    splits: list[Split] = []
    for s_index, sess in enumerate(_sessions_in_order(session)):
        rows = np.flatnonzero(session == sess)
        counts = {int(k): int(np.sum(y[rows] == k)) for k in labels}
        for k, count in counts.items():
            if count < n_folds:
                raise DataError(
                    f"class '{_class_name(k, classes)}' has {count} trial(s) in session "
                    f"'{sess}', too few for {n_folds}-fold within-session cross-validation",
                    expected=f"at least {n_folds} trials of every class in every session",
                    hint=f"Lower evaluation.n_folds (to at most {max(min(counts.values()), 2)})"
                    " or remove 'within_session' from evaluation.protocols",
                )
        cv = StratifiedKFold(
            n_splits=n_folds,
            shuffle=shuffle,
            random_state=_session_seed(seed, s_index) if shuffle else None,
        )
        for train, test in cv.split(np.zeros(len(rows)), y[rows]):
            splits.append(
                Split("within_session", len(splits), rows[train], rows[test], sess, [sess])
            )
    return splits


def cross_session_splits(y: np.ndarray, session: np.ndarray) -> list[Split]:
    """Leave-one-session-out splits.

    Parameters
    ----------
    y : ndarray of int, shape (n_epochs,)
        Class index of each epoch (not used to split; kept for a uniform signature).
    session : ndarray of str, shape (n_epochs,)
        Session label of each epoch.

    Returns
    -------
    list of Split
        One split per session, in recording order; empty when there are fewer than two
        sessions.
    """
    session = np.asarray(session, dtype=str)
    order = _sessions_in_order(session)
    if len(order) < 2:
        return []
    # codes follow first appearance, and LeaveOneGroupOut holds groups out in sorted code order
    codes = np.array([order.index(s) for s in session])
    splits = []
    for fold, (train, test) in enumerate(
        LeaveOneGroupOut().split(np.zeros(len(session)), np.asarray(y), groups=codes)
    ):
        held_out = order[int(codes[test[0]])]
        splits.append(
            Split("cross_session", fold, train, test, held_out,
                  [s for s in order if s != held_out])
        )
    return splits


def check_groups(groups: Any, n: int, name: str) -> np.ndarray | None:
    """``groups`` (e.g. the recording of each epoch) as an array of ``n`` labels, or None.

    Estimators that keep groups whole inside a training fold call it on entry, so a wrong
    length is an error even where no split ends up using the groups.
    """
    if groups is None:
        return None
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"{name}: groups has shape {groups.shape}; expected ({n},), one "
                         "group label per epoch")
    return groups


def run_groups(session: np.ndarray, run: np.ndarray) -> np.ndarray:
    """Group code of each epoch: one per distinct (session, run) pair, in order of appearance."""
    keys = [f"{s}\x1f{r}" for s, r in zip(np.asarray(session, dtype=str),
                                            np.asarray(run, dtype=str), strict=True)]
    order = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    return np.array([order[k] for k in keys], dtype=np.int64)


def grouped_kfold_splits(
    y: np.ndarray,
    session: np.ndarray,
    run: np.ndarray,
    n_folds: int,
    shuffle: bool,
    seed: int,
    *,
    classes: Sequence[str] | None = None,
) -> list[Split]:
    """Stratified group k-fold over all epochs; each run stays whole in one fold.

    Parameters
    ----------
    y : ndarray of int, shape (n_epochs,)
        Class index of each epoch.
    session, run : ndarray of str, shape (n_epochs,)
        Session and run label of each epoch; the groups are the (session, run) pairs, so run
        labels repeated across sessions (``"1"`` in every session) are still distinct groups.
    n_folds : int
        Number of folds.
    shuffle : bool
        Shuffle the groups (random state ``seed``) before sklearn's greedy assignment;
        otherwise the assignment follows the recorded order.
    seed : int
        Seed of the shuffle.
    classes : sequence of str, optional
        Class names, used in error messages only.

    Returns
    -------
    list of Split
        ``n_folds`` splits; every epoch is tested once and no group is on both sides.

    Raises
    ------
    DataError
        If there are fewer groups than folds, or a class occurs in fewer than ``n_folds``
        groups (some test fold would lack it).
    """
    y = np.asarray(y)
    session = np.asarray(session, dtype=str)
    groups = run_groups(session, run)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    if n_groups < n_folds:
        raise DataError(
            f"only {n_groups} run(s), too few for {n_folds}-fold grouped cross-validation",
            expected=f"at least {n_folds} runs (groups)",
            hint=f"Lower evaluation.n_folds (to at most {max(n_groups, 2)}) or use another "
            "protocol",
        )
    per_class = {int(k): len(np.unique(groups[y == k])) for k in np.unique(y)}
    rarest = min(per_class, key=per_class.get)
    if per_class[rarest] < n_folds:
        raise DataError(
            f"class '{_class_name(rarest, classes)}' occurs in {per_class[rarest]} run(s), "
            f"too few for {n_folds}-fold grouped cross-validation",
            expected=f"every class in at least {n_folds} runs",
            hint=f"Lower evaluation.n_folds (to at most {max(per_class[rarest], 2)}) or load "
            "more runs of that class",
        )
    order = _sessions_in_order(session)
    cv = StratifiedGroupKFold(n_splits=n_folds, shuffle=shuffle,
                              random_state=seed % 2**32 if shuffle else None)
    splits = []
    for fold, (train, test) in enumerate(cv.split(np.zeros(len(y)), y, groups=groups)):
        present = set(session[test])
        splits.append(Split(
            "grouped_kfold", fold, train, test,
            "+".join(s for s in order if s in present),
            [s for s in order if s in set(session[train])],
        ))
    return splits


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def classification_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    n_classes: int,
    *,
    score: np.ndarray | None = None,
) -> dict[str, Any]:
    """Scores of one set of predictions.

    Parameters
    ----------
    y_true, y_pred : ndarray of int, shape (n_trials,)
        True and predicted class indices in ``range(n_classes)``.
    proba : ndarray, shape (n_trials, n_classes) or None
        Class probabilities; needed for ``roc_auc``.
    n_classes : int
        Number of classes of the problem (not only those present here).
    score : ndarray, shape (n_trials,), optional
        Two-class decision values (higher favours class 1), used for ``roc_auc`` when
        ``proba`` is None (e.g. an SVM without probability calibration).

    Returns
    -------
    dict
        ``accuracy``, ``balanced_accuracy``, ``kappa`` (None when undefined, e.g. a single
        class predicted and present), ``roc_auc`` (two classes with both present and
        ``proba`` given, else None), ``confusion_matrix`` (list of lists, rows = true class,
        columns = predicted class).
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    with warnings.catch_warnings():
        # balanced accuracy / kappa warn when a class is absent from a small test fold
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", message=".*y_pred contains classes not in y_true.*")
        warnings.filterwarnings("ignore", message=".*single label was found.*")
        bacc = balanced_accuracy_score(y_true, y_pred)
        kappa = cohen_kappa_score(y_true, y_pred, labels=list(range(n_classes)))
    roc_auc = None
    if n_classes == 2 and len(np.unique(y_true)) == 2:
        if proba is not None:
            roc_auc = _finite_or_none(roc_auc_score(y_true, np.asarray(proba)[:, 1]))
        elif score is not None:
            roc_auc = _finite_or_none(roc_auc_score(y_true, np.asarray(score)))
    cm = confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": _finite_or_none(bacc),
        "kappa": _finite_or_none(kappa),
        "roc_auc": roc_auc,
        "confusion_matrix": cm.tolist(),
    }


def chance_level(y: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent class of ``y``."""
    _, counts = np.unique(np.asarray(y), return_counts=True)
    return float(counts.max() / counts.sum())


def chance_threshold(n_trials: int, n_classes: int, alpha: float = 0.05,
                     rate: float | None = None) -> float:
    """Smallest accuracy that a classifier at chance exceeds with probability at most ``alpha``.

    The number of correct guesses of a classifier at chance is Binomial(``n_trials``, ``p``);
    its ``1 - alpha`` quantile over ``n_trials`` is the threshold (Combrisson & Jerbi 2015,
    J Neurosci Methods 250:126-136). ``p`` is ``1/n_classes`` for balanced classes; pass the
    majority-class rate as ``rate`` for unbalanced ones, since always answering the majority
    class is right that often (``p = max(rate, 1/n_classes)``). The trials are taken as
    independent: overlapping windows of one recording are not, so their threshold is too low.
    """
    p = 1.0 / n_classes if rate is None else max(float(rate), 1.0 / n_classes)
    return float(binom.ppf(1 - alpha, n_trials, p) / n_trials)


def _summary(values: list[float | None]) -> dict[str, float | None] | None:
    """Mean and sample sd over folds, ignoring folds where the score was undefined."""
    finite = np.array([v for v in values if v is not None], dtype=float)
    if finite.size == 0:
        return None
    sd = float(np.std(finite, ddof=1)) if finite.size > 1 else None
    return {"mean": float(np.mean(finite)), "sd": sd}


def saw_subject(subjects: Sequence[str], subject: str) -> bool:
    """Whether ``subject`` is among the pretraining ``subjects`` (compared as strings)."""
    return str(subject) in {str(s) for s in subjects}


def pretraining_note(model: str, subjects: Sequence[str], subject: str, setting: str) -> str:
    """What a decoder's frozen, label-free pretrained model saw of the decoded subject.

    Parameters
    ----------
    model : str
        What was pretrained once per dataset, e.g. ``"TFM tokenizer"``.
    subjects : sequence of str
        The subjects whose signals trained it.
    subject : str
        The subject being decoded.
    setting : str
        The config key that lists the pretraining subjects, e.g. ``"tokenizer.subjects"``.

    Returns
    -------
    str
        One or two sentences for the protocol description of ``metrics.json``.
    """
    names = ", ".join(f"sub-{s}" for s in subjects)
    if saw_subject(subjects, subject):
        return (
            f"The frozen {model} it reads was trained once for the dataset, without labels, on "
            f"the signals of {names}; this subject was among them, so the signals (never the "
            "labels) of its test trials shaped that model: transductive pretraining, which can "
            "favour these scores over pretraining on the training trials only. For scores free "
            f"of it, pretrain on other subjects ({setting} in the dataset's config) and read "
            "theirs."
        )
    return (
        f"The frozen {model} it reads was trained without labels on other subjects only "
        f"({names}): none of this subject's trials."
    )


def pretraining_record(model: str, path: str | Path, subjects: Sequence[str], subject: str
                       ) -> dict[str, Any]:
    """The ``metrics.json`` entry of a decoder's pretrained model.

    Returns
    -------
    dict
        ``model``, ``path``, ``subjects`` (as strings), ``labels_used`` (always False: the
        pretraining is label-free) and ``saw_this_subject`` (its signals, test trials
        included, trained the model; the dataset report names such decoders).
    """
    return {"model": model, "path": str(path), "subjects": [str(s) for s in subjects],
            "labels_used": False, "saw_this_subject": saw_subject(subjects, subject)}


def _describe(protocol: str, n_folds: int, shuffle: bool, sessions: list[str], *,
              n_groups: int | None = None, n_epochs: int | None = None,
              pretraining: str | None = None) -> str:
    fitted = ("Every fold used a fresh copy of the decoder, fitted only on that fold's "
              "training trials")
    untouched = (
        f"{fitted}, so nothing fitted (no reference mean, spatial filter, scaler or classifier) "
        "ever saw the test trials." if pretraining is None else
        f"{fitted} (no scaler, network or classifier of a fold saw its test trials). "
        f"{pretraining}"
    )
    pooled = (
        "The summary is the mean ± sample sd of the per-fold scores; the confusion matrix "
        "(rows = true class) sums the test predictions of every fold. chance_level is the "
        "majority-class rate; chance_threshold_p05 is the accuracy that a classifier at chance "
        "(right at the majority-class rate, 1/n_classes for balanced classes) exceeds with "
        "probability ≤ 0.05 over all tested trials (binomial, Combrisson & Jerbi 2015), "
        "counting the trials as independent."
    )
    if protocol == "within_session":
        order = (
            "trials were shuffled (random state derived from the seed) before being split"
            if shuffle
            else "trials were split in recorded order, without shuffling"
        )
        head = (
            f"Within-session {n_folds}-fold stratified cross-validation, run separately in "
            f"each of {len(sessions)} session(s) ({', '.join(sessions)}); {order}. Each trial "
            f"is tested exactly once. Folds of all sessions are pooled "
            f"({n_folds * len(sessions)} in all)."
        )
    elif protocol == "grouped_kfold":
        order = (
            "runs were shuffled (random state from the seed) before being assigned"
            if shuffle
            else "runs were assigned in recorded order, without shuffling"
        )
        head = (
            f"Grouped stratified {n_folds}-fold cross-validation over all {n_epochs} epochs "
            f"of {len(sessions)} session(s) ({', '.join(sessions)}): each of the {n_groups} "
            "runs (e.g. one Bonn segment) was kept whole in one fold, so windows cut from the "
            "same run were never split between training and test; folds keep the class "
            f"proportions as far as whole runs allow; {order}. Each epoch is tested exactly "
            "once."
        )
    else:
        head = (
            f"Leave-one-session-out over {len(sessions)} sessions ({', '.join(sessions)}): "
            "the decoder was trained on all other sessions and tested on the held-out one; "
            "no shuffling is involved, each fold is a whole session."
        )
    return f"{head} {untouched} {pooled}"


def _predict(
    estimator: Any, X: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Predicted classes, an (n, n_classes) probability array (NaN without predict_proba) and,
    for a two-class estimator without ``predict_proba``, its ``decision_function`` (else None).
    """
    y_pred = np.asarray(estimator.predict(X), dtype=np.int64)
    proba = np.full((len(X), n_classes), np.nan)
    score = None
    if hasattr(estimator, "predict_proba"):
        p = np.asarray(estimator.predict_proba(X), dtype=float)
        # a training set lacking a class gives fewer columns; place them by class index
        cols = getattr(estimator, "classes_", np.arange(p.shape[1]))
        proba[:, np.asarray(cols, dtype=np.int64)] = p
        proba[np.isnan(proba)] = 0.0
    elif hasattr(estimator, "decision_function") and n_classes == 2:
        d = np.asarray(estimator.decision_function(X), dtype=float)
        if d.ndim == 1:  # positive values favour classes_[1]
            score = d
    return y_pred, proba, score


def _run_protocol(
    make_estimator: Callable[[], Any],
    X: np.ndarray,
    y: np.ndarray,
    session: np.ndarray,
    run: np.ndarray,
    splits: list[Split],
    classes: list[str],
) -> tuple[list[dict[str, Any]], np.ndarray, list[pd.DataFrame]]:
    n_classes = len(classes)
    folds, frames = [], []
    pooled_cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    for split in splits:
        # clone again so that even a factory returning one shared object cannot leak state
        estimator = clone(make_estimator())
        estimator.fit(X[split.train], y[split.train])
        y_pred, proba, decision = _predict(estimator, X[split.test], n_classes)
        has_proba = not np.isnan(proba).all()
        scores = classification_metrics(
            y[split.test], y_pred, proba if has_proba else None, n_classes, score=decision
        )
        pooled_cm += np.asarray(scores.pop("confusion_matrix"), dtype=np.int64)
        folds.append({
            "fold": split.fold,
            "test_session": split.test_session,
            "train_sessions": list(split.train_sessions),
            "n_train": int(len(split.train)),
            "n_test": int(len(split.test)),
            **scores,
        })
        fit_info = getattr(estimator, "fit_info_", None)
        if fit_info is not None:  # what the fold's training set chose (e.g. ACM order, lag)
            folds[-1]["fit_info"] = fit_info
        frame = pd.DataFrame({
            "protocol": split.protocol,
            "fold": split.fold,
            "epoch": split.test.astype(np.int64),
            "session": session[split.test],
            "run": run[split.test],
            "y_true": y[split.test].astype(np.int64),
            "y_pred": y_pred,
            "label_true": [classes[k] for k in y[split.test]],
            "label_pred": [classes[k] for k in y_pred],
        })
        for k, name in enumerate(classes):
            frame[f"proba_{name}"] = proba[:, k]
        if decision is not None:
            frame["decision"] = decision
        frames.append(frame)
    return folds, pooled_cm, frames


def cross_validate(
    make_estimator: Callable[[], Any],
    X: np.ndarray,
    y: np.ndarray,
    session: np.ndarray,
    run: np.ndarray,
    protocols: Sequence[str],
    n_folds: int,
    shuffle: bool,
    seed: int,
    *,
    classes: Sequence[str] | None = None,
    pretraining: str | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Evaluate a decoder under each protocol.

    Parameters
    ----------
    make_estimator : callable
        Returns a new unfitted scikit-learn estimator; called (and the result cloned) once
        per fold. Each is fitted on ``X[train], y[train]`` only.
    X : ndarray, shape (n_epochs, ...)
        Features, e.g. covariance matrices of shape (n_epochs, n_channels, n_channels).
    y : ndarray of int, shape (n_epochs,)
        Class index of each epoch.
    session, run : ndarray of str, shape (n_epochs,)
        Session and run label of each epoch.
    protocols : sequence of str
        Any of ``"within_session"``, ``"cross_session"``, ``"grouped_kfold"``.
    n_folds : int
        Folds of the within-session and grouped k-folds.
    shuffle : bool
        Shuffle before the within-session and grouped splits.
    seed : int
        Seed of every random choice of the splits.
    classes : sequence of str, optional
        Class names (index = class); default ``"0", "1", ...`` up to ``max(y)``.
    pretraining : str, optional
        For a decoder that reads a model pretrained outside the folds (the tokenizer, the
        diffusion backbone): what that model saw (:func:`pretraining_note`). It replaces the
        descriptions' claim that nothing fitted saw the test trials.

    Returns
    -------
    results : dict
        ``{protocol: {...}}`` in the ``metrics.json`` layout, or ``{"skipped": reason}`` for
        a cross-session protocol with fewer than two sessions.
    predictions : DataFrame
        One row per tested epoch and protocol: ``protocol, fold, epoch, session, run, y_true,
        y_pred, label_true, label_pred, proba_<class>...``.

    Raises
    ------
    DataError
        If a class is too rare in a session for ``n_folds`` folds, or (grouped) in too few
        runs.
    ValueError
        On an unknown protocol or arrays of mismatched length.
    """
    X = np.asarray(X)
    y = np.asarray(y, dtype=np.int64)
    session = np.asarray(session, dtype=str)
    run = np.asarray(run, dtype=str)
    if not len(X) == len(y) == len(session) == len(run):
        raise ValueError(
            f"X, y, session and run differ in length: {len(X)}, {len(y)}, {len(session)}, "
            f"{len(run)}"
        )
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol(s) {unknown}; valid: {', '.join(PROTOCOLS)}")
    classes = [str(c) for c in classes] if classes is not None else [
        str(k) for k in range(int(y.max()) + 1)
    ]
    n_classes = len(classes)
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"class indices must lie in 0..{n_classes - 1}; got {np.unique(y)}")
    sessions = _sessions_in_order(session)

    results: dict[str, Any] = {}
    frames: list[pd.DataFrame] = []
    for protocol in protocols:
        if protocol == "within_session":
            splits = within_session_splits(y, session, n_folds, shuffle, seed, classes=classes)
            k = n_folds
        elif protocol == "grouped_kfold":
            splits = grouped_kfold_splits(y, session, run, n_folds, shuffle, seed,
                                          classes=classes)
            k = n_folds
        else:
            splits = cross_session_splits(y, session)
            k = len(sessions)
            if not splits:
                results[protocol] = {
                    "skipped": f"only {len(sessions)} session ({', '.join(sessions)}); "
                    "leave-one-session-out needs at least two"
                }
                continue
        folds, cm, protocol_frames = _run_protocol(
            make_estimator, X, y, session, run, splits, classes
        )
        frames.extend(protocol_frames)
        tested = np.concatenate([s.test for s in splits])
        majority = chance_level(y[tested])
        results[protocol] = {
            "description": _describe(protocol, n_folds, shuffle, sessions,
                                     n_groups=len(np.unique(run_groups(session, run))),
                                     n_epochs=len(y), pretraining=pretraining),
            "n_folds": k,
            "sessions": sessions,
            "folds": folds,
            "summary": {name: _summary([f[name] for f in folds]) for name in SCORES},
            "confusion_matrix": cm.tolist(),
            "chance_level": majority,
            "chance_threshold_p05": chance_threshold(len(tested), n_classes, 0.05,
                                                     rate=majority),
        }
    columns = ["protocol", "fold", "epoch", "session", "run", "y_true", "y_pred",
               "label_true", "label_pred"] + [f"proba_{c}" for c in classes]
    predictions = (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    )
    return results, predictions
