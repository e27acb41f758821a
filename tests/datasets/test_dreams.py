"""DREAMS sleep loader on tiny fake excerpts written in the real text formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from brainmill.config import DreamsSource, load_config
from brainmill.datasets import dreams
from brainmill.errors import DataError
from brainmill.preprocessing import preprocess

ROOT = Path(__file__).resolve().parents[2]
EVENTS = {s: [s] for s in ["W", "REM", "N1", "N2", "N3"]}
# 4 windows of six 5-s scores: N2 | S3+S4 (N3) | mixed S1/S2 | unknown (-1)
SCORES_A = [2] * 6 + [1, 1, 0, 0, 1, 0] + [3, 3, 3, 2, 2, 2] + [5, 5, -1, 5, 5, 5]
# W | REM | N1 | N2
SCORES_B = [5] * 6 + [4] * 6 + [3] * 6 + [2] * 6


def _write_excerpt(folder: Path, n: int, channel: str, scores: list[int],
                   signal) -> np.ndarray:
    """Write excerptN.txt (header, one value per line as '   -0.9562') and its hypnogram at
    the file rate of excerpt ``n``; ``signal(t)`` gives µV. Returns the values written."""
    folder.mkdir(parents=True, exist_ok=True)
    sfreq = dreams.file_sfreq(n)
    t = np.arange(int(len(scores) * 5 * sfreq)) / sfreq
    values = np.round(signal(t), 4)
    (folder / f"excerpt{n}.txt").write_text(
        f"[{channel}]\n" + "".join(f"{v:10.4f}\n" for v in values))
    (folder / f"Hypnogram_excerpt{n}.txt").write_text(
        "[Hypnogram]\n" + "".join(f"{s}\n" for s in scores))
    return values


def _sine(f_hz):
    return lambda t: 20 * np.sin(2 * np.pi * f_hz * t)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    folder = tmp_path / "dreams-spindles"
    a = _write_excerpt(folder, 1, "C3-A1", SCORES_A, _sine(3.0))    # 100 Hz file
    b = _write_excerpt(folder, 2, "CZ-A1", SCORES_B, _sine(11.0))   # 200 Hz file
    monkeypatch.setenv("MNE_DATA", str(tmp_path))
    return folder, a, b


# ------------------------------------------------------------------------------ labels


def test_window_labels_by_hand():
    labels, counts = dreams.window_labels(np.array(SCORES_A + [2, 2]))
    assert labels == ["N2", "N3", None, None]
    assert counts == {"kept": 2, "mixed": 1, "unknown": 1, "trailing_scores": 2}
    labels, _ = dreams.window_labels(np.array(SCORES_B))
    assert labels == ["W", "REM", "N1", "N2"]
    # an unknown score wins over disagreement; a code outside 0..5 is unknown as well
    labels, counts = dreams.window_labels(np.array([2, 3, -2, 2, 2, 2] + [7] * 6))
    assert labels == [None, None] and counts["unknown"] == 2 and counts["mixed"] == 0


# --------------------------------------------------------------------------------- load


def test_sessions_channel_rate_and_annotations(fake):
    rec = dreams.load(DreamsSource(excerpts=[1, 2]), "all", EVENTS, seed=0)
    assert rec.raw.ch_names == ["EEG"] and rec.raw.info["sfreq"] == 200.0
    assert [(r.session, r.run) for r in rec.runs] == [("excerpt1", "1"), ("excerpt2", "1")]
    assert rec.sessions == ["excerpt1", "excerpt2"]
    assert rec.runs[1].start == pytest.approx(120.0) and rec.runs[1].stop == pytest.approx(240)
    ann = rec.raw.annotations
    stages = ann.description != "EDGE boundary"
    assert list(zip(ann.onset[stages], ann.description[stages], strict=True)) == [
        (0.0, "N2"), (30.0, "N3"), (120.0, "W"), (150.0, "REM"), (180.0, "N1"),
        (210.0, "N2")]
    np.testing.assert_allclose(ann.duration[stages], 30.0)
    np.testing.assert_allclose(ann.onset[~stages], [120.0])

    ex1, ex2 = rec.metadata["excerpts"]["excerpt1"], rec.metadata["excerpts"]["excerpt2"]
    assert (ex1["channel"], ex1["sfreq_file"], ex1["resampled"]) == ("C3-A1", 100.0, True)
    assert (ex2["channel"], ex2["sfreq_file"], ex2["resampled"]) == ("CZ-A1", 200.0, False)
    assert {k: ex1[k] for k in ("kept", "mixed", "unknown", "beyond_signal")} == {
        "kept": 2, "mixed": 1, "unknown": 1, "beyond_signal": 0}
    assert ex1["per_stage"] == {"W": 0, "REM": 0, "N1": 0, "N2": 1, "N3": 1}
    assert ex2["per_stage"] == {"W": 1, "REM": 1, "N1": 1, "N2": 1, "N3": 0}


def test_resampling_keeps_the_signal(fake):
    _, _, b = fake
    rec = dreams.load(DreamsSource(excerpts=[1, 2]), "all", EVENTS, seed=0)
    data = rec.raw.get_data()[0] * 1e6
    # excerpt 1: a 3 Hz sine written at 100 Hz reads back at 200 Hz (away from the ends)
    t = np.arange(24000) / 200.0
    np.testing.assert_allclose(data[1000:23000], 20 * np.sin(2 * np.pi * 3 * t)[1000:23000],
                               atol=0.05)
    np.testing.assert_allclose(data[24000:], b)  # excerpt 2 is at 200 Hz already: untouched


def test_excerpt3_is_read_at_50_hz(tmp_path):
    folder = tmp_path / "dreams-spindles"
    _write_excerpt(folder, 3, "C3-A1", SCORES_B, _sine(2.0))
    rec = dreams.load(DreamsSource(path=str(folder), excerpts=[3]), "all", EVENTS, seed=0)
    assert rec.metadata["excerpts"]["excerpt3"]["sfreq_file"] == 50.0
    assert rec.raw.n_times == 24000  # 120 s at 200 Hz


def test_signal_shorter_than_hypnogram_is_an_error(fake):
    folder, a, _ = fake
    (folder / "excerpt1.txt").write_text("[C3-A1]\n" + "1.0\n" * (len(a) - 1000))
    with pytest.raises(DataError, match=r"last 110.0 s but the hypnogram scores 120 s") as err:
        dreams.load(DreamsSource(excerpts=[1]), "all", EVENTS, seed=0)
    assert err.value.file.endswith("excerpt1.txt")


def test_missing_hypnogram_and_bad_header(fake):
    folder, _, _ = fake
    _write_excerpt(folder, 4, "CZ-A1", SCORES_B, _sine(1.0))
    (folder / "Hypnogram_excerpt4.txt").unlink()
    with pytest.raises(DataError, match="hypnogram not found") as err:
        dreams.load(DreamsSource(excerpts=[1, 4]), "all", EVENTS, seed=0)
    assert err.value.file.endswith("Hypnogram_excerpt4.txt")
    (folder / "excerpt2.txt").write_text("1.0\n2.0\n")
    with pytest.raises(DataError, match="not a header"):
        dreams.load(DreamsSource(excerpts=[2]), "all", EVENTS, seed=0)
    (folder / "Hypnogram_excerpt1.txt").write_text("[Hypnogram]\n2\n2.5\n")
    with pytest.raises(DataError, match=r"value 2 \('2.5'\) is not an integer sleep score"):
        dreams.load(DreamsSource(excerpts=[1]), "all", EVENTS, seed=0)


def test_source_validation_and_sessions():
    with pytest.raises(ValidationError, match="excerpts 1 to 8"):
        DreamsSource(excerpts=[0, 9])
    assert DreamsSource(excerpts=[2, 5]).n_sessions_known == 2
    cfg = load_config(ROOT / "config" / "dreams.yaml").datasets["dreams"]
    assert cfg.evaluation.protocols == ["cross_session"]
    with pytest.raises(ValidationError, match="single session"):
        type(cfg).model_validate({**cfg.model_dump(), "source": {"kind": "dreams",
                                                                 "excerpts": [1]}})


# ---------------------------------------------------------------------- preprocessing


def test_shipped_preprocessing_gives_one_epoch_per_labelled_window(fake):
    cfg = load_config(ROOT / "config" / "dreams.yaml").datasets["dreams"]
    rec = dreams.load(DreamsSource(excerpts=[1, 2]), "all", EVENTS, seed=0)
    epochs = preprocess(rec, cfg.preprocessing).epochs
    meta = epochs.metadata
    assert len(epochs.times) == 6000
    assert list(zip(meta["session"], meta["label"], strict=True)) == [
        ("excerpt1", "N2"), ("excerpt1", "N3"), ("excerpt2", "W"), ("excerpt2", "REM"),
        ("excerpt2", "N1"), ("excerpt2", "N2")]
    # 0.3-35 Hz keeps an 11 Hz spindle-band sine: the W epoch (excerpt 2) is ~20 µV amplitude
    w = epochs.get_data()[2, 0, 1000:5000] * 1e6
    assert np.sqrt(2) * w.std() == pytest.approx(20, rel=0.02)
