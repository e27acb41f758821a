"""The execution profiles parse and plan the DAG (dry runs; nothing is submitted)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.workflow


def test_default_profile_is_picked_up(tmp_path, snakemake_run, tiny_config):
    proc = snakemake_run(tmp_path, tiny_config(tmp_path), "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "profiles/default" in out
    assert "subject_report" in out and "dataset_report" in out


def test_slurm_profile_plans_the_dag(tmp_path, snakemake_run, tiny_config):
    pytest.importorskip("snakemake_executor_plugin_slurm",
                        reason="the Slurm executor plugin is not installed")
    proc = snakemake_run(tmp_path, tiny_config(tmp_path), "--dry-run",
                         "--profile", str(ROOT / "profiles" / "slurm"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "load_eeg" in proc.stdout + proc.stderr
