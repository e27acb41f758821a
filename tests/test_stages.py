"""Each workflow stage called from Python on one tiny synthetic subject (no Snakemake)."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from brainmill import stages
from brainmill.errors import DataError
from brainmill.io import FeatureSet, read_json


def test_recording_roundtrip(stage_outputs, tmp_path):
    rec = stage_outputs.recording
    back = stages.read_recording(stage_outputs.raw, stage_outputs.recording_json)
    np.testing.assert_allclose(back.raw.get_data(), rec.raw.get_data(), rtol=1e-6, atol=1e-12)
    assert back.raw.ch_names == rec.raw.ch_names
    assert back.raw.info["sfreq"] == rec.raw.info["sfreq"]
    assert back.runs == rec.runs
    assert back.event_id == rec.event_id
    assert back.subject == rec.subject == "1"
    assert back.metadata["dataset"] == "tiny"
    assert [r.session for r in back.runs] == ["1", "2"]

    # and save_recording writes what read_recording reads, leaving no temporary file
    stages.save_recording(back, tmp_path / "raw.fif", tmp_path / "recording.json")
    again = stages.read_recording(tmp_path / "raw.fif", tmp_path / "recording.json")
    np.testing.assert_allclose(again.raw.get_data(), rec.raw.get_data(), rtol=1e-6, atol=1e-12)
    assert again.runs == rec.runs and again.event_id == rec.event_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.fif", "recording.json"]


def test_preprocess_outputs(stage_outputs):
    for path in (stage_outputs.epochs, stage_outputs.preprocessing_json, stage_outputs.qc):
        assert path.is_file(), path
    epochs = mne.read_epochs(stage_outputs.epochs, preload=False, verbose="error")
    assert {"session", "run", "label", "onset"} <= set(epochs.metadata.columns)
    assert sorted(epochs.metadata["session"].astype(str).unique()) == ["1", "2"]
    assert set(epochs.metadata["label"]) == {"left_hand", "right_hand"}
    assert epochs.info["sfreq"] == 100
    log = read_json(stage_outputs.preprocessing_json)
    assert log["epochs"]["n_kept"] == len(epochs)
    with np.load(stage_outputs.qc) as qc:
        assert {"freqs", "psd_before", "psd_after", "channel_z", "is_bad"} <= set(qc.files)


def test_features_shape(stage_outputs):
    epochs = mne.read_epochs(stage_outputs.epochs, preload=False, verbose="error")
    fs = FeatureSet.load(stage_outputs.features)
    n_ch = len(mne.pick_types(epochs.info, eeg=True))
    assert fs.X.shape == (len(epochs), n_ch, n_ch)
    assert len(fs.y) == len(fs.session) == len(fs.run) == len(epochs)
    assert fs.classes == ["left_hand", "right_hand"]
    assert fs.meta["subject"] == "1" and fs.meta["dataset"] == "tiny"


def test_metrics_have_both_protocols(stage_outputs):
    n_epochs = len(mne.read_epochs(stage_outputs.epochs, preload=False, verbose="error"))
    assert set(stage_outputs.metrics) == {"ts_lr", "csp_lda"}
    for decoder, path in stage_outputs.metrics.items():
        metrics = read_json(path)
        assert metrics["decoder"] == decoder and metrics["subject"] == "1"
        assert set(metrics["protocols"]) == {"within_session", "cross_session"}
        assert metrics["n_epochs"] == n_epochs
        for res in metrics["protocols"].values():
            assert 0 <= res["summary"]["accuracy"]["mean"] <= 1
        assert stage_outputs.predictions[decoder].is_file()


def test_decode_too_few_trials_names_subject_and_file(stage_outputs, tmp_path):
    fs = FeatureSet.load(stage_outputs.features)
    # keep 2 epochs per class and session: too few for the configured 3 folds
    keep = np.concatenate([np.flatnonzero((fs.session == s) & (fs.y == k))[:2]
                           for s in np.unique(fs.session) for k in np.unique(fs.y)])
    small = FeatureSet(X=fs.X[keep], y=fs.y[keep], classes=fs.classes,
                       session=fs.session[keep], run=fs.run[keep], meta=fs.meta)
    path = tmp_path / "few.npz"
    small.save(path)
    with pytest.raises(DataError) as info:
        stages.run_decode(stage_outputs.cfg, "tiny", "1", "ts_lr", str(path),
                          str(tmp_path / "metrics.json"), str(tmp_path / "predictions.csv"))
    msg = str(info.value)
    assert "subject 1" in msg
    assert str(path) in msg
    assert "3-fold" in msg
    assert not (tmp_path / "metrics.json").exists()


def test_features_on_empty_epochs_names_file(stage_outputs, tmp_path):
    epochs = mne.read_epochs(stage_outputs.epochs, preload=True, verbose="error")
    epochs.drop(np.arange(len(epochs)), verbose="error")
    assert len(epochs) == 0
    path = tmp_path / "empty-epo.fif"
    epochs.save(path, verbose="error")
    out = tmp_path / "covariance.npz"
    with pytest.raises(DataError) as info:
        stages.run_features(stage_outputs.cfg, "tiny", "1", "covariance", str(path), str(out))
    msg = str(info.value)
    assert str(path) in msg and "subject 1" in msg and "no epochs" in msg
    assert not out.exists()
