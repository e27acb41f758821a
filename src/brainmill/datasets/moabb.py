"""Any MOABB dataset, read from its local cache (``pip install "brainmill[moabb]"``).

``source.dataset`` names a class of :mod:`moabb.datasets` (``PhysionetMI``, ``BNCI2014_001``,
…). MOABB stores each dataset under ``<root>/MNE-<sign>-data`` and finds ``<root>`` through
MNE's config keys ``MNE_DATASETS_<SIGN>_PATH`` and ``MNE_DATA``. For the duration of one
:func:`load` those keys are set in the environment (which MNE consults before its config file)
to ``source.path``, else ``$MNE_DATA``, else MNE's configured ``MNE_DATA``, else
``~/mne_data``; nothing is written to the user's ``~/.mne`` config, which MOABB would otherwise
do on first use.

Nothing is downloaded unless ``source.download`` is true. Offline, the load runs with the
network switched off: a file missing from the cache stops it at once with a :class:`DataError`
naming the file, instead of a download attempt or a network timeout; MOABB's NEMAR prefetch,
which always goes online, is skipped (files a past NEMAR download left in the cache are still
used).

Events come from the runs' annotations as MOABB sets them (named by ``dataset.event_id``, e.g.
``left_hand``, starting at the dataset's ``interval[0]`` after the cue), or, for a run without
any, from its stim channel mapped through ``dataset.event_id``. Stim channels are dropped.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import os
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mne
import numpy as np

from ..config import MOABBSource, mne_data_path
from ..errors import ConfigError, DataError
from .base import Recording, concatenate_runs, event_id_for, rename_event_annotations

INSTALL_HINT = 'pip install "brainmill[moabb]"'


# ------------------------------------------------------------------------ dataset classes


def _import_moabb() -> Any:
    try:
        import moabb
        import moabb.datasets  # noqa: F401
    except ImportError as err:
        raise ConfigError(
            f"source kind 'moabb' needs the MOABB package, which is not importable ({err}); "
            f"install it with: {INSTALL_HINT}"
        ) from err
    return moabb


def dataset_classes() -> dict[str, type]:
    """Concrete dataset classes exported by :mod:`moabb.datasets`, by class name."""
    moabb = _import_moabb()
    from moabb.datasets.base import BaseDataset

    return {
        name: cls
        for name, cls in inspect.getmembers(moabb.datasets, inspect.isclass)
        if issubclass(cls, BaseDataset) and not inspect.isabstract(cls)
    }


def dataset_class(name: str) -> type:
    """The :mod:`moabb.datasets` class called ``name``.

    Raises
    ------
    ConfigError
        If no such class exists; the message lists the closest names.
    """
    classes = dataset_classes()
    if name in classes:
        return classes[name]
    by_lower = {n.lower(): n for n in classes}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    hint = (f"did you mean {', '.join(repr(by_lower[c]) for c in close)}? " if close
            else "")
    raise ConfigError(
        f"source.dataset '{name}' is not a dataset of moabb {_import_moabb().__version__}; "
        f"{hint}({len(classes)} datasets, e.g. {', '.join(sorted(classes)[:5])}, …; "
        "see moabb.datasets)"
    )


def _subject_key(dataset: Any, subject: str, name: str) -> Any:
    """The entry of ``dataset.subject_list`` the label ``subject`` stands for."""
    subjects = list(dataset.subject_list)
    for s in subjects:
        if str(s) == subject:
            return s
    if subject.isdigit() and int(subject) in subjects:  # "001" for 1
        return int(subject)
    ints = [s for s in subjects if isinstance(s, int | np.integer)]
    if subjects and len(ints) == len(subjects) and sorted(ints) == list(
        range(min(ints), max(ints) + 1)
    ):
        listed = f"{min(ints)} to {max(ints)}"
    else:
        listed = ", ".join(str(s) for s in subjects[:20]) + (" …" if len(subjects) > 20 else "")
    raise DataError(
        f"'{subject}' is not a subject of MOABB dataset {name}",
        subject=subject,
        expected=f"one of dataset.subject_list: {listed}",
    )


# ------------------------------------------------------------------------------ the cache


def cache_root(source: MOABBSource) -> Path:
    """The folder MOABB stores ``MNE-<sign>-data`` in for this source.

    ``source.path``, then ``$MNE_DATA``, then ``MNE_DATA`` in MNE's config file, then
    ``~/mne_data`` as MOABB does.
    """
    root = mne_data_path(source.path)
    if root is not None:
        return root
    configured = mne.get_config("MNE_DATA")
    if configured:
        return Path(configured).expanduser()
    return Path("~", "mne_data").expanduser()


@contextlib.contextmanager
def _cache_env(root: Path, *, explicit: bool) -> Iterator[None]:
    """Point MNE's data-path keys at ``root`` through the environment, then restore them.

    MNE reads an environment variable before its config file, so this overrides the user's
    ``~/.mne/mne-python.json`` without rewriting it. With ``explicit`` (a configured root)
    every ``MNE_DATASETS_*_PATH`` key found in the environment or config file is shadowed
    too, as a per-dataset key would otherwise win over ``MNE_DATA``.
    """
    keys = {"MNE_DATA"}
    if explicit:
        configured = set(os.environ) | set(mne.get_config() or {})
        keys |= {k for k in configured
                 if k.startswith("MNE_DATASETS_") and k.endswith("_PATH")}
    saved = {k: os.environ.get(k) for k in keys}
    try:
        for k in keys:
            os.environ[k] = str(root)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _CacheMiss(Exception):
    """A file MOABB wanted to download while downloads are off."""


@contextlib.contextmanager
def _offline(misses: list[str]) -> Iterator[None]:
    """Refuse downloads and every network connection, recording what was wanted.

    MOABB's own downloader (``pooch.retrieve`` in :mod:`moabb.datasets.download`) raises
    :class:`_CacheMiss` with the expected path when the file is absent (a present file is
    only hash-checked, offline). Any other route to the network (a dataset's own
    ``requests`` call, MNE's fetchers, NEMAR) fails at the socket at once. The patches are
    process-wide while the block runs: loaders run one at a time per process.
    """
    from moabb.datasets import download

    def retrieve(url, known_hash=None, fname=None, path=None, *args, **kwargs):
        if fname is None:
            from pooch.utils import unique_file_name

            fname = unique_file_name(url)
        target = Path(path or ".") / fname
        if not target.is_file():
            misses.append(str(target))
            raise _CacheMiss(str(target))
        return real_retrieve(url, known_hash, fname, path, *args, **kwargs)

    def getaddrinfo(host, *args, **kwargs):
        misses.append(f"network connection to {host}")
        raise ConnectionRefusedError(f"brainmill: network access is off (download: false): {host}")

    def connect(sock, address, *args, **kwargs):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            misses.append(f"network connection to {address}")
            raise ConnectionRefusedError(
                f"brainmill: network access is off (download: false): {address}")
        return real_connect(sock, address, *args, **kwargs)

    real_retrieve = getattr(download, "retrieve", None)
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
    if real_retrieve is not None:
        download.retrieve = retrieve
    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect
    try:
        yield
    finally:
        socket.getaddrinfo = real_getaddrinfo
        socket.socket.connect = real_connect
        if real_retrieve is not None:
            download.retrieve = real_retrieve


def _get_data(dataset: Any, key: Any, source: MOABBSource, subject: str) -> dict:
    """``dataset.get_data([key])[key]`` from the cache; downloads only if allowed."""
    name = source.dataset
    root = cache_root(source)
    explicit = mne_data_path(source.path) is not None
    hint = (f"Point the source's 'path' or MNE_DATA at the folder holding MOABB's "
            f"MNE-*-data folders, or set 'download: true' to let MOABB fetch subject "
            f"{subject} of {name}")
    if source.download:
        root.mkdir(parents=True, exist_ok=True)
    elif not root.is_dir():
        raise DataError(f"the MOABB cache folder {root} does not exist", subject=subject,
                        file=root, expected=f"{name}'s files for subject {subject} there",
                        hint=hint)
    misses: list[str] = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(_cache_env(root, explicit=explicit))
        stack.enter_context(mne.utils.use_log_level("error"))
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", category=FutureWarning)
        if not source.download:
            stack.enter_context(_offline(misses))
            if hasattr(dataset, "_prefetch_nemar_sourcedata"):
                # MOABB >= 1.5 tries NEMAR before loading, always online and with retries
                # (~40 s without a network); the files it would fetch are the ones below.
                dataset._prefetch_nemar_sourcedata = lambda *a, **k: None
        try:
            data = dataset.get_data(subjects=[key])
        except Exception as err:
            if misses:
                network = misses[0].startswith("network")
                raise DataError(
                    f"subject {subject} of MOABB dataset {name} is not in the local cache "
                    f"{root} (download: false)"
                    + (f"; MOABB needed a {misses[0]}" if network else ""),
                    subject=subject,
                    file=root if network else misses[0],
                    expected=f"MOABB's files for {name} under {root}",
                    hint=hint,
                ) from err
            verb = "download or read" if source.download else "read"
            raise DataError(
                f"MOABB could not {verb} subject {subject} of {name}: "
                f"{type(err).__name__}: {err}",
                subject=subject,
                file=root,
                hint="Check the cache folder (delete a damaged file and fetch it again)"
                + ("" if source.download else ", or set 'download: true'"),
            ) from err
    sessions = data.get(key)
    if not sessions or not any(sessions.values()):
        raise DataError(f"MOABB returned no runs for subject {subject} of {name}",
                        subject=subject, file=root, expected="at least one session with runs")
    return sessions


# ------------------------------------------------------------------------------- events


def _code_to_name(event_id: dict[str, Any]) -> dict[int, str]:
    """Invert MOABB's ``event_id`` (name → code or list of codes)."""
    out: dict[int, str] = {}
    for name, codes in event_id.items():
        for code in codes if isinstance(codes, list | tuple) else [codes]:
            out[int(code)] = name
    return out


def _events_to_annotations(raw: mne.io.BaseRaw, event_id: dict[str, Any]) -> str:
    """Make sure ``raw`` carries MOABB's events as annotations; drop its stim channels.

    Returns where the events came from: ``"annotations"``, ``"stim"`` or ``"none"``.
    """
    stim = [raw.ch_names[i] for i in mne.pick_types(raw.info, meg=False, stim=True)]
    names = set(event_id)
    origin = "none"
    if names & set(raw.annotations.description):
        origin = "annotations"
    elif stim:
        events = mne.find_events(raw, stim_channel=stim, shortest_event=1, initial_event=True,
                                 consecutive=True, verbose="error")
        codes = _code_to_name(event_id)
        events = events[np.isin(events[:, 2], list(codes))]
        if len(events):
            # annotation onsets count from sample 0 (first_samp included), with or without
            # a measurement date, like find_events' sample numbers
            raw.annotations.append(events[:, 0] / raw.info["sfreq"], 0.0,
                                   [codes[int(c)] for c in events[:, 2]])
            origin = "stim"
    if stim:
        raw.drop_channels(stim)
    return origin


def _json_able(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_able(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_json_able(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------------- load


def load(
    source: MOABBSource, subject: str, events: dict[str, list[str]], *, seed: int
) -> Recording:
    """Load one subject of a MOABB dataset, every session and run concatenated.

    Parameters
    ----------
    source : MOABBSource
        Dataset class name, cache path and whether a download is allowed.
    subject : str
        Subject label as in ``dataset.subject_list`` (``"1"``; ``"001"`` works for numbers).
    events : dict of str to list of str
        Class name → MOABB event names, e.g. ``{"left_hand": ["left_hand"]}``.
    seed : int
        Unused (the data are real); part of the loader contract.

    Returns
    -------
    Recording
        The runs in MOABB's order with MOABB's session and run names; stim channels dropped;
        annotations named by MOABB's events, then renamed to the configured classes.

    Raises
    ------
    ConfigError
        MOABB is not installed, or ``source.dataset`` is not one of its datasets.
    DataError
        Unknown subject, the subject missing from the cache with ``download: false``, a
        failed download or read, or none of the configured events present.
    """
    del seed
    moabb = _import_moabb()
    name = source.dataset
    cls = dataset_class(name)
    try:
        dataset = cls()
    except Exception as err:
        raise ConfigError(
            f"cannot create MOABB dataset {name}: {type(err).__name__}: {err}") from err
    key = _subject_key(dataset, subject, name)
    sessions = _get_data(dataset, key, source, subject)

    raws: list[mne.io.BaseRaw] = []
    labels: list[tuple[str, str, str]] = []
    origins: dict[str, int] = {}
    for session, runs in sessions.items():
        for run, raw in runs.items():
            origin = _events_to_annotations(raw, dataset.event_id)
            origins[origin] = origins.get(origin, 0) + 1
            raws.append(raw)
            labels.append((str(session), str(run), f"moabb:{name}"))
    raw, run_infos = concatenate_runs(raws, labels, subject=subject)
    rename_event_annotations(raw, events, subject=subject, file=f"moabb:{name}")
    interval = getattr(dataset, "interval", None)
    metadata: dict[str, Any] = {
        "loader": "moabb",
        "dataset": name,
        "code": getattr(dataset, "code", name),
        "moabb_version": moabb.__version__,
        "event_id": _json_able(dataset.event_id),
        "paradigm": getattr(dataset, "paradigm", None),
        "interval": None if interval is None else _json_able(list(interval)),
        "events_from": origins,
        "cache": str(cache_root(source)),
    }
    return Recording(
        raw=raw,
        subject=subject,
        event_id=event_id_for(list(events)),
        runs=run_infos,
        metadata=metadata,
    )
