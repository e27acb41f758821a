"""The partial dataset report on its own (the workflow test is ``test_keep_going.py``)."""

from __future__ import annotations

import os
from html import unescape

from reliability_bench import BROKEN, EEG_DS

from brainmill.reports_partial import read_failures, write_partial_report


def _config(eeg, reports, **dataset):
    cfg = eeg.config(**dataset)
    cfg.results_dir = str(eeg.base / "results")
    cfg.reports_dir = str(reports)
    cfg.logs_dir = str(eeg.base / "logs")
    return cfg


def test_partial_report_lists_the_failed_subject_with_its_reason(eeg, tmp_path):
    (eeg.root / f"sub-{BROKEN}" / "sub-2_eeg.edf").write_bytes(b"")
    eeg.run(BROKEN).assert_rejected("load", "DataError", "the file is empty")
    cfg = _config(eeg, tmp_path)

    (failure,) = read_failures(cfg.logs_dir, EEG_DS)
    assert (failure.subject, failure.stage, failure.error) == (BROKEN, "load", "DataError")
    path = write_partial_report(cfg, EEG_DS)
    text = unescape(path.read_text())
    assert "PARTIAL: 1 of 3 subject(s) did not finish" in text
    assert "the file is empty (0 bytes)" in text and "sub-2_eeg.edf" in text
    for sub in ("1", "3"):
        assert f"<a href='sub-{sub}.html'>sub-{sub}</a>" in text
    assert "Decoders over the 2 finished subject(s)" in text
    assert os.stat(path).st_mtime == 0


def test_complete_dataset_gets_no_partial_report(eeg, tmp_path):
    cfg = _config(eeg, tmp_path, subjects=["1", "3"])
    assert write_partial_report(cfg, EEG_DS) is None
    assert not (tmp_path / EEG_DS / "index.html").exists()


def test_metrics_of_an_earlier_configuration_do_not_count_as_finished(eeg, tmp_path):
    """Subjects 1 and 3 have ts_lr metrics made with C=1; the config now says C=2."""
    cfg = _config(eeg, tmp_path, subjects=["1", "3"], decoders={"ts_lr": {"C": 2.0}})
    text = unescape(write_partial_report(cfg, EEG_DS).read_text())
    assert "PARTIAL: 2 of 2 subject(s) did not finish" in text
    assert "No subject finished." in text and "its jobs did not run" in text
