"""Tests of the embedded synthetic motor-imagery dataset and its ground truth."""

from __future__ import annotations

import json
import warnings

import mne
import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt, welch
from scipy.stats import ttest_ind
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.model_selection import StratifiedKFold, cross_val_score

from brainmill.config import SyntheticSource
from brainmill.datasets import load_recording
from brainmill.datasets import synthetic as syn
from brainmill.datasets.base import Recording, session_of_times
from brainmill.errors import DataError

EVENTS = {"left_hand": ["left_hand"], "right_hand": ["right_hand"], "feet": ["feet"]}
SEED = 42


def _small(**kw) -> SyntheticSource:
    return SyntheticSource(n_trials_per_class=3, **kw)


@pytest.fixture(scope="module")
def strong() -> Recording:
    """Subject 1 of the default config (effect 0.7), 2 sessions × 90 trials."""
    return syn.load(SyntheticSource(), "1", EVENTS, seed=SEED)


@pytest.fixture(scope="module")
def null() -> Recording:
    """Subject 5 of the default config (effect 0), 2 sessions × 90 trials."""
    return syn.load(SyntheticSource(), "5", EVENTS, seed=SEED)


def _labels(raw: mne.io.BaseRaw) -> tuple[np.ndarray, np.ndarray]:
    ann = raw.annotations
    desc = np.array([str(d) for d in ann.description])
    keep = np.isin(desc, list(EVENTS))
    return np.asarray(ann.onset)[keep], desc[keep]


def _mu_logvar(raw: mne.io.BaseRaw, picks=("C3", "C4"), window=(0.5, 3.5)):
    """Log-variance of 8–13 Hz filtered epochs, shape (n_trials, n_picks), and labels."""
    sf = raw.info["sfreq"]
    sos = butter(4, [8.0, 13.0], "bandpass", fs=sf, output="sos")
    x = sosfiltfilt(sos, raw.get_data(picks=list(picks)), axis=1)
    onsets, labels = _labels(raw)
    idx = np.round(onsets * sf).astype(int)[:, None] + np.arange(
        int(window[0] * sf), int(window[1] * sf))
    return np.log(x[:, idx].var(axis=-1)).T, labels, onsets


# ------------------------------------------------------------------------- determinism


def test_same_inputs_give_identical_data_and_metadata():
    src = _small()
    a = syn.load(src, "7", EVENTS, seed=3)
    b = syn.load(src, "7", EVENTS, seed=3)
    assert np.array_equal(a.raw.get_data(), b.raw.get_data())
    assert json.dumps(a.metadata, sort_keys=True) == json.dumps(b.metadata, sort_keys=True)
    assert list(a.raw.annotations.description) == list(b.raw.annotations.description)


@pytest.mark.parametrize(("subject", "seed"), [("8", 3), ("7", 4)])
def test_other_subject_or_seed_gives_other_data(subject, seed):
    src = _small()
    ref = syn.load(src, "7", EVENTS, seed=3).raw.get_data()
    other = syn.load(src, subject, EVENTS, seed=seed).raw.get_data()
    n = min(ref.shape[1], other.shape[1])
    assert not np.allclose(ref[:, :n], other[:, :n])


def test_metadata_is_json_and_holds_the_ground_truth(strong):
    meta = json.loads(json.dumps(strong.metadata))
    assert meta["seed"] == SEED and meta["subject"] == "1"
    assert meta["effect_size"] == 0.7 and meta["effect_size_from"] == "config"
    assert meta["erd"]["desynchronised_source"] == {
        "left_hand": "right (C4)", "right_hand": "left (C3)", "feet": "medial (Cz)"}
    assert 9 <= meta["rhythms"]["mu_hz"] <= 12 and 18 <= meta["rhythms"]["beta_hz"] <= 24
    assert 1 <= meta["background"]["exponent"] <= 2
    assert 0.2 <= meta["blinks"]["rate_hz"] <= 0.3
    assert meta["line_noise"]["freq_hz"] == 50.0
    assert [s["session"] for s in meta["sessions"]] == ["1", "2"]
    # the whole Recording description must be JSON too (recording.json)
    json.dumps(strong.to_json())


def test_unlisted_subject_draws_its_effect_without_moving_other_parameters():
    listed = SyntheticSource(effect_sizes={"9": 0.1})
    unlisted = SyntheticSource(effect_sizes={})
    a = syn.subject_parameters("9", listed, SEED)
    b = syn.subject_parameters("9", unlisted, SEED)
    assert a.effect == 0.1 and a.effect_from_config
    assert 0.3 <= b.effect <= 0.7 and not b.effect_from_config
    assert (a.mu_hz, a.beta_hz, a.blink_uv) == (b.mu_hz, b.beta_hz, b.blink_uv)
    assert np.array_equal(a.positions, b.positions)
    # subjects differ in their truth
    c = syn.subject_parameters("10", unlisted, SEED)
    assert c.mu_hz != b.mu_hz and c.effect != b.effect


# ---------------------------------------------------------------------------- structure


def test_channels_positions_and_units(strong):
    raw = strong.raw
    assert raw.ch_names == list(syn.CHANNELS) and len(raw.ch_names) == 28
    assert set(raw.get_channel_types()) == {"eeg"}
    assert raw.info["sfreq"] == 250.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ref = mne.channels.make_standard_montage("standard_1005").get_positions()["ch_pos"]
    # positions agree with standard_1005 up to the rigid transform into head coordinates
    got = np.array([ch["loc"][:3] for ch in raw.info["chs"]])
    want = np.array([ref[c] for c in raw.ch_names])
    d_got = np.linalg.norm(got[:, None] - got[None], axis=-1)
    d_want = np.linalg.norm(want[:, None] - want[None], axis=-1)
    np.testing.assert_allclose(d_got, d_want, atol=1e-6)
    # volts, realistic tens of µV
    std_uv = raw.get_data().std(axis=1) * 1e6
    assert 5 < np.median(std_uv) < 50
    assert std_uv[raw.ch_names.index("Fp1")] > 1.3 * np.median(std_uv)  # blinks


def test_sessions_runs_and_annotations(strong):
    raw, runs = strong.raw, strong.runs
    assert [(r.session, r.run, r.source) for r in runs] == [
        ("1", "1", "synthetic"), ("2", "1", "synthetic")]
    assert runs[0].start == 0.0 and runs[1].start == pytest.approx(runs[0].stop)
    assert runs[1].stop == pytest.approx(raw.n_times / raw.info["sfreq"])
    # each session lasts lead-in + 90 × (4 s imagery + 2–3 s interval)
    for r in runs:
        assert 3 + 90 * 6 <= r.stop - r.start <= 3 + 90 * 7
    assert strong.event_id == {"left_hand": 1, "right_hand": 2, "feet": 3}
    onsets, labels = _labels(raw)
    session, _ = session_of_times(onsets, runs)
    for ses in ("1", "2"):
        for cls in EVENTS:
            assert np.sum((session == ses) & (labels == cls)) == 30
    durations = np.asarray(raw.annotations.duration)[np.isin(
        [str(d) for d in raw.annotations.description], list(EVENTS))]
    assert np.all(durations == 4.0)
    # trials are shuffled and spaced by 6–7 s within a session
    gaps = np.diff(onsets[session == "1"])
    assert np.all((gaps >= 6.0 - 1e-9) & (gaps <= 7.0 + 1e-9))
    assert len(set(labels[:10])) > 1


def test_one_session_and_two_classes():
    src = _small(n_sessions=1, classes=["left_hand", "right_hand"])
    events = {"left_hand": ["left_hand"], "right_hand": ["right_hand"]}
    rec = syn.load(src, "1", events, seed=SEED)
    assert len(rec.runs) == 1 and rec.sessions == ["1"]
    _, labels = _labels(rec.raw)
    assert sorted(labels) == ["left_hand"] * 3 + ["right_hand"] * 3
    assert rec.event_id == {"left_hand": 1, "right_hand": 2}


def test_dispatch_through_load_recording_and_missing_events():
    from brainmill.config import DatasetConfig

    cfg = DatasetConfig(source=_small(n_sessions=1), subjects=["1"], events=EVENTS,
                        evaluation={"protocols": ["within_session"]})
    rec = load_recording(cfg, "1", seed=SEED)
    assert rec.metadata["generator"] == "brainmill.datasets.synthetic"
    with pytest.raises(DataError, match="none of the configured events"):
        syn.load(_small(n_sessions=1), "1", {"a": ["T1"], "b": ["T2"]}, seed=SEED)


# --------------------------------------------------------------------------- ground truth


@pytest.mark.parametrize("session", ["1", "2"])
def test_erd_is_contralateral_in_every_session(strong, session):
    lv, labels, onsets = _mu_logvar(strong.raw)
    in_ses = session_of_times(onsets, strong.runs)[0] == session
    left, right = lv[in_ses & (labels == "left_hand")], lv[in_ses & (labels == "right_hand")]
    # right-hand imagery suppresses C3, left-hand imagery C4 (mean log-power, nats)
    assert left[:, 0].mean() - right[:, 0].mean() > 0.5
    assert right[:, 1].mean() - left[:, 1].mean() > 0.5


def test_no_effect_means_no_class_difference(null):
    lv, labels, _ = _mu_logvar(null.raw)
    ratio = lv[:, 0] - lv[:, 1]
    p = ttest_ind(ratio[labels == "left_hand"], ratio[labels == "right_hand"]).pvalue
    assert p > 0.01
    assert abs(ratio[labels == "left_hand"].mean() - ratio[labels == "right_hand"].mean()) < 0.2


def test_feet_imagery_suppresses_the_medial_source(strong):
    lv, labels, _ = _mu_logvar(strong.raw, picks=("Cz",))
    assert lv[labels == "left_hand", 0].mean() - lv[labels == "feet", 0].mean() > 0.3


def _lda_accuracy(rec) -> float:
    lv, labels, _ = _mu_logvar(rec.raw)
    keep = labels != "feet"
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    return cross_val_score(LinearDiscriminantAnalysis(), lv[keep], labels[keep], cv=cv).mean()


def test_left_right_decodable_only_with_an_effect(strong, null):
    assert _lda_accuracy(strong) > 0.8
    assert _lda_accuracy(null) < 0.65


def test_blinks_are_frontal_and_line_noise_peaks(strong):
    raw = strong.raw
    f, psd = welch(raw.get_data(), fs=raw.info["sfreq"], nperseg=500)
    low = psd[:, (f > 0) & (f < 4)].sum(axis=1)
    ch = raw.ch_names
    frontal = low[[ch.index("Fp1"), ch.index("Fp2")]].mean()
    occipital = low[[ch.index("O1"), ch.index("Oz"), ch.index("O2")]].mean()
    assert frontal > 3 * occipital
    at_line = psd[:, f == 50.0].ravel()
    nearby = psd[:, ((f >= 46) & (f <= 48)) | ((f >= 52) & (f <= 54))].mean(axis=1)
    assert np.all(at_line > 5 * nearby)


def test_line_frequency_follows_the_config_and_nyquist():
    src = _small(n_sessions=1, line_freq=60.0)
    raw = syn.load(src, "1", EVENTS, seed=SEED).raw
    f, psd = welch(raw.get_data(), fs=raw.info["sfreq"], nperseg=250)
    mean = psd.mean(axis=0)
    assert mean[f == 60.0] > 5 * mean[f == 50.0]
    rec = syn.load(_small(n_sessions=1, sfreq=100.0), "1", EVENTS, seed=SEED)
    assert rec.metadata["line_noise"]["uv_range"] is None
    f, psd = welch(rec.raw.get_data(), fs=100.0, nperseg=100)
    assert psd.mean(axis=0)[-1] < 10 * psd.mean(axis=0)[-5]


def test_session_two_is_shifted(strong):
    params = syn.subject_parameters("1", SyntheticSource(), SEED)
    s1, s2 = syn.session_parameters(params, 1), syn.session_parameters(params, 2)
    assert s1.rotation_deg == 0 and s1.amplitude_scale == 1 and np.all(s1.channel_gain == 1)
    assert 2 <= s2.rotation_deg <= 5 and 3 < s2.cap_shift_mm < 9
    assert s2.amplitude_scale != 1 and np.std(s2.channel_gain) > 0.02
    assert strong.metadata["sessions"][1]["rotation_deg"] == pytest.approx(s2.rotation_deg)
    # the shift shows in the data: per-channel RMS ratios between sessions are not uniform
    data = strong.raw.get_data()
    cut = int(round(strong.runs[1].start * strong.raw.info["sfreq"]))
    ratio = data[:, cut:].std(axis=1) / data[:, :cut].std(axis=1)
    assert np.std(np.log(ratio)) > 0.03


def test_cap_rotation_keeps_sources_on_the_sphere():
    params = syn.subject_parameters("1", SyntheticSource(), SEED)
    ses = syn.session_parameters(params, 2)
    moved = syn._rotate(params.positions, ses.rotation_axis, ses.rotation_deg)
    _, centre, radius, _ = syn._geometry()
    np.testing.assert_allclose(np.linalg.norm(moved - centre, axis=1), radius, rtol=1e-9)
    shift_mm = 1e3 * np.linalg.norm(moved - params.positions, axis=1)
    assert 0 < shift_mm.max() <= ses.cap_shift_mm + 1e-6
    # the displaced mixing is what session 2 is generated with: it must differ
    assert not np.allclose(syn._mixing(moved, params.spreads),
                           syn._mixing(params.positions, params.spreads), atol=1e-3)
