"""Per-subject and per-dataset HTML reports built with :class:`mne.Report`.

Reports only read what earlier stages wrote (``recording.json``, ``preprocessing.json``,
``qc.npz``, epochs, ``metrics.json``); they never recompute a result.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mne  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from .config import Config  # noqa: E402
from .io import atomic_path, read_json  # noqa: E402
from .reports_acm import (  # noqa: E402
    comparison_table,
    fold_choices,
    heatmap_figure,
    is_acm,
    projection_figure,
)
from .versions import library_versions  # noqa: E402

#: decoders trained by brainmill.training whose per-fold curves the subject report shows
TORCH_DECODERS = ("token_transformer", "diffusion_lft")

METRICS = ["accuracy", "balanced_accuracy", "kappa", "roc_auc"]


def _table(df: pd.DataFrame, caption: str | None = None) -> str:
    cap = f"<p><b>{html.escape(caption)}</b></p>" if caption else ""
    return cap + df.to_html(index=False, border=0, classes="table table-sm", na_rep="–",
                            float_format=lambda x: f"{x:.3f}")


def _save(report: mne.Report, out_html: str | Path) -> None:
    with atomic_path(out_html, suffix=".html") as tmp:
        report.save(tmp, open_browser=False, overwrite=True, verbose="error")


# ------------------------------------------------------------------------ subject report


def _psd_figure(qc: dict[str, np.ndarray]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
    freqs = qc["freqs"]
    for key, color, label in [("psd_before", "0.5", "before"), ("psd_after", "C0", "after")]:
        db = 10 * np.log10(np.maximum(qc[key], 1e-30) * 1e12)  # µV²/Hz in dB
        n = min(len(freqs), db.shape[1])
        ax.plot(freqs[:n], np.median(db[:, :n], axis=0), color=color, label=f"{label} (median)")
        ax.fill_between(freqs[:n], np.percentile(db[:, :n], 10, axis=0),
                        np.percentile(db[:, :n], 90, axis=0), color=color, alpha=0.2)
    ax.set(xlabel="Frequency (Hz)", ylabel="PSD (dB re 1 µV²/Hz)",
           title="Power spectral density across channels (band: 10th–90th percentile)")
    ax.legend()
    return fig


def _channel_qc_figure(qc: dict[str, np.ndarray]) -> plt.Figure:
    names = [str(c) for c in qc["ch_names_before"]]
    z = qc["channel_z"]
    bad = qc["is_bad"].astype(bool)
    fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(names)), 3), layout="constrained")
    ax.bar(range(len(names)), np.nan_to_num(z), color=np.where(bad, "C3", "C0"))
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set(ylabel="robust z of log std", title="Channel QC (red: marked bad)")
    return fig


def _class_topomaps(epochs: mne.BaseEpochs, classes: list[str]) -> plt.Figure | None:
    """Log band power per class relative to the mean over classes (shows ERD/ERS)."""
    if epochs.get_montage() is None or epochs.metadata is None or "label" not in epochs.metadata:
        return None
    data = epochs.get_data(picks="eeg", copy=False)
    logpow = np.log(np.mean(data**2, axis=-1))  # (n_epochs, n_channels)
    labels = epochs.metadata["label"].to_numpy()
    present = [c for c in classes if np.any(labels == c)]
    if len(present) < 2:
        return None
    grand = logpow.mean(axis=0)
    maps = [10 / np.log(10) * (logpow[labels == c].mean(axis=0) - grand) for c in present]
    vmax = max(np.abs(m).max() for m in maps) or 1.0
    fig, axes = plt.subplots(1, len(present), figsize=(2.6 * len(present), 2.8),
                             layout="constrained")
    info = mne.pick_info(epochs.info, mne.pick_types(epochs.info, eeg=True))
    for ax, c, m in zip(np.atleast_1d(axes), present, maps, strict=True):
        im, _ = mne.viz.plot_topomap(m, info, axes=ax, show=False, cmap="RdBu_r",
                                     vlim=(-vmax, vmax))
        ax.set_title(c)
    fig.colorbar(im, ax=axes, shrink=0.7, label="dB vs mean of classes")
    return fig


def _confusion_figure(cm: list[list[int]], classes: list[str], title: str) -> plt.Figure:
    cm = np.asarray(cm, dtype=float)
    frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(3.4, 3), layout="constrained")
    ax.imshow(frac, vmin=0, vmax=1, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                    color="white" if frac[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=30, fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    ax.title.set_fontsize(9)
    return fig


def metrics_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten one ``metrics.json`` into one row per protocol (skipped ones included)."""
    rows = []
    for protocol, res in metrics["protocols"].items():
        row: dict[str, Any] = {
            "dataset": metrics.get("dataset"),
            "subject": str(metrics.get("subject")),
            "decoder": metrics["decoder"],
            "protocol": protocol,
            "n_epochs": metrics.get("n_epochs"),
            # the pretrained model whose training saw this subject's signals, if any
            "transductive_pretraining": _transductive_model(metrics),
        }
        if "summary" not in res:
            row["skipped"] = res.get("skipped", "")
            rows.append(row)
            continue
        for m in METRICS:
            s = res["summary"].get(m)
            row[f"{m}_mean"] = None if s is None else s["mean"]
            row[f"{m}_sd"] = None if s is None else s["sd"]
        row["n_folds"] = len(res.get("folds", []))
        row["chance_level"] = res["chance_level"]
        row["chance_threshold_p05"] = res["chance_threshold_p05"]
        row["skipped"] = ""
        rows.append(row)
    return rows


def _recording_html(rec: dict[str, Any], ds_cfg: dict[str, Any]) -> str:
    runs = pd.DataFrame(rec["runs"])
    parts = [
        f"<p>Source <code>{html.escape(ds_cfg['source']['kind'])}</code>, "
        f"{rec['n_channels']} channels at {rec['sfreq']:g} Hz, "
        f"{rec['duration_s'] / 60:.1f} min in {len(runs)} run(s) over "
        f"{runs['session'].nunique()} session(s). Events: "
        f"{html.escape(json.dumps(rec['event_id']))}.</p>",
        _table(runs, "Runs (times on the concatenated recording, s)"),
    ]
    meta = rec.get("metadata", {})
    description = meta.get("description")
    # synthetic.ground_truth() is the whole metadata (tagged by "generator"), not a sub-key
    truth = meta.get("truth")
    if truth is None and meta.get("generator"):
        truth = {k: v for k, v in meta.items() if k not in ("description", "dataset")}
    if description:
        parts.append("<p><b>Generative model (ground truth of the synthetic data)</b></p>"
                     f"<pre style='white-space:pre-wrap'>{html.escape(description)}</pre>")
    if truth:
        parts.append("<p><b>This subject's ground truth</b></p>"
                     f"<pre>{html.escape(json.dumps(truth, indent=2, default=str))}</pre>")
    return "\n".join(parts)


def build_subject_report(
    cfg: Config,
    ds: str,
    subject: str,
    *,
    recording_json: str | Path,
    epochs_path: str | Path,
    preprocessing_json: str | Path,
    qc_path: str | Path,
    metrics_paths: list[str | Path],
    out_html: str | Path,
    tokens_path: str | Path | None = None,
) -> mne.Report:
    """Build ``reports/{ds}/sub-{subject}.html`` from the stage outputs of one subject.

    ``tokens_path`` (the subject's ``features/tokens.npz``) adds the token sections.
    """
    ds_cfg = cfg.datasets[ds]
    rec = read_json(recording_json)
    prep = read_json(preprocessing_json)
    with np.load(qc_path, allow_pickle=False) as f:
        qc = {k: f[k] for k in f.files}
    epochs = mne.read_epochs(epochs_path, preload=True, verbose="error")
    report = mne.Report(title=f"brainmill — {ds} — sub-{subject}", verbose="error")

    report.add_html(_recording_html(rec, ds_cfg.model_dump(mode="json")),
                    title="Recording", section="Data")

    fig = _psd_figure(qc)
    report.add_figure(fig, title="PSD before / after preprocessing", section="Preprocessing")
    plt.close(fig)
    fig = _channel_qc_figure(qc)
    bads = prep.get("bad_channels", {})
    report.add_figure(fig, title="Channel QC", section="Preprocessing",
                      caption=f"flat: {bads.get('flat', [])}; NaN: {bads.get('nan', [])}; "
                              f"noisy: {bads.get('noisy', [])}; action: {bads.get('action')}")
    plt.close(fig)
    steps = pd.DataFrame([{"step": s.get("step"),
                           "parameters": json.dumps({k: v for k, v in s.items() if k != "step"},
                                                    default=str)}
                          for s in prep.get("steps", [])])
    report.add_html(_table(steps), title="Every preprocessing choice", section="Preprocessing")
    notes = prep.get("warnings", [])
    report.add_html("<ul>" + "".join(f"<li>{html.escape(str(n))}</li>" for n in notes) + "</ul>"
                    if notes else "<p>None.</p>",
                    title="Preprocessing notes (repairs and ignored inputs)",
                    section="Preprocessing")

    ep = prep.get("epochs", {})
    per_class = pd.DataFrame([{"class": c, **v} for c, v in ep.get("per_class", {}).items()])
    report.add_html(
        f"<p>{ep.get('n_kept')} of {ep.get('n_events')} epochs kept; drop reasons "
        f"{html.escape(json.dumps(ep.get('drop_reasons', {})))}; kept per session "
        f"{html.escape(json.dumps(ep.get('per_session', {})))}.</p>" + _table(per_class),
        title="Epochs", section="Epochs")
    fig = epochs.plot_drop_log(show=False, subject=f"sub-{subject}")
    report.add_figure(fig, title="Drop log", section="Epochs")
    plt.close(fig)
    fig = _class_topomaps(epochs, ds_cfg.class_names)
    if fig is not None:
        report.add_figure(fig, title="Band power per class", section="Epochs",
                          caption="Log power of the preprocessed epochs per class minus the mean "
                                  "over classes: desynchronisation shows as blue.")
        plt.close(fig)

    rows = []
    for path in metrics_paths:
        metrics = read_json(path)
        rows += metrics_rows(metrics)
        for protocol, res in metrics["protocols"].items():
            if "confusion_matrix" in res:
                fig = _confusion_figure(res["confusion_matrix"], metrics["classes"],
                                        f"{metrics['decoder']} — {protocol}")
                report.add_figure(fig, title=f"{metrics['decoder']}: {protocol}",
                                  section="Decoders", caption=res.get("description", ""))
                plt.close(fig)
        if is_acm(metrics):
            _add_acm_sections(report, metrics)
        if metrics["decoder"] in TORCH_DECODERS:
            _add_training_curves(report, metrics)
    if tokens_path is not None:
        _add_token_sections(report, epochs, tokens_path)
    table = pd.DataFrame(rows)
    report.add_html(_table(table), title="Decoder metrics (mean ± sd over folds)",
                    section="Decoders")

    report.add_code(yaml.safe_dump(ds_cfg.model_dump(mode="json"), sort_keys=False),
                    title="Dataset config", language="yaml", section="Provenance")
    report.add_code(json.dumps({"seed": cfg.seed, "versions": library_versions(),
                                "preprocessing_versions": prep.get("versions")}, indent=2),
                    title="Seed and versions", language="json", section="Provenance")
    _save(report, out_html)
    return report


def _add_acm_sections(report: mne.Report, metrics: dict[str, Any]) -> None:
    """Inner-CV heat-maps, per-fold (order, lag) and the tangent-space picture of an ACM."""
    name = metrics["decoder"]
    for protocol in metrics["protocols"]:
        fig = heatmap_figure(metrics, protocol)
        if fig is not None:
            report.add_figure(
                fig, title=f"{name}: order × lag ({protocol})", section="ACM",
                caption="Mean over outer folds of each (order, lag)'s best inner-CV score over "
                        "C and kernel, computed inside each training fold only; the numbers "
                        "count the folds that chose that point.")
            plt.close(fig)
    choices = fold_choices(metrics)
    if not choices.empty:
        report.add_html(_table(choices), title=f"{name}: choice per outer fold", section="ACM")
    fig = projection_figure(metrics)
    if fig is not None:
        report.add_figure(
            fig, title=f"{name}: tangent vectors by class", section="ACM",
            caption="PCA of the tangent vectors of all epochs at the most often chosen (order, "
                    "lag), tangent space at the mean of all the subject's epochs: a "
                    "description of the data, not a cross-validated result.")
        plt.close(fig)


def _add_token_sections(report: mne.Report, epochs: mne.BaseEpochs,
                        tokens_path: str | Path) -> None:
    """Tokens over spectrograms of example epochs and the class-discriminative tokens."""
    from .io import FeatureSet
    from .reports_tokens import discriminative_table, token_spectrogram_figure

    tokens = FeatureSet.load(tokens_path)
    fig = token_spectrogram_figure(epochs, tokens)
    report.add_figure(fig, title="Tokens over the spectrogram", section="Tokens",
                      caption="One example epoch per class; the number on each frame is the "
                              "code the dataset's tokenizer gave it.")
    plt.close(fig)
    table = discriminative_table(tokens)
    if not table.empty:
        report.add_html(
            _table(table, "z of the smoothed log-odds of a token's share in one class against "
                          "the others, over all of this subject's epochs and channels: a "
                          "description of the data, not a cross-validated result."),
            title="Most class-discriminative tokens", section="Tokens")


def _add_training_curves(report: mne.Report, metrics: dict[str, Any]) -> None:
    """Per-fold training curves of a torch decoder per protocol."""
    from .reports_tokens import fold_curves_figure

    for protocol in metrics["protocols"]:
        fig = fold_curves_figure(metrics, protocol)
        if fig is not None:
            report.add_figure(
                fig, title=f"{metrics['decoder']}: training curves ({protocol})",
                section="Training",
                caption="Validation rows come from each training fold only; the epoch with the "
                        "best validation score is kept.")
            plt.close(fig)


# ------------------------------------------------------------------------ dataset report


def score_table(metrics_paths: list[str | Path]) -> pd.DataFrame:
    """One row per subject × decoder × protocol from a list of ``metrics.json`` files."""
    rows = []
    for path in metrics_paths:
        rows += metrics_rows(read_json(path))
    return pd.DataFrame(rows)


def _summary_table(scores: pd.DataFrame) -> pd.DataFrame:
    ok = scores[scores["skipped"] == ""]
    if ok.empty:
        return pd.DataFrame()
    agg = ok.groupby(["decoder", "protocol"]).agg(
        n_subjects=("subject", "nunique"),
        accuracy_mean=("accuracy_mean", "mean"),
        accuracy_sd=("accuracy_mean", "std"),
        kappa_mean=("kappa_mean", "mean"),
        chance_level=("chance_level", "mean"),
    )
    return agg.reset_index()


def _scores_figure(scores: pd.DataFrame, protocol: str) -> plt.Figure:
    sub = scores[(scores["protocol"] == protocol) & (scores["skipped"] == "")]
    subjects = sorted(sub["subject"].unique(), key=lambda s: (len(s), s))
    decoders = sorted(sub["decoder"].unique())
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(subjects) + 2), 3.5), layout="constrained")
    width = 0.8 / max(len(decoders), 1)
    x = np.arange(len(subjects))
    for k, dec in enumerate(decoders):
        d = sub[sub["decoder"] == dec].set_index("subject").reindex(subjects)
        ax.bar(x + k * width, d["accuracy_mean"], width, yerr=d["accuracy_sd"], label=dec,
               capsize=2)
    chance = sub.groupby("subject")["chance_level"].mean().reindex(subjects)
    thr = sub.groupby("subject")["chance_threshold_p05"].mean().reindex(subjects)
    ax.step(np.r_[x, x[-1] + 1] - 0.1, np.r_[chance, chance.iloc[-1]], where="post", color="k",
            ls="--", label="chance (majority class)")
    ax.step(np.r_[x, x[-1] + 1] - 0.1, np.r_[thr, thr.iloc[-1]], where="post", color="C3",
            ls=":", label="p<0.05 threshold")
    ax.set_xticks(x + 0.4 - width / 2, [f"sub-{s}" for s in subjects])
    ax.set(ylim=(0, 1), ylabel="accuracy (mean ± sd over folds)", title=protocol)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def _transductive_model(metrics: dict[str, Any]) -> str:
    """The pretrained model (:func:`~brainmill.evaluation.pretraining_record`) of a decoder
    whose training saw the decoded subject's signals; "" if none did."""
    for key, model in (("tokenizer", "tokenizer"), ("backbone", "diffusion backbone")):
        record = metrics.get(key, {})
        if record.get("saw_this_subject"):
            return str(record.get("model", model))  # records before "model" was written
    return ""


def pretraining_caption(scores: pd.DataFrame) -> str:
    """Names the decoders of a score table whose pretrained model saw the decoded subjects."""
    if scores.empty or "transductive_pretraining" not in scores:
        return ""
    model = scores["transductive_pretraining"].fillna("")  # "" reads back from CSV as NaN
    seen = sorted(set(zip(scores["decoder"][model != ""], model[model != ""], strict=True)))
    if not seen:
        return ""
    names = "; ".join(f"{d} (its {m})" for d, m in seen)
    return (f"Transductive pretraining: {names} was trained once for the dataset, without "
            "labels, on signals that include the test trials of the subjects it decodes; the "
            "other decoders fit everything inside each training fold.")


def build_dataset_report(
    cfg: Config,
    ds: str,
    metrics_paths: list[str | Path],
    out_html: str | Path,
    out_scores: str | Path,
    tokenizer_info: str | Path | None = None,
    diffusion_info: str | Path | None = None,
    diffusion_samples: str | Path | None = None,
) -> pd.DataFrame:
    """Build ``reports/{ds}/index.html`` and ``results/{ds}/scores.csv``.

    ``tokenizer_info`` (the tokenizer's ``training.json``) adds the tokenizer section;
    ``diffusion_info`` and ``diffusion_samples`` (the backbone's ``training.json`` and
    ``samples.npz``, with ``samples.json`` beside it) add the diffusion section.
    """
    scores = score_table(metrics_paths)
    with atomic_path(out_scores, suffix=".csv") as tmp:
        scores.to_csv(tmp, index=False)
    ds_cfg = cfg.datasets[ds]
    report = mne.Report(title=f"brainmill — {ds} — all subjects", verbose="error")
    report.add_html(
        f"<p>Source <code>{html.escape(ds_cfg.source.kind)}</code>; subjects "
        f"{', '.join(ds_cfg.subjects)}; classes {', '.join(ds_cfg.class_names)}; seed "
        f"{cfg.seed}. Per-subject reports: "
        + ", ".join(f"<a href='sub-{s}.html'>sub-{s}</a>" for s in ds_cfg.subjects) + ".</p>",
        title="Dataset", section="Summary")
    report.add_html(_table(_summary_table(scores), pretraining_caption(scores)),
                    title="Decoders: mean ± sd of subject accuracies", section="Summary")
    for protocol in ds_cfg.evaluation.protocols:
        if (scores["protocol"] == protocol).any() and (scores["skipped"] == "").any():
            fig = _scores_figure(scores, protocol)
            report.add_figure(fig, title=f"Per-subject accuracy: {protocol}", section="Scores")
            plt.close(fig)
    comparison = comparison_table(scores) if "decoder" in scores else pd.DataFrame()
    if not comparison.empty:
        report.add_html(
            _table(comparison, "Paired over subjects: mean and sd of (ACM − other) of the "
                               "per-subject mean fold scores; acm_better counts subjects where "
                               "ACM scored higher."),
            title="ACM versus the classical decoders", section="Summary")
    report.add_html(_table(scores), title="All scores", section="Scores")
    if tokenizer_info is not None:
        _add_tokenizer_sections(report, read_json(tokenizer_info))
    if diffusion_info is not None:
        _add_diffusion_sections(report, read_json(diffusion_info), diffusion_samples)
    report.add_code(json.dumps({"seed": cfg.seed, "versions": library_versions()}, indent=2),
                    title="Seed and versions", language="json", section="Provenance")
    _save(report, out_html)
    return scores


def _add_diffusion_sections(report: mne.Report, info: dict[str, Any],
                            samples_path: str | Path | None) -> None:
    """Backbone training curves, real vs generated examples and spectra per channel group."""
    from .reports_diffusion import backbone_html, examples_figure, psd_figure
    from .reports_tokens import curves_figure

    summary = None
    if samples_path is not None and Path(samples_path).with_suffix(".json").exists():
        summary = read_json(Path(samples_path).with_suffix(".json"))
    report.add_html(backbone_html(info, summary), title="Diffusion backbone",
                    section="Diffusion")
    fig = curves_figure(info.get("training", {}).get("history", []),
                        ["train_loss", "val_loss"], "diffusion training (velocity MSE)")
    if fig is not None:
        report.add_figure(fig, title="Diffusion training curve", section="Diffusion")
        plt.close(fig)
    if samples_path is None:
        return
    with np.load(samples_path, allow_pickle=False) as samples:
        for make, title, caption in (
                (examples_figure, "Real vs generated windows",
                 "Real windows of the training subjects and windows generated for the same "
                 "channel (DDIM from noise)."),
                (psd_figure, "Power spectra: real vs generated",
                 "Mean Welch PSD per channel group.")):
            fig = make(samples)
            report.add_figure(fig, title=title, section="Diffusion", caption=caption)
            plt.close(fig)


def _add_tokenizer_sections(report: mne.Report, info: dict[str, Any]) -> None:
    """Codebook usage, perplexity and training curves of the dataset's tokenizer."""
    from .reports_tokens import curves_figure, tokenizer_html, usage_figure

    report.add_html(tokenizer_html(info), title="Tokenizer", section="Tokenizer")
    fig = usage_figure(info)
    report.add_figure(fig, title="Codebook usage", section="Tokenizer",
                      caption="Codes ranked by how often they tokenize the training windows.")
    plt.close(fig)
    history = info.get("training", {}).get("history", [])
    fig = curves_figure(history, ["train_loss", "recon", "vq", "val_loss"],
                        "tokenizer training")
    if fig is not None:
        report.add_figure(fig, title="Tokenizer training curves", section="Tokenizer")
        plt.close(fig)
    fig = curves_figure(history, ["perplexity"], "codebook perplexity per batch")
    if fig is not None:
        report.add_figure(fig, title="Codebook perplexity", section="Tokenizer")
        plt.close(fig)
