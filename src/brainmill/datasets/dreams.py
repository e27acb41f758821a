"""DREAMS Sleep Spindles database (Devuyst et al., Université de Mons): sleep stages.

Each excerpt is 30 min of one EEG channel (C3-A1 or CZ-A1) in ``excerptN.txt``: a header
line ``[C3-A1]`` then one value (µV) per line. The files carry no sampling rate; it is 100 Hz
for excerpt 1, 50 Hz for excerpt 3 and 200 Hz for the others (the database's description;
checked here against the hypnogram's duration, and for excerpt 3 against ``excerpt3.edf``).
``Hypnogram_excerptN.txt`` holds a header line then one Rechtschaffen & Kales score per 5 s:
5 wake, 4 REM, 3 S1, 2 S2, 1 S3, 0 S4, negative = movement/unknown.

The excerpts are **one pooled subject** whose sessions are the excerpts (``"excerpt1"`` …,
one run ``"1"`` each), so ``cross_session`` is leave-one-excerpt-out. Each excerpt is
resampled to ``source.sfreq`` with MNE (FFT method) so that they concatenate, and its
channel is named ``"EEG"`` (the original name is kept in ``metadata``).

Labels: 30-s windows from t = 0 (the AASM epoch; six 5-s scores each) are annotated W, REM,
N1, N2 or N3 (S3 and S4 merge into N3, as AASM does) when all six scores map to the same
stage. A window holding a negative (or otherwise unknown) score is *unknown*; a window whose
scores map to different stages is *mixed*; neither is annotated, and a window that runs past
the end of the signal is not annotated either. The counts go to ``metadata["excerpts"]``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import mne
import numpy as np

from ..config import DreamsSource
from ..errors import DataError
from .base import Recording, event_id_for, rename_event_annotations
from .local import dataset_folder, fif_sfreq, join_runs

#: Sub-folder of the data root that holds the files.
FOLDER = "dreams-spindles"
CHANNEL = "EEG"
SCORE_S = 5.0
WINDOW_S = 30.0
SCORES_PER_WINDOW = int(WINDOW_S / SCORE_S)
#: R&K hypnogram code → AASM stage (S3 and S4 → N3).
STAGES = {5: "W", 4: "REM", 3: "N1", 2: "N2", 1: "N3", 0: "N3"}
#: Sampling rate (Hz) of each excerpt's text file; excerpts not listed are at 200 Hz.
FILE_SFREQ = {1: 100.0, 3: 50.0}
DEFAULT_FILE_SFREQ = 200.0
_HEADER = re.compile(r"\[(?P<name>[^\]]+)\]")


def file_sfreq(excerpt: int) -> float:
    """Sampling rate of ``excerptN.txt``."""
    return FILE_SFREQ.get(excerpt, DEFAULT_FILE_SFREQ)


def _read_table(path: Path, subject: str, what: str) -> tuple[str, list[str]]:
    """Header name and value tokens of a DREAMS text file."""
    if not path.is_file():
        raise DataError(
            f"{what} not found",
            subject=subject,
            file=path,
            expected="excerptN.txt and Hypnogram_excerptN.txt of every configured excerpt",
            hint=f"Point the source's 'path' (or MNE_DATA) at the folder holding {FOLDER}/, "
            "or leave the excerpt out of 'excerpts'",
        )
    try:
        header, _, body = path.read_text().partition("\n")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read the {what}: {type(err).__name__}: {err}",
                        subject=subject, file=path) from err
    m = _HEADER.fullmatch(header.strip())
    if m is None:
        raise DataError(
            f"the first line '{header.strip()[:40]}' is not a header",
            subject=subject, file=path,
            expected="a header line such as [C3-A1] or [Hypnogram], then one value per line",
        )
    return m.group("name").strip(), body.split()


def _as_array(tokens: list[str], dtype: type, path: Path, subject: str,
              expected: str) -> np.ndarray:
    try:
        return np.array(tokens, dtype=dtype)
    except ValueError:
        for i, t in enumerate(tokens):
            try:
                dtype(t)
            except ValueError:
                raise DataError(f"value {i + 1} ('{t[:20]}') is not {expected}",
                                subject=subject, file=path,
                                expected=f"{expected}, one per line") from None
        raise


def read_signal(path: Path, subject: str) -> tuple[str, np.ndarray]:
    """Channel name from the header and the samples (µV), shape (n_times,)."""
    channel, tokens = _read_table(path, subject, "signal file")
    values = _as_array(tokens, float, path, subject, "a number")
    if len(values) == 0:
        raise DataError("the signal file holds no samples", subject=subject, file=path)
    return channel, values


def read_hypnogram(path: Path, subject: str) -> np.ndarray:
    """R&K scores, one per 5 s, shape (n_scores,)."""
    _, tokens = _read_table(path, subject, "hypnogram")
    scores = _as_array(tokens, int, path, subject, "an integer sleep score")
    if len(scores) < SCORES_PER_WINDOW:
        raise DataError(
            f"the hypnogram holds {len(scores)} scores, fewer than one 30-s window",
            subject=subject, file=path, expected="one score per 5 s of the excerpt",
        )
    return scores


def window_labels(scores: np.ndarray) -> tuple[list[str | None], dict[str, int]]:
    """Stage of every complete 30-s window, or None for mixed or unknown windows.

    Parameters
    ----------
    scores : ndarray of int, shape (n_scores,)
        R&K codes, one per 5 s; trailing scores that do not fill a window are ignored.

    Returns
    -------
    labels : list of str or None
        One per window (``n_scores // 6``).
    counts : dict
        ``kept``, ``mixed``, ``unknown`` and ``trailing_scores``.
    """
    n_windows = len(scores) // SCORES_PER_WINDOW
    labels: list[str | None] = []
    counts = {"kept": 0, "mixed": 0, "unknown": 0,
              "trailing_scores": int(len(scores) - n_windows * SCORES_PER_WINDOW)}
    for k in range(n_windows):
        chunk = scores[k * SCORES_PER_WINDOW:(k + 1) * SCORES_PER_WINDOW]
        if any(int(s) not in STAGES for s in chunk):
            labels.append(None)
            counts["unknown"] += 1
            continue
        stages = {STAGES[int(s)] for s in chunk}
        if len(stages) > 1:
            labels.append(None)
            counts["mixed"] += 1
        else:
            labels.append(stages.pop())
            counts["kept"] += 1
    return labels, counts


def _excerpt(folder: Path, excerpt: int, source: DreamsSource,
             subject: str) -> tuple[mne.io.BaseRaw, dict[str, Any]]:
    """One excerpt resampled to ``source.sfreq`` with its stage annotations."""
    sig_path = folder / f"excerpt{excerpt}.txt"
    hyp_path = folder / f"Hypnogram_excerpt{excerpt}.txt"
    channel, values = read_signal(sig_path, subject)
    scores = read_hypnogram(hyp_path, subject)
    sfreq_file = file_sfreq(excerpt)
    duration = len(values) / sfreq_file
    scored = len(scores) * SCORE_S
    # the files carry no rate: a duration that disagrees with the hypnogram means a wrong one
    if abs(duration - scored) > SCORE_S:
        raise DataError(
            f"{len(values)} samples at {sfreq_file:g} Hz last {duration:.1f} s but the "
            f"hypnogram scores {scored:.0f} s",
            subject=subject, file=sig_path,
            expected=f"a signal as long as its hypnogram ({len(scores)} scores × 5 s)",
            hint="The file is truncated, or not the DREAMS excerpt it is named after",
        )
    info = mne.create_info([CHANNEL], sfreq_file, "eeg")
    raw = mne.io.RawArray(values[None, :] * 1e-6, info, verbose="error")
    if sfreq_file != fif_sfreq(source.sfreq):
        raw.resample(fif_sfreq(source.sfreq), verbose="error")
    sfreq = float(raw.info["sfreq"])

    labels, counts = window_labels(scores)
    n_win = int(round(WINDOW_S * sfreq))
    onsets, descs = [], []
    beyond = 0
    for k, label in enumerate(labels):
        start = int(round(k * WINDOW_S * sfreq))
        if start + n_win > raw.n_times:
            beyond += label is not None
            continue
        if label is not None:
            onsets.append(start / sfreq)
            descs.append(label)
    counts["kept"] -= beyond
    raw.set_annotations(mne.Annotations(onsets, n_win / sfreq, descs))
    meta = {
        "file": str(sig_path), "hypnogram": str(hyp_path), "channel": channel,
        "sfreq_file": sfreq_file, "n_samples_file": int(len(values)),
        "duration_s": round(duration, 3), "sfreq": sfreq,
        "resampled": sfreq_file != sfreq, "n_scores": int(len(scores)),
        "n_windows": len(labels), **counts, "beyond_signal": beyond,
        "per_stage": {s: descs.count(s) for s in dict.fromkeys(STAGES.values())},
    }
    return raw, meta


def load(
    source: DreamsSource, subject: str, events: dict[str, list[str]], *, seed: int
) -> Recording:
    """Load the chosen DREAMS excerpts as one pooled subject, one session per excerpt.

    Parameters
    ----------
    source : DreamsSource
        Folder, ``excerpts`` and the common ``sfreq``.
    subject : str
        Label of the pooled subject (any, e.g. ``"all"``).
    events : dict of str to list of str
        Class name → stages, e.g. ``{"W": ["W"], "N1": ["N1"], …}``.
    seed : int
        Unused (the data are real); part of the loader contract.

    Returns
    -------
    Recording
        One channel ``"EEG"`` (V) at ``source.sfreq``; sessions ``"excerpt1"`` … with one run
        ``"1"`` each; 30-s stage annotations renamed to the class names; ``metadata
        ["excerpts"]`` with each excerpt's file, original channel and rate and its window
        counts (``kept``, ``mixed``, ``unknown``, ``beyond_signal``, ``per_stage``).

    Raises
    ------
    DataError
        A missing or malformed signal or hypnogram file, a signal whose duration disagrees
        with its hypnogram, or none of the configured events in the loaded excerpts.
    """
    del seed
    folder = dataset_folder(source.path, FOLDER)
    raws, labels, per_excerpt = [], [], {}
    for excerpt in source.excerpts:
        raw, meta = _excerpt(folder, excerpt, source, subject)
        raws.append(raw)
        labels.append((f"excerpt{excerpt}", "1", meta["file"]))
        per_excerpt[f"excerpt{excerpt}"] = meta
    raw, runs = join_runs(raws, labels)
    rename_event_annotations(raw, events, subject=subject, file=folder)
    metadata: dict[str, Any] = {
        "loader": "dreams",
        "dataset": "DREAMS Sleep Spindles database (Devuyst et al., Univ. Mons)",
        "folder": str(folder),
        "channel": CHANNEL,
        "unit": "files in µV, raw in V",
        "window_s": WINDOW_S,
        "labelling": "30-s windows from t=0 whose six 5-s R&K scores map to one AASM stage "
                     "(S3, S4 -> N3); mixed and unknown (negative score) windows are left "
                     "unlabelled",
        "excerpts": per_excerpt,
    }
    return Recording(raw=raw, subject=str(subject), event_id=event_id_for(list(events)),
                     runs=runs, metadata=metadata)
