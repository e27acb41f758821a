"""PhysioNet eegmmidb loader: cache-path logic on a fake cache, offline errors, real data."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pytest

from brainmill.config import EEGBCISource
from brainmill.datasets import eegbci
from brainmill.errors import DataError

EVENTS = {"left_hand": ["T1"], "right_hand": ["T2"]}
SFREQ = 160.0
# names as PhysioNet writes them; standardize() turns them into 10-05 names
EDF_NAMES = ["C3..", "Cz..", "C4..", "Fp1.", "Fcz."]
STD_NAMES = ["C3", "Cz", "C4", "Fp1", "FCz"]
ONSETS = [1.0, 3.0, 5.0, 7.0]
DESCRIPTIONS = ["T0", "T1", "T2", "T1"]


def _fake_run(root: Path, subject: int, run: int, seed: int) -> np.ndarray:
    """Write one tiny EDF+ run into MNE's cache layout under ``root``; return its data (V)."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((len(EDF_NAMES), int(10 * SFREQ))) * 20e-6
    raw = mne.io.RawArray(data, mne.create_info(EDF_NAMES, SFREQ, "eeg"), verbose="error")
    raw.set_meas_date(1_000_000_000)
    raw.set_annotations(mne.Annotations(ONSETS, [1.0] * len(ONSETS), DESCRIPTIONS))
    (path,) = eegbci.expected_files(root, subject, [run])
    path.parent.mkdir(parents=True, exist_ok=True)
    mne.export.export_raw(path, raw, fmt="edf", verbose="error")
    return data


def _no_network(*args, **kwargs):
    raise AssertionError("the loader tried to download")


def test_expected_files_follow_mne_cache_layout(tmp_path):
    (path,) = eegbci.expected_files(tmp_path, 1, [4])
    assert path == tmp_path / "MNE-eegbci-data/files/eegmmidb/1.0.0/S001/S001R04.edf"


def test_loads_fake_cache_from_mne_data(tmp_path, monkeypatch):
    d4 = _fake_run(tmp_path, 7, 4, seed=1)
    d8 = _fake_run(tmp_path, 7, 8, seed=2)
    monkeypatch.setenv("MNE_DATA", str(tmp_path))
    monkeypatch.setattr(mne.datasets.eegbci, "load_data", _no_network)

    rec = eegbci.load(EEGBCISource(runs=[4, 8]), "7", EVENTS, seed=0)

    assert rec.raw.ch_names == STD_NAMES
    pos = np.array([ch["loc"][:3] for ch in rec.raw.info["chs"]])
    assert np.all(np.isfinite(pos)) and np.all(np.linalg.norm(pos, axis=1) > 0.05)
    assert rec.raw.info["sfreq"] == SFREQ
    assert [(r.session, r.run) for r in rec.runs] == [("1", "4"), ("1", "8")]
    assert rec.runs[1].start == pytest.approx(10.0)
    assert rec.event_id == {"left_hand": 1, "right_hand": 2}
    # EDF stores 16-bit integers over the physical range
    atol = 2 * np.ptp(d4) / 2**16
    np.testing.assert_allclose(rec.raw.get_data(), np.hstack([d4, d8]), atol=atol)
    ann = rec.raw.annotations
    for cls, src in [("left_hand", "T1"), ("right_hand", "T2"), ("T0", "T0")]:
        expected = [t for t, d in zip(ONSETS, DESCRIPTIONS, strict=True) if d == src]
        got = ann.onset[ann.description == cls] - rec.raw.first_time
        np.testing.assert_allclose(got, expected + [t + 10.0 for t in expected], atol=1e-3)
    assert "T1" not in ann.description and "T2" not in ann.description
    assert rec.metadata["cache"] == str(tmp_path)


def test_truncated_cache_file_is_an_error_not_a_shorter_run(tmp_path, monkeypatch):
    _fake_run(tmp_path, 7, 4, seed=1)
    (path,) = eegbci.expected_files(tmp_path, 7, [4])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    monkeypatch.setenv("MNE_DATA", str(tmp_path))
    monkeypatch.setattr(mne.datasets.eegbci, "load_data", _no_network)
    with pytest.raises(DataError, match="truncated") as err:
        eegbci.load(EEGBCISource(runs=[4]), "7", EVENTS, seed=0)
    assert str(path) in str(err.value) and "subject 7" in str(err.value)
    assert "fetch it again" in str(err.value)


def test_source_path_overrides_mne_data(tmp_path, monkeypatch):
    _fake_run(tmp_path / "cache", 2, 4, seed=3)
    monkeypatch.setenv("MNE_DATA", str(tmp_path / "elsewhere"))
    monkeypatch.setattr(mne.datasets.eegbci, "load_data", _no_network)
    rec = eegbci.load(EEGBCISource(runs=[4], path=str(tmp_path / "cache")), "2", EVENTS, seed=0)
    assert rec.runs[0].source.endswith("S002R04.edf")
    assert eegbci.cache_root(EEGBCISource(path=str(tmp_path / "cache"))) == tmp_path / "cache"


def test_missing_file_raises_without_network(tmp_path, monkeypatch):
    _fake_run(tmp_path, 1, 4, seed=4)  # run 4 present, run 8 absent
    monkeypatch.setenv("MNE_DATA", str(tmp_path))
    monkeypatch.setattr(mne.datasets.eegbci, "load_data", _no_network)
    with pytest.raises(DataError) as err:
        eegbci.load(EEGBCISource(runs=[4, 8], download=False), "1", EVENTS, seed=0)
    msg = str(err.value)
    assert "S001R08.edf" in msg and "S001R04.edf" not in msg
    assert "subject 1" in msg
    assert "MNE_DATA" in msg and "download: true" in msg


def test_download_true_fetches_only_when_missing(tmp_path, monkeypatch):
    calls = []

    def fake_load_data(subject, runs, path, update_path, **kwargs):
        calls.append((subject, list(runs), Path(path), update_path))
        for run in runs:
            _fake_run(Path(path), subject, run, seed=run)
        return eegbci.expected_files(Path(path), subject, list(runs))

    monkeypatch.setattr(mne.datasets.eegbci, "load_data", fake_load_data)
    source = EEGBCISource(runs=[4], path=str(tmp_path), download=True)
    rec = eegbci.load(source, "3", EVENTS, seed=0)
    assert calls == [(3, [4], tmp_path, False)]
    assert rec.raw.ch_names == STD_NAMES
    eegbci.load(source, "3", EVENTS, seed=0)  # cached now: no second fetch
    assert len(calls) == 1


@pytest.mark.parametrize("subject", ["abc", "0", "110"])
def test_unknown_subject(subject, tmp_path):
    with pytest.raises(DataError, match=f"subject {subject}.*1 to 109"):
        eegbci.load(EEGBCISource(path=str(tmp_path)), subject, EVENTS, seed=0)


def test_missing_configured_events(tmp_path, monkeypatch):
    _fake_run(tmp_path, 1, 4, seed=5)
    monkeypatch.setenv("MNE_DATA", str(tmp_path))
    with pytest.raises(DataError, match=r"subject 1.*S001R04\.edf.*none of the configured"):
        eegbci.load(EEGBCISource(runs=[4]), "1", {"a": ["X1"], "b": ["X2"]}, seed=0)


@pytest.mark.realdata
def test_real_subject_1_imagery_runs(shared_data, monkeypatch):
    if not (shared_data / eegbci.CACHE_SUBDIR / "S001").is_dir():
        pytest.skip(f"{shared_data / eegbci.CACHE_SUBDIR / 'S001'} absent: no eegmmidb cache")
    monkeypatch.setenv("MNE_DATA", str(shared_data))
    monkeypatch.setattr(mne.datasets.eegbci, "load_data", _no_network)

    rec = eegbci.load(EEGBCISource(runs=[4, 8, 12]), "1", EVENTS, seed=0)

    assert len(rec.raw.ch_names) == 64 and rec.raw.info["sfreq"] == 160.0
    assert {"C3", "Cz", "C4", "Fp1", "FCz"} <= set(rec.raw.ch_names)
    assert [r.run for r in rec.runs] == ["4", "8", "12"] and rec.sessions == ["1"]
    assert rec.raw.n_times == 3 * 20000
    desc = list(rec.raw.annotations.description)
    # T1/T2 counts per run: (8, 7), (8, 7), (7, 8)
    assert desc.count("left_hand") == 23 and desc.count("right_hand") == 22
    assert desc.count("T0") == 45
