"""Synthetic resting-state dataset: demographics, structure and recoverable ground truth."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from brainmill.datasets.synthetic_fmri import (
    AGE_MEAN,
    AGE_SD,
    MOTION_NAMES,
    SyntheticFMRISpec,
    synthetic_effect_edges,
    synthetic_fmri_subject,
    synthetic_participants,
    synthetic_true_correlation,
)
from brainmill.features.connectivity import upper_triangle
from brainmill.preprocessing.fmri import CleanSettings, clean_timeseries

SPEC = SyntheticFMRISpec()


@pytest.fixture(scope="module")
def cohort():
    """Participants and the Pearson connectivity vectors of the default 40 subjects."""
    participants = synthetic_participants(SPEC)
    vectors = np.array([upper_triangle(np.corrcoef(synthetic_fmri_subject(SPEC, s).data.T))
                        for s in participants.index])
    return participants, vectors


def test_participants():
    df = synthetic_participants(SPEC)
    assert list(df.index) == [str(i) for i in range(1, 41)] and df.index.name == "subject"
    assert list(df.columns) == ["participant_id", "site", "age", "sex", "diagnosis", "mean_fd"]
    assert df["participant_id"].iloc[0] == "sub-1"
    counts = df.groupby(["site", "diagnosis"]).size()
    assert counts.to_dict() == {("A", "ASD"): 10, ("A", "TC"): 10,
                                ("B", "ASD"): 10, ("B", "TC"): 10}
    assert df.groupby("site")["sex"].apply(lambda s: (s == "M").sum()).to_dict() == {
        "A": 10, "B": 10}
    assert df["age"].between(8, 30).all()
    assert (df["mean_fd"] > 0.5).sum() == 2 and (df["mean_fd"] > 0).all()
    assert df["mean_fd"].median() == pytest.approx(0.15, abs=0.05)
    df.loc["1", "age"] = -1  # callers get a copy
    assert synthetic_participants(SPEC).loc["1", "age"] > 0


def test_subject_layout_and_determinism():
    ts = synthetic_fmri_subject(SPEC, "3")
    assert ts.data.shape == (150, 30) and ts.tr == 2.0 and ts.source == "synthetic"
    assert ts.confounds.shape == (150, 6) and ts.confound_names == MOTION_NAMES
    assert ts.roi_names[0] == "roi01" and ts.roi_coords.shape == (30, 3)
    assert np.allclose(np.linalg.norm(ts.roi_coords - [0, -18, 18], axis=1), 60, atol=0.02)
    again = synthetic_fmri_subject(SPEC, "3")
    np.testing.assert_array_equal(ts.data, again.data)
    np.testing.assert_array_equal(ts.confounds, again.confounds)
    assert not np.allclose(synthetic_fmri_subject(SPEC, "4").data, ts.data)
    other = synthetic_fmri_subject(dataclasses.replace(SPEC, seed=1), "3")
    assert not np.allclose(other.data, ts.data)


def test_effect_edges_are_disjoint_matchings():
    masks = synthetic_effect_edges(SPEC)
    assert set(masks) == {"age", "sex", "site", "diagnosis"}
    assert all(m.shape == (435,) and m.dtype == bool for m in masks.values())
    stacked = np.array(list(masks.values()))
    assert stacked.sum(axis=0).max() == 1  # disjoint
    assert [int(m.sum()) for m in masks.values()] == [6, 9, 9, 9]
    flat = upper_triangle(np.arange(900).reshape(30, 30))  # edge -> row * 30 + column
    age_rois = set()
    for name, mask in masks.items():
        idx = flat[mask]
        rois = np.concatenate([idx // 30, idx % 30])
        assert len(set(rois)) == len(rois)  # a matching: no ROI twice
        if name == "age":
            age_rois = set(rois)
        else:
            assert not age_rois & set(rois)


def test_true_correlation_is_base_plus_the_known_effects():
    df = synthetic_participants(SPEC)
    masks = synthetic_effect_edges(SPEC)
    a, b = "1", "2"
    diff = upper_triangle(synthetic_true_correlation(SPEC, a) - synthetic_true_correlation(SPEC, b))
    code = {"ASD": 0.5, "TC": -0.5, "M": 0.5, "F": -0.5, "A": -0.5, "B": 0.5}
    expected = {
        "age": SPEC.age_effect * (df.loc[a, "age"] - df.loc[b, "age"]) / AGE_SD,
        "sex": SPEC.sex_effect * (code[df.loc[a, "sex"]] - code[df.loc[b, "sex"]]),
        "site": SPEC.site_effect * (code[df.loc[a, "site"]] - code[df.loc[b, "site"]]),
        "diagnosis": SPEC.diagnosis_effect * (code[df.loc[a, "diagnosis"]]
                                              - code[df.loc[b, "diagnosis"]]),
    }
    for name, mask in masks.items():
        np.testing.assert_allclose(diff[mask], expected[name], atol=1e-12)
    assert np.all(diff[~np.any(list(masks.values()), axis=0)] == 0)
    assert AGE_MEAN == 19.0
    for s in df.index:
        corr = synthetic_true_correlation(SPEC, s)
        assert np.allclose(np.diag(corr), 1) and np.allclose(corr, corr.T)
        assert np.linalg.eigvalsh(corr)[0] > 0.05


def test_long_series_recover_the_true_correlation_and_ar1():
    spec = dataclasses.replace(SPEC, n_timepoints=6000, n_subjects=4)
    ts = synthetic_fmri_subject(spec, "2")
    sample = np.corrcoef(ts.data.T)
    assert np.abs(sample - synthetic_true_correlation(spec, "2")).max() < 0.08
    z = (ts.data - ts.data.mean(0)) / ts.data.std(0)
    lag1 = (z[1:] * z[:-1]).mean(0)
    np.testing.assert_allclose(lag1, 0.5, atol=0.06)


def test_diagnosis_sex_and_site_differences_are_on_their_edges(cohort):
    df, vectors = cohort
    masks = synthetic_effect_edges(SPEC)
    for name, column, a, b, effect in [("diagnosis", "diagnosis", "ASD", "TC", 0.25),
                                       ("sex", "sex", "M", "F", 0.2),
                                       ("site", "site", "B", "A", 0.15)]:
        group = (df[column] == a).to_numpy()
        diff = vectors[group].mean(0) - vectors[df[column].eq(b).to_numpy()].mean(0)
        on, off = diff[masks[name]], diff[~masks[name]]
        assert on.mean() == pytest.approx(effect, abs=0.06), name
        assert on.mean() > 3 * np.abs(off).mean(), name


def test_age_correlates_with_the_age_edges(cohort):
    df, vectors = cohort
    age = df["age"].to_numpy()
    r = np.array([np.corrcoef(age, v)[0, 1] for v in vectors.T])
    age_edges = synthetic_effect_edges(SPEC)["age"]
    assert r[age_edges].min() > 0.7
    assert np.abs(r[~age_edges]).mean() < 0.2


def test_motion_artefact_is_removed_by_confound_regression():
    spec = dataclasses.replace(SPEC, motion_effect=1.0, n_timepoints=400, n_subjects=4)
    mover = synthetic_participants(spec)["mean_fd"].idxmax()
    ts = synthetic_fmri_subject(spec, mover)
    true = upper_triangle(synthetic_true_correlation(spec, mover))
    settings = CleanSettings(low_pass=None, high_pass=None, max_mean_fd=None)
    errors = {}
    for regress in (False, True):
        cleaned, _ = clean_timeseries(ts, dataclasses.replace(settings, confounds=regress))
        errors[regress] = np.abs(upper_triangle(np.corrcoef(cleaned.data.T)) - true).mean()
    assert errors[True] < 0.5 * errors[False]
    still = synthetic_fmri_subject(dataclasses.replace(spec, motion_effect=0.0), mover)
    np.testing.assert_array_equal(still.confounds, ts.confounds)  # same motion, no artefact


@pytest.mark.parametrize("kw, match", [
    ({"n_subjects": 3}, "at least 2 per site"),
    ({"n_rois": 6}, "n_rois must be at least 10"),
    ({"sites": ("A", "A")}, "distinct"),
    ({"tr": 0.0}, "tr must be positive"),
])
def test_spec_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        SyntheticFMRISpec(**kw)


def test_effects_too_large_for_a_correlation_matrix():
    with pytest.raises(ValueError, match="effects too large"):
        synthetic_fmri_subject(SyntheticFMRISpec(age_effect=0.5), "1")
    with pytest.raises(ValueError, match="not one of"):
        synthetic_true_correlation(SPEC, "41")


def test_three_sites_and_other_sizes():
    spec = SyntheticFMRISpec(n_subjects=12, n_rois=50, sites=("x", "y", "z"), seed=3)
    df = synthetic_participants(spec)
    assert df.groupby(["site", "diagnosis"]).size().tolist() == [2] * 6
    masks = synthetic_effect_edges(spec)
    assert masks["age"].sum() == 10 and masks["diagnosis"].shape == (1225,)
    assert synthetic_fmri_subject(spec, "12").data.shape == (150, 50)
