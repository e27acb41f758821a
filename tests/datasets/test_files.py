"""Files loader: formats MNE writes, pattern/session logic, stim events, and broken files."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import mne
import numpy as np
import pytest

from brainmill.config import FilesSource
from brainmill.datasets import files
from brainmill.errors import DataError

CH = ["C3", "Cz", "C4"]
SFREQ = 100.0
ONSETS = [1.0, 2.5, 4.0, 5.5]
LABELS = ["left", "right", "left", "right"]
EVENTS = {"left_hand": ["left"], "right_hand": ["right"]}
#: the same events as MNE reads them from a BrainVision marker file (type "Comment")
BV_EVENTS = {"left_hand": ["Comment/left"], "right_hand": ["Comment/right"]}


def _raw(seed: int = 0, sfreq: float = SFREQ, ch: list[str] = CH, seconds: float = 8.0,
         annotations: bool = True) -> mne.io.RawArray:
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((len(ch), int(seconds * sfreq))) * 10e-6
    raw = mne.io.RawArray(data, mne.create_info(ch, sfreq, "eeg"), verbose="error")
    raw.set_meas_date(1_000_000_000)
    if annotations:
        raw.set_annotations(mne.Annotations(ONSETS, [0.5] * len(ONSETS), LABELS))
    return raw


def _write(raw: mne.io.BaseRaw, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith((".fif", ".fif.gz")):
        raw.save(path, verbose="error")
    else:
        mne.export.export_raw(path, raw, verbose="error")
    return path


def _source(root: Path, pattern: str, **kw) -> FilesSource:
    return FilesSource(root=str(root), pattern=pattern, **kw)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# (file name, exporter module, description prefix MNE reads back, absolute tolerance factor)
FORMATS = [
    ("sub-01_raw.fif", None, "", 1e-6),  # float32 by default
    ("sub-01_raw.fif.gz", None, "", 1e-6),
    ("sub-01.edf", "edfio", "", 2 / 2**16),  # 16-bit over the physical range
    ("sub-01.bdf", "edfio", "", 2 / 2**24),  # 24-bit
    ("sub-01.vhdr", "pybv", "Comment/", 1e-6),  # float32 / resolution
    ("sub-01.set", "eeglabio", "", 1e-6),  # float32
]


@pytest.mark.parametrize(("name", "module", "prefix", "tol"), FORMATS,
                         ids=[f[0].split(".", 1)[1] for f in FORMATS])
def test_formats_round_trip(tmp_path, name, module, prefix, tol):
    if module and not _has(module):
        pytest.skip(f"{module} is not installed: cannot export {name}")
    raw = _raw(seed=1)
    _write(raw, tmp_path / "sub-01" / name)
    events = {"left_hand": [prefix + "left"], "right_hand": [prefix + "right"]}
    rec = files.load(_source(tmp_path, "sub-{subject}/*"), "01", events, seed=0)

    assert rec.raw.ch_names == CH and rec.raw.info["sfreq"] == SFREQ
    truth = raw.get_data()
    np.testing.assert_allclose(rec.raw.get_data(), truth, rtol=0, atol=tol * np.ptp(truth))
    ann = rec.raw.annotations
    for cls, lab in [("left_hand", "left"), ("right_hand", "right")]:
        want = [t for t, d in zip(ONSETS, LABELS, strict=True) if d == lab]
        got = ann.onset[ann.description == cls] - rec.raw.first_time
        np.testing.assert_allclose(got, want, atol=1 / SFREQ)
    # sidecars (.vmrk/.eeg, .fdt) are read through their header, not as runs
    assert len(rec.runs) == 1 and rec.runs[0].session == "1"
    assert rec.runs[0].run == name.split(".")[0]
    assert rec.event_id == {"left_hand": 1, "right_hand": 2}


def test_sessions_and_natural_run_order(tmp_path):
    layout = {("1", "run2"): 1, ("1", "run10"): 2, ("2", "run1"): 3}
    truth = {}
    for (ses, run), seed in layout.items():
        r = _raw(seed=seed)
        _write(r, tmp_path / "sub-7" / f"ses-{ses}" / f"sub-7_{run}_raw.fif")
        truth[(ses, run)] = r.get_data()
    # a neighbouring subject whose label starts with the same digit must not be picked up
    _write(_raw(seed=9), tmp_path / "sub-77" / "ses-1" / "sub-77_run1_raw.fif")

    rec = files.load(_source(tmp_path, "sub-{subject}/ses-{session}/sub-{subject}_*_raw.fif"),
                     "7", EVENTS, seed=0)

    assert [(r.session, r.run) for r in rec.runs] == [
        ("1", "sub-7_run2_raw"), ("1", "sub-7_run10_raw"), ("2", "sub-7_run1_raw")]
    assert rec.sessions == ["1", "2"]
    expected = np.hstack([truth[("1", "run2")], truth[("1", "run10")], truth[("2", "run1")]])
    np.testing.assert_allclose(rec.raw.get_data(), expected, rtol=1e-6, atol=1e-12)
    assert [r.start for r in rec.runs] == [0.0, 8.0, 16.0]
    assert list(rec.raw.annotations.description).count("left_hand") == 6


@pytest.mark.parametrize("naming", ["neuromag", "bids"])
def test_split_fif_is_one_run_read_once(tmp_path, naming):
    """MNE splits a FIF at 2 GB; every part matches '*.fif' but only the first is a run."""
    raw = _raw(seconds=5000.0)  # 6 MB as float32: two parts of at most 4 MB
    folder = tmp_path / "sub-1"
    folder.mkdir()
    name = "rec_raw.fif" if naming == "neuromag" else "sub-1_task-mi_eeg.fif"
    raw.save(folder / name, split_size="4MB", split_naming=naming, verbose="error")
    written = sorted(p.name for p in folder.iterdir())
    assert len(written) >= 2  # the test needs a split file

    rec = files.load(_source(tmp_path, "sub-{subject}/*.fif"), "1", EVENTS, seed=0)

    assert len(rec.runs) == 1
    np.testing.assert_allclose(rec.raw.get_data(), raw.get_data(), rtol=1e-6, atol=1e-12)
    assert list(rec.raw.annotations.description).count("left_hand") == 2
    assert len(rec.metadata["split_parts"]) == len(written) - 1


def test_a_file_named_like_a_split_part_is_read_when_nothing_reads_it(tmp_path):
    """'x-1.fif' next to an unsplit 'x.fif' is a recording of its own."""
    _write(_raw(seed=1), tmp_path / "sub-1" / "x_raw.fif")
    _write(_raw(seed=2), tmp_path / "sub-1" / "x_raw-1.fif")
    rec = files.load(_source(tmp_path, "sub-{subject}/*.fif"), "1", EVENTS, seed=0)
    assert sorted(r.run for r in rec.runs) == ["x_raw", "x_raw-1"]
    assert rec.metadata["split_parts"] == []


def test_stim_channel_events(tmp_path):
    n = int(8 * SFREQ)
    data = np.zeros((4, n))
    data[:3] = np.random.default_rng(2).standard_normal((3, n)) * 1e-5
    samples = {1: [100, 400], 2: [250, 600]}
    for code, idx in samples.items():
        for s in idx:
            data[3, s:s + 5] = code
    info = mne.create_info(CH + ["STI"], SFREQ, ["eeg"] * 3 + ["stim"])
    _write(mne.io.RawArray(data, info, verbose="error"), tmp_path / "s1_raw.fif")

    rec = files.load(_source(tmp_path, "s{subject}_raw.fif", stim_channel="STI"), "1",
                     {"left_hand": ["1"], "right_hand": ["2"]}, seed=0)

    assert rec.raw.ch_names == CH  # stim channel dropped
    ann = rec.raw.annotations
    for cls, code in [("left_hand", 1), ("right_hand", 2)]:
        got = (ann.onset[ann.description == cls] - rec.raw.first_time) * SFREQ
        np.testing.assert_allclose(got, samples[code], atol=1e-6)


def test_stim_channel_absent(tmp_path):
    path = _write(_raw(), tmp_path / "s1_raw.fif")
    with pytest.raises(DataError) as err:
        files.load(_source(tmp_path, "s{subject}_raw.fif", stim_channel="TRIG"), "1",
                   EVENTS, seed=0)
    assert "TRIG" in str(err.value)
    _names_file_and_subject(err, path, "1")


@pytest.mark.realdata
def test_real_eeglab_sample(shared_data):
    root = shared_data / "eeglab-sample"
    if not (root / "eeglab_data.set").is_file():
        pytest.skip(f"{root / 'eeglab_data.set'} absent: no EEGLAB sample")
    rec = files.load(_source(root, "eeglab_{subject}.*"), "data",
                     {"square": ["square"], "rt": ["rt"]}, seed=0)
    assert len(rec.raw.ch_names) == 32 and rec.raw.info["sfreq"] == 128.0
    assert len(rec.runs) == 1  # the .fdt and .locs sidecars are not runs
    desc = list(rec.raw.annotations.description)
    assert desc.count("square") == 80 and desc.count("rt") == 74
    assert rec.raw.times[-1] == pytest.approx(238.3, abs=0.1)


# ----------------------------------------------------------------------------- errors


def _names_file_and_subject(err: pytest.ExceptionInfo, path: Path | str, subject: str) -> None:
    msg = str(err.value)
    assert str(path) in msg, msg
    assert f"subject {subject}" in msg, msg


def test_no_matching_file_shows_resolved_glob(tmp_path):
    _write(_raw(), tmp_path / "sub-02" / "rec.edf")
    with pytest.raises(DataError, match="no file matches") as err:
        files.load(_source(tmp_path, "sub-{subject}/ses-{session}/*.edf"), "01", EVENTS,
                   seed=0)
    _names_file_and_subject(err, tmp_path / "sub-01/ses-*/*.edf", "01")


def _edf_bytes(tmp_path: Path) -> bytes:
    return _write(_raw(), tmp_path / "good" / "x.edf").read_bytes()


def test_truncated_edf(tmp_path):
    data = _edf_bytes(tmp_path)
    path = tmp_path / "s1.edf"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated") as err:
        files.load(_source(tmp_path, "s{subject}.edf"), "1", EVENTS, seed=0)
    _names_file_and_subject(err, path, "1")


def test_brainvision_whose_eeg_file_lost_its_end(tmp_path):
    """No header count to compare with: the events past the data's new end give it away."""
    path = _write(_raw(), tmp_path / "s1.vhdr") if _has("pybv") else pytest.skip("needs pybv")
    eeg = path.with_suffix(".eeg")
    data = eeg.read_bytes()
    eeg.write_bytes(data[: len(data) // 2])  # 4 of 8 s: the event at 5.5 s is lost
    with pytest.raises(DataError, match="1 of the 4 configured events in the marker file lie "
                                        "after the end of the data") as err:
        files.load(_source(tmp_path, "s{subject}.vhdr"), "1", BV_EVENTS, seed=0)
    _names_file_and_subject(err, path, "1")


def test_brainvision_with_a_stray_marker_after_its_end_loads(tmp_path):
    """A complete file whose marker file has an unconfigured comment past the last sample."""
    path = _write(_raw(), tmp_path / "s1.vhdr") if _has("pybv") else pytest.skip("needs pybv")
    vmrk = path.with_suffix(".vmrk")
    n = vmrk.read_text().count("\nMk")
    vmrk.write_text(vmrk.read_text().rstrip("\n") + f"\nMk{n + 1}=Comment,RecordingEnd,"
                    f"{int(9 * SFREQ)},1,0\n")
    with pytest.warns(RuntimeWarning, match="Omitted 1 annotation"):
        rec = files.load(_source(tmp_path, "s{subject}.vhdr"), "1", BV_EVENTS, seed=0)
    assert list(rec.raw.annotations.description).count("left_hand") == 2


def test_truncated_fif(tmp_path):
    data = _write(_raw(), tmp_path / "good" / "x_raw.fif").read_bytes()
    path = tmp_path / "s1_raw.fif"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as err:
        files.load(_source(tmp_path, "s{subject}_raw.fif"), "1", EVENTS, seed=0)
    _names_file_and_subject(err, path, "1")


def test_corrupted_header(tmp_path):
    data = _edf_bytes(tmp_path)
    path = tmp_path / "s1.edf"
    path.write_bytes(b"\xff" * 256 + data[256:])
    with pytest.raises(DataError, match="cannot read") as err:
        files.load(_source(tmp_path, "s{subject}.edf"), "1", EVENTS, seed=0)
    _names_file_and_subject(err, path, "1")


def test_zero_length_file(tmp_path):
    path = tmp_path / "s1.edf"
    path.touch()
    with pytest.raises(DataError, match="empty") as err:
        files.load(_source(tmp_path, "s{subject}.edf"), "1", EVENTS, seed=0)
    _names_file_and_subject(err, path, "1")


def test_wrong_extension(tmp_path):
    path = tmp_path / "s1.txt"
    path.write_text("0.1 0.2 0.3\n")
    with pytest.raises(DataError, match="unsupported file format") as err:
        files.load(_source(tmp_path, "s{subject}.*"), "1", EVENTS, seed=0)
    _names_file_and_subject(err, path, "1")


def test_edf_content_under_wrong_extension(tmp_path):
    path = tmp_path / "s1.set"
    path.write_bytes(_edf_bytes(tmp_path))
    with pytest.raises(DataError, match="cannot read") as err:
        files.load(_source(tmp_path, "s{subject}.set"), "1", EVENTS, seed=0)
    _names_file_and_subject(err, path, "1")


def test_no_read_permission(tmp_path):
    path = tmp_path / "s1.edf"
    path.write_bytes(_edf_bytes(tmp_path))
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reading")
        with pytest.raises(DataError, match="permission") as err:
            files.load(_source(tmp_path, "s{subject}.edf"), "1", EVENTS, seed=0)
        _names_file_and_subject(err, path, "1")
    finally:
        path.chmod(0o644)


def test_no_events(tmp_path):
    path = _write(_raw(annotations=False), tmp_path / "s1_raw.fif")
    with pytest.raises(DataError, match="no events") as err:
        files.load(_source(tmp_path, "s{subject}_raw.fif"), "1", EVENTS, seed=0)
    _names_file_and_subject(err, path, "1")


def test_missing_configured_events(tmp_path):
    path = _write(_raw(), tmp_path / "s1_raw.fif")
    with pytest.raises(DataError, match="none of the configured events") as err:
        files.load(_source(tmp_path, "s{subject}_raw.fif"), "1",
                   {"feet": ["feet"], "tongue": ["tongue"]}, seed=0)
    _names_file_and_subject(err, path, "1")
    assert "left" in str(err.value)  # lists what was found


def test_runs_with_different_sfreq(tmp_path):
    _write(_raw(seed=1), tmp_path / "s1_run1_raw.fif")
    second = _write(_raw(seed=2, sfreq=200.0), tmp_path / "s1_run2_raw.fif")
    with pytest.raises(DataError, match="sampling frequency") as err:
        files.load(_source(tmp_path, "s{subject}_*_raw.fif"), "1", EVENTS, seed=0)
    _names_file_and_subject(err, second, "1")


def test_runs_with_different_channels(tmp_path):
    _write(_raw(seed=1), tmp_path / "s1_run1_raw.fif")
    second = _write(_raw(seed=2, ch=["C3", "Cz", "Pz"]), tmp_path / "s1_run2_raw.fif")
    with pytest.raises(DataError, match="channels differ") as err:
        files.load(_source(tmp_path, "s{subject}_*_raw.fif"), "1", EVENTS, seed=0)
    _names_file_and_subject(err, second, "1")
    assert "C4" in str(err.value) and "Pz" in str(err.value)


# ------------------------------------------------------------------------------ pattern


@pytest.mark.parametrize(("pattern", "rel", "session"), [
    ("sub-{subject}/ses-{session}/*.edf", "sub-01/ses-A/x.edf", "A"),
    ("sub-{subject}/**/*.edf", "sub-01/a/b/x.edf", None),
    ("s{subject}_[ab].fif", "s01_a.fif", None),
])
def test_resolve_pattern(pattern, rel, session):
    glob, regex = files.resolve_pattern(pattern, "01")
    assert "{" not in glob
    m = regex.fullmatch(rel)
    assert m is not None
    assert m.groupdict().get("session") == session
    assert regex.fullmatch(rel.replace("01", "02")) is None


def test_no_read_permission_simulated(tmp_path, monkeypatch):
    """The permission check itself, also where root can read anything."""
    path = tmp_path / "s1.edf"
    path.write_bytes(_edf_bytes(tmp_path))
    monkeypatch.setattr(files.os, "access", lambda p, mode: Path(p) != path)
    with pytest.raises(DataError, match="no read permission") as err:
        files.load(_source(tmp_path, "s{subject}.edf"), "1", EVENTS, seed=0)
    _names_file_and_subject(err, path, "1")
