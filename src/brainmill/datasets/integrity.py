"""Warnings MNE gives while reading that mean the data read are not the data recorded.

MNE reads a truncated EDF/BDF (its header promises more records than the file holds), a FIF cut
short, or a BrainVision file whose ``.eeg`` lost its end, and only warns: the recording comes
back shorter, with the events past its new end dropped. :func:`checked_reading` turns those
warnings into a :class:`~brainmill.errors.DataError` naming the file and the subject, for every
loader that reads files with MNE (files, BIDS, PhysioNet's cache).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import DataError

#: Warning texts that mean the file is truncated or corrupt.
FATAL_WARNINGS = ("does not match the file size", "Invalid tag with only")
#: MNE drops annotations past the end of the data with this warning: the file lost its end,
#: or its markers belong to a longer recording; either way the events are not all there.
OMITTED_ANNOTATIONS = re.compile(r"Omitted (\d+) annotation\(s\) that were outside data range")


@contextmanager
def checked_reading(path: Path | str, subject: str, expected: str) -> Iterator[None]:
    """Raise a :class:`DataError` for a truncation warning raised inside the block.

    Other warnings are passed on unchanged once the block ends.

    Parameters
    ----------
    path : path-like
        The file being read (named in the error).
    subject : str
        The subject it belongs to (named in the error).
    expected : str
        What the file should have been, e.g. ``"a complete .edf recording"``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        text = str(w.message)
        if any(f in text for f in FATAL_WARNINGS):
            raise DataError(f"the file is truncated or corrupt: {text}", subject=subject,
                            file=path, expected=expected,
                            hint="Copy or export the recording again")
        omitted = OMITTED_ANNOTATIONS.search(text)
        if omitted:
            raise DataError(
                f"{omitted.group(1)} annotation(s) lie after the end of the data read: the file "
                "is truncated (for BrainVision, the .eeg file lost its end), or its markers "
                "belong to a longer recording",
                subject=subject, file=path, expected=expected,
                hint="Copy or export the recording again, with its marker file")
    for w in caught:  # the harmless ones, passed on
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
