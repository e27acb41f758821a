"""Catalogue of bad configs: refused before any job runs, naming the key and what was expected.

The pydantic models check keys, types and combinations (:class:`~brainmill.errors.ConfigError`);
paths and what the data can support need the data, so ``brainmill validate`` checks them and
the loaders refuse them with a :class:`~brainmill.errors.DataError` naming the path.
"""

from __future__ import annotations

import pytest
import yaml
from reliability_bench import run_snakemake

from brainmill import stages
from brainmill.cli import main
from brainmill.config import load_config
from brainmill.errors import ConfigError, DataError


def _dataset(**overrides) -> dict:
    ds = {"source": {"kind": "synthetic", "n_sessions": 2, "n_trials_per_class": 6,
                     "classes": ["left_hand", "right_hand"]},
          "subjects": [1, 2],
          "events": {"left_hand": "left_hand", "right_hand": "right_hand"},
          "evaluation": {"protocols": ["within_session"], "n_folds": 3}}
    ds.update(overrides)
    return ds


def _write(tmp_path, ds: dict):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"seed": 1, "datasets": {"mi": ds}}, sort_keys=False))
    return path


def _refused(path, capsys) -> str:
    """``brainmill check-config`` refuses the file with exit status 2 and no traceback."""
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert main(["check-config", str(path)]) == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr and str(path) in stderr
    return str(err.value)


def test_config_unknown_key(tmp_path, capsys):
    msg = _refused(_write(tmp_path, _dataset(preprocesing={"l_freq": 8})), capsys)
    assert "datasets.mi.preprocesing: unknown key 'preprocesing'" in msg
    assert "did you mean 'preprocessing'?" in msg


def test_config_wrong_type(tmp_path, capsys):
    msg = _refused(_write(tmp_path, _dataset(evaluation={"n_folds": "five"})), capsys)
    assert "datasets.mi.evaluation.n_folds" in msg and "valid integer" in msg


def test_config_impossible_combination(tmp_path, capsys):
    """Leave-one-session-out on a source with one session cannot run."""
    ds = _dataset(evaluation={"protocols": ["within_session", "cross_session"]})
    ds["source"]["n_sessions"] = 1
    msg = _refused(_write(tmp_path, ds), capsys)
    assert "datasets.mi" in msg and "asks for 'cross_session'" in msg
    assert "single session" in msg and "remove 'cross_session' or add sessions" in msg


def test_config_file_that_does_not_exist(tmp_path, capsys):
    msg = _refused(tmp_path / "missing.yaml", capsys)
    assert "missing.yaml does not exist" in msg


def test_config_data_path_that_does_not_exist(tmp_path):
    root = tmp_path / "no-such-folder"
    ds = _dataset(source={"kind": "files", "root": str(root), "pattern": "sub-{subject}/*.edf"})
    cfg = load_config(_write(tmp_path, ds))  # a path is data, checked when it is read
    with pytest.raises(DataError) as err:
        stages.run_load(cfg, "mi", "1", str(tmp_path / "raw.fif"), str(tmp_path / "rec.json"))
    msg = str(err.value)
    assert f"subject 1, file {root}: the source's root folder does not exist" in msg
    assert "expected a folder holding the recordings (source.root)" in msg
    assert not (tmp_path / "raw.fif").exists()


@pytest.mark.workflow
def test_config_error_stops_the_workflow_before_any_job(tmp_path):
    config = _write(tmp_path, _dataset(preprocesing={}))
    proc = run_snakemake(tmp_path, config, "--dry-run")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "datasets.mi.preprocesing: unknown key 'preprocesing'" in out
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()
