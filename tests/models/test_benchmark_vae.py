"""benchmarks/vae.py on tiny synthetic fMRI data: both models, 1 epoch, the JSON keys exist.

No timing or quality is asserted (a 1-epoch model is not a result); the checks are that every
metric is computed for both models on the same folds, that the JSON holds the named keys with
the right types, and the parts whose result is known exactly (calibration arithmetic, the
reference adapter's sample layout, the skip without data).
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("demovae", reason="the reference package comes with the dev extra")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "vae.py"
HEADLINE = ("max_abs_corr_ours", "max_abs_corr_ref", "tstr_age_rmse_ours", "tstr_age_rmse_ref",
            "train_seconds_ours", "train_seconds_ref")


@pytest.fixture
def bench(monkeypatch):
    spec = importlib.util.spec_from_file_location("brainmill_benchmark_vae", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        monkeypatch.setattr(module, "OURS", {"hidden": 32, "latent_dim": 4})
        monkeypatch.setattr(module, "REFERENCE", {"latent_dim": 4})
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_quick_synthetic_run_writes_the_named_keys(bench, tmp_path, capsys):
    out = tmp_path / "out.json"
    assert bench.main(["--synthetic", "40", "--quick", "--folds", "3", "--epochs-ours", "1",
                       "--epochs-ref", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "machine:" in printed and "command: python benchmarks/vae.py --synthetic 40" in printed
    assert "max |r| latents~any" in printed and "ours/ref" in printed
    result = json.loads(out.read_text())
    for key in HEADLINE:
        assert isinstance(result[key], float) and math.isfinite(result[key]), key
    assert 0 <= result["max_abs_corr_ours"] <= 1 and 0 <= result["max_abs_corr_ref"] <= 1
    assert result["train_seconds_ours"] > 0 and result["train_seconds_ref"] > 0
    assert result["epochs_ours"] == 1 and result["epochs_ref"] == 1
    assert result["data"]["n_features"] == 30 * 29 // 2            # synthetic: 30 ROIs
    assert result["machine"]["demovae"] == "0.0.6"
    rows = pd.DataFrame(result["folds"])
    # --quick: 2 folds; one baseline row and one row per model in each, on the same test rows
    assert sorted(rows["model"].value_counts().items()) == [("baseline", 2), ("ours", 2),
                                                           ("ref", 2)]
    assert rows.groupby("fold")["n_test"].nunique().eq(1).all()
    # connectivity decoding does not involve the VAE: the same score for both models
    conn = rows[rows.model != "baseline"].groupby("fold")["diagnosis_bacc_connectivity"]
    assert conn.nunique().eq(1).all()
    models = rows[rows.model != "baseline"]
    assert (models["latent_dim"] == 4).all()
    for col in ("max_abs_corr_age", "max_abs_corr_sex", "max_abs_corr_site",
                "reconstruction_rmse", "tstr_sex_accuracy", "trts_age_rmse",
                "group_diff_corr", "diagnosis_bacc_latents+demographics"):
        assert models[col].notna().all(), col
    summary = result["summary"]["tstr_age_rmse"]
    assert set(summary) == {"ours", "ref"}
    ours = models[models.model == "ours"]["tstr_age_rmse"]
    assert summary["ours"] == pytest.approx([ours.mean(), ours.std(ddof=1)])


def test_missing_data_skips_with_a_message(bench, tmp_path, capsys):
    out = tmp_path / "skip.json"
    assert bench.main(["--data", str(tmp_path / "absent"), "--json", str(out)]) == 0
    err = capsys.readouterr().err
    assert "skipped: no ABIDE CC200 data at" in err and "absent" in err
    assert json.loads(out.read_text())["skipped"].startswith("skipped: no ABIDE")


class _SleepyModel:
    """A fit costs ``fixed + per_epoch * epochs`` seconds."""

    def __init__(self, epochs, fixed, per_epoch):
        self.seconds = fixed + per_epoch * epochs

    def fit(self, X, demographics):
        time.sleep(self.seconds)
        return self


def test_calibrate_epochs_solves_the_budget(bench):
    got = bench.calibrate_epochs(lambda e: _SleepyModel(e, 0.05, 0.02), np.zeros((4, 2)),
                                 pd.DataFrame(index=range(4)), budget=0.45, probe=5)
    assert got["seconds_per_epoch"] == pytest.approx(0.02, abs=0.006)
    assert got["fixed_seconds"] == pytest.approx(0.05, abs=0.02)
    assert 15 <= got["epochs"] <= 23            # (0.45 - 0.05) / 0.02 = 20


def test_choose_epochs_without_budget_matches_ours_default_time(bench, monkeypatch):
    monkeypatch.setattr(bench, "OURS", {"training": {"max_epochs": 10}})
    monkeypatch.setattr(bench, "FACTORIES", {
        "ours": lambda e, categorical, seed: _SleepyModel(e, 0.05, 0.02),
        "ref": lambda e, categorical, seed: _SleepyModel(e, 0.01, 0.04)})
    epochs, cal = bench.choose_epochs(np.zeros((4, 2)), pd.DataFrame(index=range(4)), None,
                                      {"ours": None, "ref": None}, probe=4, log=lambda *a, **k: 0)
    assert epochs["ours"] == 10                         # ours keeps its default epochs
    assert cal["budget_seconds"] == pytest.approx(0.25, abs=0.06)   # 0.05 + 10 * 0.02
    assert 4 <= epochs["ref"] <= 8                      # (0.25 - 0.01) / 0.04 = 6
    given, cal = bench.choose_epochs(np.zeros((4, 2)), pd.DataFrame(index=range(4)), 1.0,
                                     {"ours": 3, "ref": 7}, log=lambda *a, **k: 0)
    assert given == {"ours": 3, "ref": 7} and cal["ours"]["given"] and cal["ref"]["given"]


def test_reference_adapter_standardises_and_repeats_rows(bench):
    rng = np.random.default_rng(0)
    demo = pd.DataFrame({"age": rng.uniform(8, 30, 12), "sex": ["M", "F"] * 6,
                         "site": ["A"] * 6 + ["B"] * 6}, index=["s"] * 12)  # repeated labels
    X = rng.normal(size=(12, 10))
    ref = bench.ReferenceVAE(1, latent_dim=3).fit(X, demo)
    assert ref.stats_["age"] == pytest.approx((demo["age"].mean(), demo["age"].std(ddof=0)))
    assert ref.transform(X).shape == (12, 3)
    assert ref.reconstruct(X, demo).shape == (12, 10)
    samples = ref.sample(demo.iloc[:2], n_per_row=3, seed=1)
    assert samples.shape == (6, 10)
    assert np.array_equal(samples, ref.sample(demo.iloc[:2], n_per_row=3, seed=1))
    # the decoder is deterministic given z: row-major repeats share demographics
    demo_enc, _ = ref._demo(bench._repeat(demo.iloc[:2], 3))
    assert np.allclose(demo_enc[0], (demo["age"].iloc[[0, 0, 0, 1, 1, 1]] - ref.stats_["age"][0])
                       / ref.stats_["age"][1])


def test_fisher_z_is_finite_arctanh(bench):
    r = np.array([[0.0, 0.5, 1.0, -1.0]])
    z = bench.fisher_z(r)
    assert np.all(np.isfinite(z))
    assert z[0, :2] == pytest.approx(np.arctanh([0.0, 0.5]))
    assert z[0, 2] == pytest.approx(-z[0, 3]) and z[0, 2] > 7
