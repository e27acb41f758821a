"""Token Transformer classifiers (scikit-learn API) and class-discriminative tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone

from brainmill.evaluation import cross_validate
from brainmill.token_decoding import (
    TokenPipelineClassifier,
    TokenTransformerClassifier,
    discriminative_tokens,
)

MODEL = {"n_heads": 2, "depth": 1, "dropout": 0.0, "dim": 16}
TRAIN = {"max_epochs": 25, "batch_size": 16, "lr": 3e-3, "val_fraction": 0.2, "patience": 25,
         "progress": False}


def token_data(n=80, seed=0):
    """Class 0 draws codes 0-3, class 1 codes 4-7 on channel 1; channel 0 is noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    ids = rng.integers(0, 8, size=(n, 2, 4))
    ids[:, 1] = rng.integers(0, 4, size=(n, 4)) + 4 * y[:, None]
    return ids, y


def test_classifier_learns_tokens_and_follows_sklearn_conventions():
    ids, y = token_data(160)
    labels = np.where(y == 0, "rest", "move")
    clf = TokenTransformerClassifier(n_codes=8, model=MODEL, training=TRAIN, seed=1)
    assert clone(clf).get_params()["seed"] == 1
    clf.fit(ids[::2], labels[::2])
    assert list(clf.classes_) == ["move", "rest"]
    proba = clf.predict_proba(ids[1::2])
    assert proba.shape == (80, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    assert (clf.predict(ids[1::2]) == labels[1::2]).mean() > 0.85  # chance: 0.5
    info = clf.fit_info_["training"]
    assert info["n_val"] == 16 and info["n_train"] == 64 and 1 <= info["best_epoch"] <= 25
    assert "val_kappa" in info["history"][0]
    # the epoch kept is the one with the best validation kappa
    kappas = [h["val_kappa"] for h in info["history"]]
    assert kappas[info["best_epoch"] - 1] == max(kappas)


def test_codebook_sets_width_and_embedding():
    ids, y = token_data(40)
    codebook = np.random.default_rng(0).standard_normal((8, 12)).astype(np.float32)
    clf = TokenTransformerClassifier(codebook=codebook, model={"n_heads": 2, "depth": 1},
                                     training={"max_epochs": 1, "progress": False}).fit(ids, y)
    assert clf.model_.config.dim == 12 and clf.model_.config.n_codes == 8
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 8\)"):
        clf.predict_proba(ids + 8)


def test_pretraining_runs_on_tokens_only():
    ids, y = token_data(40)
    clf = TokenTransformerClassifier(
        n_codes=8, model=MODEL, pretraining={"max_epochs": 2, "progress": False},
        training={"max_epochs": 1, "progress": False}).fit(ids, y)
    pre = clf.fit_info_["pretraining"]
    assert len(pre["history"]) == 2 and "mtp_loss" in pre["history"][0]


@pytest.mark.parametrize("class_weight, expected", [(None, 0.2), ("balanced", 0.5),
                                                     ({"minority": 4.0}, 0.5)])
def test_class_weight_moves_the_learned_prior(class_weight, expected):
    """Tokens carry no label information, 80 % of labels are "majority": the model can only
    learn the prior, 0.2 for "minority" unweighted and 0.5 once the classes weigh the same."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 8, size=(100, 2, 4))
    labels = np.array(["majority"] * 80 + ["minority"] * 20)
    clf = TokenTransformerClassifier(
        n_codes=8, model=MODEL, class_weight=class_weight, seed=0,
        training={"max_epochs": 5, "batch_size": 20, "lr": 1e-3, "val_fraction": 0.0,
                  "progress": False}).fit(ids, labels)
    minority = list(clf.classes_).index("minority")
    p = clf.predict_proba(rng.integers(0, 8, size=(400, 2, 4)))[:, minority]
    assert abs(p.mean() - expected) < 0.08


def test_class_weights_follow_sklearn():
    from sklearn.utils.class_weight import compute_class_weight

    from brainmill.classifier_training import class_weights

    y = np.array([0, 0, 0, 1, 2, 2])
    np.testing.assert_allclose(class_weights(y, 3, "balanced"),
                               compute_class_weight("balanced", classes=np.arange(3), y=y))
    np.testing.assert_array_equal(class_weights(y, 3, {2: 0.5}), [1.0, 1.0, 0.5])
    assert class_weights(y, 3, None) is None
    with pytest.raises(ValueError, match=r"classes \[3\] have no training example"):
        class_weights(y, 4, "balanced")
    with pytest.raises(ValueError, match="'balanced', a dict or None"):
        class_weights(y, 3, "auto")
    with pytest.raises(ValueError, match="class 5"):
        class_weights(y, 3, {5: 1.0})
    ids, labels = token_data(20)
    with pytest.raises(ValueError, match=r"labels \['cat'\] are not among"):
        TokenTransformerClassifier(n_codes=8, class_weight={"cat": 2.0},
                                   training={"max_epochs": 1, "progress": False}).fit(ids, labels)


def test_bad_input():
    ids, y = token_data(20)
    with pytest.raises(ValueError, match="monitor"):
        TokenTransformerClassifier(monitor="auc").fit(ids, y)
    with pytest.raises(ValueError, match="two classes"):
        TokenTransformerClassifier(n_codes=8).fit(ids, np.zeros(20))
    with pytest.raises(ValueError, match=r"\(n_epochs, n_channels, n_frames\)"):
        TokenTransformerClassifier(n_codes=8).fit(ids[:, 0], y)


def test_pipeline_fits_the_tokenizer_on_the_training_fold_only():
    rng = np.random.default_rng(0)
    n, t = 48, np.arange(300) / 100.0
    y = np.repeat([0, 1], n // 2)
    X = np.sin(2 * np.pi * np.where(y == 0, 8.0, 30.0)[:, None, None] * t) * np.ones((1, 2, 1))
    X = X + 0.3 * rng.standard_normal(X.shape)
    make = lambda: TokenPipelineClassifier(  # noqa: E731
        sfreq=100.0,
        tokenizer={"dim": 16, "n_heads": 2, "freq_depth": 1, "time_depth": 1,
                   "decoder_depth": 1, "n_codes": 16, "norm_groups": 4,
                   "dead_code_threshold": 0.5},
        tokenizer_training={"max_epochs": 3, "batch_size": 32, "progress": False},
        model={"n_heads": 2, "depth": 1, "dropout": 0.0}, training=TRAIN, seed=0)
    results, predictions = cross_validate(make, X, y, np.full(n, "1"), np.full(n, "1"),
                                          ["within_session"], 3, True, 0, classes=["a", "b"])
    res = results["within_session"]
    for fold in res["folds"]:
        # the tokenizer's training windows are the training fold's channels, nothing more
        tok = fold["fit_info"]["tokenizer"]
        assert tok["n_train"] == fold["n_train"] * 2 and tok["n_val"] is None
    assert res["summary"]["accuracy"]["mean"] > 0.8


def test_discriminative_tokens_rank_the_planted_code_first():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 50)
    ids = rng.integers(0, 10, size=(100, 2, 6))
    ids[y == 1, 0, :2] = 7  # code 7 over-represented in class 1
    rows = discriminative_tokens(ids, y, ["a", "b"], 10, top=3)
    b_rows = [r for r in rows if r["class"] == "b"]
    assert b_rows[0]["token"] == 7 and b_rows[0]["z"] > 5
    assert b_rows[0]["share_in_class"] > b_rows[0]["share_elsewhere"]
    assert all(r["token"] != 7 for r in rows if r["class"] == "a")
    assert len(b_rows) == 3 and b_rows[0]["z"] >= b_rows[1]["z"] >= b_rows[2]["z"]


def test_predict_proba_feeds_the_batches_to_the_networks_device(monkeypatch):
    """The inputs follow the network's parameters; the probabilities come back on the CPU."""
    from brainmill.classifier_training import predict_proba

    moved = []
    real_to = torch.Tensor.to

    def spy(self, *args, **kwargs):
        moved.append(args[0] if args else kwargs.get("device"))
        return real_to(self, *args, **kwargs)

    net = torch.nn.Linear(3, 2)
    monkeypatch.setattr(torch.Tensor, "to", spy)
    proba = predict_proba(net, torch.randn(5, 3), batch_size=2)
    assert proba.shape == (5, 2) and proba.dtype == np.float64
    assert moved.count(next(net.parameters()).device) == 3  # one move per batch


def test_groups_keep_each_recording_whole_in_the_validation_split(carved_splits,
                                                                   whole_groups):
    """Windows of one recording are near duplicates: with ``groups`` the early-stopping
    split holds whole recordings (tokenizer and Transformer); without, it splits them."""
    calls = carved_splits
    ids, y = token_data(n=80)
    recording = np.arange(80) // 4  # 20 recordings of 4 windows, one class each
    TokenTransformerClassifier(n_codes=8, model=MODEL, training={**TRAIN, "max_epochs": 1},
                               seed=1).fit(ids, y, groups=recording)
    (groups, val), = calls
    np.testing.assert_array_equal(groups, recording)
    assert whole_groups(recording, val) and 0 < len(val) < 80
    calls.clear()
    TokenTransformerClassifier(n_codes=8, model=MODEL, training={**TRAIN, "max_epochs": 1},
                               seed=1).fit(ids, y)
    (groups, val), = calls
    assert groups is None and not whole_groups(recording, val)  # the default splits them

    rng = np.random.default_rng(0)
    X = rng.standard_normal((24, 2, 300))
    calls.clear()
    TokenPipelineClassifier(
        sfreq=100.0,
        tokenizer={"dim": 16, "n_heads": 2, "freq_depth": 1, "time_depth": 1,
                   "decoder_depth": 1, "n_codes": 16, "norm_groups": 4},
        tokenizer_training={"max_epochs": 1, "batch_size": 32, "val_fraction": 0.25,
                            "progress": False},
        model={"n_heads": 2, "depth": 1}, training={**TRAIN, "max_epochs": 1}, seed=0,
    ).fit(X, np.repeat([0, 1], 12), groups=np.arange(24) // 3)
    (tok_groups, tok_val), (clf_groups, clf_val) = calls
    # tokenizer rows are (epoch, channel): each channel carries its epoch's recording
    np.testing.assert_array_equal(tok_groups, np.repeat(np.arange(24) // 3, 2))
    assert whole_groups(tok_groups, tok_val)
    np.testing.assert_array_equal(clf_groups, np.arange(24) // 3)
    assert whole_groups(clf_groups, clf_val)
    # a wrong length is an error even when no validation split is carved
    with pytest.raises(ValueError, match="one group label per epoch"):
        TokenTransformerClassifier(n_codes=8, model=MODEL,
                                   training={"max_epochs": 1, "progress": False}
                                   ).fit(ids, y, groups=np.zeros(3))
