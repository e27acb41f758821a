"""EEG preprocessing with MNE: one :class:`~brainmill.datasets.base.Recording` → epochs.

The steps run in a fixed order (picks → montage → bad channels → reference → notch → band-pass
→ resample → epochs) on a copy of the recording's raw. Every step appends its parameters to
``log["steps"]``, also when it is skipped, so ``preprocessing.json`` says what was done and why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import mne
import numpy as np
import pandas as pd
import scipy

from .. import __version__
from ..config import BadChannelConfig, EEGPreprocessing
from ..datasets.base import Recording, is_mark, session_of_times
from ..errors import DataError
from ..montage import make_standard_montage

#: high-pass (Hz) applied to a throw-away copy before channel statistics, so that slow
#: drifts (DC-coupled amplifiers) do not make a channel look noisy.
DETECTION_HIGHPASS_HZ = 1.0
#: MAD → standard deviation of a normal distribution.
MAD_SCALE = 1.4826
#: fewest good channels a recording may keep.
MIN_GOOD_CHANNELS = 3
#: Welch segment length (s) of the quality-control spectra.
PSD_SEGMENT_S = 2.0
#: fallback sphere origin (head coordinates, m) when there is no digitisation to fit one.
DEFAULT_ORIGIN = (0.0, 0.0, 0.04)


@dataclass
class PreprocessResult:
    """What :func:`preprocess` returns.

    Attributes
    ----------
    epochs : mne.Epochs
        Preloaded epochs with metadata columns ``session``, ``run``, ``label``, ``onset``.
    log : dict
        JSON-able record of every step (``preprocessing.json``).
    qc : dict of str to ndarray
        Spectra and channel statistics (``qc.npz``); see :func:`preprocess`.
    """

    epochs: mne.Epochs
    log: dict[str, Any]
    qc: dict[str, np.ndarray]


@dataclass
class _Where:
    """Subject and source files, for error messages."""

    subject: str
    files: str

    def error(self, problem: str, *, expected: str | None = None,
              hint: str | None = None) -> DataError:
        return DataError(problem, subject=self.subject, file=self.files,
                         expected=expected, hint=hint)


def _where(recording: Recording) -> _Where:
    return _Where(recording.subject,
                  ", ".join(dict.fromkeys(r.source for r in recording.runs)) or "unknown")


# ------------------------------------------------------------------------------ public API


def preprocess(recording: Recording, cfg: EEGPreprocessing) -> PreprocessResult:
    """Preprocess one subject's recording into labelled epochs.

    Parameters
    ----------
    recording : Recording
        Raw (all runs concatenated), ``event_id`` (class name → code) and run spans. Its raw
        is never modified.
    cfg : EEGPreprocessing
        Picks, montage, bad channels, reference, notch, band-pass, resample, epochs.

    Returns
    -------
    PreprocessResult
        ``epochs``: kept epochs, shape (n_kept, n_ch_out, n_times), metadata ``session``
        (str), ``run`` (str), ``label`` (class name), ``onset`` (s on the recording's time
        axis). ``log``: see the module's contract (``preprocessing.json``). ``qc``:
        ``freqs`` (n_freqs,); ``psd_before`` (n_ch_in, n_freqs) in V²/Hz after picks, before
        anything else (NaN for channels holding NaN); ``psd_after`` (n_ch_out, n_freqs) after
        resampling; ``ch_names_before`` (n_ch_in,) and ``ch_names_after`` (n_ch_out,);
        ``channel_std_uv``, ``channel_z`` (n_ch_in,) float (NaN for NaN channels, and all NaN
        when detection is off); ``is_bad`` (n_ch_in,) bool.

    Raises
    ------
    DataError
        Naming the subject and source files when no configured event occurs, the recording
        is shorter than one epoch, a picked channel is missing or not EEG, channels are
        missing from the montage while bad channels are to be interpolated, every channel
        (or all but two) is bad, channels hold NaN while detection is off, a filter edge is
        at or above Nyquist, or every epoch is dropped.
    """
    problems = preflight(recording, cfg)
    if problems:
        raise problems[0]
    where = _where(recording)

    raw = recording.raw.copy().load_data(verbose="error")
    sfreq_in = float(raw.info["sfreq"])
    steps: list[dict[str, Any]] = []
    notes: list[str] = []

    steps.append(_pick(raw, cfg.picks, where))
    ch_before = list(raw.ch_names)
    freqs, psd_before = _psd(raw, _psd_fmax(sfreq_in, cfg.resample))

    nan_chs = _zero_nonfinite_channels(raw)
    interpolating = cfg.bad_channels.enabled and cfg.bad_channels.interpolate
    steps.append(_montage(raw, cfg.montage, interpolating, where, notes))

    bad_step, bads, stats = _bad_channels(raw, cfg.bad_channels, nan_chs, where)
    steps.append(bad_step)
    steps.append(_reference(raw, cfg.reference, where))
    steps.append(_notch(raw, cfg.notch, notes))
    steps.append(_bandpass(raw, cfg.l_freq, cfg.h_freq, where))
    steps.append(_resample(raw, cfg.resample))

    freqs_after, psd_after = _psd(raw, float(freqs[-1]) if len(freqs) else None)
    if len(freqs_after) != len(freqs) or not np.allclose(freqs_after, freqs):
        psd_after = np.array([np.interp(freqs, freqs_after, row) for row in psd_after])

    epochs, epochs_step, summary = _epochs(raw, recording, cfg, where, notes)
    steps.append(epochs_step)

    log = {
        "subject": recording.subject,
        "sfreq_in": sfreq_in,
        "sfreq_out": float(epochs.info["sfreq"]),
        "n_channels_in": len(ch_before),
        "ch_names": list(epochs.ch_names),
        "bad_channels": bads,
        "steps": steps,
        "epochs": summary,
        "warnings": notes,
        "versions": {"brainmill": __version__, "mne": mne.__version__,
                     "numpy": np.__version__, "scipy": scipy.__version__},
    }
    is_bad = np.isin(ch_before, bad_step["bad"])
    qc = {
        "freqs": freqs,
        "psd_before": psd_before,
        "psd_after": psd_after,
        "ch_names_before": np.array(ch_before, dtype=str),
        "ch_names_after": np.array(epochs.ch_names, dtype=str),
        "channel_std_uv": stats["std_uv"],
        "channel_z": stats["z"],
        "is_bad": is_bad,
    }
    return PreprocessResult(epochs=epochs, log=log, qc=qc)


def preflight(recording: Recording, cfg: EEGPreprocessing) -> list[DataError]:
    """Problems that would stop :func:`preprocess`, found without reading the signal.

    The checks need the recording's header and annotations only, so they also run on a raw
    that is not preloaded (``brainmill validate``): a configured event occurs; the recording
    is at least one epoch window long; the picked channels exist and are EEG; channels lack
    no montage position that interpolating a bad channel would need; the band-pass edges lie
    below Nyquist.

    Parameters
    ----------
    recording : Recording
        The loaded (or header-only) recording.
    cfg : EEGPreprocessing
        The dataset's preprocessing settings.

    Returns
    -------
    list of DataError
        Independent problems, each naming the subject and source files; empty when
        preprocessing can start. :func:`preprocess` raises the first one.
    """
    where = _where(recording)
    raw = recording.raw
    problems: list[DataError] = []
    for check in (lambda: _check_events_and_length(recording, cfg, where),
                  lambda: _check_band_edges(float(raw.info["sfreq"]), cfg.l_freq, cfg.h_freq,
                                            where)):
        try:
            check()
        except DataError as err:
            problems.append(err)
    try:
        picked = _picked_channels(raw, cfg.picks, where)
    except DataError as err:
        return [*problems, err]
    interpolating = cfg.bad_channels.enabled and cfg.bad_channels.interpolate
    has_pos = dict(zip(raw.ch_names, _has_position(raw), strict=True))
    lacking = [c for c in picked if not has_pos[c]]
    if lacking and cfg.montage is not None and interpolating:  # as _montage decides
        try:
            missing = _missing_from_montage(picked, cfg.montage, where)
        except DataError as err:
            missing = []
            problems.append(err)
        if missing:
            problems.append(_montage_error(missing, cfg.montage, where))
    return problems


def channel_statistics(
    raw: mne.io.BaseRaw, *, flat_uv: float = 0.0, exclude: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Standard deviation (µV) and robust z-score of log standard deviation per channel.

    The standard deviation is estimated robustly, as 1.4826 × the median absolute deviation
    of the signal high-passed at :data:`DETECTION_HIGHPASS_HZ` outside ``BAD`` annotations:
    this equals the std for Gaussian noise but ignores transients (blinks, pops) that epoch
    rejection deals with, so only persistently flat or noisy channels stand out. The median
    and MAD (× 1.4826) of log std are then taken over the channels that are not in
    ``exclude`` and not flat (std ≥ ``flat_uv`` and > 0); when that MAD is 0 the mean
    absolute deviation (× 1.2533) is used instead.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        Preloaded raw with finite data.
    flat_uv : float
        Channels with a smaller std (µV) are left out of the median and MAD.
    exclude : list of str | None
        Further channels left out of the median and MAD (their z is still computed).

    Returns
    -------
    dict
        ``std_uv`` (n_channels,) and ``z`` (n_channels,).
    """
    hp = raw.copy().filter(DETECTION_HIGHPASS_HZ, None, verbose="error")
    data = hp.get_data(reject_by_annotation="omit")
    data -= np.median(data, axis=1, keepdims=True)
    std_uv = MAD_SCALE * np.median(np.abs(data), axis=1) * 1e6
    log_std = np.log(np.maximum(std_uv, np.finfo(float).tiny))
    ref = ~np.isin(raw.ch_names, exclude or []) & (std_uv >= flat_uv) & (std_uv > 0)
    z = np.zeros_like(log_std)
    if ref.any():
        med = np.median(log_std[ref])
        spread = MAD_SCALE * np.median(np.abs(log_std[ref] - med))
        if spread == 0:
            spread = 1.2533 * np.mean(np.abs(log_std[ref] - med))
        if spread > 0:
            z = (log_std - med) / spread
    return {"std_uv": std_uv, "z": z}


# ---------------------------------------------------------------------------------- checks


def _check_events_and_length(recording: Recording, cfg: EEGPreprocessing, where: _Where) -> None:
    """Fail before any filtering when no configured event occurs or the data are too short."""
    raw = recording.raw
    present = set(raw.annotations.description)
    if not present & set(recording.event_id):
        found = sorted(d for d in present if not is_mark(d))
        raise where.error(
            "none of the configured event classes occurs in the recording's annotations",
            expected=f"annotations named {sorted(recording.event_id)}; "
                     f"found {found[:20] or 'no annotations'}",
            hint="Check the dataset's 'events' mapping in the config",
        )
    duration = raw.n_times / raw.info["sfreq"]
    window = cfg.epochs.tmax - cfg.epochs.tmin
    if duration < window:
        raise where.error(
            f"the recording lasts {duration:.3f} s, shorter than one epoch window "
            f"({window:.3f} s, tmin={cfg.epochs.tmin}, tmax={cfg.epochs.tmax})",
            expected="a recording longer than preprocessing.epochs.tmax - tmin",
        )


def _check_band_edges(sfreq: float, l_freq: float | None, h_freq: float | None,
                      where: _Where) -> None:
    """The band-pass edges must lie below the recording's Nyquist frequency."""
    for name, f in (("l_freq", l_freq or None), ("h_freq", h_freq)):
        if f is not None and f >= sfreq / 2:
            raise where.error(
                f"preprocessing.{name} = {f} Hz is at or above the Nyquist frequency "
                f"({sfreq / 2} Hz) of this recording",
                expected=f"a band edge below {sfreq / 2} Hz",
            )


# ----------------------------------------------------------------------------------- steps


def _picked_channels(raw: mne.io.BaseRaw, picks: str | list[str], where: _Where) -> list[str]:
    """The channels ``picks`` selects, in recording order for ``"eeg"``; raises if invalid."""
    types = dict(zip(raw.ch_names, raw.get_channel_types(), strict=True))
    if picks == "eeg":
        if "eeg" not in types.values():
            raise where.error(
                "the recording has no EEG channels",
                expected=f"channels of type 'eeg'; found types {sorted(set(types.values()))}",
            )
        return [c for c, t in types.items() if t == "eeg"]
    missing = [c for c in picks if c not in types]
    if missing:
        raise where.error(
            f"picked channels {missing} are not in the recording",
            expected=f"names among {raw.ch_names}",
            hint="Fix preprocessing.picks",
        )
    not_eeg = {c: types[c] for c in picks if types[c] != "eeg"}
    if not_eeg:
        raise where.error(
            f"picked channels are not EEG: {not_eeg}",
            expected="EEG channels only (brainmill references and interpolates EEG)",
            hint="Remove them from preprocessing.picks",
        )
    return list(picks)


def _pick(raw: mne.io.BaseRaw, picks: str | list[str], where: _Where) -> dict[str, Any]:
    n_before = len(raw.ch_names)
    raw.pick(_picked_channels(raw, picks, where), exclude=())
    return {"step": "picks", "picks": picks, "n_channels_before": n_before,
            "n_channels_after": len(raw.ch_names)}


def _has_position(raw: mne.io.BaseRaw) -> np.ndarray:
    locs = np.array([ch["loc"][:3] for ch in raw.info["chs"]])
    return np.isfinite(locs).all(axis=1) & (np.abs(locs).sum(axis=1) > 0)


def _montage(
    raw: mne.io.BaseRaw, montage: str | None, interpolating: bool, where: _Where,
    notes: list[str],
) -> dict[str, Any]:
    has_pos = _has_position(raw)
    lacking = [c for c, ok in zip(raw.ch_names, has_pos, strict=True) if not ok]
    step: dict[str, Any] = {"step": "montage", "montage": montage, "applied": False,
                            "n_lacking_positions": len(lacking)}
    if not lacking:
        step["reason"] = "every channel already has a position"
        return step
    if montage is None:
        step["reason"] = "no montage configured"
        step["lacking_positions"] = lacking
        notes.append(f"channels without positions {lacking}: bad channels among them "
                        "cannot be interpolated and are dropped")
        return step
    mont = _standard_montage(montage, where)
    missing = _missing_from_montage(raw.ch_names, montage, where)
    if missing and interpolating:
        raise _montage_error(missing, montage, where)
    # case-insensitive matching: files often spell FP1 or CZ
    raw.set_montage(mont, match_case=False, on_missing="ignore", verbose="error")
    step.update(applied=True, match_case=False, missing=missing)
    if missing:
        notes.append(f"channels {missing} are not in montage '{montage}' and have no "
                        "position")
    return step


def _standard_montage(montage: str, where: _Where) -> mne.channels.DigMontage:
    try:
        return make_standard_montage(montage)
    except ValueError:
        raise where.error(
            f"'{montage}' is not an MNE standard montage",
            expected=f"one of {mne.channels.get_builtin_montages()}",
            hint="Fix preprocessing.montage",
        ) from None


def _missing_from_montage(ch_names: list[str], montage: str, where: _Where) -> list[str]:
    """Channels of ``ch_names`` that the standard montage lacks (case is ignored)."""
    in_montage = {n.lower() for n in _standard_montage(montage, where).ch_names}
    return [c for c in ch_names if c.lower() not in in_montage]


def _montage_error(missing: list[str], montage: str, where: _Where) -> DataError:
    return where.error(
        f"channels {missing} are not in the '{montage}' montage, so bad channels could "
        "not be interpolated",
        expected=f"channel names of '{montage}' (case is ignored)",
        hint="Rename the channels, leave them out with preprocessing.picks, or set "
             "preprocessing.bad_channels.interpolate to false",
    )


def _zero_nonfinite_channels(raw: mne.io.BaseRaw) -> list[str]:
    """Zero channels holding NaN/inf so that later filters do not spread them."""
    bad = [c for c, ok in zip(raw.ch_names, np.isfinite(raw.get_data()).all(axis=1),
                              strict=True) if not ok]
    if bad:
        raw.apply_function(lambda x: np.zeros_like(x), picks=bad, channel_wise=False)
    return bad


def _bad_channels(
    raw: mne.io.BaseRaw, cfg: BadChannelConfig, nan_chs: list[str], where: _Where
) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """Detect flat / NaN / noisy channels, then interpolate or drop them."""
    n = len(raw.ch_names)
    marked = [c for c in raw.info["bads"] if c not in nan_chs]
    if not cfg.enabled and nan_chs:
        raise where.error(
            f"channels {nan_chs} hold NaN or infinite values",
            expected="finite data, or preprocessing.bad_channels.enabled: true to replace "
                     "them",
        )
    flat: list[str] = []
    noisy: list[str] = []
    if cfg.enabled:
        stats = channel_statistics(raw, flat_uv=cfg.flat_uv, exclude=nan_chs)
        nan_mask = np.isin(raw.ch_names, nan_chs)
        stats["std_uv"][nan_mask] = np.nan
        stats["z"][nan_mask] = np.nan
        flat_mask = ~nan_mask & (stats["std_uv"] < cfg.flat_uv)
        noisy_mask = ~nan_mask & ~flat_mask & (stats["z"] > cfg.noisy_z)
        flat = [c for c, b in zip(raw.ch_names, flat_mask, strict=True) if b]
        noisy = [c for c, b in zip(raw.ch_names, noisy_mask, strict=True) if b]
    else:
        stats = {"std_uv": np.full(n, np.nan), "z": np.full(n, np.nan)}

    bad = list(dict.fromkeys(nan_chs + flat + noisy + marked))
    good = [c for c in raw.ch_names if c not in bad]
    if not good:
        raise where.error(f"all {n} channels are bad (flat {flat}, NaN {nan_chs}, "
                          f"noisy {noisy}, marked {marked})",
                          expected="at least 3 usable EEG channels")
    # only a recording that LOST channels can fall short; one recorded with 1 or 2 is fine
    if bad and len(good) < MIN_GOOD_CHANNELS:
        raise where.error(f"only {len(good)} of {n} channels are good ({good}); bad: {bad}",
                          expected=f"at least {MIN_GOOD_CHANNELS} usable EEG channels",
                          hint="Check the recording or raise "
                               "preprocessing.bad_channels.noisy_z")

    step: dict[str, Any] = {
        "step": "bad_channels", "enabled": cfg.enabled, "flat_uv": cfg.flat_uv,
        "noisy_z": cfg.noisy_z, "interpolate": cfg.interpolate,
        "statistic": f"std = 1.4826 MAD of the signal after a {DETECTION_HIGHPASS_HZ} Hz "
                     "high-pass, outside BAD annotations; z = robust z-score (median, "
                     "1.4826 MAD over channels) of log std",
        "bad": bad, "action": "none",
    }
    if bad:
        step.update(_repair(raw, bad, cfg.interpolate))
    bads = {"flat": flat, "nan": nan_chs, "noisy": noisy, "marked": marked,
            "action": step["action"]}
    return step, bads, stats


def _repair(raw: mne.io.BaseRaw, bad: list[str], interpolate: bool) -> dict[str, Any]:
    """Interpolate (spherical splines) or drop ``bad``, in place; return what was done."""
    if interpolate and _has_position(raw).all():
        origin: Any = "auto" if raw.info["dig"] else DEFAULT_ORIGIN
        raw.info["bads"] = list(bad)
        raw.interpolate_bads(reset_bads=True, mode="accurate", origin=origin,
                             verbose="error")
        done = {"action": "interpolate", "method": "spherical spline",
                "origin": origin if isinstance(origin, str) else list(origin)}
        if raw.info["bads"]:  # MNE leaves channels it could not interpolate marked
            done["dropped_not_interpolated"] = list(raw.info["bads"])
            raw.drop_channels(list(raw.info["bads"]))
        return done
    raw.info["bads"] = []
    raw.drop_channels(bad)
    reason = ("interpolation switched off" if not interpolate
              else "some channels have no position")
    return {"action": "drop", "reason": reason}


def _reference(raw: mne.io.BaseRaw, reference: str | list[str] | None,
               where: _Where) -> dict[str, Any]:
    if reference is None:
        return {"step": "reference", "ref_channels": None, "applied": False}
    if reference != "average":
        missing = [c for c in reference if c not in raw.ch_names]
        if missing:
            raise where.error(
                f"reference channels {missing} are not among the channels left after "
                "picks and bad-channel handling",
                expected=f"names among {raw.ch_names}",
                hint="Fix preprocessing.reference, or interpolate bad channels instead of "
                     "dropping them",
            )
    raw.set_eeg_reference(reference, projection=False, verbose="error")
    step: dict[str, Any] = {"step": "reference", "ref_channels": reference, "applied": True,
                            "projection": False}
    if reference != "average":
        # a single reference channel becomes identically zero: it only adds a null direction
        zero = [c for c in reference if not np.any(raw.get_data(picks=[c]))]
        if zero:
            raw.drop_channels(zero)
        step["dropped_zero_channels"] = zero
    return step


def _notch(raw: mne.io.BaseRaw, freqs: list[float] | None,
           notes: list[str]) -> dict[str, Any]:
    if not freqs:
        return {"step": "notch", "freqs": None, "applied": False}
    nyq = raw.info["sfreq"] / 2
    keep = [float(f) for f in freqs if f < nyq]
    skipped = [float(f) for f in freqs if f >= nyq]
    if skipped:
        notes.append(f"notch frequencies {skipped} Hz are at or above Nyquist ({nyq} Hz) "
                        "and were skipped")
    step: dict[str, Any] = {"step": "notch", "freqs": keep, "skipped_above_nyquist": skipped,
                            "method": "fir", "notch_widths": "freqs / 200 (MNE default)",
                            "applied": bool(keep)}
    if keep:
        raw.notch_filter(keep, verbose="error")
    return step


def _bandpass(raw: mne.io.BaseRaw, l_freq: float | None, h_freq: float | None,
              where: _Where) -> dict[str, Any]:
    sfreq = float(raw.info["sfreq"])
    l_freq = l_freq or None  # 0 Hz means no high-pass
    step: dict[str, Any] = {"step": "filter", "l_freq": l_freq, "h_freq": h_freq}
    if l_freq is None and h_freq is None:
        step["applied"] = False
        return step
    _check_band_edges(sfreq, l_freq, h_freq, where)
    h = mne.filter.create_filter(None, sfreq, l_freq, h_freq, verbose="error")
    raw.filter(l_freq, h_freq, verbose="error")
    step.update(
        applied=True, method="fir", fir_design="firwin", fir_window="hamming", phase="zero",
        filter_length_samples=int(len(h)),
        # MNE's documented 'auto' transition bandwidths
        l_trans_bandwidth=None if l_freq is None else min(max(l_freq * 0.25, 2.0), l_freq),
        h_trans_bandwidth=None if h_freq is None
        else min(max(h_freq * 0.25, 2.0), sfreq / 2 - h_freq),
        skip_by_annotation=["edge", "bad_acq_skip"],
    )
    return step


def _resample(raw: mne.io.BaseRaw, sfreq: float | None) -> dict[str, Any]:
    old = float(raw.info["sfreq"])
    step: dict[str, Any] = {"step": "resample", "sfreq_in": old, "sfreq": sfreq}
    if sfreq is None or np.isclose(sfreq, old):
        step["applied"] = False
        return step
    raw.resample(sfreq, verbose="error")
    step.update(applied=True, method="fft", npad="auto", sfreq_out=float(raw.info["sfreq"]))
    return step


# ---------------------------------------------------------------------------------- epochs


def _epochs(
    raw: mne.io.BaseRaw, recording: Recording, cfg: EEGPreprocessing, where: _Where,
    notes: list[str],
) -> tuple[mne.Epochs, dict[str, Any], dict[str, Any]]:
    ecfg = cfg.epochs
    sfreq = float(raw.info["sfreq"])
    present = {k: v for k, v in recording.event_id.items()
               if k in set(raw.annotations.description)}
    events, _ = mne.events_from_annotations(raw, event_id=present, verbose="error")
    code_to_label = {v: k for k, v in recording.event_id.items()}
    onset = (events[:, 0] - raw.first_samp) / sfreq
    session, run = session_of_times(onset, recording.runs)
    metadata = pd.DataFrame({"session": session.astype(str), "run": run.astype(str),
                             "label": [code_to_label[c] for c in events[:, 2]],
                             "onset": onset})
    reject = None if ecfg.reject_uv is None else {"eeg": ecfg.reject_uv * 1e-6}
    flat = None if ecfg.flat_uv is None else {"eeg": ecfg.flat_uv * 1e-6}
    baseline = None if ecfg.baseline is None else tuple(ecfg.baseline)
    epochs = mne.Epochs(raw, events, event_id=present, tmin=ecfg.tmin, tmax=ecfg.tmax,
                        baseline=baseline, reject=reject, flat=flat, preload=True,
                        reject_by_annotation=True, metadata=metadata,
                        event_repeated="drop", verbose="error")
    drop = _drop_summary(raw, events, epochs, cfg)

    kept_meta = epochs.metadata if len(epochs) else metadata.iloc[:0]
    per_class = {c: {"events": int((metadata["label"] == c).sum()),
                     "kept": int((kept_meta["label"] == c).sum())}
                 for c in recording.event_id}
    per_session = {s: int((kept_meta["session"] == s).sum()) for s in recording.sessions}
    # annotations that mark no configured class (other task events, comments) are left out
    # of the epochs; BAD_/EDGE_ ones are artefact and boundary marks MNE acts on itself
    ignored = Counter(str(d) for d in raw.annotations.description
                      if d not in recording.event_id and not is_mark(d))
    if ignored:
        notes.append(f"annotations {dict(sorted(ignored.items()))} mark no configured class "
                     "and were not epoched")
    for c, n in per_class.items():
        if n["events"] == 0:
            notes.append(f"class '{c}' has no events in the recording")
        elif n["kept"] == 0:
            notes.append(f"every epoch of class '{c}' was dropped")

    if len(epochs) == 0:
        median_ptp = drop["median_max_ptp_uv"]
        typical = ("" if np.isnan(median_ptp) else
                   f"; the median epoch's largest peak-to-peak is {median_ptp:.0f} µV")
        if drop["drop_channels"]:
            hint = (f"Raise preprocessing.epochs.reject_uv (now {ecfg.reject_uv} µV{typical}) "
                    "or set it to null, lower flat_uv, or check the bad-channel settings")
        else:  # no amplitude rejection: the windows meet BAD annotations or the data's end
            hint = ("Check the recording's BAD annotations and that the epoch window "
                    f"(tmin={ecfg.tmin}, tmax={ecfg.tmax} s) fits around each event")
        raise where.error(
            f"all {len(events)} epochs were dropped; reasons (epochs): "
            f"{drop['drop_reasons']}; channels over the amplitude limits most often: "
            f"{dict(Counter(drop['drop_channels']).most_common(5))}",
            expected="at least one epoch within the rejection limits",
            hint=hint,
        )

    step = {"step": "epochs", "event_id": recording.event_id, "tmin": ecfg.tmin,
            "tmax": ecfg.tmax, "baseline": None if baseline is None else list(baseline),
            "reject_uv": ecfg.reject_uv, "flat_uv": ecfg.flat_uv,
            "reject_by_annotation": True, "event_repeated": "drop",
            "n_times": len(epochs.times), "sfreq": sfreq}
    summary = {"n_events": len(events), "n_kept": len(epochs),
               "n_dropped": len(events) - len(epochs),
               "drop_reasons": drop["drop_reasons"], "drop_channels": drop["drop_channels"],
               "dropped": [{"event": i, "onset": round(float(onset[i]), 4),
                            "label": str(metadata["label"].iloc[i]), "reasons": list(d)}
                           for i, d in enumerate(epochs.drop_log) if d],
               "per_class": per_class, "per_session": per_session,
               "ignored_annotations": dict(sorted(ignored.items()))}
    return epochs, step, summary


def _drop_summary(raw: mne.io.BaseRaw, events: np.ndarray, epochs: mne.Epochs,
                  cfg: EEGPreprocessing) -> dict[str, Any]:
    """Count drop reasons (one per epoch and reason) in words, and the offending channels."""
    ecfg = cfg.epochs
    ch_names = set(epochs.ch_names)
    reasons: Counter[str] = Counter()
    channels: Counter[str] = Counter()
    amplitude_idx = []
    for i, entry in enumerate(epochs.drop_log):
        chans = [e for e in entry if e in ch_names]
        channels.update(chans)
        if chans:
            amplitude_idx.append(i)
        for e in {e for e in entry if e not in ch_names}:
            if e in ("NO_DATA", "TOO_SHORT"):
                reasons["window extends beyond the recording"] += 1
            elif e == "DROP DUPLICATE":
                reasons["duplicate event at the same sample"] += 1
            else:
                reasons[f"overlaps annotation '{e}'"] += 1

    # MNE names the channels but not whether reject or flat tripped: measure the dropped
    # epochs' peak-to-peak again (cheap: only those epochs are cut)
    max_ptp = np.array([])
    if amplitude_idx:
        again = mne.Epochs(raw, events[amplitude_idx], event_id=None, tmin=ecfg.tmin,
                           tmax=ecfg.tmax, baseline=None, preload=True,
                           reject_by_annotation=False, event_repeated="drop",
                           verbose="error")
        ptp = np.ptp(again.get_data(), axis=2) * 1e6
        max_ptp = ptp.max(axis=1)
        for row in ptp:
            if ecfg.reject_uv is not None and row.max() > ecfg.reject_uv:
                reasons[f"peak-to-peak above {ecfg.reject_uv:g} µV"] += 1
            if ecfg.flat_uv is not None and row.min() < ecfg.flat_uv:
                reasons[f"peak-to-peak below {ecfg.flat_uv:g} µV (flat)"] += 1
    kept_ptp = (np.ptp(epochs.get_data(), axis=2).max(axis=1) * 1e6 if len(epochs)
                else np.array([]))
    all_ptp = np.concatenate([max_ptp, kept_ptp])
    return {"drop_reasons": dict(reasons), "drop_channels": dict(channels),
            "median_max_ptp_uv": float(np.median(all_ptp)) if len(all_ptp) else float("nan")}


# -------------------------------------------------------------------------------------- qc


def _psd_fmax(sfreq_in: float, resample: float | None) -> float:
    """Highest frequency shared by the spectra before and after resampling."""
    return min(sfreq_in, resample or sfreq_in) / 2


def _psd(raw: mne.io.BaseRaw, fmax: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Welch spectra, ``PSD_SEGMENT_S`` segments; returns freqs (n_freqs,), psd (n_ch, n_freqs)."""
    sfreq = raw.info["sfreq"]
    n_fft = int(min(round(PSD_SEGMENT_S * sfreq), raw.n_times))
    fmax = sfreq / 2 if fmax is None else min(fmax, sfreq / 2)
    spec = raw.compute_psd(method="welch", fmax=fmax, n_fft=n_fft, picks="all",
                           exclude=(), verbose="error")
    return spec.freqs, spec.get_data()
