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


def test_configfile_replaces_the_default_config(tmp_path, snakemake_run, tiny_config):
    """--configfile FILE runs FILE's datasets only; the default config is not merged in."""
    (tmp_path / "config").mkdir()
    default = tiny_config(tmp_path / "config")  # config/config.yaml of the working directory
    default.write_text(default.read_text().replace("  tiny:", "  defaultset:"))
    mine = tiny_config(tmp_path)
    proc = snakemake_run(tmp_path, mine, "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "reports/tiny/index.html" in out
    assert "defaultset" not in out


def test_without_configfile_the_default_config_is_read(tmp_path, tiny_config):
    """No --configfile: config/config.yaml of the working directory, as before."""
    import subprocess
    import sys

    (tmp_path / "config").mkdir()
    default = tiny_config(tmp_path / "config")
    assert default == tmp_path / "config" / "config.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
         "--directory", str(tmp_path), "--cores", "1", "--dry-run"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reports/tiny/index.html" in proc.stdout + proc.stderr


def test_tokenize_claims_a_gpu_only_when_its_jobs_run_on_this_machine(tmp_path, tiny_config):
    """`tokenize` claims the `gpu` resource when this machine has a GPU and runs the jobs;
    under a cluster executor, a GPU on the machine that builds the DAG (a login node) says
    nothing about the nodes: no claim, so Slurm is not asked for one. The DAG is built as
    ``snakemake`` builds it, after the executor plugin is set (a dry run would swap in the
    dry-run executor, which is local)."""
    pytest.importorskip("snakemake_executor_plugin_slurm",
                        reason="the Slurm executor plugin is not installed")
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        ResourceSettings,
    )
    from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

    config = tiny_config(tmp_path, tokenizer={}, decoders={"token_transformer": {}})
    claims = {}
    for gpu_present in (False, True):
        for executor in ("local", "slurm"):
            with SnakemakeApi(OutputSettings()) as api:
                workflow_api = api.workflow(
                    snakefile=ROOT / "Snakefile", workdir=tmp_path,
                    resource_settings=ResourceSettings(cores=2),
                    config_settings=ConfigSettings(configfiles=[config]))
                workflow_api.dag(dag_settings=DAGSettings(
                    targets={"results/tiny/sub-1/features/tokens.npz"}))  # parses
                workflow = workflow_api._workflow
                claim = workflow.get_rule("tokenize").resources["gpu"]
                claim.__globals__["GPU_PRESENT"] = gpu_present  # CI has no GPU
                workflow._executor_plugin = ExecutorPluginRegistry().get_plugin(executor)
                workflow._prepare_dag(forceall=False, ignore_incomplete=True,
                                      lock_warn_only=True, nolock=True)
                workflow._build_dag()
                jobs = [j for j in workflow.dag.jobs if j.rule.name == "tokenize"]
                assert len(jobs) == 1
                claims[gpu_present, executor] = jobs[0].resources["gpu"]
    assert claims == {(False, "local"): 0, (False, "slurm"): 0,
                      (True, "local"): 1, (True, "slurm"): 0}
