"""Workflow stages of the token branch: train the tokenizer, tokenize a subject, decode.

* ``train_tokenizer`` (dataset level): every channel of every epoch of the configured subjects
  is one single-channel training window; labels are never read. Checkpoints go to
  ``results/{ds}/models/tokenizer/run/`` so a killed job resumes where it stopped.
* ``tokenize`` (per subject): token ids ``(n_epochs, n_channels, n_frames)`` as a
  :class:`~brainmill.io.FeatureSet` named ``tokens``.
* ``decode_transformer`` (per subject): the token Transformer under the configured
  cross-validation protocols, embedding initialised from the tokenizer's codebook.
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
from .errors import DataError
from .evaluation import pretraining_note, pretraining_record
from .features.epochs import epochs_arrays
from .features.timefreq import TFMTokens, token_counts, tokenize
from .io import FeatureSet, atomic_path, data_digest, fresh_run_dir, write_json
from .models import load_model, save_model
from .stage_inputs import read_resampled_epochs
from .training import resolve_device, set_threads, window_epochs

logger = logging.getLogger("brainmill")


def _read(path: str | Path, subject: str, sfreq: float, n_fft: int
          ) -> tuple[mne.BaseEpochs, np.ndarray]:
    return read_resampled_epochs(
        path, subject, sfreq, n_fft, f"one STFT window (n_fft={n_fft})",
        "Lengthen preprocessing.epochs (tmin..tmax) or lower tokenizer.model.n_fft")


def run_train_tokenizer(
    cfg: Config, ds: str, subjects: list[str], epochs_paths: list[str], model_path: str,
    info_path: str, run_dir: str, threads: int | None = None,
) -> dict[str, Any]:
    """Train the dataset's tokenizer on the given subjects' epochs (no labels).

    Returns the JSON-able training summary written to ``info_path``.
    """
    set_threads(threads)
    settings = cfg.datasets[ds].tokenizer
    if settings is None:
        raise DataError(f"dataset '{ds}' has no tokenizer section",
                        expected="datasets.<ds>.tokenizer in the config")
    sfreq = settings.model.sfreq
    windows, epoch_of_window, per_subject, lengths = [], [], {}, {}
    n_epochs = 0  # epochs of the subjects before, so that every epoch has its own number
    for sub, path in zip(subjects, epochs_paths, strict=True):
        _, X = _read(path, sub, sfreq, settings.model.n_fft)
        lengths[sub] = X.shape[-1]
        per_subject[sub] = {"epochs": int(X.shape[0]), "channels": int(X.shape[1]),
                            "windows": int(X.shape[0] * X.shape[1])}
        windows.append(X.reshape(-1, 1, X.shape[-1]))  # epoch-major
        epoch_of_window.append(window_epochs(X.shape[0], X.shape[1], first=n_epochs))
        n_epochs += X.shape[0]
    if len(set(lengths.values())) > 1:
        raise DataError(
            f"epochs differ in length across subjects at {sfreq} Hz: {lengths} samples",
            expected="one epoch length for every subject the tokenizer trains on",
            hint="Use the same preprocessing.epochs window and sampling rate for all subjects")
    X, groups = np.concatenate(windows), np.concatenate(epoch_of_window)
    if settings.max_windows is not None and len(X) > settings.max_windows:
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(X), settings.max_windows,
                                                                replace=False))
        logger.info("tokenizer: training on %d of %d windows (max_windows)", len(keep), len(X))
        X, groups = X[keep], groups[keep]
    logger.info("tokenizer: %d single-channel windows of %d samples from %d subject(s)",
                len(X), X.shape[-1], len(subjects))
    fresh_run_dir(run_dir, "tokenizer", {"settings": settings.model_dump(mode="json"),
                                         "seed": cfg.seed, "subjects": list(subjects),
                                         "shape": list(X.shape),
                                         # the groups decide the validation split
                                         "data": data_digest(X, groups)})
    t0 = time.perf_counter()
    tokens = TFMTokens(sfreq=sfreq, tokenizer=settings.model.model_dump(),
                       training=settings.training.trainer_fields(), seed=cfg.seed,
                       run_dir=run_dir).fit(X, groups=groups)  # validation: whole epochs
    ids = tokens.transform(X)
    counts = token_counts(ids, settings.model.n_codes)
    p = counts / max(counts.sum(), 1)
    usage = {"n_used": int((counts > 0).sum()), "n_codes": int(settings.model.n_codes),
             "perplexity": float(np.exp(-np.sum(p[p > 0] * np.log(p[p > 0])))),
             "counts": counts.tolist()}
    info = {"dataset": ds, "subjects": list(subjects), "per_subject": per_subject,
            "labels_used": False,
            "transductive": bool(set(subjects) & set(cfg.datasets[ds].subjects)),
            "n_windows": int(len(X)), "n_times": int(X.shape[-1]),
            "config": settings.model_dump(mode="json"), "seed": cfg.seed,
            "training": tokens.training_, "usage": usage,
            "seconds": time.perf_counter() - t0, "torch": torch.__version__}
    save_model(model_path, tokens.tokenizer_)
    write_json(info_path, info)
    logger.info("tokenizer: %d of %d codes used, perplexity %.1f", usage["n_used"],
                usage["n_codes"], usage["perplexity"])
    return info


def run_tokenize(
    cfg: Config, ds: str, subject: str, epochs_path: str, model_path: str, out_path: str,
    threads: int | None = None,
) -> FeatureSet:
    """Token ids of one subject's epochs with the dataset's trained tokenizer."""
    set_threads(threads)
    dataset = cfg.datasets[ds]
    model = load_model(model_path)
    sfreq = model.config.sfreq
    epochs, Xr = _read(epochs_path, subject, sfreq, model.config.n_fft)
    _, y, session, run = epochs_arrays(epochs, dataset.class_names)
    if dataset.tokenizer is not None:  # the training device setting (CUDA when present)
        model.to(resolve_device(dataset.tokenizer.training.device))
    ids = tokenize(model, Xr, dataset.features.tokens.batch_size)
    meta = {"feature": "tokens", "tokenizer": str(model_path), "n_codes": model.config.n_codes,
            "ch_names": list(epochs.ch_names), "sfreq": sfreq, "n_fft": model.config.n_fft,
            "hop": model.config.hop, "tmin": float(epochs.tmin), "tmax": float(epochs.tmax),
            "dataset": ds, "subject": subject,
            "versions": {"torch": torch.__version__, "mne": mne.__version__}}
    features = FeatureSet(X=ids, y=y, classes=dataset.class_names, session=session, run=run,
                          meta=meta)
    logger.info("tokens: %s, %d distinct codes", ids.shape, len(np.unique(ids)))
    features.save(out_path)
    return features


def run_decode_transformer(
    cfg: Config, ds: str, subject: str, tokens_path: str, model_path: str, metrics_path: str,
    predictions_path: str, threads: int | None = None,
) -> dict[str, Any]:
    """Cross-validate the token Transformer on one subject's tokens."""
    from .decoding import run_decoder

    set_threads(threads)
    dataset = cfg.datasets[ds]
    params = dataset.decoders.enabled()["token_transformer"]
    tokenizer = load_model(model_path)
    codebook = tokenizer.codebook.detach().cpu().numpy()
    features = FeatureSet.load(tokens_path)
    trained_on = dataset.tokenizer_subjects
    metrics, predictions = run_decoder(
        "token_transformer", params, features, dataset.evaluation, cfg.seed, subject=subject,
        dataset=ds, estimator_params={"codebook": codebook},
        pretraining=pretraining_note("TFM tokenizer", trained_on, subject,
                                     "tokenizer.subjects"))
    metrics["versions"]["torch"] = torch.__version__
    metrics["tokenizer"] = pretraining_record("tokenizer", model_path, trained_on, subject)
    write_json(metrics_path, metrics)
    with atomic_path(predictions_path, suffix=".csv") as tmp:
        predictions.to_csv(tmp, index=False)
    return metrics
