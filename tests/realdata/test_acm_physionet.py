"""Augmented covariances on real PhysioNet epochs (subject 1, runs 4, 8, 12; 22 channels).

Protocol of the decoding check: 8–35 Hz, epochs 0–3 s, no re-referencing, ACM order 4 lag 4
(fixed a priori, not tuned), tangent space + linear SVM, 5-fold stratified within-session CV,
seed 0; every fitted part sees the training fold only.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from pyriemann.estimation import Covariances

from brainmill.decoding import run_decoder
from brainmill.features.augmented import LaggedProducts, augmented_covariances, delay_embed

pytestmark = pytest.mark.realdata
ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def _accuracy_benchmark():
    """``benchmarks/acm_accuracy.py`` loaded from its path (its protocol is the one tested)."""
    spec = importlib.util.spec_from_file_location("brainmill_benchmark_acm_accuracy",
                                                  ROOT / "benchmarks" / "acm_accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def physionet_signals(shared_data):
    from brainmill.datasets import load_recording
    from brainmill.features.epochs import epoch_signals
    from brainmill.preprocessing import preprocess

    ds = _accuracy_benchmark().dataset("lr", shared_data)
    epochs = preprocess(load_recording(ds, "1", seed=0), ds.preprocessing).epochs
    return epoch_signals(epochs, ds.features.signals, ds.class_names)


def test_real_epochs_shape(physionet_signals):
    assert physionet_signals.X.shape == (45, 22, 481)


@pytest.mark.parametrize("order,lag", [(1, 1), (4, 4), (8, 4), (10, 10)])
def test_fast_path_is_exact_on_real_epochs(physionet_signals, order, lag):
    X = physionet_signals.X
    ref = Covariances("cov").fit_transform(delay_embed(X, order, lag))
    out = augmented_covariances(X, order, lag)
    assert np.max(np.abs(out - ref).max(axis=(1, 2)) / np.abs(ref).max(axis=(1, 2))) <= 1e-10


def test_grid_on_real_epochs_matches_each_point(physionet_signals):
    X = physionet_signals.X[:10]
    products = LaggedProducts.for_grid(X, [2, 6], [3, 7])
    for order, lag, covs in products.iter_grid([2, 6], [3, 7]):
        ref = Covariances("cov").fit_transform(delay_embed(X, order, lag))
        np.testing.assert_allclose(covs, ref, rtol=1e-9, atol=1e-10 * np.abs(ref).max())


def test_fixed_acm_decodes_left_vs_right_above_chance(physionet_signals):
    from brainmill.config import EvaluationConfig

    metrics, _ = run_decoder(
        "acm_ts_svm", {"selection": "fixed", "order": 4, "lag": 4, "Cs": [1.0],
                       "kernels": ["linear"]},
        physionet_signals, EvaluationConfig(protocols=["within_session"], n_folds=5), 0,
        subject="1", dataset="physionet")
    summary = metrics["protocols"]["within_session"]["summary"]
    # 45 trials: the binomial p<0.05 chance threshold is about 0.64 accuracy
    assert summary["roc_auc"]["mean"] >= 0.65


def test_accuracy_benchmark_seeds_split_over_runs_give_the_same_folds(shared_data, tmp_path):
    # BENCHMARKS.md combines seeds run in separate processes (--first-seed): a seed must give
    # the same per-fold choices and scores whichever run it is part of
    import json

    main = _accuracy_benchmark().main
    common = ["--data", str(shared_data), "--tasks", "lr", "--orders", "1", "2", "--lags", "2",
              "--skip", "ACM+TS+SVM (takens)"]
    assert main([*common, "--seeds", "2", "--json", str(tmp_path / "both.json")]) == 0
    assert main([*common, "--seeds", "1", "--first-seed", "1",
                 "--json", str(tmp_path / "second.json")]) == 0
    both = json.loads((tmp_path / "both.json").read_text())
    second = json.loads((tmp_path / "second.json").read_text())
    assert both["seeds"] == [0, 1] and second["seeds"] == [1]
    for label, row in second["tasks"]["lr"]["pipelines"].items():
        whole = both["tasks"]["lr"]["pipelines"][label]
        assert row["per_seed_roc_auc"] == whole["per_seed_roc_auc"][1:], label
        assert row["per_seed_accuracy"] == whole["per_seed_accuracy"][1:], label
        assert row["chosen_order_lag"] == whole["chosen_order_lag"][1:], label
        assert row["roc_auc_sd"] is None  # one seed: no spread
    grid = second["tasks"]["lr"]["pipelines"]["ACM+TS+SVM (grid)"]["chosen_order_lag"]
    assert len(grid) == 1 and len(grid[0]) == 5  # one list of 5 outer folds per seed
