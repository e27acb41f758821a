"""The ACM decoders through the Snakemake DAG: signals feature, per-fold choice, reports."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


@pytest.fixture(scope="module")
def acm_run(tmp_path_factory, snakemake_run, tiny_config):
    workdir = tmp_path_factory.mktemp("acm")
    config = tiny_config(
        workdir, subjects=("1",),
        features={"covariance": {"estimator": "oas"}, "signals": {}},
        decoders={"ts_lr": {}, "acm_ts_svm": {"orders": [1, 2], "lags": [2, 4], "Cs": [1.0],
                                              "kernels": ["linear"], "estimator": "oas"},
                  "acm_mdm": {"selection": "fixed", "order": 2, "lag": 3, "estimator": "oas"}},
    )
    proc = snakemake_run(workdir, config)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return workdir


def test_signals_feature_holds_the_epochs(acm_run):
    import mne

    base = acm_run / "results" / "tiny" / "sub-1"
    with np.load(base / "features" / "signals.npz", allow_pickle=False) as f:
        X = f["X"]
    epochs = mne.read_epochs(base / "epochs-epo.fif", verbose="error")
    np.testing.assert_allclose(X, epochs.get_data(), rtol=1e-6)


def test_acm_metrics_record_each_folds_choice(acm_run):
    base = acm_run / "results" / "tiny" / "sub-1" / "decoders"
    grid = json.loads((base / "acm_ts_svm" / "metrics.json").read_text())
    for res in grid["protocols"].values():
        for fold in res["folds"]:
            info = fold["fit_info"]
            assert (info["order"], info["lag"]) in {(1, 2), (1, 4), (2, 2), (2, 4)}
            assert np.array(info["inner_scores"], dtype=float).shape == (2, 2)
            assert info["n_train"] == fold["n_train"]
    assert len(grid["tangent_projection"]["points"]) == grid["n_epochs"]
    fixed = json.loads((base / "acm_mdm" / "metrics.json").read_text())
    fold = fixed["protocols"]["within_session"]["folds"][0]
    assert (fold["fit_info"]["order"], fold["fit_info"]["lag"]) == (2, 3)
    assert fold["roc_auc"] is not None  # MDM's probabilities


def test_reports_show_acm_sections_and_comparison(acm_run):
    html = (acm_run / "reports" / "tiny" / "sub-1.html").read_text()
    assert "acm_ts_svm: order × lag (within_session)" in html
    assert "acm_ts_svm: choice per outer fold" in html
    assert "acm_mdm: tangent vectors by class" in html
    index = (acm_run / "reports" / "tiny" / "index.html").read_text()
    assert "ACM versus the classical decoders" in index
    scores = pd.read_csv(acm_run / "results" / "tiny" / "scores.csv")
    assert set(scores["decoder"]) == {"ts_lr", "csp_lda", "acm_ts_svm", "acm_mdm"}
