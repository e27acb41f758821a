"""MOABB loader: dataset lookup, cache paths, offline guard, events, and real PhysionetMI."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.request
from collections import Counter

import mne
import numpy as np
import pytest

from brainmill.config import DatasetConfig, MOABBSource
from brainmill.datasets import moabb as bm
from brainmill.errors import ConfigError, DataError

SFREQ = 100.0
N_TIMES = 1000
CHANNELS = ["C3", "Cz", "C4"]
# (sample, code) per run, relative to the run's first sample
STIM_EVENTS = [(100, 2), (300, 3), (500, 4), (700, 2), (900, 1)]
MI_EVENTS = {"left_hand": ["left_hand"], "right_hand": ["right_hand"]}


@pytest.fixture
def moabb():
    return pytest.importorskip("moabb", reason="MOABB is not installed (brainmill[moabb])")


@pytest.fixture
def fake_home(tmp_path, monkeypatch):
    """An empty home and MNE config folder, so nothing touches the user's ~/.mne."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("_MNE_FAKE_HOME_DIR", str(home))
    monkeypatch.delenv("MNE_DATA", raising=False)
    return home


def _stim_raw(first_samp: int, meas_date: int | None) -> mne.io.RawArray:
    """One run with events only on a stim channel 'STI' (no annotations)."""
    rng = np.random.default_rng(first_samp)
    data = np.vstack([rng.standard_normal((len(CHANNELS), N_TIMES)) * 1e-5, np.zeros(N_TIMES)])
    for sample, code in STIM_EVENTS:
        data[-1, sample:sample + 3] = code
    info = mne.create_info(CHANNELS + ["STI"], SFREQ, ["eeg"] * 3 + ["stim"])
    raw = mne.io.RawArray(data, info, first_samp=first_samp, verbose="error")
    if meas_date is not None:
        raw.set_meas_date(meas_date)
    return raw


class StimDataset:
    """Duck-typed MOABB dataset: two sessions of two runs, events on a stim channel."""

    subject_list = [1, 2, 3]
    event_id = {"rest": 1, "left_hand": 2, "right_hand": [3, 4]}
    interval = [0, 4]
    paradigm = "imagery"
    code = "Stim-Dataset"
    requested: list = []

    def get_data(self, subjects):
        StimDataset.requested = list(subjects)
        return {subjects[0]: {
            "0train": {"0": _stim_raw(0, None), "1": _stim_raw(250, None)},
            "1test": {"0": _stim_raw(0, 1_000_000_000), "1": _stim_raw(40, 1_000_000_000)},
        }}


class AnnotatedDataset(StimDataset):
    """As MOABB returns runs: annotations named by event_id, plus the stim channel."""

    def get_data(self, subjects):
        raw = _stim_raw(0, 1_000_000_000)
        raw.set_annotations(mne.Annotations([2.0, 4.0], [4.0, 4.0], ["right_hand", "left_hand"],
                                            orig_time=raw.info["meas_date"]))
        return {subjects[0]: {"0": {"0": raw}}}


def _use(monkeypatch, cls):
    monkeypatch.setattr(bm, "dataset_classes", lambda: {cls.__name__: cls})


# ------------------------------------------------------------------------------- config


def test_config_accepts_moabb_source():
    cfg = DatasetConfig.model_validate({
        "source": {"kind": "moabb", "dataset": "PhysionetMI"},
        "subjects": [1, 2],
        "events": MI_EVENTS,
        "evaluation": {"protocols": ["within_session"]},
    })
    assert isinstance(cfg.source, MOABBSource)
    assert cfg.source.dataset == "PhysionetMI"
    assert cfg.source.download is False and cfg.source.path is None
    assert cfg.subjects == ["1", "2"]


def test_missing_moabb_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "moabb", None)  # makes `import moabb` fail
    with pytest.raises(ConfigError, match=r'pip install "brainmill\[moabb\]"'):
        bm.load(MOABBSource(dataset="PhysionetMI"), "1", MI_EVENTS, seed=0)


# ------------------------------------------------------------------------ dataset lookup


def test_unknown_dataset_suggests_close_names(moabb):
    with pytest.raises(ConfigError, match=r"'PhysionetMl'.*did you mean 'PhysionetMI'"):
        bm.dataset_class("PhysionetMl")
    with pytest.raises(ConfigError, match=r"did you mean 'BNCI2014_001'"):
        bm.dataset_class("bnci2014001")
    assert bm.dataset_class("PhysionetMI") is moabb.datasets.PhysionetMI


def test_unknown_subject_lists_the_subjects(moabb, monkeypatch, tmp_path):
    _use(monkeypatch, StimDataset)
    with pytest.raises(DataError, match=r"subject 7.*StimDataset.*1 to 3"):
        bm.load(MOABBSource(dataset="StimDataset", path=str(tmp_path)), "7", MI_EVENTS, seed=0)


# ------------------------------------------------------------------------------ events


def test_stim_channel_events_become_moabb_named_annotations(moabb, monkeypatch, tmp_path):
    _use(monkeypatch, StimDataset)
    events = {"L": ["left_hand"], "R": ["right_hand"]}
    rec = bm.load(MOABBSource(dataset="StimDataset", path=str(tmp_path)), "002", events, seed=0)

    assert StimDataset.requested == [2]  # "002" → the int subject of subject_list
    assert rec.subject == "002" and rec.event_id == {"L": 1, "R": 2}
    assert rec.raw.ch_names == CHANNELS  # stim dropped
    assert [(r.session, r.run) for r in rec.runs] == [
        ("0train", "0"), ("0train", "1"), ("1test", "0"), ("1test", "1")]
    assert all(r.source == "moabb:StimDataset" for r in rec.runs)
    assert [r.start for r in rec.runs] == pytest.approx([0.0, 10.0, 20.0, 30.0])
    # every event sits at its stim sample, mapped code → MOABB name → class (3 and 4 → R)
    ann = rec.raw.annotations
    names = {1: "rest", 2: "L", 3: "R", 4: "R"}
    for desc in ("rest", "L", "R"):
        got = np.sort(ann.onset[ann.description == desc] - rec.raw.first_time)
        want = [run * 10.0 + s / SFREQ for run in range(4)
                for s, c in STIM_EVENTS if names[c] == desc]
        np.testing.assert_allclose(got, np.sort(want), atol=1e-9)
    assert not {"left_hand", "right_hand"} & set(ann.description)
    assert rec.metadata["events_from"] == {"stim": 4}
    assert rec.metadata["event_id"] == StimDataset.event_id
    assert rec.metadata["interval"] == [0, 4] and rec.metadata["paradigm"] == "imagery"
    json.dumps(rec.to_json())


def test_annotations_win_over_the_stim_channel(moabb, monkeypatch, tmp_path):
    _use(monkeypatch, AnnotatedDataset)
    rec = bm.load(MOABBSource(dataset="AnnotatedDataset", path=str(tmp_path)), "1",
                  MI_EVENTS, seed=0)
    ann = rec.raw.annotations
    assert list(ann.description) == ["right_hand", "left_hand"]
    np.testing.assert_allclose(ann.onset - rec.raw.first_time, [2.0, 4.0])
    assert "STI" not in rec.raw.ch_names
    assert rec.metadata["events_from"] == {"annotations": 1}


# ----------------------------------------------------------------- cache and offline guard


class DownloadingDataset(StimDataset):
    """Fetches one file through MOABB's downloader, as real datasets do."""

    url = "https://example.org/files/fake/S001.dat"

    def get_data(self, subjects):
        from moabb.datasets.download import data_dl

        DownloadingDataset.fetched = data_dl(self.url, "FAKEDS", None)
        return super().get_data(subjects)


def test_offline_cache_miss_names_the_file_without_network(moabb, monkeypatch, tmp_path,
                                                           fake_home):
    _use(monkeypatch, DownloadingDataset)
    monkeypatch.setenv("MNE_DATASETS_FAKEDS_PATH", str(tmp_path / "elsewhere"))
    source = MOABBSource(dataset="DownloadingDataset", path=str(tmp_path))
    t0 = time.perf_counter()
    with pytest.raises(DataError) as info:
        bm.load(source, "1", MI_EVENTS, seed=0)
    assert time.perf_counter() - t0 < 5
    expected = tmp_path / "MNE-fakeds-data" / "files" / "fake" / "S001.dat"
    msg = str(info.value)
    assert info.value.file == str(expected)  # source.path won over MNE_DATASETS_FAKEDS_PATH
    assert "subject 1" in msg and "DownloadingDataset" in msg and str(tmp_path) in msg
    assert "download: true" in msg
    # everything put back: environment, sockets, MOABB's downloader; no MNE config written
    assert os.environ["MNE_DATASETS_FAKEDS_PATH"] == str(tmp_path / "elsewhere")
    assert "MNE_DATA" not in os.environ
    assert socket.getaddrinfo.__module__ == "socket"
    from moabb.datasets import download
    assert download.retrieve.__module__.startswith("pooch")
    assert not (fake_home / ".mne").exists()

    # the same file in the cache: read offline (hash-checked), nothing fetched
    expected.parent.mkdir(parents=True, exist_ok=True)  # data_dl made it already
    expected.write_bytes(b"cached")
    rec = bm.load(source, "1", MI_EVENTS, seed=0)
    assert DownloadingDataset.fetched == str(expected)
    assert rec.metadata["cache"] == str(tmp_path)


class NetworkDataset(StimDataset):
    """Reaches the network by its own means (not MOABB's downloader)."""

    def get_data(self, subjects):
        urllib.request.urlopen("http://example.org/data.mat", timeout=30)
        return super().get_data(subjects)


def test_offline_blocks_any_other_network_access(moabb, monkeypatch, tmp_path):
    _use(monkeypatch, NetworkDataset)
    real = socket.getaddrinfo, socket.socket.connect
    t0 = time.perf_counter()
    with pytest.raises(DataError, match=r"not in the local cache.*network connection to "
                                        r"example\.org"):
        bm.load(MOABBSource(dataset="NetworkDataset", path=str(tmp_path)), "1", MI_EVENTS,
                seed=0)
    assert time.perf_counter() - t0 < 5
    assert (socket.getaddrinfo, socket.socket.connect) == real


def test_missing_cache_folder_fails_before_moabb(moabb, monkeypatch, tmp_path, fake_home):
    _use(monkeypatch, StimDataset)
    # no path, no MNE_DATA, no MNE config: MOABB's default ~/mne_data, which does not exist
    with pytest.raises(DataError) as info:
        bm.load(MOABBSource(dataset="StimDataset"), "1", MI_EVENTS, seed=0)
    assert info.value.file == str(fake_home / "mne_data")
    assert "does not exist" in str(info.value) and "subject 1" in str(info.value)
    assert not (fake_home / "mne_data").exists() and not (fake_home / ".mne").exists()


# ---------------------------------------------------------------------------- real data


def _forbid_network(monkeypatch) -> list[str]:
    """Record and refuse every HTTP route MOABB, NEMAR and pooch could take."""
    calls: list[str] = []

    def refuse(name):
        def _call(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"network access through {name}")
        return _call

    import pooch
    import requests

    monkeypatch.setattr(requests.Session, "send", refuse("requests"))
    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", refuse("pooch"))
    monkeypatch.setattr(urllib.request, "urlopen", refuse("urllib"))
    try:
        import httpx
    except ImportError:
        pass
    else:
        monkeypatch.setattr(httpx.Client, "send", refuse("httpx"))
    return calls


@pytest.mark.realdata
def test_physionetmi_subject_1_from_shared_cache(moabb, shared_data, monkeypatch, fake_home):
    calls = _forbid_network(monkeypatch)
    # a per-dataset key pointing elsewhere must not win over the configured path
    monkeypatch.setenv("MNE_DATASETS_EEGBCI_PATH", str(fake_home))
    t0 = time.perf_counter()
    rec = bm.load(MOABBSource(dataset="PhysionetMI", path=str(shared_data)), "1", MI_EVENTS,
                  seed=0)
    assert time.perf_counter() - t0 < 20  # no NEMAR prefetch (~40 s of retries offline)
    assert calls == []
    assert os.environ["MNE_DATASETS_EEGBCI_PATH"] == str(fake_home)
    assert not (fake_home / ".mne").exists()

    raw = rec.raw
    assert len(raw.ch_names) == 64 and set(raw.get_channel_types()) == {"eeg"}
    assert raw.info["sfreq"] == 160.0
    # MOABB's imagery runs: hands 4, 8, 12 then hands/feet 6, 10, 14, one session "0"
    assert [(r.session, r.run) for r in rec.runs] == [("0", str(i)) for i in range(6)]
    assert [r.start for r in rec.runs] == pytest.approx([125.0 * i for i in range(6)])
    counts = Counter(raw.annotations.description)
    assert counts["left_hand"] == 23 and counts["right_hand"] == 22
    assert counts["hands"] == 21 and counts["feet"] == 24  # runs 6/10/14, not configured
    # left_hand events sit on run 4's T1 cues (MOABB's interval starts at 0 s)
    edf = mne.io.read_raw_edf(
        shared_data / "MNE-eegbci-data/files/eegmmidb/1.0.0/S001/S001R04.edf", verbose="error")
    t1 = edf.annotations.onset[edf.annotations.description == "T1"]
    onsets = raw.annotations.onset[raw.annotations.description == "left_hand"] - raw.first_time
    np.testing.assert_allclose(np.sort(onsets)[: len(t1)], t1, atol=1 / 160)
    assert rec.event_id == {"left_hand": 1, "right_hand": 2}
    md = rec.metadata
    assert md["dataset"] == "PhysionetMI" and md["moabb_version"] == moabb.__version__
    assert md["event_id"]["left_hand"] == 2 and md["paradigm"] == "imagery"
    assert md["interval"] == [0, 3] and md["cache"] == str(shared_data)


@pytest.mark.realdata
def test_physionetmi_subject_missing_from_cache(moabb, shared_data, monkeypatch, fake_home):
    calls = _forbid_network(monkeypatch)
    t0 = time.perf_counter()
    with pytest.raises(DataError) as info:
        bm.load(MOABBSource(dataset="PhysionetMI", path=str(shared_data)), "2", MI_EVENTS,
                seed=0)
    assert time.perf_counter() - t0 < 5
    assert calls == []
    msg = str(info.value)
    assert info.value.subject == "2" and info.value.file.endswith("S002/S002R04.edf")
    assert "PhysionetMI" in msg and str(shared_data) in msg
