"""Embedded synthetic motor-imagery EEG: the default dataset, with a known ground truth.

Everything below is drawn from ``numpy.random.default_rng`` seeded with
``SeedSequence([seed, sha256(subject), session, stream])``, so the same seed, subject and
configuration give bit-identical data and different subjects give different data.

Generative model (the ground truth)
-----------------------------------
**Montage.** 28 EEG channels of the 10-20/10-10 system placed with MNE's ``standard_1005``
montage: Fp1 Fp2 F7 F3 Fz F4 F8, FC3 FC1 FCz FC2 FC4, C5 C3 C1 Cz C2 C4 C6, CP3 CPz CP4,
P3 Pz P4, O1 Oz O2. Data are in volts.

**Volume conduction.** Every source sits on the sphere fitted to the montage's electrodes
(radius ≈ 9.9 cm) and reaches electrode *i* with weight ``exp(-d_i² / 2σ²)``, ``d_i`` being
the straight-line distance. Sources: three sensorimotor sources under C3 (left), C4 (right)
and Cz (medial), σ ≈ 3.5 cm; two occipital sources under O1 and O2, σ ≈ 4 cm; ten diffuse
background sources (under AFz F5 F6 FCz T7 T8 CPz P7 P8 POz), σ ≈ 6 cm. Per subject every
position moves tangentially by a random 5 mm (rhythms) or 10 mm (background) and every σ is
scaled by U(0.85, 1.15).

**Background.** Each background source is Gaussian noise shaped in the frequency domain to
a power spectrum ``1 / (f² + 1 Hz²)^(β/2)`` with the subject's exponent β ~ U(1, 2); the
sources are scaled so that the median channel carries U(12, 20) µV RMS of background. Every
channel adds 1 µV RMS of independent white sensor noise.

**Rhythms.** Narrow-band Gaussian noise (a Gaussian spectral bump, so the amplitude waxes and
wanes over a few hundred ms): mu at the subject's f_mu ~ U(9, 12) Hz (spectral s.d. 1 Hz) and
beta at f_beta ~ U(18, 24) Hz (s.d. 2 Hz) on each sensorimotor source, independently;
occipital alpha at f_alpha ~ U(9, 11.5) Hz (s.d. 1 Hz) on the occipital sources. Source RMS:
mu U(4, 7) µV on the lateral sources (bursts of 10–20 µV; ×0.7 medial, each ×U(0.85, 1.15)),
beta U(0.35, 0.5) × mu, alpha U(6, 12) µV. Over minutes the amplitude of every rhythmic
source drifts (vigilance) by a factor ``exp(0.4·z(t))``, z a unit-variance Gaussian process
below ≈ 0.05 Hz, half shared by all rhythmic sources, half their own.

**Trials.** ``n_trials_per_class`` cued trials per class and session in shuffled order, after
a 3 s lead-in. The cue is at t = 0, imagery lasts 4 s, then a random 2–3 s inter-trial
interval. Annotations carry the class names with a 4 s duration.

**Event-related desynchronisation (the class information).** During imagery the mu and beta
amplitude of one source is multiplied by ``1 − e·w(t)``: left_hand → right (C4) source,
right_hand → left (C3) source, feet → medial (Cz) source. ``w`` rises with a raised-cosine
ramp of 0.5 s centred on the subject's onset latency U(0.4, 0.6) s after the cue, stays at 1
until the end of imagery (4 s) and returns to 0 over 0.5 s. The effect size ``e`` comes from
``effect_sizes[subject]`` when listed, else U(0.3, 0.7) from the seed. With ``e = 0`` the data
do not depend on the class at all (nothing else is class-dependent).

**Sessions.** Session 1 is the reference. Every later session moves the cap: all sources
(and the eyes) rotate about the sphere's centre by U(2, 5)° about a random axis (≈ 3–9 mm at
the scalp), every channel gets a gain exp(N(0, 0.1²)) (impedance) and the whole brain signal
an amplitude scale exp(U(−0.25, 0.25)).

**Artefacts (independent of class).** Eye blinks as a Poisson process at the subject's rate
U(0.2, 0.3) Hz: asymmetric Gaussian pulses of full width at half maximum U(0.15, 0.3) s and
amplitude U(0.7, 1.3) × the subject's U(80, 150) µV at Fp1/Fp2, decaying as
``exp(−(d − d_Fp)/4 cm)`` with the distance d from the nasion (≈ 3 % at Oz). Line noise: a
sinusoid at ``line_freq`` with U(1, 5) µV and a random phase per channel and session (left
out when ``line_freq`` is at or above the Nyquist frequency).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import mne
import numpy as np
from scipy.fft import irfft, next_fast_len, rfftfreq

from ..config import SyntheticSource
from ..montage import make_standard_montage
from .base import Recording, concatenate_runs, event_id_for, rename_event_annotations

MONTAGE = "standard_1005"
CHANNELS: tuple[str, ...] = (
    "Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8",
    "FC3", "FC1", "FCz", "FC2", "FC4",
    "C5", "C3", "C1", "Cz", "C2", "C4", "C6",
    "CP3", "CPz", "CP4",
    "P3", "Pz", "P4",
    "O1", "Oz", "O2",
)  # fmt: skip

#: Sensorimotor source name → the electrode it sits under.
SENSORIMOTOR: dict[str, str] = {"left": "C3", "right": "C4", "medial": "Cz"}
#: Occipital alpha source name → electrode.
OCCIPITAL: dict[str, str] = {"occipital_left": "O1", "occipital_right": "O2"}
#: Electrodes the diffuse 1/f background sources sit under.
BACKGROUND: tuple[str, ...] = ("AFz", "F5", "F6", "FCz", "T7", "T8", "CPz", "P7", "P8", "POz")
#: Class → the sensorimotor source whose mu/beta desynchronises during its imagery.
ERD_TARGET: dict[str, str] = {"left_hand": "right", "right_hand": "left", "feet": "medial"}

IMAGERY_S = 4.0
LEAD_IN_S = 3.0
ITI_S = (2.0, 3.0)
ERD_RAMP_S = 0.5
SPREAD_M = {"sensorimotor": 0.035, "occipital": 0.04, "background": 0.06}
BANDWIDTH_HZ = {"mu": 1.0, "beta": 2.0, "alpha": 1.0}
BACKGROUND_KNEE_HZ = 1.0
SENSOR_NOISE_UV = 1.0
BLINK_DECAY_M = 0.04
BLINK_FWHM_S = (0.15, 0.3)
LINE_NOISE_UV = (1.0, 5.0)
MU_UV = (4.0, 7.0)
BACKGROUND_UV = (12.0, 20.0)
SLOW_SD = 0.4
SLOW_HZ = 0.05

_STREAM_PARAMS, _STREAM_TRIALS, _STREAM_SIGNAL = 0, 1, 2


# ------------------------------------------------------------------------------ geometry


@lru_cache(maxsize=1)
def _montage() -> mne.channels.DigMontage:
    return make_standard_montage(MONTAGE)


@lru_cache(maxsize=1)
def _geometry() -> tuple[dict[str, np.ndarray], np.ndarray, float, np.ndarray]:
    """Montage positions, fitted sphere (centre, radius) and the nasion, in metres."""
    pos = _montage().get_positions()
    ch_pos = {k: np.asarray(v, float) for k, v in pos["ch_pos"].items()}
    P = np.array(list(ch_pos.values()))
    # |p - c|² = R²  ⇔  2 p·c + (R² − |c|²) = |p|², linear in (c, R² − |c|²)
    A = np.c_[2 * P, np.ones(len(P))]
    sol = np.linalg.lstsq(A, (P**2).sum(1), rcond=None)[0]
    centre = sol[:3]
    radius = float(np.sqrt(sol[3] + centre @ centre))
    return ch_pos, centre, radius, np.asarray(pos["nasion"], float)


def _channel_positions() -> np.ndarray:
    ch_pos = _geometry()[0]
    return np.array([ch_pos[c] for c in CHANNELS])


def _on_sphere(points: np.ndarray) -> np.ndarray:
    _, centre, radius, _ = _geometry()
    v = points - centre
    return centre + radius * v / np.linalg.norm(v, axis=-1, keepdims=True)


def _rotate(points: np.ndarray, axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate points (n, 3) about ``axis`` through the sphere's centre (Rodrigues)."""
    centre = _geometry()[1]
    k = axis / np.linalg.norm(axis)
    th = np.deg2rad(angle_deg)
    v = points - centre
    rot = (v * np.cos(th) + np.cross(k, v) * np.sin(th)
           + np.outer(v @ k, k) * (1 - np.cos(th)))
    return centre + rot


def _mixing(src_pos: np.ndarray, spreads: np.ndarray) -> np.ndarray:
    """Volume-conduction weights, shape (n_channels, n_sources)."""
    d2 = ((_channel_positions()[:, None, :] - src_pos[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * spreads[None, :] ** 2))


def _blink_topography(eye: np.ndarray) -> np.ndarray:
    """Blink amplitude per channel relative to Fp1/Fp2, shape (n_channels,)."""
    d = np.linalg.norm(_channel_positions() - eye, axis=1)
    d_fp = d[[CHANNELS.index("Fp1"), CHANNELS.index("Fp2")]].mean()
    return np.exp(-(d - d_fp) / BLINK_DECAY_M)


# ---------------------------------------------------------------------------- parameters


def _subject_key(subject: str) -> int:
    return int.from_bytes(hashlib.sha256(str(subject).encode()).digest()[:8], "little")


def _rng(seed: int, subject: str, session: int, stream: int) -> np.random.Generator:
    ss = np.random.SeedSequence([int(seed) % 2**64, _subject_key(subject), session, stream])
    return np.random.default_rng(ss)


@dataclass(frozen=True)
class SubjectParameters:
    """The drawn ground truth of one synthetic subject (see the module docstring).

    Attributes
    ----------
    subject : str
    seed : int
    effect : float
        Fractional mu/beta desynchronisation during imagery.
    effect_from_config : bool
        Whether ``effect`` came from ``effect_sizes`` (else from the seed).
    mu_hz, beta_hz, alpha_hz : float
        Centre frequencies of the rhythms.
    mu_uv, beta_uv : dict of str to float
        RMS amplitude (µV) of each sensorimotor source's rhythm.
    alpha_uv : dict of str to float
        RMS amplitude (µV) of each occipital source.
    background_exponent : float
        β of the ``1/f^β`` background.
    background_uv : float
        Background RMS (µV) of the median channel.
    erd_onset_s : float
        Latency after the cue at which the desynchronisation reaches half depth.
    blink_rate_hz, blink_uv : float
        Poisson blink rate and typical blink amplitude at Fp1/Fp2 (µV).
    source_names : tuple of str
        Sensorimotor, occipital then background sources.
    positions : ndarray, shape (n_sources, 3)
        Source positions (m) in the montage's frame.
    spreads : ndarray, shape (n_sources,)
        Volume-conduction σ (m) of each source.
    """

    subject: str
    seed: int
    effect: float
    effect_from_config: bool
    mu_hz: float
    beta_hz: float
    alpha_hz: float
    mu_uv: dict[str, float]
    beta_uv: dict[str, float]
    alpha_uv: dict[str, float]
    background_exponent: float
    background_uv: float
    erd_onset_s: float
    blink_rate_hz: float
    blink_uv: float
    source_names: tuple[str, ...]
    positions: np.ndarray
    spreads: np.ndarray


@dataclass(frozen=True)
class SessionParameters:
    """Per-session shift and line noise.

    Attributes
    ----------
    session : int
        1-based session number; session 1 carries no shift.
    rotation_deg : float
        Cap displacement as a rotation of sources and eyes about the sphere's centre.
    rotation_axis : ndarray, shape (3,)
        Unit axis of that rotation.
    amplitude_scale : float
        Overall scaling of the brain signal and blinks.
    channel_gain : ndarray, shape (n_channels,)
        Per-channel gain (impedance).
    line_uv : ndarray, shape (n_channels,)
        Line-noise amplitude (µV) per channel.
    line_phase : ndarray, shape (n_channels,)
        Line-noise phase (rad) per channel.
    """

    session: int
    rotation_deg: float
    rotation_axis: np.ndarray
    amplitude_scale: float
    channel_gain: np.ndarray
    line_uv: np.ndarray
    line_phase: np.ndarray

    @property
    def cap_shift_mm(self) -> float:
        """Scalp displacement (mm) the rotation causes at its largest."""
        return 1e3 * _geometry()[2] * np.deg2rad(self.rotation_deg)


def subject_parameters(subject: str, source: SyntheticSource, seed: int) -> SubjectParameters:
    """Draw the ground truth of one subject.

    Parameters
    ----------
    subject : str
        Subject label.
    source : SyntheticSource
        Configuration; only ``effect_sizes`` is read here.
    seed : int
        The run's seed.
    """
    subject = str(subject)
    rng = _rng(seed, subject, 0, _STREAM_PARAMS)
    # every draw happens whatever the config says, so one option never shifts the others
    drawn_effect = float(rng.uniform(0.3, 0.7))
    mu_hz = float(rng.uniform(9.0, 12.0))
    beta_hz = float(rng.uniform(18.0, 24.0))
    alpha_hz = float(rng.uniform(9.0, 11.5))
    mu_base = rng.uniform(*MU_UV)
    mu_jitter = rng.uniform(0.85, 1.15, size=3)
    beta_ratio = rng.uniform(0.35, 0.5)
    alpha_base = rng.uniform(6.0, 12.0)
    alpha_jitter = rng.uniform(0.85, 1.15, size=2)
    background_exponent = float(rng.uniform(1.0, 2.0))
    background_uv = float(rng.uniform(*BACKGROUND_UV))
    erd_onset_s = float(rng.uniform(0.4, 0.6))
    blink_rate_hz = float(rng.uniform(0.2, 0.3))
    blink_uv = float(rng.uniform(80.0, 150.0))

    ch_pos = _geometry()[0]
    anchors = [*SENSORIMOTOR.values(), *OCCIPITAL.values(), *BACKGROUND]
    names = (*SENSORIMOTOR, *OCCIPITAL, *(f"background_{a}" for a in BACKGROUND))
    n_rhythm = len(SENSORIMOTOR) + len(OCCIPITAL)
    jitter_m = np.r_[np.full(n_rhythm, 0.005), np.full(len(BACKGROUND), 0.010)]
    nominal = np.array([ch_pos[a] for a in anchors])
    positions = _on_sphere(nominal + rng.normal(size=nominal.shape) * jitter_m[:, None])
    spreads = np.r_[
        np.full(len(SENSORIMOTOR), SPREAD_M["sensorimotor"]),
        np.full(len(OCCIPITAL), SPREAD_M["occipital"]),
        np.full(len(BACKGROUND), SPREAD_M["background"]),
    ] * rng.uniform(0.85, 1.15, size=len(anchors))

    mu = mu_base * mu_jitter * np.array([1.0, 1.0, 0.7])
    in_config = subject in source.effect_sizes
    return SubjectParameters(
        subject=subject,
        seed=int(seed),
        effect=float(source.effect_sizes[subject]) if in_config else drawn_effect,
        effect_from_config=in_config,
        mu_hz=mu_hz,
        beta_hz=beta_hz,
        alpha_hz=alpha_hz,
        mu_uv={k: float(v) for k, v in zip(SENSORIMOTOR, mu, strict=True)},
        beta_uv={k: float(v * beta_ratio) for k, v in zip(SENSORIMOTOR, mu, strict=True)},
        alpha_uv={k: float(alpha_base * j)
                  for k, j in zip(OCCIPITAL, alpha_jitter, strict=True)},
        background_exponent=background_exponent,
        background_uv=background_uv,
        erd_onset_s=erd_onset_s,
        blink_rate_hz=blink_rate_hz,
        blink_uv=blink_uv,
        source_names=names,
        positions=positions,
        spreads=spreads,
    )


def session_parameters(params: SubjectParameters, session: int) -> SessionParameters:
    """Draw the shift of one session (1-based; session 1 is unshifted)."""
    rng = _rng(params.seed, params.subject, session, _STREAM_PARAMS)
    n_ch = len(CHANNELS)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = float(rng.uniform(2.0, 5.0))
    scale = float(np.exp(rng.uniform(-0.25, 0.25)))
    gain = np.exp(rng.normal(0.0, 0.1, size=n_ch))
    line_uv = rng.uniform(*LINE_NOISE_UV, size=n_ch)
    line_phase = rng.uniform(0.0, 2 * np.pi, size=n_ch)
    if session == 1:
        angle, scale, gain = 0.0, 1.0, np.ones(n_ch)
    return SessionParameters(session=session, rotation_deg=angle, rotation_axis=axis,
                             amplitude_scale=scale, channel_gain=gain, line_uv=line_uv,
                             line_phase=line_phase)


# ------------------------------------------------------------------------------- signals


def trial_schedule(
    source: SyntheticSource, params: SubjectParameters, session: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Cue onsets and classes of one session.

    Returns
    -------
    onsets : ndarray, shape (n_trials,)
        Cue times (s) from the start of the session.
    labels : ndarray of str, shape (n_trials,)
        Class of each trial, shuffled.
    duration : float
        Session length (s), ending with the last trial's inter-trial interval.
    """
    rng = _rng(params.seed, params.subject, session, _STREAM_TRIALS)
    labels = rng.permutation(np.repeat(np.array(source.classes), source.n_trials_per_class))
    step = IMAGERY_S + rng.uniform(*ITI_S, size=len(labels))
    onsets = LEAD_IN_S + np.r_[0.0, np.cumsum(step)[:-1]]
    return onsets, labels, float(LEAD_IN_S + step.sum())


def _spectral_noise(
    rng: np.random.Generator, amplitude: np.ndarray, n_fft: int, n_times: int
) -> np.ndarray:
    """Unit-variance Gaussian processes with spectral amplitude ``amplitude`` (k, n_freqs)."""
    shape = amplitude.shape
    spec = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * amplitude
    x = irfft(spec, n_fft, axis=1)[:, :n_times]
    return x / x.std(axis=1, keepdims=True)


def _erd_envelope(onset_s: float, sfreq: float) -> np.ndarray:
    """Depth of desynchronisation w(t) from the cue (sample 0), values in [0, 1]."""
    t = np.arange(int(np.ceil((IMAGERY_S + ERD_RAMP_S) * sfreq))) / sfreq
    rise = np.clip((t - onset_s + ERD_RAMP_S / 2) / ERD_RAMP_S, 0.0, 1.0)
    fall = np.clip((IMAGERY_S + ERD_RAMP_S - t) / ERD_RAMP_S, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * np.minimum(rise, fall))


def _blinks(rng: np.random.Generator, params: SubjectParameters, n_times: int,
            sfreq: float) -> np.ndarray:
    """Blink time course (µV at Fp1/Fp2), shape (n_times,)."""
    duration = n_times / sfreq
    n = rng.poisson(params.blink_rate_hz * duration)
    centres = rng.uniform(0.0, duration, size=n)
    sd = rng.uniform(*BLINK_FWHM_S, size=n) / 2.3548
    amp = params.blink_uv * rng.uniform(0.7, 1.3, size=n)
    half = int(np.ceil(4 * 1.2 * BLINK_FWHM_S[1] / 2.3548 * sfreq))
    idx = np.round(centres * sfreq).astype(int)[:, None] + np.arange(-half, half + 1)
    dt = idx / sfreq - centres[:, None]
    # the lid closes faster than it reopens: rise s.d. 0.8·sd, fall s.d. 1.2·sd
    width = np.where(dt < 0, 0.8, 1.2) * sd[:, None]
    values = amp[:, None] * np.exp(-0.5 * (dt / width) ** 2)
    keep = (idx >= 0) & (idx < n_times)
    return np.bincount(idx[keep], weights=values[keep], minlength=n_times)


def simulate_session(
    source: SyntheticSource, params: SubjectParameters, session: int
) -> mne.io.RawArray:
    """Simulate one session (one run) of a subject.

    Parameters
    ----------
    source : SyntheticSource
        Configuration (classes, trials, sampling and line frequency).
    params : SubjectParameters
        The subject's ground truth from :func:`subject_parameters`.
    session : int
        1-based session number.

    Returns
    -------
    raw : mne.io.RawArray
        Shape (28 channels, n_times), volts, ``standard_1005`` positions, annotations with the
        class names at the cues (duration 4 s).
    """
    sfreq = float(source.sfreq)
    ses = session_parameters(params, session)
    onsets, labels, duration = trial_schedule(source, params, session)
    n_times = int(round(duration * sfreq))
    rng = _rng(params.seed, params.subject, session, _STREAM_SIGNAL)

    n_fft = next_fast_len(n_times, real=True)
    freqs = rfftfreq(n_fft, 1.0 / sfreq)

    def bump(f0: float, sd: float) -> np.ndarray:
        return np.exp(-0.5 * ((freqs - f0) / sd) ** 2)

    n_sm, n_occ = len(SENSORIMOTOR), len(OCCIPITAL)
    pink = (freqs**2 + BACKGROUND_KNEE_HZ**2) ** (-params.background_exponent / 4)
    pink[0] = 0.0
    shapes = np.vstack([
        np.tile(bump(params.mu_hz, BANDWIDTH_HZ["mu"]), (n_sm, 1)),
        np.tile(bump(params.beta_hz, BANDWIDTH_HZ["beta"]), (n_sm, 1)),
        np.tile(bump(params.alpha_hz, BANDWIDTH_HZ["alpha"]), (n_occ, 1)),
        np.tile(pink, (len(BACKGROUND), 1)),
        np.tile(bump(0.0, SLOW_HZ), (1 + n_sm + n_occ, 1)),
    ])
    z = _spectral_noise(rng, shapes, n_fft, n_times)
    mu, beta = z[:n_sm], z[n_sm:2 * n_sm]
    alpha = z[2 * n_sm:2 * n_sm + n_occ]
    background = z[2 * n_sm + n_occ:2 * n_sm + n_occ + len(BACKGROUND)]
    slow = z[-(n_sm + n_occ):]
    # slow drifts of rhythm amplitude (vigilance), half shared by all rhythmic sources
    drift = np.exp(SLOW_SD * np.sqrt(0.5) * (z[-(1 + n_sm + n_occ)] + slow))

    # desynchronisation gain 1 − e·w(t) of each sensorimotor source
    gain = np.ones((n_sm, n_times))
    if params.effect > 0:
        env = _erd_envelope(params.erd_onset_s, sfreq)
        cue = np.round(onsets * sfreq).astype(int)
        for k, name in enumerate(SENSORIMOTOR):
            classes = [c for c, target in ERD_TARGET.items() if target == name]
            idx = cue[np.isin(labels, classes)][:, None] + np.arange(len(env))
            ok = idx < n_times
            gain[k, idx[ok]] = 1.0 - params.effect * np.broadcast_to(env, idx.shape)[ok]

    mu_uv = np.array(list(params.mu_uv.values()))[:, None]
    beta_uv = np.array(list(params.beta_uv.values()))[:, None]
    alpha_uv = np.array(list(params.alpha_uv.values()))[:, None]
    # background sources share one amplitude, set on the unshifted mixing of the subject
    mix0 = _mixing(params.positions, params.spreads)[:, n_sm + n_occ:]
    bg_uv = params.background_uv / np.sqrt(np.median((mix0**2).sum(1)))
    sources = np.vstack([drift[:n_sm] * gain * (mu_uv * mu + beta_uv * beta),
                         drift[n_sm:] * alpha_uv * alpha, bg_uv * background])

    positions, eye = params.positions, _geometry()[3]
    if ses.rotation_deg:
        positions = _rotate(positions, ses.rotation_axis, ses.rotation_deg)
        eye = _rotate(eye[None, :], ses.rotation_axis, ses.rotation_deg)[0]
    data = _mixing(positions, params.spreads) @ sources
    data += np.outer(_blink_topography(eye), _blinks(rng, params, n_times, sfreq))
    data *= ses.amplitude_scale * ses.channel_gain[:, None]
    data += SENSOR_NOISE_UV * rng.standard_normal(data.shape)
    if source.line_freq < sfreq / 2:
        wt = 2 * np.pi * source.line_freq * np.arange(n_times) / sfreq
        # a·sin(ωt + φ) = a·cos φ·sin ωt + a·sin φ·cos ωt: two outer products, no 2-D sin
        data += np.outer(ses.line_uv * np.cos(ses.line_phase), np.sin(wt))
        data += np.outer(ses.line_uv * np.sin(ses.line_phase), np.cos(wt))

    info = mne.create_info(list(CHANNELS), sfreq, "eeg")
    raw = mne.io.RawArray(data * 1e-6, info, verbose="error")
    raw.set_montage(_montage().copy(), verbose="error")
    raw.set_annotations(mne.Annotations(onsets, IMAGERY_S, labels))
    return raw


# ----------------------------------------------------------------------------- loader


def _r(x: float) -> float:
    return round(float(x), 6)


def ground_truth(
    source: SyntheticSource, params: SubjectParameters, sessions: list[SessionParameters]
) -> dict[str, Any]:
    """JSON-able description of the generative model of one subject (``Recording.metadata``)."""
    names = list(params.source_names)
    line_on = source.line_freq < source.sfreq / 2
    return {
        "generator": "brainmill.datasets.synthetic",
        "description": (
            "Synthetic motor imagery: 1/f background, mu/beta rhythms on C3/C4/Cz sources "
            "desynchronised by imagery, occipital alpha, blinks and line noise, mixed by "
            "Gaussian volume conduction onto a standard_1005 montage."
        ),
        "seed": params.seed,
        "subject": params.subject,
        "classes": list(source.classes),
        "effect_size": _r(params.effect),
        "effect_size_from": "config" if params.effect_from_config else "seed",
        "erd": {
            "desynchronised_source": {c: f"{ERD_TARGET[c]} ({SENSORIMOTOR[ERD_TARGET[c]]})"
                                      for c in source.classes},
            "bands": ["mu", "beta"],
            "amplitude_factor": _r(1.0 - params.effect),
            "onset_s": _r(params.erd_onset_s),
            "ramp_s": ERD_RAMP_S,
        },
        "rhythms": {
            "mu_hz": _r(params.mu_hz),
            "beta_hz": _r(params.beta_hz),
            "alpha_hz": _r(params.alpha_hz),
            "bandwidth_sd_hz": BANDWIDTH_HZ,
            "mu_uv_rms": {k: _r(v) for k, v in params.mu_uv.items()},
            "beta_uv_rms": {k: _r(v) for k, v in params.beta_uv.items()},
            "alpha_uv_rms": {k: _r(v) for k, v in params.alpha_uv.items()},
            "amplitude_drift": {"log_sd": SLOW_SD, "below_hz": SLOW_HZ, "shared_fraction": 0.5},
        },
        "background": {
            "exponent": _r(params.background_exponent),
            "knee_hz": BACKGROUND_KNEE_HZ,
            "median_channel_uv_rms": _r(params.background_uv),
            "n_sources": len(BACKGROUND),
        },
        "sensor_noise_uv_rms": SENSOR_NOISE_UV,
        "blinks": {
            "rate_hz": _r(params.blink_rate_hz),
            "amplitude_uv": _r(params.blink_uv),
            "fwhm_s": list(BLINK_FWHM_S),
        },
        "line_noise": {
            "freq_hz": float(source.line_freq),
            "uv_range": list(LINE_NOISE_UV) if line_on else None,
        },
        "trials": {
            "n_per_class": source.n_trials_per_class,
            "imagery_s": IMAGERY_S,
            "iti_s": list(ITI_S),
            "lead_in_s": LEAD_IN_S,
        },
        "montage": MONTAGE,
        "sources": {
            name: {"position_m": [_r(v) for v in params.positions[i]],
                   "spread_m": _r(params.spreads[i])}
            for i, name in enumerate(names)
        },
        "sessions": [
            {
                "session": str(s.session),
                "rotation_deg": _r(s.rotation_deg),
                "rotation_axis": [_r(v) for v in s.rotation_axis],
                "cap_shift_mm": _r(s.cap_shift_mm),
                "amplitude_scale": _r(s.amplitude_scale),
                "channel_gain": {c: _r(g) for c, g in zip(CHANNELS, s.channel_gain, strict=True)},
                "line_noise_uv": ({c: _r(a) for c, a in zip(CHANNELS, s.line_uv, strict=True)}
                                  if line_on else None),
            }
            for s in sessions
        ],
    }


def load(
    source: SyntheticSource, subject: str, events: dict[str, list[str]], *, seed: int
) -> Recording:
    """Generate one subject's sessions and return them as a :class:`Recording`.

    Parameters
    ----------
    source : SyntheticSource
        Configuration of the synthetic dataset.
    subject : str
        Subject label (any string; it seeds the subject's ground truth).
    events : dict of str to list of str
        Class name → annotation descriptions (normally each class to itself).
    seed : int
        The run's seed.

    Returns
    -------
    Recording
        ``n_sessions`` sessions of one run each, concatenated; ``metadata`` holds the ground
        truth (:func:`ground_truth`).
    """
    subject = str(subject)
    params = subject_parameters(subject, source, seed)
    numbers = list(range(1, source.n_sessions + 1))
    raws = [simulate_session(source, params, s) for s in numbers]
    raw, runs = concatenate_runs(raws, [(str(s), "1", "synthetic") for s in numbers],
                                 subject=subject)
    rename_event_annotations(raw, events, subject=subject)
    sessions = [session_parameters(params, s) for s in numbers]
    return Recording(raw=raw, subject=subject, event_id=event_id_for(list(events)), runs=runs,
                     metadata=ground_truth(source, params, sessions))
