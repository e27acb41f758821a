"""DemoVAE: brainmill's model next to the reference ``demovae`` package on ABIDE connectivity.

Protocol (printed and written with every number):

- **Data**: ABIDE I PCP, CC200 ROI time series of sites NYU and PITT (subjects in the PCP
  release only), cleaned by ``brainmill.preprocessing.fmri.clean_timeseries`` with the default
  ``CleanSettings`` (linear detrend, 0.01-0.1 Hz band-pass, z-score, motion exclusion above
  mean FD 0.5 mm) at each site's TR; Pearson correlation connectivity (empirical covariance,
  as the paper's ``np.corrcoef``), the upper triangle without the diagonal (19900 edges),
  optionally Fisher-z transformed (``--fisher-z``); the edges of an ROI without signal (a
  constant time series, a few subjects) are set to 0.
- **Demographics** given to both models: age (continuous; standardised with the training
  fold's mean and sd: ours does it itself, the reference gets it done by this script, as its
  notebooks do), sex and site (categorical).
- **Folds**: stratified 5-fold over the diagnosis × site labels, shuffled by the seed; the
  same folds for both models. Every model is fitted on the training fold only; every metric
  is computed on the held-out fold.
- **Models**: ours is ``brainmill.models.vae.DemoVAE`` with its defaults (latent 30, hidden
  1000, the reference's loss weights) plus ``OURS`` below (variational, one batch of 256 per
  step, AdamW lr 1e-3 with warm-up and cosine decay); the reference is ``demovae.DemoVAE`` 0.0.6 with its documented
  defaults (latent 60, batch 1000, Adam lr 1e-4, loss weights 1/1/100/10/0.001) on the CPU,
  except the number of epochs. **Equal training time**: the epochs of each model are chosen so
  that one fit takes about ``--budget`` seconds of wall clock (default 120; with
  ``--ours-default-epochs``: the time ours takes at its default epochs, which it then keeps),
  from two timed probe fits (1 and 1+k epochs, after one warm-up fit) on the first training
  fold; the measured fit times are reported (a shared machine makes them noisy).
- **Metrics per held-out fold**:
  - max |Pearson r| between any latent dimension and age, sex (M indicator), site (per-site
    indicator); baseline: the same over the 19900 raw edges; chance: the same for independent
    N(0, 1) latents of the model's latent size (mean of 20 draws; for the baseline, of as many
    dimensions as edges, 5 draws).
  - reconstruction RMSE of decode(encode(x), demographics); baseline: the training mean.
  - TSTR: Ridge(α=100) age / LogisticRegression(C=1) sex trained on ``--samples`` synthetic
    samples per training subject (drawn for the training subjects' demographics) and tested on
    the held-out real subjects; TRTS: trained on the real training fold, tested on samples
    drawn for the held-out demographics; baseline: trained and tested on real (TRTR).
  - ASD − TC mean-connectivity difference of samples (drawn for the held-out demographics and
    diagnoses) against the held-out real difference: correlation and RMSE. For this metric
    only, each model is fitted a second time with the diagnosis as an extra categorical
    demographic. Noise ceiling: the training fold's real difference against the held-out one.
  - diagnosis balanced accuracy (standardisation + class-balanced LogisticRegression(C=1) on
    the training fold) from connectivity, from latents, from latents + demographics, and from
    demographics alone.
- Mean ± sd over every (seed, fold).

    python benchmarks/vae.py [--data ../shared/data/abide-cc200] [--budget SECONDS]
        [--ours-default-epochs] [--seeds 0] [--folds 5] [--fisher-z] [--json out.json]
        [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import random
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from brainmill.io import write_json
from brainmill.vae_evaluation import (
    DIAGNOSIS_FEATURES,
    diagnosis_fold_scores,
    group_difference_agreement,
    latent_demographic_correlation,
    reconstruction_rmse,
    site_stratified_folds,
    transfer_scores,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "abide-cc200"
SITES = ("NYU", "PITT")
CONTINUOUS = ("age",)
CATEGORICAL = ("sex", "site")
TARGET = "diagnosis"
GROUPS = ("ASD", "TC")

#: keyword overrides of brainmill's DemoVAE (the epochs come on top): the variational mode and
#: one batch per training fold. Chosen on fold 0 of seed 0 only (held-out max |r| and RMSE at
#: about 40 s per fit, BENCHMARKS.md); batches of 64 spend most of an epoch on the per-batch
#: guidance samples and optimiser steps, and the deterministic encoder kept site in its
#: held-out latents (max |r| 0.70 vs 0.48).
OURS: dict[str, Any] = {"variational": True, "training": {"batch_size": 256, "lr": 1e-3}}
#: keyword overrides of the reference's documented defaults (empty: none; use_cuda and
#: nepochs are always set by this script)
REFERENCE: dict[str, Any] = {}
#: epochs added to the 1-epoch probe when timing an epoch (--quick uses 3)
PROBE_EPOCHS = 4


# ------------------------------------------------------------------------------------ data


def fisher_z(X: np.ndarray) -> np.ndarray:
    """``arctanh`` of correlations, clipped away from ±1 so that it stays finite."""
    return np.arctanh(np.clip(X, -0.999999, 0.999999))


def connectivity_dataset(
    items: Sequence[tuple[Any, float | None]],
    participants: pd.DataFrame,
    use_fisher_z: bool = False,
) -> tuple[np.ndarray, pd.DataFrame, list[dict]]:
    """Clean each subject's ROI time series and turn it into an upper-triangle connectivity row.

    Parameters
    ----------
    items : sequence of (ROITimeSeries, mean_fd)
        One per row of ``participants``, in that order.
    participants : DataFrame
        Demographics; the rows of excluded subjects are dropped from the returned copy.
    use_fisher_z : bool
        Fisher-z transform the correlations.

    Returns
    -------
    X : ndarray, shape (n_included, n_rois * (n_rois - 1) / 2)
    participants : DataFrame, n_included rows
    qc : list of dict
        ``clean_timeseries``'s QC record of every subject (included or not).
    """
    from brainmill.features.connectivity import connectivity_matrix, upper_triangle
    from brainmill.preprocessing.fmri import CleanSettings, clean_timeseries

    settings = CleanSettings()
    rows, keep, qcs = [], [], []
    for (ts, mean_fd), label in zip(items, participants.index, strict=True):
        cleaned, qc = clean_timeseries(ts, settings, mean_fd=mean_fd)
        qcs.append(qc)
        if cleaned is None:
            continue
        # a constant (signal-less) ROI has no correlation: 0/0, set to 0 as its edges carry
        # no coupling (what the Ledoit-Wolf estimator of the workflow gives it too)
        with np.errstate(divide="ignore", invalid="ignore"):
            matrix = connectivity_matrix(cleaned.data, kind="correlation", estimator="empirical")
        rows.append(np.nan_to_num(upper_triangle(matrix), nan=0.0, posinf=0.0, neginf=0.0))
        keep.append(label)
    X = np.asarray(rows, dtype=float)
    return (fisher_z(X) if use_fisher_z else X), participants.loc[keep].copy(), qcs


def load_abide(root: Path, use_fisher_z: bool = False):
    """NYU + PITT (PCP release) connectivity rows and participants; see :func:`connectivity_dataset`."""
    from brainmill.datasets.abide import abide_participants, load_abide_subject

    participants = abide_participants(root, sites=list(SITES), pcp_release_only=True)
    items = [(load_abide_subject(root, label), float(participants.at[label, "mean_fd"]))
             for label in participants.index]
    return connectivity_dataset(items, participants, use_fisher_z)


def load_synthetic(n_subjects: int = 40, use_fisher_z: bool = False, seed: int = 0):
    """The embedded synthetic resting-state dataset (``brainmill.datasets.synthetic_fmri``)."""
    from brainmill.datasets.synthetic_fmri import (
        SyntheticFMRISpec,
        synthetic_fmri_subject,
        synthetic_participants,
    )

    spec = SyntheticFMRISpec(n_subjects=n_subjects, seed=seed)
    participants = synthetic_participants(spec)
    items = [(synthetic_fmri_subject(spec, label), float(participants.at[label, "mean_fd"]))
             for label in participants.index]
    return connectivity_dataset(items, participants, use_fisher_z)


# ---------------------------------------------------------------------------------- models


class ReferenceVAE:
    """The reference ``demovae.DemoVAE`` behind the interface of brainmill's DemoVAE.

    ``fit(X, demographics)``, ``transform(X)``, ``reconstruct(X, demographics)`` and
    ``sample(demographics)``; continuous demographics are standardised with the fit data's
    mean and sd (the reference feeds them raw to its decoder). Seeds python's and torch's
    global generators before fitting and sampling (the reference draws from them) and
    silences the reference's prints.
    """

    def __init__(self, epochs: int, continuous: Sequence[str] = CONTINUOUS,
                 categorical: Sequence[str] = CATEGORICAL, seed: int = 0, **params: Any):
        self.epochs = int(epochs)
        self.continuous = tuple(continuous)
        self.categorical = tuple(categorical)
        self.seed = seed
        self.params = params

    def _demo(self, demographics: pd.DataFrame) -> tuple[list[np.ndarray], list[str]]:
        demo, types = [], []
        for col in self.continuous:
            mean, sd = self.stats_[col]
            demo.append((demographics[col].to_numpy(dtype=float) - mean) / sd)
            types.append("continuous")
        for col in self.categorical:
            demo.append(demographics[col].astype(str).to_numpy())
            types.append("categorical")
        return demo, types

    @staticmethod
    def _seed(seed: int) -> None:
        random.seed(seed)
        torch.manual_seed(seed)

    def fit(self, X: np.ndarray, demographics: pd.DataFrame) -> ReferenceVAE:
        from demovae import DemoVAE as Reference

        self.stats_ = {c: (float(demographics[c].mean()), float(demographics[c].std(ddof=0)))
                       for c in self.continuous}
        demo, types = self._demo(demographics)
        self._seed(self.seed)
        self.model_ = Reference(**{**self.params, "use_cuda": False, "nepochs": self.epochs})
        t0 = time.perf_counter()
        # its progress prints call float() on a tensor that requires grad: a UserWarning
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.model_.fit(np.asarray(X, dtype=np.float32), demo, types)
        self.training_seconds_ = time.perf_counter() - t0
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.model_.get_latents(np.asarray(X, dtype=np.float32)).astype(float)

    def reconstruct(self, X: np.ndarray, demographics: pd.DataFrame) -> np.ndarray:
        demo, types = self._demo(demographics)
        with torch.no_grad():
            return self.model_.transform(np.asarray(X, dtype=np.float32), demo,
                                         types).astype(float)

    def sample(self, demographics: pd.DataFrame, n_per_row: int = 1,
               seed: int | None = None) -> np.ndarray:
        rows = _repeat(demographics, n_per_row)
        demo, types = self._demo(rows)
        self._seed(self.seed if seed is None else seed)
        with torch.no_grad():
            return self.model_.transform(len(rows), demo, types).astype(float)


def make_ours(epochs: int, categorical: Sequence[str] = CATEGORICAL, seed: int = 0):
    """brainmill's DemoVAE with its defaults (plus ``OURS``) for ``epochs`` epochs."""
    from brainmill.models.vae import DemoVAE

    params = dict(OURS)
    training = dict(params.pop("training", {}))
    training.update(max_epochs=int(epochs), progress=False)
    return DemoVAE(continuous=CONTINUOUS, categorical=tuple(categorical), seed=seed,
                   training=training, **params)


def make_reference(epochs: int, categorical: Sequence[str] = CATEGORICAL, seed: int = 0):
    """The reference package with its documented defaults (plus ``REFERENCE``), on the CPU."""
    return ReferenceVAE(epochs, CONTINUOUS, categorical, seed, **REFERENCE)


FACTORIES: dict[str, Callable[..., Any]] = {"ours": make_ours, "ref": make_reference}


def timed_fit(model, X: np.ndarray, demographics: pd.DataFrame) -> float:
    """Fit and return the wall-clock seconds of the fit call."""
    t0 = time.perf_counter()
    model.fit(X, demographics)
    return time.perf_counter() - t0


def time_epochs(factory, X: np.ndarray, demographics: pd.DataFrame,
                probe: int = PROBE_EPOCHS, warm_up: bool = True) -> dict[str, Any]:
    """The wall-clock cost of a fit as ``fixed + epochs * per_epoch`` seconds.

    Times fits of 1 and ``1 + probe`` epochs (after an untimed 1-epoch warm-up fit when
    ``warm_up``): the slope is the cost of an epoch, the rest a fixed cost (guidance
    predictors, set-up). On a shared machine the slope is noisy: a larger ``probe`` helps.
    """
    if warm_up:  # first-call costs (imports, allocator) are not an epoch's
        timed_fit(factory(1), X, demographics)
    t1 = timed_fit(factory(1), X, demographics)
    t2 = timed_fit(factory(1 + probe), X, demographics)
    per_epoch = max((t2 - t1) / probe, 1e-3)
    return {"seconds_per_epoch": per_epoch, "fixed_seconds": max(t1 - per_epoch, 0.0),
            "probe_seconds": [t1, t2]}


def epochs_for(budget: float, timing: dict[str, Any]) -> int:
    """Epochs whose predicted fit time is ``budget`` seconds (at least 1)."""
    return max(1, int(round((budget - timing["fixed_seconds"]) / timing["seconds_per_epoch"])))


def calibrate_epochs(factory, X: np.ndarray, demographics: pd.DataFrame, budget: float,
                     probe: int = PROBE_EPOCHS) -> dict[str, Any]:
    """:func:`time_epochs` plus the ``epochs`` that make one fit last about ``budget`` s."""
    timing = time_epochs(factory, X, demographics, probe)
    return {"epochs": epochs_for(budget, timing), **timing}


def default_epochs_ours() -> int:
    """Epochs brainmill's DemoVAE trains for by default (with ``OURS`` applied)."""
    from brainmill.models.vae import DEFAULT_TRAINING

    return int(dict(OURS.get("training", {})).get("max_epochs", DEFAULT_TRAINING["max_epochs"]))


def choose_epochs(X: np.ndarray, demographics: pd.DataFrame, budget: float | None,
                  fixed: dict[str, int | None], seed: int = 0, probe: int = PROBE_EPOCHS,
                  log=print) -> tuple[dict[str, int], dict[str, Any]]:
    """Epochs of each model for an equal training time.

    ``fixed[name]`` (when not None) is used as it is. Otherwise, with a ``budget`` each model
    gets the epochs that last ``budget`` seconds; without one, ours trains for its default
    epochs and the budget is the predicted time of that fit.

    Returns
    -------
    epochs : dict
        ``{"ours": int, "ref": int}``.
    calibration : dict
        The budget, each model's timing and whether its epochs were given.
    """
    timing = {}
    for name in FACTORIES:
        if fixed.get(name) is None or (name == "ours" and budget is None):
            timing[name] = time_epochs(lambda e, f=FACTORIES[name]: f(e, CATEGORICAL, seed),
                                       X, demographics, probe, warm_up=not timing)
            t = timing[name]
            log(f"timing {name}: {t['seconds_per_epoch']:.2f} s/epoch + "
                f"{t['fixed_seconds']:.1f} s fixed", flush=True)
    epochs: dict[str, int] = {}
    if budget is None:
        epochs["ours"] = fixed.get("ours") or default_epochs_ours()
        t = timing["ours"]
        budget = t["fixed_seconds"] + epochs["ours"] * t["seconds_per_epoch"]
    for name in FACTORIES:
        if name not in epochs:
            given = fixed.get(name)
            epochs[name] = given if given is not None else epochs_for(budget, timing[name])
    calibration = {"budget_seconds": budget,
                   **{name: {"epochs": epochs[name], "given": fixed.get(name) is not None,
                             **timing.get(name, {})} for name in FACTORIES}}
    log(f"equal time: {budget:.0f} s per fit -> epochs " + ", ".join(
        f"{k} {v}" for k, v in epochs.items()), flush=True)
    return epochs, calibration


# ------------------------------------------------------------------------------ evaluation


def _repeat(df: pd.DataFrame, k: int) -> pd.DataFrame:
    """Each row ``k`` times in a row (positional: subject labels may repeat already)."""
    return df.iloc[np.repeat(np.arange(len(df)), k)]


def chance_max_abs_corr(demographics: pd.DataFrame, latent_dim: int, draws: int = 20,
                        seed: int = 0) -> dict[str, float]:
    """Mean max |r| of independent N(0, 1) latents of ``latent_dim`` columns (chance level)."""
    rng = np.random.default_rng(seed)
    runs = [latent_demographic_correlation(rng.normal(size=(len(demographics), latent_dim)),
                                           demographics, CONTINUOUS, CATEGORICAL)
            for _ in range(draws)]
    return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}


def _with_max(corr: dict[str, float]) -> dict[str, float]:
    return {**corr, "max": float(np.nanmax(list(corr.values())))}


def baseline_fold(X: np.ndarray, participants: pd.DataFrame, train: np.ndarray,
                  test: np.ndarray) -> dict[str, float]:
    """Model-free numbers of one fold: what the raw data and real-data models give."""
    p_tr, p_te = participants.iloc[train], participants.iloc[test]
    out = {f"max_abs_corr_{k}": v for k, v in _with_max(latent_demographic_correlation(
        X[test], p_te, CONTINUOUS, CATEGORICAL)).items()}
    chance = _with_max(chance_max_abs_corr(p_te, X.shape[1], draws=5))
    out.update({f"max_abs_corr_{k}_chance": v for k, v in chance.items()})
    out["reconstruction_rmse"] = reconstruction_rmse(X[test], np.broadcast_to(
        X[train].mean(axis=0), X[test].shape))
    trtr = transfer_scores(X[train], p_tr, X[test], p_te)
    out.update({"transfer_age_rmse": trtr["age_rmse"],
                "transfer_sex_accuracy": trtr["sex_accuracy"],
                "transfer_age_rmse_null": trtr["age_rmse_null"],
                "transfer_sex_accuracy_null": trtr["sex_accuracy_null"]})
    gd = group_difference_agreement(X[test], p_te[TARGET], X[train], p_tr[TARGET], *GROUPS)
    out.update({"group_diff_corr": gd["corr"], "group_diff_rmse": gd["rmse"],
                "group_diff_real_rms": gd["real_rms"]})
    return out


def model_fold(name: str, factory, epochs: int, X: np.ndarray, participants: pd.DataFrame,
               train: np.ndarray, test: np.ndarray, seed: int, n_samples: int) -> dict:
    """Fit one model on the training fold and score it on the held-out fold."""
    p_tr, p_te = participants.iloc[train], participants.iloc[test]
    demo_cols = [*CONTINUOUS, *CATEGORICAL]
    model = factory(epochs, CATEGORICAL, seed)
    seconds = timed_fit(model, X[train], p_tr[demo_cols])
    Z_tr, Z_te = model.transform(X[train]), model.transform(X[test])
    out: dict[str, Any] = {"model": name, "epochs": int(epochs), "train_seconds": seconds,
                           "latent_dim": int(Z_te.shape[1])}
    corr = _with_max(latent_demographic_correlation(Z_te, p_te, CONTINUOUS, CATEGORICAL))
    out.update({f"max_abs_corr_{k}": v for k, v in corr.items()})
    chance = _with_max(chance_max_abs_corr(p_te, Z_te.shape[1], seed=seed))
    out.update({f"max_abs_corr_{k}_chance": v for k, v in chance.items()})
    out["reconstruction_rmse"] = reconstruction_rmse(
        X[test], model.reconstruct(X[test], p_te[demo_cols]))
    # TSTR: samples for the training subjects' demographics -> held-out real subjects
    d_tr = _repeat(p_tr[demo_cols], n_samples)
    tstr = transfer_scores(model.sample(d_tr, 1, seed), d_tr, X[test], p_te)
    # TRTS: real training subjects -> samples for the held-out demographics
    d_te = _repeat(p_te[demo_cols], n_samples)
    trts = transfer_scores(X[train], p_tr, model.sample(d_te, 1, seed + 1), d_te)
    out.update({"tstr_age_rmse": tstr["age_rmse"], "tstr_sex_accuracy": tstr["sex_accuracy"],
                "trts_age_rmse": trts["age_rmse"], "trts_sex_accuracy": trts["sex_accuracy"]})
    diag = diagnosis_fold_scores(X[train], X[test], Z_tr, Z_te, p_tr, p_te, TARGET,
                                 CONTINUOUS, CATEGORICAL, seed=seed)
    out.update({f"diagnosis_bacc_{k}": v for k, v in diag.items()})
    # group differences need a model that knows the diagnosis
    dx_cols = [*demo_cols, TARGET]
    dx_model = factory(epochs, (*CATEGORICAL, TARGET), seed)
    out["train_seconds_dx"] = timed_fit(dx_model, X[train], p_tr[dx_cols])
    d_dx = _repeat(p_te[dx_cols], n_samples)
    gd = group_difference_agreement(X[test], p_te[TARGET], dx_model.sample(d_dx, 1, seed + 2),
                                    d_dx[TARGET], *GROUPS)
    out.update({"group_diff_corr": gd["corr"], "group_diff_rmse": gd["rmse"],
                "group_diff_synth_rms": gd["synth_rms"]})
    return out


def run(X: np.ndarray, participants: pd.DataFrame, epochs: dict[str, int], seeds: Sequence[int],
        n_splits: int = 5, max_folds: int | None = None, n_samples: int = 5,
        models: Sequence[str] = ("ours", "ref"), log=print) -> list[dict]:
    """Every (seed, fold): the baseline row and one row per model."""
    rows = []
    for seed in seeds:
        folds = site_stratified_folds(participants, TARGET, n_splits, seed)
        for k, (train, test) in enumerate(folds[:max_folds]):
            base = {"seed": int(seed), "fold": k, "n_train": len(train), "n_test": len(test)}
            rows.append({**base, "model": "baseline",
                         **baseline_fold(X, participants, train, test)})
            for name in models:
                rows.append({**base, **model_fold(name, FACTORIES[name], epochs[name], X,
                                                  participants, train, test, seed, n_samples)})
                r = rows[-1]
                log(f"  seed {seed} fold {k} {name}: fit {r['train_seconds']:.1f} s "
                    f"({r['epochs']} epochs), max|r| {r['max_abs_corr_max']:.3f}, "
                    f"rec {r['reconstruction_rmse']:.4f}, TSTR age {r['tstr_age_rmse']:.2f} y")
    return rows


# ------------------------------------------------------------------------------ reporting

#: (row label, metric column, which way is better, baseline column or None)
TABLE = [
    ("max |r| latents~age", "max_abs_corr_age", "lower", "max_abs_corr_age"),
    ("max |r| latents~sex", "max_abs_corr_sex", "lower", "max_abs_corr_sex"),
    ("max |r| latents~site", "max_abs_corr_site", "lower", "max_abs_corr_site"),
    ("max |r| latents~any", "max_abs_corr_max", "lower", "max_abs_corr_max"),
    ("  chance (random latents)", "max_abs_corr_max_chance", "-", "max_abs_corr_max_chance"),
    ("reconstruction RMSE", "reconstruction_rmse", "lower", "reconstruction_rmse"),
    ("TSTR age RMSE (y)", "tstr_age_rmse", "lower", "transfer_age_rmse"),
    ("TSTR sex accuracy", "tstr_sex_accuracy", "higher", "transfer_sex_accuracy"),
    ("TRTS age RMSE (y)", "trts_age_rmse", "lower", "transfer_age_rmse"),
    ("TRTS sex accuracy", "trts_sex_accuracy", "higher", "transfer_sex_accuracy"),
    ("ASD-TC diff corr", "group_diff_corr", "higher", "group_diff_corr"),
    ("ASD-TC diff RMSE", "group_diff_rmse", "lower", "group_diff_rmse"),
    ("dx bacc connectivity", "diagnosis_bacc_connectivity", "-", None),
    ("dx bacc latents", "diagnosis_bacc_latents", "-", None),
    ("dx bacc latents+demo", "diagnosis_bacc_latents+demographics", "-", None),
    ("dx bacc demographics", "diagnosis_bacc_demographics", "-", None),
    ("fit seconds", "train_seconds", "-", None),
    ("fit seconds (dx model)", "train_seconds_dx", "-", None),
    ("epochs", "epochs", "-", None),
]
BASELINE_NOTE = ("baseline: max |r| over the raw edges; RMSE of the training mean; TSTR/TRTS: "
                 "trained and tested on real (TRTR); ASD-TC: training-fold real difference vs "
                 "held-out (noise ceiling); null models: age RMSE {age:.2f} y, sex accuracy "
                 "{sex:.3f}")


def summarise(rows: list[dict]) -> dict[str, dict[str, list[float]]]:
    """``{metric: {model: [mean, sd]}}`` over every (seed, fold); sd with ddof=1."""
    df = pd.DataFrame(rows)
    out: dict[str, dict[str, list[float]]] = {}
    for model, group in df.groupby("model"):
        for col in group.columns:
            if col in ("model", "seed", "fold") or not pd.api.types.is_numeric_dtype(group[col]):
                continue
            values = group[col].dropna().to_numpy(dtype=float)
            if values.size:
                sd = float(values.std(ddof=1)) if values.size > 1 else float("nan")
                out.setdefault(col, {})[str(model)] = [float(values.mean()), sd]
    return out


def _fmt(ms: list[float] | None, digits: int = 3) -> str:
    if ms is None:
        return "-"
    mean, sd = ms
    return f"{mean:.{digits}f}±{sd:.{digits}f}" if np.isfinite(sd) else f"{mean:.{digits}f}"


def table(summary: dict) -> str:
    """Side-by-side text table: ours, reference, ours/ref ratio, baseline."""
    lines = [f"{'metric':28s} {'ours':>16s} {'reference':>16s} {'ours/ref':>9s} "
             f"{'better':>7s} {'baseline':>16s}"]
    for label, col, better, base_col in TABLE:
        if col not in summary:
            continue
        s = summary[col]
        digits = 1 if "seconds" in col else (0 if col == "epochs" else (
            4 if col in ("reconstruction_rmse", "group_diff_rmse") else 3))
        ours, ref = s.get("ours"), s.get("ref")
        # a ratio of signed numbers (correlations near 0) means nothing
        ratio = f"{ours[0] / ref[0]:.2f}" if ours and ref and ours[0] > 0 and ref[0] > 0 else "-"
        base = summary.get(base_col, {}).get("baseline") if base_col else None
        lines.append(f"{label:28s} {_fmt(ours, digits):>16s} {_fmt(ref, digits):>16s} "
                     f"{ratio:>9s} {better:>7s} {_fmt(base, digits):>16s}")
    null = summary.get("transfer_age_rmse_null", {}).get("baseline")
    acc = summary.get("transfer_sex_accuracy_null", {}).get("baseline")
    if null and acc:
        lines.append(BASELINE_NOTE.format(age=null[0], sex=acc[0]))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import sklearn

    try:
        ref_version = version("demovae")
    except PackageNotFoundError:
        ref_version = None
    return {"machine": platform.machine(), "processor": platform.processor() or None,
            "system": f"{platform.system()} {platform.release()}",
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "sklearn": sklearn.__version__, "demovae": ref_version}


def result(summary: dict, rows: list[dict], calibration: dict, args: dict, data: dict,
           command: str) -> dict[str, Any]:
    """The JSON written by ``--json``: the headline keys first, then everything."""
    def mean(col: str, model: str) -> float:
        return float(summary[col][model][0]) if model in summary.get(col, {}) else float("nan")

    out: dict[str, Any] = {}
    for model in ("ours", "ref"):
        out[f"max_abs_corr_{model}"] = mean("max_abs_corr_max", model)
        out[f"tstr_age_rmse_{model}"] = mean("tstr_age_rmse", model)
        out[f"train_seconds_{model}"] = mean("train_seconds", model)
        out[f"epochs_{model}"] = int(mean("epochs", model)) if model in summary.get(
            "epochs", {}) else None
        for col in ("max_abs_corr_age", "max_abs_corr_sex", "max_abs_corr_site",
                    "reconstruction_rmse", "tstr_sex_accuracy", "trts_age_rmse",
                    "trts_sex_accuracy", "group_diff_corr", "group_diff_rmse",
                    *(f"diagnosis_bacc_{k}" for k in DIAGNOSIS_FEATURES)):
            out[f"{col}_{model}"] = mean(col, model)
    out["max_abs_corr_raw"] = mean("max_abs_corr_max", "baseline")
    out["tstr_age_rmse_real"] = mean("transfer_age_rmse", "baseline")
    out["age_rmse_null"] = mean("transfer_age_rmse_null", "baseline")
    out.update({"protocol": __doc__, "args": args, "data": data, "calibration": calibration,
                "machine": machine(), "command": command,
                "ours_overrides": OURS, "reference_overrides": REFERENCE,
                "summary": summary, "folds": rows})
    return out


# ------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="ABIDE PCP CC200 folder (participants.tsv, rois_cc200/)")
    parser.add_argument("--synthetic", type=int, metavar="N",
                        help="use N subjects of brainmill's synthetic fMRI data instead "
                             "(a smoke run without ABIDE)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=120.0,
                        help="wall-clock seconds per fit that set both models' epochs "
                             "(--quick: 15)")
    parser.add_argument("--ours-default-epochs", action="store_true",
                        help="ours trains for its default epochs and the budget is the time "
                             "that takes (hours per fit on 2 CPU cores)")
    parser.add_argument("--epochs-ours", type=int, help="epochs of ours (no calibration)")
    parser.add_argument("--epochs-ref", type=int, help="epochs of the reference (no "
                                                        "calibration)")
    parser.add_argument("--samples", type=int, default=5,
                        help="synthetic samples per subject for TSTR/TRTS/group differences")
    parser.add_argument("--fisher-z", action="store_true", help="arctanh the correlations")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true",
                        help="2 of the folds, 15-s fit budget, 2 samples per subject")
    args = parser.parse_args(argv)
    if args.quick:
        args.budget = min(args.budget, 15.0)
        args.samples = min(args.samples, 2)

    command = "python benchmarks/vae.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    print(f"command: {command}")
    info = machine()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items() if v is not None))
    if args.synthetic is None and not (args.data / "participants.tsv").is_file():
        msg = (f"skipped: no ABIDE CC200 data at {args.data} (expected participants.tsv and "
               f"rois_cc200/); pass --data, or --synthetic N for a smoke run")
        print(msg, file=sys.stderr)
        if args.json:
            write_json(args.json, {"skipped": msg})
        return 0
    print(__doc__.split("Protocol")[1].split("    python")[0])

    t0 = time.perf_counter()
    if args.synthetic is not None:
        X, participants, qc = load_synthetic(args.synthetic, args.fisher_z)
        source = f"synthetic_fmri ({args.synthetic} subjects)"
    else:
        X, participants, qc = load_abide(args.data, args.fisher_z)
        source = f"ABIDE PCP CC200 {'+'.join(SITES)} from {args.data}"
    excluded = {q["subject"]: q["reason"] for q in qc if q.get("excluded")}
    constant = {q["subject"]: len(q["constant_rois"]) for q in qc
                if q.get("constant_rois") and not q.get("excluded")}
    data = {"source": source, "n_subjects": int(len(X)), "n_features": int(X.shape[1]),
            "n_excluded": len(excluded), "excluded": excluded, "fisher_z": args.fisher_z,
            "constant_rois": constant,
            "sites": participants["site"].value_counts().to_dict(),
            "diagnosis": participants[TARGET].value_counts().to_dict(),
            "load_seconds": time.perf_counter() - t0}
    print(f"data: {source}: X {X.shape}, {len(excluded)} excluded (motion/NaN), "
          f"{len(constant)} with constant ROIs (edges set to 0), "
          f"sites {data['sites']}, diagnosis {data['diagnosis']}; "
          f"{data['load_seconds']:.0f} s", flush=True)

    # equal time: calibrate the epochs on the first training fold of the first seed
    train, _ = site_stratified_folds(participants, TARGET, args.folds, args.seeds[0])[0]
    epochs, calibration = choose_epochs(
        X[train], participants.iloc[train][[*CONTINUOUS, *CATEGORICAL]],
        None if args.ours_default_epochs else args.budget,
        {"ours": args.epochs_ours, "ref": args.epochs_ref}, seed=args.seeds[0],
        probe=3 if args.quick else PROBE_EPOCHS)

    rows = run(X, participants, epochs, args.seeds, args.folds,
               max_folds=2 if args.quick else None, n_samples=args.samples)
    summary = summarise(rows)
    print(f"\nmean ± sd over {len(args.seeds)} seed(s) × "
          f"{len({(r['seed'], r['fold']) for r in rows}) // len(args.seeds)} fold(s); "
          f"total {time.perf_counter() - t0:.0f} s")
    print(table(summary))
    if args.json:
        out = result(summary, rows, calibration, vars(args), data, command)
        write_json(args.json, out)
        headline = {k: v for k, v in out.items() if k in (
            "max_abs_corr_ours", "max_abs_corr_ref", "max_abs_corr_raw", "tstr_age_rmse_ours",
            "tstr_age_rmse_ref", "tstr_age_rmse_real", "train_seconds_ours",
            "train_seconds_ref", "epochs_ours", "epochs_ref")}
        print(f"wrote {args.json}: {headline}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
