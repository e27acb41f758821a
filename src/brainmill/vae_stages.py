"""Workflow stages of the fMRI branch at dataset level: DemoVAE, its outputs, decoding.

* ``train_vae``: the demographic-conditioned VAE on every included subject's connectivity
  (``models/vae/``: ``model.pt``, ``summary.json``, ``history.csv``; checkpoints in ``run/`` so
  a killed job resumes).
* ``vae_latents``: confound-free latents of every included subject (``fmri/latents.npz``) and
  synthetic connectomes for demographic profiles, with the real ones they should resemble
  (``fmri/synthetic.npz``).
* ``decode_fmri``: the target (e.g. diagnosis) from connectivity, latents and latents +
  demographics, with folds stratified by target × site and a VAE fitted on each training fold
  only (``fmri/decoding.json``).
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import Config, FMRIDatasetConfig
from .errors import DataError
from .fmri_stages import check_one_atlas, fmri_dataset, read_fmri_participants
from .io import atomic_path, data_digest, fresh_run_dir, write_json, write_npz
from .training import TrainConfig, resolve_device, set_threads

logger = logging.getLogger("brainmill")


def included_connectivity(connectivity_paths: list[str | Path], participants_csv: str | Path,
                          ) -> tuple[np.ndarray, pd.DataFrame, int, np.ndarray]:
    """Upper-triangle connectivity of the included subjects and their participants rows.

    Returns
    -------
    X : ndarray, shape (n_included, n_edges)
    table : DataFrame
        The included subjects' rows of ``participants.csv`` in the same order.
    n_rois : int
    included : ndarray of bool, shape (n_subjects,)
        Which rows of ``participants.csv`` (and of ``connectivity_paths``) are included.
    """
    table = read_fmri_participants(participants_csv)
    if len(table) != len(connectivity_paths):
        raise DataError(f"participants.csv lists {len(table)} subjects but there are "
                        f"{len(connectivity_paths)} connectivity files", file=participants_csv)
    rows, keep, n_rois = [], [], None
    atlases: dict[tuple[str, ...], list[str]] = {}  # ROI names -> subjects
    for sub, path in zip(table.index, connectivity_paths, strict=True):
        if f"sub-{sub}" not in Path(path).parts:
            raise DataError(f"connectivity file {path} is not subject {sub}'s",
                            file=participants_csv, expected="files in participants order")
        with np.load(path, allow_pickle=False) as f:
            excluded = bool(f["excluded"])
            n_rois = int(f["matrix"].shape[0])
            atlases.setdefault(tuple(str(r) for r in f["roi_names"]), []).append(str(sub))
            if not excluded:
                rows.append(f["vector"])
        keep.append(not excluded)
    check_one_atlas(atlases, connectivity_paths, list(table.index))
    if not any(keep):
        raise DataError("every subject was excluded; nothing to train on",
                        file=participants_csv, expected="at least one included subject")
    keep = np.array(keep)
    return np.stack(rows), table[keep], int(n_rois), keep


def _train_config(training: dict[str, Any], seed: int) -> TrainConfig:
    return TrainConfig(**training, seed=seed, progress=False)


def make_demovae(ds_cfg: FMRIDatasetConfig, seed: int, with_group: bool,
                 run_dir: str | Path | None = None):
    """A :class:`~brainmill.models.vae.DemoVAE` as configured for the dataset.

    ``with_group`` adds ``vae.group`` to the categorical demographics (the dataset-level model,
    for synthetic group differences); per-fold decoding models never see it.
    """
    from .models.vae import DemoVAE

    vae = ds_cfg.vae
    categorical = list(vae.categorical)
    if with_group and vae.group is not None:
        categorical.append(vae.group)
    return DemoVAE(
        latent_dim=vae.model.latent_dim, hidden=vae.model.hidden,
        variational=vae.model.variational, act=vae.model.act,
        continuous=tuple(vae.continuous), categorical=tuple(categorical),
        loss_weights=dict(vae.model.loss_weights) or None, guidance=vae.model.guidance,
        training=_train_config(vae.training.trainer_fields(), seed), seed=seed,
        run_dir=run_dir)


def _vae_columns(ds_cfg: FMRIDatasetConfig, with_group: bool) -> list[str]:
    cols = list(ds_cfg.vae.continuous) + list(ds_cfg.vae.categorical)
    if with_group and ds_cfg.vae.group is not None:
        cols.append(ds_cfg.vae.group)
    return cols


def run_train_vae(cfg: Config, ds: str, connectivity_paths: list[str], participants_csv: str,
                  out_model: str, out_summary: str, out_history: str, run_dir: str,
                  threads: int | None = None) -> dict[str, Any]:
    """Train the dataset's DemoVAE on every included subject; write model, summary, history."""
    from .vae_evaluation import latent_demographic_correlation, reconstruction_rmse

    set_threads(threads)
    ds_cfg = fmri_dataset(cfg, ds)
    X, table, n_rois, _ = included_connectivity(connectivity_paths, participants_csv)
    cols = _vae_columns(ds_cfg, with_group=True)
    demographics = table[cols]
    fresh_run_dir(run_dir, "vae", {"vae": ds_cfg.vae.model_dump(mode="json"), "seed": cfg.seed,
                                   "subjects": list(table.index), "n_edges": int(X.shape[1]),
                                   "data": data_digest(X, demographics.to_numpy(dtype=str))})
    logger.info("vae: %d subjects x %d edges, demographics %s", len(X), X.shape[1], cols)
    t0 = time.perf_counter()
    model = make_demovae(ds_cfg, cfg.seed, with_group=True, run_dir=run_dir).fit(X, demographics)
    seconds = time.perf_counter() - t0
    model.save(out_model)
    history = Path(run_dir) / "history.csv"
    with atomic_path(out_history, suffix=".csv") as tmp:
        shutil.copyfile(history, tmp)
    Z = model.transform(X)
    categorical = cols[len(ds_cfg.vae.continuous):]
    summary = {
        "dataset": ds, "n_subjects": len(X), "n_edges": int(X.shape[1]), "n_rois": n_rois,
        "subjects": list(table.index),
        "demographics": {"continuous": list(ds_cfg.vae.continuous),
                         "categorical": list(ds_cfg.vae.categorical)},
        "group": ds_cfg.vae.group,
        "training_seconds": seconds,
        "device": str(resolve_device(ds_cfg.vae.training.device)),
        "in_sample": True,
        "corr_connectivity": latent_demographic_correlation(
            X, demographics, ds_cfg.vae.continuous, categorical),
        "corr_latents": latent_demographic_correlation(
            Z, demographics, ds_cfg.vae.continuous, categorical),
        "reconstruction_rmse": reconstruction_rmse(X, model.reconstruct(X, demographics)),
        "mean_baseline_rmse": reconstruction_rmse(X, np.broadcast_to(X.mean(0), X.shape)),
    }
    write_json(out_summary, summary)
    logger.info("vae: trained in %.1f s; max |corr| connectivity %s -> latents %s", seconds,
                summary["corr_connectivity"], summary["corr_latents"])
    return summary


def default_profiles(ds_cfg: FMRIDatasetConfig, table: pd.DataFrame) -> list[dict[str, Any]]:
    """Every combination of the categorical levels (and group) at the continuous means."""
    categorical = _vae_columns(ds_cfg, with_group=True)[len(ds_cfg.vae.continuous):]
    levels = [sorted(table[c].astype(str).unique()) for c in categorical]
    means = {c: float(table[c].astype(float).mean()) for c in ds_cfg.vae.continuous}
    return [{**means, **dict(zip(categorical, combo, strict=True))}
            for combo in itertools.product(*levels)]


def _profile_frame(profile: dict[str, Any], n: int, cols: list[str],
                   continuous: list[str]) -> pd.DataFrame:
    missing = [c for c in cols if c not in profile]
    if missing:
        raise DataError(f"vae.profiles entry {profile} lacks {missing}",
                        expected=f"a value for each of {cols}")
    return pd.DataFrame({c: [float(profile[c]) if c in continuous else str(profile[c])] * n
                         for c in cols})


def run_vae_outputs(cfg: Config, ds: str, model_path: str, connectivity_paths: list[str],
                    participants_csv: str, out_latents: str, out_synthetic: str,
                    threads: int | None = None) -> dict[str, np.ndarray]:
    """Latents of the included subjects; synthetic vs real connectomes per profile and group."""
    from .features.connectivity import matrix_from_upper
    from .models.vae import DemoVAE
    from .vae_evaluation import group_difference_agreement

    set_threads(threads)
    ds_cfg = fmri_dataset(cfg, ds)
    X, table, n_rois, _ = included_connectivity(connectivity_paths, participants_csv)
    model = DemoVAE.load(model_path)
    cols = _vae_columns(ds_cfg, with_group=True)
    continuous = list(ds_cfg.vae.continuous)
    write_npz(out_latents, latents=model.transform(X),
              subjects=np.array(list(table.index), dtype=str))

    def as_matrix(v: np.ndarray) -> np.ndarray:
        return matrix_from_upper(v, n_rois)

    profiles = ds_cfg.vae.profiles or default_profiles(ds_cfg, table)
    n = ds_cfg.vae.n_samples
    synth_mean, real_mean, n_real, examples = [], [], [], []
    for i, profile in enumerate(profiles):
        frame = _profile_frame(profile, n, cols, continuous)
        S = model.sample(frame, seed=cfg.seed + i)
        synth_mean.append(as_matrix(S.mean(0)))
        examples.append(np.stack([as_matrix(S[0]), as_matrix(S[1])]))
        match = np.ones(len(table), dtype=bool)
        for c in cols:
            if c not in continuous:
                match &= table[c].astype(str).to_numpy() == str(profile[c])
        n_real.append(int(match.sum()))
        real_mean.append(as_matrix(X[match].mean(0)) if match.any()
                         else np.full((n_rois, n_rois), np.nan))

    group = ds_cfg.vae.group
    diff_real = diff_synth = np.full((n_rois, n_rois), np.nan)
    labels: list[str] = []
    corr = float("nan")
    if group is not None:
        labels = sorted(table[group].astype(str).unique())
        if len(labels) == 2:
            a, b = labels
            g = table[group].astype(str).to_numpy()
            real_vec = X[g == a].mean(0) - X[g == b].mean(0)
            # synthetic: the real subjects' demographics, with the group set to a, then to b
            demo = table[cols].copy()
            demo[group] = a
            S_a = model.sample(demo, seed=cfg.seed + 10_000)
            demo[group] = b
            S_b = model.sample(demo, seed=cfg.seed + 10_000)
            synth_vec = S_a.mean(0) - S_b.mean(0)
            agreement = group_difference_agreement(
                X, g, np.vstack([S_a, S_b]), [a] * len(S_a) + [b] * len(S_b), a=a, b=b)
            corr = agreement["corr"]
            diff_real, diff_synth = as_matrix(real_vec), as_matrix(synth_vec)
            for m in (diff_real, diff_synth):
                np.fill_diagonal(m, 0.0)
    arrays = {
        "profiles_json": np.array(json.dumps(profiles)),
        "synthetic_mean": np.stack(synth_mean), "real_mean": np.stack(real_mean),
        "n_real": np.array(n_real), "group_diff_real": diff_real,
        "group_diff_synthetic": diff_synth, "group_labels": np.array(labels, dtype=str),
        "group_diff_corr": np.array(corr), "synthetic_examples": np.stack(examples),
    }
    write_npz(out_synthetic, **arrays)
    logger.info("vae: %d profiles x %d samples; group difference agreement r = %.3f",
                len(profiles), n, corr)
    return arrays


def _fold_connectivity(kind: str, estimator: str, cleaned_paths: list[str],
                       keep: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
                       ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per fold (train, test) connectivity of ``kind`` fitted on the training subjects only."""
    from .datasets.fmri import ROITimeSeries
    from .features.connectivity import ConnectivityFeatures

    series = [ROITimeSeries.load(p).data for p, k in zip(cleaned_paths, keep, strict=True) if k]
    out = []
    for train, test in folds:
        measure = ConnectivityFeatures(kind=kind, estimator=estimator)
        measure.fit([series[i] for i in train])
        out.append((measure.transform([series[i] for i in train]),
                    measure.transform([series[i] for i in test])))
    return out


def run_decode_fmri(cfg: Config, ds: str, connectivity_paths: list[str],
                    cleaned_paths: list[str], participants_csv: str, out_json: str,
                    threads: int | None = None) -> dict[str, Any]:
    """Cross-validated decoding of ``decoding.target`` (e.g. ASD vs TC).

    Feature sets: connectivity (``decoding.connectivity_kind``; tangent fitted on the training
    fold), DemoVAE latents, latents + encoded demographics, and the demographics alone. The
    VAE (conditioned on ``vae.continuous`` + ``vae.categorical``, never on the target) and
    every scaler and classifier are fitted on the training fold only. Held-out confound
    metrics of the fold's VAE are recorded too.
    """
    from .vae_evaluation import (
        DIAGNOSIS_FEATURES,
        diagnosis_fold_scores,
        latent_demographic_correlation,
        reconstruction_rmse,
        site_stratified_folds,
    )

    set_threads(threads)
    ds_cfg = fmri_dataset(cfg, ds)
    dec = ds_cfg.decoding
    if dec is None:
        raise DataError(f"dataset '{ds}' has no decoding section",
                        expected="datasets.<ds>.decoding in the config")
    X, table, _, keep = included_connectivity(connectivity_paths, participants_csv)
    continuous = list(ds_cfg.vae.continuous)
    categorical = list(ds_cfg.vae.categorical)
    classes = sorted(table[dec.target].astype(str).unique())
    if len(classes) < 2:
        raise DataError(f"decoding.target '{dec.target}' has a single class {classes} among "
                        "the included subjects", file=participants_csv,
                        expected="at least two classes")
    has_site = "site" in table.columns
    if has_site:
        folds = site_stratified_folds(table, dec.target, dec.n_folds, cfg.seed)
        protocol = (f"{dec.n_folds}-fold cross-validation stratified by {dec.target} x site "
                    f"(seed {cfg.seed})")
    else:
        folds = site_stratified_folds(table.assign(_site="all"), dec.target, dec.n_folds,
                                      cfg.seed, site="_site")
        protocol = f"{dec.n_folds}-fold cross-validation stratified by {dec.target}"
    protocol += ("; the DemoVAE, scalers and logistic regressions are fitted on each training "
                 "fold only")
    fold_conn = None
    if dec.connectivity_kind != ds_cfg.connectivity.kind:
        fold_conn = _fold_connectivity(dec.connectivity_kind, ds_cfg.connectivity.estimator,
                                       cleaned_paths, keep, folds)
        protocol += f"; {dec.connectivity_kind} connectivity fitted on each training fold"
    per_fold, heldout = [], []
    t0 = time.perf_counter()
    for i, (train, test) in enumerate(folds):
        demo_tr, demo_te = table.iloc[train], table.iloc[test]
        vae = make_demovae(ds_cfg, cfg.seed, with_group=False)
        vae.fit(X[train], demo_tr[continuous + categorical])
        Z_tr, Z_te = vae.transform(X[train]), vae.transform(X[test])
        C_tr, C_te = fold_conn[i] if fold_conn is not None else (X[train], X[test])
        scores = diagnosis_fold_scores(C_tr, C_te, Z_tr, Z_te, demo_tr, demo_te,
                                       target=dec.target, continuous=continuous,
                                       categorical=categorical, C=dec.C, seed=cfg.seed)
        per_fold.append(scores)
        heldout.append({
            "corr_connectivity": latent_demographic_correlation(X[test], demo_te, continuous,
                                                                categorical),
            "corr_latents": latent_demographic_correlation(Z_te, demo_te, continuous,
                                                           categorical),
            "reconstruction_rmse": reconstruction_rmse(
                X[test], vae.reconstruct(X[test], demo_te[continuous + categorical])),
            "mean_baseline_rmse": reconstruction_rmse(
                X[test], np.broadcast_to(X[train].mean(0), X[test].shape)),
        })
        logger.info("decode_fmri fold %d/%d: %s", i + 1, len(folds),
                    {k: round(v, 3) for k, v in scores.items()})
    results = {}
    for name in DIAGNOSIS_FEATURES:
        values = np.array([f[name] for f in per_fold])
        results[name] = {"balanced_accuracy": float(values.mean()),
                         "sd": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                         "per_fold": values.tolist()}
    out = {"dataset": ds, "target": dec.target, "classes": classes, "protocol": protocol,
           "n_folds": len(folds), "n_subjects": len(X),
           "n_per_class": {c: int((table[dec.target].astype(str) == c).sum()) for c in classes},
           "chance": 1.0 / len(classes), "metric": "balanced_accuracy",
           "connectivity_kind": dec.connectivity_kind, "results": results,
           "heldout_vae": heldout, "seconds": time.perf_counter() - t0}
    write_json(out_json, out)
    return out
