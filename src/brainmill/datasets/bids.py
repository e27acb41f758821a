"""BIDS datasets (EEG, MEG, iEEG) read with mne-bids.

The subject's recordings of ``source.task`` are enumerated with
:func:`mne_bids.find_matching_paths`, optionally restricted to ``source.sessions`` and
``source.runs``, and read with :func:`mne_bids.read_raw_bids`. Events come from each
recording's ``events.tsv`` as annotations whose descriptions are its ``trial_type`` values.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import mne
import mne_bids
import pandas as pd
from mne_bids.config import reader as _BIDS_READERS

from ..config import BIDSSource
from ..errors import DataError
from .base import Recording, concatenate_runs, event_id_for, rename_event_annotations
from .integrity import check_events_kept, checked_reading


def _natural_key(text: str | None) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text or "")]


def find_recordings(source: BIDSSource, subject: str) -> list[mne_bids.BIDSPath]:
    """The subject's recordings of ``source.task``, in session then run order.

    Raises
    ------
    DataError
        When the root is no BIDS folder, the subject is absent, or no recording of the task
        (and of the configured sessions and runs) exists.
    """
    root = Path(source.root).expanduser()
    if not root.is_dir():
        raise DataError("the BIDS root folder does not exist", subject=subject, file=root,
                        hint="Fix the source's 'root'")
    subjects = mne_bids.get_entity_vals(root, "subject")
    if subject not in subjects:
        raise DataError(
            f"subject '{subject}' is not in the BIDS dataset",
            subject=subject,
            file=root / f"sub-{subject}",
            expected=f"one of the subjects found: {subjects[:30] or 'none'}",
            hint="Use the label after 'sub-' (zero padding included) in 'subjects'",
        )
    paths = mne_bids.find_matching_paths(
        root,
        subjects=subject,
        tasks=source.task,
        datatypes=source.datatype,
        suffixes=source.datatype,
        extensions=list(_BIDS_READERS),
    )
    # a split recording is read whole through its first part
    paths = [p for p in paths if p.split in (None, "01", "1")]
    if not paths:
        tasks = mne_bids.get_entity_vals(root / f"sub-{subject}", "task")
        raise DataError(
            f"no {source.datatype} recording of task '{source.task}'",
            subject=subject,
            file=root / f"sub-{subject}",
            expected=f"a task among those found for this subject: {tasks or 'none'}",
            hint="Fix the source's 'task' or 'datatype'",
        )
    found_sessions = sorted({p.session for p in paths if p.session}, key=_natural_key)
    found_runs = sorted({p.run for p in paths if p.run}, key=_natural_key)
    if source.sessions is not None:
        paths = [p for p in paths if p.session in source.sessions]
    if source.runs is not None:
        paths = [p for p in paths if p.run in source.runs]
    if not paths:
        raise DataError(
            f"no recording of task '{source.task}' in sessions {source.sessions} and runs "
            f"{source.runs}",
            subject=subject,
            file=root / f"sub-{subject}",
            expected=f"sessions among {found_sessions}, runs among {found_runs}",
            hint="Fix the source's 'sessions' or 'runs'",
        )
    paths.sort(key=lambda p: (_natural_key(p.session), _natural_key(p.run),
                              _natural_key(p.basename)))
    return paths


def _events_tsv_descriptions(path: mne_bids.BIDSPath) -> list[str] | None:
    """``trial_type`` of each timed row of the recording's ``events.tsv`` (None without one):
    mne-bids replaces the file's own markers with these when it reads the recording."""
    tsv = path.copy().update(suffix="events", extension=".tsv").fpath
    if not tsv.is_file():
        return None
    table = pd.read_csv(tsv, sep="\t", na_values="n/a", keep_default_na=False, dtype=str)
    if "trial_type" not in table or "onset" not in table:
        return None
    return table.loc[table["onset"].notna(), "trial_type"].dropna().tolist()


def _read(path: mne_bids.BIDSPath, subject: str) -> mne.io.BaseRaw:
    with checked_reading(path.fpath, subject, "a complete recording", reader="mne-bids",
                         hint="Check the dataset with the BIDS validator"):
        raw = mne_bids.read_raw_bids(path, verbose=False)
        raw.load_data(verbose=False)
    return raw


def load(
    source: BIDSSource, subject: str, events: dict[str, list[str]], *, seed: int
) -> Recording:
    """Load one subject of a BIDS dataset.

    Parameters
    ----------
    source : BIDSSource
        BIDS root, task, datatype and optional session / run restrictions.
    subject : str
        The BIDS subject label (after ``sub-``), e.g. ``"01"``.
    events : dict of str to list of str
        Class name → ``trial_type`` values.
    seed : int
        Unused; part of the loader contract.

    Returns
    -------
    Recording
        Runs concatenated in session then run order; session labels are the BIDS session
        (``"1"`` when the dataset has none); run labels the BIDS run (else the position).

    Raises
    ------
    DataError
        Unknown subject (the message lists those found), no recording of the task, an
        unreadable recording, none of the configured events, runs that differ in sampling
        rate or channels.
    """
    del seed
    paths = find_recordings(source, subject)
    raws = [_read(p, subject) for p in paths]
    for p, raw in zip(paths, raws, strict=True):
        check_events_kept(raw, p.fpath, subject, events, _events_tsv_descriptions(p))
    labels = [(p.session or "1", p.run or str(i + 1), str(p.fpath))
              for i, p in enumerate(paths)]
    raw, runs = concatenate_runs(raws, labels, subject=subject)
    where = str(paths[0].fpath) if len(paths) == 1 else (
        f"{len(paths)} recordings of task '{source.task}' under "
        f"{Path(source.root) / f'sub-{subject}'}"
    )
    rename_event_annotations(raw, events, subject=subject, file=where)
    metadata: dict[str, Any] = {
        "loader": "bids",
        "root": source.root,
        "task": source.task,
        "datatype": source.datatype,
        "files": [str(p.fpath) for p in paths],
    }
    return Recording(raw=raw, subject=subject, event_id=event_id_for(list(events)),
                     runs=runs, metadata=metadata)
