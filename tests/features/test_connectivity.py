"""Connectivity features against nilearn's ConnectivityMeasure; edge vectors and matrices."""

from __future__ import annotations

import numpy as np
import pytest
from nilearn.connectome import ConnectivityMeasure, sym_matrix_to_vec
from sklearn.base import clone
from sklearn.covariance import EmpiricalCovariance, LedoitWolf

from brainmill.errors import DataError
from brainmill.features.connectivity import (
    ESTIMATORS,
    KINDS,
    ConnectivityFeatures,
    connectivity_matrix,
    constant_rois,
    matrix_from_upper,
    n_rois_from_edges,
    upper_triangle,
)

RNG = np.random.default_rng(2)
MIXING = RNG.standard_normal((6, 6)) * 0.5 + np.eye(6)
SUBJECTS = [RNG.standard_normal((80 + 5 * i, 6)) @ MIXING for i in range(8)]
TRAIN, TEST = SUBJECTS[:5], SUBJECTS[5:]


@pytest.mark.parametrize("kind", KINDS)
def test_features_equal_nilearn_exactly(kind):
    ours = ConnectivityFeatures(kind=kind).fit(TRAIN).transform(TEST)
    ref = ConnectivityMeasure(kind=kind, vectorize=True, discard_diagonal=True)
    np.testing.assert_array_equal(ours, ref.fit(TRAIN).transform(TEST))
    assert ours.shape == (3, 15)
    np.testing.assert_array_equal(ConnectivityFeatures(kind=kind).fit_transform(SUBJECTS),
                                  ref.fit_transform(SUBJECTS))


def test_tangent_uses_the_training_mean_only():
    fitted = ConnectivityFeatures(kind="tangent").fit(TRAIN)
    on_test = fitted.transform(TEST)
    refit = ConnectivityFeatures(kind="tangent").fit(SUBJECTS).transform(TEST)
    assert np.abs(on_test - refit).max() > 1e-3  # the mean matters ...
    # ... and transforming never moves it: one subject alone gives its row of the batch
    np.testing.assert_array_equal(fitted.transform(TEST[1:2])[0], on_test[1])
    ref = ConnectivityMeasure(kind="tangent").fit(TRAIN)
    np.testing.assert_array_equal(fitted.measure_.mean_, ref.mean_)
    # clone gives an unfitted copy with the same parameters (scikit-learn pipelines)
    copy = clone(fitted)
    assert copy.get_params() == {"kind": "tangent", "estimator": "ledoit_wolf"}
    assert not hasattr(copy, "measure_")


def test_connectivity_matrix_equals_nilearn_and_pearson():
    x = SUBJECTS[0]
    for kind in ("correlation", "partial correlation", "covariance", "precision"):
        np.testing.assert_array_equal(connectivity_matrix(x, kind),
                                      ConnectivityMeasure(kind=kind).fit_transform([x])[0])
    np.testing.assert_allclose(connectivity_matrix(x, estimator="empirical"),
                               np.corrcoef(x.T), atol=1e-12)
    # vector of one subject's matrix == the transformer's row (same edge order)
    np.testing.assert_allclose(upper_triangle(connectivity_matrix(x, "partial correlation")),
                               ConnectivityFeatures("partial correlation").fit_transform([x])[0],
                               atol=1e-15)
    with pytest.raises(ValueError, match="needs a group"):
        connectivity_matrix(x, "tangent")
    with pytest.raises(ValueError, match="kind must be one of"):
        connectivity_matrix(x, "coherence")


def test_upper_triangle_order_and_round_trip():
    a = RNG.standard_normal((3, 7, 7))
    sym = a + np.swapaxes(a, -1, -2)
    vec = upper_triangle(sym)
    assert vec.shape == (3, 21)
    np.testing.assert_array_equal(vec, sym_matrix_to_vec(sym, discard_diagonal=True))
    m = np.arange(16).reshape(4, 4)
    m = m + m.T
    assert upper_triangle(m).tolist() == [m[0, 1], m[0, 2], m[1, 2], m[0, 3], m[1, 3], m[2, 3]]
    assert upper_triangle(m, k=0).tolist()[:3] == [m[0, 0], m[0, 1], m[1, 1]]
    diagonal = np.einsum("...ii->...i", sym)
    np.testing.assert_array_equal(matrix_from_upper(vec, 7, diagonal=diagonal), sym)
    corr = np.corrcoef(SUBJECTS[0].T)
    corr = (corr + corr.T) / 2  # np.corrcoef is symmetric and unit-diagonal only to 1 ulp
    np.fill_diagonal(corr, 1.0)
    np.testing.assert_array_equal(matrix_from_upper(upper_triangle(corr), 6), corr)
    assert n_rois_from_edges(21) == 7 and n_rois_from_edges(19900) == 200


def test_shape_errors():
    with pytest.raises(ValueError, match="square"):
        upper_triangle(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 21\) edge vectors for 7 ROIs"):
        matrix_from_upper(np.zeros(20), 7)
    with pytest.raises(ValueError, match="not n\\(n-1\\)/2"):
        n_rois_from_edges(20)
    with pytest.raises(ValueError, match="different numbers of ROIs"):
        ConnectivityFeatures().fit([np.zeros((10, 3)), np.zeros((10, 4))])
    fitted = ConnectivityFeatures().fit(TRAIN)
    with pytest.raises(ValueError, match="fitted on 6 ROIs, got 3"):
        fitted.transform([np.ones((10, 3))])
    with pytest.raises(ValueError, match="not fitted"):
        ConnectivityFeatures().transform(TEST)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("kind", ["correlation", "partial correlation", "covariance",
                                  "precision"])
def test_constant_rois_have_zero_edges_and_leave_the_others_alone(kind, estimator):
    # ABIDE has all-zero ROIs; cleaning keeps them constant. The empirical estimator used to
    # give NaN (correlation) or a LinAlgError (partial correlation, precision).
    x = SUBJECTS[0].copy()
    x[:, 2] = 0.0
    x[:, 4] = 3.5
    assert constant_rois(x).tolist() == [False, False, True, False, True, False]
    keep = [0, 1, 3, 5]
    cov = (LedoitWolf(store_precision=False) if estimator == "ledoit_wolf"
           else EmpiricalCovariance(store_precision=False))
    rest = ConnectivityMeasure(cov_estimator=cov, kind=kind).fit_transform([x[:, keep]])[0]
    matrix = connectivity_matrix(x, kind, estimator)
    assert np.isfinite(matrix).all()
    np.testing.assert_array_equal(matrix[np.ix_(keep, keep)], rest)
    for roi in (2, 4):
        others = np.delete(np.arange(6), roi)
        assert np.all(matrix[roi, others] == 0) and np.all(matrix[others, roi] == 0)
        assert matrix[roi, roi] == (1.0 if "correlation" in kind else 0.0)
    # the transformer gives the same edges, and a subject without constant ROIs is unchanged
    vectors = ConnectivityFeatures(kind, estimator).fit_transform([x, SUBJECTS[1]])
    np.testing.assert_array_equal(vectors[0], sym_matrix_to_vec(matrix, discard_diagonal=True))
    np.testing.assert_array_equal(
        vectors[1], ConnectivityMeasure(cov_estimator=cov, kind=kind, vectorize=True,
                                        discard_diagonal=True).fit_transform([SUBJECTS[1]])[0])


def test_a_lone_non_constant_roi_and_an_all_constant_subject():
    x = np.zeros((50, 3))
    assert np.array_equal(connectivity_matrix(x, estimator="empirical"), np.eye(3))
    x[:, 1] = np.random.default_rng(0).standard_normal(50)
    np.testing.assert_allclose(connectivity_matrix(x, "covariance", "empirical"),
                               np.diag([0.0, np.var(x[:, 1]), 0.0]), rtol=1e-12)


def test_tangent_refuses_constant_rois_under_the_empirical_estimator():
    with_constant = [s.copy() for s in TRAIN]
    with_constant[3][:, 1] = 0.0
    with pytest.raises(DataError, match=r"1 of 5 subjects have constant ROIs \(subject index "
                                        r"3: ROI columns 1\).*ledoit_wolf"):
        ConnectivityFeatures("tangent", "empirical").fit(with_constant)
    fitted = ConnectivityFeatures("tangent", "empirical").fit(TRAIN)
    with pytest.raises(DataError, match="constant ROIs"):
        fitted.transform(with_constant[3:4])
    # Ledoit-Wolf shrinkage keeps the covariance positive definite: nilearn's result
    ours = ConnectivityFeatures("tangent").fit(with_constant).transform(TEST)
    ref = ConnectivityMeasure(kind="tangent", vectorize=True, discard_diagonal=True)
    np.testing.assert_array_equal(ours, ref.fit(with_constant).transform(TEST))
