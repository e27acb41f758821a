"""Tests of brainmill.decoding on simulated covariance matrices."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from brainmill.acm import ACMClassifier
from brainmill.config import CspLdaConfig, EvaluationConfig, TsLrConfig
from brainmill.decoding import DECODERS, make_decoder, run_decoder
from brainmill.errors import ConfigError, DataError
from brainmill.io import FeatureSet

CLASSES = ["left_hand", "right_hand", "feet"]


def simulated_features(
    n_per_class=30, n_classes=2, sessions=("1", "2"), n_channels=4, n_times=100, seed=0
) -> FeatureSet:
    """Sample covariances of Gaussian trials; class k > 0 has 3x the variance in source k-1.

    A fixed random mixing matrix spreads the sources over all channels, so no single channel's
    variance gives the class away and the decoders must learn a spatial filter.
    """
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(n_channels, n_channels)) + 2 * np.eye(n_channels)
    covs, y, session, run = [], [], [], []
    for sess in sessions:
        for k in range(n_classes):
            scale = np.ones(n_channels)
            if k > 0:
                scale[k - 1] = np.sqrt(3.0)
            for i in range(n_per_class):
                sources = rng.normal(size=(n_channels, n_times)) * scale[:, None]
                x = mixing @ sources
                covs.append(x @ x.T / n_times)
                y.append(k)
                session.append(sess)
                run.append(f"{sess}{i % 3}")
    return FeatureSet(
        X=np.array(covs), y=np.array(y), classes=CLASSES[:n_classes],
        session=np.array(session), run=np.array(run), meta={},
    )


def _mean_acc(metrics, protocol="within_session"):
    return metrics["protocols"][protocol]["summary"]["accuracy"]["mean"]


def test_registry_builds_named_pipelines():
    ts = make_decoder("ts_lr", TsLrConfig(metric="logeuclid", C=0.5), seed=3)
    assert isinstance(ts, Pipeline) and list(ts.named_steps) == ["tangentspace", "logreg"]
    assert ts.named_steps["tangentspace"].metric == "logeuclid"
    assert ts.named_steps["logreg"].C == 0.5 and ts.named_steps["logreg"].max_iter == 1000
    csp = make_decoder("csp_lda", {"n_components": 2}, seed=3)
    assert list(csp.named_steps) == ["csp", "lda"]
    assert csp.named_steps["csp"].nfilter == 2 and csp.named_steps["csp"].log is True
    assert set(DECODERS) == {"ts_lr", "csp_lda", "acm_ts_svm", "acm_mdm", "bandpower_lr",
                             "token_transformer", "diffusion_lft"}
    acm = make_decoder("acm_ts_svm", {"selection": "fixed", "order": 3, "Cs": [2.0]}, seed=5)
    assert isinstance(acm, ACMClassifier)
    assert (acm.classifier, acm.selection, acm.order, acm.Cs, acm.random_state) == (
        "ts_svm", "fixed", 3, (2.0,), 5)
    assert acm.scoring is None  # "auto": roc_auc for two classes, accuracy otherwise
    assert make_decoder("acm_mdm", None, seed=0).classifier == "mdm"
    assert make_decoder("token_transformer", {"class_weight": "balanced"},
                        seed=0).class_weight == "balanced"
    assert make_decoder("diffusion_lft", {"class_weight": {"left": 2.0}},
                        seed=0).class_weight == {"left": 2.0}
    assert make_decoder("token_transformer", None, seed=0).class_weight is None
    with pytest.raises(ValueError, match="class_weight"):
        make_decoder("token_transformer", {"class_weight": "balance"}, seed=0)


def test_unknown_decoder_lists_valid_names():
    with pytest.raises(ConfigError,
                       match="unknown decoder 'svm'.*acm_mdm, acm_ts_svm, bandpower_lr, csp_lda"):
        run_decoder("svm", None, simulated_features(n_per_class=5), EvaluationConfig(), 0,
                    subject="1", dataset="d")


@pytest.mark.parametrize(
    ("name", "params"), [("ts_lr", TsLrConfig()), ("csp_lda", CspLdaConfig(n_components=4))]
)
def test_decoders_beat_chance_on_informative_data_and_not_on_shuffled(name, params):
    features = simulated_features(n_per_class=30)
    metrics, _ = run_decoder(name, params, features, EvaluationConfig(), 42,
                             subject="1", dataset="sim")
    for protocol in ("within_session", "cross_session"):
        acc = _mean_acc(metrics, protocol)
        assert acc > 0.9, (protocol, acc)
        assert acc > metrics["protocols"][protocol]["chance_threshold_p05"]
    assert metrics["protocols"]["within_session"]["summary"]["roc_auc"]["mean"] > 0.9

    shuffled = simulated_features(n_per_class=30)
    shuffled.y = np.random.default_rng(1).permutation(shuffled.y)
    metrics, _ = run_decoder(name, params, shuffled, EvaluationConfig(), 42,
                             subject="1", dataset="sim")
    for protocol in ("within_session", "cross_session"):
        assert _mean_acc(metrics, protocol) < 0.7


def test_csp_lda_handles_three_classes():
    features = simulated_features(n_per_class=20, n_classes=3)
    metrics, preds = run_decoder("csp_lda", CspLdaConfig(), features,
                                 EvaluationConfig(protocols=["within_session"]), 0,
                                 subject="1", dataset="sim")
    within = metrics["protocols"]["within_session"]
    assert within["summary"]["accuracy"]["mean"] > 0.7  # chance is 1/3
    assert within["summary"]["roc_auc"] is None
    assert np.array(within["confusion_matrix"]).shape == (3, 3)
    assert [c for c in preds.columns if c.startswith("proba_")] == [
        "proba_left_hand", "proba_right_hand", "proba_feet"]


def test_run_decoder_metrics_and_predictions_layout():
    features = simulated_features(n_per_class=10)
    metrics, preds = run_decoder("ts_lr", TsLrConfig(C=2.0), features, EvaluationConfig(), 7,
                                 subject="3", dataset="sim")
    assert {k: metrics[k] for k in ("dataset", "subject", "decoder", "classes", "n_epochs",
                                    "seed")} == {
        "dataset": "sim", "subject": "3", "decoder": "ts_lr",
        "classes": ["left_hand", "right_hand"], "n_epochs": 40, "seed": 7}
    assert metrics["params"] == {"feature": "covariance", "metric": "riemann", "C": 2.0}
    assert set(metrics["versions"]) == {"brainmill", "sklearn", "pyriemann", "numpy"}
    within = metrics["protocols"]["within_session"]
    assert set(within["folds"][0]) == {"fold", "test_session", "train_sessions", "n_train",
                                       "n_test", "accuracy", "balanced_accuracy", "kappa",
                                       "roc_auc"}
    assert set(within["summary"]) == {"accuracy", "balanced_accuracy", "kappa", "roc_auc"}
    assert "nothing fitted" in metrics["protocols"]["cross_session"]["description"]
    json.dumps(metrics, allow_nan=False)  # strict JSON: no NaN anywhere
    assert len(preds) == 2 * 40  # every epoch once per protocol
    assert (preds.groupby("protocol").epoch.nunique() == 40).all()
    np.testing.assert_allclose(preds[["proba_left_hand", "proba_right_hand"]].sum(axis=1), 1)
    assert (preds.session == features.session[preds.epoch]).all()
    assert (preds.run == features.run[preds.epoch]).all()


def test_same_seed_identical_results():
    features = simulated_features(n_per_class=10)
    runs = [run_decoder("ts_lr", None, features, EvaluationConfig(), seed, subject="1",
                        dataset="sim") for seed in (5, 5, 6)]
    assert runs[0][0] == runs[1][0]
    assert runs[0][1].equals(runs[1][1])
    folds = [r[1].query("protocol == 'within_session'").sort_values("epoch").fold.to_numpy()
             for r in runs]
    assert not np.array_equal(folds[0], folds[2])


def test_too_few_trials_error_names_subject():
    features = simulated_features(n_per_class=4)
    with pytest.raises(DataError, match=r"subject 9: class 'left_hand' has 4 trial\(s\)"):
        run_decoder("csp_lda", None, features, EvaluationConfig(n_folds=5), 0,
                    subject="9", dataset="sim")


def simulated_signals(n_per_class=16, seed=0) -> FeatureSet:
    """Two-class epoch signals; class 1 carries a lag-3 autoregressive rhythm on channel 0."""
    rng = np.random.default_rng(seed)
    X, y, session = [], [], []
    for sess in ("1", "2"):
        for k in (0, 1):
            for _ in range(n_per_class):
                x = rng.normal(size=(3, 120))
                if k:
                    x[0, 3:] += 0.7 * x[0, :-3]
                X.append(x)
                y.append(k)
                session.append(sess)
    return FeatureSet(X=np.array(X), y=np.array(y), classes=CLASSES[:2],
                      session=np.array(session), run=np.array(session), meta={})


def test_acm_decoder_records_per_fold_choice_and_auc_from_decision_values():
    params = {"orders": [1, 2], "lags": [1, 3], "Cs": [1.0], "kernels": ["linear"]}
    metrics, predictions = run_decoder(
        "acm_ts_svm", params, simulated_signals(), EvaluationConfig(n_folds=4), 0,
        subject="7", dataset="d",
    )
    for protocol in ("within_session", "cross_session"):
        folds = metrics["protocols"][protocol]["folds"]
        for fold in folds:
            info = fold["fit_info"]
            assert info["orders"] == [1, 2] and info["lags"] == [1, 3]
            assert info["n_train"] == fold["n_train"]  # chosen on the training fold only
            assert fold["roc_auc"] is not None  # from the SVM's decision values
        assert metrics["protocols"][protocol]["summary"]["roc_auc"]["mean"] > 0.8
    assert "decision" in predictions.columns
    assert predictions[[c for c in predictions if c.startswith("proba_")]].isna().all().all()


# --------------------------------------------------------------------------- bandpower_lr


def simulated_bandpower(n_runs=40, per_run=4, seed=0) -> FeatureSet:
    """log band powers of 3 classes on one channel x 5 bands, windows grouped in runs.

    Class k raises band k by 0.4 decades; every run adds its own offset to every band (the
    recording), so windows of a run are alike and only grouped folds are honest.
    """
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_runs) % 3, per_run)
    run = np.repeat([f"r{i:02d}" for i in range(n_runs)], per_run)
    X = rng.normal(0, 0.15, size=(len(y), 5)) + np.repeat(rng.normal(0, 0.2, (n_runs, 5)),
                                                           per_run, axis=0)
    X[np.arange(len(y)), y] += 0.4
    return FeatureSet(X=X, y=y, classes=CLASSES, session=np.full(len(y), "1"), run=run,
                      meta={})


def test_bandpower_lr_pipeline_and_three_classes():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from brainmill.config import BandpowerLrConfig

    pipe = make_decoder("bandpower_lr", BandpowerLrConfig(C=0.3), seed=4)
    assert list(pipe.named_steps) == ["scale", "logreg"]
    assert isinstance(pipe.named_steps["scale"], StandardScaler)
    lr = pipe.named_steps["logreg"]
    assert isinstance(lr, LogisticRegression) and (lr.C, lr.random_state) == (0.3, 4)
    assert lr.max_iter >= 1000

    features = simulated_bandpower()
    grouped = EvaluationConfig(protocols=["grouped_kfold"], n_folds=5)
    metrics, preds = run_decoder("bandpower_lr", {"C": 1.0}, features, grouped, 0,
                                 subject="all", dataset="sim")
    res = metrics["protocols"]["grouped_kfold"]
    assert metrics["params"] == {"feature": "bandpower", "C": 1.0}
    assert res["summary"]["accuracy"]["mean"] > 0.75  # chance is 1/3
    assert np.array(res["confusion_matrix"]).shape == (3, 3)
    # multinomial: probabilities over the three classes sum to one
    np.testing.assert_allclose(preds[[f"proba_{c}" for c in CLASSES]].sum(axis=1), 1.0)

    features.y = np.repeat(np.random.default_rng(2).permutation(features.y[::4]), 4)
    metrics, _ = run_decoder("bandpower_lr", None, features, grouped, 0, subject="all",
                             dataset="sim")
    assert metrics["protocols"]["grouped_kfold"]["summary"]["accuracy"]["mean"] < 0.5
