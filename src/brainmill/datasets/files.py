"""Recordings in any file format MNE reads, found by a glob pattern.

``source.root`` + ``source.pattern`` locate a subject's runs: ``{subject}`` is replaced by the
subject label, ``{session}`` (optional) matches one path component whose text becomes the
session label, and shell globs (``*``, ``?``, ``[..]``, ``**``) are allowed. Runs are ordered by
session, then file name (digits compare as numbers, so ``run2`` precedes ``run10``).

Events come from the files' annotations or, with ``source.stim_channel``, from that channel
(:func:`mne.find_events`); the codes become annotations ``"1"``, ``"2"``, … and the stim
channel is dropped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import mne
import numpy as np

from ..config import FilesSource
from ..errors import DataError
from .base import (
    Recording,
    concatenate_runs,
    event_id_for,
    is_mark,
    rename_event_annotations,
)
from .integrity import check_events_kept, checked_reading

#: File endings read, longest first so ``.fif.gz`` wins over ``.gz``.
EXTENSIONS = (".fif.gz", ".edf", ".bdf", ".gdf", ".fif", ".vhdr", ".set")
#: Sidecars that sit next to a header file and are read through it.
SIDECARS = {".fdt": (".set",), ".vmrk": (".vhdr",), ".eeg": (".vhdr",)}
#: Later parts of a FIF that MNE split at 2 GB: ``name-1.fif`` (its default naming) and
#: ``…_split-02_….fif`` (BIDS naming). Reading the first part reads them too.
_NEUROMAG_PART = re.compile(r"^(?P<base>.+)-(?P<n>[1-9]\d*)(?P<ext>\.fif(?:\.gz)?)$", re.I)
_BIDS_PART = re.compile(r"_split-(?P<n>\d+)", re.I)


def _extension(path: Path) -> str | None:
    name = path.name.lower()
    return next((ext for ext in EXTENSIONS if name.endswith(ext)), None)


def _stem(path: Path) -> str:
    ext = _extension(path)
    return path.name[: -len(ext)] if ext else path.stem


def _first_split_part(path: Path) -> Path | None:
    """The first part of the split FIF that ``path`` would continue, by name; else None.

    MNE's two namings: ``name-1.fif`` continues ``name.fif``, ``…_split-02_…`` continues
    ``…_split-01_…``. Only a name test: :func:`load` reads the first part and leaves ``path``
    out only if that part really reads it.
    """
    if _extension(path) not in (".fif", ".fif.gz"):
        return None
    m = _NEUROMAG_PART.match(path.name)
    if m:
        return path.with_name(m["base"] + m["ext"])
    m = _BIDS_PART.search(path.name)
    if m and int(m["n"]) > 1:
        return path.with_name(f"{path.name[:m.start()]}_split-{1:0{len(m['n'])}d}"
                              f"{path.name[m.end():]}")
    return None


def _natural_key(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def _glob_to_regex(pattern: str) -> str:
    """Translate a path glob (``**``, ``*``, ``?``, ``[..]``) into a regular expression."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def resolve_pattern(pattern: str, subject: str) -> tuple[str, re.Pattern[str]]:
    """The glob for one subject and a regex that extracts ``session`` from a match.

    Parameters
    ----------
    pattern : str
        ``source.pattern``, e.g. ``"sub-{subject}/ses-{session}/*.edf"``.
    subject : str
        Subject label substituted for ``{subject}``.

    Returns
    -------
    glob : str
        Pattern with ``{subject}`` filled in and ``{session}`` as ``*``.
    regex : re.Pattern
        Full match on a root-relative POSIX path; group ``session`` when present.
    """
    parts = re.split(r"(\{subject\}|\{session\})", pattern)
    glob_parts, regex_parts, seen_session = [], [], False
    for part in parts:
        if part == "{subject}":
            glob_parts.append(re.sub(r"([*?\[])", r"[\1]", subject))
            regex_parts.append(re.escape(subject))
        elif part == "{session}":
            glob_parts.append("*")
            # a repeated placeholder must match the same text
            regex_parts.append("(?P=session)" if seen_session else "(?P<session>[^/]+)")
            seen_session = True
        else:
            glob_parts.append(part)
            regex_parts.append(_glob_to_regex(part))
    return "".join(glob_parts), re.compile("".join(regex_parts))


def find_runs(source: FilesSource, subject: str) -> list[tuple[str, Path]]:
    """Files of one subject as ``(session, path)``, in session then file-name order.

    Raises
    ------
    DataError
        When nothing matches the pattern.
    """
    root = Path(os.path.expandvars(os.path.expanduser(source.root)))
    if not root.is_dir():
        raise DataError(
            "the source's root folder does not exist",
            subject=subject,
            file=root,
            expected="a folder holding the recordings (source.root)",
            hint="Fix source.root in the config (relative paths are taken from the folder "
                 "Snakemake runs in)",
        )
    glob, regex = resolve_pattern(source.pattern, subject)
    matches = []
    for path in root.glob(glob):
        if path.is_dir():
            continue
        rel = path.relative_to(root).as_posix()
        m = regex.fullmatch(rel)
        if m is None:  # a glob '*' that swallowed a '/' the regex refuses: not ours
            continue
        ext = path.suffix.lower()
        if ext in SIDECARS and any(
            path.with_suffix(h).exists() for h in SIDECARS[ext]
        ):
            continue
        session = m.groupdict().get("session") or "1"
        matches.append((session, path))
    if not matches:
        raise DataError(
            "no file matches the pattern",
            subject=subject,
            file=root / glob,
            expected=f"at least one recording matching '{source.pattern}' under {root}",
            hint="Check the source's 'root' and 'pattern' and the subject label",
        )
    matches.sort(key=lambda sp: (_natural_key(sp[0]), _natural_key(sp[1].name),
                                 _natural_key(sp[1].as_posix())))
    return matches


def read_file(path: Path, subject: str, *, preload: bool = True) -> mne.io.BaseRaw:
    """Read one recording, turning every failure into a :class:`DataError`.

    ``preload=False`` reads the header and annotations only (``brainmill validate``); a
    truncated EDF/BDF is still caught, as MNE compares the header with the file size.
    """
    ext = _extension(path)
    if ext is None:
        raise DataError(
            f"unsupported file format '{''.join(path.suffixes) or path.name}'",
            subject=subject,
            file=path,
            expected=f"one of {', '.join(EXTENSIONS)}",
            hint="Narrow the source's 'pattern' to recordings, or convert the file",
        )
    if not os.access(path, os.R_OK):
        raise DataError("the file cannot be read (no read permission)", subject=subject,
                        file=path, hint="Fix the file's permissions")
    if path.stat().st_size == 0:
        raise DataError("the file is empty (0 bytes)", subject=subject, file=path,
                        hint="Copy or export the recording again")
    with checked_reading(path, subject, f"a complete, valid {ext} recording"):
        return mne.io.read_raw(path, preload=preload, verbose="warning")


def events_from_stim(raw: mne.io.BaseRaw, stim_channel: str, *, subject: str,
                     file: Path) -> None:
    """Add the stim channel's events as annotations ``"<code>"`` and drop the channel."""
    if stim_channel not in raw.ch_names:
        raise DataError(
            f"stim channel '{stim_channel}' is not in the recording",
            subject=subject,
            file=file,
            expected=f"one of {raw.ch_names[:20]}",
            hint="Fix the source's 'stim_channel'",
        )
    found = mne.find_events(raw, stim_channel=stim_channel, shortest_event=1,
                            consecutive=True, verbose="error")
    if len(found):
        codes = np.unique(found[:, 2])
        annot = mne.annotations_from_events(
            found, raw.info["sfreq"], event_desc={int(c): str(int(c)) for c in codes},
            first_samp=raw.first_samp, orig_time=raw.annotations.orig_time,
        )
        raw.set_annotations(raw.annotations + annot)
    raw.drop_channels([stim_channel])


def load(
    source: FilesSource, subject: str, events: dict[str, list[str]], *, seed: int,
    preload: bool = True,
) -> Recording:
    """Load one subject's recordings matched by ``source.pattern``.

    Parameters
    ----------
    source : FilesSource
        Root folder, pattern and optional stim channel.
    subject : str
        Subject label substituted for ``{subject}``.
    events : dict of str to list of str
        Class name → annotation descriptions (or stim codes as strings, ``"1"``).
    seed : int
        Unused; part of the loader contract.
    preload : bool
        False reads headers and annotations only (``brainmill validate``); the runs are then
        chained without reading their signals.

    Returns
    -------
    Recording
        Runs concatenated in (session, file name) order; session labels from ``{session}``
        (else ``"1"``); run labels are the file names without extension.

    Raises
    ------
    DataError
        No matching file; an unsupported, empty, unreadable, truncated or corrupt file; a
        missing stim channel; no events at all; none of the configured events; runs that
        differ in sampling rate or channels.
    """
    del seed
    found = find_runs(source, subject)
    matched = {p for _, p in found}
    parts = {p for p in matched if _first_split_part(p) in matched}
    read: dict[Path, mne.io.BaseRaw] = {}
    covered: set[Path] = set()  # later parts of split FIFs, read through their first part
    for _, path in sorted(found, key=lambda sp: sp[1] in parts):  # first parts first (stable)
        if path.resolve() in covered:
            continue
        raw = read_file(path, subject, preload=preload)
        check_events_kept(raw, path, subject, events)
        covered.update(Path(f).resolve() for f in raw.filenames[1:] if f is not None)
        read[path] = raw
    found = [sp for sp in found if sp[1] in read]
    raws, labels = [], []
    for session, path in found:
        raw = read[path]
        if source.stim_channel:
            events_from_stim(raw, source.stim_channel, subject=subject, file=path)
        raws.append(raw)
        labels.append((session, _stem(path), str(path)))
    paths = [p for _, p in found]
    where = str(paths[0]) if len(paths) == 1 else (
        f"{len(paths)} files: {', '.join(str(p) for p in paths[:3])}"
        + (", …" if len(paths) > 3 else "")
    )
    n_events = sum(1 for r in raws for d in r.annotations.description if not is_mark(d))
    if n_events == 0:
        origin = f"stim channel '{source.stim_channel}'" if source.stim_channel else "annotations"
        raise DataError(
            f"the recording holds no events ({origin} empty)",
            subject=subject,
            file=where,
            expected=f"events {sorted({d for v in events.values() for d in v})}",
            hint="Set the source's 'stim_channel' if events are on a trigger channel"
            if not source.stim_channel else "Check the trigger channel's name",
        )
    raw, runs = concatenate_runs(raws, labels, subject=subject, preload=preload)
    rename_event_annotations(raw, events, subject=subject, file=where)
    metadata: dict[str, Any] = {
        "loader": "files",
        "root": source.root,
        "pattern": source.pattern,
        "stim_channel": source.stim_channel,
        "files": [str(p) for p in paths],
        # later parts of FIFs split at 2 GB, read through their first part
        "split_parts": sorted(str(p) for p in matched - set(paths)),
    }
    return Recording(raw=raw, subject=subject, event_id=event_id_for(list(events)),
                     runs=runs, metadata=metadata)
