"""A corrupted recording fails its own subject's jobs only (`--keep-going`)."""

from __future__ import annotations

import mne
import pytest
import yaml

from brainmill.config import SyntheticSource
from brainmill.datasets.synthetic import load as load_synthetic

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


def _write_edf_dataset(root, subjects):
    source = SyntheticSource(n_sessions=1, n_trials_per_class=10,
                             classes=["left_hand", "right_hand"], sfreq=160,
                             effect_sizes={s: 0.7 for s in subjects})
    events = {"left_hand": ["left_hand"], "right_hand": ["right_hand"]}
    for sub in subjects:
        rec = load_synthetic(source, sub, events, seed=3)
        path = root / f"sub-{sub}" / f"sub-{sub}_task-mi_eeg.edf"
        path.parent.mkdir(parents=True)
        mne.export.export_raw(path, rec.raw, fmt="edf", verbose="error")
    return events


def test_corrupt_subject_fails_alone_and_log_names_file(tmp_path, snakemake_run):
    data = tmp_path / "data"
    events = _write_edf_dataset(data, ["1", "2", "3"])
    broken = data / "sub-2" / "sub-2_task-mi_eeg.edf"
    broken.write_bytes(broken.read_bytes()[:3000])  # truncated mid-header/data
    cfg = {"datasets": {"edf": {
        "source": {"kind": "files", "root": str(data), "pattern": "sub-{subject}/*.edf"},
        "subjects": ["1", "2", "3"],
        "events": events,
        "preprocessing": {"epochs": {"tmin": 0.5, "tmax": 2.5, "reject_uv": 400}},
        "evaluation": {"protocols": ["within_session"], "n_folds": 3},
    }}}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = snakemake_run(tmp_path, config, "--keep-going")
    assert proc.returncode != 0, "the broken subject must fail the run"
    for sub in ("1", "3"):
        assert (tmp_path / "reports" / "edf" / f"sub-{sub}.html").is_file()
    assert not (tmp_path / "results" / "edf" / "sub-2" / "raw.fif").exists()
    log = (tmp_path / "logs" / "edf" / "sub-2" / "load.log").read_text()
    assert "FAILED" in log
    assert "sub-2_task-mi_eeg.edf" in log and "subject 2" in log
