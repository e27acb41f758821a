"""The Snakemake DAG end to end on tiny synthetic data."""

from __future__ import annotations

import json

import mne
import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, snakemake_run, tiny_config):
    workdir = tmp_path_factory.mktemp("wf")
    config = tiny_config(workdir)
    proc = snakemake_run(workdir, config)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return workdir, config


def test_every_stage_writes_its_files(finished_run):
    workdir, _ = finished_run
    for sub in ("1", "5"):
        base = workdir / "results" / "tiny" / f"sub-{sub}"
        for name in ("raw.fif", "recording.json", "epochs-epo.fif", "preprocessing.json",
                     "qc.npz", "features/covariance.npz"):
            assert (base / name).is_file(), base / name
        for dec in ("ts_lr", "csp_lda"):
            assert (base / "decoders" / dec / "metrics.json").is_file()
            assert (base / "decoders" / dec / "predictions.csv").is_file()
        html = (workdir / "reports" / "tiny" / f"sub-{sub}.html").read_text()
        assert "Decoder metrics" in html and "Every preprocessing choice" in html
        assert (workdir / "logs" / "tiny" / f"sub-{sub}" / "load.log").is_file()
    index = (workdir / "reports" / "tiny" / "index.html").read_text()
    assert "sub-1" in index and "sub-5" in index


def test_outputs_are_consistent(finished_run):
    workdir, _ = finished_run
    base = workdir / "results" / "tiny" / "sub-1"
    epochs = mne.read_epochs(base / "epochs-epo.fif", verbose="error")
    assert epochs.info["sfreq"] == 100
    assert set(epochs.metadata["session"]) == {"1", "2"}
    metrics = json.loads((base / "decoders" / "ts_lr" / "metrics.json").read_text())
    assert metrics["n_epochs"] == len(epochs)
    preds = pd.read_csv(base / "decoders" / "ts_lr" / "predictions.csv")
    within = preds[preds["protocol"] == "within_session"]
    # every epoch is predicted exactly once in within-session CV
    assert sorted(within["epoch"]) == list(range(len(epochs)))
    scores = pd.read_csv(workdir / "results" / "tiny" / "scores.csv")
    assert len(scores) == 2 * 2 * 2  # subjects × decoders × protocols


def test_decodable_subject_beats_chance_and_null_subject_does_not(finished_run):
    workdir, _ = finished_run
    scores = pd.read_csv(workdir / "results" / "tiny" / "scores.csv", dtype={"subject": str})
    within = scores[scores["protocol"] == "within_session"].set_index(["subject", "decoder"])
    for dec in ("ts_lr", "csp_lda"):
        assert within.loc[("1", dec), "accuracy_mean"] > 0.8
        assert within.loc[("5", dec), "accuracy_mean"] < within.loc[("5", dec),
                                                                    "chance_threshold_p05"]


def test_second_run_has_nothing_to_do(finished_run, snakemake_run):
    workdir, config = finished_run
    proc = snakemake_run(workdir, config, "--dry-run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_same_config_gives_identical_metrics(finished_run, tmp_path, snakemake_run,
                                            tiny_config):
    workdir, _ = finished_run
    config = tiny_config(tmp_path, subjects=("1",))
    proc = snakemake_run(tmp_path, config, "results/tiny/sub-1/decoders/ts_lr/metrics.json")
    assert proc.returncode == 0, proc.stderr[-4000:]
    a = json.loads((workdir / "results/tiny/sub-1/decoders/ts_lr/metrics.json").read_text())
    b = json.loads((tmp_path / "results/tiny/sub-1/decoders/ts_lr/metrics.json").read_text())
    assert a["protocols"] == b["protocols"]
    raw_a = mne.io.read_raw_fif(workdir / "results/tiny/sub-1/raw.fif", verbose="error")
    raw_b = mne.io.read_raw_fif(tmp_path / "results/tiny/sub-1/raw.fif", verbose="error")
    np.testing.assert_array_equal(raw_a.get_data(), raw_b.get_data())
