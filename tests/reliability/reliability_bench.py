"""The reliability catalogue's test bench: small datasets with one subject to break.

Every case writes a broken subject 2 next to subjects 1 and 3, whose outputs were made once
per session (fixtures in ``conftest.py``), and runs subject 2's stages exactly as the workflow
scripts do (inside :func:`brainmill.joblog.job_logging`, one log per job). A case then checks

* the job's outcome: rejected (exit status 1, one ``FAILED`` line naming the error type, the
  file, the subject and what was expected) or repaired/excluded (the stages finish and the
  decision is recorded);
* that subject 2 has no output of the failed stage or any later one (nothing half-written);
* that subjects 1 and 3 still have every output, byte for byte (:func:`assert_intact`).

The Snakemake helpers of ``tests/workflow/conftest.py`` are loaded from there, so both folders
run the workflow the same way.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mne
import numpy as np
import pandas as pd

from brainmill import fmri_stages, stages
from brainmill.config import Config, SyntheticSource, validate_config
from brainmill.datasets.synthetic import load as load_synthetic
from brainmill.joblog import job_logging

_spec = importlib.util.spec_from_file_location(
    "workflow_helpers", Path(__file__).resolve().parents[1] / "workflow" / "conftest.py")
workflow_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(workflow_helpers)
run_snakemake = workflow_helpers.run_snakemake
tiny_synthetic_config = workflow_helpers.tiny_synthetic_config

GOOD = ("1", "3")
BROKEN = "2"
EEG_DS = "edf"
EVENTS = {"left_hand": ["left_hand"], "right_hand": ["right_hand"]}


# ------------------------------------------------------------------------------- jobs


@dataclass
class Job:
    """What one stage job left behind."""

    stage: str
    log_path: Path
    failed: bool

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def failed_lines(self) -> list[str]:
        return [line for line in self.log.splitlines() if " FAILED " in line]


def run_job(log_path: Path, name: str, stage: str, body: Callable[[], object]) -> Job:
    """Run ``body`` as a workflow script does; a brainmill error ends it with exit status 1."""
    try:
        with job_logging(log_path, name):
            body()
    except SystemExit as stop:
        assert stop.code == 1, f"{name}: exit status {stop.code}"
        return Job(stage, log_path, failed=True)
    return Job(stage, log_path, failed=False)


@dataclass
class Outcome:
    """The jobs of one subject's chain, up to the first that failed."""

    jobs: list[Job] = field(default_factory=list)

    @property
    def failed(self) -> Job | None:
        return next((j for j in self.jobs if j.failed), None)

    def assert_rejected(self, stage: str, error: str, *needles: str) -> str:
        """The chain stopped at ``stage`` with ``error`` and one FAILED line naming ``needles``.

        Returns the FAILED line.
        """
        job = self.failed
        assert job is not None, f"expected {stage} to fail; every job finished"
        assert job.stage == stage, f"{job.stage} failed, expected {stage}:\n{job.log}"
        lines = job.failed_lines()
        assert len(lines) == 1, job.log
        line = lines[0]
        assert f": {error}: " in line, line
        for needle in needles:
            assert needle in line, f"{needle!r} not in {line!r}"
        assert "Traceback" not in line
        return line

    def assert_finished(self) -> None:
        job = self.failed
        assert job is None, job.log if job else ""


def fingerprint(paths: list[Path]) -> dict[Path, str]:
    """sha256 of every file."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def assert_intact(before: dict[Path, str]) -> None:
    """Every file is still there, unchanged."""
    missing = [p for p in before if not p.is_file()]
    assert not missing, f"outputs of other subjects disappeared: {missing}"
    changed = [p for p, h in fingerprint(list(before)).items() if h != before[p]]
    assert not changed, f"outputs of other subjects changed: {changed}"


# -------------------------------------------------------------------------- EEG bench


def synthetic_raw(subject: str, *, n_trials: int = 10, sfreq: float = 160.0) -> mne.io.Raw:
    """One session of the embedded synthetic motor imagery (2 classes), as a plain Raw."""
    source = SyntheticSource(n_sessions=1, n_trials_per_class=n_trials,
                             classes=["left_hand", "right_hand"], sfreq=sfreq,
                             effect_sizes={subject: 0.7})
    raw = load_synthetic(source, subject, EVENTS, seed=3).raw
    raw.set_montage(None)  # files from amplifiers carry names, rarely positions
    return raw


def write_recording(raw: mne.io.BaseRaw, path: Path) -> Path:
    """Write ``raw`` as EDF (by MNE's exporter) or FIF, by the path's ending."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".fif"):
        raw.save(path, overwrite=True, verbose="error")
    else:
        mne.export.export_raw(path, raw, fmt="edf", overwrite=True, verbose="error")
    return path


class EEGBench:
    """EDF files of subjects 1-3 under ``root``; results, logs laid out as the workflow's."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "data"
        self.results = base / "results" / EEG_DS
        self.logs = base / "logs" / EEG_DS
        self.good_edf = write_recording(synthetic_raw("1"), base / "template" / "good.edf")

    def config(self, **dataset: object) -> Config:
        ds = {
            "source": {"kind": "files", "root": str(self.root), "pattern": "sub-{subject}/*"},
            "subjects": ["1", "2", "3"],
            "events": EVENTS,
            "preprocessing": {"epochs": {"tmin": 0.5, "tmax": 2.5, "reject_uv": 400}},
            "decoders": {"csp_lda": None},
            "evaluation": {"protocols": ["within_session"], "n_folds": 3},
        }
        for key, value in dataset.items():
            ds[key] = {**ds[key], **value} if isinstance(value, dict) else value
        return validate_config({"seed": 7, "datasets": {EEG_DS: ds}})

    def subject_dir(self, subject: str) -> Path:
        return self.results / f"sub-{subject}"

    def outputs(self, subject: str) -> list[Path]:
        base = self.subject_dir(subject)
        return [base / n for n in ("raw.fif", "recording.json", "epochs-epo.fif",
                                   "preprocessing.json", "qc.npz", "features/covariance.npz",
                                   "decoders/ts_lr/metrics.json",
                                   "decoders/ts_lr/predictions.csv")]

    def fresh(self, subject: str = BROKEN) -> Path:
        """Empty ``subject``'s data folder, results and logs; return the data folder."""
        for folder in (self.root / f"sub-{subject}", self.subject_dir(subject),
                       self.logs / f"sub-{subject}"):
            shutil.rmtree(folder, ignore_errors=True)
        (self.root / f"sub-{subject}").mkdir(parents=True)
        return self.root / f"sub-{subject}"

    def run(self, subject: str, cfg: Config | None = None) -> Outcome:
        """load -> preprocess -> covariance -> ts_lr for ``subject``, stopping at a failure."""
        cfg = cfg or self.config()
        out = dict(zip(["raw", "rec", "epochs", "prep", "qc", "cov", "metrics", "pred"],
                       [str(p) for p in self.outputs(subject)], strict=True))
        chain = [
            ("load", lambda: stages.run_load(cfg, EEG_DS, subject, out["raw"], out["rec"])),
            ("preprocess", lambda: stages.run_preprocess(
                cfg, EEG_DS, subject, out["raw"], out["rec"], out["epochs"], out["prep"],
                out["qc"])),
            ("features-covariance", lambda: stages.run_features(
                cfg, EEG_DS, subject, "covariance", out["epochs"], out["cov"])),
            ("decode-ts_lr", lambda: stages.run_decode(
                cfg, EEG_DS, subject, "ts_lr", out["cov"], out["metrics"], out["pred"])),
        ]
        outcome = Outcome()
        for stage, body in chain:
            log = self.logs / f"sub-{subject}" / f"{stage}.log"
            job = run_job(log, f"{stage} {EEG_DS} sub-{subject}", stage, body)
            outcome.jobs.append(job)
            if job.failed:
                break
        return outcome

    def assert_nothing_after(self, outcome: Outcome, subject: str = BROKEN) -> None:
        """The failed stage and every later one left no output (no half-written file)."""
        stage_outputs = {"load": 0, "preprocess": 2, "features-covariance": 5,
                         "decode-ts_lr": 6}
        first = stage_outputs[outcome.failed.stage]
        left = [p for p in self.outputs(subject)[first:] if p.exists()]
        assert not left, f"outputs of a failed stage remain: {left}"
        strays = [p for p in self.subject_dir(subject).rglob("*") if p.name.startswith(".")]
        assert not strays, f"temporary files remain: {strays}"




# ------------------------------------------------------------------------- fMRI bench

FMRI_DS = "rois"
ROI_NAMES = ["a", "b", "c", "d", "e"]


def roi_table(n_timepoints: int = 80, n_rois: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n_timepoints, n_rois))


def write_roi_file(path: Path, data: np.ndarray, header: list[str] | None = None,
                   nan_rows: tuple[int, ...] = ()) -> Path:
    header = header or [f"r{i}" for i in range(data.shape[1])]
    lines = ["\t".join(header)]
    for i, row in enumerate(data):
        lines.append("\t".join("nan" if i in nan_rows else f"{v:.6f}" for v in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_participants(path: Path, subjects=("1", "2", "3"), drop_column: str | None = None
                       ) -> Path:
    rows = [{"participant_id": f"sub-{s}", "age": 20 + int(s), "sex": "MF"[int(s) % 2],
             "site": "X", "diagnosis": ["ASD", "TC"][int(s) % 2], "mean_fd": 0.1}
            for s in subjects]
    table = pd.DataFrame(rows)
    if drop_column:
        table = table.drop(columns=drop_column)
    table.to_csv(path, sep="\t", index=False)
    return path


class FMRIBench:
    """ROI time series of subjects 1-3 (roi_files source) under ``root``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "data"
        self.results = base / "results" / FMRI_DS
        self.logs = base / "logs" / FMRI_DS
        self.root.mkdir(parents=True)
        write_participants(self.root / "participants.tsv")

    def config(self, participants: str = "participants.tsv", **source_or_prep) -> Config:
        prep = {"min_timepoints": 50, "max_mean_fd": None}
        prep.update(source_or_prep.pop("preprocessing", {}))
        source = {"kind": "roi_files", "root": str(self.root), "pattern": "sub-{subject}.tsv",
                  "tr": 2.0, "participants": participants, **source_or_prep}
        return validate_config({"seed": 5, "datasets": {FMRI_DS: {
            "modality": "fmri", "subjects": ["1", "2", "3"], "source": source,
            "preprocessing": prep,
            "vae": {"model": {"latent_dim": 2, "hidden": 8},
                    "training": {"max_epochs": 2, "batch_size": 4}},
            "decoding": None}}})

    def subject_dir(self, subject: str) -> Path:
        return self.results / f"sub-{subject}"

    def outputs(self, subject: str) -> list[Path]:
        base = self.subject_dir(subject)
        return [base / n for n in ("roi_timeseries.npz", "cleaned_timeseries.npz", "qc.json",
                                   "features/connectivity.npz")]

    def fresh(self, subject: str = BROKEN) -> None:
        (self.root / f"sub-{subject}.tsv").unlink(missing_ok=True)
        for folder in (self.subject_dir(subject), self.logs / f"sub-{subject}"):
            shutil.rmtree(folder, ignore_errors=True)

    def run(self, subject: str, cfg: Config | None = None) -> Outcome:
        """load_fmri -> clean_fmri -> connectivity for ``subject``, stopping at a failure."""
        cfg = cfg or self.config()
        ts, cleaned, qc, conn = (str(p) for p in self.outputs(subject))
        chain = [
            ("load_fmri", lambda: fmri_stages.run_load_fmri(cfg, FMRI_DS, subject, ts)),
            ("clean_fmri", lambda: fmri_stages.run_clean_fmri(cfg, FMRI_DS, subject, ts,
                                                              cleaned, qc)),
            ("connectivity", lambda: fmri_stages.run_connectivity(cfg, FMRI_DS, subject,
                                                                  cleaned, qc, conn)),
        ]
        outcome = Outcome()
        for stage, body in chain:
            log = self.logs / f"sub-{subject}" / f"{stage}.log"
            job = run_job(log, f"{stage} {FMRI_DS} sub-{subject}", stage, body)
            outcome.jobs.append(job)
            if job.failed:
                break
        return outcome

    def run_dataset_job(self, stage: str, body: Callable[[], object]) -> Job:
        return run_job(self.logs / f"{stage}.log", f"{stage} {FMRI_DS}", stage, body)

    def assert_nothing_after(self, outcome: Outcome, subject: str = BROKEN) -> None:
        first = {"load_fmri": 0, "clean_fmri": 1, "connectivity": 3}[outcome.failed.stage]
        left = [p for p in self.outputs(subject)[first:] if p.exists()]
        assert not left, f"outputs of a failed stage remain: {left}"
