"""``brainmill validate``: check a config and the data it points to before a long run.

The config is validated by the pydantic models (keys, types, combinations). Then each dataset's
data is opened the way the workflow will open it, and the checks the stages would make later are
made now, with the stages' own code:

* EEG: every subject's files are found and opened (``files`` source: headers and annotations
  only, ``mne.io.read_raw(preload=False)``; other sources through their loader); runs agree in
  sampling rate and channels; configured events occur; the recording is longer than one epoch;
  picks exist; channels have montage positions when bad channels are to be interpolated; band
  edges lie below Nyquist (:func:`brainmill.preprocessing.eeg.preflight`); every class has
  enough trials per session (or runs) for the configured folds, counted before epoch
  rejection, which can only lower them.
* fMRI: the participants table has the needed columns and every subject; each subject's time
  series loads and passes cleaning (NaN rows, too few volumes, band-pass vs TR; a motion
  exclusion is a warning); every subject has the same ROIs; the decoding target has two classes
  and each (site, target) cell at least ``n_folds`` subjects.

Each finding is a :class:`Problem`; :func:`format_problems` prints them as a table.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .config import Config, DatasetConfig, FMRIDatasetConfig, load_config
from .errors import BrainmillError, ConfigError, DataError

Level = Literal["error", "warning"]


@dataclass
class Problem:
    """One finding of ``brainmill validate``.

    Attributes
    ----------
    dataset, subject, file : str
        Where (empty when not known or not relevant).
    problem : str
        What is wrong, and what was expected.
    hint : str
        How to fix it.
    level : {"error", "warning"}
        An error stops a job of the run; a warning is a decision the run will record (a
        subject excluded, a protocol skipped).
    """

    dataset: str
    subject: str
    file: str
    problem: str
    hint: str = ""
    level: Level = "error"


def problem_from(err: Exception, dataset: str, subject: str = "",
                 level: Level = "error") -> Problem:
    """A :class:`Problem` from a brainmill error (or, for a bug, any exception)."""
    if isinstance(err, DataError):
        text = err.problem + (f" (expected {err.expected})" if err.expected else "")
        return Problem(dataset, err.subject or subject, err.file or "", text, err.hint or "",
                       level)
    if isinstance(err, BrainmillError):
        return Problem(dataset, subject, "", str(err), "", level)
    return Problem(dataset, subject, "", f"could not be checked: {type(err).__name__}: {err}",
                   "This looks like a bug in brainmill; please report it", level)


def validate_file(path: str | Path) -> tuple[Config | None, list[Problem]]:
    """Validate the config file at ``path`` and the data of every dataset in it."""
    try:
        cfg = load_config(path)
    except ConfigError as err:
        lines = str(err).splitlines()
        items = [line.strip().removeprefix("- ") for line in lines[1:]] or lines
        return None, [Problem("", "", str(path), item, "Fix the config") for item in items]
    return cfg, validate(cfg)


def validate(cfg: Config) -> list[Problem]:
    """Every problem of the data the (already valid) config points to."""
    problems: list[Problem] = []
    for name, ds_cfg in cfg.datasets.items():
        if isinstance(ds_cfg, FMRIDatasetConfig):
            problems += check_fmri_dataset(name, ds_cfg, cfg.seed)
        else:
            problems += check_eeg_dataset(name, ds_cfg, cfg.seed)
    return problems


# ----------------------------------------------------------------------------------- EEG


def _open_recording(ds_cfg: DatasetConfig, subject: str, seed: int):
    if ds_cfg.source.kind == "files":
        from .datasets import files

        return files.load(ds_cfg.source, subject, ds_cfg.events, seed=seed, preload=False)
    from .datasets import load_recording

    return load_recording(ds_cfg, subject, seed=seed)


def check_eeg_dataset(name: str, ds_cfg: DatasetConfig, seed: int) -> list[Problem]:
    """Open every subject's recording and make the checks its jobs would make."""
    problems = []
    for subject in ds_cfg.subjects:
        problems += check_eeg_subject(name, ds_cfg, subject, seed)
    return problems


def check_eeg_subject(name: str, ds_cfg: DatasetConfig, subject: str,
                      seed: int) -> list[Problem]:
    """The problems of one EEG subject (an empty list when its jobs can run)."""
    from .preprocessing.eeg import preflight

    try:
        recording = _open_recording(ds_cfg, subject, seed)
    except Exception as err:  # every failure is a row of the table
        return [problem_from(err, name, subject)]
    problems = [problem_from(e, name, subject) for e in preflight(recording,
                                                                   ds_cfg.preprocessing)]
    if problems:  # no events or too short: nothing to count folds on
        return problems
    return _fold_problems(name, ds_cfg, recording, seed)


def _protocols(ds_cfg: DatasetConfig) -> list[str]:
    """Every protocol some enabled decoder runs."""
    used = []
    for params in ds_cfg.decoders.enabled().values():
        used += getattr(params, "protocols", None) or ds_cfg.evaluation.protocols
    return list(dict.fromkeys(used))


def _fold_problems(name: str, ds_cfg: DatasetConfig, recording, seed: int) -> list[Problem]:
    """Cross-validation needs: trials per class and session (or runs) vs ``n_folds``."""
    import mne

    from .datasets.base import session_of_times
    from .evaluation import grouped_kfold_splits, within_session_splits

    raw, subject = recording.raw, recording.subject
    files = ", ".join(dict.fromkeys(r.source for r in recording.runs))
    present = {k: v for k, v in recording.event_id.items()
               if k in set(raw.annotations.description)}
    events, _ = mne.events_from_annotations(raw, event_id=present, verbose="error")
    onset = (events[:, 0] - raw.first_samp) / raw.info["sfreq"]
    session, run = session_of_times(onset, recording.runs)
    y = events[:, 2] - 1
    classes = list(recording.event_id)
    ev = ds_cfg.evaluation
    problems = []
    missing = [c for c in classes if c not in present]
    if missing:
        problems.append(Problem(name, subject, files, f"classes {missing} have no events",
                                "Check the dataset's 'events' mapping", "warning"))
    note = " (counted before epoch rejection, which can only lower the counts)"
    for protocol in _protocols(ds_cfg):
        try:
            if protocol == "within_session":
                within_session_splits(y, session, ev.n_folds, ev.shuffle, seed, classes=classes)
            elif protocol == "grouped_kfold":
                grouped_kfold_splits(y, session, run, ev.n_folds, ev.shuffle, seed,
                                     classes=classes)
            elif len(set(session)) < 2:
                problems.append(Problem(name, subject, files,
                                        "cross_session needs two sessions; the recording has "
                                        "one, so the protocol will be skipped",
                                        "Add sessions or remove 'cross_session'", "warning"))
        except DataError as err:
            p = problem_from(err, name, subject)
            p.file = p.file or files
            p.problem += note
            problems.append(p)
    return problems


# ---------------------------------------------------------------------------------- fMRI


def check_fmri_dataset(name: str, ds_cfg: FMRIDatasetConfig, seed: int) -> list[Problem]:
    """Participants, every subject's time series through cleaning, ROIs, decoding folds."""
    from .datasets.fmri_sources import dataset_subjects, load_subject, participants
    from .fmri_stages import check_one_atlas
    from .preprocessing.fmri import CleanSettings, clean_timeseries

    try:
        subjects = dataset_subjects(ds_cfg, seed)
    except Exception as err:
        return [problem_from(err, name)]
    problems: list[Problem] = []
    try:
        table = participants(ds_cfg, subjects, seed)
    except Exception as err:
        problems.append(problem_from(err, name))
        table = None
    settings = CleanSettings(**ds_cfg.preprocessing.model_dump())
    atlases: dict[tuple[str, ...], list[str]] = {}
    sources: dict[str, str] = {}
    included = []
    for subject in subjects:
        mean_fd = None
        if table is not None and "mean_fd" in table and not np.isnan(
                float(table.loc[subject, "mean_fd"])):
            mean_fd = float(table.loc[subject, "mean_fd"])
        try:
            ts = load_subject(ds_cfg, subject, seed)
            cleaned, qc = clean_timeseries(ts, settings, mean_fd=mean_fd)
        except Exception as err:
            problems.append(problem_from(err, name, subject))
            continue
        atlases.setdefault(tuple(ts.roi_names), []).append(subject)
        sources[subject] = str(ts.source)
        if cleaned is None:
            problems.append(Problem(name, subject, str(ts.source),
                                    f"will be excluded: {qc['reason']}",
                                    "Recorded in qc.json and participants.csv", "warning"))
        else:
            included.append(subject)
    try:
        checked = list(sources)
        check_one_atlas(atlases, [sources[s] for s in checked], checked)
    except DataError as err:
        problems.append(problem_from(err, name))
    if table is not None and ds_cfg.decoding is not None and included:
        problems += _fmri_fold_problems(name, ds_cfg, table.loc[included], seed)
    return problems


def _fmri_fold_problems(name: str, ds_cfg: FMRIDatasetConfig, table, seed: int
                        ) -> list[Problem]:
    from .vae_evaluation import site_stratified_folds

    dec = ds_cfg.decoding
    classes = sorted(table[dec.target].astype(str).unique())
    if len(classes) < 2:
        return [Problem(name, "", "", f"decoding.target '{dec.target}' has a single class "
                        f"{classes} among the {len(table)} included subjects",
                        "Include subjects of another class or set decoding: null")]
    site = "site" if "site" in table.columns else None
    try:
        if site:
            site_stratified_folds(table, dec.target, dec.n_folds, seed)
        else:
            site_stratified_folds(table.assign(_site="all"), dec.target, dec.n_folds, seed,
                                  site="_site")
    except DataError as err:
        p = problem_from(err, name)
        p.problem += " among the included subjects"
        p.hint = p.hint or f"Lower decoding.n_folds (now {dec.n_folds}) or add subjects"
        return [p]
    return []


# --------------------------------------------------------------------------------- table

COLUMNS = ("level", "dataset", "subject", "file", "problem", "hint")


def format_problems(problems: Iterable[Problem], width: int | None = None) -> str:
    """A plain-text table of ``problems``, wrapped to ``width`` (default: the terminal's)."""
    problems = list(problems)
    width = width or shutil.get_terminal_size((120, 24)).columns
    rows = [[p.level, p.dataset or "-", p.subject or "-", p.file or "-", p.problem,
             p.hint or "-"] for p in problems]
    fixed = [max(len(COLUMNS[i]), *(len(r[i]) for r in rows)) for i in range(3)]
    room = max(width - sum(fixed) - 2 * (len(COLUMNS) - 1), 60)
    flexible = [max(int(room * f), 12) for f in (0.3, 0.42, 0.28)]
    widths = fixed + flexible
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for row in rows:
        cells = [textwrap.wrap(text, w, break_on_hyphens=False) or [""]
                 for text, w in zip(row, widths, strict=True)]
        for i in range(max(len(c) for c in cells)):
            lines.append("  ".join((c[i] if i < len(c) else "").ljust(w)
                                   for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(lines)
