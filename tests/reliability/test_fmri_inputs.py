"""Catalogue of bad fMRI inputs: rejected with a clear error, or excluded and recorded.

Subject 2's ROI time series (``roi_files`` source) is broken; the ``fmri`` fixture checks that
subjects 1 and 3 keep their outputs (made once, see ``conftest.py``).
"""

from __future__ import annotations

import pandas as pd
from reliability_bench import BROKEN, GOOD, ROI_NAMES, roi_table, write_participants, write_roi_file

from brainmill.fmri_stages import read_fmri_participants, run_fmri_participants
from brainmill.io import read_json
from brainmill.vae_stages import run_train_vae


def _broken_file(fmri, **kw) -> str:
    data = kw.pop("data", roi_table(seed=2))
    return str(write_roi_file(fmri.root / f"sub-{BROKEN}.tsv", data, kw.pop("header", ROI_NAMES),
                              **kw))


def test_fmri_nan_rows_are_rejected(fmri):
    path = _broken_file(fmri, nan_rows=(10, 11))
    outcome = fmri.run(BROKEN)
    outcome.assert_rejected("load_fmri", "DataError", path, f"subject {BROKEN}",
                            "rows 10, 11 (0-based) hold NaN or inf")
    fmri.assert_nothing_after(outcome)


def test_fmri_nan_rows_exclude_the_subject_when_configured(fmri):
    """``on_nan: exclude``: the subject is kept in the table, excluded, with the reason."""
    _broken_file(fmri, nan_rows=(10,))
    cfg = fmri.config(preprocessing={"on_nan": "exclude"})
    fmri.run(BROKEN, cfg).assert_finished()
    qc = read_json(fmri.subject_dir(BROKEN) / "qc.json")
    assert qc["excluded"] is True and "NaN or inf in 1 rows (10, 0-based)" in qc["reason"]
    qcs = [fmri.subject_dir(s) / "qc.json" for s in ("1", "2", "3")]
    out = fmri.results / "fmri" / "participants.csv"
    job = fmri.run_dataset_job("fmri_participants", lambda: run_fmri_participants(
        cfg, "rois", ["1", "2", "3"], qcs, out))
    assert not job.failed, job.log
    table = read_fmri_participants(out)
    assert list(table.index) == ["1", "2", "3"]
    assert table.loc[BROKEN, "excluded"] and "NaN" in table.loc[BROKEN, "reason"]
    assert not table.loc[list(GOOD), "excluded"].any()


def test_fmri_too_few_timepoints(fmri):
    path = _broken_file(fmri, data=roi_table(n_timepoints=30, seed=2))
    outcome = fmri.run(BROKEN)
    outcome.assert_rejected("clean_fmri", "DataError", path, f"subject {BROKEN}",
                            "30 timepoints, too few",
                            "expected at least 50 timepoints (min_timepoints is 50)")
    fmri.assert_nothing_after(outcome)


def test_fmri_atlas_roi_count_mismatch(fmri):
    """The configured ROI names (the atlas) and the file's columns disagree."""
    path = _broken_file(fmri, data=roi_table(n_rois=4, seed=2), header=ROI_NAMES[:4])
    outcome = fmri.run(BROKEN, fmri.config(roi_names=ROI_NAMES))
    outcome.assert_rejected("load_fmri", "DataError", path, f"subject {BROKEN}",
                            "atlas has 5 labels, file has 4 columns")
    fmri.assert_nothing_after(outcome)


def test_fmri_roi_count_mismatch_between_subjects(fmri, tmp_path):
    """Without configured names each file loads; the dataset-level job names the odd one."""
    path = _broken_file(fmri, data=roi_table(n_rois=4, seed=2), header=ROI_NAMES[:4])
    cfg = fmri.config()
    fmri.run(BROKEN, cfg).assert_finished()
    subjects = ["1", "2", "3"]
    participants = tmp_path / "participants.csv"
    job = fmri.run_dataset_job("fmri_participants", lambda: run_fmri_participants(
        cfg, "rois", subjects, [fmri.subject_dir(s) / "qc.json" for s in subjects],
        participants))
    assert not job.failed, job.log
    conn = [str(fmri.subject_dir(s) / "features" / "connectivity.npz") for s in subjects]
    vae = tmp_path / "vae"
    job = fmri.run_dataset_job("train_vae", lambda: run_train_vae(
        cfg, "rois", conn, str(participants), str(vae / "model.pt"), str(vae / "summary.json"),
        str(vae / "history.csv"), str(vae / "run")))
    assert job.failed
    (line,) = job.failed_lines()
    assert ": DataError: " in line and f"subject {BROKEN}" in line and conn[1] in line
    assert "5 ROIs (a, b, c, …) in subject(s) 1, 3; 4 ROIs (a, b, c, …) in subject(s) 2" in line
    assert "expected the same 5 ROIs in the same order for every subject" in line
    assert not (vae / "model.pt").exists() and not (vae / "run").exists()
    assert path


def test_participants_table_missing_a_column(fmri):
    _broken_file(fmri)
    table = write_participants(fmri.root / "participants-no-sex.tsv", drop_column="sex")
    outcome = fmri.run(BROKEN, fmri.config(participants=table.name))
    outcome.assert_rejected("clean_fmri", "DataError", str(table), "column(s) sex not found",
                            "expected columns participant_id, age, sex, site, diagnosis")
    fmri.assert_nothing_after(outcome)


def test_participants_table_missing_a_subject(fmri):
    _broken_file(fmri)
    table = write_participants(fmri.root / "participants-no-2.tsv", subjects=GOOD)
    outcome = fmri.run(BROKEN, fmri.config(participants=table.name))
    outcome.assert_rejected("clean_fmri", "DataError", str(table), f"subject {BROKEN}",
                            "not in column 'participant_id'",
                            "expected a row for every configured subject")
    fmri.assert_nothing_after(outcome)
    assert pd.read_csv(table, sep="\t")["participant_id"].tolist() == ["sub-1", "sub-3"]
