"""The dataset report of a run that failed: what finished, what failed and why.

When a run ends with failed jobs, the Snakefile's ``onerror`` handler calls
:func:`write_partial_reports` (with ``--keep-going`` that is after every other job has
finished). For each dataset that is not complete it writes ``reports/{ds}/index.html`` from the
subjects whose jobs all finished, and lists every other subject with the reason read from its
job logs: the ``FAILED`` line that :func:`brainmill.joblog.job_logging` writes, naming the file,
the subject and what was expected.

A partial report says so in its title and first section, and its modification time is set to
the epoch (1970-01-01), so Snakemake sees it older than every input and rebuilds it with the
``dataset_report`` rule at the next run that can; a run in which every job succeeds never calls
the handler, so its reports are exactly those of the rules.
"""

from __future__ import annotations

import html
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mne  # noqa: E402
import pandas as pd  # noqa: E402

from .config import Config, DatasetConfig, FMRIDatasetConfig  # noqa: E402
from .io import read_json  # noqa: E402
from .reports import (  # noqa: E402
    _save,
    _scores_figure,
    _summary_table,
    _table,
    pretraining_caption,
    score_table,
)

#: The line :func:`brainmill.joblog.job_logging` writes for a failed job.
FAILED_LINE = re.compile(r" FAILED (?P<job>.+?): (?P<error>[A-Za-z_][\w.]*): (?P<message>.*)$")
#: Title prefix that marks a partial report.
PARTIAL = "PARTIAL"


@dataclass
class JobFailure:
    """One failed job, as its log tells it.

    Attributes
    ----------
    stage : str
        The log's name without ``.log`` (``load``, ``preprocess``, ``decode-ts_lr``, …).
    subject : str | None
        None for a dataset-level job (tokenizer, VAE, participants table, report).
    error : str
        The exception's type, e.g. ``DataError``.
    message : str
        Its message (file, subject, what was expected, hint).
    log : Path
        The job's log file.
    """

    stage: str
    subject: str | None
    error: str
    message: str
    log: Path


def read_failures(logs_dir: str | Path, ds: str) -> list[JobFailure]:
    """Every job of dataset ``ds`` whose latest log ends in failure.

    Logs are rewritten by each attempt of their job, so a ``FAILED`` line always belongs to the
    job's latest attempt. Per-subject logs live in ``{logs_dir}/{ds}/sub-{subject}/``,
    dataset-level ones in ``{logs_dir}/{ds}/``.
    """
    root = Path(logs_dir) / ds
    failures = []
    for log in sorted(root.rglob("*.log")) if root.is_dir() else []:
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            continue
        matches = [m for m in map(FAILED_LINE.search, lines) if m]
        if not matches:
            continue
        folder = log.parent.name
        subject = folder.removeprefix("sub-") if folder.startswith("sub-") else None
        m = matches[-1]
        failures.append(JobFailure(stage=log.stem, subject=subject, error=m["error"],
                                   message=m["message"], log=log))
    return failures


def write_partial_reports(cfg: Config) -> list[Path]:
    """Write the partial report of every dataset that is not complete; return their paths.

    Never raises: a dataset whose partial report cannot be built is named on stderr, so the
    handler never hides the run's own error.
    """
    written = []
    for ds in cfg.datasets:
        try:
            path = write_partial_report(cfg, ds)
        except Exception as err:  # the run has failed already; say so and go on
            print(f"brainmill: could not write the partial report of {ds}: "
                  f"{type(err).__name__}: {err}", file=sys.stderr)
            continue
        if path is not None:
            print(f"brainmill: wrote the partial report {path} (failed subjects and their "
                  "reasons; the next complete run replaces it)", file=sys.stderr)
            written.append(path)
    return written


def write_partial_report(cfg: Config, ds: str) -> Path | None:
    """``reports/{ds}/index.html`` from what finished, or None when ``ds`` is complete.

    A dataset is complete when no job of it failed and every subject has all its outputs.
    """
    ds_cfg = cfg.datasets[ds]
    failures = read_failures(cfg.logs_dir, ds)
    if isinstance(ds_cfg, FMRIDatasetConfig):
        subjects, finished = _fmri_status(cfg, ds, ds_cfg, failures)
    else:
        subjects, finished = list(ds_cfg.subjects), _eeg_finished(cfg, ds, ds_cfg, failures)
    failed_subjects = {f.subject for f in failures if f.subject is not None}
    dataset_failures = [f for f in failures if f.subject is None]
    if not dataset_failures and not failed_subjects and set(finished) >= set(subjects):
        return None

    out = Path(cfg.reports_dir) / ds / "index.html"
    n_bad = len([s for s in subjects if s not in finished])
    report = mne.Report(title=f"brainmill — {ds} — {PARTIAL}: {n_bad} of {len(subjects)} "
                              "subject(s) did not finish", verbose="error")
    report.add_html(_banner(ds, subjects, finished, dataset_failures),
                    title="Partial report", section="Summary")
    report.add_html(_table(_status_table(subjects, finished, failures)),
                    title="Every subject: finished, failed (with the reason) or not run",
                    section="Summary")
    if dataset_failures:
        report.add_html(_table(_failure_table(dataset_failures)),
                        title="Dataset-level jobs that failed", section="Summary")
    if isinstance(ds_cfg, FMRIDatasetConfig):
        _add_fmri_finished(report, cfg, ds, finished)
    else:
        _add_eeg_scores(report, cfg, ds, ds_cfg, finished)
    _save(report, out)
    os.utime(out, (0, 0))  # older than any input: Snakemake rebuilds it when it can
    return out


# ------------------------------------------------------------------------------ status


def _metrics_path(cfg: Config, ds: str, subject: str, decoder: str) -> Path:
    return (Path(cfg.results_dir) / ds / f"sub-{subject}" / "decoders" / decoder
            / "metrics.json")


def _eeg_finished(cfg: Config, ds: str, ds_cfg: DatasetConfig,
                  failures: list[JobFailure]) -> list[str]:
    """Subjects with no failed job and the metrics of every enabled decoder, made with the
    current decoder settings and seed (older metrics belong to an earlier configuration)."""
    failed = {f.subject for f in failures}
    finished = []
    for sub in ds_cfg.subjects:
        if sub in failed:
            continue
        current = True
        for decoder, params in ds_cfg.decoders.enabled().items():
            path = _metrics_path(cfg, ds, sub, decoder)
            if not path.is_file():
                current = False
                break
            metrics = read_json(path)
            if (metrics.get("params") != params.model_dump(mode="json")
                    or metrics.get("seed") != cfg.seed):
                current = False
                break
        if current:
            finished.append(sub)
    return finished


def _fmri_status(cfg: Config, ds: str, ds_cfg: FMRIDatasetConfig,
                 failures: list[JobFailure]) -> tuple[list[str], list[str]]:
    from .datasets.fmri_sources import dataset_subjects

    try:
        subjects = dataset_subjects(ds_cfg, cfg.seed)
    except Exception:  # the participants table itself may be what failed
        subjects = sorted({f.subject for f in failures if f.subject is not None})
    failed = {f.subject for f in failures}
    base = Path(cfg.results_dir) / ds
    finished = [s for s in subjects if s not in failed
                and (base / f"sub-{s}" / "qc.json").is_file()
                and (base / f"sub-{s}" / "features" / "connectivity.npz").is_file()]
    return subjects, finished


def _status_table(subjects: list[str], finished: list[str],
                  failures: list[JobFailure]) -> pd.DataFrame:
    by_subject: dict[str, list[JobFailure]] = {}
    for f in failures:
        if f.subject is not None:
            by_subject.setdefault(f.subject, []).append(f)
    rows = []
    for sub in subjects:
        if sub in by_subject:
            for f in by_subject[sub]:
                rows.append({"subject": sub, "status": "failed", "job": f.stage,
                             "error": f.error, "reason": f.message, "log": str(f.log)})
        elif sub in finished:
            rows.append({"subject": sub, "status": "finished", "job": "", "error": "",
                         "reason": "", "log": ""})
        else:
            rows.append({"subject": sub, "status": "not run", "job": "", "error": "",
                         "reason": "its jobs did not run: the run stopped first, or they wait "
                                   "on a dataset-level job that failed", "log": ""})
    return pd.DataFrame(rows)


def _failure_table(failures: list[JobFailure]) -> pd.DataFrame:
    return pd.DataFrame([{"job": f.stage, "error": f.error, "reason": f.message,
                          "log": str(f.log)} for f in failures])


def _banner(ds: str, subjects: list[str], finished: list[str],
            dataset_failures: list[JobFailure]) -> str:
    links = ", ".join(f"<a href='sub-{html.escape(s)}.html'>sub-{html.escape(s)}</a>"
                      for s in finished) or "none"
    missing = [s for s in subjects if s not in finished]
    jobs = (f" Dataset-level job(s) failed: {', '.join(f.stage for f in dataset_failures)}."
            if dataset_failures else "")
    return (f"<div style='border:2px solid #c0392b;padding:0.6em'><p><b>{PARTIAL} report"
            f"</b> of dataset <code>{html.escape(ds)}</code>: the run ended with failed jobs, "
            f"so this page was written by brainmill from the {len(finished)} of "
            f"{len(subjects)} subject(s) whose jobs all finished. Subject(s) "
            f"{html.escape(', '.join(f'sub-{s}' for s in missing)) or 'none'} did not finish "
            f"(reasons below, from their job logs).{html.escape(jobs)}</p>"
            "<p>Fix the cause and run Snakemake again: the complete report replaces this page. "
            f"Per-subject reports: {links}.</p></div>")


# ------------------------------------------------------------------------------ content


def _add_eeg_scores(report: mne.Report, cfg: Config, ds: str, ds_cfg: DatasetConfig,
                    finished: list[str]) -> None:
    paths = [_metrics_path(cfg, ds, s, d) for s in finished for d in ds_cfg.decoders.enabled()]
    if not paths:
        report.add_html("<p>No subject finished.</p>", title="Scores", section="Scores")
        return
    scores = score_table(paths)
    report.add_html(_table(_summary_table(scores), pretraining_caption(scores)),
                    title=f"Decoders over the {len(finished)} finished subject(s)",
                    section="Summary")
    for protocol in ds_cfg.evaluation.protocols:
        if ((scores["protocol"] == protocol) & (scores["skipped"] == "")).any():
            fig = _scores_figure(scores, protocol)
            report.add_figure(fig, title=f"Per-subject accuracy: {protocol}", section="Scores")
            plt.close(fig)
    report.add_html(_table(scores), title="All scores of the finished subjects",
                    section="Scores")


def _add_fmri_finished(report: mne.Report, cfg: Config, ds: str, finished: list[str]) -> None:
    base = Path(cfg.results_dir) / ds
    rows = []
    for sub in finished:
        qc = read_json(base / f"sub-{sub}" / "qc.json")
        rows.append({"subject": sub, "timepoints_in": qc.get("n_timepoints_in"),
                     "timepoints_kept": qc.get("n_timepoints_kept"),
                     "mean_fd": qc.get("mean_fd"), "excluded": qc.get("excluded"),
                     "reason": qc.get("reason") or ""})
    report.add_html(_table(pd.DataFrame(rows)) if rows else "<p>No subject finished.</p>",
                    title="Quality control of the finished subjects", section="Participants")
    report.add_html("<p>The participants table, the DemoVAE and the decoding need every "
                    "subject, so they are not part of a partial report.</p>",
                    title="Dataset-level results", section="Participants")
