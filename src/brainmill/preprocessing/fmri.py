"""Cleaning of ROI time series (detrend, band-pass, confound regression, z-score) with QC.

One call of ``nilearn.signal.clean`` per subject, after the subject-level checks that decide
whether it is used at all: head motion (mean framewise displacement), non-finite values and
length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..datasets.fmri import ROITimeSeries
from ..errors import DataError
from ..features.connectivity import constant_rois

#: Butterworth order nilearn.signal.clean uses.
FILTER_ORDER = 5


@dataclass
class CleanSettings:
    """What :func:`clean_timeseries` does (the plain values of the pydantic config).

    Attributes
    ----------
    detrend : bool
        Remove a linear trend.
    standardize : bool
        z-score each ROI (``"zscore_sample"``: sample standard deviation).
    low_pass, high_pass : float or None
        Band-pass edges (Hz); None leaves that side open.
    confounds : bool
        Regress out ``ts.confounds`` when present.
    max_mean_fd : float or None
        Exclude subjects whose mean framewise displacement (mm) exceeds it; None: off.
    min_timepoints : int
        Fewer volumes is an error.
    on_nan : {"error", "exclude"}
        Rows with NaN/inf: raise, or exclude the subject.
    """

    detrend: bool = True
    standardize: bool = True
    low_pass: float | None = 0.1
    high_pass: float | None = 0.01
    confounds: bool = True
    max_mean_fd: float | None = 0.5
    min_timepoints: int = 50
    on_nan: Literal["error", "exclude"] = "error"


def filter_padlen(tr: float, low_pass: float | None, high_pass: float | None) -> int:
    """Padding ``scipy.signal.sosfiltfilt`` uses for nilearn's Butterworth band-pass.

    The signal needs more volumes than this; 0 when no filter is applied.
    """
    from scipy import signal as sps

    if low_pass is None and high_pass is None:
        return 0
    cutoffs = [f for f in (high_pass, low_pass) if f is not None]
    btype = "band" if len(cutoffs) == 2 else ("high" if high_pass is not None else "low")
    sos = sps.butter(FILTER_ORDER, cutoffs if len(cutoffs) == 2 else cutoffs[0], btype=btype,
                     output="sos", fs=1.0 / tr)
    # scipy's default: 3 * (2 * n_sections + 1 - number of trailing zero coefficients)
    zeros = min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    return 3 * (2 * len(sos) + 1 - zeros)


def _check_frequencies(ts: ROITimeSeries, settings: CleanSettings) -> None:
    nyquist = 0.5 / ts.tr
    for name in ("low_pass", "high_pass"):
        value = getattr(settings, name)
        if value is not None and not 0 < value < nyquist:
            # the TR comes from the subject's data (a NIfTI header, the source's tr)
            raise DataError(f"{name}={value} Hz is outside (0, {nyquist:g}) Hz, the band "
                            f"a TR of {ts.tr:g} s can represent", file=ts.source,
                            subject=ts.subject, expected=f"{name} below {nyquist:g} Hz",
                            hint=f"Lower preprocessing.{name} or check the subject's TR")
    if (settings.low_pass is not None and settings.high_pass is not None
            and settings.high_pass >= settings.low_pass):
        raise ValueError(f"high_pass ({settings.high_pass}) must be below low_pass "
                         f"({settings.low_pass})")


def clean_timeseries(
    ts: ROITimeSeries, settings: CleanSettings, mean_fd: float | None = None
) -> tuple[ROITimeSeries | None, dict[str, Any]]:
    """Clean one subject's ROI time series, or decide to leave the subject out.

    Parameters
    ----------
    ts : ROITimeSeries
    settings : CleanSettings
    mean_fd : float, optional
        The subject's mean framewise displacement (mm); motion exclusion is skipped (and the
        QC says so) when None.

    Returns
    -------
    cleaned : ROITimeSeries or None
        ``nilearn.signal.clean(ts.data, detrend=…, standardize="zscore_sample" or None,
        low_pass=…, high_pass=…, t_r=ts.tr, confounds=ts.confounds or None)``, with the
        confounds dropped (they are regressed out); None when the subject is excluded.
    qc : dict
        ``subject``, ``source``, ``n_timepoints_in``, ``n_timepoints_kept`` (0 when
        excluded), ``mean_fd``, ``excluded``, ``reason`` (None unless excluded), ``steps``
        (what was done, in order) and ``constant_rois`` (ROIs with zero variance in the input:
        they come out exactly constant, zeros when detrending, z-scoring or the high-pass
        removes the mean, and have zero connectivity, see
        :func:`brainmill.features.connectivity.connectivity_matrix`).

    Raises
    ------
    DataError
        If the subject has fewer than ``min_timepoints`` volumes or fewer than the band-pass
        filter needs, or NaN/inf rows while ``on_nan="error"``.
    ValueError
        If a cut-off frequency is not below the Nyquist frequency of ``ts.tr``.
    """
    from nilearn import signal

    if settings.on_nan not in ("error", "exclude"):
        raise ValueError(f"on_nan must be 'error' or 'exclude', got {settings.on_nan!r}")
    qc: dict[str, Any] = {
        "subject": ts.subject,
        "source": ts.source,
        "n_timepoints_in": ts.n_timepoints,
        "n_timepoints_kept": 0,
        "mean_fd": None if mean_fd is None else float(mean_fd),
        "excluded": False,
        "reason": None,
        "steps": [],
        "constant_rois": [],
    }

    def exclude(reason: str) -> tuple[None, dict[str, Any]]:
        qc["excluded"] = True
        qc["reason"] = reason
        return None, qc

    if settings.max_mean_fd is not None:
        if mean_fd is None:
            qc["steps"].append("motion check skipped: no mean FD given")
        elif not mean_fd <= settings.max_mean_fd:  # NaN mean FD is excluded too
            return exclude(f"mean FD {mean_fd:.3f} mm above the {settings.max_mean_fd} mm "
                           "threshold")
        else:
            qc["steps"].append(f"motion check: mean FD {mean_fd:.3f} mm <= "
                               f"{settings.max_mean_fd} mm")

    bad = np.flatnonzero(~np.isfinite(ts.data).all(axis=1))
    if bad.size:
        rows = ", ".join(str(r) for r in bad[:10]) + (f" and {bad.size - 10} more"
                                                      if bad.size > 10 else "")
        if settings.on_nan == "exclude":
            return exclude(f"NaN or inf in {bad.size} rows ({rows}, 0-based)")
        raise DataError(f"rows {rows} (0-based) hold NaN or inf", file=ts.source,
                        subject=ts.subject, expected="finite values in every row",
                        hint="Set on_nan: exclude to leave such subjects out")

    _check_frequencies(ts, settings)
    padlen = filter_padlen(ts.tr, settings.low_pass, settings.high_pass)
    needed = max(settings.min_timepoints, padlen + 1)
    if ts.n_timepoints < needed:
        why = (f"min_timepoints is {settings.min_timepoints}"
               if needed == settings.min_timepoints else
               f"the {settings.high_pass}-{settings.low_pass} Hz band-pass at TR "
               f"{ts.tr:g} s needs more than {padlen}")
        raise DataError(f"{ts.n_timepoints} timepoints, too few", file=ts.source,
                        subject=ts.subject,
                        expected=f"at least {needed} timepoints ({why})")

    constant = constant_rois(ts.data)
    qc["constant_rois"] = [n for n, c in zip(ts.roi_names, constant, strict=True) if c]

    confounds = None
    if settings.confounds and ts.confounds is not None and ts.confounds.shape[1] > 0:
        confounds = ts.confounds
    if settings.detrend:
        qc["steps"].append("linear detrend")
    if settings.low_pass is not None or settings.high_pass is not None:
        qc["steps"].append(f"Butterworth filter high_pass={settings.high_pass} Hz, "
                           f"low_pass={settings.low_pass} Hz (TR {ts.tr:g} s)")
    if confounds is not None:
        qc["steps"].append(f"regressed {confounds.shape[1]} confounds "
                           f"({', '.join(ts.confound_names)})")
    elif settings.confounds:
        qc["steps"].append("no confounds to regress")
    if settings.standardize:
        qc["steps"].append("z-score (sample sd)")

    cleaned = signal.clean(
        ts.data,
        detrend=settings.detrend,
        standardize="zscore_sample" if settings.standardize else None,
        low_pass=settings.low_pass,
        high_pass=settings.high_pass,
        t_r=ts.tr,
        confounds=confounds,
    )
    # a constant other than 0 leaves rounding residue (~1e-30) once its mean is removed,
    # which z-scoring keeps and an empirical correlation would turn into full-size edges: a
    # constant ROI stays exactly constant (0 when the mean is removed)
    removes_mean = settings.detrend or settings.standardize or settings.high_pass is not None
    cleaned[:, constant] = 0.0 if removes_mean else ts.data[:1, constant]
    qc["n_timepoints_kept"] = int(cleaned.shape[0])
    return ROITimeSeries(data=cleaned, tr=ts.tr, roi_names=list(ts.roi_names),
                         subject=ts.subject, source=ts.source,
                         roi_coords=ts.roi_coords), qc
