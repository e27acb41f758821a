"""Per-subject and per-dataset HTML reports of the fMRI branch, built with :class:`mne.Report`.

Reports only read what the fMRI stages wrote (``roi_timeseries.npz``,
``cleaned_timeseries.npz``, ``qc.json``, ``features/connectivity.npz``, ``participants.csv``,
the VAE's ``summary.json`` and ``history.csv``, ``synthetic.npz``, ``decoding.json``); they never
recompute a result. The only arithmetic here is for display: z-scoring each ROI of a carpet plot
and blanking the diagonal of connectivity matrices.
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

from .datasets.fmri import ROITimeSeries  # noqa: E402
from .errors import DataError  # noqa: E402
from .io import read_json  # noqa: E402
from .reports import _confusion_figure, _save, _table  # noqa: E402
from .versions import library_versions  # noqa: E402

EDGE_THRESHOLD = "99%"  # share of the weakest edges plot_connectome hides
MAX_LABELLED_ROIS = 40  # above this, matrix ticks would be unreadable
FEATURE_SETS = {
    "connectivity": "connectivity (upper triangle)",
    "latents": "VAE latents",
    "latents_demographics": "VAE latents + demographics",
    "latents+demographics": "VAE latents + demographics",
    "demographics": "demographics alone",
}


def _plotting():
    # nilearn.plotting takes seconds to import: only the report jobs should pay for it
    from nilearn import plotting

    return plotting


# ------------------------------------------------------------------------ subject report


def _display_z(data: np.ndarray) -> np.ndarray:
    """Each column z-scored (constant columns left at 0), for display only."""
    sd = data.std(axis=0)
    return (data - data.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def carpet_figure(panels: list[tuple[str, np.ndarray]], tr: float) -> plt.Figure:
    """Carpet plots (ROI × time) of one or more series of the same subject.

    Parameters
    ----------
    panels : list of (str, ndarray of shape (n_timepoints, n_rois))
        Title and data of each panel; each ROI is z-scored over time for display.
    tr : float
        Repetition time in seconds (the time axis).
    """
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels)), squeeze=False,
                             layout="constrained")
    for ax, (title, data) in zip(axes[:, 0], panels, strict=True):
        n_t, n_rois = data.shape
        im = ax.imshow(_display_z(data).T, aspect="auto", cmap="gray", vmin=-2.5, vmax=2.5,
                       interpolation="nearest", extent=(0, n_t * tr, n_rois - 0.5, -0.5))
        ax.set(xlabel="time (s)", ylabel="ROI",
               title=f"{title}: {n_t} volumes × {n_rois} ROIs, TR {tr:g} s")
    fig.colorbar(im, ax=axes[:, 0], shrink=0.8, label="z per ROI")
    return fig


def _offdiag(matrix: np.ndarray) -> np.ndarray:
    m = np.array(matrix, dtype=float)
    if m.ndim == 2 and m.shape[0] == m.shape[1]:
        np.fill_diagonal(m, 0.0)
    return m


def _vmax(*matrices: np.ndarray) -> float:
    values = [np.abs(_offdiag(m)) for m in matrices]
    finite = [v[np.isfinite(v)] for v in values]
    finite = [v for v in finite if v.size]
    top = max((float(v.max()) for v in finite), default=0.0)
    return top if top > 0 else 1.0


def matrices_figure(panels: list[tuple[str, np.ndarray | None]], labels: list[str] | None = None,
                    cbar_label: str = "") -> plt.Figure:
    """Matrices side by side on one symmetric colour scale (diagonal blanked).

    Parameters
    ----------
    panels : list of (str, ndarray of shape (n_rois, n_rois) or None)
        Title and matrix of each panel; None or an all-NaN matrix draws an explanatory note.
    labels : list of str, optional
        ROI names for the ticks (dropped above ``MAX_LABELLED_ROIS`` ROIs).
    """
    plotting = _plotting()
    shown = [m for _, m in panels if m is not None and np.isfinite(m).any()]
    vmax = _vmax(*shown) if shown else 1.0
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n + 0.8, 3.6), squeeze=False,
                             layout="constrained")
    im = None
    for ax, (title, m) in zip(axes[0], panels, strict=True):
        if m is None or not np.isfinite(m).any():
            ax.text(0.5, 0.5, "not available", ha="center", va="center", transform=ax.transAxes)
            ax.set(title=title, xticks=[], yticks=[])
            continue
        use = labels if labels is not None and len(labels) <= MAX_LABELLED_ROIS else None
        im = plotting.plot_matrix(_offdiag(m), axes=ax, vmin=-vmax, vmax=vmax, colorbar=False,
                                  labels=use, title=title)
        if use is None:
            ax.set(xticks=[], yticks=[])
        ax.title.set_fontsize(9)
    if im is not None:
        fig.colorbar(im, ax=axes[0], shrink=0.8, label=cbar_label)
    return fig


def _load_series(path: str | Path, required: bool) -> ROITimeSeries | None:
    """The series at ``path``; None when it is absent and not ``required``."""
    if not required and not Path(path).exists():
        return None
    return ROITimeSeries.load(path)


def _load_connectivity(path: str | Path, subject: str, required: bool) -> dict[str, Any] | None:
    """The arrays of ``connectivity.npz``; None when it is absent and not ``required``."""
    if not Path(path).exists():
        if not required:
            return None
        raise DataError("connectivity file is missing", file=path, subject=subject,
                        expected="features/connectivity.npz of the connectivity stage")
    with np.load(path, allow_pickle=False) as f:
        missing = sorted({"matrix", "kind", "roi_coords", "excluded"} - set(f.files))
        if missing:
            raise DataError(f"connectivity file lacks {missing}", file=path, subject=subject,
                            expected="the keys matrix, vector, kind, roi_names, roi_coords, "
                                     "excluded written by the connectivity stage")
        out = {k: f[k] for k in f.files}
    out["kind"] = str(out["kind"])
    out["excluded"] = bool(out["excluded"])
    out["roi_names"] = [str(r) for r in out.get("roi_names", [])]
    return out


def _qc_table(qc: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame([{
        "timepoints in": qc.get("n_timepoints_in"),
        "timepoints kept": qc.get("n_timepoints_kept"),
        "TR (s)": qc.get("tr"),
        "mean FD (mm)": qc.get("mean_fd"),
        "excluded": bool(qc.get("excluded")),
        "reason": qc.get("reason") or "",
    }])


def _steps_table(steps: list[Any]) -> pd.DataFrame:
    return pd.DataFrame([{"#": i + 1, "step": s if isinstance(s, str) else
                          json.dumps(s, default=str)} for i, s in enumerate(steps)])


def _excluded_banner(reason: str) -> str:
    return ("<div style='border:2px solid #b00;background:#fdecea;padding:10px;"
            "font-size:1.15em'><b>EXCLUDED from the group analysis.</b> Reason: "
            f"{html.escape(reason or 'not given')}. This report shows what exists for the "
            "subject; no connectivity or model uses it.</div>")


def connectome_figure(matrix: np.ndarray, coords: np.ndarray, title: str) -> plt.Figure:
    """Strongest edges of ``matrix`` drawn between ``coords`` (MNI mm) on a glass brain."""
    plotting = _plotting()
    fig = plt.figure(figsize=(8, 3.2))
    m = _offdiag(matrix)
    vmax = _vmax(m)
    n_rois = len(coords)
    plotting.plot_connectome(m, coords, edge_threshold=EDGE_THRESHOLD, figure=fig, title=title,
                             edge_vmin=-vmax, edge_vmax=vmax, colorbar=True,
                             node_size=max(4, 60 - n_rois // 4))
    return fig


def build_fmri_subject_report(
    ds: str,
    subject: str,
    *,
    timeseries_path: str | Path,
    cleaned_path: str | Path,
    qc_path: str | Path,
    connectivity_path: str | Path,
    out_html: str | Path,
    title_extra: str = "",
) -> mne.Report:
    """Build the report of one fMRI subject from its stage outputs.

    Parameters
    ----------
    ds, subject : str
        Dataset and subject labels (titles only).
    timeseries_path, cleaned_path : str | Path
        ``roi_timeseries.npz`` and ``cleaned_timeseries.npz`` (``ROITimeSeries.save``; the
        cleaned one has 0 rows when the subject is excluded).
    qc_path : str | Path
        ``qc.json`` of the cleaning stage.
    connectivity_path : str | Path
        ``features/connectivity.npz`` (``matrix`` (n_rois, n_rois), NaN when excluded,
        ``kind``, ``roi_names``, ``roi_coords`` (n_rois, 3) or 0×0, ``excluded``).
    out_html : str | Path
        Where the HTML goes (written atomically).
    title_extra : str
        Appended to the report title, e.g. the site.

    Returns
    -------
    mne.Report
        The saved report. For an excluded subject a missing series or connectivity file is
        noted instead of failing; an included subject needs all four files.
    """
    qc = read_json(qc_path)
    excluded = bool(qc.get("excluded"))
    title = f"brainmill — {ds} — sub-{subject}"
    if title_extra:
        title += f" — {title_extra}"
    if excluded:
        title += " (EXCLUDED)"
    report = mne.Report(title=title, verbose="error")

    if excluded:
        report.add_html(_excluded_banner(qc.get("reason") or ""), title="Excluded",
                        section="QC")
    report.add_html(
        f"<p>Source: <code>{html.escape(str(qc.get('source', '')))}</code></p>"
        + _table(_qc_table(qc), "Cleaning and motion QC")
        + _table(_steps_table(qc.get("steps", [])), "Steps, in order"),
        title="QC", section="QC")

    raw = _load_series(timeseries_path, required=not excluded)
    cleaned = _load_series(cleaned_path, required=not excluded)
    tr = qc.get("tr") or next((s.tr for s in (raw, cleaned) if s is not None), 1.0)
    panels = []
    if raw is not None and raw.n_timepoints:
        panels.append(("raw ROI series", raw.data))
    if cleaned is not None and cleaned.n_timepoints:
        panels.append(("cleaned ROI series", cleaned.data))
    if panels:
        fig = carpet_figure(panels, float(tr))
        report.add_figure(fig, title="Carpet plot", section="Time series",
                          caption=f"Panels: {', '.join(t for t, _ in panels)}. Each ROI "
                                  "z-scored over time for display; the cleaned series is what "
                                  "the connectivity was computed from.")
        plt.close(fig)
    else:
        report.add_html("<p>No ROI time series is available for this subject.</p>",
                        title="Carpet plot", section="Time series")

    conn = _load_connectivity(connectivity_path, subject, required=not excluded)
    if conn is None:
        report.add_html("<p>No connectivity file was written for this subject.</p>",
                        title="Connectivity", section="Connectivity")
    else:
        _add_connectivity(report, conn, subject)

    report.add_code(json.dumps({"qc": qc, "versions": library_versions()}, indent=2,
                               default=str),
                    title="QC record and versions", language="json", section="Provenance")
    _save(report, out_html)
    return report


def _add_connectivity(report: mne.Report, conn: dict[str, Any], subject: str) -> None:
    matrix = np.asarray(conn["matrix"], dtype=float)
    kind = conn["kind"]
    if conn["excluded"] or not np.isfinite(matrix).any():
        report.add_html("<p>No connectivity: the subject was excluded before it was "
                        "computed.</p>", title="Connectivity", section="Connectivity")
        return
    names = conn["roi_names"] or None
    fig = matrices_figure([(f"sub-{subject}: {kind}", matrix)], labels=names, cbar_label=kind)
    report.add_figure(fig, title=f"Connectivity matrix ({kind})", section="Connectivity",
                      caption=f"{matrix.shape[0]} ROIs; diagonal blanked for display.")
    plt.close(fig)
    coords = np.asarray(conn["roi_coords"], dtype=float)
    if coords.size == 0:
        report.add_html("<p>No ROI coordinates were stored (the atlas was not available), so "
                        "the connectome cannot be drawn on the brain.</p>",
                        title="Connectome", section="Connectivity")
        return
    if coords.shape != (matrix.shape[0], 3):
        raise DataError(f"roi_coords has shape {coords.shape}", subject=subject,
                        expected=f"({matrix.shape[0]}, 3) MNI coordinates, one row per ROI")
    fig = connectome_figure(matrix, coords, f"sub-{subject}: strongest edges")
    report.add_figure(fig, title="Connectome", section="Connectivity",
                      caption=f"Edges above the {EDGE_THRESHOLD} percentile of |{kind}|.")
    plt.close(fig)


# ------------------------------------------------------------------------ dataset report


def read_participants_table(path: str | Path) -> pd.DataFrame:
    """``participants.csv`` of the fMRI branch, indexed by subject label (str).

    ``excluded`` becomes bool and ``reason`` an empty string for included subjects.
    """
    # only empty cells are missing: a label such as "NA" stays a label
    df = pd.read_csv(path, dtype={"subject": str}, keep_default_na=False, na_values=[""])
    if "subject" not in df.columns:
        raise DataError("participants table has no 'subject' column", file=path,
                        expected=f"an index column 'subject'; found {list(df.columns)}")
    df = df.set_index("subject")
    if "excluded" in df:
        df["excluded"] = df["excluded"].astype(str).str.strip().str.lower().isin(["true", "1"])
    else:
        df["excluded"] = False
    df["reason"] = df["reason"].fillna("").astype(str) if "reason" in df else ""
    return df


def _mean_sd(values: pd.Series) -> str:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return "–"
    if len(v) < 2:
        return f"{v.mean():.1f}"
    return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}"


def demographics_table(participants: pd.DataFrame) -> pd.DataFrame:
    """Counts, age mean ± sd and sex counts per site × diagnosis (and over all subjects).

    Age and sex describe the included subjects (those the analysis used); ``n_excluded``
    counts the others.
    """
    by = [c for c in ("site", "diagnosis") if c in participants]
    sexes = sorted(participants["sex"].dropna().astype(str).unique()) \
        if "sex" in participants else []
    groups = list(participants.groupby(by, sort=True)) if by else []
    groups.append((("all",) * max(len(by), 1), participants))
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        inc = g[~g["excluded"]]
        row: dict[str, Any] = dict(zip(by or ["group"], key, strict=True))
        row.update(n=len(g), n_excluded=int(g["excluded"].sum()), n_included=len(inc))
        if "age" in g:
            row["age (mean ± sd)"] = _mean_sd(inc["age"])
        for s in sexes:
            row[f"sex {s}"] = int((inc["sex"].astype(str) == s).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def _history_figure(history: pd.DataFrame) -> plt.Figure | None:
    train = [c for c in history.columns if c.startswith("train_")]
    if not train or history.empty:
        return None
    x = history["epoch"] if "epoch" in history else np.arange(1, len(history) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained")
    for col, style in [("train_loss", "-"), ("val_loss", "--")]:
        if col in history:
            axes[0].plot(x, history[col], style, marker=".", label=col)
    axes[0].set(xlabel="epoch", ylabel="total loss", title="weighted total")
    terms = [c[len("train_"):] for c in train if c != "train_loss"]
    for k, term in enumerate(terms):
        axes[1].plot(x, history[f"train_{term}"], "-", color=f"C{k % 10}", label=term)
        if f"val_{term}" in history:
            axes[1].plot(x, history[f"val_{term}"], "--", color=f"C{k % 10}")
    values = history[[f"train_{t}" for t in terms]].to_numpy(dtype=float) if terms else None
    if values is not None and np.all(values[np.isfinite(values)] > 0):
        axes[1].set_yscale("log")
    axes[1].set(xlabel="epoch", title="unweighted terms (solid train, dashed validation)")
    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=7)
    return fig


def correlation_table(summary: dict[str, Any]) -> pd.DataFrame:
    """Max |corr| with each demographic: raw connectivity edges vs the VAE latents."""
    before = summary.get("corr_connectivity") or {}
    after = summary.get("corr_latents") or {}
    names = list(dict.fromkeys([*before, *after]))
    return pd.DataFrame([{"demographic": n, "connectivity": before.get(n),
                          "latents": after.get(n)} for n in names])


def _correlation_figure(table: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(table) + 1.5), 3.2), layout="constrained")
    x = np.arange(len(table))
    for k, (col, label) in enumerate([("connectivity", "connectivity edges (before)"),
                                      ("latents", "VAE latents (after)")]):
        vals = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=float)
        ax.bar(x + (k - 0.5) * 0.38, vals, 0.38, label=label, color=f"C{k}")
    ax.set_xticks(x, table["demographic"])
    ax.set(ylabel="max |Pearson r|", ylim=(0, 1), title="Demographic information left")
    ax.legend(fontsize=7)
    return fig


def _vae_html(summary: dict[str, Any]) -> str:
    demo = summary.get("demographics", {})
    rec, base = summary.get("reconstruction_rmse"), summary.get("mean_baseline_rmse")

    def fmt(v: Any) -> str:
        return "–" if v is None else f"{float(v):.3f}"

    secs = summary.get("training_seconds")
    return (
        f"<p>DemoVAE trained on {summary.get('n_subjects')} included subjects, "
        f"{summary.get('n_edges')} edges of {summary.get('n_rois')} ROIs, conditioned on "
        f"continuous {html.escape(str(demo.get('continuous', [])))} and categorical "
        f"{html.escape(str(demo.get('categorical', [])))}; group "
        f"{html.escape(str(summary.get('group')))}; device "
        f"{html.escape(str(summary.get('device')))}; "
        f"{'–' if secs is None else f'{float(secs):.1f}'} s of training. Reconstruction RMSE "
        f"{fmt(rec)} vs {fmt(base)} when predicting every subject by the mean connectome, "
        "in-sample: the same subjects trained the VAE (held-out scores are in the decoding "
        "section).</p>")


def _profile_text(profile: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in profile.items())


def _load_synthetic(path: str | Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as f:
        need = {"profiles_json", "synthetic_mean", "real_mean", "n_real", "group_diff_real",
                "group_diff_synthetic", "group_diff_corr"}
        missing = sorted(need - set(f.files))
        if missing:
            raise DataError(f"synthetic file lacks {missing}", file=path,
                            expected=f"the keys {sorted(need)} of the synthesis stage")
        out = {k: f[k] for k in f.files}
    out["profiles"] = json.loads(str(out["profiles_json"]))
    out["group_labels"] = [str(g) for g in out.get("group_labels", [])]
    return out


def _add_synthetic_sections(report: mne.Report, syn: dict[str, Any]) -> None:
    profiles = syn["profiles"]
    n_real = np.asarray(syn["n_real"]).astype(int)
    table = pd.DataFrame([{**p, "n_real": int(n)} for p, n in zip(profiles, n_real,
                                                                  strict=True)])
    report.add_html(_table(table, "Demographic profiles sampled; n_real counts the included "
                                  "subjects matching the profile's categorical values."),
                    title="Profiles", section="Synthetic data")
    examples = syn.get("synthetic_examples")
    for k, profile in enumerate(profiles):
        real = syn["real_mean"][k]
        panels: list[tuple[str, np.ndarray | None]] = [
            (f"real mean (n_real={n_real[k]})", real if n_real[k] > 0 else None),
            ("synthetic mean", syn["synthetic_mean"][k])]
        if examples is not None and len(examples) > k:
            panels += [(f"synthetic sample {j + 1}", examples[k][j])
                       for j in range(examples.shape[1])]
        fig = matrices_figure(panels)
        text = _profile_text(profile)
        report.add_figure(fig, title=f"Real vs synthetic: {text}", section="Synthetic data",
                          caption=f"Profile {text}; real mean over n_real={n_real[k]} "
                                  "subjects; one colour scale per row.")
        plt.close(fig)

    corr = float(syn["group_diff_corr"])
    labels = syn["group_labels"]
    diff_real, diff_syn = syn["group_diff_real"], syn["group_diff_synthetic"]
    if len(labels) < 2 or not np.isfinite(diff_real).any():
        report.add_html("<p>The dataset has no group variable: no group difference.</p>",
                        title="Group difference", section="Synthetic data")
        return
    a, b = labels[0], labels[1]
    fig = matrices_figure([(f"real {a} − {b}", diff_real), (f"synthetic {a} − {b}", diff_syn)])
    fig.suptitle(f"group difference {a} − {b}: correlation real vs synthetic r = {corr:.3f}",
                 fontsize=9)
    report.add_figure(fig, title=f"Group difference {a} − {b}", section="Synthetic data",
                      caption=f"Mean connectome of {a} minus that of {b}, real included "
                              f"subjects vs DemoVAE samples; correlation of the two maps "
                              f"r = {corr:.3f}, in-sample: the VAE was trained on these "
                              "subjects.")
    plt.close(fig)


def _score(res: dict[str, Any], metric: str) -> tuple[float | None, float | None]:
    """(mean, sd) of a metric stored either as ``{metric: {mean, sd}}`` or flat."""
    value = res.get(metric)
    if isinstance(value, dict):
        return value.get("mean"), value.get("sd")
    sd = res.get(f"{metric}_sd", res.get("sd") if metric == "balanced_accuracy" else None)
    return value, sd


def _per_fold(res: dict[str, Any]) -> list[float]:
    value = res.get("balanced_accuracy")
    if isinstance(value, dict) and "per_fold" in value:
        return list(value["per_fold"])
    return list(res.get("per_fold", []))


def decoding_table(decoding: dict[str, Any]) -> pd.DataFrame:
    """One row per feature set of ``decoding.json``: balanced accuracy mean ± sd, chance."""
    rows = []
    for name, res in decoding.get("results", {}).items():
        bacc, bacc_sd = _score(res, "balanced_accuracy")
        acc, _ = _score(res, "accuracy")
        rows.append({"feature_set": name, "balanced_accuracy_mean": bacc,
                     "balanced_accuracy_sd": bacc_sd, "accuracy_mean": acc,
                     "n_folds": len(_per_fold(res)) or decoding.get("n_folds"),
                     "chance": decoding.get("chance")})
    return pd.DataFrame(rows, columns=["feature_set", "balanced_accuracy_mean",
                                       "balanced_accuracy_sd", "accuracy_mean", "n_folds",
                                       "chance"])


def _folds_figure(decoding: dict[str, Any]) -> plt.Figure:
    results = decoding["results"]
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(results) + 1), 3.2), layout="constrained")
    for k, res in enumerate(results.values()):
        mean, sd = _score(res, "balanced_accuracy")
        ax.bar(k, mean, 0.6, yerr=sd, capsize=3, color=f"C{k}", alpha=0.6)
        folds = _per_fold(res)
        ax.plot(np.full(len(folds), k) + np.linspace(-0.15, 0.15, len(folds)), folds, "k.")
    if decoding.get("chance") is not None:
        ax.axhline(decoding["chance"], color="k", ls="--", label="chance")
        ax.legend(fontsize=7)
    ax.set_xticks(range(len(results)), [FEATURE_SETS.get(n, n) for n in results], fontsize=8)
    ax.set(ylim=(0, 1), ylabel="balanced accuracy",
           title=f"{decoding.get('target')}: mean ± sd, dots are folds")
    return fig


def _add_decoding_sections(report: mne.Report, decoding: dict[str, Any],
                           table: pd.DataFrame) -> None:
    if not decoding.get("results"):
        report.add_html(f"<p>No decoding: {html.escape(str(decoding.get('skipped', '')))}</p>",
                        title="Decoding", section="Decoding")
        return
    classes = [str(c) for c in decoding.get("classes", [])]
    report.add_html(
        f"<p>Target <b>{html.escape(str(decoding.get('target')))}</b> "
        f"({html.escape(', '.join(classes))}), {decoding.get('n_subjects')} subjects, "
        f"{decoding.get('n_folds')} folds, chance {decoding.get('chance')}.</p>"
        f"<p>{html.escape(str(decoding.get('protocol', '')))}</p>"
        + _table(table, "Balanced accuracy over folds (mean, sd), accuracy mean"),
        title="Decoding", section="Decoding")
    fig = _folds_figure(decoding)
    report.add_figure(fig, title="Balanced accuracy per feature set", section="Decoding")
    plt.close(fig)
    for name, res in decoding["results"].items():
        if res.get("confusion") is not None:
            fig = _confusion_figure(res["confusion"], classes, FEATURE_SETS.get(name, name))
            report.add_figure(fig, title=f"Confusion: {name}", section="Decoding",
                              caption="Summed over the test folds.")
            plt.close(fig)


def build_fmri_dataset_report(
    ds: str,
    *,
    participants_csv: str | Path,
    vae_summary_json: str | Path | None,
    vae_history_csv: str | Path | None,
    synthetic_npz: str | Path | None,
    decoding_json: str | Path | None,
    out_html: str | Path,
    subjects: list[str],
    config_json: dict | None = None,
) -> pd.DataFrame:
    """Build the dataset report of the fMRI branch from the stage outputs.

    Parameters
    ----------
    ds : str
        Dataset label (title).
    participants_csv : str | Path
        ``fmri/participants.csv`` (index ``subject``, demographics, ``excluded``, ``reason``).
    vae_summary_json, vae_history_csv : str | Path | None
        The VAE's ``summary.json`` and ``history.csv``; None skips the VAE sections.
    synthetic_npz : str | Path | None
        ``fmri/synthetic.npz``; None skips the synthetic-data sections.
    decoding_json : str | Path | None
        ``fmri/decoding.json``; None skips the decoding section.
    out_html : str | Path
        Where the HTML goes (written atomically); per-subject reports ``sub-{s}.html`` are
        linked relative to it.
    subjects : list of str
        Every subject with a per-subject report.
    config_json : dict, optional
        The dataset's configuration, shown under Provenance.

    Returns
    -------
    pandas.DataFrame
        The decoding table: feature_set, balanced_accuracy_mean, balanced_accuracy_sd,
        accuracy_mean, n_folds, chance (empty without ``decoding_json``).
    """
    participants = read_participants_table(participants_csv)
    report = mne.Report(title=f"brainmill — {ds} — fMRI, all subjects", verbose="error")

    excluded_set = set(participants.index[participants["excluded"]])
    links = ", ".join(
        f"<a href='sub-{html.escape(s)}.html'>sub-{html.escape(s)}</a>"
        + (" (excluded)" if s in excluded_set else "") for s in subjects)
    report.add_html(
        f"<p>{len(participants)} subjects, {len(participants) - len(excluded_set)} included, "
        f"{len(excluded_set)} excluded.</p><p>Per-subject reports: {links}.</p>",
        title="Dataset", section="Participants")
    report.add_html(_table(demographics_table(participants),
                           "Per site × diagnosis; age and sex of the included subjects"),
                    title="Demographics", section="Participants")
    excl = participants[participants["excluded"]].reset_index()
    cols = [c for c in ("subject", "participant_id", "site", "mean_fd", "reason") if c in excl]
    report.add_html(_table(excl[cols]) if len(excl) else "<p>No subject was excluded.</p>",
                    title=f"Excluded subjects ({len(excl)})", section="Participants")

    if vae_summary_json is not None:
        summary = read_json(vae_summary_json)
        report.add_html(_vae_html(summary), title="DemoVAE", section="DemoVAE")
        if vae_history_csv is not None:
            fig = _history_figure(pd.read_csv(vae_history_csv))
            if fig is not None:
                report.add_figure(fig, title="Training curves", section="DemoVAE")
                plt.close(fig)
        corr = correlation_table(summary)
        if not corr.empty:
            fig = _correlation_figure(corr)
            report.add_figure(fig, title="Demographics in connectivity vs latents",
                              section="DemoVAE",
                              caption="Max |Pearson r| over edges (before) or latent "
                                      "dimensions (after) with each demographic; categorical "
                                      "ones via their one-hot levels. In-sample: the model "
                                      "was trained on these subjects (held-out values per "
                                      "fold are in decoding.json).")
            plt.close(fig)
            report.add_html(_table(corr, "Max |corr| with each demographic"),
                            title="Confound removal", section="DemoVAE")

    if synthetic_npz is not None:
        _add_synthetic_sections(report, _load_synthetic(synthetic_npz))

    table = decoding_table({})
    if decoding_json is not None:
        decoding = read_json(decoding_json)
        table = decoding_table(decoding)
        _add_decoding_sections(report, decoding, table)

    report.add_code(json.dumps({"config": config_json, "versions": library_versions()},
                               indent=2, default=str),
                    title="Configuration and versions", language="json", section="Provenance")
    _save(report, out_html)
    return table
