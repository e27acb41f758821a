"""Fixtures shared by every test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real recordings in ``../shared/data``; skips the test when that folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (a user's clone); real-data tests need it")
    return SHARED_DATA.resolve()


# ------------------------------------------------------------- stage outputs on tiny data


def tiny_stage_config():
    """A synthetic dataset small enough to run every stage in a few seconds."""
    from brainmill.config import validate_config

    return validate_config({
        "seed": 7,
        "datasets": {
            "tiny": {
                "source": {"kind": "synthetic", "n_sessions": 2, "n_trials_per_class": 8,
                           "classes": ["left_hand", "right_hand"], "sfreq": 200,
                           "effect_sizes": {"1": 0.7}},
                "subjects": ["1"],
                "events": {"left_hand": "left_hand", "right_hand": "right_hand"},
                "preprocessing": {"notch": [50], "l_freq": 8, "h_freq": 30, "resample": 100,
                                  "epochs": {"tmin": 0.5, "tmax": 2.5, "reject_uv": 300}},
                "evaluation": {"protocols": ["within_session", "cross_session"],
                               "n_folds": 3},
            }
        },
    })


@pytest.fixture(scope="session")
def stage_outputs(tmp_path_factory):
    """Every stage run once on one tiny synthetic subject, laid out as the workflow does.

    Returns a namespace with ``cfg``, ``ds``, ``subject``, ``recording``, the paths each stage
    wrote (``raw``, ``recording_json``, ``epochs``, ``preprocessing_json``, ``qc``,
    ``features``, ``metrics`` and ``predictions`` as ``{decoder: path}``) and ``root``.
    """
    from types import SimpleNamespace

    from brainmill import stages

    cfg = tiny_stage_config()
    ds, subject = "tiny", "1"
    root = tmp_path_factory.mktemp("stages")
    sub = root / "results" / ds / f"sub-{subject}"
    out = SimpleNamespace(
        cfg=cfg, ds=ds, subject=subject, root=root, sub_dir=sub,
        raw=sub / "raw.fif", recording_json=sub / "recording.json",
        epochs=sub / "epochs-epo.fif", preprocessing_json=sub / "preprocessing.json",
        qc=sub / "qc.npz", features=sub / "features" / "covariance.npz",
        metrics={}, predictions={},
    )
    out.recording = stages.run_load(cfg, ds, subject, str(out.raw), str(out.recording_json))
    stages.run_preprocess(cfg, ds, subject, str(out.raw), str(out.recording_json),
                          str(out.epochs), str(out.preprocessing_json), str(out.qc))
    stages.run_features(cfg, ds, subject, "covariance", str(out.epochs), str(out.features))
    for decoder in cfg.datasets[ds].decoders.enabled():
        out.metrics[decoder] = sub / "decoders" / decoder / "metrics.json"
        out.predictions[decoder] = sub / "decoders" / decoder / "predictions.csv"
        stages.run_decode(cfg, ds, subject, decoder, str(out.features),
                          str(out.metrics[decoder]), str(out.predictions[decoder]))
    return out


@pytest.fixture
def modules_loaded_by():
    """``f(code) -> set``: the top-level modules a fresh interpreter holds after running ``code``."""

    def loaded(code: str) -> set[str]:
        report = "\nimport sys\nprint(' '.join(m for m in sys.modules if '.' not in m))"
        out = subprocess.run([sys.executable, "-c", code + report], capture_output=True,
                             text=True, check=True).stdout
        return set(out.split())

    return loaded


@pytest.fixture
def carved_splits(monkeypatch):
    """Every validation split the trainer carves, as ``(groups or None, validation rows)``."""
    import brainmill.training as training

    calls, original = [], training.validation_split

    def recorded(n, fraction, seed, y=None, groups=None):
        train, val = original(n, fraction, seed, y=y, groups=groups)
        calls.append((None if groups is None else np.asarray(groups), val))
        return train, val

    monkeypatch.setattr(training, "validation_split", recorded)
    return calls


@pytest.fixture
def whole_groups():
    """``f(groups, val) -> bool``: every group lies wholly inside or outside ``val``."""

    def whole(groups, val) -> bool:
        held = np.isin(np.arange(len(groups)), val)
        return all(len(set(held[groups == g])) == 1 for g in np.unique(groups))

    return whole
