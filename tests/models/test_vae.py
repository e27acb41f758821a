"""DemoVAE: demographic encoding, network shapes, every loss term against numpy, frozen
guidance predictors against scikit-learn, decorrelation, conditional sampling, reconstruction,
persistence, determinism, variational mode and resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, Ridge

import brainmill.models.vae as vae_module
from brainmill.errors import DataError
from brainmill.models import DemoVAE, DemoVAENet, DemoVAENetConfig, load_model, save_model
from brainmill.models.vae import (
    DEFAULT_LOSS_WEIGHTS,
    DemographicEncoder,
    GuidancePredictors,
    covariance_loss,
    decorrelation_loss,
    guidance_loss,
    kl_loss,
    mean_loss,
    rmse,
)
from brainmill.training import CHECKPOINT_NAME

# 120 subjects × 120 edges, 3 batches per epoch: a fit takes about 3 s on one core
TINY = dict(latent_dim=4, hidden=32)
TRAIN = dict(max_epochs=80, batch_size=40, progress=False)


def synthetic(n: int = 120, n_features: int = 120, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """Connectivity-scale features (std ~0.13) with strong age and sex effects.

    ``X = 0.05·F·M + 0.08·age_z·m_age + 0.08·[M]·m_sex + 0.04·[PITT]·m_site + 0.02·noise``:
    three demographic-free factors ``F`` plus a fixed edge map per demographic.
    """
    rng = np.random.default_rng(seed)
    age = rng.uniform(8, 30, n)
    sex = rng.choice(["F", "M"], n)
    site = rng.choice(["NYU", "PITT"], n)
    maps = rng.standard_normal((6, n_features))
    factors = rng.standard_normal((n, 3))
    age_z = (age - 19.0) / 6.35
    X = (0.05 * factors @ maps[:3] + 0.08 * age_z[:, None] * maps[3]
         + 0.08 * (sex == "M")[:, None] * maps[4] + 0.04 * (site == "PITT")[:, None] * maps[5]
         + 0.02 * rng.standard_normal((n, n_features)))
    index = pd.Index([f"sub{i:03d}" for i in range(n)], name="subject")
    return X, pd.DataFrame({"age": age, "sex": sex, "site": site}, index=index)


def max_abs_corr(Z: np.ndarray, values: np.ndarray) -> float:
    """max over latent dims of |Pearson r(Z[:, j], values)|."""
    Zc = Z - Z.mean(0)
    v = values - values.mean()
    r = Zc.T @ v / np.sqrt((Zc ** 2).sum(0) * (v ** 2).sum())
    return float(np.abs(r).max())


def rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a))))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: one intra-op thread is fastest, and on shared cores a second OpenMP thread
    waiting at every op's barrier makes the fits ~30x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    return synthetic()


@pytest.fixture(scope="module")
def model(data):
    """The default losses (decorrelation weight 10, guidance on)."""
    X, df = data
    return DemoVAE(**TINY, training=TRAIN).fit(X, df)


@pytest.fixture(scope="module")
def model_no_decor(data):
    X, df = data
    return DemoVAE(**TINY, training=TRAIN, loss_weights={"decor": 0.0}).fit(X, df)


# ------------------------------------------------------------------------------ demographics


def test_encoder_standardises_one_hots_and_round_trips():
    df = pd.DataFrame({"age": [10.0, 20.0, 30.0, 40.0], "sex": ["M", "F", "M", "F"],
                       "site": ["PITT", "NYU", "UCLA", "NYU"]}, index=["a", "b", "c", "d"])
    enc = DemographicEncoder().fit(df, ["age"], ["sex", "site"])
    assert enc.columns_ == ["age", "sex=F", "sex=M", "site=NYU", "site=PITT", "site=UCLA"]
    assert enc.n_features_ == 6
    assert [(n, k, (s.start, s.stop)) for n, k, s in enc.blocks_] == [
        ("age", "continuous", (0, 1)), ("sex", "categorical", (1, 3)),
        ("site", "categorical", (3, 6))]
    D = enc.transform(df)
    z = (df.age.to_numpy() - 25.0) / np.std([10, 20, 30, 40])  # population std, 11.18
    np.testing.assert_allclose(D[:, 0], z)
    np.testing.assert_array_equal(D[:, 1:], [[0, 1, 0, 1, 0], [1, 0, 1, 0, 0],
                                             [0, 1, 0, 0, 1], [1, 0, 1, 0, 0]])
    # a binary column gives two indicator columns that sum to one (as the reference)
    np.testing.assert_array_equal(D[:, 1] + D[:, 2], 1.0)
    back = enc.inverse_transform(D)
    np.testing.assert_allclose(back.age, df.age)
    assert back.sex.tolist() == df.sex.tolist() and back.site.tolist() == df.site.tolist()
    # the fitted state survives JSON and rebuilds the same encoder; column order does not matter
    clone_enc = DemographicEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    np.testing.assert_array_equal(clone_enc.transform(df[["site", "sex", "age"]]), D)


def test_encoder_errors_name_column_level_and_subject():
    df = pd.DataFrame({"age": [10.0, 20.0, 30.0], "sex": ["M", "F", "M"]},
                      index=["s1", "s2", "s3"])
    enc = DemographicEncoder().fit(df, ["age"], ["sex"])
    new = pd.DataFrame({"age": [15.0, 16.0], "sex": ["F", "X"]}, index=["s8", "s9"])
    with pytest.raises(DataError, match=r"'sex' has level\(s\) \['X'\].*subjects s9.*"
                                        r"known levels \['F', 'M'\]"):
        enc.transform(new)
    with pytest.raises(DataError, match=r"no column 'sex'.*\['age'\]"):
        enc.transform(df[["age"]])
    with pytest.raises(DataError, match=r"'age' is missing or not a finite number for subjects "
                                        r"s2"):
        enc.transform(df.assign(age=[1.0, np.nan, 3.0]))
    with pytest.raises(DataError, match=r"'sex' is missing for subjects s3"):
        enc.transform(df.assign(sex=["M", "F", None]))
    with pytest.raises(DataError, match="'age' is constant"):
        DemographicEncoder().fit(df.assign(age=5.0), ["age"], [])
    with pytest.raises(ValueError, match="named twice"):
        DemographicEncoder().fit(df, ["age"], ["age"])
    with pytest.raises(ValueError, match="not fitted"):
        DemographicEncoder().transform(df)


# ------------------------------------------------------------------------------- network


@pytest.mark.parametrize("variational", [False, True])
def test_network_shapes_and_reparameterisation(variational):
    torch.manual_seed(0)
    cfg = DemoVAENetConfig(n_features=12, n_demographics=3, latent_dim=4, hidden=8,
                           variational=variational, norm="layernorm")
    net = DemoVAENet(cfg)
    x, d = torch.randn(5, 12), torch.randn(5, 3)
    assert net.encoder.fc2.out_features == (8 if variational else 4)
    assert net.decoder.fc1.in_features == 4 + 3  # the demographics enter the decoder only
    assert net.encoder.fc1.in_features == 12
    out = net.eval()(x, d)
    assert out.reconstruction.shape == (5, 12) and out.z.shape == out.mu.shape == (5, 4)
    assert torch.equal(out.z, out.mu)  # eval: z is the mean
    torch.testing.assert_close(out.reconstruction, net.decode(out.mu, d))
    if not variational:
        assert out.logvar is None
        return
    assert out.logvar.shape == (5, 4)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a, b = net.train()(x, d, g1), net(x, d, g2)
    assert torch.equal(a.z, b.z) and not torch.equal(a.z, a.mu)
    # z = mu + exp(logvar / 2) * eps with eps the generator's next normals
    eps = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a.z, a.mu + torch.exp(0.5 * a.logvar) * eps)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="act must be 'relu' or one of"):
        DemoVAENetConfig(n_features=4, n_demographics=1, act="tanh")
    with pytest.raises(ValueError, match="norm must be None or one of"):
        DemoVAENetConfig(n_features=4, n_demographics=1, norm="batchnorm")
    with pytest.raises(ValueError, match="latent_dim must be a positive integer"):
        DemoVAENetConfig(n_features=4, n_demographics=1, latent_dim=0)


def test_bare_network_saves_through_save_model(tmp_path):
    torch.manual_seed(0)
    net = DemoVAENet(DemoVAENetConfig(n_features=6, n_demographics=2, latent_dim=3, hidden=5,
                                      act="gelu"))
    loaded = load_model(save_model(tmp_path / "net.pt", net))
    assert isinstance(loaded, DemoVAENet) and loaded.config == net.config
    x, d = torch.randn(4, 6), torch.randn(4, 2)
    assert torch.equal(loaded(x, d).reconstruction, net.eval()(x, d).reconstruction)


# ------------------------------------------------------------------------------------ losses


def test_loss_terms_equal_hand_computed_numpy_values():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 3))
    d = np.c_[rng.uniform(8, 30, 6), [1, 0, 1, 1, 0, 0]]
    x, x_hat = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    t = torch.from_numpy

    assert rmse(t(x), t(x_hat)).item() == pytest.approx(np.sqrt(((x - x_hat) ** 2).mean()))
    assert covariance_loss(t(z)).item() == pytest.approx(rms(z.T @ z - 6 * np.eye(3)))
    assert mean_loss(t(z)).item() == pytest.approx(rms(z.mean(0)))

    def p(col):  # (d̃ · z_j) / std(d, ddof=1) / (z_j · z_j), one value per latent
        dc = col - col.mean()
        return dc @ z / col.std(ddof=1) / (z * z).sum(0)

    expected = rms(p(d[:, 0])) + rms(p(d[:, 1]))
    assert decorrelation_loss(t(z), t(d)).item() == pytest.approx(expected)
    # the reference's own number for this case (demovae 0.0.6 decor_loss: one RMSE per column)
    assert rms(p(d[:, 0])) == pytest.approx(np.sqrt(np.mean(p(d[:, 0]) ** 2)))

    mu, logvar = rng.standard_normal((6, 3)), 0.3 * rng.standard_normal((6, 3))
    kl = 0.5 * (mu ** 2 + np.exp(logvar) - 1 - logvar).sum(1).mean()
    assert kl_loss(t(mu), t(logvar)).item() == pytest.approx(kl)
    assert kl_loss(torch.zeros(4, 2), torch.zeros(4, 2)).item() == 0.0  # the prior itself


def test_decorrelation_of_a_constant_column_is_zero_with_finite_gradients():
    # a batch where every subject has the same sex: 0/0 in the reference, 0 here
    z = torch.randn(8, 3, requires_grad=True)
    d = torch.cat([torch.randn(8, 1), torch.ones(8, 1)], dim=1)
    loss = decorrelation_loss(z, d)
    only_first = decorrelation_loss(z, d[:, :1])
    torch.testing.assert_close(loss, only_first)
    loss.backward()
    assert torch.isfinite(z.grad).all()
    # a single row (the last batch of an epoch can be one row) is finite too
    assert decorrelation_loss(z[:1], d[:1]).item() == pytest.approx(0.0, abs=1e-5)
    assert decorrelation_loss(z, d[:, :0]).item() == 0.0
    # rmse(a, a) has a zero, not NaN, gradient
    a = torch.randn(3, requires_grad=True)
    rmse(a, a.detach()).backward()
    assert torch.equal(a.grad, torch.zeros(3))


def test_guidance_predictors_are_frozen_sklearn_models():
    X, df = synthetic(n=80, n_features=30, seed=3)
    df = df.assign(site=np.random.default_rng(0).choice(["A", "B", "C"], 80))
    enc = DemographicEncoder().fit(df, ["age"], ["sex", "site"])
    D = enc.transform(df)
    guide = GuidancePredictors.fit(X, D, enc.blocks_)
    assert not list(guide.parameters())  # buffers only: the optimiser never moves them
    out = guide(torch.from_numpy(X)).double().numpy()

    ridge = Ridge(alpha=100).fit(X, D[:, 0])
    np.testing.assert_allclose(out[:, 0], ridge.predict(X), atol=1e-5)
    sex_lr = LogisticRegression(C=100, max_iter=1000).fit(X, D[:, 1:3].argmax(1))
    site_lr = LogisticRegression(C=100, max_iter=1000).fit(X, D[:, 3:6].argmax(1))

    def softmax(a):
        e = np.exp(a - a.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    np.testing.assert_allclose(softmax(out[:, 1:3]), sex_lr.predict_proba(X), atol=1e-4)
    np.testing.assert_allclose(softmax(out[:, 3:6]), site_lr.predict_proba(X), atol=1e-4)

    # the loss: RMSE of the standardised-age prediction + cross-entropy of sex and of site
    rng = np.random.default_rng(1)
    targets = enc.transform(df.sample(frac=1.0, random_state=1))  # other subjects' demographics
    xs = torch.from_numpy(X + 0.01 * rng.standard_normal(X.shape)).float().requires_grad_(True)
    loss = guidance_loss(guide(xs), torch.from_numpy(targets).float(), enc.blocks_)
    Xs = xs.detach().double().numpy()

    def ce(model, block):
        proba = model.predict_proba(Xs)
        return -np.log(proba[np.arange(len(Xs)), block.argmax(1)]).mean()

    expected = (rms(ridge.predict(Xs) - targets[:, 0]) + ce(sex_lr, targets[:, 1:3])
                + ce(site_lr, targets[:, 3:6]))
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    loss.backward()  # gradients reach the decoded samples
    assert xs.grad is not None and xs.grad.abs().sum() > 0


# ------------------------------------------------------------------- what training achieves


def test_decorrelation_removes_demographics_from_the_latents(data, model, model_no_decor):
    X, df = data
    age, male = df.age.to_numpy(), (df.sex == "M").to_numpy(float)
    plain, decor = model_no_decor.transform(X), model.transform(X)
    assert plain.shape == decor.shape == (120, 4) and decor.dtype == np.float32
    # without the term the encoder keeps age and sex (strong effects in X) ...
    assert max_abs_corr(plain, age) > 0.6 and max_abs_corr(plain, male) > 0.4
    # ... with it they are gone, at the batch-noise level
    assert max_abs_corr(decor, age) < 0.2 and max_abs_corr(decor, male) < 0.2
    assert model.history_[-1]["decor"] < 0.5 * model_no_decor.history_[-1]["decor"]
    # every term is logged per epoch, and the deterministic mode has no KL
    assert {"train_loss", "rec", "cov", "mean", "decor", "guide"} <= set(model.history_[-1])
    assert "kl" not in model.history_[-1] and len(model.history_) == TRAIN["max_epochs"]
    assert model.history_[-1]["rec"] < 0.5 * model.history_[0]["rec"]


def test_samples_carry_the_demographics_they_are_conditioned_on(data, model):
    X, df = data
    age_model = Ridge(alpha=1.0).fit(X, df.age)  # trained on real subjects only
    sex_model = LogisticRegression(C=1.0, max_iter=1000).fit(X, df.sex)
    rows = pd.DataFrame({"age": [10.0, 28.0, 10.0, 28.0], "sex": ["F", "F", "M", "M"],
                         "site": ["NYU", "NYU", "PITT", "PITT"]})
    S = model.sample(rows, n_per_row=50, seed=1)
    assert S.shape == (200, X.shape[1]) and S.dtype == np.float32
    age_pred = age_model.predict(S).reshape(4, 50).mean(1)  # blocks of 50 rows per row
    assert age_pred[1] - age_pred[0] > 9 and age_pred[3] - age_pred[2] > 9  # true gap: 18 y
    assert (sex_model.predict(S) == rows.sex.repeat(50).to_numpy()).mean() > 0.7
    p_male = sex_model.predict_proba(S)[:, list(sex_model.classes_).index("M")]
    assert p_male[100:].mean() - p_male[:100].mean() > 0.3
    # the same seed gives the same samples, another seed others
    assert np.array_equal(model.sample(rows, n_per_row=50, seed=1), S)
    assert not np.array_equal(model.sample(rows, n_per_row=50, seed=2), S)


def test_reconstruction_beats_the_mean_and_follows_counterfactual_demographics(data, model):
    X, df = data
    X_hat = model.reconstruct(X, df)
    assert X_hat.shape == X.shape
    assert rms(X_hat - X) < 0.8 * rms(X - X.mean(0))
    # harmonisation: the same subjects decoded 10 years older look older to a real-data model
    age_model = Ridge(alpha=1.0).fit(X, df.age)
    older = model.reconstruct(X, df.assign(age=df.age + 10.0))
    assert np.mean(age_model.predict(older) - age_model.predict(X_hat)) > 5.0


# ----------------------------------------------------------- persistence and reproducibility


def test_save_load_round_trip(tmp_path, data, model):
    X, df = data
    path = model.save(tmp_path / "vae" / "model.pt")
    assert path.is_file()
    assert torch.load(path, weights_only=True)["kind"] == "demovae"  # no pickled objects
    loaded = DemoVAE.load(path)
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
    np.testing.assert_array_equal(loaded.reconstruct(X, df), model.reconstruct(X, df))
    np.testing.assert_array_equal(loaded.sample(df.iloc[:3], seed=4), model.sample(df.iloc[:3],
                                                                                   seed=4))
    assert loaded.encoder_.to_dict() == model.encoder_.to_dict()
    assert loaded.history_ == model.history_
    assert loaded.get_params()["latent_dim"] == 4
    assert loaded.get_params()["training"]["max_epochs"] == TRAIN["max_epochs"]
    torch.save({"kind": "tfm_tokenizer"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a saved DemoVAE"):
        DemoVAE.load(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        DemoVAE.load(tmp_path / "missing.pt")


def small_fit(seed: int = 0, **kwargs) -> DemoVAE:
    X, df = synthetic(n=40, n_features=20, seed=5)
    params = dict(latent_dim=3, hidden=8, seed=seed,
                  training=dict(max_epochs=3, batch_size=16, progress=False))
    return DemoVAE(**{**params, **kwargs}).fit(X, df)


def test_same_seed_gives_bit_identical_latents():
    X, _ = synthetic(n=40, n_features=20, seed=5)
    a, b, c = small_fit(0).transform(X), small_fit(0).transform(X), small_fit(1).transform(X)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_variational_mode_trains_and_logs_kl():
    X, df = synthetic(n=40, n_features=20, seed=5)
    model = small_fit(variational=True, training=dict(max_epochs=30, batch_size=16,
                                                      progress=False))
    hist = model.history_
    assert all(np.isfinite(row["kl"]) and row["kl"] >= 0 for row in hist)
    assert hist[-1]["rec"] < hist[0]["rec"]
    # transform is the mean of q(z|x): deterministic, equal to the encoder's mu
    Z = model.transform(X)
    np.testing.assert_array_equal(Z, model.transform(X))
    mu, logvar = model.net_.encode(torch.from_numpy(X).float())
    np.testing.assert_array_equal(Z, mu.detach().numpy())
    assert logvar.shape == mu.shape
    # the loss is the weighted sum of the logged terms
    w = DEFAULT_LOSS_WEIGHTS
    row = hist[-1]
    assert row["train_loss"] == pytest.approx(sum(w[k] * row[k] for k in w), rel=1e-5)


def test_bf16_autocast_keeps_the_loss_statistics_finite():
    # the network runs in bf16, the loss terms in fp32 (the CUDA default, here forced on CPU)
    model = small_fit(training=dict(max_epochs=2, batch_size=16, precision="bf16",
                                    progress=False))
    assert model.train_result_.precision == "bf16"
    assert all(np.isfinite(v) for row in model.history_ for v in row.values())
    X, _ = synthetic(n=40, n_features=20, seed=5)
    assert model.transform(X).dtype == np.float32


def test_validation_fraction_and_parameters(tmp_path):
    X, df = synthetic(n=40, n_features=20, seed=5)
    model = small_fit(training=dict(max_epochs=2, batch_size=16, val_fraction=0.25,
                                    progress=False))
    assert {"val_loss", "val_rec", "val_decor", "val_guide"} <= set(model.history_[0])
    assert len(model.train_result_.val_index) == 10
    params = model.get_params()
    other = clone(model)  # scikit-learn can clone it
    assert isinstance(other, DemoVAE) and other.get_params() == params
    assert model.set_params(latent_dim=5).latent_dim == 5
    with pytest.raises(ValueError, match="unknown parameter 'depth'"):
        model.set_params(depth=3)
    with pytest.raises(ValueError, match=r"unknown term\(s\) \['recon'\]"):
        DemoVAE(loss_weights={"recon": 1.0}).fit(X, df)
    with pytest.raises(ValueError, match=r"unknown TrainConfig field\(s\) \['epochs'\]"):
        DemoVAE(training={"epochs": 3}).fit(X, df)
    with pytest.raises(ValueError, match="not fitted"):
        DemoVAE().transform(X)


def test_input_errors_name_the_subjects(data, model):
    X, df = data
    bad = X.copy()
    bad[[3, 7]] = np.nan
    with pytest.raises(DataError, match="2 row.*subjects sub003, sub007"):
        model.reconstruct(bad, df)
    with pytest.raises(DataError, match=r"rows \[3, 7\]"):
        model.transform(bad)
    with pytest.raises(ValueError, match="fitted on 120"):
        model.transform(X[:, :10])
    with pytest.raises(ValueError, match="X has 120 rows but demographics has 5"):
        model.reconstruct(X, df.iloc[:5])
    with pytest.raises(DataError, match=r"level\(s\) \['GHI'\]"):
        model.sample(df.iloc[:2].assign(site="GHI"))


def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    X, _ = synthetic(n=40, n_features=20, seed=5)
    # 40 rows, batches of 16: 3 steps per epoch; a checkpoint every 2 steps and at epoch ends
    training = dict(max_epochs=3, batch_size=16, checkpoint_every=2, progress=False)
    reference = small_fit(training=training, run_dir=tmp_path / "whole").transform(X)

    class Crash(Exception):
        pass

    calls = {"n": 0}
    real_call = vae_module._LossFn.__call__

    def crash_at_step_5(self, model, batch, generator):
        if model.training:
            if calls["n"] == 5:
                raise Crash
            calls["n"] += 1
        return real_call(self, model, batch, generator)

    monkeypatch.setattr(vae_module._LossFn, "__call__", crash_at_step_5)
    with pytest.raises(Crash):
        small_fit(training=training, run_dir=tmp_path / "crashed")
    monkeypatch.setattr(vae_module._LossFn, "__call__", real_call)
    state = torch.load(tmp_path / "crashed" / CHECKPOINT_NAME, weights_only=True)["state"]
    assert (state["step"], state["epoch"], state["position"]) == (4, 1, 1)  # mid-epoch 2

    resumed = small_fit(training=training, run_dir=tmp_path / "crashed")
    np.testing.assert_array_equal(resumed.transform(X), reference)
    assert resumed.train_result_.n_steps == 9
