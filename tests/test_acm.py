"""ACM decoders: nested selection equals scikit-learn's GridSearchCV on the reference pipeline."""

import numpy as np
import pytest
from pyriemann.classification import MDM
from pyriemann.estimation import Covariances
from pyriemann.tangentspace import TangentSpace
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC
from sklearn.utils.estimator_checks import (
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)

from brainmill.acm import ACMClassifier
from brainmill.features.augmented import delay_embed


class Augment(TransformerMixin, BaseEstimator):
    """The reference embedding (MOABB's AugmentedDataset semantics) as a pipeline step."""

    def __init__(self, order=1, lag=1):
        self.order = order
        self.lag = lag

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return delay_embed(X, self.order, self.lag)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    n, c, t = 48, 4, 150
    y = np.repeat([0, 1], n // 2)
    X = rng.standard_normal((n, c, t))
    X[y == 1, 0] += 0.6 * np.sin(np.arange(t) * 0.3)  # class 1: rhythm on channel 0
    X[y == 1, 1, 2:] += 0.5 * X[y == 1, 1, :-2]  # and lag-2 autocorrelation on channel 1
    return X, y


GRID = {"orders": [1, 2, 3], "lags": [1, 2], "Cs": [0.5, 1.0], "kernels": ["linear", "rbf"]}


def reference_search(grid, estimator):
    """GridSearchCV on [embedding, Covariances, TangentSpace, SVC] over ``grid``; a point
    that cannot be embedded scores NaN."""
    return GridSearchCV(
        Pipeline([("augment", Augment()), ("cov", Covariances(estimator)),
                  ("ts", TangentSpace()), ("svc", SVC())]),
        {"augment__order": grid["orders"], "augment__lag": grid["lags"],
         "svc__C": grid["Cs"], "svc__kernel": grid["kernels"]},
        cv=StratifiedKFold(3, shuffle=True, random_state=7), scoring="roc_auc",
        error_score=np.nan,
    )


def test_grid_selection_equals_gridsearchcv(data):
    X, y = data
    ref = reference_search(GRID, "cov").fit(X, y)
    ours = ACMClassifier(random_state=7, **GRID).fit(X, y)
    chosen = ref.best_params_
    assert (ours.order_, ours.lag_) == (chosen["augment__order"], chosen["augment__lag"])
    assert ours.params_ == {"C": chosen["svc__C"], "kernel": chosen["svc__kernel"]}
    np.testing.assert_allclose(ours.decision_function(X), ref.decision_function(X), atol=1e-9)
    # the heat-map holds the best mean inner score of each (order, lag) over C and kernel
    table = ref.cv_results_
    for i, o in enumerate(GRID["orders"]):
        for j, lg in enumerate(GRID["lags"]):
            rows = [(table["param_augment__order"][k] == o) & (table["param_augment__lag"][k] == lg)
                    for k in range(len(table["params"]))]
            best = np.max(table["mean_test_score"][np.array(rows)])
            assert ours.fit_info_["inner_scores"][i][j] == pytest.approx(best, abs=1e-12)


@pytest.fixture
def search_threads():
    """Run a block with numba's thread count set (the search's tasks follow it)."""
    import numba

    before = numba.get_num_threads()
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one CPU: numba has a single thread")
    yield numba.set_num_threads
    numba.set_num_threads(before)


@pytest.mark.parametrize("classifier", ["ts_svm", "mdm"])
def test_search_is_identical_on_one_and_several_threads(data, search_threads, classifier):
    """One thread scores the points in turn; several run (point, split) tasks side by side:
    the same scores, bit for bit, so the same choice."""
    X, y = data
    fits = []
    for n in (1, 2):
        search_threads(n)
        fits.append(ACMClassifier(random_state=7, classifier=classifier, **GRID).fit(X, y))
    one, two = fits
    assert one.fit_info_ == two.fit_info_  # inner scores compared with ==
    assert (one.order_, one.lag_, one.params_) == (two.order_, two.lag_, two.params_)
    np.testing.assert_array_equal(one.decision_function(X), two.decision_function(X))


@pytest.mark.parametrize("threads", [1, 2])
def test_inner_scoring_runs_without_sklearn_checks(data, search_threads, monkeypatch, threads):
    """The (point, split) tasks turn scikit-learn's validation off on their own thread
    (it cost ~5 % of a nested search) and leave it as it was everywhere else."""
    import sklearn

    from brainmill import acm

    seen = []
    real = acm.svc_grams

    def recording(*args):
        config = sklearn.get_config()
        seen.append((config["skip_parameter_validation"], config["assume_finite"]))
        return real(*args)

    monkeypatch.setattr(acm, "svc_grams", recording)
    search_threads(threads)
    X, y = data
    before = sklearn.get_config()
    ACMClassifier(random_state=7, **GRID).fit(X, y)
    assert seen and set(seen) == {(True, True)}
    assert sklearn.get_config() == before


def test_threaded_search_holds_one_point_per_thread(data, search_threads, monkeypatch):
    import gc
    import weakref

    from brainmill.features.augmented import LaggedProducts

    X, y = data
    alive: list[weakref.ref] = []
    most = []
    real = LaggedProducts.covariances

    def counted(self, *args, **kwargs):
        gc.collect()
        most.append(sum(r() is not None for r in alive))
        covs = real(self, *args, **kwargs)
        alive.append(weakref.ref(covs))
        return covs

    monkeypatch.setattr(LaggedProducts, "covariances", counted)
    search_threads(2)
    grid = {**GRID, "orders": [1, 2, 3, 4], "lags": [1, 2, 3]}
    ACMClassifier(random_state=7, **grid).fit(X, y)
    assert len(most) == 1 + 3 * 3 + 1  # order 1 once, orders 2-4 at each lag, the refit
    assert max(most) <= 2


def test_threaded_search_starts_with_the_largest_matrices(data, search_threads, monkeypatch):
    """Largest stacks first (their tasks take longest), lags in grid order within an order;
    the same choice as one thread, which goes in grid order."""
    from brainmill.features.augmented import LaggedProducts

    X, y = data
    asked = []
    real = LaggedProducts.covariances

    def recording(self, order, lag, *args, **kwargs):
        asked.append((order, lag))
        return real(self, order, lag, *args, **kwargs)

    monkeypatch.setattr(LaggedProducts, "covariances", recording)
    grid = {**GRID, "orders": [1, 2, 3], "lags": [1, 2]}
    search_threads(2)
    two = ACMClassifier(random_state=7, **grid).fit(X, y)
    assert asked[:-1] == [(3, 1), (3, 2), (2, 1), (2, 2), (1, 1)]  # then the refit
    search_threads(1)
    asked.clear()
    one = ACMClassifier(random_state=7, **grid).fit(X, y)
    assert asked[:-1] == [(1, 1), (2, 1), (3, 1), (2, 2), (3, 2)]
    assert one.fit_info_ == two.fit_info_


@pytest.mark.parametrize("n_threads", [1, 2])
def test_inner_means_are_reduced_as_gridsearchcv_does(data, search_threads, monkeypatch,
                                                     n_threads):
    """With 8 or more inner folds numpy sums pairwise: the mean of each (point, C, kernel)
    must be taken along the splits of a (params, splits) array, as scikit-learn does, or
    its last bit (and so a near-tie) can differ."""
    from brainmill.features.augmented import LaggedProducts
    from brainmill.scoring import inner_scorer

    X, y = data
    rng = np.random.default_rng(11)
    drawn: dict = {}

    def fake(self, covs, y_, train, test, scorer):
        key = (covs.shape[1], int(test[0]))
        return drawn.setdefault(key, rng.uniform(0.3, 0.9, len(self._svm_params())))

    monkeypatch.setattr(ACMClassifier, "_score_split", fake)
    search_threads(n_threads)
    clf = ACMClassifier(random_state=7, inner_folds=9, **GRID)
    clf.classes_ = np.unique(y)
    points = [(o, 1) for o in GRID["orders"]]
    splits = clf._inner_splits(y)
    got = clf._search(LaggedProducts.for_points(X, points), points, points, y, splits,
                      inner_scorer("roc_auc"))
    differs = False
    for i, (order, _) in enumerate(points):
        per_split = [drawn[(order * X.shape[1], int(test[0]))] for _, test in splits]
        expected = np.average(np.ascontiguousarray(np.array(per_split).T), axis=1)  # sklearn
        np.testing.assert_array_equal(got[i], expected)
        differs |= bool(np.any(expected != np.average(np.array(per_split), axis=0)))
    assert differs  # the layouts round differently on these draws: the test can fail


def test_a_failing_task_fails_the_search(data, search_threads, monkeypatch):
    X, y = data
    real = ACMClassifier._score_split

    def failing(self, covs, *args):
        if covs.shape[1] == 3 * X.shape[1]:
            raise RuntimeError("order 3 failed")
        return real(self, covs, *args)

    monkeypatch.setattr(ACMClassifier, "_score_split", failing)
    search_threads(2)
    with pytest.raises(RuntimeError, match="order 3 failed"):
        ACMClassifier(random_state=7, **GRID).fit(X, y)


def test_grouped_inner_cv_equals_gridsearchcv_with_a_group_splitter(data):
    """``fit(X, y, groups)``: the inner CV keeps each recording in one inner fold, as
    ``GridSearchCV(cv=StratifiedGroupKFold).fit(X, y, groups=groups)``."""
    from sklearn.model_selection import StratifiedGroupKFold

    X, y = data
    groups = np.arange(len(y)) // 3  # 16 recordings of 3 epochs, one class each
    ref = reference_search(GRID, "cov")
    ref.set_params(cv=StratifiedGroupKFold(3, shuffle=True, random_state=7))
    ref.fit(X, y, groups=groups)
    ours = ACMClassifier(random_state=7, **GRID).fit(X, y, groups=groups)
    chosen = ref.best_params_
    assert (ours.order_, ours.lag_) == (chosen["augment__order"], chosen["augment__lag"])
    assert ours.params_ == {"C": chosen["svc__C"], "kernel": chosen["svc__kernel"]}
    best = np.max(ref.cv_results_["mean_test_score"])
    assert np.nanmax(np.array(ours.fit_info_["inner_scores"], dtype=float)) == pytest.approx(
        best, abs=1e-12)
    for train, test in ours._inner_splits(y, groups):
        assert not set(groups[train]) & set(groups[test])
    # the ungrouped search scores differently on these data: the groups are used
    plain = ACMClassifier(random_state=7, **GRID).fit(X, y)
    assert plain.fit_info_["inner_scores"] != ours.fit_info_["inner_scores"]


def test_grouped_inner_cv_needs_enough_groups_per_class(data):
    X, y = data
    with pytest.raises(ValueError, match="only 2 group"):
        ACMClassifier(**GRID).fit(X, y, groups=np.where(np.arange(len(y)) % 24 < 12, 0, 1)
                                  + 2 * y)
    with pytest.raises(ValueError, match="one group label per epoch"):
        ACMClassifier(**GRID).fit(X, y, groups=np.zeros(len(y) - 1))
    # groups holding both classes: enough groups per class, yet one inner fold has no
    # class-1 epoch (every point would score NaN and the first be chosen): refused
    mixed = np.array([3, 1, 0, 0, 2, 0, 2, 1, 3, 3, 0, 2, 0, 0, 3, 3, 0, 2, 0, 1, 1, 0, 1, 2,
                      4, 2, 3, 2, 2, 5, 5, 4, 4, 4, 6, 2, 3, 5, 4, 3, 2, 3, 3, 4, 2, 4, 3, 3])
    with pytest.raises(ValueError, match="inner fold .* has no epoch of class"):
        ACMClassifier(random_state=7, **GRID).fit(X, y, groups=mixed)
    # no inner CV (one point, one C, one kernel): groups are not needed and not checked
    fixed = ACMClassifier(selection="fixed", order=2, lag=1, Cs=[1.0], kernels=["linear"])
    assert "inner_cv" not in fixed.fit(X, y, groups=y).fit_info_
    assert ACMClassifier(random_state=7, **GRID).fit(
        X, y, groups=np.arange(len(y)) // 3).fit_info_["inner_cv"] == "stratified group k-fold"


def test_mdm_grid_equals_gridsearchcv(data):
    X, y = data
    ref = GridSearchCV(
        Pipeline([("augment", Augment()), ("cov", Covariances("oas")),
                  ("mdm", MDM(metric={"mean": "riemann", "distance": "riemann"}))]),
        {"augment__order": [1, 2, 4], "augment__lag": [1, 3]},
        cv=StratifiedKFold(3, shuffle=True, random_state=0), scoring="accuracy",
    ).fit(X, y)
    ours = ACMClassifier(classifier="mdm", orders=[1, 2, 4], lags=[1, 3], estimator="oas",
                         scoring="accuracy", random_state=0).fit(X, y)
    assert (ours.order_, ours.lag_) == (ref.best_params_["augment__order"],
                                        ref.best_params_["augment__lag"])
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-9)


def test_infeasible_points_are_skipped_not_chosen(data):
    X, y = data
    clf = ACMClassifier(orders=[1, 60], lags=[1, 3], Cs=[1.0], kernels=["linear"]).fit(X, y)
    assert clf.order_ == 1
    scores = clf.fit_info_["inner_scores"]
    assert scores[1] == [None, None]  # 60·4 channels > 150 samples, and 60·3 > 150
    assert all(v is not None for v in scores[0])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.FitFailedWarning",
                            "ignore:One or more of the test scores are non-finite")
def test_points_fitting_at_a_short_lag_only_are_skipped_at_the_long_one(data):
    """Order 8 fits at lag 1 but not at lag 30 (240 > 150 samples): the grid scores the
    points that fit, as GridSearchCV does (a regression: the products of every order × lag
    were asked for, including delays longer than the epoch, which raised)."""
    X, y = data
    grid = {"orders": [1, 2, 8], "lags": [1, 30], "Cs": [1.0], "kernels": ["linear"]}
    ours = ACMClassifier(random_state=7, estimator="oas", **grid).fit(X, y)
    assert ours.fit_info_["inner_scores"][2][1] is None  # (8, 30) never scored
    assert all(v is not None for row in ours.fit_info_["inner_scores"][:2] for v in row)
    ref = reference_search(grid, "oas").fit(X, y)
    chosen = ref.best_params_
    assert (ours.order_, ours.lag_) == (chosen["augment__order"], chosen["augment__lag"])


def test_fixed_selection_fits_without_inner_cv(data):
    X, y = data
    clf = ACMClassifier(selection="fixed", order=3, lag=2, Cs=[1.0], kernels=["rbf"]).fit(X, y)
    assert (clf.order_, clf.lag_) == (3, 2)
    ref = Pipeline([("augment", Augment(3, 2)), ("cov", Covariances("cov")),
                    ("ts", TangentSpace()), ("svc", SVC(kernel="rbf"))]).fit(X, y)
    np.testing.assert_allclose(clf.decision_function(X), ref.decision_function(X), atol=1e-9)
    assert clf.tangent_vectors(X).shape == (len(X), 12 * 13 // 2)


def test_takens_selection_records_its_curves(data):
    X, y = data
    clf = ACMClassifier(selection="takens", max_order=4, max_lag=5, Cs=[1.0],
                        kernels=["linear"]).fit(X, y)
    info = clf.fit_info_
    assert 1 <= clf.order_ <= 4 and 1 <= clf.lag_ <= 5
    assert info["selection"] == "takens" and len(info["takens"]["ami"]) >= 5
    assert (info["order"], info["lag"]) == (clf.order_, clf.lag_)


def test_selection_sees_training_epochs_only(data):
    """Changing epochs outside the training set cannot change the choice."""
    X, y = data
    train = np.r_[0:18, 24:42]
    a = ACMClassifier(random_state=0, **GRID).fit(X[train], y[train])
    X2 = X.copy()
    X2[np.setdiff1d(np.arange(len(X)), train)] *= 50
    b = ACMClassifier(random_state=0, **GRID).fit(X2[train], y[train])
    assert a.fit_info_ == b.fit_info_


def test_too_few_epochs_per_class_for_inner_folds(data):
    X, y = data
    with pytest.raises(ValueError, match="smallest class has 2 training epochs, fewer than the 3"):
        ACMClassifier().fit(X[[0, 1, 30, 31, 32]], y[[0, 1, 30, 31, 32]])


def test_no_feasible_point_says_what_to_change(data):
    X, y = data
    with pytest.raises(ValueError, match="no \\(order, lag\\).*estimator='oas'"):
        ACMClassifier(orders=[80], lags=[1]).fit(X, y)


def test_unfitted_predict_raises(data):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        ACMClassifier().predict(data[0])


@pytest.mark.parametrize("check", [check_get_params_invariance, check_set_params,
                                   check_no_attributes_set_in_init])
def test_sklearn_api(check):
    check("ACMClassifier", ACMClassifier())


def test_default_constructible_and_clonable():
    check_parameters_default_constructible("ACMClassifier", ACMClassifier())
    assert clone(ACMClassifier(orders=(1, 2))).get_params()["orders"] == (1, 2)
