"""Bonn epilepsy sets and DREAMS sleep excerpts from ../shared/data, through the shipped
configs: counts, layout, labels, epochs and the bandpower_lr baseline.

The expected counts were measured on the shared copy (Bonn segments 001-080 of every set;
DREAMS excerpts 1-6, which hold no REM). The decoding floors are set well under the measured
scores (Bonn2 balanced accuracy 0.95, DREAMS leave-one-excerpt-out accuracy 0.82) to catch a
broken pipeline, not to benchmark it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brainmill.config import load_config
from brainmill.datasets import load_recording
from brainmill.decoding import run_decoder
from brainmill.features.bandpower import compute_bandpower
from brainmill.preprocessing import preprocess

pytestmark = pytest.mark.realdata
ROOT = Path(__file__).resolve().parents[2]

#: kept / mixed / unknown 30-s windows and kept windows per stage, per excerpt.
DREAMS_COUNTS = {
    "excerpt1": ("C3-A1", 100.0, 43, 17, 0, {"W": 7, "N1": 0, "N2": 30, "N3": 6}),
    "excerpt2": ("CZ-A1", 200.0, 48, 12, 0, {"W": 0, "N1": 0, "N2": 29, "N3": 19}),
    "excerpt3": ("C3-A1", 50.0, 33, 27, 0, {"W": 2, "N1": 6, "N2": 25, "N3": 0}),
    "excerpt4": ("CZ-A1", 200.0, 46, 14, 0, {"W": 16, "N1": 9, "N2": 19, "N3": 2}),
    "excerpt5": ("CZ-A1", 200.0, 42, 18, 0, {"W": 6, "N1": 0, "N2": 26, "N3": 10}),
    "excerpt6": ("CZ-A1", 200.0, 34, 26, 0, {"W": 1, "N1": 2, "N2": 22, "N3": 9}),
}


def _dataset(config: str, name: str, shared_data: Path):
    cfg = load_config(ROOT / "config" / config)
    ds = cfg.datasets[name]
    ds.source.path = str(shared_data)
    return cfg, ds


@pytest.fixture(scope="module")
def bonn2(shared_data):
    cfg, ds = _dataset("bonn.yaml", "bonn2", shared_data)
    return cfg, ds, load_recording(ds, "all", seed=cfg.seed)


@pytest.fixture(scope="module")
def bonn2_epochs(bonn2):
    _, ds, recording = bonn2
    return preprocess(recording, ds.preprocessing).epochs


@pytest.fixture(scope="module")
def dreams(shared_data):
    cfg, ds = _dataset("dreams.yaml", "dreams", shared_data)
    return cfg, ds, load_recording(ds, "all", seed=cfg.seed)


@pytest.fixture(scope="module")
def dreams_epochs(dreams):
    _, ds, recording = dreams
    return preprocess(recording, ds.preprocessing).epochs


def test_bonn_recording_layout(bonn2, shared_data):
    _, _, rec = bonn2
    assert rec.raw.ch_names == ["EEG"]
    assert rec.raw.info["sfreq"] == pytest.approx(173.61, rel=1e-8)
    assert rec.raw.n_times == 400 * 4097
    assert [r.run for r in rec.runs[:2]] == ["Z001", "Z002"] and rec.runs[-1].run == "S080"
    assert {r.session for r in rec.runs} == {"1"}
    assert {s: len(v["segments"]) for s, v in rec.metadata["sets"].items()} == dict.fromkeys(
        "ZONFS", 80)
    # the first samples of Z001.txt (µV) and of N001.TXT, read in volts
    np.testing.assert_allclose(rec.raw.get_data()[0, :3], np.array([12, 22, 35]) * 1e-6)
    n001 = next(i for i, r in enumerate(rec.runs) if r.run == "N001")
    first = np.loadtxt(shared_data / "bonn-epilepsy" / "N" / "N001.TXT")
    np.testing.assert_allclose(rec.raw.get_data()[0, n001 * 4097:(n001 + 1) * 4097],
                               first * 1e-6)


def test_bonn_epochs_are_all_windows_with_their_set(bonn2_epochs):
    epochs = bonn2_epochs
    meta = epochs.metadata
    assert len(epochs) == 3200 and len(epochs.times) == 868
    assert (meta.groupby("run").size() == 8).all() and meta["run"].nunique() == 400
    expected = np.where(meta["run"].str[0] == "S", "seizure", "non_seizure")
    assert (meta["label"] == expected).all()
    assert meta["label"].value_counts().to_dict() == {"non_seizure": 2560, "seizure": 640}


def test_bonn2_bandpower_lr_grouped(bonn2, bonn2_epochs):
    cfg, ds, _ = bonn2
    epochs = bonn2_epochs
    features = compute_bandpower(epochs, ds.features.bandpower, ds.class_names)
    assert features.X.shape == (3200, 5)
    metrics, preds = run_decoder("bandpower_lr", ds.decoders.bandpower_lr, features,
                                 ds.evaluation, cfg.seed, subject="all", dataset="bonn2")
    res = metrics["protocols"]["grouped_kfold"]
    assert (preds.groupby("run").fold.nunique() == 1).all()  # segments stay whole
    assert res["summary"]["balanced_accuracy"]["mean"] >= 0.85
    assert res["summary"]["roc_auc"]["mean"] >= 0.95


def test_dreams_recording_layout_and_counts(dreams):
    _, _, rec = dreams
    assert rec.raw.ch_names == ["EEG"] and rec.raw.info["sfreq"] == 200.0
    assert rec.sessions == list(DREAMS_COUNTS)
    assert rec.raw.n_times == 5 * 360000 + 360140  # excerpt 6 runs 0.7 s past 30 min
    for name, (channel, sfreq, kept, mixed, unknown, stages) in DREAMS_COUNTS.items():
        meta = rec.metadata["excerpts"][name]
        assert (meta["channel"], meta["sfreq_file"]) == (channel, sfreq)
        assert (meta["kept"], meta["mixed"], meta["unknown"]) == (kept, mixed, unknown)
        assert meta["per_stage"] == {**stages, "REM": 0}


def test_dreams_epochs_per_excerpt_and_stage(dreams_epochs):
    epochs = dreams_epochs
    meta = epochs.metadata
    assert len(epochs) == 246 and len(epochs.times) == 6000
    for name, (*_, kept, _, _, stages) in DREAMS_COUNTS.items():
        rows = meta[meta["session"] == name]
        assert len(rows) == kept
        assert rows["label"].value_counts().to_dict() == {k: v for k, v in stages.items() if v}


def test_dreams_bandpower_lr_leave_one_excerpt_out(dreams, dreams_epochs):
    cfg, ds, _ = dreams
    epochs = dreams_epochs
    features = compute_bandpower(epochs, ds.features.bandpower, ds.class_names)
    metrics, _ = run_decoder("bandpower_lr", ds.decoders.bandpower_lr, features,
                             ds.evaluation, cfg.seed, subject="all", dataset="dreams")
    res = metrics["protocols"]["cross_session"]
    assert [f["test_session"] for f in res["folds"]] == list(DREAMS_COUNTS)
    assert res["summary"]["accuracy"]["mean"] >= 0.7  # majority class (N2): 0.61
