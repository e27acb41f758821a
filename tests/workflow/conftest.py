"""Helpers to run the Snakemake workflow on tiny data in a temporary folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def tiny_synthetic_config(workdir: Path, subjects=("1", "5"), **overrides) -> Path:
    """A synthetic dataset small enough for a test: 2 classes, 2 sessions, 12 trials each."""
    cfg = {
        "seed": 7,
        "datasets": {
            "tiny": {
                "source": {"kind": "synthetic", "n_sessions": 2, "n_trials_per_class": 12,
                           "classes": ["left_hand", "right_hand"], "sfreq": 200,
                           "effect_sizes": {"1": 0.7, "5": 0.0}},
                "subjects": list(subjects),
                "events": {"left_hand": "left_hand", "right_hand": "right_hand"},
                "preprocessing": {"notch": [50], "l_freq": 8, "h_freq": 30, "resample": 100,
                                  "epochs": {"tmin": 0.5, "tmax": 2.5, "reject_uv": 300}},
                "evaluation": {"protocols": ["within_session", "cross_session"],
                               "n_folds": 3},
            }
        },
    }
    cfg["datasets"]["tiny"].update(overrides)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_snakemake(workdir: Path, config: Path, *args: str,
                  **popen: object) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile with ``workdir`` as working directory.

    ``popen`` goes to :func:`subprocess.run` (e.g. ``env``, ``start_new_session``).
    """
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(config), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **popen)


@pytest.fixture(scope="session")
def snakemake_run():
    """:func:`run_snakemake`, as a fixture."""
    return run_snakemake


@pytest.fixture(scope="session")
def tiny_config():
    """:func:`tiny_synthetic_config`, as a fixture."""
    return tiny_synthetic_config
