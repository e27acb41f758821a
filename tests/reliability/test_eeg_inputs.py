"""Catalogue of bad EEG inputs: each is rejected with a clear error or repaired and recorded.

One test per case. Subject 2 is broken; subjects 1 and 3 (made once, see ``conftest.py``) must
keep every output unchanged, which the ``eeg`` fixture checks after each test. Cases that are
*rejected* end as a :class:`~brainmill.errors.DataError` whose ``FAILED`` log line names the
file, the subject and what was expected; cases that are *repaired* finish and say what was done
in ``preprocessing.json`` (and the subject report).
"""

from __future__ import annotations

import os
from html import unescape

import mne
import numpy as np
from reliability_bench import BROKEN, EEG_DS, synthetic_raw, write_recording

from brainmill.datasets import files
from brainmill.io import read_json
from brainmill.reports import build_subject_report

EDF = f"sub-{BROKEN}_eeg.edf"


def _broken_edf(eeg, transform) -> str:
    path = eeg.root / f"sub-{BROKEN}" / EDF
    path.write_bytes(transform(eeg.good_edf.read_bytes()))
    return str(path)


# ------------------------------------------------------------------------------ files


def test_truncated_edf(eeg):
    path = _broken_edf(eeg, lambda data: data[: len(data) // 2])
    outcome = eeg.run(BROKEN)
    outcome.assert_rejected("load", "DataError", path, f"subject {BROKEN}", "truncated",
                            "expected a complete, valid .edf recording")
    eeg.assert_nothing_after(outcome)


def test_edf_with_corrupted_header(eeg):
    path = _broken_edf(eeg, lambda data: b"\xff" * 256 + data[256:])
    outcome = eeg.run(BROKEN)
    outcome.assert_rejected("load", "DataError", path, f"subject {BROKEN}",
                            "MNE cannot read the file", "expected a complete, valid .edf recording")
    eeg.assert_nothing_after(outcome)


def test_wrong_extension(eeg):
    path = eeg.root / f"sub-{BROKEN}" / f"sub-{BROKEN}_eeg.txt"
    path.write_text("0.1 0.2 0.3\n")
    outcome = eeg.run(BROKEN)
    outcome.assert_rejected("load", "DataError", str(path), f"subject {BROKEN}",
                            "unsupported file format '.txt'", "expected one of .fif.gz, .edf")
    eeg.assert_nothing_after(outcome)


def test_zero_length_file(eeg):
    path = _broken_edf(eeg, lambda data: b"")
    outcome = eeg.run(BROKEN)
    outcome.assert_rejected("load", "DataError", path, f"subject {BROKEN}",
                            "the file is empty (0 bytes)")
    eeg.assert_nothing_after(outcome)


def test_unreadable_permissions(eeg, monkeypatch):
    path = _broken_edf(eeg, lambda data: data)
    os.chmod(path, 0)
    try:
        if os.access(path, os.R_OK):  # root reads anything: simulate what chmod 000 does
            monkeypatch.setattr(files.os, "access", lambda p, mode: str(p) != path)
        outcome = eeg.run(BROKEN)
    finally:
        os.chmod(path, 0o644)
    outcome.assert_rejected("load", "DataError", path, f"subject {BROKEN}",
                            "no read permission", "Fix the file's permissions")
    eeg.assert_nothing_after(outcome)


# ----------------------------------------------------------------------------- events


def test_file_with_no_events(eeg):
    raw = synthetic_raw(BROKEN)
    raw.set_annotations(None)
    path = str(write_recording(raw, eeg.root / f"sub-{BROKEN}" / EDF))
    outcome = eeg.run(BROKEN)
    outcome.assert_rejected("load", "DataError", path, f"subject {BROKEN}",
                            "holds no events", "expected events ['left_hand', 'right_hand']")
    eeg.assert_nothing_after(outcome)


def test_event_labels_not_in_the_config(eeg):
    raw = synthetic_raw(BROKEN)
    raw.annotations.rename({"left_hand": "T1", "right_hand": "T2"})
    path = str(write_recording(raw, eeg.root / f"sub-{BROKEN}" / EDF))
    outcome = eeg.run(BROKEN)
    outcome.assert_rejected("load", "DataError", path, f"subject {BROKEN}",
                            "none of the configured events",
                            "expected annotations ['left_hand', 'right_hand']; found ['T1', 'T2']")
    eeg.assert_nothing_after(outcome)


def test_extra_event_labels_are_ignored_and_recorded(eeg):
    """Labels the config does not name (rest, comments) are left out, and said so."""
    raw = synthetic_raw(BROKEN)
    onsets = raw.annotations.onset[:4] + 1.0
    raw.set_annotations(raw.annotations + mne.Annotations(onsets, 0.1, ["rest"] * 4))
    write_recording(raw, eeg.root / f"sub-{BROKEN}" / EDF)
    eeg.run(BROKEN).assert_finished()
    prep = read_json(eeg.subject_dir(BROKEN) / "preprocessing.json")
    assert prep["epochs"]["ignored_annotations"] == {"rest": 4}
    assert any("'rest': 4" in note for note in prep["warnings"])
    assert set(prep["epochs"]["per_class"]) == {"left_hand", "right_hand"}


def test_mismatched_sampling_rates_between_runs(eeg):
    folder = eeg.root / f"sub-{BROKEN}"
    write_recording(synthetic_raw(BROKEN), folder / f"sub-{BROKEN}_run-1_eeg.edf")
    second = write_recording(synthetic_raw(BROKEN, sfreq=200.0),
                             folder / f"sub-{BROKEN}_run-2_eeg.edf")
    outcome = eeg.run(BROKEN)
    outcome.assert_rejected("load", "DataError", str(second), f"subject {BROKEN}",
                            "sampling frequency 200.0 Hz differs from the first run's 160.0 Hz",
                            "expected every run of a subject at the same sampling frequency")
    eeg.assert_nothing_after(outcome)


# ---------------------------------------------------------------------------- channels


def test_channels_missing_from_the_montage(eeg):
    raw = synthetic_raw(BROKEN)
    raw.rename_channels({raw.ch_names[3]: "XYZ1"})
    path = str(write_recording(raw, eeg.root / f"sub-{BROKEN}" / EDF))
    outcome = eeg.run(BROKEN)
    outcome.assert_rejected("preprocess", "DataError", path, f"subject {BROKEN}",
                            "channels ['XYZ1'] are not in the 'standard_1005' montage",
                            "expected channel names of 'standard_1005'",
                            "bad_channels.interpolate to false")
    eeg.assert_nothing_after(outcome)


def test_channels_missing_from_the_montage_are_kept_without_interpolation(eeg):
    raw = synthetic_raw(BROKEN)
    raw.rename_channels({raw.ch_names[3]: "XYZ1"})
    write_recording(raw, eeg.root / f"sub-{BROKEN}" / EDF)
    cfg = eeg.config(preprocessing={"bad_channels": {"interpolate": False}})
    eeg.run(BROKEN, cfg).assert_finished()
    prep = read_json(eeg.subject_dir(BROKEN) / "preprocessing.json")
    montage = next(s for s in prep["steps"] if s["step"] == "montage")
    assert montage["missing"] == ["XYZ1"]
    assert any("XYZ1" in note for note in prep["warnings"])


def test_flat_channel_is_interpolated_and_recorded(eeg):
    raw = synthetic_raw(BROKEN)
    flat = raw.ch_names[5]
    raw._data[5] = 0.0
    write_recording(raw, eeg.root / f"sub-{BROKEN}" / EDF)
    cfg = eeg.config()
    eeg.run(BROKEN, cfg).assert_finished()
    base = eeg.subject_dir(BROKEN)
    prep = read_json(base / "preprocessing.json")
    assert prep["bad_channels"]["flat"] == [flat]
    assert prep["bad_channels"]["action"] == "interpolate"
    epochs = mne.read_epochs(base / "epochs-epo.fif", verbose="error")
    assert flat in epochs.ch_names
    assert np.std(epochs.get_data(picks=[flat])) > 0  # repaired, not zero
    with np.load(base / "qc.npz") as qc:
        assert dict(zip(qc["ch_names_before"], qc["is_bad"], strict=True))[flat]
    html = build_subject_report(
        cfg, EEG_DS, BROKEN, recording_json=base / "recording.json",
        epochs_path=base / "epochs-epo.fif", preprocessing_json=base / "preprocessing.json",
        qc_path=base / "qc.npz", metrics_paths=[base / "decoders/ts_lr/metrics.json"],
        out_html=eeg.base / "reports" / EEG_DS / f"sub-{BROKEN}.html")
    text = (eeg.base / "reports" / EEG_DS / f"sub-{BROKEN}.html").read_text()
    assert html is not None
    assert f"flat: ['{flat}']; NaN: []; noisy: []; action: interpolate" in unescape(text)


def test_all_nan_channel_is_interpolated_and_recorded(eeg):
    raw = synthetic_raw(BROKEN)
    bad = raw.ch_names[7]
    raw._data[7] = np.nan
    write_recording(raw, eeg.root / f"sub-{BROKEN}" / f"sub-{BROKEN}_raw.fif")
    eeg.run(BROKEN).assert_finished()
    base = eeg.subject_dir(BROKEN)
    prep = read_json(base / "preprocessing.json")
    assert prep["bad_channels"]["nan"] == [bad]
    assert prep["bad_channels"]["action"] == "interpolate"
    data = mne.read_epochs(base / "epochs-epo.fif", verbose="error").get_data(picks=[bad])
    assert np.isfinite(data).all() and np.std(data) > 0


def test_recording_shorter_than_one_epoch(eeg):
    raw = synthetic_raw(BROKEN).crop(0, 0.99)  # EDF pads it to one 1-s record
    raw.set_annotations(mne.Annotations([0.2], [0.1], ["left_hand"]))
    path = str(write_recording(raw, eeg.root / f"sub-{BROKEN}" / EDF))
    outcome = eeg.run(BROKEN)
    outcome.assert_rejected("preprocess", "DataError", path, f"subject {BROKEN}",
                            "shorter than one epoch window (2.000 s",
                            "expected a recording longer than preprocessing.epochs.tmax - tmin")
    eeg.assert_nothing_after(outcome)
