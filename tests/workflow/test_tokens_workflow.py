"""The token branch through the Snakemake DAG: tokenizer, tokens, Transformer, reports, resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

TOKENIZER = {
    "model": {"dim": 16, "n_heads": 2, "freq_depth": 1, "time_depth": 1, "decoder_depth": 1,
              "n_codes": 32, "norm_groups": 4, "dead_code_threshold": 0.5},
    "training": {"max_epochs": 2, "batch_size": 128, "val_fraction": 0.1, "patience": 2},
}
DECODERS = {"ts_lr": {}, "csp_lda": None,
            "token_transformer": {"model": {"n_heads": 2, "depth": 1},
                                  "training": {"max_epochs": 2, "batch_size": 16},
                                  "protocols": ["cross_session"]}}


@pytest.fixture(scope="module")
def tokens_run(tmp_path_factory, snakemake_run, tiny_config):
    workdir = tmp_path_factory.mktemp("tokens")
    config = tiny_config(workdir, tokenizer=TOKENIZER, decoders=DECODERS)
    proc = snakemake_run(workdir, config)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return workdir, config


def test_tokenizer_trains_once_on_every_subject(tokens_run):
    workdir, _ = tokens_run
    info = json.loads((workdir / "results/tiny/models/tokenizer/training.json").read_text())
    assert info["subjects"] == ["1", "5"] and info["labels_used"] is False
    assert sum(s["windows"] for s in info["per_subject"].values()) == info["n_windows"]
    assert (workdir / "results/tiny/models/tokenizer/run/checkpoint.pt").exists()


def test_tokens_and_transformer_metrics(tokens_run):
    workdir, _ = tokens_run
    for sub in ("1", "5"):
        base = workdir / "results" / "tiny" / f"sub-{sub}"
        with np.load(base / "features" / "tokens.npz", allow_pickle=False) as f:
            ids, y = f["X"], f["y"]
        assert ids.dtype == np.int64 and ids.ndim == 3 and ids.max() < 32 and len(y) == len(ids)
        metrics = json.loads((base / "decoders/token_transformer/metrics.json").read_text())
        assert list(metrics["protocols"]) == ["cross_session"]
        assert metrics["n_epochs"] == len(ids)
        preds = pd.read_csv(base / "decoders/token_transformer/predictions.csv")
        assert len(preds) == len(ids)  # every epoch tested once, leave-one-session-out
    scores = pd.read_csv(workdir / "results" / "tiny" / "scores.csv")
    assert set(scores["decoder"]) == {"ts_lr", "token_transformer"}


def test_reports_show_the_token_sections(tokens_run):
    workdir, _ = tokens_run
    html = (workdir / "reports" / "tiny" / "sub-1.html").read_text()
    assert "Tokens over the spectrogram" in html and "Most class-discriminative tokens" in html
    index = (workdir / "reports" / "tiny" / "index.html").read_text()
    assert "Codebook usage" in index and "Tokenizer training curves" in index


def job_counts(output: str) -> dict[str, int]:
    """Rule → job count from the "Job stats" table of a Snakemake dry run."""
    table = output.split("Job stats:")[1].split("total")[0]
    rows = [line.split() for line in table.splitlines()[3:] if line.strip()]
    return {row[0]: int(row[1]) for row in rows if len(row) == 2}


def test_second_run_is_a_no_op_and_a_tokenizer_change_reruns_the_branch(tokens_run,
                                                                        snakemake_run,
                                                                        tiny_config):
    workdir, config = tokens_run
    proc = snakemake_run(workdir, config, "--dry-run")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr
    changed = {**TOKENIZER, "model": {**TOKENIZER["model"], "n_codes": 24}}
    config = tiny_config(workdir, tokenizer=changed, decoders=DECODERS)
    proc = snakemake_run(workdir, config, "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = job_counts(proc.stdout + proc.stderr)
    assert jobs["train_tokenizer"] == 1 and jobs["tokenize"] == 2
    assert jobs["decode_transformer"] == 2
    # nothing upstream of the tokenizer, and no classical decoder, runs again
    assert not {"load_eeg", "preprocess_eeg", "features", "decode"} & set(jobs)
