"""Warnings MNE gives while reading that mean the data read are not the data recorded.

MNE reads a truncated EDF/BDF (its header promises more records than the file holds), a FIF cut
short, or a BrainVision file whose ``.eeg`` lost its end, and only warns: the recording comes
back shorter, with the events past its new end dropped. :func:`checked_reading` turns the
truncation warnings into a :class:`~brainmill.errors.DataError` naming the file and the subject,
for every loader that reads files with MNE (files, BIDS, PhysioNet's cache);
:func:`check_events_kept` does the same for BrainVision, whose header gives nothing to compare
with (MNE's "Omitted N annotation(s)" warning alone would also fire for a stray marker).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import mne

from ..errors import DataError

#: Warning texts that mean the file is truncated or corrupt.
FATAL_WARNINGS = ("does not match the file size", "Invalid tag with only")
@contextmanager
def checked_reading(path: Path | str, subject: str, expected: str, *, reader: str = "MNE",
                    hint: str = "The file is corrupt, truncated or not what its extension "
                                "says; copy or export the recording again") -> Iterator[None]:
    """Read a recording inside the block; any failure becomes a :class:`DataError`.

    An exception raised in the block (readers raise many types for a broken file) and a
    truncation warning (:data:`FATAL_WARNINGS`, for which MNE returns a shorter recording) are
    both raised as a :class:`DataError` naming the file and the subject. Other warnings are
    passed on unchanged once the block ends.

    Parameters
    ----------
    path : path-like
        The file being read (named in the error).
    subject : str
        The subject it belongs to (named in the error).
    expected : str
        What the file should have been, e.g. ``"a complete .edf recording"``.
    reader : str
        Who reads it, for the message: ``"<reader> cannot read the file: …"``.
    hint : str
        What to do about it.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except (DataError, MemoryError, RecursionError):
            raise  # already explained, or not the file's fault
        except Exception as err:
            raise DataError(f"{reader} cannot read the file: {type(err).__name__}: "
                            f"{err}".rstrip(": "), subject=subject, file=path,
                            expected=expected, hint=hint) from err
    for w in caught:
        text = str(w.message)
        if any(f in text for f in FATAL_WARNINGS):
            raise DataError(f"the file is truncated or corrupt: {text}", subject=subject,
                            file=path, expected=expected, hint=hint)
    for w in caught:  # the harmless ones, passed on
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def check_events_kept(raw: mne.io.BaseRaw, path: Path | str, subject: str,
                      events: dict[str, list[str]],
                      written: Sequence[str] | None = None) -> None:
    """Raise if configured events of a BrainVision marker file lie beyond the data read.

    A BrainVision header does not say how many samples the ``.eeg`` file holds, so a file that
    lost its end reads as a shorter recording, and MNE drops the markers past the new end
    with a warning only. The configured events of the marker file are counted against those
    read; markers of other descriptions (a recording-end comment) do not matter. Other
    formats are left alone (their truncation is caught by :func:`checked_reading`).

    Parameters
    ----------
    raw : mne.io.BaseRaw
        The recording as read, before its annotations are renamed.
    path : path-like
        The file read; only a ``.vhdr`` is checked.
    subject : str
    events : dict of str to list of str
        The dataset's ``events``: class name → annotation descriptions.
    written : sequence of str, optional
        The descriptions of the events the annotations were read from, when that is not the
        marker file: BIDS replaces them with its ``events.tsv``.
    """
    path = Path(path)
    if path.suffix.lower() != ".vhdr":
        return
    descriptions = {d for descs in events.values() for d in descs} | set(events)
    if written is None:
        found = re.search(r"^MarkerFile=(.+?)\s*$", path.read_text(errors="replace"), re.M)
        marker = path.with_name(found.group(1)) if found else path.with_suffix(".vmrk")
        try:
            written = mne.read_annotations(marker).description
        except Exception:  # an unreadable marker file is MNE's to report when it reads it
            return
    counted = [sum(d in descriptions for d in a) for a in (written, raw.annotations.description)]
    lost = counted[0] - counted[1]
    if lost > 0:
        raise DataError(
            f"{lost} of the {counted[0]} configured events in the marker file lie after the end "
            "of the data read: the .eeg file is truncated, or the markers belong to a longer "
            "recording",
            subject=subject, file=path, expected="a complete BrainVision recording",
            hint="Copy or export the recording again, with its .eeg and .vmrk files")
