"""BIDS loader on a tiny dataset written with mne-bids."""

from __future__ import annotations

from pathlib import Path

import mne
import mne_bids
import numpy as np
import pytest

from brainmill.config import BIDSSource
from brainmill.datasets import bids
from brainmill.errors import DataError

CH = ["C3", "Cz", "C4"]
SFREQ = 100.0
ONSETS = [1.0, 2.5, 4.0, 5.5, 7.0]
LABELS = ["left", "right", "left", "right", "rest"]
EVENTS = {"left_hand": ["left"], "right_hand": ["right"]}
LAYOUT = {("01", "1", "1"): 1, ("01", "1", "2"): 2, ("01", "2", "1"): 3, ("02", "1", "1"): 4}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict[tuple[str, str, str], np.ndarray]]:
    """Two subjects; subject 01 has two sessions (runs 1, 2 and run 1); BrainVision."""
    root = tmp_path_factory.mktemp("bids")
    truth = {}
    for (sub, ses, run), seed in LAYOUT.items():
        rng = np.random.default_rng(seed)
        data = rng.standard_normal((len(CH), int(9 * SFREQ))) * 10e-6
        raw = mne.io.RawArray(data, mne.create_info(CH, SFREQ, "eeg"), verbose="error")
        raw.set_meas_date(1_000_000_000)
        raw.set_annotations(mne.Annotations(ONSETS, [0.5] * len(ONSETS), LABELS))
        path = mne_bids.BIDSPath(subject=sub, session=ses, task="mi", run=run,
                                 datatype="eeg", root=root)
        mne_bids.write_raw_bids(raw, path, format="BrainVision", allow_preload=True,
                                overwrite=True, verbose=False)
        truth[(sub, ses, run)] = data
    return root, truth


def test_loads_sessions_runs_and_events(dataset):
    root, truth = dataset
    rec = bids.load(BIDSSource(root=str(root), task="mi"), "01", EVENTS, seed=0)

    assert [(r.session, r.run) for r in rec.runs] == [("1", "1"), ("1", "2"), ("2", "1")]
    assert rec.sessions == ["1", "2"]
    assert rec.raw.ch_names == CH and rec.raw.info["sfreq"] == SFREQ
    expected = np.hstack([truth[("01", "1", "1")], truth[("01", "1", "2")],
                          truth[("01", "2", "1")]])
    got = rec.raw.get_data()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * np.ptp(expected))
    ann = rec.raw.annotations
    desc = list(ann.description)
    assert desc.count("left_hand") == 6 and desc.count("right_hand") == 6
    assert desc.count("rest") == 3  # unconfigured trial types stay as they are
    first_run = (ann.onset[ann.description == "left_hand"] - rec.raw.first_time)[:2]
    np.testing.assert_allclose(first_run, [1.0, 4.0], atol=1 / SFREQ)
    assert rec.runs[2].start == pytest.approx(18.0)
    assert rec.event_id == {"left_hand": 1, "right_hand": 2}
    assert all(f.endswith(".vhdr") for f in rec.metadata["files"])


def test_restricts_sessions_and_runs(dataset):
    root, truth = dataset
    rec = bids.load(BIDSSource(root=str(root), task="mi", sessions=["1"], runs=["2"]), "01",
                    EVENTS, seed=0)
    assert [(r.session, r.run) for r in rec.runs] == [("1", "2")]
    np.testing.assert_allclose(rec.raw.get_data(), truth[("01", "1", "2")], rtol=0, atol=1e-9)


def test_unknown_subject_lists_found(dataset):
    root, _ = dataset
    with pytest.raises(DataError) as err:
        bids.load(BIDSSource(root=str(root), task="mi"), "03", EVENTS, seed=0)
    msg = str(err.value)
    assert "subject 03" in msg and "'01'" in msg and "'02'" in msg


def test_unknown_task_lists_found(dataset):
    root, _ = dataset
    with pytest.raises(DataError, match=r"subject 02.*task 'rest'.*'mi'"):
        bids.load(BIDSSource(root=str(root), task="rest"), "02", EVENTS, seed=0)


def test_unknown_session(dataset):
    root, _ = dataset
    with pytest.raises(DataError, match=r"subject 01.*sessions among \['1', '2'\]"):
        bids.load(BIDSSource(root=str(root), task="mi", sessions=["9"]), "01", EVENTS, seed=0)


def test_missing_configured_events(dataset):
    root, _ = dataset
    with pytest.raises(DataError, match=r"subject 02.*sub-02_ses-1_task-mi_run-1_eeg\.vhdr.*"
                                        r"none of the configured"):
        bids.load(BIDSSource(root=str(root), task="mi"), "02", {"a": ["feet"], "b": ["x"]},
                  seed=0)


def test_root_absent(tmp_path):
    with pytest.raises(DataError, match="BIDS root folder does not exist"):
        bids.load(BIDSSource(root=str(tmp_path / "nope"), task="mi"), "01", EVENTS, seed=0)


def _write_subject_01(root, fmt: str) -> mne_bids.BIDSPath:
    """Nine seconds of noise with the test's events, written as subject 01 in ``fmt``."""
    rng = np.random.default_rng(0)
    raw = mne.io.RawArray(rng.standard_normal((len(CH), int(9 * SFREQ))) * 10e-6,
                          mne.create_info(CH, SFREQ, "eeg"), verbose="error")
    raw.set_meas_date(1_000_000_000)
    raw.set_annotations(mne.Annotations(ONSETS, [0.5] * len(ONSETS), LABELS))
    path = mne_bids.BIDSPath(subject="01", task="mi", datatype="eeg", root=root)
    mne_bids.write_raw_bids(raw, path, format=fmt, allow_preload=True, overwrite=True,
                            verbose=False)
    return path


def test_truncated_edf_names_the_file_and_subject(tmp_path):
    path = _write_subject_01(tmp_path, "EDF")
    edf = path.copy().update(suffix="eeg", extension=".edf").fpath
    data = edf.read_bytes()
    edf.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated") as err:
        bids.load(BIDSSource(root=str(tmp_path), task="mi"), "01", EVENTS, seed=0)
    assert str(edf) in str(err.value) and "subject 01" in str(err.value)


def test_curated_events_tsv_is_not_taken_for_a_truncated_recording(tmp_path):
    """mne-bids takes the events from ``events.tsv``, not the BrainVision marker file: an
    events table with fewer rows than the markers is a curated table, not lost data; a row
    past the end of the data read is lost data."""
    path = _write_subject_01(tmp_path, "BrainVision")
    tsv = path.copy().update(suffix="events", extension=".tsv").fpath
    table = tsv.read_text().splitlines()
    tsv.write_text("\n".join(table[:2] + table[3:]) + "\n")  # drop the first 'right' row
    rec = bids.load(BIDSSource(root=str(tmp_path), task="mi"), "01", EVENTS, seed=0)
    desc = list(rec.raw.annotations.description)
    assert desc.count("left_hand") == 2 and desc.count("right_hand") == 1

    late = table[1].split("\t")
    late[0] = "20.0"  # a configured event after the 9 s of data
    tsv.write_text("\n".join(table + ["\t".join(late)]) + "\n")
    with pytest.raises(DataError, match=r"subject 01.*configured events .* lie after the end"):
        bids.load(BIDSSource(root=str(tmp_path), task="mi"), "01", EVENTS, seed=0)
