"""Helpers of the loaders for local copies of datasets that have no fetcher (Bonn, DREAMS).

Locating: a source's ``path`` (else ``$MNE_DATA``, else MNE's configured data path, else
``~/mne_data``) is the *root*. The dataset lives in ``<root>/<folder>`` (e.g.
``bonn-epilepsy``) when that folder exists, else in the root itself, so both
``MNE_DATA=../shared/data`` and a ``path`` pointing straight at a download work.

Joining: :func:`join_runs` concatenates runs like :func:`mne.concatenate_raws`, with an
``EDGE boundary`` annotation (duration 0) at every join so that filters stop there, but
without MNE's ``BAD boundary``. These loaders cut their labelled windows inside each run, so
no window straddles a join, and a zero-duration ``BAD boundary`` at the first sample of a run
would reject the window starting there as soon as its onset is off by a rounding error: MNE
drops an epoch when a BAD annotation's onset lies strictly inside it, and FIF stores onsets
in float32 (up to 0.5 ms off after 2.6 h), so at Bonn's 173.61 Hz the first window of 224 of
the 400 segments was dropped after the raw.fif round trip. Every annotation is placed at an
exact sample time, ``sample / sfreq``.
"""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np

from ..config import mne_data_path
from .base import RunInfo


def data_root(path: str | None) -> Path:
    """``path``, then ``$MNE_DATA``, then MNE's config ``MNE_DATA``, then ``~/mne_data``."""
    root = mne_data_path(path)
    if root is not None:
        return root
    configured = mne.get_config("MNE_DATA")
    return Path(configured).expanduser() if configured else Path("~", "mne_data").expanduser()


def dataset_folder(path: str | None, folder: str) -> Path:
    """The folder holding the dataset's files: ``<root>/<folder>`` if it exists, else root."""
    root = data_root(path)
    return root / folder if (root / folder).is_dir() else root


def fif_sfreq(sfreq: float) -> float:
    """``sfreq`` as FIF stores it (float32).

    A raw built at 173.61 Hz is read back from ``raw.fif`` at 173.61000061035156 Hz, so the
    time of a sample differs before and after the round trip and a window's onset can fall a
    hair before its run's start (then :func:`~brainmill.datasets.base.session_of_times` gives
    it the previous run). Building the raw at the float32 value from the start makes both
    identical; the difference is 3.5e-9 relative.
    """
    return float(np.float32(sfreq))


def join_runs(
    raws: list[mne.io.BaseRaw], labels: list[tuple[str, str, str]]
) -> tuple[mne.io.RawArray, list[RunInfo]]:
    """Concatenate runs in time with boundary annotations at exact sample times.

    Parameters
    ----------
    raws : list of mne.io.BaseRaw
        Preloaded runs built by the loader: same channels and sampling frequency, no
        ``first_samp`` offset, annotations at sample times.
    labels : list of (session, run, source)
        One tuple per raw.

    Returns
    -------
    raw : mne.io.RawArray
        The runs one after another; their annotations moved by the run's start; ``EDGE
        boundary`` (duration 0) at every join.
    runs : list of RunInfo
        ``start = first sample / sfreq`` of each run, ``stop`` the next run's start.
    """
    first = raws[0]
    sfreq = float(first.info["sfreq"])
    for raw, (_, _, src) in zip(raws[1:], labels[1:], strict=True):
        if raw.ch_names != first.ch_names or raw.info["sfreq"] != sfreq:
            raise ValueError(f"run {src} has channels {raw.ch_names} at {raw.info['sfreq']} Hz; "
                             f"the first run has {first.ch_names} at {sfreq} Hz")
    offsets = np.concatenate([[0], np.cumsum([r.n_times for r in raws])])
    onsets, durations, descriptions = [], [], []
    runs = []
    for raw, (ses, run, src), offset, end in zip(raws, labels, offsets[:-1], offsets[1:],
                                                 strict=True):
        runs.append(RunInfo(session=str(ses), run=str(run), source=str(src),
                            start=float(offset / sfreq), stop=float(end / sfreq),
                            sfreq=float(raw.info["sfreq"])))
        if offset > 0:
            onsets.append(offset / sfreq)
            durations.append(0.0)
            descriptions.append("EDGE boundary")
        ann = raw.annotations
        onsets += list((np.round(ann.onset * sfreq) + offset) / sfreq)
        durations += list(ann.duration)
        descriptions += list(ann.description)
    data = np.concatenate([r.get_data() for r in raws], axis=1)
    joined = mne.io.RawArray(data, first.info.copy(), verbose="error")
    joined.set_annotations(mne.Annotations(onsets, durations, descriptions))
    return joined, runs
