"""The diffusion branch through the Snakemake DAG: backbone, samples, representations, latent
fusion decoder, reports, no-op rerun and a backbone change."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_tokens_workflow import job_counts  # the dry-run "Job stats" parser

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

DIFFUSION = {
    "model": {"dim": 8, "d_state": 8, "n_layers": 2, "cond_dim": 16, "sfreq": 50},
    "training": {"max_epochs": 1, "batch_size": 64, "ema_decay": 0.9},
    "n_generated": 4, "sampling_steps": 5,
}
DECODERS = {"ts_lr": {}, "csp_lda": None,
            "diffusion_lft": {"model": {"dim": 8, "n_heads": 2, "n_fusion_tokens": 2,
                                        "depth": 1},
                              "training": {"max_epochs": 2, "batch_size": 16,
                                           "val_fraction": 0.2},
                              "protocols": ["cross_session"]}}


@pytest.fixture(scope="module")
def diffusion_run(tmp_path_factory, snakemake_run, tiny_config):
    workdir = tmp_path_factory.mktemp("diffusion")
    config = tiny_config(workdir, diffusion=DIFFUSION, decoders=DECODERS)
    proc = snakemake_run(workdir, config)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return workdir, config


def test_backbone_trains_once_on_every_subject_without_labels(diffusion_run):
    workdir, _ = diffusion_run
    base = workdir / "results/tiny/models/diffusion"
    info = json.loads((base / "training.json").read_text())
    assert info["subjects"] == ["1", "5"] and info["labels_used"] is False
    assert sum(s["windows"] for s in info["per_subject"].values()) == info["n_windows"]
    assert info["n_times"] == 100  # 2 s at 50 Hz
    assert (base / "run/checkpoint.pt").exists()
    with np.load(base / "samples.npz", allow_pickle=False) as f:
        assert f["real"].shape == f["generated"].shape == (len(f["ch_names"]), 4, 100)
        assert np.all(np.isfinite(f["generated"]))
    summary = json.loads((base / "samples.json").read_text())
    assert "all" in summary["lsd_db"] and summary["sampling_steps"] == 5


def test_representations_and_decoder_metrics(diffusion_run):
    workdir, _ = diffusion_run
    for sub in ("1", "5"):
        base = workdir / "results" / "tiny" / f"sub-{sub}"
        with np.load(base / "features" / "diffusion.npz", allow_pickle=False) as f:
            reps, y = f["X"], f["y"]
        assert reps.ndim == 5 and reps.shape[2:] == (2, 8, 2) and len(y) == len(reps)
        metrics = json.loads((base / "decoders/diffusion_lft/metrics.json").read_text())
        assert list(metrics["protocols"]) == ["cross_session"]
        assert metrics["backbone"]["labels_used"] is False
        folds = metrics["protocols"]["cross_session"]["folds"]
        assert all(f["fit_info"]["training"]["n_val"] > 0 for f in folds)
        preds = pd.read_csv(base / "decoders/diffusion_lft/predictions.csv")
        assert len(preds) == len(reps)  # every epoch tested once, leave-one-session-out
    scores = pd.read_csv(workdir / "results" / "tiny" / "scores.csv")
    assert set(scores["decoder"]) == {"ts_lr", "diffusion_lft"}


def test_reports_show_the_diffusion_sections(diffusion_run):
    workdir, _ = diffusion_run
    index = (workdir / "reports" / "tiny" / "index.html").read_text()
    for title in ("Diffusion backbone", "Diffusion training curve",
                  "Real vs generated windows", "Power spectra: real vs generated"):
        assert title in index
    html = (workdir / "reports" / "tiny" / "sub-1.html").read_text()
    assert "diffusion_lft: training curves (cross_session)" in html


def test_a_sampling_change_reruns_only_the_samples_and_the_report(diffusion_run, snakemake_run,
                                                                  tiny_config):
    workdir, _ = diffusion_run
    config = tiny_config(workdir, diffusion={**DIFFUSION, "n_generated": 6}, decoders=DECODERS)
    proc = snakemake_run(workdir, config, "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(job_counts(proc.stdout + proc.stderr)) == {"sample_diffusion", "dataset_report",
                                                          "all"}


def test_second_run_is_a_no_op_and_a_backbone_change_reruns_the_branch(diffusion_run,
                                                                       snakemake_run,
                                                                       tiny_config):
    workdir, _ = diffusion_run
    # rewrite the module's config: an earlier test of this module changed it in place
    config = tiny_config(workdir, diffusion=DIFFUSION, decoders=DECODERS)
    proc = snakemake_run(workdir, config, "--dry-run")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr, (
        proc.stdout[-3000:])
    changed = {**DIFFUSION, "model": {**DIFFUSION["model"], "n_layers": 3}}
    config = tiny_config(workdir, diffusion=changed, decoders=DECODERS)
    proc = snakemake_run(workdir, config, "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = job_counts(proc.stdout + proc.stderr)
    assert jobs["pretrain_diffusion"] == 1 and jobs["diffusion_features"] == 2
    assert jobs["decode_diffusion"] == 2 and jobs["sample_diffusion"] == 1
    assert not {"load_eeg", "preprocess_eeg", "features", "decode"} & set(jobs)
