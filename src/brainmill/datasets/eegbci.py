"""PhysioNet EEG Motor Movement/Imagery (eegmmidb) through :mod:`mne.datasets.eegbci`.

The files are read from MNE's cache layout, ``<root>/MNE-eegbci-data/files/eegmmidb/1.0.0/
S001/S001R04.edf``, where ``<root>`` is ``source.path``, else ``$MNE_DATA``, else MNE's own
configured data path. Nothing is downloaded unless ``source.download`` is true: the expected
files are checked first, so a missing cache fails at once with the fix instead of a network
timeout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mne

from ..config import EEGBCISource, mne_data_path
from ..errors import DataError
from ..montage import make_standard_montage
from .base import Recording, concatenate_runs, event_id_for, rename_event_annotations
from .integrity import checked_reading

#: Sub-folders of the cache root that mirror the PhysioNet URL (``files/eegmmidb/1.0.0``).
CACHE_SUBDIR = Path("MNE-eegbci-data", "files", "eegmmidb", "1.0.0")
N_SUBJECTS = 109
MONTAGE = "standard_1005"


def cache_root(source: EEGBCISource) -> Path:
    """The folder holding ``MNE-eegbci-data``.

    ``source.path``, then ``$MNE_DATA``, then MNE's config (``MNE_DATASETS_EEGBCI_PATH`` or
    ``MNE_DATA`` in ``~/.mne/mne-python.json``), then ``~/mne_data`` as MNE does.
    """
    root = mne_data_path(source.path)
    if root is not None:
        return root
    configured = mne.get_config("MNE_DATASETS_EEGBCI_PATH") or mne.get_config("MNE_DATA")
    if configured:
        return Path(configured).expanduser()
    return Path("~", "mne_data").expanduser()


def expected_files(root: Path, subject: int, runs: list[int]) -> list[Path]:
    """Paths where MNE's fetcher stores (or looks for) the runs of one subject."""
    folder = root / CACHE_SUBDIR / f"S{subject:03d}"
    return [folder / f"S{subject:03d}R{run:02d}.edf" for run in runs]


def _subject_number(subject: str) -> int:
    try:
        number = int(subject)
    except ValueError:
        number = -1
    if not 1 <= number <= N_SUBJECTS:
        raise DataError(
            f"'{subject}' is not an eegmmidb subject",
            subject=subject,
            expected=f"a subject number from 1 to {N_SUBJECTS}",
        )
    return number


def _fetch(source: EEGBCISource, subject: str, number: int) -> list[Path]:
    root = cache_root(source)
    paths = expected_files(root, number, source.runs)
    missing = [p for p in paths if not p.is_file()]
    if missing and not source.download:
        listed = ", ".join(str(p) for p in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(
            f"run file(s) not found in the local cache: {listed}{more}",
            subject=subject,
            file=missing[0],
            expected=f"MNE's eegbci cache layout under {root}",
            hint="Point MNE_DATA or the source's 'path' at the folder holding "
            "MNE-eegbci-data, or set 'download: true' to fetch the files from PhysioNet",
        )
    if missing:
        root.mkdir(parents=True, exist_ok=True)
        try:
            paths = mne.datasets.eegbci.load_data(
                number, source.runs, path=root, update_path=False, verbose="error"
            )
        except Exception as err:  # network, checksum and disk errors alike
            raise DataError(
                f"download from PhysioNet failed: {type(err).__name__}: {err}",
                subject=subject,
                file=missing[0],
                hint="Check the network, or copy the files into the cache by hand",
            ) from err
    return [Path(p) for p in paths]


def _read_run(path: Path, subject: str) -> mne.io.BaseRaw:
    with checked_reading(path, subject, "a complete PhysioNet EDF run",
                         hint="Delete it and fetch it again (download: true)"):
        raw = mne.io.read_raw_edf(path, preload=True, verbose="warning")
    mne.datasets.eegbci.standardize(raw)
    raw.set_montage(make_standard_montage(MONTAGE), on_missing="warn", verbose="error")
    return raw


def load(
    source: EEGBCISource, subject: str, events: dict[str, list[str]], *, seed: int
) -> Recording:
    """Load one eegmmidb subject's runs, concatenated.

    Parameters
    ----------
    source : EEGBCISource
        Runs, cache path and whether a download is allowed.
    subject : str
        Subject number, ``"1"`` to ``"109"`` (``"001"`` works too).
    events : dict of str to list of str
        Class name → annotations, e.g. ``{"left_hand": ["T1"], "right_hand": ["T2"]}``.
    seed : int
        Unused (the data are real); part of the loader contract.

    Returns
    -------
    Recording
        64 EEG channels at 160 Hz named in 10-05 style with ``standard_1005`` positions; one
        session ``"1"``; run labels are the run numbers.

    Raises
    ------
    DataError
        Unknown subject, files missing from the cache with ``download: false``, an
        unreadable file, or none of the configured events present.
    """
    del seed
    number = _subject_number(subject)
    paths = _fetch(source, subject, number)
    raws = [_read_run(p, subject) for p in paths]
    labels = [("1", str(run), str(p)) for run, p in zip(source.runs, paths, strict=True)]
    raw, runs = concatenate_runs(raws, labels, subject=subject)
    files = str(paths[0]) if len(paths) == 1 else f"{paths[0].parent}/ (runs {source.runs})"
    rename_event_annotations(raw, events, subject=subject, file=files)
    metadata: dict[str, Any] = {
        "loader": "eegbci",
        "dataset": "PhysioNet EEG Motor Movement/Imagery (eegmmidb 1.0.0)",
        "runs": list(source.runs),
        "cache": str(cache_root(source)),
        "files": [str(p) for p in paths],
    }
    return Recording(
        raw=raw,
        subject=subject,
        event_id=event_id_for(list(events)),
        runs=runs,
        metadata=metadata,
    )
