"""Exceptions that tell a user which file, subject and expectation went wrong."""

from __future__ import annotations

from pathlib import Path


class BrainmillError(Exception):
    """Base class of every error brainmill raises on purpose."""


class ConfigError(BrainmillError):
    """The configuration is invalid; the message names the key path and the fix."""


class DataError(BrainmillError):
    """A recording or table cannot be used as it is.

    Parameters
    ----------
    problem : str
        What is wrong, in one sentence.
    file : str | Path | None
        The file at fault, if any.
    subject : str | None
        The subject the file belongs to, if known.
    expected : str | None
        What brainmill expected instead.
    hint : str | None
        How to fix it.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | Path | None = None,
        subject: str | None = None,
        expected: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = None if file is None else str(file)
        self.subject = None if subject is None else str(subject)
        self.expected = expected
        self.hint = hint
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.subject is not None:
            where.append(f"subject {self.subject}")
        if self.file is not None:
            where.append(f"file {self.file}")
        text = (", ".join(where) + ": " if where else "") + self.problem
        if self.expected:
            text += f" (expected {self.expected})"
        if self.hint:
            text += f". {self.hint}"
        return text


class WriteError(BrainmillError):
    """An output could not be written: the disk is full, a quota or file-size limit is hit, or
    the file system is read-only.

    Parameters
    ----------
    file : str | Path
        The output that was being written; it is left as it was (absent or the old version).
    reason : str
        What the operating system said, in words (e.g. ``"no space left on device"``).
    """

    def __init__(self, file: str | Path, reason: str) -> None:
        self.file = str(file)
        self.reason = reason
        folder = Path(file).parent
        super().__init__(
            f"cannot write {self.file}: {reason}; nothing was written there (the previous "
            f"version, if any, is untouched). Free space on the file system holding {folder} "
            "(or point results_dir/reports_dir elsewhere) and rerun: only this job needs to "
            "run again")
