"""clean_timeseries against nilearn.signal.clean, and its exclusion and error rules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from nilearn import signal

from brainmill.datasets.fmri import ROITimeSeries
from brainmill.errors import DataError
from brainmill.preprocessing.fmri import CleanSettings, clean_timeseries, filter_padlen

RNG = np.random.default_rng(1)


def _ts(n: int = 120, tr: float = 2.0, confounds: bool = True) -> ROITimeSeries:
    data = RNG.standard_normal((n, 5)).cumsum(axis=0) + 50 + np.linspace(0, 20, n)[:, None]
    conf = RNG.standard_normal((n, 3)) if confounds else None
    return ROITimeSeries(data=data, tr=tr, roi_names=list("abcde"), subject="04",
                         source="/data/sub-04.1D", confounds=conf,
                         confound_names=["x", "y", "z"] if confounds else [],
                         roi_coords=RNG.standard_normal((5, 3)))


def test_equals_a_direct_nilearn_call():
    ts = _ts()
    cleaned, qc = clean_timeseries(ts, CleanSettings(), mean_fd=0.2)
    expected = signal.clean(ts.data, detrend=True, standardize="zscore_sample", low_pass=0.1,
                            high_pass=0.01, t_r=2.0, confounds=ts.confounds)
    np.testing.assert_array_equal(cleaned.data, expected)
    np.testing.assert_allclose(cleaned.data.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(cleaned.data.std(0, ddof=1), 1, atol=1e-12)
    assert cleaned.confounds is None and cleaned.confound_names == []
    assert (cleaned.tr, cleaned.roi_names, cleaned.subject, cleaned.source) == (
        2.0, list("abcde"), "04", "/data/sub-04.1D")
    np.testing.assert_array_equal(cleaned.roi_coords, ts.roi_coords)
    assert qc == {
        "subject": "04", "source": "/data/sub-04.1D", "n_timepoints_in": 120,
        "n_timepoints_kept": 120, "mean_fd": 0.2, "excluded": False, "reason": None,
        "steps": ["motion check: mean FD 0.200 mm <= 0.5 mm", "linear detrend",
                  "Butterworth filter high_pass=0.01 Hz, low_pass=0.1 Hz (TR 2 s)",
                  "regressed 3 confounds (x, y, z)", "z-score (sample sd)"],
        "constant_rois": [],
    }


def test_other_settings_equal_nilearn_too():
    ts = _ts(tr=1.5)
    settings = CleanSettings(detrend=False, standardize=False, low_pass=None, high_pass=0.02,
                             confounds=False, max_mean_fd=None)
    cleaned, qc = clean_timeseries(ts, settings)
    expected = signal.clean(ts.data, detrend=False, standardize=None, high_pass=0.02, t_r=1.5)
    np.testing.assert_array_equal(cleaned.data, expected)
    assert qc["steps"] == ["Butterworth filter high_pass=0.02 Hz, low_pass=None Hz (TR 1.5 s)"]
    plain, qc = clean_timeseries(_ts(confounds=False), CleanSettings(max_mean_fd=None))
    assert "no confounds to regress" in qc["steps"]


def test_motion_exclusion():
    ts = _ts()
    cleaned, qc = clean_timeseries(ts, CleanSettings(max_mean_fd=0.5), mean_fd=0.61)
    assert cleaned is None and qc["excluded"] and qc["n_timepoints_kept"] == 0
    assert qc["reason"] == "mean FD 0.610 mm above the 0.5 mm threshold"
    kept, qc = clean_timeseries(ts, CleanSettings(max_mean_fd=None), mean_fd=0.61)
    assert kept is not None and not qc["excluded"]
    kept, qc = clean_timeseries(ts, CleanSettings())
    assert kept is not None and qc["steps"][0] == "motion check skipped: no mean FD given"


def test_nan_rows_error_or_exclusion():
    ts = _ts()
    ts.data[[3, 17], 1] = np.nan
    with pytest.raises(DataError, match=r"rows 3, 17 \(0-based\) hold NaN or inf") as err:
        clean_timeseries(ts, CleanSettings(), mean_fd=0.1)
    text = str(err.value)
    assert "subject 04" in text and "/data/sub-04.1D" in text and "(expected finite" in text
    cleaned, qc = clean_timeseries(ts, CleanSettings(on_nan="exclude"), mean_fd=0.1)
    assert cleaned is None and qc["reason"] == "NaN or inf in 2 rows (3, 17, 0-based)"


def test_band_pass_length_matches_what_scipy_needs():
    assert filter_padlen(2.0, 0.1, 0.01) == 33
    assert filter_padlen(2.0, None, 0.01) == 18 and filter_padlen(2.0, None, None) == 0
    x = RNG.standard_normal((40, 2))
    with pytest.raises(ValueError, match="padlen"):  # nilearn itself fails at padlen volumes
        signal.clean(x[:33], low_pass=0.1, high_pass=0.01, t_r=2.0)
    signal.clean(x[:34], low_pass=0.1, high_pass=0.01, t_r=2.0)
    settings = CleanSettings(min_timepoints=10, max_mean_fd=None)
    assert clean_timeseries(_ts(n=34), settings)[0].n_timepoints == 34
    with pytest.raises(DataError, match="33 timepoints, too few") as err:
        clean_timeseries(_ts(n=33), settings)
    text = str(err.value)
    assert "subject 04" in text and "/data/sub-04.1D" in text
    assert "expected at least 34 timepoints (the 0.01-0.1 Hz band-pass at TR 2 s needs " \
           "more than 33)" in text


def test_min_timepoints():
    with pytest.raises(DataError, match=r"expected at least 50 timepoints \(min_timepoints is "
                                        r"50\)"):
        clean_timeseries(_ts(n=45), CleanSettings(max_mean_fd=None))


def test_frequencies_must_fit_the_tr():
    # the TR is the subject's: a data error naming the subject
    with pytest.raises(DataError, match=r"subject 04.*low_pass=0.2 Hz is outside "
                                        r"\(0, 0.166667\) Hz"):
        clean_timeseries(_ts(tr=3.0), CleanSettings(low_pass=0.2))
    with pytest.raises(ValueError, match="must be below low_pass"):
        clean_timeseries(_ts(), CleanSettings(low_pass=0.01, high_pass=0.05))
    with pytest.raises(ValueError, match="on_nan"):
        clean_timeseries(_ts(), dataclasses.replace(CleanSettings(), on_nan="drop"))


@pytest.mark.parametrize("value", [7.0, 3.1])
def test_constant_roi_is_reported_and_cleans_to_exact_zeros(value):
    # 3.1 is not a sum nilearn's mean removal undoes exactly: ~1e-32 residue used to survive
    # the z-score, and its empirical correlation with the other ROIs was of order 1
    from brainmill.features.connectivity import connectivity_matrix

    ts = _ts()
    ts.data[:, 2] = value
    cleaned, qc = clean_timeseries(ts, CleanSettings(max_mean_fd=None))
    assert qc["constant_rois"] == ["c"]
    assert np.all(cleaned.data[:, 2] == 0)
    others = [0, 1, 3, 4]
    np.testing.assert_array_equal(cleaned.data[:, others], signal.clean(
        ts.data, detrend=True, standardize="zscore_sample", low_pass=0.1, high_pass=0.01,
        t_r=2.0, confounds=ts.confounds)[:, others])
    matrix = connectivity_matrix(cleaned.data, estimator="empirical")
    assert np.isfinite(matrix).all() and np.all(matrix[2, others] == 0)
    # without mean removal the ROI keeps its value, constant
    kept, _ = clean_timeseries(ts, CleanSettings(detrend=False, standardize=False,
                                                 high_pass=None, max_mean_fd=None))
    assert np.all(kept.data[:, 2] == value)
