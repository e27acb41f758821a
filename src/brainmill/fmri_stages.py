"""Workflow stages of the fMRI branch that run per subject, and the participants table.

* ``load_fmri``: the subject's ROI time series from the configured source
  (``roi_timeseries.npz``).
* ``clean_fmri``: nilearn ``signal.clean`` and the motion exclusion
  (``cleaned_timeseries.npz`` + ``qc.json``; an excluded subject gets an empty series and the
  reason, never a silent drop).
* ``connectivity``: the subject's connectivity matrix and its upper triangle
  (``features/connectivity.npz``).
* ``fmri_participants`` (dataset level): demographics of every subject with its exclusion.

No torch here: these jobs stay light. The VAE and decoding stages are in
:mod:`brainmill.vae_stages`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import Config, FMRIDatasetConfig
from .datasets.fmri import ROITimeSeries
from .datasets.fmri_sources import load_subject, participants
from .errors import DataError
from .io import atomic_path, read_json, write_json, write_npz

logger = logging.getLogger("brainmill")


def fmri_dataset(cfg: Config, ds: str) -> FMRIDatasetConfig:
    """The fMRI dataset ``ds`` of the config (a clear error for an EEG one)."""
    ds_cfg = cfg.datasets[ds]
    if not isinstance(ds_cfg, FMRIDatasetConfig):
        raise DataError(f"dataset '{ds}' is not an fMRI dataset (modality "
                        f"'{ds_cfg.modality}')", expected="modality: fmri")
    return ds_cfg


def run_load_fmri(cfg: Config, ds: str, subject: str, out_path: str | Path) -> ROITimeSeries:
    """Write one subject's ROI time series to ``roi_timeseries.npz``."""
    ts = load_subject(fmri_dataset(cfg, ds), subject, cfg.seed)
    ts.save(out_path)
    logger.info("sub-%s: %d volumes x %d ROIs (TR %.3g s) from %s", subject, ts.n_timepoints,
                ts.n_rois, ts.tr, ts.source)
    return ts


def _subject_mean_fd(ds_cfg: FMRIDatasetConfig, subject: str, seed: int) -> float | None:
    table = participants(ds_cfg, [subject], seed)
    if "mean_fd" not in table:
        return None
    value = table.loc[subject, "mean_fd"]
    return None if pd.isna(value) else float(value)


def run_clean_fmri(cfg: Config, ds: str, subject: str, timeseries_path: str | Path,
                   out_cleaned: str | Path, out_qc: str | Path) -> dict[str, Any]:
    """Clean one subject's time series; record the QC (and the exclusion, if any)."""
    from .preprocessing.fmri import CleanSettings, clean_timeseries

    ds_cfg = fmri_dataset(cfg, ds)
    ts = ROITimeSeries.load(timeseries_path)
    settings = CleanSettings(**ds_cfg.preprocessing.model_dump())
    mean_fd = _subject_mean_fd(ds_cfg, subject, cfg.seed)
    cleaned, qc = clean_timeseries(ts, settings, mean_fd=mean_fd)
    qc["tr"] = ts.tr
    if cleaned is None:
        logger.warning("sub-%s excluded: %s", subject, qc["reason"])
        cleaned = ROITimeSeries(
            data=np.zeros((0, ts.n_rois)), tr=ts.tr, roi_names=ts.roi_names, subject=subject,
            source=ts.source, roi_coords=ts.roi_coords)
    cleaned.save(out_cleaned)
    write_json(out_qc, qc)
    return qc


def run_connectivity(cfg: Config, ds: str, subject: str, cleaned_path: str | Path,
                     qc_path: str | Path, out_path: str | Path) -> dict[str, np.ndarray]:
    """Connectivity matrix of one cleaned subject (NaN when the subject was excluded)."""
    from .features.connectivity import connectivity_matrix, upper_triangle

    ds_cfg = fmri_dataset(cfg, ds)
    ts = ROITimeSeries.load(cleaned_path)
    excluded = bool(read_json(qc_path)["excluded"])
    kind = ds_cfg.connectivity.kind
    if excluded:
        matrix = np.full((ts.n_rois, ts.n_rois), np.nan)
    else:
        matrix = connectivity_matrix(ts.data, kind=kind,
                                     estimator=ds_cfg.connectivity.estimator)
    coords = ts.roi_coords if ts.roi_coords is not None else np.zeros((0, 0))
    arrays = {"matrix": matrix, "vector": upper_triangle(matrix), "kind": np.array(kind),
              "roi_names": np.array(ts.roi_names), "roi_coords": coords,
              "excluded": np.array(excluded)}
    write_npz(out_path, **arrays)
    return arrays


def run_fmri_participants(cfg: Config, ds: str, subjects: list[str],
                          qc_paths: list[str | Path], out_csv: str | Path) -> pd.DataFrame:
    """``participants.csv``: the dataset's demographics, one row per subject, with exclusions."""
    ds_cfg = fmri_dataset(cfg, ds)
    table = participants(ds_cfg, list(subjects), cfg.seed).copy()
    qcs = [read_json(p) for p in qc_paths]
    table["excluded"] = [bool(q["excluded"]) for q in qcs]
    table["reason"] = [q.get("reason") or "" for q in qcs]
    table["n_timepoints_kept"] = [int(q["n_timepoints_kept"]) for q in qcs]
    table.index.name = "subject"
    with atomic_path(out_csv, suffix=".csv") as tmp:
        table.to_csv(tmp)
    n_out = int(table["excluded"].sum())
    logger.info("%s: %d subjects, %d excluded", ds, len(table), n_out)
    return table


def read_fmri_participants(path: str | Path) -> pd.DataFrame:
    """Read ``participants.csv`` back (index: subject label as str)."""
    table = pd.read_csv(path, dtype={"subject": str}, keep_default_na=False,
                        na_values=[""]).set_index("subject")
    table["reason"] = table["reason"].fillna("")
    return table


def check_one_atlas(atlases: dict[tuple[str, ...], list[str]], paths: list[str | Path],
                    subjects: list[str]) -> None:
    """Every subject's data must come from the same ROIs, in the same order.

    Parameters
    ----------
    atlases : dict
        ROI names (in order) → the subjects that have them.
    paths, subjects : list
        Each subject's file, for the message, in the same order.

    Raises
    ------
    DataError
        Naming the first subject whose ROIs differ from the majority's, and every group.
    """
    if len(atlases) < 2:
        return
    by_size = sorted(atlases.items(), key=lambda kv: -len(kv[1]))
    common, _ = by_size[0]
    odd = [s for names, subs in by_size[1:] for s in subs]
    first = odd[0]
    path = paths[[str(s) for s in subjects].index(first)]
    groups = "; ".join(f"{len(names)} ROIs ({', '.join(names[:3])}, …) in subject(s) "
                       f"{', '.join(subs[:10])}" for names, subs in by_size)
    raise DataError(f"subjects have different ROIs: {groups}", file=path, subject=first,
                    expected=f"the same {len(common)} ROIs in the same order for every "
                             "subject (one atlas)",
                    hint="Extract every subject with the same atlas, or set source.roi_names "
                         "so each file is checked when it is loaded")
