"""Bonn University epilepsy EEG (Andrzejak et al. 2001, Phys. Rev. E 64:061907).

Five sets of 100 single-channel segments, 4097 samples at 173.61 Hz (23.6 s) each, stored as
one integer (µV) per line in ``<set>/<set><NNN>.txt``: Z healthy with eyes open, O healthy
with eyes closed (surface EEG), N interictal from the hippocampal formation opposite the
focus, F interictal from the epileptogenic zone, S ictal (seizure). Set N's files end in
``.TXT``; both endings are accepted for every set.

The whole collection is **one pooled subject**: each segment is one run (``"Z001"``) of
session ``"1"``, concatenated in set then segment order with an ``EDGE boundary``
annotation at every join so that filters stop there (no ``BAD boundary``: see
:func:`~brainmill.datasets.local.join_runs`). Windows of ``window_s`` every ``step_s`` from
each segment's start are annotated with the set letter; a window never crosses a segment's
end (the last partial step is left out), so with the defaults (5 s every 2.5 s) each segment
gives 8 windows. Evaluate with ``grouped_kfold`` so that the overlapping windows of one
segment stay in one fold. Sets Z and O come from five healthy volunteers and N, F, S from
five patients, but the files do not say which segment is whose, so segments of one person
can still fall on both sides of a split.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import mne
import numpy as np

from ..config import BonnSource
from ..errors import DataError
from .base import Recording, event_id_for, rename_event_annotations
from .local import dataset_folder, fif_sfreq, join_runs

#: 173.61 Hz as FIF stores it (float32; see :func:`~brainmill.datasets.local.fif_sfreq`).
SFREQ = fif_sfreq(173.61)
N_SAMPLES = 4097
#: Sub-folder of the data root that holds the set folders.
FOLDER = "bonn-epilepsy"
CHANNEL = "EEG"
SET_DESCRIPTIONS = {
    "Z": "healthy volunteers, eyes open (surface EEG)",
    "O": "healthy volunteers, eyes closed (surface EEG)",
    "N": "interictal, hippocampal formation opposite the epileptogenic zone",
    "F": "interictal, epileptogenic zone",
    "S": "ictal (seizure activity)",
}


def segment_files(folder: Path, set_name: str, segments: list[int] | None,
                  subject: str) -> list[tuple[int, Path]]:
    """``(number, path)`` of one set's segment files, in number order.

    Parameters
    ----------
    folder : Path
        Folder holding the set folders.
    set_name : str
        ``"Z"``, ``"O"``, ``"N"``, ``"F"`` or ``"S"``.
    segments : list of int or None
        Segment numbers to find; None for every segment file present.
    subject : str
        For error messages.

    Raises
    ------
    DataError
        If the set folder is missing, holds no segment, lacks a requested segment, or holds a
        segment twice (``.txt`` and ``.TXT``).
    """
    set_dir = folder / set_name
    if not set_dir.is_dir():
        raise DataError(
            f"set folder '{set_name}' not found",
            subject=subject,
            file=set_dir,
            expected=f"folders {'/, '.join(SET_DESCRIPTIONS)}/ holding {set_name}001.txt …",
            hint=f"Point the source's 'path' (or MNE_DATA) at the folder holding {FOLDER}/, "
            "or leave the set out of 'sets'",
        )
    pattern = re.compile(rf"{set_name}(\d{{3}})\.txt", re.IGNORECASE)
    found: dict[int, Path] = {}
    for path in sorted(set_dir.iterdir()):
        m = pattern.fullmatch(path.name)
        if m is None or not path.is_file():
            continue
        number = int(m.group(1))
        if number in found:
            raise DataError(
                f"segment {number} of set {set_name} is there twice ({found[number].name}, "
                f"{path.name})",
                subject=subject, file=path, expected="one file per segment",
            )
        found[number] = path
    wanted = sorted(found) if segments is None else list(segments)
    missing = [n for n in wanted if n not in found]
    if missing or not wanted:
        names = ", ".join(f"{set_name}{n:03d}.txt" for n in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(
            f"segment file(s) {names}{more} not found" if missing
            else "the set folder holds no segment file",
            subject=subject,
            file=set_dir,
            expected=f"files named {set_name}NNN.txt (or .TXT), NNN from 001 to 100",
            hint="Narrow the source's 'segments' to the files present" if missing else None,
        )
    return [(n, found[n]) for n in wanted]


def read_segment(path: Path, subject: str) -> np.ndarray:
    """One segment's samples in µV, shape (4097,).

    Raises
    ------
    DataError
        If the file is unreadable, holds a non-number or not exactly 4097 values.
    """
    try:
        tokens = path.read_text().split()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read the segment: {type(err).__name__}: {err}",
                        subject=subject, file=path) from err
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        bad = next(i for i, t in enumerate(tokens) if not _is_number(t))
        raise DataError(
            f"value {bad + 1} ('{tokens[bad][:20]}') is not a number",
            subject=subject, file=path, expected="one number (µV) per line",
        ) from None
    if len(values) != N_SAMPLES:
        raise DataError(
            f"the segment holds {len(values)} samples",
            subject=subject, file=path,
            expected=f"{N_SAMPLES} samples ({N_SAMPLES / SFREQ:.1f} s at {SFREQ:.2f} Hz)",
            hint="The file is truncated or not a Bonn segment",
        )
    return values


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def window_starts(n_times: int, sfreq: float, window_s: float, step_s: float) -> np.ndarray:
    """First samples of the windows that fit inside ``n_times`` samples.

    Window ``k`` starts at ``round(k · step_s · sfreq)`` and spans ``round(window_s · sfreq)``
    samples; only windows ending at or before the last sample are kept.
    """
    n_win = int(round(window_s * sfreq))
    if n_win > n_times:
        return np.zeros(0, dtype=np.int64)
    k_max = int(np.floor((n_times - n_win) / (step_s * sfreq) + 1e-9))
    starts = np.round(np.arange(k_max + 2) * step_s * sfreq).astype(np.int64)
    return starts[starts + n_win <= n_times]


def _segment_raw(values_uv: np.ndarray, set_name: str, source: BonnSource) -> mne.io.RawArray:
    info = mne.create_info([CHANNEL], SFREQ, "eeg")
    raw = mne.io.RawArray(values_uv[None, :] * 1e-6, info, verbose="error")
    starts = window_starts(len(values_uv), SFREQ, source.window_s, source.step_s)
    n_win = int(round(source.window_s * SFREQ))
    raw.set_annotations(mne.Annotations(starts / SFREQ, n_win / SFREQ,
                                        [set_name] * len(starts)))
    return raw


def load(
    source: BonnSource, subject: str, events: dict[str, list[str]], *, seed: int
) -> Recording:
    """Load the chosen Bonn sets as one pooled subject.

    Parameters
    ----------
    source : BonnSource
        Folder, ``sets``, ``segments``, ``window_s`` and ``step_s``.
    subject : str
        Label of the pooled subject (any, e.g. ``"all"``).
    events : dict of str to list of str
        Class name → set letters, e.g. ``{"ictal": ["S"], "non_ictal": ["Z", "O", "N", "F"]}``.
    seed : int
        Unused (the data are real); part of the loader contract.

    Returns
    -------
    Recording
        One channel ``"EEG"`` (V) at 173.61 Hz; session ``"1"``; one run per segment
        (``"Z001"`` …); window annotations renamed to the class names; ``metadata`` with the
        segments read and the windows per set.

    Raises
    ------
    DataError
        A missing set folder or segment file, an unreadable or malformed segment, or none of
        the configured events among the loaded sets.
    """
    del seed
    folder = dataset_folder(source.path, FOLDER)
    raws, labels = [], []
    per_set: dict[str, dict[str, Any]] = {}
    for set_name in source.sets:
        files = segment_files(folder, set_name, source.segments, subject)
        for number, path in files:
            raws.append(_segment_raw(read_segment(path, subject), set_name, source))
            labels.append(("1", f"{set_name}{number:03d}", str(path)))
        per_set[set_name] = {
            "description": SET_DESCRIPTIONS[set_name],
            "segments": [n for n, _ in files],
            "n_windows": int(sum(len(r.annotations) for r in raws[-len(files):])),
        }
    raw, runs = join_runs(raws, labels)
    rename_event_annotations(raw, events, subject=subject, file=folder)
    metadata: dict[str, Any] = {
        "loader": "bonn",
        "dataset": "Bonn University epilepsy EEG (Andrzejak et al. 2001)",
        "folder": str(folder),
        "channel": CHANNEL,
        "unit": "files in µV, raw in V",
        "window_s": source.window_s,
        "step_s": source.step_s,
        "window_samples": int(round(source.window_s * SFREQ)),
        "windows_per_segment": int(len(window_starts(N_SAMPLES, SFREQ, source.window_s,
                                                     source.step_s))),
        "sets": per_set,
    }
    return Recording(raw=raw, subject=str(subject), event_id=event_id_for(list(events)),
                     runs=runs, metadata=metadata)
