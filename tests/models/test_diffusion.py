"""EEG diffusion model: schedule, µ-law scaling, v-prediction, DDIM, representations, learning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import welch

from brainmill.models import load_model, save_model
from brainmill.models.diffusion import (
    DiffusionConfig,
    EEGDiffusion,
    cosine_alphas_cumprod,
    mu_law_compress,
    mu_law_expand,
    step_embedding,
)


def tiny(**kw) -> EEGDiffusion:
    torch.manual_seed(0)
    fields = dict(channel_names=["C3", "C4"], dim=8, d_state=8, n_layers=2, cond_dim=16)
    return EEGDiffusion(DiffusionConfig(**{**fields, **kw}))


# ------------------------------------------------------------------------------ schedule


def test_cosine_schedule_telescopes_to_the_closed_form():
    # while no β is capped, Π(1 − β_k) telescopes to f(t+1)/f(0)
    T, s = 1000, 0.008
    abar = cosine_alphas_cumprod(T).numpy()
    u = np.arange(T + 1) / T
    f = np.cos((u + s) / (1 + s) * np.pi / 2) ** 2
    uncapped = (1 - f[1:] / f[:-1]) < 0.999
    k = np.argmin(uncapped) if not uncapped.all() else T
    np.testing.assert_allclose(abar[:k], f[1:k + 1] / f[0], rtol=1e-12)
    assert np.all(np.diff(abar) < 0) and 0 < abar[-1] < abar[0] < 1


def test_cosine_schedule_caps_beta():
    abar = cosine_alphas_cumprod(50).numpy()
    betas = 1 - abar / np.concatenate([[1.0], abar[:-1]])
    assert betas.max() <= 0.999 + 1e-12
    assert betas[-1] == pytest.approx(0.999)  # the last step of the cosine is capped
    assert abar[0] == pytest.approx(1 - betas[0])


# ------------------------------------------------------------------------------ µ-law


def test_mu_law_identity_inside_compressed_outside_and_exactly_inverted():
    x = torch.linspace(-5000, 5000, 200001, dtype=torch.float64)
    y = mu_law_compress(x, 255.0)
    inside = x.abs() <= 1
    assert torch.equal(y[inside], x[inside])
    assert float(mu_law_compress(torch.tensor(10.0, dtype=torch.float64), 255.0)) == \
        pytest.approx(math.log(1 + 2550) / math.log(256))
    assert torch.all(torch.diff(y) > 0)  # monotone
    edge = torch.tensor([1.0 + 1e-9], dtype=torch.float64)  # continuous at ±1
    assert float(mu_law_compress(edge, 255.0)) == pytest.approx(1.0, abs=1e-8)
    torch.testing.assert_close(mu_law_expand(y, 255.0), x, rtol=1e-12, atol=1e-9)


def test_encode_decode_round_trip_in_volts():
    model = tiny()
    volts = torch.tensor([-2e-3, -150e-6, -20e-6, 0.0, 37e-6, 100e-6, 800e-6],
                         dtype=torch.float64)
    encoded = model.encode(volts)
    assert float(encoded[2]) == pytest.approx(-0.2)  # 20 µV / 100 µV per unit, untouched
    assert abs(float(encoded[0])) < 2  # 2 mV is compressed
    torch.testing.assert_close(model.decode(encoded), volts, rtol=1e-10, atol=1e-15)


# ------------------------------------------------------------------------------ v and DDIM


def test_velocity_target_recovers_clean_signal_and_noise():
    model = tiny()
    x0, noise = torch.randn(6, 1, 32), torch.randn(6, 1, 32)
    t = torch.tensor([0, 5, 10, 20, 40, 49])
    x_t, v = model.noisy(x0, t, noise)
    a = model.alphas_cumprod[t][:, None, None]
    torch.testing.assert_close(a.sqrt() * x_t - (1 - a).sqrt() * v, x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close((1 - a).sqrt() * x_t + a.sqrt() * v, noise, atol=1e-5,
                               rtol=1e-5)


@pytest.mark.parametrize("n_steps", [50, 10, 1])
def test_ddim_with_an_oracle_denoiser_returns_the_target(monkeypatch, n_steps):
    """If the network predicted the true velocity towards a fixed x₀, DDIM must land on it."""
    model = tiny(clip_sample=None)
    target = 0.5 * torch.randn(4, 1, 40)
    visited = []

    def oracle(x_t, t, channel, label=None, return_gates=False):
        visited.append(int(t[0]))
        a = model.alphas_cumprod[t][:, None, None]
        eps = (x_t - a.sqrt() * target) / (1 - a).sqrt()
        return a.sqrt() * eps - (1 - a).sqrt() * target

    monkeypatch.setattr(model, "denoise", oracle)
    out = model.sample(torch.zeros(4, dtype=torch.int64), 40, n_steps=n_steps,
                       generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, target, atol=1e-4, rtol=1e-4)
    # from pure noise (T − 1) down to 0, each step once
    assert visited[0] == 49 and len(visited) == n_steps == len(set(visited))
    assert visited == sorted(visited, reverse=True) and (n_steps == 1 or visited[-1] == 0)


def test_sampling_is_reproducible_and_clipped():
    model = tiny(clip_sample=1.5)
    with torch.no_grad():  # a non-zero output layer so samples are not pure DDIM of v = 0
        model.output_proj.weight.normal_(0, 3.0)
    ch = torch.tensor([0, 1, 2])
    a = model.sample(ch, 64, n_steps=5, generator=torch.Generator().manual_seed(3))
    b = model.sample(ch, 64, n_steps=5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert a.abs().max() <= 1.5 + 1e-6
    with pytest.raises(ValueError, match="n_steps=51"):
        model.sample(ch, 64, n_steps=51)


# ------------------------------------------------------------------------------ network


def test_fresh_model_predicts_zero_velocity_and_uses_the_s4d_kernel(monkeypatch):
    model = tiny()
    x = torch.randn(3, 1, 50)
    t = torch.tensor([1, 2, 3])
    assert model(x, t, torch.tensor([0, 1, 2])).abs().max() == 0  # zero-initialised output
    calls = []
    rfft = torch.fft.rfft
    monkeypatch.setattr(torch.fft, "rfft", lambda *a, **k: calls.append(1) or rfft(*a, **k))

    def no_recurrence(*args, **kwargs):
        raise AssertionError("the recurrence must not be used")

    from brainmill.nn.ssm import S4D
    monkeypatch.setattr(S4D, "forward_recurrent", no_recurrence)
    loss, logs = model.loss(x, torch.tensor([0, 1, 2]), generator=torch.Generator())
    assert len(calls) >= 2 * model.config.n_layers  # signal and kernel per block
    assert logs["v_mse"] == pytest.approx(float(loss.detach()))


def test_channel_names_map_to_ids_and_conditioning_changes_the_output():
    model = tiny()
    assert model.channel_ids(["C4", "C3", "Pz"]).tolist() == [1, 0, 2]  # Pz: unknown
    with torch.no_grad():
        model.output_proj.weight.normal_()
        for block in model.blocks:
            block.cond_proj.weight.normal_()
    x, t = torch.randn(1, 1, 30).repeat(3, 1, 1), torch.tensor([4, 4, 4])
    out = model(x, t, torch.tensor([0, 1, 2]))
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])


def test_class_conditioning_needs_a_class_embedding():
    model = tiny()
    with pytest.raises(ValueError, match="n_classes=0"):
        model(torch.randn(2, 1, 16), torch.tensor([1, 1]), torch.tensor([0, 0]),
              torch.tensor([0, 1]))
    conditional = tiny(n_classes=3)
    assert conditional.class_embed.num_embeddings == 4  # + the "no class" id
    loss, _ = conditional.loss(torch.randn(4, 1, 16), torch.tensor([0, 1, 0, 1]),
                               torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert conditional.class_embed.weight.grad is not None


def test_bad_window_shapes_are_clear_errors():
    model = tiny()
    with pytest.raises(ValueError, match=r"\(batch, 1, length\)"):
        model(torch.randn(2, 3, 16), torch.tensor([1, 1]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="channel ids"):
        model(torch.randn(2, 1, 16), torch.tensor([1, 1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="DiffusionConfig.d_state"):
        DiffusionConfig(d_state=7)


def test_representations_are_std_pooled_gates_of_a_noiseless_pass():
    model = tiny()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 1, 45)
    ch = torch.tensor([0, 1])
    reps = model.representations(x, ch, pool=10, t=1)
    assert reps.shape == (2, model.config.n_layers, model.config.dim, 4)  # remainder dropped
    _, gates = model.denoise(x, torch.tensor([1, 1]), ch, return_gates=True)
    want = torch.stack([g[..., :40].reshape(2, model.config.dim, 4, 10).std(-1, correction=0)
                        for g in gates], dim=1)
    torch.testing.assert_close(reps, want)
    assert not torch.allclose(reps, model.representations(x, ch, pool=10, t=30))
    with pytest.raises(ValueError, match="pool"):
        model.representations(x, ch, pool=46)


def test_step_embedding_distinguishes_steps():
    e = step_embedding(torch.tensor([0, 1, 49]), 9)
    assert e.shape == (3, 9) and torch.all(e[:, -1] == 0)
    assert torch.equal(e[0, :4], torch.zeros(4)) and torch.equal(e[0, 4:8], torch.ones(4))
    assert not torch.allclose(e[1], e[2])


def test_save_and_load_round_trip(tmp_path):
    model = tiny(n_classes=2)
    with torch.no_grad():
        model.output_proj.weight.normal_()
    path = save_model(tmp_path / "diffusion.pt", model)
    loaded = load_model(path)
    assert loaded.config == model.config
    x, t, ch = torch.randn(2, 1, 20), torch.tensor([3, 9]), torch.tensor([0, 1])
    model.eval()
    assert torch.equal(loaded(x, t, ch), model(x, t, ch))


def test_bf16_autocast_on_cpu():
    model = tiny()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = model.loss(torch.randn(4, 1, 32), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    assert torch.isfinite(loss)


@pytest.mark.slow
def test_learns_to_generate_a_rhythm():
    """Trained on random-phase 10 Hz sines in noise, it generates 10 Hz at the right amplitude."""
    from brainmill.diffusion_decoding import generate, train_diffusion

    rng = np.random.default_rng(0)
    n, length, sfreq = 512, 200, 100.0
    t = np.arange(length) / sfreq
    X = 1e-6 * (30 * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 2 * np.pi, (n, 1)))
                + 5 * rng.standard_normal((n, length)))
    cfg = DiffusionConfig(channel_names=["Cz"], dim=16, d_state=16, n_layers=3, cond_dim=32,
                          sfreq=sfreq)
    model, result = train_diffusion(X[:, None], ["Cz"] * n, cfg,
                                    {"max_epochs": 20, "batch_size": 32, "lr": 3e-3,
                                     "progress": False, "ema_decay": 0.99}, seed=0)
    assert result.history[-1]["train_loss"] < 0.3 * result.history[0]["train_loss"]
    G = generate(model, ["Cz"] * 48, length, seed=1, n_steps=20)
    f, p_real = welch(X, sfreq, nperseg=100)
    _, p_gen = welch(G, sfreq, nperseg=100)
    assert f[p_gen.mean(0).argmax()] == f[p_real.mean(0).argmax()] == 10.0
    assert 0.6 < G.std() / X.std() < 1.5


# ------------------------------------------------------------------------------ reference


def test_schedule_and_ddim_equal_diffusers():
    """The reference library EEGDM trains and samples with: diffusers' schedulers."""
    diffusers = pytest.importorskip("diffusers")
    T = 50
    ddpm = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2",
                                   prediction_type="v_prediction")
    torch.testing.assert_close(cosine_alphas_cumprod(T).float(), ddpm.alphas_cumprod,
                               rtol=1e-5, atol=1e-6)
    model = tiny(clip_sample=None)
    with torch.no_grad():
        model.output_proj.weight.normal_(0, 0.5)
    ch = torch.tensor([0, 1, 2])
    ours = model.sample(ch, 48, generator=torch.Generator().manual_seed(11))

    ddim = diffusers.DDIMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2",
                                   prediction_type="v_prediction", clip_sample=False,
                                   set_alpha_to_one=True)
    ddim.set_timesteps(T)
    x = torch.randn((3, 1, 48), generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        for t in ddim.timesteps:
            v = model(x, torch.full((3,), int(t), dtype=torch.int64), ch)
            x = ddim.step(v, t, x, eta=0.0).prev_sample
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-4)
