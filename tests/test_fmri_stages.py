"""The fMRI stages end to end on tiny synthetic data, laid out as the workflow does."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from brainmill.config import validate_config
from brainmill.datasets.fmri import ROITimeSeries
from brainmill.datasets.fmri_sources import dataset_subjects, synthetic_spec
from brainmill.datasets.synthetic_fmri import synthetic_participants
from brainmill.errors import DataError
from brainmill.features.connectivity import connectivity_matrix, upper_triangle
from brainmill.fmri_stages import (
    read_fmri_participants,
    run_clean_fmri,
    run_connectivity,
    run_fmri_participants,
    run_load_fmri,
)
from brainmill.vae_stages import (
    included_connectivity,
    run_decode_fmri,
    run_train_vae,
    run_vae_outputs,
)

N_SUBJECTS = 12
SOURCE = {"kind": "synthetic_fmri", "n_subjects": N_SUBJECTS, "n_rois": 10,
          "n_timepoints": 120}
VAE = {"model": {"latent_dim": 4, "hidden": 32},
       "training": {"max_epochs": 15, "batch_size": 8, "lr": 0.003, "weight_decay": 0.0},
       "n_samples": 6}


def _config(max_mean_fd: float):
    return validate_config({"seed": 3, "datasets": {"fm": {
        "modality": "fmri", "source": SOURCE,
        "preprocessing": {"max_mean_fd": max_mean_fd, "min_timepoints": 60},
        "vae": VAE, "decoding": {"target": "diagnosis", "n_folds": 2}}}})


@pytest.fixture(scope="module")
def fmri_run(tmp_path_factory):
    """Every fMRI stage once; the subject with the largest mean FD is excluded for motion."""
    probe = _config(1.0)
    table = synthetic_participants(synthetic_spec(probe.datasets["fm"].source, probe.seed))
    fd = table["mean_fd"].sort_values()
    worst = str(fd.index[-1])
    cfg = _config(float((fd.iloc[-1] + fd.iloc[-2]) / 2))
    root = tmp_path_factory.mktemp("fmri")
    subjects = dataset_subjects(cfg.datasets["fm"], cfg.seed)
    paths = {}
    for sub in subjects:
        base = root / f"sub-{sub}"
        p = SimpleNamespace(ts=base / "roi_timeseries.npz", cleaned=base / "cleaned.npz",
                            qc=base / "qc.json", conn=base / "features" / "connectivity.npz")
        run_load_fmri(cfg, "fm", sub, p.ts)
        run_clean_fmri(cfg, "fm", sub, p.ts, p.cleaned, p.qc)
        run_connectivity(cfg, "fm", sub, p.cleaned, p.qc, p.conn)
        paths[sub] = p
    participants = root / "fmri" / "participants.csv"
    run_fmri_participants(cfg, "fm", subjects, [paths[s].qc for s in subjects], participants)
    conn = [str(paths[s].conn) for s in subjects]
    vae_dir = root / "models" / "vae"
    summary = run_train_vae(cfg, "fm", conn, str(participants), str(vae_dir / "model.pt"),
                            str(vae_dir / "summary.json"), str(vae_dir / "history.csv"),
                            str(vae_dir / "run"))
    outputs = run_vae_outputs(cfg, "fm", str(vae_dir / "model.pt"), conn, str(participants),
                              str(root / "fmri" / "latents.npz"),
                              str(root / "fmri" / "synthetic.npz"))
    decoding = run_decode_fmri(cfg, "fm", conn, [str(paths[s].cleaned) for s in subjects],
                               str(participants), str(root / "fmri" / "decoding.json"))
    return SimpleNamespace(cfg=cfg, root=root, subjects=subjects, paths=paths, worst=worst,
                           participants=participants, conn=conn, summary=summary,
                           outputs=outputs, decoding=decoding)


def test_every_subject_is_listed_and_the_moving_one_is_excluded(fmri_run):
    table = read_fmri_participants(fmri_run.participants)
    assert list(table.index) == [str(i) for i in range(1, N_SUBJECTS + 1)]
    assert table.loc[fmri_run.worst, "excluded"]
    assert "mean FD" in table.loc[fmri_run.worst, "reason"]
    assert table["excluded"].sum() == 1
    qc = json.loads(fmri_run.paths[fmri_run.worst].qc.read_text())
    assert qc["excluded"] and qc["n_timepoints_kept"] == 0
    assert ROITimeSeries.load(fmri_run.paths[fmri_run.worst].cleaned).n_timepoints == 0
    with np.load(fmri_run.paths[fmri_run.worst].conn) as f:
        assert bool(f["excluded"]) and np.isnan(f["matrix"]).all()


def test_connectivity_is_that_of_the_cleaned_series(fmri_run):
    sub = next(s for s in fmri_run.subjects if s != fmri_run.worst)
    cleaned = ROITimeSeries.load(fmri_run.paths[sub].cleaned)
    assert cleaned.n_timepoints == 120 and np.allclose(cleaned.data.mean(0), 0, atol=1e-8)
    expected = connectivity_matrix(cleaned.data, kind="correlation")
    with np.load(fmri_run.paths[sub].conn) as f:
        np.testing.assert_allclose(f["matrix"], expected)
        np.testing.assert_allclose(f["vector"], upper_triangle(expected))
        assert str(f["kind"]) == "correlation" and f["roi_coords"].shape == (10, 3)


def test_vae_trains_on_included_subjects_and_removes_demographics(fmri_run):
    X, table, n_rois, included = included_connectivity(fmri_run.conn, fmri_run.participants)
    assert included.sum() == N_SUBJECTS - 1
    assert X.shape == (N_SUBJECTS - 1, 45) and n_rois == 10
    assert fmri_run.worst not in table.index
    s = fmri_run.summary
    assert s["n_subjects"] == N_SUBJECTS - 1 and s["subjects"] == list(table.index)
    assert s["demographics"] == {"continuous": ["age"], "categorical": ["sex", "site"]}
    # in-sample: the latents carry less of every demographic than the raw edges do
    for key in ("age", "sex", "site", "diagnosis"):
        assert s["corr_latents"][key] < s["corr_connectivity"][key]
    history = pd.read_csv(fmri_run.root / "models" / "vae" / "history.csv")
    assert len(history) == 15 and {"rec", "decor", "cov"} <= set(history.columns)


def test_latents_and_synthetic_connectomes(fmri_run):
    with np.load(fmri_run.root / "fmri" / "latents.npz") as f:
        assert f["latents"].shape == (N_SUBJECTS - 1, 4)
        assert fmri_run.worst not in set(f["subjects"])
    out = fmri_run.outputs
    profiles = json.loads(str(out["profiles_json"]))
    assert len(profiles) == 2 * 2 * 2  # sex x site x diagnosis at the mean age
    assert out["synthetic_mean"].shape == (8, 10, 10)
    np.testing.assert_allclose(out["synthetic_mean"], out["synthetic_mean"].transpose(0, 2, 1),
                               atol=1e-6)
    table = read_fmri_participants(fmri_run.participants)
    table = table[~table["excluded"]]
    for profile, n in zip(profiles, out["n_real"], strict=True):
        match = ((table["sex"] == profile["sex"]) & (table["site"] == profile["site"])
                 & (table["diagnosis"] == profile["diagnosis"]))
        assert n == match.sum()
    assert list(out["group_labels"]) == ["ASD", "TC"]
    assert np.isfinite(out["group_diff_corr"])


def test_decoding_is_cross_validated_on_training_folds(fmri_run):
    d = fmri_run.decoding
    assert d["classes"] == ["ASD", "TC"] and d["n_folds"] == 2
    assert d["n_subjects"] == N_SUBJECTS - 1 and d["chance"] == 0.5
    assert set(d["results"]) == {"connectivity", "latents", "latents+demographics",
                                 "demographics"}
    for r in d["results"].values():
        assert len(r["per_fold"]) == 2 and 0 <= r["balanced_accuracy"] <= 1
        assert r["balanced_accuracy"] == pytest.approx(np.mean(r["per_fold"]))
    assert "training fold only" in d["protocol"]
    assert len(d["heldout_vae"]) == 2


def test_tangent_connectivity_is_fitted_per_fold(fmri_run, tmp_path, monkeypatch):
    from brainmill.features import connectivity

    fitted_sizes = []
    original_fit = connectivity.ConnectivityFeatures.fit

    def recording_fit(self, X, y=None):
        fitted_sizes.append(len(X))
        return original_fit(self, X, y)

    monkeypatch.setattr(connectivity.ConnectivityFeatures, "fit", recording_fit)
    cfg = fmri_run.cfg.model_copy(deep=True)
    cfg.datasets["fm"].decoding.connectivity_kind = "tangent"
    cleaned = [str(fmri_run.paths[s].cleaned) for s in fmri_run.subjects]
    d = run_decode_fmri(cfg, "fm", fmri_run.conn, cleaned, str(fmri_run.participants),
                        str(tmp_path / "decoding.json"))
    assert "tangent connectivity fitted on each training fold" in d["protocol"]
    # one tangent reference per fold, from that fold's training subjects only (11 → 5/6)
    assert sorted(fitted_sizes) == [5, 6]
    # the VAE feature sets still use the per-subject correlations: same as the main run
    assert d["results"]["latents"] == fmri_run.decoding["results"]["latents"]


def test_vae_run_is_stamped_with_its_subjects_and_an_eeg_dataset_is_refused(fmri_run, tmp_path):
    cfg = validate_config({"datasets": {"eeg": {
        "source": {"kind": "synthetic"}, "subjects": [1],
        "events": {"left_hand": "left_hand", "right_hand": "right_hand"}}}})
    with pytest.raises(DataError, match="not an fMRI dataset"):
        run_load_fmri(cfg, "eeg", "1", tmp_path / "x.npz")
    stamp = fmri_run.root / "models" / "vae" / "run" / "params.json"
    assert json.loads(stamp.read_text())["subjects"] == list(
        included_connectivity(fmri_run.conn, fmri_run.participants)[1].index)


def test_connectivity_files_out_of_order_are_refused(fmri_run):
    with pytest.raises(DataError, match="is not subject"):
        included_connectivity(fmri_run.conn[::-1], fmri_run.participants)
    with pytest.raises(DataError, match="lists 12 subjects but there are 11"):
        included_connectivity(fmri_run.conn[:-1], fmri_run.participants)
