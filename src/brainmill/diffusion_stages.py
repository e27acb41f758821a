"""Workflow stages of the diffusion branch: pretrain, sample, representations, decode.

* ``pretrain_diffusion`` (dataset level): every channel of every epoch of the configured
  subjects is one single-channel window (resampled to ``diffusion.model.sfreq``); labels are
  never read. Checkpoints go to ``results/{ds}/models/diffusion/run/`` so a killed job resumes.
* ``sample_diffusion`` (dataset level): windows generated per channel next to real windows
  of the same channels, their spectra and the classifier two-sample test, for the report.
* ``diffusion_features`` (per subject): the frozen backbone's std-pooled gate activations as a
  :class:`~brainmill.io.FeatureSet` named ``diffusion``.
* ``decode_diffusion`` (per subject): the latent fusion Transformer under the configured
  cross-validation protocols.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import mne
import numpy as np
import torch

from .config import Config
from .diffusion_decoding import (
    diffusion_representations,
    generate,
    single_channel_windows,
    train_diffusion,
)
from .errors import DataError
from .evaluation import pretraining_note, pretraining_record
from .features.epochs import epochs_arrays
from .generation_quality import (
    C2ST_FOLDS,
    channel_groups,
    classifier_two_sample_test,
    log_spectral_distance,
)
from .io import FeatureSet, atomic_path, data_digest, fresh_run_dir, write_json
from .models import load_model, save_model
from .models.diffusion import DiffusionConfig
from .stage_inputs import read_resampled_epochs
from .training import resolve_device, set_threads, window_epochs

logger = logging.getLogger("brainmill")


def _settings(cfg: Config, ds: str):
    settings = cfg.datasets[ds].diffusion
    if settings is None:
        raise DataError(f"dataset '{ds}' has no diffusion section",
                        expected="datasets.<ds>.diffusion in the config")
    return settings


def _subject_signals(epochs_path: str | Path, subject: str, sfreq: float, pool_s: float
                     ) -> tuple[mne.BaseEpochs, np.ndarray]:
    """One subject's epochs resampled to ``sfreq``, at least one pooling window long."""
    return read_resampled_epochs(
        epochs_path, subject, sfreq, int(round(pool_s * sfreq)),
        f"one pooling window of {pool_s:g} s",
        "Lengthen preprocessing.epochs (tmin..tmax) or lower features.diffusion.pool_s")


def _device(settings) -> torch.device:
    return resolve_device(settings.training.device)


def run_pretrain_diffusion(
    cfg: Config, ds: str, subjects: list[str], epochs_paths: list[str], model_path: str,
    info_path: str, run_dir: str, threads: int | None = None,
) -> dict[str, Any]:
    """Train the dataset's diffusion backbone on the given subjects' epochs (no labels).

    Returns the JSON-able summary written to ``info_path``.
    """
    set_threads(threads)
    settings = _settings(cfg, ds)
    dataset = cfg.datasets[ds]
    sfreq = settings.model.sfreq
    windows, channels, epoch_of_window, per_subject = [], [], [], {}
    n_epochs = 0  # epochs of the subjects before, so that every epoch has its own number
    for sub, path in zip(subjects, epochs_paths, strict=True):
        epochs, X = _subject_signals(path, sub, sfreq, dataset.features.diffusion.pool_s)
        w, c = single_channel_windows(X, list(epochs.ch_names))
        windows.append(w)
        channels += c
        epoch_of_window.append(window_epochs(X.shape[0], X.shape[1], first=n_epochs))
        n_epochs += X.shape[0]
        per_subject[sub] = {"epochs": int(X.shape[0]), "channels": int(X.shape[1]),
                            "windows": int(len(w)), "n_times": int(X.shape[-1])}
    lengths = {s: v["n_times"] for s, v in per_subject.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(
            f"epochs differ in length across subjects at {sfreq:g} Hz: {lengths} samples",
            expected="one epoch length for every subject the diffusion backbone trains on",
            hint="Use the same preprocessing.epochs window for all subjects")
    vocabulary = list(dict.fromkeys(channels))  # every channel name seen, first-seen order
    X, groups = np.concatenate(windows), np.concatenate(epoch_of_window)
    if settings.max_windows is not None and len(X) > settings.max_windows:
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(X), settings.max_windows,
                                                                replace=False))
        logger.info("diffusion: training on %d of %d windows (max_windows)", len(keep), len(X))
        X, channels, groups = X[keep], [channels[i] for i in keep], groups[keep]
    logger.info("diffusion: %d single-channel windows of %d samples from %d subject(s)",
                len(X), X.shape[-1], len(subjects))
    model_cfg = DiffusionConfig(**settings.model.model_dump(), channel_names=vocabulary)
    fresh_run_dir(run_dir, "diffusion", {"backbone": settings.backbone_fields(),
                                         "seed": cfg.seed, "subjects": list(subjects),
                                         # the groups decide the validation split
                                         "data": data_digest(X, np.array(channels), groups)})
    t0 = time.perf_counter()
    model, result = train_diffusion(X, channels, model_cfg, settings.training.trainer_fields(),
                                    cfg.seed, run_dir=run_dir, groups=groups)  # whole epochs
    info = {"dataset": ds, "subjects": list(subjects), "per_subject": per_subject,
            "labels_used": False,
            "held_out_subjects": sorted(set(dataset.subjects) - set(subjects)),
            "n_windows": int(len(X)), "n_times": int(X.shape[-1]), "sfreq": sfreq,
            "channel_names": vocabulary, "config": settings.model_dump(mode="json"),
            "n_parameters": int(sum(p.numel() for p in model.parameters())),
            "seed": cfg.seed, "training": result.summary(),
            "seconds": time.perf_counter() - t0, "torch": torch.__version__}
    save_model(model_path, model)
    write_json(info_path, info)
    logger.info("diffusion: final v-MSE %.4f after %d steps",
                result.history[-1]["train_loss"], result.n_steps)
    return info


def run_sample_diffusion(
    cfg: Config, ds: str, subjects: list[str], epochs_paths: list[str], model_path: str,
    out_path: str, threads: int | None = None,
) -> dict[str, Any]:
    """Generate ``n_generated`` windows per channel next to as many real windows of it.

    The real windows are drawn (with the seed) from the epochs the backbone trained on, so the
    comparison is descriptive; held-out comparisons are in ``benchmarks/diffusion_accuracy.py``.
    Writes ``samples.npz`` (``real``, ``generated``: ``(n_channels, n, n_times)`` in volts,
    ``ch_names``, ``sfreq``) and returns the per-group spectral distances and the two-sample
    test that go next to it as ``samples.json``.
    """
    set_threads(threads)
    settings = _settings(cfg, ds)
    model = load_model(model_path).to(_device(settings))
    sfreq = model.config.sfreq
    pool_s = cfg.datasets[ds].features.diffusion.pool_s
    signals, names = [], None
    for sub, path in zip(subjects, epochs_paths, strict=True):
        epochs, X = _subject_signals(path, sub, sfreq, pool_s)
        names = names or list(epochs.ch_names)
        if list(epochs.ch_names) == names:
            signals.append(X)
    X = np.concatenate(signals)
    rng = np.random.default_rng(cfg.seed)
    n = settings.n_generated
    picks = rng.choice(len(X), size=n, replace=len(X) < n)
    real = np.transpose(X[picks], (1, 0, 2)).astype(np.float64)  # (channels, n, times)
    gen = generate(model, [c for c in names for _ in range(n)], X.shape[-1], seed=cfg.seed,
                   n_steps=settings.sampling_steps).reshape(len(names), n, -1)
    groups = channel_groups(names)
    band = (0.5, min(45.0, sfreq / 2))
    lsd = {g: log_spectral_distance(gen[idx].reshape(-1, gen.shape[-1]),
                                    real[idx].reshape(-1, real.shape[-1]), sfreq, band)
           for g, idx in groups.items()}
    summary = {"lsd_db": lsd, "band_hz": list(band), "n_per_channel": n,
               "sampling_steps": settings.sampling_steps or model.config.n_steps}
    if len(np.unique(picks)) >= C2ST_FOLDS:  # a fold's real windows: whole epochs
        # the channels of one real epoch are one group (kept in one fold); generated
        # windows are independent draws
        summary["c2st"] = classifier_two_sample_test(
            real.reshape(-1, real.shape[-1]), gen.reshape(-1, gen.shape[-1]), sfreq,
            seed=cfg.seed, real_groups=np.tile(picks, len(names)))
    with atomic_path(out_path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, real=real, generated=gen, ch_names=np.array(names),
                            sfreq=np.array(sfreq))
    write_json(Path(out_path).with_suffix(".json"), summary)
    logger.info("diffusion samples: log-spectral distance %s dB", {g: round(v, 2)
                                                                   for g, v in lsd.items()})
    return summary


def run_diffusion_features(
    cfg: Config, ds: str, subject: str, epochs_path: str, model_path: str, out_path: str,
    threads: int | None = None,
) -> FeatureSet:
    """Representations of one subject's epochs with the dataset's frozen backbone."""
    set_threads(threads)
    dataset = cfg.datasets[ds]
    feature = dataset.features.diffusion
    model = load_model(model_path).to(_device(_settings(cfg, ds)))
    sfreq = model.config.sfreq
    epochs, Xr = _subject_signals(epochs_path, subject, sfreq, feature.pool_s)
    _, y, session, run = epochs_arrays(epochs, dataset.class_names)
    unknown = [c for c in epochs.ch_names if c not in model.config.channel_names]
    if unknown:
        logger.warning("diffusion: channels %s were not in the backbone's training data; they "
                       "use its unknown-channel embedding", unknown)
    pool = max(1, int(round(feature.pool_s * sfreq)))
    reps = diffusion_representations(model, Xr, list(epochs.ch_names), pool, feature.t,
                                     feature.batch_size)
    meta = {"feature": "diffusion", "backbone": str(model_path), "ch_names": list(epochs.ch_names),
            "unknown_channels": unknown, "sfreq": sfreq, "pool": pool, "t": feature.t,
            "shape": "(n_epochs, n_channels, n_layers, dim, n_pools)",
            "tmin": float(epochs.tmin), "tmax": float(epochs.tmax), "dataset": ds,
            "subject": subject, "versions": {"torch": torch.__version__,
                                             "mne": mne.__version__}}
    features = FeatureSet(X=reps, y=y, classes=dataset.class_names, session=session, run=run,
                          meta=meta)
    logger.info("diffusion representations: %s", reps.shape)
    features.save(out_path)
    return features


def run_decode_diffusion(
    cfg: Config, ds: str, subject: str, features_path: str, model_info_path: str,
    metrics_path: str, predictions_path: str, threads: int | None = None,
) -> dict[str, Any]:
    """Cross-validate the latent fusion Transformer on one subject's representations."""
    from .decoding import run_decoder
    from .io import read_json

    set_threads(threads)
    dataset = cfg.datasets[ds]
    params = dataset.decoders.enabled()["diffusion_lft"]
    features = FeatureSet.load(features_path)
    info = read_json(model_info_path)
    trained_on = info["subjects"]
    metrics, predictions = run_decoder(
        "diffusion_lft", params, features, dataset.evaluation, cfg.seed, subject=subject,
        dataset=ds, pretraining=pretraining_note("diffusion backbone", trained_on, subject,
                                                 "diffusion.subjects"))
    metrics["versions"]["torch"] = torch.__version__
    metrics["backbone"] = pretraining_record(
        "diffusion backbone", Path(model_info_path).with_name("model.pt"), trained_on, subject)
    write_json(metrics_path, metrics)
    with atomic_path(predictions_path, suffix=".csv") as tmp:
        predictions.to_csv(tmp, index=False)
    return metrics
