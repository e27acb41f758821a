"""One function per workflow stage: read the previous stage's files, compute, write atomically.

The workflow scripts in ``workflow/scripts/`` are a few lines around these functions, so each
stage can also be run (and tested) from Python without Snakemake.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mne

from .config import Config
from .datasets import load_recording
from .datasets.base import Recording, RunInfo
from .errors import DataError
from .io import FeatureSet, atomic_fif, atomic_path, read_json, write_json, write_npz

logger = logging.getLogger("brainmill")


def save_recording(recording: Recording, raw_path: str | Path, json_path: str | Path) -> None:
    """Write a recording as ``raw.fif`` plus its ``recording.json`` sidecar."""
    with atomic_fif(raw_path) as tmp:
        recording.raw.save(tmp, overwrite=True, verbose="error")
    write_json(json_path, recording.to_json())


def read_recording(raw_path: str | Path, json_path: str | Path) -> Recording:
    """Read a recording written by :func:`save_recording`."""
    meta = read_json(json_path)
    raw = mne.io.read_raw_fif(raw_path, preload=True, verbose="error")
    return Recording(
        raw=raw,
        subject=meta["subject"],
        event_id=meta["event_id"],
        runs=[RunInfo(**r) for r in meta["runs"]],
        metadata=meta.get("metadata", {}),
    )


def run_load(cfg: Config, ds: str, subject: str, raw_path: str, json_path: str) -> Recording:
    """Load one subject with the dataset's configured source and write it."""
    dataset = cfg.datasets[ds]
    recording = load_recording(dataset, subject, seed=cfg.seed)
    recording.metadata.setdefault("dataset", ds)
    logger.info(
        "loaded %s sub-%s: %d channels, %.0f Hz, %.1f s, runs %s",
        ds, subject, len(recording.raw.ch_names), recording.raw.info["sfreq"],
        recording.raw.times[-1], [(r.session, r.run) for r in recording.runs],
    )
    save_recording(recording, raw_path, json_path)
    return recording


def run_preprocess(
    cfg: Config, ds: str, subject: str, raw_path: str, json_path: str,
    epochs_path: str, log_path: str, qc_path: str,
) -> None:
    """Preprocess one subject's recording into epochs, a JSON log and QC arrays."""
    from .preprocessing import preprocess

    recording = read_recording(raw_path, json_path)
    result = preprocess(recording, cfg.datasets[ds].preprocessing)
    ep = result.log.get("epochs", {})
    logger.info("epochs: kept %s of %s (drop reasons %s)", ep.get("n_kept"), ep.get("n_events"),
                ep.get("drop_reasons"))
    with atomic_fif(epochs_path) as tmp:
        result.epochs.save(tmp, overwrite=True, verbose="error")
    write_json(log_path, result.log)
    write_npz(qc_path, **result.qc)


def run_features(
    cfg: Config, ds: str, subject: str, name: str, epochs_path: str, out_path: str
) -> FeatureSet:
    """Compute the named feature for one subject's epochs."""
    from .features import feature_function

    dataset = cfg.datasets[ds]
    epochs = mne.read_epochs(epochs_path, preload=True, verbose="error")
    if len(epochs) == 0:
        raise DataError("no epochs left after preprocessing", file=epochs_path, subject=subject)
    params = getattr(dataset.features, name)
    features = feature_function(name)(epochs, params, dataset.class_names)
    features.meta.update({"dataset": ds, "subject": subject})
    logger.info("%s: X %s", name, features.X.shape)
    features.save(out_path)
    return features


def run_decode(
    cfg: Config, ds: str, subject: str, decoder: str, feature_path: str,
    metrics_path: str, predictions_path: str,
) -> dict:
    """Cross-validate one decoder on one subject's features; write metrics and predictions."""
    from .decoding import run_decoder

    dataset = cfg.datasets[ds]
    params = dataset.decoders.enabled()[decoder]
    features = FeatureSet.load(feature_path)
    try:
        metrics, predictions = run_decoder(
            decoder, params, features, dataset.evaluation, cfg.seed, subject=subject, dataset=ds
        )
    except DataError as err:
        # run_decoder already names the subject; add the feature file unless one is named
        if err.file is None or err.subject is None:
            raise DataError(err.problem, file=err.file or feature_path,
                            subject=err.subject or subject,
                            expected=err.expected, hint=err.hint) from err
        raise
    for protocol, res in metrics["protocols"].items():
        if "summary" in res:
            acc = res["summary"]["accuracy"]
            logger.info("%s %s: accuracy %.3f ± %.3f (chance %.3f)", decoder, protocol,
                        acc["mean"], acc["sd"], res["chance_level"])
        else:
            logger.info("%s %s: skipped (%s)", decoder, protocol, res.get("skipped"))
    write_json(metrics_path, metrics)
    with atomic_path(predictions_path, suffix=".csv") as tmp:
        predictions.to_csv(tmp, index=False)
    return metrics
