"""The uniform result of every loader: an MNE Raw plus events and subject metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import mne
import numpy as np

from ..errors import DataError


@dataclass
class RunInfo:
    """Where one run sits inside the concatenated :class:`Recording` raw.

    Attributes
    ----------
    session : str
        Session label, e.g. ``"1"``.
    run : str
        Run label within the session.
    source : str
        File the run was read from, or ``"synthetic"``.
    start : float
        Start time (s) of the run within ``Recording.raw`` (``raw.times`` axis).
    stop : float
        Stop time (s), exclusive.
    sfreq : float
        Sampling frequency of the file as read.
    """

    session: str
    run: str
    source: str
    start: float
    stop: float
    sfreq: float


@dataclass
class Recording:
    """One subject's recording, ready for preprocessing.

    Attributes
    ----------
    raw : mne.io.BaseRaw
        All runs of every session concatenated in time (MNE inserts ``BAD boundary`` /
        ``EDGE boundary`` annotations between them so filters stop at the joins). Annotations
        that mark configured classes are renamed to the class names.
    subject : str
        Subject label.
    event_id : dict of str to int
        Class name → event code (1, 2, … in configured order); the same for every loader.
    runs : list of RunInfo
        Where each run sits in ``raw``.
    metadata : dict
        JSON-able extra facts: the loader, its parameters, ground truth of synthetic data.
    """

    raw: mne.io.BaseRaw
    subject: str
    event_id: dict[str, int]
    runs: list[RunInfo]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def sessions(self) -> list[str]:
        """Session labels in order of appearance."""
        return list(dict.fromkeys(r.session for r in self.runs))

    def to_json(self) -> dict[str, Any]:
        """JSON-able description (everything but the signal) for ``recording.json``."""
        return {
            "subject": self.subject,
            "event_id": self.event_id,
            "runs": [asdict(r) for r in self.runs],
            "sfreq": float(self.raw.info["sfreq"]),
            "n_channels": len(self.raw.ch_names),
            "ch_names": list(self.raw.ch_names),
            "duration_s": float(self.raw.times[-1]) if len(self.raw.times) else 0.0,
            "metadata": self.metadata,
        }


def is_mark(description: str) -> bool:
    """True for annotations that mark data rather than events: ``BAD_…`` (artefacts, padding
    such as EDF's ``BAD_ACQ_SKIP``) and ``EDGE_…`` (run boundaries), MNE's convention."""
    return str(description).upper().startswith(("BAD", "EDGE"))


def event_id_for(classes: list[str]) -> dict[str, int]:
    """The uniform event mapping: class name → 1, 2, … in configured order."""
    return {name: i + 1 for i, name in enumerate(classes)}


def rename_event_annotations(
    raw: mne.io.BaseRaw,
    events: dict[str, list[str]],
    *,
    subject: str,
    file: str | None = None,
) -> None:
    """Rename annotations that mark configured classes to the class names, in place.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        Raw whose annotations are renamed.
    events : dict of str to list of str
        Class name → source descriptions (e.g. ``{"left_hand": ["T1"]}``).
    subject, file : str
        For the error message.

    Raises
    ------
    DataError
        If none of the configured descriptions occurs in the recording.
    """
    mapping: dict[str, str] = {}
    for cls, descs in events.items():
        for d in descs:
            if d in mapping and mapping[d] != cls:
                raise DataError(f"annotation '{d}' is mapped to both '{mapping[d]}' and '{cls}'",
                                subject=subject, file=file)
            mapping[d] = cls
    present = set(raw.annotations.description)
    if not present & (set(mapping) | set(events)):
        found = sorted(d for d in present if not is_mark(d))
        raise DataError(
            "none of the configured events occurs in the recording",
            subject=subject,
            file=file,
            expected=f"annotations {sorted(mapping)}; found {found[:20] or 'no annotations'}",
            hint="Check the dataset's 'events' mapping in the config",
        )
    to_rename = {d: c for d, c in mapping.items() if d in present and d != c}
    if to_rename:
        raw.annotations.rename(to_rename)


def concatenate_runs(
    raws: list[mne.io.BaseRaw],
    labels: list[tuple[str, str, str]],
    *,
    subject: str,
    preload: bool = True,
) -> tuple[mne.io.BaseRaw, list[RunInfo]]:
    """Concatenate runs in time and record where each one sits.

    Parameters
    ----------
    raws : list of mne.io.BaseRaw
        Loaded runs (preloaded unless ``preload`` is False), all with the same channels and
        sampling frequency. A run whose channels are the first run's in another order is
        reordered to the first run's order (a copy; the given raw is left alone).
    labels : list of (session, run, source)
        One tuple per raw.
    subject : str
        For the error message.
    preload : bool
        False chains runs read from files without loading their signals (headers and
        annotations only).

    Raises
    ------
    DataError
        If the runs differ in sampling frequency or channel names.
    """
    first = raws[0]
    aligned = [first]
    for raw, (_, _, src) in zip(raws[1:], labels[1:], strict=True):
        if raw.info["sfreq"] != first.info["sfreq"]:
            raise DataError(
                f"sampling frequency {raw.info['sfreq']} Hz differs from the first run's "
                f"{first.info['sfreq']} Hz ({labels[0][2]})",
                subject=subject,
                file=src,
                expected="every run of a subject at the same sampling frequency",
                hint="Resample the runs to one rate before loading",
            )
        if raw.ch_names != first.ch_names:
            missing = sorted(set(first.ch_names) - set(raw.ch_names))
            extra = sorted(set(raw.ch_names) - set(first.ch_names))
            if not missing and not extra:  # the same channels in another order
                raw = raw.copy().reorder_channels(first.ch_names)
            else:
                raise DataError(
                    f"channels differ from the first run's ({labels[0][2]}): "
                    f"missing {missing[:10]}, extra {extra[:10]}",
                    subject=subject,
                    file=src,
                    expected="the same channels in every run",
                )
        aligned.append(raw)
    raws = aligned
    runs: list[RunInfo] = []
    t = 0.0
    sfreq = float(first.info["sfreq"])
    for raw, (ses, run, src) in zip(raws, labels, strict=True):
        dur = raw.n_times / sfreq
        runs.append(RunInfo(session=str(ses), run=str(run), source=str(src),
                            start=t, stop=t + dur, sfreq=float(raw.info["sfreq"])))
        t += dur
    if len(raws) == 1:
        return raws[0], runs
    raw = mne.concatenate_raws([r.copy() for r in raws], preload=preload, verbose="error")
    return raw, runs


def session_of_times(times: np.ndarray, runs: list[RunInfo]) -> tuple[np.ndarray, np.ndarray]:
    """Session and run label of each time (s) on the concatenated raw's time axis."""
    starts = np.array([r.start for r in runs])
    idx = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(runs) - 1)
    session = np.array([runs[i].session for i in idx], dtype=object)
    run = np.array([runs[i].run for i in idx], dtype=object)
    return session.astype(str), run.astype(str)
