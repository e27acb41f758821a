"""The fMRI branch through the Snakemake DAG: per-subject chain, DemoVAE, decoding, reports."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

TINY_FMRI = {
    "modality": "fmri",
    "source": {"kind": "synthetic_fmri", "n_subjects": 12, "n_rois": 10, "n_timepoints": 100},
    "preprocessing": {"min_timepoints": 60},
    "vae": {"model": {"latent_dim": 3, "hidden": 16},
            "training": {"max_epochs": 5, "batch_size": 8, "weight_decay": 0.0},
            "n_samples": 4},
    "decoding": {"n_folds": 2},
}


def _write(workdir, datasets) -> object:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump({"seed": 5, "datasets": datasets}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def fmri_run(tmp_path_factory, snakemake_run):
    workdir = tmp_path_factory.mktemp("fmri_wf")
    config = _write(workdir, {"fm": TINY_FMRI})
    proc = snakemake_run(workdir, config)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return workdir, config


def test_every_stage_wrote_its_outputs(fmri_run):
    workdir, _ = fmri_run
    res = workdir / "results" / "fm"
    for sub in range(1, 13):
        base = res / f"sub-{sub}"
        for name in ("roi_timeseries.npz", "cleaned_timeseries.npz", "qc.json",
                     "features/connectivity.npz"):
            assert (base / name).is_file(), base / name
        assert (workdir / "reports" / "fm" / f"sub-{sub}.html").is_file()
    table = pd.read_csv(res / "fmri" / "participants.csv", dtype={"subject": str})
    assert list(table["subject"]) == [str(i) for i in range(1, 13)]
    summary = json.loads((res / "models" / "vae" / "summary.json").read_text())
    assert summary["n_subjects"] == int((~table["excluded"]).sum())
    assert len(pd.read_csv(res / "models" / "vae" / "history.csv")) == 5
    with np.load(res / "fmri" / "latents.npz") as f:
        assert f["latents"].shape == (summary["n_subjects"], 3)
    decoding = json.loads((res / "fmri" / "decoding.json").read_text())
    assert decoding["n_folds"] == 2 and "latents" in decoding["results"]
    html = (workdir / "reports" / "fm" / "index.html").read_text()
    assert "sub-12.html" in html and "DemoVAE" in html


def test_second_run_has_nothing_to_do(fmri_run, snakemake_run):
    workdir, config = fmri_run
    proc = snakemake_run(workdir, config, "-n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_eeg_and_fmri_datasets_share_one_dag(tmp_path, snakemake_run, tiny_config):
    eeg = yaml.safe_load(tiny_config(tmp_path).read_text())["datasets"]["tiny"]
    config = _write(tmp_path, {"tiny": eeg, "fm": TINY_FMRI})
    proc = snakemake_run(tmp_path, config, "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout + proc.stderr
    for rule in ("load_eeg", "subject_report", "dataset_report", "load_fmri", "train_vae",
                 "fmri_subject_report", "fmri_dataset_report"):
        assert rule in out, rule


def test_a_broken_subject_fails_only_its_own_jobs(tmp_path, snakemake_run):
    """roi_files source: subject 2's file has a text cell; --keep-going finishes the others."""
    root = tmp_path / "data"
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for sub in ("1", "2", "3", "4"):
        data = rng.standard_normal((80, 5))
        text = "\n".join("\t".join(f"{v:.5f}" for v in row) for row in data)
        if sub == "2":
            text = text.replace("\n", "\nnot-a-number\t" + "\t".join(["0"] * 4) + "\n", 1)
        (root / f"sub-{sub}.tsv").write_text("a\tb\tc\td\te\n" + text + "\n")
        rows.append({"participant_id": f"sub-{sub}", "age": 20 + int(sub),
                     "sex": "MF"[int(sub) % 2], "site": "X", "diagnosis": "ASD"})
    pd.DataFrame(rows).to_csv(root / "participants.tsv", sep="\t", index=False)
    ds = {"modality": "fmri",
          "source": {"kind": "roi_files", "root": str(root), "pattern": "sub-{subject}.tsv",
                     "tr": 2.0, "participants": "participants.tsv"},
          "preprocessing": {"min_timepoints": 50, "max_mean_fd": None},
          "decoding": None}
    config = _write(tmp_path, {"rf": ds})
    proc = snakemake_run(tmp_path, config, "--keep-going")
    assert proc.returncode != 0
    log = (tmp_path / "logs" / "rf" / "sub-2" / "load_fmri.log").read_text()
    assert "sub-2.tsv" in log and "subject 2" in log
    for sub in ("1", "3", "4"):
        assert (tmp_path / "reports" / "rf" / f"sub-{sub}.html").is_file()
        assert (tmp_path / "results" / "rf" / f"sub-{sub}" / "features" / "connectivity.npz"
                ).is_file()
    assert not (tmp_path / "results" / "rf" / "sub-2" / "roi_timeseries.npz").exists()
    # the partial dataset report (Snakefile onerror) names the subject and the reason
    index = (tmp_path / "reports" / "rf" / "index.html").read_text()
    assert "PARTIAL: 1 of 4 subject(s) did not finish" in index
    assert "sub-2.tsv" in index and "load_fmri" in index
