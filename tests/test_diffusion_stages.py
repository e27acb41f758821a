"""The diffusion branch's stages on one tiny synthetic subject: errors and what they record."""

from __future__ import annotations

import numpy as np
import pytest

from brainmill import diffusion_stages
from brainmill.config import validate_config
from brainmill.errors import DataError
from brainmill.io import FeatureSet, read_json
from brainmill.reports import build_dataset_report

DIFFUSION = {"model": {"dim": 8, "d_state": 8, "n_layers": 2, "cond_dim": 16, "sfreq": 50},
             "training": {"max_epochs": 1, "batch_size": 64}, "n_generated": 3,
             "sampling_steps": 4}
DECODER = {"model": {"dim": 8, "n_heads": 2, "n_fusion_tokens": 2, "depth": 1},
           "training": {"max_epochs": 2, "batch_size": 16, "val_fraction": 0.2},
           "protocols": ["cross_session"]}


def diffusion_config(base, features=None, **diffusion):
    data = base.model_dump(mode="json")
    ds = data["datasets"]["tiny"]
    ds["diffusion"] = {**DIFFUSION, **diffusion}
    ds["decoders"] = {"ts_lr": None, "csp_lda": None, "diffusion_lft": DECODER}
    if features:
        ds["features"]["diffusion"] = features
    return validate_config(data)


@pytest.fixture(scope="module")
def backbone(stage_outputs, tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusion")
    cfg = diffusion_config(stage_outputs.cfg)
    model, info = root / "model.pt", root / "training.json"
    diffusion_stages.run_pretrain_diffusion(cfg, "tiny", ["1"], [str(stage_outputs.epochs)],
                                            str(model), str(info), str(root / "run"))
    return cfg, root, model, info


def test_pretraining_records_what_it_saw(backbone, stage_outputs):
    cfg, _, _, info_path = backbone
    info = read_json(info_path)
    assert info["labels_used"] is False and info["held_out_subjects"] == []
    n_epochs, n_channels = info["per_subject"]["1"]["epochs"], info["per_subject"]["1"]["channels"]
    assert info["n_windows"] == n_epochs * n_channels
    assert info["channel_names"][:2] == read_json(stage_outputs.recording_json)["ch_names"][:2]


def test_samples_and_dataset_report(backbone, stage_outputs, tmp_path):
    cfg, root, model, info = backbone
    out = root / "samples.npz"
    summary = diffusion_stages.run_sample_diffusion(cfg, "tiny", ["1"],
                                                    [str(stage_outputs.epochs)], str(model),
                                                    str(out))
    assert summary["sampling_steps"] == 4 and summary["lsd_db"]["all"] >= 0
    assert read_json(out.with_suffix(".json")) == summary
    html = tmp_path / "index.html"
    build_dataset_report(cfg, "tiny", [stage_outputs.metrics["ts_lr"]], html,
                         tmp_path / "scores.csv", diffusion_info=info, diffusion_samples=out)
    text = html.read_text()
    assert "Diffusion backbone" in text and "Power spectra: real vs generated" in text


def test_features_then_decoder(backbone, stage_outputs, tmp_path):
    cfg, _, model, info = backbone
    feats = diffusion_stages.run_diffusion_features(cfg, "tiny", "1", str(stage_outputs.epochs),
                                                    str(model), str(tmp_path / "d.npz"))
    assert feats.X.shape[2:] == (2, 8, 2) and FeatureSet.load(tmp_path / "d.npz").meta["t"] == 1
    metrics = diffusion_stages.run_decode_diffusion(
        cfg, "tiny", "1", str(tmp_path / "d.npz"), str(info), str(tmp_path / "m.json"),
        str(tmp_path / "p.csv"))
    assert metrics["decoder"] == "diffusion_lft" and metrics["backbone"]["subjects"] == ["1"]
    assert metrics["backbone"]["saw_this_subject"] is True
    description = metrics["protocols"]["cross_session"]["description"]
    assert "diffusion backbone" in description and "transductive pretraining" in description
    assert "ever saw the test trials" not in description
    acc = metrics["protocols"]["cross_session"]["summary"]["accuracy"]["mean"]
    assert 0 <= acc <= 1 and np.isfinite(acc)


def test_epochs_shorter_than_a_pool_name_the_subject_and_the_fix(backbone, stage_outputs,
                                                                 tmp_path):
    _, _, model, _ = backbone
    cfg = diffusion_config(stage_outputs.cfg, features={"pool_s": 5.0})
    with pytest.raises(DataError, match="shorter than one pooling window") as err:
        diffusion_stages.run_diffusion_features(cfg, "tiny", "1", str(stage_outputs.epochs),
                                                str(model), str(tmp_path / "d.npz"))
    assert err.value.subject == "1" and "pool_s" in str(err.value)
    assert not (tmp_path / "d.npz").exists()


def test_a_dataset_without_backbone_is_a_clear_error(stage_outputs, tmp_path):
    with pytest.raises(DataError, match="no diffusion section"):
        diffusion_stages.run_pretrain_diffusion(stage_outputs.cfg, "tiny", ["1"],
                                                [str(stage_outputs.epochs)],
                                                str(tmp_path / "m.pt"), str(tmp_path / "i.json"),
                                                str(tmp_path / "run"))


def test_a_data_change_retrains_the_backbone_from_scratch(stage_outputs, tmp_path, caplog):
    """Same shapes, other data (say, another band-pass): the finished checkpoint of the old
    data must not come back as the new model."""
    import mne

    cfg = diffusion_config(stage_outputs.cfg)
    args = (str(tmp_path / "m.pt"), str(tmp_path / "i.json"), str(tmp_path / "run"))
    diffusion_stages.run_pretrain_diffusion(cfg, "tiny", ["1"], [str(stage_outputs.epochs)],
                                            *args)
    epochs = mne.read_epochs(stage_outputs.epochs, preload=True, verbose="error")
    changed = tmp_path / "changed-epo.fif"
    epochs.apply_function(lambda x: 2.0 * x).save(changed, verbose="error")
    with caplog.at_level("INFO", logger="brainmill"):
        diffusion_stages.run_pretrain_diffusion(cfg, "tiny", ["1"], [str(changed)], *args)
    assert "starting afresh" in caplog.text
    assert "finished run" not in caplog.text


def test_backbone_validation_holds_whole_epochs_of_every_subject(stage_outputs, tmp_path,
                                                                 carved_splits, whole_groups):
    import mne

    calls = carved_splits
    cfg = diffusion_config(stage_outputs.cfg,
                           training={**DIFFUSION["training"], "val_fraction": 0.3})
    epochs = mne.read_epochs(stage_outputs.epochs, verbose="error")
    n, c = len(epochs), len(epochs.ch_names)
    diffusion_stages.run_pretrain_diffusion(cfg, "tiny", ["1", "2"],
                                            [str(stage_outputs.epochs)] * 2,
                                            str(tmp_path / "m.pt"), str(tmp_path / "i.json"),
                                            str(tmp_path / "run"))
    (groups, val), = calls
    np.testing.assert_array_equal(groups, np.repeat(np.arange(2 * n), c))
    assert whole_groups(groups, val) and len(val) > 0
