"""The token branch's stages on one tiny synthetic subject: tokenizer, tokens, decoder, reports."""

from __future__ import annotations

import numpy as np
import pytest

from brainmill import token_stages
from brainmill.config import validate_config
from brainmill.errors import DataError
from brainmill.io import FeatureSet, read_json
from brainmill.models import load_model
from brainmill.reports import build_dataset_report, build_subject_report

TOKENIZER = {
    "model": {"dim": 16, "n_heads": 2, "freq_depth": 1, "time_depth": 1, "decoder_depth": 1,
              "n_codes": 32, "norm_groups": 4, "dead_code_threshold": 0.5},
    "training": {"max_epochs": 2, "batch_size": 64, "val_fraction": 0.1, "patience": 2},
}
DECODER = {"model": {"n_heads": 2, "depth": 1, "dropout": 0.0},
           "training": {"max_epochs": 3, "batch_size": 16, "val_fraction": 0.2, "patience": 3},
           "protocols": ["cross_session"]}


def token_config(base, **tokenizer):
    data = base.model_dump(mode="json")
    ds = data["datasets"]["tiny"]
    ds["tokenizer"] = {**TOKENIZER, **tokenizer}
    ds["decoders"] = {"ts_lr": None, "csp_lda": None, "token_transformer": DECODER}
    return validate_config(data)


@pytest.fixture(scope="module")
def token_outputs(stage_outputs, tmp_path_factory):
    root = tmp_path_factory.mktemp("tokens")
    cfg = token_config(stage_outputs.cfg)
    paths = {"model": root / "models" / "tokenizer" / "model.pt",
             "info": root / "models" / "tokenizer" / "training.json",
             "run": root / "models" / "tokenizer" / "run",
             "tokens": root / "sub-1" / "features" / "tokens.npz",
             "metrics": root / "sub-1" / "decoders" / "token_transformer" / "metrics.json",
             "predictions": root / "sub-1" / "decoders" / "token_transformer" / "pred.csv"}
    info = token_stages.run_train_tokenizer(
        cfg, "tiny", ["1"], [str(stage_outputs.epochs)], str(paths["model"]),
        str(paths["info"]), str(paths["run"]), threads=1)
    tokens = token_stages.run_tokenize(cfg, "tiny", "1", str(stage_outputs.epochs),
                                       str(paths["model"]), str(paths["tokens"]))
    metrics = token_stages.run_decode_transformer(
        cfg, "tiny", "1", str(paths["tokens"]), str(paths["model"]), str(paths["metrics"]),
        str(paths["predictions"]))
    return cfg, paths, info, tokens, metrics


def test_tokenizer_stage_records_what_it_saw(token_outputs, stage_outputs):
    cfg, paths, info, _, _ = token_outputs
    import mne

    epochs = mne.read_epochs(stage_outputs.epochs, verbose="error")
    n_windows = len(epochs) * len(epochs.ch_names)
    assert info["n_windows"] == n_windows and info["labels_used"] is False
    assert info["transductive"] is True and info["subjects"] == ["1"]
    # 2-s epochs at 100 Hz are 400 samples at the tokenizer's 200 Hz
    assert info["n_times"] == round(len(epochs.times) * 2)
    usage = info["usage"]
    assert sum(usage["counts"]) == n_windows * (1 + (info["n_times"] - 200) // 100)
    assert 1 <= usage["n_used"] <= 32 and usage["perplexity"] <= usage["n_used"] + 1e-9
    assert read_json(paths["info"])["training"]["n_steps"] == info["training"]["n_steps"]
    assert (paths["run"] / "checkpoint.pt").exists()
    assert load_model(paths["model"]).config.n_codes == 32


def test_tokens_feature_file(token_outputs, stage_outputs):
    _, paths, info, tokens, _ = token_outputs
    stored = FeatureSet.load(paths["tokens"])
    np.testing.assert_array_equal(stored.X, tokens.X)
    assert stored.X.dtype == np.int64 and stored.X.ndim == 3
    assert stored.meta["n_codes"] == 32 and stored.meta["hop"] == 100
    covariance = FeatureSet.load(stage_outputs.features)
    np.testing.assert_array_equal(stored.y, covariance.y)
    np.testing.assert_array_equal(stored.session, covariance.session)
    # the stored usage counts are the tokens of the same windows
    counts = np.bincount(stored.X.ravel(), minlength=32)
    np.testing.assert_array_equal(counts, info["usage"]["counts"])


def test_decoder_metrics_follow_its_own_protocols(token_outputs):
    _, _, _, _, metrics = token_outputs
    assert list(metrics["protocols"]) == ["cross_session"]
    res = metrics["protocols"]["cross_session"]
    assert len(res["folds"]) == 2 and 0 <= res["summary"]["accuracy"]["mean"] <= 1
    fit = res["folds"][0]["fit_info"]["training"]
    assert fit["n_train"] + fit["n_val"] == res["folds"][0]["n_train"]
    assert metrics["tokenizer"]["labels_used"] is False
    assert metrics["tokenizer"]["saw_this_subject"] is True
    assert "torch" in metrics["versions"]
    # the tokenizer saw this subject's test trials (no labels): the description says so and
    # does not claim that nothing fitted saw them
    assert "transductive pretraining" in res["description"]
    assert "ever saw the test trials" not in res["description"]


def test_reports_show_the_token_sections(token_outputs, stage_outputs, tmp_path):
    cfg, paths, _, _, _ = token_outputs
    so = stage_outputs
    out = tmp_path / "sub-1.html"
    build_subject_report(cfg, "tiny", "1", recording_json=so.recording_json,
                         epochs_path=so.epochs, preprocessing_json=so.preprocessing_json,
                         qc_path=so.qc, metrics_paths=[paths["metrics"]], out_html=out,
                         tokens_path=paths["tokens"])
    page = out.read_text()
    for title in ("Tokens over the spectrogram", "Most class-discriminative tokens",
                  "token_transformer: training curves (cross_session)"):
        assert title in page
    index = tmp_path / "index.html"
    build_dataset_report(cfg, "tiny", [paths["metrics"]], index, tmp_path / "scores.csv",
                         tokenizer_info=paths["info"])
    page = index.read_text()
    assert "Codebook usage" in page and "never the labels" in page
    assert "Transductive pretraining: token_transformer (its tokenizer)" in page


def test_changed_parameters_discard_the_old_checkpoint(stage_outputs, tmp_path, caplog):
    base = token_config(stage_outputs.cfg)
    args = (["1"], [str(stage_outputs.epochs)], str(tmp_path / "m.pt"), str(tmp_path / "i.json"),
            str(tmp_path / "run"))
    first = token_stages.run_train_tokenizer(base, "tiny", *args)
    # same parameters: the finished checkpoint is resumed, not retrained
    with caplog.at_level("INFO"):
        again = token_stages.run_train_tokenizer(base, "tiny", *args)
    assert f"finished run ({first['training']['n_steps']} steps)" in caplog.text
    assert again["usage"] == first["usage"]
    changed = token_config(stage_outputs.cfg, max_windows=50)
    caplog.clear()
    with caplog.at_level("INFO", logger="brainmill"):
        info = token_stages.run_train_tokenizer(changed, "tiny", *args)
    assert "starting afresh" in caplog.text and info["n_windows"] == 50


def test_a_new_validation_grouping_retrains_instead_of_refusing_the_old_run(
        stage_outputs, tmp_path, caplog, monkeypatch):
    """Same windows, other groups (runs made before windows were grouped by epoch): the
    stamp must clear the run folder, or the trainer refuses its checkpoint (other val_index)."""
    base = token_config(stage_outputs.cfg)  # val_fraction 0.1
    args = (["1"], [str(stage_outputs.epochs)], str(tmp_path / "m.pt"), str(tmp_path / "i.json"),
            str(tmp_path / "run"))
    token_stages.run_train_tokenizer(base, "tiny", *args)
    monkeypatch.setattr(token_stages, "window_epochs",  # the old behaviour: a group per window
                        lambda n, c, first=0: first * c + np.arange(n * c))
    with caplog.at_level("INFO", logger="brainmill"):
        token_stages.run_train_tokenizer(base, "tiny", *args)
    assert "starting afresh" in caplog.text


def test_token_branch_needs_a_tokenizer_and_long_enough_epochs(stage_outputs, tmp_path):
    data = stage_outputs.cfg.model_dump(mode="json")
    data["datasets"]["tiny"]["decoders"]["token_transformer"] = DECODER
    with pytest.raises(Exception, match="needs a 'tokenizer' section"):
        validate_config(data)
    cfg = token_config(stage_outputs.cfg, model={**TOKENIZER["model"], "n_fft": 1000,
                                                 "hop": 100})
    with pytest.raises(DataError, match="shorter than one STFT window"):
        token_stages.run_train_tokenizer(cfg, "tiny", ["1"], [str(stage_outputs.epochs)],
                                         str(tmp_path / "m.pt"), str(tmp_path / "i.json"),
                                         str(tmp_path / "run"))


def test_tokenizer_validation_holds_whole_epochs_of_every_subject(stage_outputs, tmp_path,
                                                                  carved_splits, whole_groups):
    # the channels of one epoch are windows of one moment: split apart, early stopping would
    # validate on near copies of what it trains on
    import mne

    calls = carved_splits
    cfg = token_config(stage_outputs.cfg, training={**TOKENIZER["training"], "max_epochs": 1,
                                                    "val_fraction": 0.3})
    epochs = mne.read_epochs(stage_outputs.epochs, verbose="error")
    n, c = len(epochs), len(epochs.ch_names)
    token_stages.run_train_tokenizer(cfg, "tiny", ["1", "2"], [str(stage_outputs.epochs)] * 2,
                                     str(tmp_path / "m.pt"), str(tmp_path / "i.json"),
                                     str(tmp_path / "run"), threads=1)
    (groups, val), = calls
    np.testing.assert_array_equal(groups, np.repeat(np.arange(2 * n), c))  # sub-2 numbered on
    assert whole_groups(groups, val) and len(val) > 0
