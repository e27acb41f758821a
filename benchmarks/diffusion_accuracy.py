"""Diffusion decoder on real recordings: generation quality and decoding, next to baselines.

Protocol (printed and written with every number):

- **Data, tasks and folds**: exactly those of ``benchmarks/tokens_accuracy.py`` (same loaders,
  same ``splits(d, seed)``), so the token Transformer rows of BENCHMARKS.md are on the same
  folds: Bonn 5-class / 3-class / seizure vs rest (stratified group 5-fold, segment = group,
  one set of folds for the three tasks), DREAMS W/N1/N2/N3 leave-one-excerpt-out, PhysioNet
  S001 imagined left vs right fist (64 channels, 8-35 Hz, 0-3 s, stratified 5-fold). On
  Bonn the latent fusion classifier's validation split (early stopping) holds whole
  segments (since 2026-12-06; the Bonn decoding rows measured before split the overlapping
  windows of one segment between training and validation).
- **Signals** are resampled to 100 Hz for the diffusion model (Bonn is band-limited to 40 Hz,
  DREAMS is scored on 0.3-35 Hz, PhysioNet filtered to 35 Hz).
- **Decoding, per outer fold, training fold only**: the diffusion backbone is pretrained on
  at most 1500 single-channel windows drawn from the training fold's epochs (no labels), representations (std-pooled gate
  activations of a noiseless pass at t = 1, 1-s pools) are computed for all epochs with the
  frozen backbone, and the latent fusion Transformer is trained on the training fold's
  representations with early stopping and epoch selection on a stratified 20 % validation
  split of the training fold. Baselines on the same folds: log band power + LR (Bonn, DREAMS),
  TS+LR (PhysioNet).
- **Generation, per seed**: fold 0 of that seed's folds. A class-conditional backbone of the
  same size (15 epochs) is trained on (at most 1500 single-channel windows of) the training fold (labels used: 5 Bonn sets, PhysioNet left/right);
  for each class it generates windows (DDIM, 50 steps, clipped to the training data's range) that are compared with the **held-out
  test windows of that class**: log-spectral distance of mean Welch PSDs over 0.5-45 Hz, and
  the classifier two-sample test (logistic regression on waveform descriptors, 5-fold CV, or
  one fold per epoch where a class has fewer than 5 test epochs, grouped by what each real
  window was cut from: the Bonn segment, else the epoch, so that
  windows of one recording never sit on both sides of a split; 0.5 = indistinguishable). Baselines: phase-randomised surrogates of the class's training
  windows (same spectrum as the training data, by construction), and the class's training
  windows themselves (real vs real: the floor any generator can reach).
- Scores: mean over folds per seed, then mean ± sd over seeds.

    python benchmarks/diffusion_accuracy.py [--data ../shared/data] [--tasks bonn dreams
        physionet] [--seeds 0 1 2] [--parts decoding generation] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.base import clone

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tokens_accuracy import (  # noqa: E402
    ROOT,
    bonn,
    dreams,
    inner_groups,
    physionet,
    scores,
    splits,
    summarise,
)

from brainmill.decoding import make_decoder  # noqa: E402
from brainmill.diffusion_decoding import (  # noqa: E402
    DiffusionFeatures,
    LatentFusionClassifier,
    generate,
    single_channel_windows,
    train_diffusion,
)
from brainmill.features.timefreq import resample_signals  # noqa: E402
from brainmill.generation_quality import (  # noqa: E402
    C2ST_FOLDS,
    classifier_two_sample_test,
    log_spectral_distance,
    phase_randomized,
)
from brainmill.models.diffusion import DiffusionConfig  # noqa: E402

SFREQ = 100.0
#: backbone: far smaller than the reference (d_model 128, d_state 128, 20 layers, 100 epochs on
#: TUEV) so that 3 seeds × every fold pretrain on 2 CPU cores
BACKBONE = {"dim": 32, "d_state": 32, "n_layers": 4, "cond_dim": 64, "sfreq": SFREQ}
MAX_WINDOWS = 1500  # single-channel pretraining windows per fold, drawn with the seed
BACKBONE_TRAINING = {"max_epochs": 5, "batch_size": 64, "lr": 2e-3, "min_lr": 1e-5,
                     "weight_decay": 0.0, "ema_decay": 0.995, "ema_start": 20,
                     "progress": False}
#: latent fusion Transformer: reference dim 128, 16 fusion tokens, 8 classifier blocks; this
#: size trains in about a minute per task and fold on 2 CPU cores
LFT = {"dim": 16, "n_heads": 2, "n_fusion_tokens": 4, "depth": 1, "mlp_ratio": 2.0,
       "dropout": 0.1}
LFT_TRAINING = {"max_epochs": 20, "batch_size": 64, "lr": 2e-3, "min_lr": 1e-5,
                "weight_decay": 0.05, "val_fraction": 0.2, "patience": 5, "progress": False}
#: the generation backbone trains longer (quality rose with epochs: 5 → 15 took the Bonn
#: log-spectral distance from 34 to 28 dB before clipping to the data range)
GENERATION_EPOCHS = 15
N_GENERATED = 96  # at least this many windows per class (and as many epochs as held out)


def _names(d: dict) -> list[str]:
    return d.get("ch_names") or [f"ch{i}" for i in range(d["X"].shape[1])]


def _fit_predict(est, Xtr, ytr, Xte, groups=None):
    est.fit(Xtr, ytr) if groups is None else est.fit(Xtr, ytr, groups=groups)
    return est.predict(Xte), est.predict_proba(Xte)


def decoding(name: str, d: dict, seeds: list[int], quick: bool) -> list[dict]:
    rows = []
    bb_training = dict(BACKBONE_TRAINING, max_epochs=1) if quick else BACKBONE_TRAINING
    lft_training = dict(LFT_TRAINING, max_epochs=3) if quick else LFT_TRAINING
    for seed in seeds:
        folds = splits(d, seed)[:2 if quick else None]
        for k, (train, test) in enumerate(folds):
            t0 = time.perf_counter()
            feats = DiffusionFeatures(sfreq=d["sfreq"], ch_names=_names(d), model=BACKBONE,
                                      training=bb_training, max_windows=MAX_WINDOWS,
                                      seed=seed).fit(d["X"][train])
            F = feats.transform(d["X"])
            t_backbone = time.perf_counter() - t0
            for task, y in d["tasks"].items():
                t1 = time.perf_counter()
                clf = LatentFusionClassifier(model=LFT, training=lft_training, seed=seed)
                pred, proba = _fit_predict(clf, F[train], y[train], F[test],
                                           inner_groups(d, train))
                base = {"dataset": name, "task": task, "seed": seed, "fold": k,
                        "n_train": int(len(train)), "n_test": int(len(test))}
                rows.append({**base, "pipeline": "diffusion + latent fusion",
                             **scores(y[test], pred, proba), "backbone_seconds": t_backbone,
                             "backbone_final_loss": feats.training_["history"][-1]["train_loss"],
                             "seconds": time.perf_counter() - t1,
                             "best_epoch": clf.fit_info_["training"]["best_epoch"]})
                for feature, decoder, label in (("bandpower", "bandpower_lr", "band power + LR"),
                                                ("cov", "ts_lr", "TS+LR")):
                    if feature in d:
                        est = clone(make_decoder(decoder, None, seed))
                        pred, proba = _fit_predict(est, d[feature][train], y[train],
                                                   d[feature][test])
                        rows.append({**base, "pipeline": label, **scores(y[test], pred, proba)})
                print(f"  {name} seed {seed} fold {k} {task}: " + ", ".join(
                    f"{r['pipeline']} bacc {r['balanced_accuracy']:.3f}" for r in rows
                    if (r["seed"], r["fold"], r["task"]) == (seed, k, task))
                    + f" (backbone {t_backbone:.0f} s)", flush=True)
    return rows


def generation(name: str, d: dict, seeds: list[int], quick: bool) -> list[dict]:
    """Class-conditional generation vs held-out windows of each class (fold 0 of each seed)."""
    rows = []
    names = _names(d)
    X = resample_signals(d["X"], d["sfreq"], SFREQ)
    y = next(iter(d["tasks"].values()))  # Bonn: the 5 sets; PhysioNet: left/right
    classes = np.unique(y)
    training = dict(BACKBONE_TRAINING, max_epochs=1 if quick else GENERATION_EPOCHS)
    # two-sample test groups: what a window was cut from. Bonn's windows overlap within a
    # segment (the segment); elsewhere the epoch (its channels are one group)
    unit = np.asarray(d["groups"]) if name == "bonn" else np.arange(len(X))
    for seed in seeds:
        train, test = splits(d, seed)[0]
        windows, channels = single_channel_windows(X[train], names)
        labels = np.repeat(y[train], len(names))
        rng = np.random.default_rng(seed)
        if len(windows) > MAX_WINDOWS:
            keep = np.sort(rng.choice(len(windows), MAX_WINDOWS, replace=False))
            windows, labels = windows[keep], labels[keep]
            channels = [channels[i] for i in keep]
        cfg = DiffusionConfig(**BACKBONE, channel_names=names, n_classes=len(classes))
        t0 = time.perf_counter()
        model, _ = train_diffusion(windows, channels, cfg, training, seed, labels=labels)
        t_train = time.perf_counter() - t0
        for c in classes:
            real_test = X[test][y[test] == c].reshape(-1, X.shape[-1])
            test_groups = np.repeat(unit[test][y[test] == c], len(names))
            real_train = X[train][y[train] == c]
            train_units = unit[train][y[train] == c]
            n_epochs = max(int(np.sum(y[test] == c)), -(-N_GENERATED // len(names)))
            if quick:
                n_epochs = max(1, n_epochs // 8)
            picks = rng.choice(len(real_train), min(n_epochs, len(real_train)), replace=False)
            real_train = real_train[picks].reshape(-1, X.shape[-1])
            train_groups = np.repeat(train_units[picks], len(names))
            t1 = time.perf_counter()
            gen = generate(model, names * len(picks), X.shape[-1], seed=seed,
                           labels=np.full(len(picks) * len(names), c))
            t_gen = time.perf_counter() - t1
            # (windows, their groups): generated windows are independent draws; a surrogate
            # keeps the group of the window it was made from
            candidates = {"diffusion (class-conditional)": (gen, None),
                          "phase-randomised training windows": (phase_randomized(real_train,
                                                                                 seed),
                                                                train_groups),
                          "real training windows (floor)": (real_train, train_groups)}
            for source, (fake, fake_groups) in candidates.items():
                # PhysioNet's test fold holds 4-5 epochs of a class: as many folds as groups
                n_groups = min(len(np.unique(g)) for g in (test_groups, fake_groups)
                               if g is not None)
                if n_groups < 2:  # --quick on PhysioNet: one training epoch per class
                    c2st = {"accuracy": float("nan"), "p_value": float("nan"), "n_per_set": 0}
                else:
                    c2st = classifier_two_sample_test(real_test, fake, SFREQ,
                                                      n_folds=min(C2ST_FOLDS, n_groups), seed=seed,
                                                      real_groups=test_groups,
                                                      fake_groups=fake_groups)
                rows.append({"dataset": name, "class": int(c), "seed": seed, "source": source,
                             "lsd_db": log_spectral_distance(fake, real_test, SFREQ),
                             "c2st_accuracy": c2st["accuracy"], "c2st_p": c2st["p_value"],
                             "n_windows": c2st["n_per_set"], "train_seconds": t_train,
                             "sample_seconds": t_gen if source.startswith("diffusion") else 0})
            print(f"  {name} seed {seed} class {c}: " + ", ".join(
                f"{r['source'].split(' (')[0]} LSD {r['lsd_db']:.2f} dB C2ST "
                f"{r['c2st_accuracy']:.2f}" for r in rows[-3:]), flush=True)
    return rows


def summarise_generation(rows: list[dict]) -> list[dict]:
    import pandas as pd

    df = pd.DataFrame(rows)
    per_seed = df.groupby(["dataset", "source", "seed"])[["lsd_db", "c2st_accuracy"]].mean()
    agg = per_seed.groupby(["dataset", "source"]).agg(["mean", "std"])
    return [{"dataset": ds, "source": src,
             **{m: [float(row[(m, "mean")]), float(row[(m, "std")])]
                for m in ("lsd_db", "c2st_accuracy")}} for (ds, src), row in agg.iterrows()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / ".." / "shared" / "data")
    parser.add_argument("--tasks", nargs="+", default=["bonn", "dreams", "physionet"],
                        choices=["bonn", "dreams", "physionet"])
    parser.add_argument("--parts", nargs="+", default=["decoding", "generation"],
                        choices=["decoding", "generation"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true", help="2 folds, 1 epoch (a smoke run)")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"no data folder at {args.data}; pass --data ../shared/data", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    loaders = {"bonn": bonn, "dreams": dreams, "physionet": physionet}
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads")
    print(__doc__.split("Protocol")[1].split("    python")[0])
    dec_rows, gen_rows = [], []
    for name in args.tasks:
        t0 = time.perf_counter()
        d = loaders[name](args.data)
        print(f"{name}: X {d['X'].shape} at {d['sfreq']:.2f} Hz; folds: {d['folds']}",
              flush=True)
        if "decoding" in args.parts:
            dec_rows += decoding(name, d, args.seeds, args.quick)
        if "generation" in args.parts and name != "dreams":  # DREAMS: decoding only
            gen_rows += generation(name, d, args.seeds, args.quick)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
        summary = summarise(dec_rows) if dec_rows else []
        for s in summary:
            print(f"{s['dataset']:10s} {s['task']:34s} {s['pipeline']:26s} " + "  ".join(
                f"{m} {s[m][0]:.3f}±{s[m][1]:.3f}" for m in
                ("balanced_accuracy", "kappa", "weighted_f1") if m in s))
        gen_summary = summarise_generation(gen_rows) if gen_rows else []
        for s in gen_summary:
            print(f"{s['dataset']:10s} {s['source']:36s} LSD {s['lsd_db'][0]:.2f}±"
                  f"{s['lsd_db'][1]:.2f} dB  C2ST {s['c2st_accuracy'][0]:.3f}±"
                  f"{s['c2st_accuracy'][1]:.3f}")
        if args.json:
            args.json.write_text(json.dumps({
                "protocol": __doc__, "seeds": args.seeds, "quick": args.quick,
                "backbone": BACKBONE, "backbone_training": BACKBONE_TRAINING,
                "max_windows": MAX_WINDOWS, "lft": LFT,
                "lft_training": LFT_TRAINING, "decoding_summary": summary,
                "generation_summary": gen_summary, "decoding": dec_rows,
                "generation": gen_rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
