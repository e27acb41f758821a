"""ACM decoders: augmented covariance → tangent space + SVM, or → MDM, with (order, lag) chosen
on the training fold only.

Carrara & Papadopoulo (arXiv:2302.04508). Three ways to choose the embedding:

``grid``
    Nested grid search as in the paper: inner ``StratifiedKFold(inner_folds, shuffle=True)``
    over ``order × lag × C × kernel`` (``order × lag`` for MDM). Equivalent to scikit-learn's
    ``GridSearchCV`` over ``[AugmentedDataset, Covariances, TangentSpace, SVC]`` with the
    parameter names ``augment__lag, augment__order, svc__C, svc__kernel``: same splits, same
    candidate order (ties go to the first candidate, lag varying slowest), same mean-of-folds
    criterion and the same refit on the whole training set. It is faster because the work that
    does not depend on ``C``, the kernel or the inner split is done once: the lagged products
    of the training epochs are computed once for the whole grid (an ACM is a per-epoch
    transform, nothing is fitted), and one tangent space per (order, lag, inner split) serves
    every ``C`` and kernel, as do its SVC kernel matrices for every ``C``
    (:mod:`brainmill.svm_grams`). Nothing fitted on one split is used on another.
``takens``
    Lag from the first minimum of the average mutual information, order from Cao's averaged
    false-nearest neighbours (:mod:`brainmill.features.embedding_selection`) on the training
    epochs; ``C`` and kernel by the inner CV.
``fixed``
    ``order`` and ``lag`` as given; ``C`` and kernel by the inner CV when more than one is given.

Grid points whose embedding is impossible for the epochs (``order·lag`` too large, or a
rank-deficient plain covariance) are skipped: they score NaN and are never chosen.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import numba
import numpy as np
from pyriemann.classification import MDM
from sklearn import config_context
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.decomposition import PCA
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC
from sklearn.utils._available_if import available_if
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_is_fitted

from .evaluation import check_groups
from .features._acm_kernels import blas_one_thread
from .features.augmented import (
    LaggedProducts,
    augmented_covariances,
    check_signals,
    feasible,
)
from .features.riemann import ThreadedTangentSpace
from .scoring import inner_scorer
from .svm_grams import svc_grams

CLASSIFIERS = ("ts_svm", "mdm")
SELECTIONS = ("grid", "takens", "fixed")


def default_scoring(n_classes: int) -> str:
    """MOABB's choice, used by the paper: ROC-AUC for two classes, accuracy otherwise."""
    return "roc_auc" if n_classes == 2 else "accuracy"


def _by_params(per_split: list[np.ndarray]) -> np.ndarray:
    """Scores of each split ``(n_params,)`` as a C-ordered ``(n_params, n_splits)`` array:
    GridSearchCV averages that layout along its last axis, and numpy sums 8 or more values
    pairwise, so another layout would round the means differently and could break a tie."""
    return np.ascontiguousarray(np.array(per_split).T)


class ACMClassifier(ClassifierMixin, BaseEstimator):
    """Augmented covariance classifier with per-fold (order, lag) selection.

    Parameters
    ----------
    classifier : {"ts_svm", "mdm"}
        Tangent space at the Riemannian mean (``metric``) + ``SVC``, or pyriemann's ``MDM``.
    selection : {"grid", "takens", "fixed"}
        How (order, lag) are chosen; see the module docstring.
    orders, lags : sequence of int
        Grid of the ``grid`` selection (the paper: 1..10 each).
    order, lag : int
        Embedding of the ``fixed`` selection.
    Cs : sequence of float
        SVM ``C`` values searched by the inner CV (the paper: 0.5, 1, 1.5).
    kernels : sequence of {"linear", "rbf"}
        SVM kernels searched by the inner CV.
    inner_folds : int
        Folds of the inner stratified CV (shuffled with ``random_state``).
    estimator : {"cov", "oas", "lwf"}
        Covariance estimator (the paper: plain ``cov``).
    metric : str
        Riemannian metric of the tangent space / MDM mean and distance.
    scoring : str or None
        Inner-CV score; None → ``roc_auc`` for two classes, ``accuracy`` otherwise.
    max_order, max_lag : int
        Bounds of the ``takens`` selection.
    random_state : int
        Seed of the inner CV shuffle and of the Takens subsampling.

    Attributes
    ----------
    order_, lag_ : int
        The chosen embedding.
    params_ : dict
        Chosen ``C`` and ``kernel`` (``ts_svm``).
    fit_info_ : dict
        JSON-able record of the selection: inner scores per (order, lag), chosen values, and
        for ``takens`` the mutual-information and E1 curves.
    pipeline_ : estimator
        Final tangent space + SVC (or MDM) fitted on all training epochs.
    classes_ : ndarray
    """

    def __init__(
        self,
        classifier: str = "ts_svm",
        selection: str = "grid",
        orders: Sequence[int] = tuple(range(1, 11)),
        lags: Sequence[int] = tuple(range(1, 11)),
        order: int = 4,
        lag: int = 4,
        Cs: Sequence[float] = (0.5, 1.0, 1.5),
        kernels: Sequence[str] = ("linear", "rbf"),
        inner_folds: int = 3,
        estimator: str = "cov",
        metric: str = "riemann",
        scoring: str | None = None,
        max_order: int = 10,
        max_lag: int = 10,
        random_state: int = 0,
    ) -> None:
        self.classifier = classifier
        self.selection = selection
        self.orders = orders
        self.lags = lags
        self.order = order
        self.lag = lag
        self.Cs = Cs
        self.kernels = kernels
        self.inner_folds = inner_folds
        self.estimator = estimator
        self.metric = metric
        self.scoring = scoring
        self.max_order = max_order
        self.max_lag = max_lag
        self.random_state = random_state

    # ------------------------------------------------------------------ building blocks
    def _svm_params(self) -> list[dict[str, Any]]:
        if self.classifier == "mdm":
            return [{}]
        # ParameterGrid order: sorted keys (svc__C before svc__kernel), last varies fastest
        return [{"C": float(c), "kernel": k} for c in self.Cs for k in self.kernels]

    def _head(self, params: dict[str, Any]) -> BaseEstimator:
        """The classifier after the covariances, unfitted."""
        if self.classifier == "mdm":
            return MDM(metric={"mean": self.metric, "distance": self.metric})
        return SVC(C=params["C"], kernel=params["kernel"])

    def _inner_splits(self, y: np.ndarray, groups: np.ndarray | None = None
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The inner CV: stratified k-fold, or with ``groups`` stratified group k-fold,
        refused where it cannot score every class in every fold."""
        if groups is None:
            cv = StratifiedKFold(self.inner_folds, shuffle=True, random_state=self.random_state)
            return list(cv.split(np.zeros((len(y), 1)), y))
        per_class = min(len(np.unique(groups[y == c])) for c in self.classes_)
        if per_class < self.inner_folds:
            raise ValueError(
                f"a class occurs in only {per_class} group(s), fewer than the "
                f"{self.inner_folds} inner folds; lower inner_folds or pass no groups")
        cv = StratifiedGroupKFold(self.inner_folds, shuffle=True,
                                  random_state=self.random_state)
        splits = list(cv.split(np.zeros((len(y), 1)), y, groups))
        for k, (_, test) in enumerate(splits):
            missing = np.setdiff1d(self.classes_, y[test])
            if len(missing):
                # recordings holding several classes cannot always be stratified: a fold
                # without a class has no ROC-AUC, and every point would score NaN
                raise ValueError(
                    f"inner fold {k} of the grouped inner CV has no epoch of class(es) "
                    f"{missing.tolist()} (groups that hold several classes cannot always be "
                    "stratified); lower inner_folds, or pass groups that each hold one class")
        return splits

    def _score_split(self, covs: np.ndarray, y: np.ndarray, train: np.ndarray,
                     test: np.ndarray, scorer) -> np.ndarray:
        """Inner-CV scores of one (order, lag) on one split: shape (n_svm_params,).

        Two of scikit-learn's checks are off inside (``skip_parameter_validation``,
        ``assume_finite``; per thread): every estimator here is made by this class with
        valid parameters, and the matrices were checked finite before the tangent space.
        Parameter validation (signature binding) and the finiteness scans of ``check_array``
        took about 5 % of PhysioNet's nested search on two threads (7.29 against 6.93 s,
        medians of 4 alternating runs, the same decision values; BENCHMARKS.md, nineteenth
        session).
        """
        with config_context(skip_parameter_validation=True, assume_finite=True):
            return self._score_split_unchecked(covs, y, train, test, scorer)

    def _score_split_unchecked(self, covs: np.ndarray, y: np.ndarray, train: np.ndarray,
                               test: np.ndarray, scorer) -> np.ndarray:
        """:meth:`_score_split` with scikit-learn's checks as they are set."""
        params = self._svm_params()
        scores = np.full(len(params), np.nan)
        if self.classifier == "mdm":
            head = self._head({}).fit(covs[train], y[train])
            scores[0] = scorer(head, covs[test], y[test])
            return scores
        # shared by every C, kernel
        # rows of covs, not a copy held while iterating (two tasks side by side would hold
        # two): only the finite check and the mean's start copy them, briefly
        ts = ThreadedTangentSpace(metric=self.metric).fit_rows(covs, train)
        z_train, z_test = ts.transform_rows(covs, train), ts.transform_rows(covs, test)
        grams = svc_grams(self.kernels, z_train, z_test)  # shared by every C
        for i, p in enumerate(params):
            if p["kernel"] in grams:
                k_train, k_test = grams[p["kernel"]]
                head = SVC(C=p["C"], kernel="precomputed").fit(k_train, y[train])
                scores[i] = scorer(head, k_test, y[test])
            else:
                head = self._head(p).fit(z_train, y[train])
                scores[i] = scorer(head, z_test, y[test])
        return scores

    def _search(self, products: LaggedProducts, points: list[tuple[int, int]],
                valid: list[tuple[int, int]], y: np.ndarray, splits, scorer) -> np.ndarray:
        """Mean inner-CV score of every point and SVM parameter: (n_points, n_svm_params).

        Infeasible points score ``-inf``. On one kernel thread the points are scored in turn,
        each point's matrices written into one buffer. On several, each (point, split) is a
        task on its own thread, whole (its tangent space, maps and SVMs on that thread, BLAS
        on one thread): the iterations of a Riemannian mean are sequential and their
        ``eigh`` calls small, so splitting each stack over the threads left the cores idle
        between steps (see BENCHMARKS.md). At most ``ceil(threads / n_splits) + 1`` points'
        matrices are held at a time. BLAS runs one thread there and its default elsewhere,
        so products large enough for OpenBLAS to split (about 100 × 100 and more here) can
        round differently on one kernel thread and on several.
        """
        n_params = len(self._svm_params())
        keys = {p: (p[0], p[1] if p[0] > 1 else 0) for p in valid}  # order 1 ignores the lag
        first: dict[tuple[int, int], tuple[int, int]] = {}
        for point in valid:
            first.setdefault(keys[point], point)
        scored = list(first.values())  # one point per distinct matrix stack
        threads = min(numba.get_num_threads(), len(splits) * len(scored))
        if threads < 2:
            # every point's matrices in one buffer: each is scored, then overwritten
            n_epochs, n_channels, _ = products.shape
            buffer = np.empty(n_epochs * (n_channels * max(o for o, _ in valid)) ** 2)
            scores = {}
            for point in scored:
                covs = products.covariances(*point, self.estimator, out=buffer)
                scores[keys[point]] = _by_params([
                    self._score_split(covs, y, train, test, scorer) for train, test in splits])
        else:
            scores = self._search_threaded(products, scored, keys, y, splits, scorer, threads)
        mean_scores = np.full((len(points), n_params), -np.inf)  # infeasible: never chosen
        for i, point in enumerate(points):
            if point in keys:
                # GridSearchCV's own reduction: (params, splits), mean along the splits
                mean_scores[i] = np.average(scores[keys[point]], axis=1)
        mean_scores[np.isnan(mean_scores)] = -np.inf  # an undefined score is never chosen
        return mean_scores

    def _search_threaded(self, products, scored, keys, y, splits, scorer, threads):
        """:meth:`_search`'s (point, split) tasks on ``threads`` threads; ``scored``: one
        point per distinct matrix stack.

        The points go largest first (highest order; a task's time grows with the matrices'
        size): in grid order the order-4 points came last, and the last of their tasks ran
        alone. PhysioNet's nested search took 0.975× the time (7.09 against 7.27 s, medians
        of 4 alternating runs, the same decision values; BENCHMARKS.md, nineteenth session).
        Each task's scores do not depend on when it runs.
        """
        scored = sorted(scored, key=lambda point: -point[0])  # stable: grid order otherwise
        def task(covs: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
            numba.set_num_threads(1)  # per thread: this task's means stay on its thread
            return self._score_split(covs, y, train, test, scorer)

        pending: deque[tuple[tuple[int, int], list[Future]]] = deque()
        scores: dict[tuple[int, int], np.ndarray] = {}

        def collect_oldest() -> None:
            key, futures = pending.popleft()
            wait(futures)  # all done before any error propagates
            scores[key] = _by_params([f.result() for f in futures])

        n_splits = len(splits)
        # the pool shuts down (waits for running tasks) inside the BLAS hold
        with blas_one_thread(), \
                ThreadPoolExecutor(threads, thread_name_prefix="brainmill-acm-search") as pool:
            try:
                for point in scored:
                    # enough points queued to keep every thread busy, and no more:
                    # at most ceil(threads / n_splits) + 1 points' matrices held
                    while len(pending) * n_splits >= threads + n_splits:
                        collect_oldest()
                    covs = products.covariances(*point, self.estimator)
                    pending.append((keys[point], [pool.submit(task, covs, train, test)
                                                  for train, test in splits]))
                while pending:
                    collect_oldest()
            finally:
                for _, futures in pending:
                    for f in futures:
                        f.cancel()
        return scores

    # ------------------------------------------------------------------------ selection
    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None
            ) -> ACMClassifier:
        """Choose (order, lag, C, kernel) on ``X, y`` only, then refit on all of it.

        Parameters
        ----------
        X : ndarray, shape (n_epochs, n_channels, n_times)
        y : ndarray, shape (n_epochs,)
        groups : ndarray, shape (n_epochs,), optional
            Recording (segment, run) of each epoch: the inner CV then keeps each group in one
            inner fold (``StratifiedGroupKFold``), as ``GridSearchCV.fit(..., groups=)`` with
            a group splitter. Use it for windows cut from one recording, which are near
            duplicates of each other: split apart, they make the inner scores optimistic.
        """
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {CLASSIFIERS}; got {self.classifier!r}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}; got {self.selection!r}")
        X = check_signals(X)
        y = np.asarray(y)
        self.classes_ = unique_labels(y)
        counts = np.bincount(np.searchsorted(self.classes_, y))
        if counts.min() < self.inner_folds:
            raise ValueError(
                f"the smallest class has {counts.min()} training epochs, fewer than the "
                f"{self.inner_folds} inner folds; lower inner_folds or n_folds, or add epochs"
            )
        groups = check_groups(groups, len(y), type(self).__name__)
        n_epochs, n_channels, n_times = X.shape
        info: dict[str, Any] = {"selection": self.selection, "classifier": self.classifier}
        if self.selection == "takens":
            from .features.embedding_selection import select_order_lag

            chosen = select_order_lag(
                X, max_order=self.max_order, max_lag=self.max_lag,
                random_state=self.random_state,
            )
            order, lag = int(chosen["order"]), int(chosen["lag"])
            info["takens"] = {"ami": list(map(float, chosen["ami"])),
                              "e1": list(map(float, chosen["e1"]))}
            orders, lags = [order], [lag]
        elif self.selection == "grid":
            orders, lags = [int(o) for o in self.orders], [int(lg) for lg in self.lags]
        else:
            orders, lags = [int(self.order)], [int(self.lag)]
        scoring = self.scoring or default_scoring(len(self.classes_))
        scorer = inner_scorer(scoring)
        params = self._svm_params()
        points = [(o, lg) for lg in lags for o in orders]  # lag slowest, as GridSearchCV
        valid = [p for p in points if feasible(n_times, n_channels, *p, self.estimator)]
        if not valid:
            raise ValueError(
                f"no (order, lag) of orders={orders}, lags={lags} fits epochs of {n_times} "
                f"samples and {n_channels} channels with estimator '{self.estimator}'; use "
                "smaller orders/lags or estimator='oas'"
            )
        products = LaggedProducts.for_points(X, valid)  # a point that does not fit may
        # need a delay longer than the epoch: only the valid ones
        if self.estimator != "lwf":  # every product is computed: keep only the epoch edges
            products.release_signals(max(o * lg for o, lg in valid))
        if len(valid) > 1 or len(params) > 1:
            splits = self._inner_splits(y, groups)
            info["inner_cv"] = ("stratified k-fold" if groups is None
                                else "stratified group k-fold")
            mean_scores = self._search(products, points, valid, y, splits, scorer)
            best = int(np.argmax(mean_scores))  # first of the ties, like GridSearchCV
            point, param = points[best // len(params)], params[best % len(params)]
        else:  # one candidate: nothing to score
            mean_scores = np.full((len(points), len(params)), -np.inf)
            point, param = valid[0], params[0]
        self.order_, self.lag_ = int(point[0]), int(point[1])
        self.params_ = dict(param)
        covs = products.covariances(self.order_, self.lag_, self.estimator)
        del products
        self.pipeline_ = self._final(param).fit(covs, y)
        best_per_point = mean_scores.max(axis=1)
        grid = np.full((len(orders), len(lags)), np.nan)
        for (o, lg), v in zip(points, best_per_point, strict=True):
            if np.isfinite(v):
                grid[orders.index(o), lags.index(lg)] = v
        info.update({
            "order": self.order_, "lag": self.lag_, **self.params_, "scoring": scoring,
            "inner_folds": int(self.inner_folds), "orders": orders, "lags": lags,
            "inner_scores": [[None if np.isnan(v) else float(v) for v in row] for row in grid],
            "n_train": int(n_epochs),
        })
        self.fit_info_ = info
        return self

    def _final(self, params: dict[str, Any]) -> BaseEstimator:
        if self.classifier == "mdm":
            return self._head(params)
        return Pipeline([("tangentspace", ThreadedTangentSpace(metric=self.metric)),
                         ("svc", self._head(params))])

    # ------------------------------------------------------------------------ inference
    def covariances(self, X: np.ndarray) -> np.ndarray:
        """ACMs of ``X`` at the chosen (order, lag): (n_epochs, C·order, C·order)."""
        check_is_fitted(self, "pipeline_")
        return augmented_covariances(X, self.order_, self.lag_, self.estimator)

    def tangent_vectors(self, X: np.ndarray) -> np.ndarray:
        """Tangent vectors of ``X`` at the training mean (``ts_svm`` only)."""
        check_is_fitted(self, "pipeline_")
        if self.classifier != "ts_svm":
            raise AttributeError("tangent vectors exist for the ts_svm classifier only")
        return self.pipeline_.named_steps["tangentspace"].transform(self.covariances(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted classes of epochs ``X`` (n_epochs, n_channels, n_times)."""
        covs = self.covariances(X)
        return self.pipeline_.predict(covs)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """SVM decision values (``ts_svm``) or negative squared distances to class means."""
        covs = self.covariances(X)
        if self.classifier == "mdm":
            return -self.pipeline_.transform(covs) ** 2
        return self.pipeline_.decision_function(covs)

    @available_if(lambda self: self.classifier == "mdm")
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """MDM's softmax of negative squared distances (``mdm`` only)."""
        covs = self.covariances(X)
        return self.pipeline_.predict_proba(covs)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        return tags



def tangent_projection(
    X: np.ndarray, y: np.ndarray, fit_infos: list[dict[str, Any]], estimator: str, metric: str
) -> dict[str, Any]:
    """2-D PCA of every epoch's tangent vector, for the report (descriptive, not evaluative).

    Uses the (order, lag) chosen most often across the outer folds; the tangent space is taken
    at the Riemannian mean of *all* the subject's epochs, so the picture must not be read as a
    cross-validated result (the report says so).

    Returns
    -------
    dict
        ``order``, ``lag``, ``points`` (n_epochs × 2), ``y``, ``explained`` (variance ratios).
    """
    chosen = Counter((i["order"], i["lag"]) for i in fit_infos if "order" in i)
    order, lag = chosen.most_common(1)[0][0] if chosen else (1, 1)
    covs = augmented_covariances(X, order, lag, estimator)
    vectors = ThreadedTangentSpace(metric=metric).fit_transform(covs)
    # full SVD: sklearn's 'auto' picks the randomized solver for wide data, whose unseeded
    # start made 'explained' differ in the last bits between two runs of one config
    pca = PCA(n_components=2, svd_solver="full").fit(vectors)
    return {"order": int(order), "lag": int(lag),
            "points": np.round(pca.transform(vectors), 6).tolist(),
            "y": np.asarray(y).astype(int).tolist(),
            "explained": [float(v) for v in pca.explained_variance_ratio_],
            "note": "tangent space at the mean of all epochs; descriptive only"}
