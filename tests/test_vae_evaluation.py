"""Tests of brainmill.vae_evaluation against numpy and sklearn computations done by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from brainmill.errors import DataError
from brainmill.vae_evaluation import (
    DIAGNOSIS_FEATURES,
    demographic_matrix,
    diagnosis_fold_scores,
    diagnosis_scores,
    group_difference_agreement,
    latent_demographic_correlation,
    reconstruction_rmse,
    site_stratified_folds,
    transfer_scores,
)


def _participants(n=60, seed=0, sites=("NYU", "PITT", "X")):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age": rng.uniform(8, 30, n),
        "sex": rng.choice(["M", "F"], n),
        "site": np.array(sites)[np.arange(n) % len(sites)],
        "diagnosis": np.array(["ASD", "TC"])[(np.arange(n) // len(sites)) % 2],
    }, index=[f"{i:04d}" for i in range(n)])


# ------------------------------------------------------------- latent-demographic correlation


def test_latent_demographic_correlation_equals_corrcoef():
    demo = _participants(50)
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(50, 7))
    Z[:, 3] += 0.5 * demo["age"].to_numpy()
    got = latent_demographic_correlation(Z, demo, ["age"], ["sex", "site"])

    def max_r(d):
        return max(abs(np.corrcoef(Z[:, j], d)[0, 1]) for j in range(Z.shape[1]))

    assert got["age"] == pytest.approx(max_r(demo["age"].to_numpy()), abs=1e-12)
    assert got["sex"] == pytest.approx(max_r((demo["sex"] == "M").to_numpy(float)), abs=1e-12)
    site = max(max_r((demo["site"] == s).to_numpy(float)) for s in ("NYU", "PITT", "X"))
    assert got["site"] == pytest.approx(site, abs=1e-12)
    assert set(got) == {"age", "sex", "site"}
    assert got["age"] > 0.8  # the planted dimension


def test_latent_demographic_correlation_exact_values_and_constant_columns():
    demo = pd.DataFrame({"age": [1.0, 2.0, 3.0, 4.0], "sex": ["M", "F", "M", "F"]})
    Z = np.column_stack([[5.0, 5.0, 5.0, 5.0],        # constant: counts as r = 0
                         [-1.0, -2.0, -3.0, -4.0],    # r(age) = -1
                         [1.0, 0.0, 1.0, 0.0]])       # r(sex=M) = 1
    got = latent_demographic_correlation(Z, demo, ["age"], ["sex"])
    assert got == pytest.approx({"age": 1.0, "sex": 1.0})
    assert latent_demographic_correlation(Z[:, :1], demo, ["age"], [])["age"] == 0.0
    const = demo.assign(age=3.0)
    assert np.isnan(latent_demographic_correlation(Z, const, ["age"], [])["age"])


def test_latent_demographic_correlation_rejects_bad_input():
    demo = _participants(10)
    with pytest.raises(ValueError, match="rows"):
        latent_demographic_correlation(np.zeros((9, 2)), demo)
    with pytest.raises(DataError, match="handedness"):
        latent_demographic_correlation(np.zeros((10, 2)), demo, ["handedness"], [])


# ------------------------------------------------------------------------ reconstruction


def test_reconstruction_rmse_hand_values():
    X = np.array([[0.0, 0.0], [0.0, 0.0]])
    assert reconstruction_rmse(X, X + 2.0) == pytest.approx(2.0)
    assert reconstruction_rmse(X, np.array([[3.0, 0.0], [0.0, 4.0]])) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="shape"):
        reconstruction_rmse(X, np.zeros((2, 3)))


# ------------------------------------------------------------------------------ transfer


def test_transfer_scores_match_sklearn():
    rng = np.random.default_rng(2)
    demo_tr, demo_te = _participants(80, seed=3), _participants(40, seed=4)

    def data(demo):
        X = rng.normal(size=(len(demo), 20))
        X[:, 0] += demo["age"].to_numpy() / 5
        X[:, 1] += 2 * (demo["sex"] == "M").to_numpy()
        return X

    X_tr, X_te = data(demo_tr), data(demo_te)
    got = transfer_scores(X_tr, demo_tr, X_te, demo_te, alpha=10.0, C=0.5)
    age_pred = Ridge(alpha=10.0).fit(X_tr, demo_tr["age"]).predict(X_te)
    sex_pred = LogisticRegression(C=0.5, max_iter=5000).fit(X_tr, demo_tr["sex"]).predict(X_te)
    assert got["age_rmse"] == pytest.approx(np.sqrt(np.mean((age_pred - demo_te["age"]) ** 2)))
    assert got["sex_accuracy"] == pytest.approx(np.mean(sex_pred == demo_te["sex"]))
    assert got["age_rmse_null"] == pytest.approx(
        np.sqrt(np.mean((demo_te["age"] - demo_tr["age"].mean()) ** 2)))
    majority = demo_tr["sex"].value_counts().idxmax()
    assert got["sex_accuracy_null"] == pytest.approx(np.mean(demo_te["sex"] == majority))
    # the planted signal is learnt: better than the null models
    assert got["age_rmse"] < got["age_rmse_null"]
    assert got["sex_accuracy"] > 0.8


def test_transfer_scores_needs_two_training_levels():
    demo = _participants(10).assign(sex="F")
    with pytest.raises(DataError, match="one 'sex' level"):
        transfer_scores(np.ones((10, 3)), demo, np.ones((10, 3)), demo)


# ---------------------------------------------------------------------- group difference


def test_group_difference_agreement_hand_values():
    X_real = np.array([[2.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    g_real = ["ASD", "ASD", "TC", "TC"]          # difference map [1, -1, 1]
    X_synth = np.array([[3.0, 0.0, 2.0], [1.0, 1.0, 0.0]])
    g_synth = ["ASD", "TC"]                      # difference map [2, -1, 2]
    got = group_difference_agreement(X_real, g_real, X_synth, g_synth)
    real, synth = np.array([1.0, -1.0, 1.0]), np.array([2.0, -1.0, 2.0])
    assert got["corr"] == pytest.approx(np.corrcoef(real, synth)[0, 1])
    assert got["rmse"] == pytest.approx(np.sqrt(2 / 3))
    assert got["real_rms"] == pytest.approx(1.0)
    assert got["synth_rms"] == pytest.approx(np.sqrt(3.0))
    same = group_difference_agreement(X_real, g_real, X_real, g_real)
    assert same["corr"] == pytest.approx(1.0) and same["rmse"] == 0.0


def test_group_difference_agreement_missing_group():
    with pytest.raises(DataError, match="no synth rows in group 'TC'"):
        group_difference_agreement(np.eye(2), ["ASD", "TC"], np.eye(2), ["ASD", "ASD"])


# --------------------------------------------------------------------------------- folds


def test_site_stratified_folds_spread_every_combination_and_partition_rows():
    demo = _participants(97, seed=5)
    folds = site_stratified_folds(demo, "diagnosis", n_splits=5, seed=0)
    assert len(folds) == 5
    tests = np.concatenate([te for _, te in folds])
    assert np.array_equal(np.sort(tests), np.arange(97))   # each subject in one test fold only
    combo = (demo["site"] + "|" + demo["diagnosis"]).to_numpy()
    for train, test in folds:
        assert np.intersect1d(train, test).size == 0
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(97))
    for c in np.unique(combo):
        per_fold = [int(np.sum(combo[te] == c)) for _, te in folds]
        assert max(per_fold) - min(per_fold) <= 1 and min(per_fold) >= 1, (c, per_fold)
    again = site_stratified_folds(demo, "diagnosis", n_splits=5, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    other = site_stratified_folds(demo, "diagnosis", n_splits=5, seed=1)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other, strict=True))


def test_site_stratified_folds_too_small_combination():
    demo = _participants(12, sites=("NYU", "PITT"))
    demo.loc[demo.index[-3:], "site"] = "TINY"
    with pytest.raises(DataError, match="TINY"):
        site_stratified_folds(demo, "diagnosis", n_splits=3)


# ----------------------------------------------------------------------------- diagnosis


def test_demographic_matrix_uses_training_statistics():
    train = pd.DataFrame({"age": [10.0, 20.0, 30.0], "sex": ["M", "F", "M"]})
    test = pd.DataFrame({"age": [40.0], "sex": ["X"]})
    D_tr, D_te = demographic_matrix(train, test, ["age"], ["sex"])
    sd = np.std([10.0, 20.0, 30.0])
    assert D_tr[:, 0] == pytest.approx([-10 / sd, 0.0, 10 / sd])
    assert D_tr[:, 1:].tolist() == [[0, 1], [1, 0], [0, 1]]     # levels F, M
    assert D_te.tolist() == [[pytest.approx(20 / sd), 0.0, 0.0]]  # unseen level: zeros


class _RecordingVAE:
    """Latents = the first ``k`` columns; records the row ids (column -1) it was fitted on."""

    fitted_on: list[np.ndarray] = []

    def __init__(self, k=3):
        self.k = k

    def fit(self, X, demographics):
        assert len(demographics) == len(X)
        assert list(demographics.columns) == ["age", "sex", "site"]
        _RecordingVAE.fitted_on.append(X[:, -1].astype(int).copy())
        return self

    def transform(self, X):
        return X[:, :self.k]


def test_diagnosis_scores_fit_vae_on_training_folds_only():
    demo = _participants(60, seed=6)
    rng = np.random.default_rng(7)
    X = rng.normal(size=(60, 10))
    X[:, 5] += 3.0 * (demo["diagnosis"] == "ASD").to_numpy()   # signal outside the latents
    X[:, -1] = np.arange(60)                                   # row id
    folds = site_stratified_folds(demo, "diagnosis", n_splits=3, seed=0)
    _RecordingVAE.fitted_on = []
    got = diagnosis_scores(X, demo, folds, _RecordingVAE, C=0.3, seed=0)
    assert len(_RecordingVAE.fitted_on) == 3
    for rows, (train, test) in zip(_RecordingVAE.fitted_on, folds, strict=True):
        assert np.array_equal(np.sort(rows), np.sort(train))
        assert np.intersect1d(rows, test).size == 0
    # connectivity and latents scores equal a direct sklearn computation
    for (train, test), fold in zip(folds, got["folds"], strict=True):
        y = demo["diagnosis"].to_numpy()
        for name, F in (("connectivity", X), ("latents", X[:, :3])):
            clf = make_pipeline(StandardScaler(), LogisticRegression(
                C=0.3, class_weight="balanced", max_iter=5000, random_state=0))
            pred = clf.fit(F[train], y[train]).predict(F[test])
            assert fold[name] == pytest.approx(balanced_accuracy_score(y[test], pred))
        assert set(fold) == set(DIAGNOSIS_FEATURES)
    assert got["mean"]["connectivity"] == pytest.approx(
        np.mean([f["connectivity"] for f in got["folds"]]))
    assert got["sd"]["latents"] == pytest.approx(
        np.std([f["latents"] for f in got["folds"]], ddof=1))
    # the planted diagnosis signal is in connectivity, not in the latents
    assert got["mean"]["connectivity"] > 0.75
    assert got["mean"]["connectivity"] > got["mean"]["latents"] + 0.15


def test_diagnosis_fold_scores_latents_plus_demographics():
    demo_tr, demo_te = _participants(40, seed=8), _participants(20, seed=9)
    Z_tr, Z_te = np.zeros((40, 2)), np.zeros((20, 2))
    # the diagnosis is a function of sex only: the demographics alone decode it perfectly
    demo_tr["diagnosis"] = np.where(demo_tr["sex"] == "M", "ASD", "TC")
    demo_te["diagnosis"] = np.where(demo_te["sex"] == "M", "ASD", "TC")
    got = diagnosis_fold_scores(np.ones((40, 4)), np.ones((20, 4)), Z_tr, Z_te, demo_tr, demo_te)
    assert got["demographics"] == 1.0 and got["latents+demographics"] == 1.0
    assert got["latents"] == 0.5 and got["connectivity"] == 0.5   # constant features: chance
