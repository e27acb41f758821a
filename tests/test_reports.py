"""Subject and dataset reports built from the stage outputs of one tiny synthetic subject."""

from __future__ import annotations

import html

import pandas as pd
import pytest

from brainmill.io import read_json, write_json
from brainmill.reports import build_dataset_report, build_subject_report, metrics_rows

SUBJECT_SECTIONS = [
    "Recording", "PSD before / after preprocessing", "Channel QC",
    "Every preprocessing choice", "Epochs", "Drop log", "Decoder metrics", "Dataset config",
    "Seed and versions",
]


def _only(folder, names):
    """The folder holds exactly ``names``: no temporary file was left behind."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


@pytest.fixture(scope="module")
def subject_report(stage_outputs, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("reports")
    out = out_dir / "sub-1.html"
    build_subject_report(
        stage_outputs.cfg, "tiny", "1",
        recording_json=stage_outputs.recording_json, epochs_path=stage_outputs.epochs,
        preprocessing_json=stage_outputs.preprocessing_json, qc_path=stage_outputs.qc,
        metrics_paths=list(stage_outputs.metrics.values()), out_html=out,
    )
    return out


def test_subject_report_sections(subject_report):
    text = subject_report.read_text()
    assert "brainmill — tiny — sub-1" in text
    for title in SUBJECT_SECTIONS:
        assert title in text, title
    _only(subject_report.parent, ["sub-1.html"])


def test_subject_report_shows_ground_truth(stage_outputs, subject_report):
    text = subject_report.read_text()
    meta = read_json(stage_outputs.recording_json)["metadata"]
    assert meta["generator"] == "brainmill.datasets.synthetic"
    assert "Generative model (ground truth of the synthetic data)" in text
    assert html.escape(meta["description"]) in text
    # the rest of synthetic.ground_truth() (the whole metadata dict) is this subject's truth
    assert "This subject's ground truth" in text
    assert html.escape('"effect_size": 0.7') in text
    assert html.escape('"generator": "brainmill.datasets.synthetic"') in text


def test_subject_report_shows_accuracy(stage_outputs, subject_report):
    text = subject_report.read_text()
    for path in stage_outputs.metrics.values():
        metrics = read_json(path)
        for res in metrics["protocols"].values():
            assert f"{res['summary']['accuracy']['mean']:.3f}" in text


def test_dataset_report(stage_outputs, tmp_path):
    out_html = tmp_path / "reports" / "index.html"
    out_scores = tmp_path / "results" / "scores.csv"
    scores = build_dataset_report(stage_outputs.cfg, "tiny",
                                  list(stage_outputs.metrics.values()), out_html, out_scores)
    _only(out_html.parent, ["index.html"])
    _only(out_scores.parent, ["scores.csv"])
    assert "Transductive pretraining" not in out_html.read_text()  # classical decoders only
    csv = pd.read_csv(out_scores, dtype={"subject": str}, keep_default_na=False)
    assert len(csv) == len(scores) == 1 * 2 * 2  # subject × decoder × protocol
    assert {"accuracy_mean", "chance_level", "chance_threshold_p05"} <= set(csv.columns)
    combos = set(zip(csv["subject"], csv["decoder"], csv["protocol"], strict=True))
    assert combos == {("1", d, p) for d in ("ts_lr", "csp_lda")
                      for p in ("within_session", "cross_session")}
    for _, row in csv.iterrows():
        metrics = read_json(stage_outputs.metrics[row["decoder"]])
        res = metrics["protocols"][row["protocol"]]
        assert float(row["accuracy_mean"]) == pytest.approx(res["summary"]["accuracy"]["mean"])
        assert float(row["chance_level"]) == pytest.approx(res["chance_level"])
        assert float(row["chance_threshold_p05"]) == pytest.approx(res["chance_threshold_p05"])
    text = out_html.read_text()
    for title in ("Dataset", "Per-subject accuracy: within_session",
                  "Per-subject accuracy: cross_session", "All scores", "Seed and versions"):
        assert title in text, title


def test_dataset_report_with_a_skipped_protocol(stage_outputs, tmp_path):
    skipped = read_json(stage_outputs.metrics["ts_lr"])
    skipped["subject"] = "2"
    skipped["protocols"]["cross_session"] = {"skipped": "only one session left"}
    write_json(tmp_path / "m2.json", skipped)
    scores = build_dataset_report(
        stage_outputs.cfg, "tiny", [*stage_outputs.metrics.values(), tmp_path / "m2.json"],
        tmp_path / "index.html", tmp_path / "scores.csv")
    assert len(scores) == 6
    row = scores[(scores["subject"] == "2") & (scores["protocol"] == "cross_session")]
    assert row["skipped"].tolist() == ["only one session left"]
    _only(tmp_path, ["m2.json", "index.html", "scores.csv"])


def test_metrics_rows_keeps_skipped_reason():
    metrics = {
        "dataset": "tiny", "subject": 3, "decoder": "ts_lr", "n_epochs": 20,
        "protocols": {
            "within_session": {
                "summary": {"accuracy": {"mean": 0.8, "sd": 0.1},
                            "kappa": {"mean": 0.6, "sd": 0.2}},
                "folds": [{}, {}, {}], "chance_level": 0.5, "chance_threshold_p05": 0.7,
            },
            "cross_session": {"skipped": "a single session"},
        },
    }
    rows = {r["protocol"]: r for r in metrics_rows(metrics)}
    assert rows["cross_session"]["skipped"] == "a single session"
    assert rows["cross_session"]["subject"] == "3"
    assert "accuracy_mean" not in rows["cross_session"]
    within = rows["within_session"]
    assert within["skipped"] == "" and within["accuracy_mean"] == 0.8
    assert within["roc_auc_mean"] is None and within["n_folds"] == 3
    assert within["chance_level"] == 0.5 and within["chance_threshold_p05"] == 0.7


def test_the_pretraining_caption_names_only_decoders_whose_model_saw_the_subject(stage_outputs):
    from brainmill.evaluation import pretraining_record
    from brainmill.reports import pretraining_caption

    classical = read_json(stage_outputs.metrics["ts_lr"])
    seen, unseen = dict(classical), dict(classical)
    seen["decoder"], unseen["decoder"] = "token_transformer", "diffusion_lft"
    seen["tokenizer"] = pretraining_record("tokenizer", "m.pt", ["1", "2"], "1")
    unseen["backbone"] = pretraining_record("diffusion backbone", "b.pt", ["2"], "1")
    assert seen["tokenizer"]["saw_this_subject"] and not unseen["backbone"]["saw_this_subject"]
    scores = pd.DataFrame([row for m in (classical, seen, unseen) for row in metrics_rows(m)])
    assert set(scores["transductive_pretraining"]) == {"", "tokenizer"}
    caption = pretraining_caption(scores)
    assert caption.startswith("Transductive pretraining: token_transformer (its tokenizer) was")
    assert "diffusion_lft" not in caption and "ts_lr" not in caption
    assert pretraining_caption(scores[scores["decoder"] != "token_transformer"]) == ""


def test_the_pretraining_caption_reads_older_records_and_a_csv_round_trip(stage_outputs, tmp_path):
    from brainmill.reports import pretraining_caption

    older = read_json(stage_outputs.metrics["ts_lr"])
    older["decoder"] = "diffusion_lft"  # written before records named their model
    older["backbone"] = {"path": "b.pt", "subjects": ["1"], "labels_used": False,
                         "saw_this_subject": True}
    scores = pd.DataFrame([*metrics_rows(older),
                           *metrics_rows(read_json(stage_outputs.metrics["ts_lr"]))])
    scores.to_csv(tmp_path / "scores.csv", index=False)
    again = pd.read_csv(tmp_path / "scores.csv", dtype={"subject": str})
    for table in (scores, again):  # the blanks of ts_lr's rows read back as NaN
        assert pretraining_caption(table).startswith(
            "Transductive pretraining: diffusion_lft (its diffusion backbone) was")


def test_the_partial_report_names_transductive_decoders_too(stage_outputs, tmp_path):
    import mne

    from brainmill.evaluation import pretraining_record
    from brainmill.reports_partial import _add_eeg_scores, _metrics_path

    cfg = stage_outputs.cfg.model_copy(update={"results_dir": str(tmp_path / "results")})
    for decoder, path in stage_outputs.metrics.items():
        metrics = read_json(path)
        if decoder == "ts_lr":  # as if it read a tokenizer that saw this subject
            metrics["tokenizer"] = pretraining_record("tokenizer", "m.pt", ["1"], "1")
        write_json(_metrics_path(cfg, "tiny", "1", decoder), metrics)
    report = mne.Report(title="partial", verbose="error")
    _add_eeg_scores(report, cfg, "tiny", cfg.datasets["tiny"], ["1"])
    report.save(tmp_path / "index.html", open_browser=False, verbose="error")
    text = (tmp_path / "index.html").read_text()
    assert "Transductive pretraining: ts_lr (its tokenizer) was trained once" in text
    assert "csp_lda (its" not in text
