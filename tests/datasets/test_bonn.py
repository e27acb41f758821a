"""Bonn epilepsy loader on tiny fake copies written in the real format (CRLF, N's .TXT)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from brainmill.config import BonnSource, EEGPreprocessing, load_config
from brainmill.datasets import bonn, load_recording
from brainmill.errors import DataError
from brainmill.preprocessing import preprocess
from brainmill.stages import read_recording, save_recording

ROOT = Path(__file__).resolve().parents[2]
SFREQ = 173.61
EVENTS5 = {s: [s] for s in "ZONFS"}


def _write_bonn(root: Path, segments: dict[str, list[int]], seed: int = 0) -> dict:
    """Write ``root/bonn-epilepsy/<set>/<set>NNN.txt`` (``.TXT`` for N) as the real files are:
    one integer per line, CRLF. Returns ``{run label: values (µV)}``."""
    rng = np.random.default_rng(seed)
    written = {}
    for set_name, numbers in segments.items():
        folder = root / "bonn-epilepsy" / set_name
        folder.mkdir(parents=True, exist_ok=True)
        ext = ".TXT" if set_name == "N" else ".txt"
        for n in numbers:
            values = rng.integers(-200, 200, size=bonn.N_SAMPLES)
            (folder / f"{set_name}{n:03d}{ext}").write_bytes(
                "".join(f"{v}\r\n" for v in values).encode())
            written[f"{set_name}{n:03d}"] = values.astype(float)
    return written


@pytest.fixture
def fake(tmp_path, monkeypatch):
    written = _write_bonn(tmp_path, {"Z": [1, 2], "N": [1], "S": [1, 3]})
    monkeypatch.setenv("MNE_DATA", str(tmp_path))
    return tmp_path, written


# ------------------------------------------------------------------------------- windows


def test_window_starts_by_hand():
    # 4097 samples, 5-s windows (868 samples) every 2.5 s: starts round(k * 434.025), k <= 7
    starts = bonn.window_starts(4097, SFREQ, 5.0, 2.5)
    np.testing.assert_array_equal(starts, np.round(np.arange(8) * 2.5 * SFREQ).astype(int))
    assert starts[-1] + 868 <= 4097 < np.round(8 * 2.5 * SFREQ) + 868
    # an exact fit is kept: 1000 samples, 500-sample windows every 250
    np.testing.assert_array_equal(bonn.window_starts(1000, 100.0, 5.0, 2.5), [0, 250, 500])
    assert len(bonn.window_starts(400, 100.0, 5.0, 2.5)) == 0


# --------------------------------------------------------------------------------- load


def test_loads_runs_data_and_windows_from_mne_data(fake):
    _, written = fake
    rec = bonn.load(BonnSource(sets=["Z", "N", "S"]), "all", EVENTS5, seed=0)

    assert rec.raw.ch_names == ["EEG"] and rec.subject == "all"
    assert rec.raw.info["sfreq"] == pytest.approx(SFREQ, rel=1e-8)
    labels = ["Z001", "Z002", "N001", "S001", "S003"]
    assert [(r.session, r.run) for r in rec.runs] == [("1", r) for r in labels]
    assert rec.runs[3].source.endswith("S/S001.txt") and rec.runs[2].source.endswith(".TXT")
    np.testing.assert_allclose(rec.raw.get_data()[0],
                               np.concatenate([written[r] for r in labels]) * 1e-6)
    sfreq = rec.raw.info["sfreq"]
    for i, run in enumerate(rec.runs):  # each run spans its 4097 samples exactly
        assert run.start * sfreq == pytest.approx(i * 4097)
        assert run.stop * sfreq == pytest.approx((i + 1) * 4097)

    ann = rec.raw.annotations
    windows = ~np.isin(ann.description, ["EDGE boundary"])
    assert len(ann.onset[windows]) == 5 * 8
    expected = [(i * 4097 + s, r[0]) for i, r in enumerate(labels)
                for s in np.round(np.arange(8) * 2.5 * SFREQ).astype(int)]
    got = sorted(zip(np.round(ann.onset[windows] * sfreq).astype(int),
                     ann.description[windows], strict=True))
    assert got == expected
    np.testing.assert_allclose(ann.duration[windows] * sfreq, 868)
    # filters stop at the joins; no BAD boundary that could reject a window starting there
    edges = ann.onset[ann.description == "EDGE boundary"] * sfreq
    np.testing.assert_allclose(edges, np.arange(1, 5) * 4097)
    assert "BAD boundary" not in ann.description

    assert rec.metadata["windows_per_segment"] == 8
    assert rec.metadata["sets"]["S"]["segments"] == [1, 3]
    assert rec.metadata["sets"]["Z"]["n_windows"] == 16


def test_events_group_sets_into_classes(fake):
    events = {"non_seizure": ["Z", "N"], "seizure": ["S"]}
    rec = bonn.load(BonnSource(sets=["Z", "N", "S"]), "all", events, seed=0)
    desc = list(rec.raw.annotations.description)
    assert desc.count("non_seizure") == 24 and desc.count("seizure") == 16
    assert rec.event_id == {"non_seizure": 1, "seizure": 2}


def test_path_may_point_at_the_set_folders(fake, monkeypatch):
    root, _ = fake
    monkeypatch.delenv("MNE_DATA")
    rec = bonn.load(BonnSource(path=str(root / "bonn-epilepsy"), sets=["S"], segments=[3]),
                    "all", {"S": ["S"], "Z": ["Z"]}, seed=0)
    assert [r.run for r in rec.runs] == ["S003"]


def test_window_and_step_are_configurable(fake):
    rec = bonn.load(BonnSource(sets=["Z"], segments=[1], window_s=10.0, step_s=10.0),
                    "all", {"Z": ["Z"], "S": ["S"]}, seed=0)
    sfreq = rec.raw.info["sfreq"]
    # 10-s windows every 10 s in 23.6 s: starts 0 and 1736 samples
    np.testing.assert_allclose(rec.raw.annotations.onset * sfreq, [0, 1736])


# ------------------------------------------------------------------------------ errors


def test_missing_segment_names_the_file(fake):
    with pytest.raises(DataError, match=r"Z003\.txt not found") as err:
        bonn.load(BonnSource(sets=["Z"], segments=[1, 3]), "all", EVENTS5, seed=0)
    assert err.value.subject == "all" and err.value.file.endswith("Z")


def test_missing_set_folder_says_where_and_how(fake):
    with pytest.raises(DataError, match="set folder 'O' not found") as err:
        bonn.load(BonnSource(sets=["Z", "O"]), "all", EVENTS5, seed=0)
    assert "bonn-epilepsy" in err.value.file and "MNE_DATA" in str(err.value)


@pytest.mark.parametrize(("content", "match"), [
    ("12\r\n" * 4000, "holds 4000 samples.*expected 4097"),
    ("12\r\n" * 10 + "x7\r\n" + "12\r\n" * 4086, r"value 11 \('x7'\) is not a number"),
])
def test_malformed_segment_names_the_file(fake, content, match):
    root, _ = fake
    bad = root / "bonn-epilepsy" / "Z" / "Z002.txt"
    bad.write_text(content)
    with pytest.raises(DataError, match=match) as err:
        bonn.load(BonnSource(sets=["Z"]), "all", EVENTS5, seed=0)
    assert err.value.file == str(bad)


def test_source_validation():
    with pytest.raises(ValidationError, match="segments 1 to 100"):
        BonnSource(segments=[0, 101])
    with pytest.raises(ValidationError, match="longer than a Bonn segment"):
        BonnSource(window_s=30.0)
    with pytest.raises(ValidationError, match="listed twice"):
        BonnSource(sets=["Z", "Z"])
    assert BonnSource().sets == ["Z", "O", "N", "F", "S"]


# ---------------------------------------------------------------------- preprocessing


def _bonn_preprocessing(window_s: float = 5.0) -> EEGPreprocessing:
    cfg = load_config(ROOT / "config" / "bonn.yaml").datasets["bonn5"].preprocessing
    return cfg.model_copy(update={"epochs": cfg.epochs.model_copy(
        update={"tmax": window_s - 1 / SFREQ})})


def test_shipped_config_epochs_are_the_windows_after_a_fif_round_trip(fake, tmp_path):
    """Every window becomes one epoch of its own run and set, also through raw.fif (float32
    rates and onsets there once moved windows into the previous run or dropped them)."""
    _, written = fake
    rec = bonn.load(BonnSource(sets=["Z", "N", "S"]), "all", EVENTS5, seed=0)
    save_recording(rec, tmp_path / "raw.fif", tmp_path / "recording.json")
    back = read_recording(tmp_path / "raw.fif", tmp_path / "recording.json")
    epochs = preprocess(back, _bonn_preprocessing()).epochs
    assert len(epochs) == 40 and len(epochs.times) == 868
    meta = epochs.metadata
    assert (meta["run"].str[0] == meta["label"]).all()
    assert meta.groupby("run").size().to_dict() == dict.fromkeys(written, 8)
    # the first window of S003 is its first 868 samples, untouched (no filter, no reference)
    first = np.flatnonzero(meta["run"] == "S003")[0]
    np.testing.assert_allclose(epochs.get_data()[first, 0], written["S003"][:868] * 1e-6)


def test_a_window_filling_the_whole_segment_is_kept(fake):
    window = bonn.N_SAMPLES / SFREQ
    rec = bonn.load(BonnSource(sets=["Z", "S"], window_s=window, step_s=window), "all",
                    EVENTS5, seed=0)
    epochs = preprocess(rec, _bonn_preprocessing(window)).epochs
    assert len(epochs) == 4 and len(epochs.times) == bonn.N_SAMPLES
    assert list(epochs.metadata["run"]) == ["Z001", "Z002", "S001", "S003"]


def test_registered_source(fake):
    cfg = load_config(ROOT / "config" / "bonn.yaml")
    ds = cfg.datasets["bonn2"].model_copy(
        update={"source": BonnSource(sets=["Z", "S"])})
    rec = load_recording(ds, "all", seed=0)
    assert set(rec.raw.annotations.description) == {"non_seizure", "seizure", "EDGE boundary"}
