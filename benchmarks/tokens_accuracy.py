"""Token Transformer accuracy on real recordings, next to classical baselines on the same folds.

Protocol (printed and written with every number):

- **Bonn** (``config/bonn.yaml`` preprocessing: none; 5-s windows every 2.5 s, 8 per 23.6-s
  segment, 3200 windows of sets Z/O/N/F/S segments 001-080). Tasks: 5-class Z/O/N/F/S,
  3-class healthy (Z+O) / interictal (N+F) / ictal (S), seizure (S) vs rest. Folds:
  stratified group 5-fold on the 5-class labels with the segment as group (windows of one
  segment never straddle train and test), shuffled by the seed; the same folds serve the three
  tasks.
- **DREAMS** (``config/dreams.yaml``: 0.3-35 Hz, 200 Hz, 30-s epochs whose six 5-s scores
  agree; W/N1/N2/N3, no REM in these excerpts): leave-one-excerpt-out (6 folds).
- **PhysioNet S001** imagined left vs right fist (runs 4, 8, 12), all 64 channels, 8-35 Hz,
  epochs 0-3 s after the cue, no re-reference or rejection; stratified 5-fold shuffled by the
  seed. Baselines on the same folds: TS+LR (OAS covariance, tangent space, logistic
  regression) and ACM+TS+SVM (order × lag chosen by inner CV on the training fold).
- **Token pipeline, per outer fold, training fold only**: the TFM tokenizer is trained on the
  training fold's signals (no labels; at least 200 optimiser steps, on batches of at least 32
  windows and 2 encoder outputs per code: Bonn 128, DREAMS 32, PhysioNet 256), then the token
  Transformer is fine-tuned on the training fold's tokens (class-balanced loss, batch 16, up
  to 100 epochs) with early stopping and model selection on a stratified 20 % validation
  split of the training fold. The test fold is touched once, for the predictions. On Bonn
  the tokenizer's and the Transformer's validation splits hold whole segments
  (``inner_groups``; since 2026-12-06: earlier runs split the overlapping windows of one
  segment between training and validation, which made early stopping's scores optimistic).
- **Bag of tokens** (diagnostic of what the tokens carry, without the Transformer): the share
  of each code among an epoch's tokens, log(share + 1e-3), standardised, logistic regression
  (C = 1, as the band-power baseline), fitted on the training fold's tokens from the same tokenizer.
- **Band-power baseline**: log10 Welch band power (delta..gamma; DREAMS delta..beta with
  sigma) + standardisation + logistic regression fitted on the training fold.
- Scores per fold: accuracy, balanced accuracy, Cohen's kappa, weighted F1 (and ROC-AUC for
  two classes); mean over folds per seed, then mean ± sd over seeds.

    python benchmarks/tokens_accuracy.py [--data ../shared/data] [--tasks bonn dreams physionet]
        [--seeds 0 1 2] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    f1_score,
    roc_auc_score,
)
from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold, StratifiedKFold

from brainmill.config import DatasetConfig, load_config
from brainmill.datasets import load_recording
from brainmill.decoding import make_decoder
from brainmill.features.bandpower import compute_bandpower
from brainmill.features.covariance import compute_covariances
from brainmill.features.epochs import epochs_arrays
from brainmill.features.timefreq import TFMTokens
from brainmill.models.frontend import n_frames
from brainmill.models.tokenizer import TokenizerConfig
from brainmill.preprocessing import preprocess
from brainmill.token_decoding import TokenTransformerClassifier

ROOT = Path(__file__).resolve().parents[1]

#: tokenizer used for every dataset: smaller than the reference (dim 64, depths 2/2/8, 8192
#: codes, 100 epochs) so that 3 seeds × every fold train on 2 CPU cores within an hour; the
#: codebook is cut to 512 with dead-code restarts, as a 3200-window dataset cannot use 8192
TOKENIZER = {"dim": 32, "n_heads": 4, "freq_depth": 1, "time_depth": 1, "decoder_depth": 1,
             "n_codes": 512, "dead_code_threshold": 0.5, "dropout": 0.1}
TOKENIZER_TRAINING = {"max_epochs": 5, "batch_size": 32, "lr": 1e-3, "min_lr": 1e-5,
                      "val_fraction": 0.1, "patience": 10, "progress": False}
#: the tokenizer trains for at least this many optimiser steps: on DREAMS (about 200
#: single-channel 30-s training windows) 5 epochs of batch 128 were 10 steps, and the tokens
#: it made carried little of the sleep stage (BENCHMARKS.md)
TOKENIZER_MIN_STEPS = 200
#: and on batches of at least this many encoder outputs per code (batch × frames per window /
#: n_codes, the batch rounded up to a power of two): below about 1, codes used less than
#: average fall under the dead-code threshold (0.5 per batch) and are restarted at every
#: update; on Bonn's 5-s windows (9 frames) batch 32 restarted 214 of 512 codes per update
#: (BENCHMARKS.md)
TOKENIZER_MIN_VECTORS_PER_CODE = 2.0
TRANSFORMER = {"n_heads": 4, "depth": 2, "dropout": 0.1}
#: batch 16 and up to 100 epochs: with 20 epochs of batch 64 (about 60 steps on DREAMS) the
#: model never left the majority class (BENCHMARKS.md)
TRANSFORMER_TRAINING = {"max_epochs": 100, "batch_size": 16, "lr": 5e-4, "min_lr": 1e-5,
                        "val_fraction": 0.2, "patience": 20, "progress": False}
#: class weights of the Transformer's loss: classes weigh the same (DREAMS is 61 % N2)
CLASS_WEIGHT = "balanced"


def tokenizer_frames(n_times: int, sfreq: float) -> int:
    """STFT frames of the tokenizer in a window of ``n_times`` samples at ``sfreq``."""
    cfg = TokenizerConfig(**TOKENIZER)
    return n_frames(int(round(n_times * cfg.sfreq / sfreq)), cfg.n_fft, cfg.hop)


def tokenizer_training(n_windows: int, n_frames: int, quick: bool) -> dict:
    """``TOKENIZER_TRAINING`` with the batch and epochs of the two rules above.

    The batch is the smallest power of two, at least ``TOKENIZER_TRAINING["batch_size"]``,
    giving ``TOKENIZER_MIN_VECTORS_PER_CODE`` outputs per code from windows of ``n_frames``
    frames; the epochs are enough for ``TOKENIZER_MIN_STEPS`` steps on ``n_windows``
    single-channel training windows (10 % of them held out for validation).
    """
    need = TOKENIZER_MIN_VECTORS_PER_CODE * TOKENIZER["n_codes"] / n_frames
    batch = max(TOKENIZER_TRAINING["batch_size"], 1 << max(0, math.ceil(math.log2(need))))
    if quick:
        return dict(TOKENIZER_TRAINING, batch_size=batch, max_epochs=2)
    per_epoch = max(1, int(n_windows * (1 - TOKENIZER_TRAINING["val_fraction"])) // batch)
    epochs = max(TOKENIZER_TRAINING["max_epochs"], -(-TOKENIZER_MIN_STEPS // per_epoch))
    return dict(TOKENIZER_TRAINING, batch_size=batch, max_epochs=epochs)


def scores(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None) -> dict:
    out = {"accuracy": accuracy_score(y_true, y_pred),
           "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
           "kappa": cohen_kappa_score(y_true, y_pred),
           "weighted_f1": f1_score(y_true, y_pred, average="weighted")}
    if proba is not None and proba.shape[1] == 2 and len(np.unique(y_true)) == 2:
        out["roc_auc"] = roc_auc_score(y_true, proba[:, 1])
    return {k: float(v) for k, v in out.items()}


def _epochs(ds: DatasetConfig, subject: str):
    rec = load_recording(ds, subject, seed=0)
    return preprocess(rec, ds.preprocessing).epochs


# ------------------------------------------------------------------------------ datasets


def bonn(data: Path) -> dict:
    cfg = load_config(ROOT / "config" / "bonn.yaml")
    ds = cfg.datasets["bonn5"]
    ds.source.path = str(data)
    epochs = _epochs(ds, "all")
    X, y5, _, run = epochs_arrays(epochs, ds.class_names)
    sets = np.array(ds.class_names)[y5]
    tasks = {"5-class Z/O/N/F/S": y5,
             "3-class healthy/interictal/ictal": np.select(
                 [np.isin(sets, ["Z", "O"]), np.isin(sets, ["N", "F"])], [0, 1], 2),
             "seizure vs non-seizure": (sets == "S").astype(int)}
    bp = compute_bandpower(epochs, ds.features.bandpower, ds.class_names).X
    return {"X": X, "sfreq": float(epochs.info["sfreq"]), "tasks": tasks, "bandpower": bp,
            "groups": run, "stratify": y5, "n_folds": 5, "folds": "stratified group 5-fold "
            "(segment = group), shuffled by the seed",
            "inner_groups": run}  # overlapping windows: validation of whole segments


def dreams(data: Path) -> dict:
    cfg = load_config(ROOT / "config" / "dreams.yaml")
    ds = cfg.datasets["dreams"]
    ds.source.path = str(data)
    epochs = _epochs(ds, "all")
    X, y, session, _ = epochs_arrays(epochs, ds.class_names)
    bp = compute_bandpower(epochs, ds.features.bandpower, ds.class_names).X
    return {"X": X, "sfreq": float(epochs.info["sfreq"]),
            "tasks": {f"sleep stages {'/'.join(ds.class_names)}": y}, "bandpower": bp,
            "groups": session, "stratify": None, "n_folds": None,
            "folds": "leave one excerpt out (6 folds)"}


def physionet(data: Path) -> dict:
    ds = DatasetConfig.model_validate({
        "source": {"kind": "eegbci", "runs": [4, 8, 12], "download": False, "path": str(data)},
        "subjects": ["1"], "events": {"left_fist": ["T1"], "right_fist": ["T2"]},
        "preprocessing": {"picks": "eeg", "reference": None, "l_freq": 8, "h_freq": 35,
                          "bad_channels": {"enabled": False},
                          "epochs": {"tmin": 0.0, "tmax": 3.0, "reject_uv": None}},
        "decoders": {"ts_lr": {}}, "evaluation": {"protocols": ["within_session"]}})
    epochs = _epochs(ds, "1")
    X, y, _, _ = epochs_arrays(epochs, ds.class_names)
    cov = compute_covariances(epochs, ds.features.covariance, ds.class_names).X
    return {"X": X, "sfreq": float(epochs.info["sfreq"]), "tasks": {"left vs right fist": y},
            "cov": cov, "groups": None, "stratify": y, "n_folds": 5,
            "folds": "stratified 5-fold, shuffled by the seed"}


def splits(d: dict, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    n = len(d["X"])
    if d["n_folds"] is None:
        return list(LeaveOneGroupOut().split(np.zeros(n), groups=d["groups"]))
    if d["groups"] is not None:
        cv = StratifiedGroupKFold(d["n_folds"], shuffle=True, random_state=seed)
        return list(cv.split(np.zeros(n), d["stratify"], d["groups"]))
    cv = StratifiedKFold(d["n_folds"], shuffle=True, random_state=seed)
    return list(cv.split(np.zeros(n), d["stratify"]))


# ------------------------------------------------------------------------------ pipelines


def inner_groups(d: dict, train: np.ndarray) -> np.ndarray | None:
    """Groups of the training rows for the validation splits inside a fold: Bonn's segments,
    whose overlapping windows must not sit on both sides of early stopping. DREAMS's 30-s
    epochs do not overlap, and its five training excerpts would make whole-excerpt
    validation sets of 16-23 % that often lack a sleep stage: none there (nor PhysioNet)."""
    groups = d.get("inner_groups")
    return None if groups is None else np.asarray(groups)[train]


def _fit_predict(est, Xtr, ytr, Xte, groups=None):
    est.fit(Xtr, ytr) if groups is None else est.fit(Xtr, ytr, groups=groups)
    proba = est.predict_proba(Xte) if hasattr(est, "predict_proba") else None
    return est.predict(Xte), proba


def bag_of_tokens(ids: np.ndarray, n_codes: int) -> np.ndarray:
    """``(n_epochs, n_codes)`` log share of each code among an epoch's tokens (all channels)."""
    flat = ids.reshape(len(ids), -1)
    counts = np.stack([np.bincount(row, minlength=n_codes) for row in flat]).astype(float)
    return np.log(counts / flat.shape[1] + 1e-3)


def bag_of_tokens_lr(seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(
        C=1.0, max_iter=5000, random_state=seed))


def run_dataset(name: str, d: dict, seeds: list[int], quick: bool,
                class_weight: str | None = CLASS_WEIGHT) -> list[dict]:
    rows = []
    tr_training = dict(TRANSFORMER_TRAINING, max_epochs=5) if quick else TRANSFORMER_TRAINING
    for seed in seeds:
        folds = splits(d, seed)
        if quick:
            folds = folds[:2]
        for k, (train, test) in enumerate(folds):
            t0 = time.perf_counter()
            tok_training = tokenizer_training(len(train) * d["X"].shape[1],
                                              tokenizer_frames(d["X"].shape[-1], d["sfreq"]),
                                              quick)
            tokens = TFMTokens(sfreq=d["sfreq"], tokenizer=TOKENIZER, training=tok_training,
                               seed=seed).fit(d["X"][train], groups=inner_groups(d, train))
            ids = tokens.transform(d["X"])
            usage = np.bincount(ids[train].ravel(), minlength=TOKENIZER["n_codes"])
            t_tok = time.perf_counter() - t0
            for task, y in d["tasks"].items():
                if len(np.unique(y[train])) < 2:
                    continue
                t1 = time.perf_counter()
                clf = TokenTransformerClassifier(codebook=tokens.codebook_, model=TRANSFORMER,
                                                 training=tr_training,
                                                 class_weight=class_weight, seed=seed)
                pred, proba = _fit_predict(clf, ids[train], y[train], ids[test],
                                           inner_groups(d, train))
                base = {"dataset": name, "task": task, "seed": seed, "fold": k,
                        "n_train": int(len(train)), "n_test": int(len(test))}
                rows.append({**base, "pipeline": "TFM tokens + Transformer",
                             **scores(y[test], pred, proba),
                             "tokenizer_seconds": t_tok,
                             "seconds": time.perf_counter() - t1,
                             "codes_used": int((usage > 0).sum()),
                             "tokenizer_epochs": tok_training["max_epochs"],
                             "tokenizer_batch": tok_training["batch_size"],
                             "best_epoch": clf.fit_info_["training"]["best_epoch"]})
                bag = bag_of_tokens(ids, TOKENIZER["n_codes"])
                pred, proba = _fit_predict(bag_of_tokens_lr(seed), bag[train], y[train],
                                           bag[test])
                rows.append({**base, "pipeline": "bag of tokens + LR",
                             **scores(y[test], pred, proba)})
                if "bandpower" in d:
                    est = make_decoder("bandpower_lr", {"C": 1.0}, seed)
                    pred, proba = _fit_predict(clone(est), d["bandpower"][train], y[train],
                                               d["bandpower"][test])
                    rows.append({**base, "pipeline": "band power + LR",
                                 **scores(y[test], pred, proba)})
                if "cov" in d:
                    est = make_decoder("ts_lr", {"metric": "riemann", "C": 1.0}, seed)
                    pred, proba = _fit_predict(clone(est), d["cov"][train], y[train],
                                               d["cov"][test])
                    rows.append({**base, "pipeline": "TS+LR", **scores(y[test], pred, proba)})
                    est = make_decoder("acm_ts_svm", {
                        "selection": "grid", "orders": [1, 2, 3], "lags": [2, 4],
                        "Cs": [1.0], "kernels": ["linear"], "estimator": "oas"}, seed)
                    pred, _ = _fit_predict(est, d["X"][train], y[train], d["X"][test])
                    dec = est.decision_function(d["X"][test])
                    acm = scores(y[test], pred, None)
                    acm["roc_auc"] = float(roc_auc_score(y[test], dec))
                    rows.append({**base, "pipeline": "ACM+TS+SVM", **acm})
                print(f"  {name} seed {seed} fold {k} {task}: " + ", ".join(
                    f"{r['pipeline']} bacc {r['balanced_accuracy']:.3f}"
                    for r in rows if r["seed"] == seed and r["fold"] == k and r["task"] == task),
                    flush=True)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    import pandas as pd

    df = pd.DataFrame(rows)
    metrics = [m for m in ("accuracy", "balanced_accuracy", "kappa", "weighted_f1", "roc_auc")
               if m in df]
    per_seed = df.groupby(["dataset", "task", "pipeline", "seed"])[metrics].mean()
    agg = per_seed.groupby(["dataset", "task", "pipeline"]).agg(["mean", "std"])
    out = []
    for key, row in agg.iterrows():
        entry = dict(zip(["dataset", "task", "pipeline"], key, strict=True))
        for m in metrics:
            entry[m] = [float(row[(m, "mean")]), float(row[(m, "std")])]
        out.append(entry)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / ".." / "shared" / "data")
    parser.add_argument("--tasks", nargs="+", default=["bonn", "dreams", "physionet"],
                        choices=["bonn", "dreams", "physionet"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--class-weight", choices=["balanced", "none"], default=CLASS_WEIGHT,
                        help="class weights of the token Transformer's fine-tuning loss")
    parser.add_argument("--quick", action="store_true",
                        help="2 folds, 2 tokenizer and 5 Transformer epochs (a smoke run)")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"no data folder at {args.data}; pass --data ../shared/data", file=sys.stderr)
        return 2
    loaders = {"bonn": bonn, "dreams": dreams, "physionet": physionet}
    print(f"machine: {platform.machine()}, Python {platform.python_version()}")
    print(__doc__.split("Protocol")[1].split("    python")[0])
    all_rows = []
    for name in args.tasks:
        t0 = time.perf_counter()
        d = loaders[name](args.data)
        print(f"{name}: X {d['X'].shape} at {d['sfreq']:.2f} Hz; folds: {d['folds']}",
              flush=True)
        all_rows += run_dataset(name, d, args.seeds, args.quick,
                                None if args.class_weight == "none" else args.class_weight)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
        summary = summarise(all_rows)
        for s in summary:
            print(f"{s['dataset']:10s} {s['task']:34s} {s['pipeline']:26s} " + "  ".join(
                f"{m} {s[m][0]:.3f}±{s[m][1]:.3f}" for m in
                ("balanced_accuracy", "kappa", "weighted_f1") if m in s))
        if args.json:
            args.json.write_text(json.dumps({
                "protocol": __doc__, "seeds": args.seeds, "quick": args.quick,
                "tokenizer": TOKENIZER, "tokenizer_training": TOKENIZER_TRAINING,
                "tokenizer_min_steps": TOKENIZER_MIN_STEPS,
                "tokenizer_min_vectors_per_code": TOKENIZER_MIN_VECTORS_PER_CODE,
                "transformer": TRANSFORMER, "transformer_training": TRANSFORMER_TRAINING,
                "class_weight": args.class_weight,
                "summary": summary, "folds": all_rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
