"""Atomic writes and the on-disk formats that connect the workflow's stages.

Every writer here writes to a temporary name in the destination folder and renames it into
place, so a killed job never leaves a half-written file that a later run would trust.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import WriteError

#: errno values that mean "the file system has no room for this file" (disk full, quota,
#: file-size limit) or refuses writes (read-only); reported as a :class:`WriteError`.
_NO_ROOM = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
            errno.EFBIG: "file too large for the file system or the process's file-size limit",
            errno.EROFS: "read-only file system"}
_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"


def _temporary_prefix(path: Path) -> str:
    """``.{name}.`` : the hidden prefix of every temporary file of ``path``."""
    return f".{path.name}."


def _remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete temporary files of ``path`` left by writers on this host that no longer run.

    A job killed between creating its temporary file and renaming it (SIGKILL, power loss)
    leaves ``.{name}.{host}-{pid}.*.tmp*`` behind. Nothing reads such names (neither brainmill
    nor Snakemake treat them as outputs); this only tidies them up. Files of a process that is
    still alive, or of another host (a shared file system), are left alone.
    """
    pattern = re.compile(re.escape(_temporary_prefix(path)) + r"(?P<host>[A-Za-z0-9_]+)-"
                         r"(?P<pid>\d+)\..*\.tmp")
    removed = []
    for leftover in path.parent.glob(_temporary_prefix(path) + "*.tmp*"):
        m = pattern.match(leftover.name)
        if m is None or m["host"] != _HOST or _process_alive(int(m["pid"])):
            continue
        if leftover.is_dir():  # the folder of an atomic_fif
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        removed.append(leftover)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


@contextlib.contextmanager
def _no_room_is_a_write_error(path: Path) -> Iterator[None]:
    """Re-raise a disk-full, quota, file-size-limit or read-only ``OSError`` as WriteError."""
    try:
        yield
    except OSError as err:
        if err.errno in _NO_ROOM:
            raise WriteError(path, _NO_ROOM[err.errno]) from err
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    Parameters
    ----------
    path : str | Path
        The final destination.
    suffix : str | None
        Ending of the temporary name (MNE checks endings such as ``_raw.fif``). Defaults to
        the destination's own suffix.

    Raises
    ------
    WriteError
        When the file system has no room for the file (disk full, quota, file-size limit) or
        is read-only; names ``path``. The original ``OSError`` is chained.

    Notes
    -----
    On an exception the temporary file is removed and ``path`` is left untouched. The
    temporary name is hidden and carries this host and process id
    (``.{name}.{host}-{pid}.{random}.tmp{suffix}``), so a leftover of a killed writer is never
    mistaken for the output and is removed by the next write of the same file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f"{_temporary_prefix(path)}{_HOST}-{os.getpid()}.",
                               suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _no_room_is_a_write_error(path):
            yield tmp_path
            os.replace(tmp_path, path)
    finally:
        if tmp_path.exists() or tmp_path.is_symlink():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_fif(path: str | Path) -> Iterator[Path]:
    """Yield the path to save a FIF file (raw or epochs) at; move it onto ``path`` on success.

    MNE splits a FIF larger than 2 GB into ``name.fif``, ``name-1.fif``, … and writes each next
    part's *name* into the part before, so the parts cannot be saved under a temporary name
    and renamed (:func:`atomic_path` would rename the first part only, which then points at a
    hidden temporary file). They are saved under their final names in a hidden temporary
    folder next to ``path`` and moved out, the later parts first and ``path`` last, so ``path``
    appears only once its parts are in place. An earlier save of ``path`` (its first part
    first) and its parts are removed before the new parts are moved in.

    Raises
    ------
    WriteError
        As :func:`atomic_path`; nothing is left in the destination folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    folder = Path(tempfile.mkdtemp(prefix=f"{_temporary_prefix(path)}{_HOST}-{os.getpid()}.",
                                   suffix=".tmpdir", dir=path.parent))
    first = folder / path.name
    try:
        with _no_room_is_a_write_error(path):
            yield first
            parts = sorted(p for p in folder.iterdir() if p != first)
            # the old file goes first: an old first part must never point at new later parts
            path.unlink(missing_ok=True)
            for stale in _split_parts(path):
                stale.unlink()
            for part in parts:
                os.replace(part, path.parent / part.name)
            os.replace(first, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _split_parts(path: Path) -> list[Path]:
    """Later parts of a split FIF ``path`` in MNE's naming (``raw-1.fif`` for ``raw.fif``)."""
    stem, suffix = path.name[: -len(path.suffix)], path.suffix
    pattern = re.compile(re.escape(stem) + r"-[1-9]\d*" + re.escape(suffix) + "$")
    return [p for p in path.parent.glob(f"{stem}-*{suffix}") if pattern.match(p.name)]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (numpy scalars and arrays allowed)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default, allow_nan=True) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


def write_npz(path: str | Path, **arrays: Any) -> None:
    """Write arrays to a compressed ``.npz`` atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


@dataclass
class FeatureSet:
    """Per-epoch features of one subject, as stored in ``features/{name}.npz``.

    Attributes
    ----------
    X : ndarray, shape (n_epochs, ...)
        The features, e.g. ``(n_epochs, n_channels, n_channels)`` covariance matrices.
    y : ndarray of int, shape (n_epochs,)
        Class index of each epoch, into ``classes``.
    classes : list of str
        Class names, in the order of the configured events.
    session : ndarray of str, shape (n_epochs,)
        Session label of each epoch.
    run : ndarray of str, shape (n_epochs,)
        Run label of each epoch.
    meta : dict
        JSON-able parameters and library versions that produced the features.
    """

    X: np.ndarray
    y: np.ndarray
    classes: list[str]
    session: np.ndarray
    run: np.ndarray
    meta: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        """Write the set to ``path`` atomically."""
        write_npz(
            path,
            X=self.X,
            y=np.asarray(self.y, dtype=np.int64),
            classes=np.asarray(self.classes, dtype=str),
            session=np.asarray(self.session, dtype=str),
            run=np.asarray(self.run, dtype=str),
            meta=np.asarray(json.dumps(self.meta, default=_json_default)),
        )

    @classmethod
    def load(cls, path: str | Path) -> FeatureSet:
        """Read a set written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            return cls(
                X=data["X"],
                y=data["y"],
                classes=[str(c) for c in data["classes"]],
                session=data["session"],
                run=data["run"],
                meta=json.loads(str(data["meta"])),
            )


def data_digest(*arrays: Any) -> str:
    """A short sha256 of arrays' shapes, dtypes and bytes (or of strings), for run stamps.

    :func:`fresh_run_dir` stamps it with the parameters so that a training job rerun on
    changed data (say, a new band-pass) never resumes a checkpoint made from the old data.
    """
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.shape}{a.dtype.str}".encode())
        h.update(a.tobytes() if a.dtype != object else repr(a.tolist()).encode())
    return h.hexdigest()[:16]


def fresh_run_dir(run_dir: str | Path, what: str, params: dict[str, Any]) -> None:
    """Keep ``run_dir``'s checkpoint only if it was made with the same parameters.

    Snakemake reruns a training job when its parameters or its input files change; the old
    checkpoint then belongs to another run and is removed (the trainer would refuse it, or,
    for data of the same shape, silently continue it), while a checkpoint left by a killed job
    with the same parameters is resumed. Include a :func:`data_digest` of the training data in
    ``params``. ``params`` is stamped into
    ``run_dir/params.json``; ``what`` names the model in the log.
    """
    run_dir = Path(run_dir)
    stamp = run_dir / "params.json"
    if run_dir.exists() and (not stamp.exists() or read_json(stamp) != params):
        logging.getLogger("brainmill").info(
            "%s: parameters changed since %s was written; starting afresh", what, run_dir)
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not stamp.exists():
        write_json(stamp, params)
