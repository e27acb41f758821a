"""Helpers every loader shares: concatenating a subject's runs."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from brainmill.datasets.base import concatenate_runs
from brainmill.errors import DataError

CH = ["Fz", "C3", "Cz", "C4"]
SFREQ = 100.0


def _raw(seed: int, ch: list[str] = CH, seconds: float = 4.0) -> mne.io.RawArray:
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((len(ch), int(seconds * SFREQ))) * 10e-6
    info = mne.create_info(ch, SFREQ, ["eog" if c == "C4" else "eeg" for c in ch])
    return mne.io.RawArray(data, info, verbose="error")


def _labels(n: int) -> list[tuple[str, str, str]]:
    return [("1", str(i + 1), f"run{i + 1}_raw.fif") for i in range(n)]


@pytest.mark.parametrize("preload", [True, False])
def test_runs_with_the_channels_in_another_order_are_reordered(tmp_path, preload):
    # used to fail with "channels differ from the first run's (...): missing [], extra []"
    first, second = _raw(1), _raw(2, ch=CH[::-1])
    if not preload:  # runs read from files, chained without loading their signals
        for i, raw in enumerate((first, second)):
            raw.save(tmp_path / f"run{i}_raw.fif", verbose="error")
        first, second = (mne.io.read_raw_fif(tmp_path / f"run{i}_raw.fif", verbose="error")
                         for i in range(2))
    expected = second.get_data(picks=CH)
    raw, runs = concatenate_runs([first, second], _labels(2), subject="01", preload=preload)
    assert raw.ch_names == CH
    assert raw.get_channel_types() == ["eeg", "eeg", "eeg", "eog"]
    start = raw.time_as_index(runs[1].start)[0]
    np.testing.assert_array_equal(raw.get_data()[:, start:], expected)
    np.testing.assert_array_equal(raw.get_data()[:, :start], first.get_data())
    assert second.ch_names == CH[::-1]  # the caller's raw is left alone


def test_runs_with_other_channels_are_refused():
    with pytest.raises(DataError, match=r"channels differ from the first run's "
                                        r"\(run1_raw.fif\): missing \['C4'\], extra \['Pz'\]"):
        concatenate_runs([_raw(1), _raw(2, ch=["Fz", "C3", "Cz", "Pz"])], _labels(2),
                         subject="01")
