"""checked_reading: every failure while reading a recording becomes one DataError."""

import warnings

import pytest

from brainmill.datasets.integrity import checked_reading
from brainmill.errors import DataError


def test_an_exception_becomes_a_data_error_naming_file_subject_reader_and_hint(tmp_path):
    path = tmp_path / "run1.edf"
    with pytest.raises(DataError) as err:
        with checked_reading(path, "7", "a complete run", reader="mne-bids", hint="Re-export it"):
            raise ValueError("bad header")
    text = str(err.value)
    for part in (str(path), "subject 7", "mne-bids cannot read the file: ValueError: bad header",
                 "expected a complete run", "Re-export it"):
        assert part in text
    assert isinstance(err.value.__cause__, ValueError)


def test_a_truncation_warning_is_fatal_and_other_warnings_pass_on(tmp_path):
    path = tmp_path / "run1.fif"
    with pytest.raises(DataError, match="truncated or corrupt.*does not match the file size"):
        with checked_reading(path, "7", "a complete run"):
            warnings.warn("Number of records from the header does not match the file size",
                          stacklevel=1)
    with pytest.warns(RuntimeWarning, match="channel names"):
        with checked_reading(path, "7", "a complete run"):
            warnings.warn("channel names were renamed", RuntimeWarning, stacklevel=1)


def test_a_data_error_raised_inside_is_not_wrapped_again(tmp_path):
    inner = DataError("no events", subject="7", file=tmp_path / "x.edf")
    with pytest.raises(DataError) as err:
        with checked_reading(tmp_path / "x.edf", "7", "a complete run"):
            raise inner
    assert err.value is inner


def test_running_out_of_memory_is_not_blamed_on_the_file(tmp_path):
    with pytest.raises(MemoryError):
        with checked_reading(tmp_path / "x.edf", "7", "a complete run",
                             hint="Delete it and fetch it again"):
            raise MemoryError
