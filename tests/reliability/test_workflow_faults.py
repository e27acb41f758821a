"""The workflow run twice into two folders with one config and seed: identical metrics.

Run A goes straight through (in the background, while run B's steps run). Run B is crashed twice on the way, the whole Snakemake process
group killed with SIGKILL (``faults/sitecustomize.py``):

1. right after a job renamed its output into place, before Snakemake could record the job as
   finished: the file is complete on disk, yet Snakemake flags it incomplete, refuses to trust
   it, and the next run (``rerun-incomplete`` in ``profiles/default``) runs the job again;
2. in the middle of training the tokenizer, right after its first checkpoint: the next run
   resumes from that checkpoint.

After ``snakemake --unlock`` (a killed Snakemake leaves its lock) run B completes, and every
``metrics.json`` of every decoder (ts_lr, csp_lda, acm_ts_svm, acm_mdm, bandpower_lr,
token_transformer, diffusion_lft), the fMRI decoding and the VAE summary equal run A's byte for byte once
wall-clock fields are dropped: ``seconds`` (per fold and per training epoch in ``fit_info`` and
in ``decoding.json``) and ``training_seconds`` (the VAE summary) measure time, not results.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from reliability_bench import tiny_synthetic_config, workflow_helpers

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

FAULTS = Path(__file__).with_name("faults")
#: wall-clock fields: how long something took, not what it computed
TIMING_KEYS = {"seconds", "training_seconds"}

TOKENIZER = {
    "model": {"dim": 16, "n_heads": 2, "freq_depth": 1, "time_depth": 1, "decoder_depth": 1,
              "n_codes": 32, "norm_groups": 4, "dead_code_threshold": 0.5},
    "training": {"max_epochs": 2, "batch_size": 128, "val_fraction": 0.1, "patience": 2},
}
DECODERS = {
    "ts_lr": {}, "csp_lda": {"n_components": 4},
    "acm_ts_svm": {"selection": "grid", "orders": [1, 2], "lags": [2], "Cs": [1.0],
                   "kernels": ["linear"], "estimator": "oas", "inner_folds": 2},
    "acm_mdm": {"selection": "fixed", "order": 2, "lag": 2, "estimator": "oas"},
    "bandpower_lr": {},
    "token_transformer": {"model": {"n_heads": 2, "depth": 1},
                          "training": {"max_epochs": 2, "batch_size": 16},
                          "protocols": ["cross_session"]},
    "diffusion_lft": {"model": {"dim": 8, "n_heads": 2, "n_fusion_tokens": 2, "depth": 1},
                      "training": {"max_epochs": 2, "batch_size": 16, "val_fraction": 0.2},
                      "protocols": ["cross_session"]},
}
DIFFUSION = {"model": {"dim": 8, "d_state": 8, "n_layers": 2, "cond_dim": 16, "sfreq": 50},
             "training": {"max_epochs": 1, "batch_size": 64, "ema_decay": 0.9},
             "n_generated": 2, "sampling_steps": 3}
FMRI = {
    "modality": "fmri",
    "source": {"kind": "synthetic_fmri", "n_subjects": 4, "n_rois": 10, "n_timepoints": 80,
               "sites": ["A"]},
    "preprocessing": {"min_timepoints": 60, "max_mean_fd": None},
    "vae": {"model": {"latent_dim": 2, "hidden": 16},
            "training": {"max_epochs": 3, "batch_size": 4, "weight_decay": 0.0},
            "n_samples": 4},
    "decoding": {"n_folds": 2},
}
BANDPOWER = "results/tiny/sub-1/features/bandpower.npz"
TARGETS = [
    *(f"results/tiny/sub-1/decoders/{d}/metrics.json" for d in DECODERS),
    "results/fm/fmri/decoding.json",
    "results/fm/models/vae/summary.json",
]


def _config(workdir: Path) -> Path:
    path = tiny_synthetic_config(workdir, subjects=("1",), tokenizer=TOKENIZER,
                                 diffusion=DIFFUSION, decoders=DECODERS,
                                 features={"signals": {}, "bandpower": {}})
    cfg = yaml.safe_load(path.read_text())
    cfg["datasets"]["fm"] = FMRI
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _snakemake(workdir: Path, config: Path, *args: str, fault: str | None = None):
    """Snakemake in its own session; ``fault`` kills the whole session (see faults/)."""
    env = dict(os.environ)
    env.pop("BRAINMILL_TEST_FAULT", None)
    if fault is not None:
        env.update(BRAINMILL_TEST_FAULT=fault, BRAINMILL_TEST_FAULT_GROUP="1",
                   PYTHONPATH=os.pathsep.join(p for p in (str(FAULTS), env.get("PYTHONPATH"))
                                              if p))
    return workflow_helpers.run_snakemake(workdir, config, *args, env=env,
                                          start_new_session=True)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Run A (straight through) and run B (crashed twice, unlocked, completed)."""
    a, b = tmp_path_factory.mktemp("run_a"), tmp_path_factory.mktemp("run_b")
    config_a, config_b = _config(a), _config(b)
    # run A in the background: its chains leave cores idle that run B's steps can use
    output_a = a / "snakemake-output.txt"
    with open(output_a, "w") as out:
        run_a = subprocess.Popen(
            [sys.executable, "-m", "snakemake", "--snakefile",
             str(workflow_helpers.ROOT / "Snakefile"), "--directory", str(a), "--configfile",
             str(config_a), "--cores", "2", *TARGETS],
            stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    steps = {}
    # the first crash asks for the band-power features only, so the tokenizer has not started
    # (asking for every target let a slow features job come after the whole tokenizer training,
    # and then the second crash never came)
    steps["crash_after_rename"] = _snakemake(
        b, config_b, BANDPOWER, fault=f"after-rename:{BANDPOWER.removeprefix('results/tiny/')}")
    steps["locked"] = _snakemake(b, config_b, *TARGETS)  # refused at once: stale lock
    steps["unlock_1"] = _snakemake(b, config_b, "--unlock")
    steps["without_rerun_incomplete"] = _snakemake(b, config_b, "--dry-run",
                                                   "--workflow-profile", "none", *TARGETS)
    steps["crash_in_training"] = _snakemake(
        b, config_b, *TARGETS, fault="after-rename:models/tokenizer/run/checkpoint.pt")
    steps["checkpoint_left"] = (b / "results/tiny/models/tokenizer/run/checkpoint.pt").is_file()
    steps["unlock_2"] = _snakemake(b, config_b, "--unlock")
    steps["final"] = _snakemake(b, config_b, *TARGETS)
    assert steps["final"].returncode == 0, steps["final"].stderr[-4000:]
    assert run_a.wait(timeout=900) == 0, output_a.read_text()[-4000:]
    return a, b, steps


def _without_timings(obj):
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


def _canonical(path: Path) -> str:
    """The file's JSON without wall-clock fields, serialised the same way (bit-exact floats)."""
    return json.dumps(_without_timings(json.loads(path.read_text())), sort_keys=True)


def test_same_config_and_seed_give_identical_metrics_for_every_decoder(two_runs):
    a, b, _ = two_runs
    compared = sorted(p.relative_to(a) for p in (a / "results").rglob("metrics.json"))
    assert [p.parent.name for p in compared] == sorted(DECODERS), "a decoder did not run"
    compared += [Path("results/fm/fmri/decoding.json"), Path("results/fm/models/vae/summary.json")]
    for rel in compared:
        assert _canonical(a / rel) == _canonical(b / rel), f"{rel} differs between the runs"
    # the comparison is not vacuous: the fields are there and hold numbers
    metrics = json.loads((a / compared[0]).read_text())
    assert metrics["protocols"] and metrics["seed"] == 7


def test_job_killed_after_writing_its_output_is_rerun_not_trusted(two_runs):
    a, b, steps = two_runs
    assert steps["crash_after_rename"].returncode == -signal.SIGKILL
    locked = steps["locked"].stdout + steps["locked"].stderr
    assert steps["locked"].returncode != 0 and "cannot be locked" in locked
    assert "--unlock" in locked
    refused = steps["without_rerun_incomplete"]
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "IncompleteFilesException" in out
    assert "results/tiny/sub-1/features/bandpower.npz" in out.split("Incomplete files:")[1]
    # the default profile's rerun-incomplete ran the job again (in the next run, or in the
    # last one when the second crash came first), to completion
    rerun = "".join(steps[k].stdout + steps[k].stderr for k in ("crash_in_training", "final"))
    assert "wildcards: ds=tiny, sub=1, feature=bandpower" in rerun
    log = (b / "logs/tiny/sub-1/features-bandpower.log").read_text()
    assert "done features bandpower tiny sub-1" in log
    assert not list((b / ".snakemake" / "incomplete").iterdir())


def test_training_job_killed_mid_run_resumes_from_its_checkpoint(two_runs):
    a, b, steps = two_runs
    assert steps["crash_in_training"].returncode == -signal.SIGKILL, (
        steps["crash_in_training"].stdout[-3000:])
    assert steps["checkpoint_left"], "the kill came before the first checkpoint"
    log_b = (b / "logs/tiny/train_tokenizer.log").read_text()
    # killed right after its first checkpoint (the end of epoch 1): it resumes in epoch 2
    resumed = re.search(r"resuming from step (\d+) \(epoch (\d+)", log_b)
    assert resumed and int(resumed[1]) > 0 and int(resumed[2]) >= 2, log_b
    assert "resuming" not in (a / "logs/tiny/train_tokenizer.log").read_text()
    info_a = json.loads((a / "results/tiny/models/tokenizer/training.json").read_text())
    info_b = json.loads((b / "results/tiny/models/tokenizer/training.json").read_text())
    assert _without_timings(info_a["training"]) == _without_timings(info_b["training"])
    assert info_a["usage"] == info_b["usage"]
