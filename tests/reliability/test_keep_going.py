"""``--keep-going`` with one broken subject: the others finish, the dataset report names it.

The Snakefile's ``onerror`` handler writes a partial ``reports/{ds}/index.html`` from the
subjects that finished, listing the failed one with the reason from its job log; once the
subject is repaired, the next run replaces it with the complete report of the rules.
"""

from __future__ import annotations

import os
from html import unescape

import pandas as pd
import pytest
import yaml
from reliability_bench import synthetic_raw, write_recording

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

SUBJECTS = ("1", "2", "3")


def _write_edf_dataset(root):
    for sub in SUBJECTS:
        write_recording(synthetic_raw(sub), root / f"sub-{sub}" / f"sub-{sub}_task-mi_eeg.edf")


def test_keep_going_finishes_every_other_subject_and_reports_the_failed_one(tmp_path,
                                                                           snakemake_run):
    data = tmp_path / "data"
    _write_edf_dataset(data)
    broken = data / "sub-2" / "sub-2_task-mi_eeg.edf"
    good = broken.read_bytes()
    broken.write_bytes(good[:3000])  # truncated mid-header/data
    cfg = {"datasets": {"edf": {
        "source": {"kind": "files", "root": str(data), "pattern": "sub-{subject}/*.edf"},
        "subjects": list(SUBJECTS),
        "events": {"left_hand": ["left_hand"], "right_hand": ["right_hand"]},
        "preprocessing": {"epochs": {"tmin": 0.5, "tmax": 2.5, "reject_uv": 400}},
        "decoders": {"csp_lda": None},  # one decoder keeps the test short
        "evaluation": {"protocols": ["within_session"], "n_folds": 3},
    }}}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))

    proc = snakemake_run(tmp_path, config)  # the plain command: the profile keeps going
    assert proc.returncode != 0, "the broken subject must fail the run"
    reports = tmp_path / "reports" / "edf"
    for sub in ("1", "3"):
        assert (reports / f"sub-{sub}.html").is_file()
    assert not (tmp_path / "results" / "edf" / "sub-2" / "raw.fif").exists()
    log = (tmp_path / "logs" / "edf" / "sub-2" / "load.log").read_text()
    (failed,) = [line for line in log.splitlines() if " FAILED " in line]
    assert "DataError" in failed and str(broken) in failed and "subject 2" in failed
    assert "Traceback" not in proc.stderr.split("Error in rule")[0], "a stack trace on user data"

    # the dataset report exists, says it is partial and why subject 2 is missing
    index = reports / "index.html"
    text = unescape(index.read_text())
    assert "PARTIAL: 1 of 3 subject(s) did not finish" in text
    assert "Subject(s) sub-2 did not finish" in text
    assert "cannot read the file" in text or "truncated" in text
    assert str(broken) in text and "logs/edf/sub-2/load.log" in text
    assert "sub-1.html" in text and "sub-3.html" in text
    assert os.stat(index).st_mtime == 0  # older than any input: the rule rebuilds it
    assert not (tmp_path / "results" / "edf" / "scores.csv").exists()

    # repaired: the next run builds sub-2 and the complete report replaces the partial one
    broken.write_bytes(good)
    proc = snakemake_run(tmp_path, config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = unescape(index.read_text())
    assert "PARTIAL" not in text and "Partial report" not in text
    assert os.stat(index).st_mtime > 0
    scores = pd.read_csv(tmp_path / "results" / "edf" / "scores.csv", dtype={"subject": str})
    assert sorted(scores["subject"].unique()) == list(SUBJECTS)

