"""ACM accuracy on real data: PhysioNet motor imagery, subject 1, two tasks.

Protocol (written into the output next to every number):

- Data: PhysioNet EEG Motor Movement/Imagery subject 1 from ``../shared/data`` (MNE cache
  layout). Task ``lr``: imagined left vs right fist (runs 4, 8, 12, T1 vs T2). Task ``ff``:
  imagined both fists vs both feet (runs 6, 10, 14, T1 vs T2).
- Preprocessing (brainmill, MNE): the 22 sensorimotor channels of the BNCI2014-001 montage,
  no re-referencing (as MOABB), 8–35 Hz FIR band-pass, epochs 0–3 s after the cue (MOABB's
  PhysionetMI imagery window), no rejection.
- Evaluation: 5-fold stratified within-session CV, shuffled, repeated with seeds 0–4. Every
  fitted part (inner selection, tangent-space reference, CSP, SVM, LDA) sees the training fold
  only. Scores: ROC-AUC and accuracy, mean over folds per seed, then mean ± sd over seeds.
- Pipelines: ``ACM+TS+SVM (grid)``: nested inner 3-fold over order × lag × C × kernel
  (grid below); ``ACM+TS+SVM (takens)``: (order, lag) from AMI + Cao on the training fold,
  C × kernel by inner CV; ``TS+SVM``: the same pipeline at order 1 (the plain covariance),
  C × kernel by the same inner CV; ``CSP+LDA``: OAS covariance, 6 CSP filters, LDA.

Run: ``python benchmarks/acm_accuracy.py [--data ../shared/data] [--json out.json]``
(``--first-seed`` and ``--seeds`` split the seeds over processes; ``chosen_order_lag`` is a
list per seed of the (order, lag) chosen in each outer fold).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from brainmill.config import (
    AcmTsSvmConfig,
    CspLdaConfig,
    DatasetConfig,
    EvaluationConfig,
)
from brainmill.datasets import load_recording
from brainmill.decoding import run_decoder
from brainmill.features.covariance import compute_covariances
from brainmill.features.epochs import epoch_signals
from brainmill.preprocessing import preprocess

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = ["Fz", "FC3", "FC1", "FCz", "FC2", "FC4", "C5", "C3", "C1", "Cz", "C2", "C4", "C6",
            "CP3", "CP1", "CPz", "CP2", "CP4", "P1", "Pz", "P2", "POz"]
TASKS = {"lr": ([4, 8, 12], {"left_fist": ["T1"], "right_fist": ["T2"]}),
         "ff": ([6, 10, 14], {"fists": ["T1"], "feet": ["T2"]})}
GRID = {"orders": [1, 2, 3, 4, 5, 6], "lags": [1, 2, 4, 8]}
SEARCH = {"Cs": [0.5, 1.0, 1.5], "kernels": ["linear", "rbf"]}


def dataset(task: str, data: Path) -> DatasetConfig:
    runs, events = TASKS[task]
    return DatasetConfig.model_validate({
        "source": {"kind": "eegbci", "runs": runs, "download": False, "path": str(data)},
        "subjects": ["1"],
        "events": events,
        "preprocessing": {"picks": CHANNELS, "reference": None, "l_freq": 8, "h_freq": 35,
                          "bad_channels": {"enabled": False},
                          "epochs": {"tmin": 0.0, "tmax": 3.0, "reject_uv": None}},
        "evaluation": {"protocols": ["within_session"], "n_folds": 5},
    })


def pipelines(grid: dict, max_order: int) -> dict[str, tuple[str, str, object]]:
    acm = dict(estimator="cov", inner_folds=3, **SEARCH)
    return {
        "ACM+TS+SVM (grid)": ("acm_ts_svm", "signals",
                              AcmTsSvmConfig(selection="grid", **grid, **acm)),
        "ACM+TS+SVM (takens)": ("acm_ts_svm", "signals",
                                AcmTsSvmConfig(selection="takens", max_order=max_order,
                                               max_lag=10, **acm)),
        "TS+SVM": ("acm_ts_svm", "signals",
                   AcmTsSvmConfig(selection="fixed", order=1, lag=1, **acm)),
        "CSP+LDA": ("csp_lda", "covariance", CspLdaConfig(n_components=6)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="first seed: runs seeds first .. first + seeds - 1, so a long "
                             "protocol can be split over processes or sessions")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--orders", type=int, nargs="+", default=GRID["orders"])
    parser.add_argument("--lags", type=int, nargs="+", default=GRID["lags"])
    parser.add_argument("--max-order", type=int, default=10, help="bound of the Takens order")
    parser.add_argument("--skip", nargs="*", default=[],
                        help="pipeline labels to leave out, e.g. 'ACM+TS+SVM (takens)'")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    grid = {"orders": args.orders, "lags": args.lags}
    data = Path(args.data)
    if not (data / "MNE-eegbci-data").is_dir():
        print(f"skipped: no PhysioNet cache under {data}", file=sys.stderr)
        return 0
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    results = {"protocol": __doc__, "grid": {**grid, **SEARCH}, "seeds": seeds,
               "takens_max_order": args.max_order, "tasks": {}}
    for task in args.tasks:
        ds = dataset(task, data)
        epochs = preprocess(load_recording(ds, "1", seed=0), ds.preprocessing).epochs
        feats = {"signals": epoch_signals(epochs, ds.features.signals, ds.class_names),
                 "covariance": compute_covariances(epochs, ds.features.covariance,
                                                   ds.class_names)}
        n = len(epochs)
        print(f"[{task}] {n} epochs × {len(epochs.ch_names)} channels × {len(epochs.times)} "
              f"samples, classes {np.bincount(feats['signals'].y).tolist()}", flush=True)
        table = {}
        results["tasks"][task] = {"n_epochs": n, "pipelines": table}
        for label, (decoder, feature, params) in pipelines(grid, args.max_order).items():
            if label in args.skip:
                continue
            auc, acc, chosen = [], [], []
            start = time.perf_counter()
            for seed in seeds:
                metrics, _ = run_decoder(decoder, params, feats[feature],
                                         EvaluationConfig(protocols=["within_session"],
                                                          n_folds=5), seed,
                                         subject="1", dataset=f"physionet-{task}")
                within = metrics["protocols"]["within_session"]
                auc.append(within["summary"]["roc_auc"]["mean"])
                acc.append(within["summary"]["accuracy"]["mean"])
                chosen.append([(f["fit_info"]["order"], f["fit_info"]["lag"])
                               for f in within["folds"] if "fit_info" in f])
                print(f"  [{task}] {label} seed {seed}: AUC {auc[-1]:.3f} acc {acc[-1]:.3f}",
                      flush=True)
                # the summary so far, written after every seed, so a long run that is stopped
                # keeps what it did
                table[label] = summary(auc, acc, chosen, time.perf_counter() - start)
                write(results, args.json)
            row = table[label]
            print(f"[{task}] {label:22s} AUC {row['roc_auc_mean']:.3f} ± {row['roc_auc_sd']}"
                  f"  acc {row['accuracy_mean']:.3f} ± {row['accuracy_sd']}"
                  f"  ({row['seconds']:.0f} s)", flush=True)
    write(results, args.json)
    return 0


def summary(auc: list[float], acc: list[float], chosen: list, seconds: float) -> dict:
    """One pipeline's row: mean ± sd over the seeds run so far, and the per-seed values."""
    return {"roc_auc_mean": float(np.mean(auc)), "roc_auc_sd": sd(auc),
            "accuracy_mean": float(np.mean(acc)), "accuracy_sd": sd(acc),
            "per_seed_roc_auc": auc, "per_seed_accuracy": acc,
            "chosen_order_lag": chosen, "seconds": seconds}


def sd(values: list[float]) -> float | None:
    """Sample standard deviation over seeds; None for a single seed."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def write(results: dict, path: str | None) -> None:
    if path:
        Path(path).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
