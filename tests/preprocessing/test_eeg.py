"""Tests of brainmill.preprocessing.eeg on small hand-built recordings."""

from __future__ import annotations

import io
import json
import warnings

import mne
import numpy as np
import pytest

from brainmill.config import EEGPreprocessing
from brainmill.datasets.base import Recording, concatenate_runs, event_id_for
from brainmill.errors import DataError
from brainmill.preprocessing import channel_statistics, preprocess

CHANNELS = ("Fz FC3 FC1 FCz FC2 FC4 C5 C3 C1 Cz C2 C4 C6 CP3 CP1 CPz CP2 CP4 "
            "P3 P1 Pz P2 P4 POz O1 O2").split()
CLASSES = ["left_hand", "right_hand", "feet"]
SFREQ = 200.0
RUN_S = 40.0
ONSETS = np.arange(2.0, RUN_S - 4.0, 4.0)  # 9 cues per run, windows 0.5-2.5 s
with warnings.catch_warnings():  # MNE 1.13 renames it 'colin27_1005' (same positions)
    warnings.simplefilter("ignore", FutureWarning)
    MONTAGE = mne.channels.make_standard_montage("standard_1005")


def _signals(rng: np.random.Generator, n_times: int, sines: dict[float, float]) -> np.ndarray:
    """Spatially smooth EEG-like signals (V), shape (n_channels, n_times).

    Eight sources with Gaussian spatial footprints (σ = 6 cm) plus weak sensor noise, so
    that neighbouring channels correlate and interpolation can recover a channel.
    """
    pos = np.array([MONTAGE.get_positions()["ch_pos"][c] for c in CHANNELS])
    centres = pos[rng.choice(len(pos), 8, replace=False)]
    d2 = ((pos[:, None, :] - centres[None]) ** 2).sum(-1)
    mix = np.exp(-d2 / (2 * 0.06**2))
    t = np.arange(n_times) / SFREQ
    src = rng.standard_normal((8, n_times))
    for f in (10.0, 20.0):
        src += 2 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi, (8, 1)))
    x = mix @ src * 5e-6 + rng.standard_normal((len(pos), n_times)) * 0.3e-6
    for f, amp in sines.items():
        x += amp * 1e-6 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi, (len(pos), 1)))
    return x


def make_recording(
    *, seed: int = 0, sines: dict[float, float] | None = None, positions: bool = True,
    descriptions: list[str] | None = None, run_s: float = RUN_S,
    onsets: np.ndarray = ONSETS, channels: list[str] | None = None,
) -> tuple[Recording, list[np.ndarray], list[list[str]]]:
    """Two sessions of one run each; returns the recording, clean data and labels per run."""
    rng = np.random.default_rng(seed)
    raws, labels, datas, cues = [], [], [], []
    names = channels or CHANNELS
    for ses in ("1", "2"):
        n = int(run_s * SFREQ)
        data = _signals(rng, n, sines or {})
        raw = mne.io.RawArray(data, mne.create_info(names, SFREQ, "eeg"), verbose="error")
        if positions:
            raw.set_montage(MONTAGE, on_missing="ignore", verbose="error")
        desc = descriptions or [CLASSES[i % 3] for i in range(len(onsets))]
        raw.set_annotations(mne.Annotations(onsets, 0.0, desc))
        raws.append(raw)
        labels.append((ses, "1", f"sub-01_ses-{ses}_eeg.edf"))
        datas.append(data)
        cues.append(list(desc))
    raw, runs = concatenate_runs(raws, labels, subject="01")
    rec = Recording(raw=raw, subject="01", event_id=event_id_for(CLASSES), runs=runs)
    return rec, datas, cues


def _cfg(**kw) -> EEGPreprocessing:
    return EEGPreprocessing.model_validate(kw)


def _set_channel(rec: Recording, ch: str, fn) -> None:
    idx = rec.raw.ch_names.index(ch)
    rec.raw._data[idx] = fn(rec.raw._data[idx])


def _band_power(qc: dict, key: str, f: float) -> np.ndarray:
    i = int(np.argmin(np.abs(qc["freqs"] - f)))
    return qc[key][:, i]


# ------------------------------------------------------------------------------- bad channels


def test_flat_nan_noisy_channels_detected_and_interpolated():
    clean, _, _ = make_recording()
    rec, _, _ = make_recording()
    _set_channel(rec, "C3", lambda x: np.full_like(x, 20e-6))  # DC offset, no signal
    _set_channel(rec, "Cz", lambda x: np.where(np.arange(x.size) % 97 == 0, np.nan, x))
    _set_channel(rec, "P4", lambda x: x + np.random.default_rng(1).standard_normal(x.size)
                 * 20 * x.std())
    cfg = _cfg(reference=None)
    res = preprocess(rec, cfg)
    ref = preprocess(clean, cfg)

    bads = res.log["bad_channels"]
    assert bads["flat"] == ["C3"]
    assert bads["nan"] == ["Cz"]
    assert bads["noisy"] == ["P4"]
    assert bads["action"] == "interpolate"
    assert res.epochs.ch_names == CHANNELS
    assert res.epochs.info["bads"] == []
    data = res.epochs.get_data()
    assert np.isfinite(data).all()
    for ch in ("C3", "Cz", "P4"):
        i = CHANNELS.index(ch)
        r = np.corrcoef(data[:, i].ravel(), ref.epochs.get_data()[:, i].ravel())[0, 1]
        assert r > 0.95, (ch, r)
    is_bad = dict(zip(res.qc["ch_names_before"], res.qc["is_bad"], strict=True))
    assert {c for c, b in is_bad.items() if b} == {"C3", "Cz", "P4"}
    z = dict(zip(res.qc["ch_names_before"], res.qc["channel_z"], strict=True))
    assert z["P4"] > 5 and np.isnan(z["Cz"])
    assert np.nanmax(np.abs(np.delete(res.qc["channel_z"], [CHANNELS.index(c) for c in
                                                            ("C3", "Cz", "P4")]))) < 5
    assert ref.log["bad_channels"]["action"] == "none"


def test_bad_channels_dropped_when_interpolation_off():
    rec, _, _ = make_recording()
    _set_channel(rec, "O1", lambda x: x * 20)
    res = preprocess(rec, _cfg(bad_channels={"interpolate": False}))
    assert res.log["bad_channels"]["noisy"] == ["O1"]
    assert res.log["bad_channels"]["action"] == "drop"
    assert "O1" not in res.epochs.ch_names
    assert len(res.epochs.ch_names) == len(CHANNELS) - 1
    assert res.qc["psd_after"].shape[0] == len(CHANNELS) - 1
    assert res.qc["psd_before"].shape[0] == len(CHANNELS)


def test_marked_bad_channel_is_repaired_even_with_detection_off():
    rec, _, _ = make_recording()
    rec.raw.info["bads"] = ["FC1"]
    res = preprocess(rec, _cfg(bad_channels={"enabled": False}))
    assert res.log["bad_channels"]["marked"] == ["FC1"]
    assert res.log["bad_channels"]["action"] == "interpolate"
    assert res.epochs.info["bads"] == [] and "FC1" in res.epochs.ch_names
    assert np.isnan(res.qc["channel_z"]).all() and res.qc["is_bad"].sum() == 1
    assert rec.raw.info["bads"] == ["FC1"]


def test_channel_statistics_ignore_drift():
    rec, _, _ = make_recording()
    # a slow 0.05 Hz drift of 200 µV on one channel is not noise in the EEG band
    _set_channel(rec, "Pz", lambda x: x + 200e-6 * np.sin(2 * np.pi * 0.05
                                                          * np.arange(x.size) / SFREQ))
    stats = channel_statistics(rec.raw)
    assert stats["std_uv"].shape == stats["z"].shape == (len(CHANNELS),)
    assert stats["z"][CHANNELS.index("Pz")] < 5
    assert preprocess(rec, _cfg()).log["bad_channels"]["noisy"] == []


def test_blinks_do_not_make_a_channel_noisy():
    rec, _, _ = make_recording()
    t = np.arange(rec.raw.n_times) / SFREQ
    blinks = sum(150e-6 * np.exp(-0.5 * ((t - t0) / 0.1) ** 2) for t0 in np.arange(1, t[-1], 3))
    _set_channel(rec, "Fz", lambda x: x + blinks)
    i = CHANNELS.index("Fz")
    plain = rec.raw.get_data().std(axis=1)
    assert plain[i] > 2 * np.median(plain)  # a plain std would single Fz out
    res = preprocess(rec, _cfg())
    assert res.log["bad_channels"]["noisy"] == []
    assert res.qc["channel_z"][i] < 5


def test_all_channels_bad_raises():
    rec, _, _ = make_recording()
    rec.raw._data[:] = 0.0
    with pytest.raises(DataError, match="all 26 channels are bad"):
        preprocess(rec, _cfg())


def test_nan_channel_with_detection_off_raises():
    rec, _, _ = make_recording()
    _set_channel(rec, "C4", lambda x: np.full_like(x, np.nan))
    with pytest.raises(DataError, match=r"\['C4'\] hold NaN"):
        preprocess(rec, _cfg(bad_channels={"enabled": False}))


# ------------------------------------------------------------------------------------ montage


def test_montage_set_when_positions_missing():
    rec, _, _ = make_recording(positions=False)
    _set_channel(rec, "C3", lambda x: x * 0)
    res = preprocess(rec, _cfg())
    step = next(s for s in res.log["steps"] if s["step"] == "montage")
    assert step["applied"] is True and step["missing"] == []
    assert res.log["bad_channels"]["action"] == "interpolate"
    assert not np.allclose(res.epochs.get_data(picks="C3"), 0)


def test_channel_missing_from_montage():
    chans = CHANNELS[:-1] + ["XYZ1"]
    rec, _, _ = make_recording(positions=False, channels=chans)
    with pytest.raises(DataError, match=r"\['XYZ1'\] are not in the 'standard_1005'"):
        preprocess(rec, _cfg())
    res = preprocess(rec, _cfg(bad_channels={"interpolate": False}))
    step = next(s for s in res.log["steps"] if s["step"] == "montage")
    assert step["missing"] == ["XYZ1"]
    assert any("XYZ1" in w for w in res.log["warnings"])


# ------------------------------------------------------------------------ reference & filters


def test_average_reference_zero_mean():
    rec, _, _ = make_recording()
    res = preprocess(rec, _cfg(l_freq=None, h_freq=None))
    data = res.epochs.get_data()
    assert np.abs(data.mean(axis=1)).max() < 1e-12
    assert np.abs(data).max() > 1e-6


def test_single_channel_reference_is_dropped():
    rec, _, _ = make_recording()
    res = preprocess(rec, _cfg(reference=["Cz"]))
    step = next(s for s in res.log["steps"] if s["step"] == "reference")
    assert step["dropped_zero_channels"] == ["Cz"]
    assert "Cz" not in res.epochs.ch_names


def test_bandpass_removes_out_of_band_sines():
    rec, _, _ = make_recording(sines={2.0: 40.0, 10.0: 40.0, 45.0: 40.0})
    res = preprocess(rec, _cfg(reference=None, l_freq=8, h_freq=30))
    ratio = {f: _band_power(res.qc, "psd_after", f) / _band_power(res.qc, "psd_before", f)
             for f in (2.0, 10.0, 45.0)}
    assert ratio[2.0].max() < 1e-3
    assert ratio[45.0].max() < 1e-3
    assert 0.8 < ratio[10.0].min() and ratio[10.0].max() < 1.2


def test_notch_removes_line_noise():
    rec, _, _ = make_recording(sines={50.0: 30.0})
    res = preprocess(rec, _cfg(reference=None, l_freq=None, h_freq=None, notch=[50, 150]))
    step = next(s for s in res.log["steps"] if s["step"] == "notch")
    assert step["freqs"] == [50.0] and step["skipped_above_nyquist"] == [150.0]
    r50 = _band_power(res.qc, "psd_after", 50) / _band_power(res.qc, "psd_before", 50)
    r10 = _band_power(res.qc, "psd_after", 10) / _band_power(res.qc, "psd_before", 10)
    assert r50.max() < 1e-2
    assert 0.9 < r10.min() and r10.max() < 1.1
    skipped = preprocess(rec, _cfg())
    assert {"step": "notch", "freqs": None, "applied": False} in skipped.log["steps"]


def test_resample_changes_sfreq_and_epoch_length():
    rec, _, _ = make_recording()
    res = preprocess(rec, _cfg(resample=100))
    assert res.epochs.info["sfreq"] == 100.0
    assert res.log["sfreq_in"] == SFREQ and res.log["sfreq_out"] == 100.0
    assert len(res.epochs.times) == 201  # 0.5-2.5 s at 100 Hz
    assert res.qc["freqs"][-1] == 50.0
    assert res.qc["psd_before"].shape == res.qc["psd_after"].shape
    kept = preprocess(rec, _cfg())
    assert len(kept.epochs.times) == 401
    np.testing.assert_allclose(res.epochs.metadata["onset"], kept.epochs.metadata["onset"],
                               atol=1 / 100)


# ------------------------------------------------------------------------------------- epochs


def test_metadata_session_run_label_onset():
    rec, _, cues = make_recording()
    res = preprocess(rec, _cfg())
    meta = res.epochs.metadata
    assert list(meta.columns[:4]) == ["session", "run", "label", "onset"]
    assert len(meta) == 2 * len(ONSETS)
    np.testing.assert_allclose(meta["onset"], np.concatenate([ONSETS, ONSETS + RUN_S]),
                               atol=1 / SFREQ)
    assert list(meta["session"]) == ["1"] * len(ONSETS) + ["2"] * len(ONSETS)
    assert set(meta["run"]) == {"1"}
    assert list(meta["label"]) == cues[0] + cues[1]
    assert meta["session"].map(type).eq(str).all()
    codes = res.epochs.events[:, 2]
    assert [CLASSES[c - 1] for c in codes] == list(meta["label"])
    assert res.log["epochs"]["per_session"] == {"1": 9, "2": 9}
    assert res.log["epochs"]["per_class"]["feet"] == {"events": 6, "kept": 6}


def test_epoch_across_run_boundary_dropped():
    onsets = np.append(ONSETS, RUN_S - 1.0)  # window 0.5-2.5 s crosses into the next run
    rec, _, _ = make_recording(onsets=onsets)
    res = preprocess(rec, _cfg())
    ep = res.log["epochs"]
    assert ep["n_events"] == 2 * len(onsets)
    assert ep["drop_reasons"]["overlaps annotation 'BAD boundary'"] == 1
    # the last cue of run 2 runs past the end of the recording
    assert ep["drop_reasons"]["window extends beyond the recording"] == 1
    assert ep["n_kept"] == 2 * len(ONSETS)


def test_duplicate_event_dropped_and_recorded():
    rec, _, _ = make_recording()
    rec.raw.annotations.append(ONSETS[2], 0.0, "feet")
    res = preprocess(rec, _cfg())
    ep = res.log["epochs"]
    assert ep["drop_reasons"] == {"duplicate event at the same sample": 1}
    assert ep["n_kept"] == 2 * len(ONSETS)
    assert len(res.epochs.metadata) == len(res.epochs)


def test_peak_to_peak_rejection_drops_artefact_epoch():
    rec, _, _ = make_recording()
    t0 = RUN_S + ONSETS[3] + 1.0  # inside the 4th window of session 2
    i0, i1 = int(t0 * SFREQ), int((t0 + 0.3) * SFREQ)
    burst = 600e-6 * np.sin(2 * np.pi * 15 * np.arange(i1 - i0) / SFREQ)
    rec.raw._data[CHANNELS.index("O2"), i0:i1] += burst
    res = preprocess(rec, _cfg())
    ep = res.log["epochs"]
    assert ep["n_dropped"] == 1 and ep["n_kept"] == 2 * len(ONSETS) - 1
    assert ep["drop_reasons"] == {"peak-to-peak above 150 µV": 1}
    assert ep["drop_channels"] == {"O2": 1}
    assert ep["dropped"][0]["reasons"] == ["O2"]
    assert abs(ep["dropped"][0]["onset"] - (RUN_S + ONSETS[3])) < 1 / SFREQ
    assert not np.isclose(res.epochs.metadata["onset"], RUN_S + ONSETS[3]).any()
    assert ep["per_session"] == {"1": 9, "2": 8}


# ------------------------------------------------------------------------------------- errors


def test_no_configured_events_raises():
    rec, _, _ = make_recording(descriptions=["T0"] * len(ONSETS))
    with pytest.raises(DataError, match="none of the configured event classes") as err:
        preprocess(rec, _cfg())
    assert "subject 01" in str(err.value)
    assert "sub-01_ses-1_eeg.edf" in str(err.value)


def test_recording_shorter_than_epoch_raises():
    rec, _, _ = make_recording(run_s=0.8, onsets=np.array([0.1]))
    with pytest.raises(DataError, match="shorter than one epoch window"):
        preprocess(rec, _cfg())


def test_all_epochs_rejected_raises():
    rec, _, _ = make_recording()
    with pytest.raises(DataError, match="all 18 epochs were dropped") as err:
        preprocess(rec, _cfg(epochs={"reject_uv": 1.0}))
    msg = str(err.value)
    assert "peak-to-peak above 1 µV" in msg and "reject_uv" in msg


def test_filter_edge_above_nyquist_raises():
    rec, _, _ = make_recording()
    with pytest.raises(DataError, match="Nyquist"):
        preprocess(rec, _cfg(h_freq=120))


# ---------------------------------------------------------------------------- outputs & input


def test_outputs_serialisable_and_input_untouched():
    rec, _, _ = make_recording()
    _set_channel(rec, "FC4", lambda x: np.full_like(x, np.nan))
    before = rec.raw.get_data()
    info_before = (list(rec.raw.ch_names), rec.raw.info["sfreq"], list(rec.raw.info["bads"]))
    ann_before = list(rec.raw.annotations.description)

    res = preprocess(rec, _cfg(notch=[50], resample=100))

    np.testing.assert_array_equal(rec.raw.get_data(), before)  # NaN compare equal here
    assert (list(rec.raw.ch_names), rec.raw.info["sfreq"], list(rec.raw.info["bads"])) \
        == info_before
    assert list(rec.raw.annotations.description) == ann_before

    log = json.loads(json.dumps(res.log, allow_nan=False))
    assert [s["step"] for s in log["steps"]] == [
        "picks", "montage", "bad_channels", "reference", "notch", "filter", "resample",
        "epochs"]
    assert log["n_channels_in"] == 26 and log["ch_names"] == CHANNELS
    assert set(log["bad_channels"]) >= {"flat", "nan", "noisy", "action"}
    assert set(log["epochs"]) >= {"n_events", "n_kept", "n_dropped", "drop_reasons",
                                  "per_class", "per_session"}
    assert log["versions"]["mne"] == mne.__version__

    buf = io.BytesIO()
    np.savez_compressed(buf, **res.qc)
    buf.seek(0)
    qc = np.load(buf, allow_pickle=False)
    n_f = len(qc["freqs"])
    assert qc["psd_before"].shape == (26, n_f) and qc["psd_after"].shape == (26, n_f)
    assert qc["ch_names_before"].shape == qc["ch_names_after"].shape == (26,)
    for key in ("channel_std_uv", "channel_z", "is_bad"):
        assert qc[key].shape == (26,)
    assert qc["is_bad"].dtype == bool and qc["is_bad"].sum() == 1
    assert np.isfinite(qc["psd_after"]).all()
