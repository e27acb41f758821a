"""Catalogue of faults: a killed writer, a full disk, a killed training job.

* Killed mid-write: the process dies (SIGKILL) between writing its temporary file and renaming
  it; the destination is absent (or keeps its previous version) and the hidden leftover is
  removed by the next write. How Snakemake treats a job killed *after* its rename (incomplete
  outputs) is in ``test_workflow_faults.py``.
* Disk full: a job whose output does not fit (a 16 KiB tmpfs, or a file-size limit) fails alone
  with a :class:`~brainmill.errors.WriteError` naming the file, and leaves nothing behind.
* A training job killed mid-run resumes from its last checkpoint and ends where an
  uninterrupted run ends (the trainer's own test is
  ``tests/test_training.py::test_resume_after_sigkill_matches_uninterrupted_run``; this one goes
  through the VAE stage and its ``run_dir``).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from reliability_bench import (
    BROKEN,
    ROI_NAMES,
    roi_table,
    synthetic_raw,
    write_recording,
    write_roi_file,
)

from brainmill.fmri_stages import run_fmri_participants
from brainmill.io import atomic_path, read_json, write_json

FAULTS = Path(__file__).with_name("faults")


def _env(fault: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(FAULTS), env.get("PYTHONPATH")) if p)
    env.pop("BRAINMILL_TEST_FAULT", None)
    if fault:
        env["BRAINMILL_TEST_FAULT"] = fault
    return env


def _python(code: str, *, fault: str | None = None, prefix: list[str] | None = None,
            **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*(prefix or []), sys.executable, "-c", textwrap.dedent(code)],
                          env=_env(fault), capture_output=True, text=True, timeout=300,
                          **kwargs)


# ----------------------------------------------------------------------- killed mid-write


@pytest.mark.parametrize("previous", [None, {"version": "old"}], ids=["new", "existing"])
def test_job_killed_mid_write_leaves_no_output_that_is_trusted(tmp_path, previous):
    dest = tmp_path / "metrics.json"
    if previous is not None:
        write_json(dest, previous)
    proc = _python(f"""
        from brainmill.io import write_json
        write_json({str(dest)!r}, {{"version": "half-written"}})
    """, fault="before-rename:metrics.json")
    assert proc.returncode == -signal.SIGKILL, proc.stderr

    if previous is None:
        assert not dest.exists()
    else:
        assert read_json(dest) == previous  # the old version, never a mix
    (leftover,) = [p for p in tmp_path.iterdir() if p != dest]
    assert leftover.name.startswith(".metrics.json.") and ".tmp" in leftover.name
    assert read_json(leftover) == {"version": "half-written"}  # what the dead job wrote

    write_json(dest, {"version": "rerun"})  # the rerun's write tidies the leftover up
    assert sorted(tmp_path.iterdir()) == [dest] and read_json(dest) == {"version": "rerun"}


def test_temporary_file_of_a_writer_still_running_is_left_alone(tmp_path):
    dest = tmp_path / "x.json"
    with atomic_path(dest) as first:  # this process is alive: its temporary file is not stale
        first.write_text('{"writer": 1}')
        write_json(dest, {"writer": 2})
        assert first.exists()
    assert read_json(dest) == {"writer": 1} and sorted(tmp_path.iterdir()) == [dest]


# ------------------------------------------------------------------------------ disk full


def _subject_2_epochs(eeg) -> tuple[Path, Path]:
    """Subject 2 loaded and preprocessed; returns its epochs and its features path."""
    write_recording(synthetic_raw(BROKEN), eeg.root / f"sub-{BROKEN}" / f"sub-{BROKEN}_eeg.edf")
    outcome = eeg.run(BROKEN)
    outcome.assert_finished()
    base = eeg.subject_dir(BROKEN)
    (base / "features" / "covariance.npz").unlink()
    shutil.rmtree(base / "decoders")
    return base / "epochs-epo.fif", base / "features" / "covariance.npz"


def _features_job(eeg, epochs: Path, out: Path) -> str:
    """The features job of subject 2 as a script; prints what its output folder holds."""
    log = eeg.logs / f"sub-{BROKEN}" / "features-covariance.log"
    return f"""
        import json, os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from reliability_bench import EEGBench
        from pathlib import Path
        from brainmill import stages
        from brainmill.joblog import job_logging
        bench = EEGBench.__new__(EEGBench)
        bench.root = Path({str(eeg.root)!r})
        cfg = EEGBench.config(bench)
        try:
            with job_logging({str(log)!r}, "features covariance edf sub-{BROKEN}"):
                stages.run_features(cfg, "edf", "{BROKEN}", "covariance", {str(epochs)!r},
                                    {str(out)!r})
        finally:
            print(json.dumps(sorted(os.listdir({str(out.parent)!r}))))
    """


def _assert_write_failure(eeg, proc, out: Path, reason: str) -> None:
    assert proc.returncode == 1 and proc.stdout.strip(), proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [], "partial or temporary file"
    assert "Traceback" not in proc.stderr, proc.stderr
    log = (eeg.logs / f"sub-{BROKEN}" / "features-covariance.log").read_text()
    (line,) = [x for x in log.splitlines() if " FAILED " in x]
    assert f"WriteError: cannot write {out}: {reason}" in line
    assert "nothing was written there" in line and "only this job needs to run again" in line
    assert not out.exists()


def _can_mount_tmpfs(folder: Path) -> bool:
    probe = subprocess.run(["unshare", "-rm", "sh", "-c",
                            f"mount -t tmpfs -o size=16k tmpfs {folder}"],
                           capture_output=True, text=True)
    return probe.returncode == 0


def test_disk_full_fails_that_job_only(eeg):
    """The features file is written to a 16 KiB tmpfs (its own mount namespace): ENOSPC."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1): cannot mount a small tmpfs without touching the machine")
    epochs, out = _subject_2_epochs(eeg)
    out.parent.mkdir(exist_ok=True)
    if not _can_mount_tmpfs(out.parent):
        pytest.skip("unprivileged user namespaces are disabled: cannot mount a small tmpfs")
    proc = _python(_features_job(eeg, epochs, out),
                   prefix=["unshare", "-rm", "sh", "-c",
                           f'mount -t tmpfs -o size=16k tmpfs {out.parent} && exec "$0" "$@"'])
    _assert_write_failure(eeg, proc, out, "no space left on device")
    # the job's inputs and the subject's earlier outputs are untouched
    assert epochs.is_file() and (eeg.subject_dir(BROKEN) / "preprocessing.json").is_file()


def test_file_size_limit_fails_that_job_only(eeg):
    """The same job under a 16 KiB file-size limit (RLIMIT_FSIZE): EFBIG, no partial file."""
    epochs, out = _subject_2_epochs(eeg)

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))

    proc = _python(_features_job(eeg, epochs, out), preexec_fn=limit)
    _assert_write_failure(eeg, proc, out, "file too large")


# --------------------------------------------------------------- training killed mid-run


def test_training_job_killed_mid_run_resumes_from_its_checkpoint(fmri, tmp_path):
    write_roi_file(fmri.root / f"sub-{BROKEN}.tsv", roi_table(seed=2), ROI_NAMES)
    cfg = fmri.config()
    cfg.datasets["rois"].vae.training.max_epochs = 4
    fmri.run(BROKEN, cfg).assert_finished()
    subjects = ["1", "2", "3"]
    conn = [str(fmri.subject_dir(s) / "features" / "connectivity.npz") for s in subjects]
    participants = tmp_path / "participants.csv"
    run_fmri_participants(cfg, "rois", subjects,
                          [fmri.subject_dir(s) / "qc.json" for s in subjects], participants)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))

    def train(folder: Path, fault: str | None = None) -> subprocess.CompletedProcess:
        return _python(f"""
            from brainmill.config import load_config
            from brainmill.joblog import job_logging
            from brainmill.vae_stages import run_train_vae
            f = {str(folder)!r}
            with job_logging(f + "/train_vae.log", "train_vae rois"):
                run_train_vae(load_config({str(config)!r}), "rois", {conn!r},
                              {str(participants)!r}, f + "/model.pt", f + "/summary.json",
                              f + "/history.csv", f + "/run", threads=1)
        """, fault=fault)

    killed, whole = tmp_path / "killed", tmp_path / "uninterrupted"
    proc = train(killed, fault="after-rename:killed/run/checkpoint.pt")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (killed / "run" / "checkpoint.pt").is_file() and not (killed / "model.pt").exists()

    proc = train(killed)  # the rerun Snakemake would start
    assert proc.returncode == 0, proc.stderr
    log = (killed / "train_vae.log").read_text()
    assert "resuming from step" in log and "(epoch 2" in log, log
    assert train(whole).returncode == 0

    a = torch.load(killed / "model.pt", weights_only=True)
    b = torch.load(whole / "model.pt", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert len(a["history"]) == len(b["history"]) == 4
