"""TFMTokenizer: shapes, channel independence, masks, what each path sees, loss formula,
commitment gradient, learning on synthetic sinusoids, config and checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from brainmill.models import TFMTokenizer, TokenizerConfig, load_model, save_model
from brainmill.models.frontend import robust_scale, stft_magnitude

TINY = dict(dim=16, n_heads=2, freq_depth=1, time_depth=1, decoder_depth=1, n_codes=32,
            norm_groups=4, mlp_ratio=2.0, dropout=0.0)


def tiny(seed: int = 0, **kw) -> TFMTokenizer:
    torch.manual_seed(seed)
    return TFMTokenizer(TokenizerConfig(**{**TINY, **kw}))


def sines(freqs, n_times=600, sfreq=200.0, seed=0) -> torch.Tensor:
    """(len(freqs), 1, n_times) sinusoids with random amplitude and phase plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_times) / sfreq
    amp = rng.uniform(0.5, 2.0, (len(freqs), 1))
    phase = rng.uniform(0, 2 * np.pi, (len(freqs), 1))
    x = amp * np.sin(2 * np.pi * np.asarray(freqs, float)[:, None] * t + phase)
    x += 0.05 * rng.standard_normal(x.shape)
    return torch.from_numpy(x[:, None, :]).float()


@pytest.mark.parametrize("n_times", [200, 999, 1001])
def test_shapes_on_odd_lengths(n_times):
    tok = tiny().eval()
    x = torch.randn(2, 3, n_times)
    f = 1 + (n_times - 200) // 100
    assert tok.n_frames(n_times) == f
    ids = tok.tokenize(x)
    assert ids.shape == (2, 3, f) and ids.dtype == torch.int64
    assert int(ids.min()) >= 0 and int(ids.max()) < 32
    z, spec = tok.encode(x)
    assert z.shape == (2, 3, f, 16) and spec.shape == (2, 3, f, 100)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(2, 3, f))
    # the target is the STFT of each channel scaled on its own
    ref = stft_magnitude(robust_scale(x)).view(2, 3, f, 100)
    torch.testing.assert_close(spec, ref)
    out = tok(x)
    assert out.reconstruction.shape == (2, 3, f, 100) and torch.equal(out.indices, ids)
    assert tok.reconstruct(x).shape == (2, 3, f, 100)
    # the tokens are the nearest codes of z
    dist = torch.cdist(z.reshape(-1, 16), tok.codebook)
    assert torch.equal(dist.argmin(1).view(2, 3, f), ids)
    assert tok.codebook.shape == (32, 16)


def test_input_errors():
    tok = tiny()
    with pytest.raises(ValueError, match="batch, channels, times"):
        tok.tokenize(torch.randn(4, 600))
    with pytest.raises(ValueError, match="shorter than one STFT frame"):
        tok.tokenize(torch.randn(1, 1, 150))
    with pytest.raises(ValueError, match="floating"):
        tok.tokenize(torch.ones(1, 1, 600, dtype=torch.int64))


def test_channels_are_independent():
    tok = tiny(1).eval()
    torch.manual_seed(2)
    x = torch.randn(2, 3, 700)
    ids = tok.tokenize(x)
    z, _ = tok.encode(x)
    y = x.clone()
    y[0, 1] = torch.randn(700) * 5.0  # another channel of the same sample changes
    z2, _ = tok.encode(y)
    keep = torch.ones(2, 3, dtype=torch.bool)
    keep[0, 1] = False
    torch.testing.assert_close(z2[keep], z[keep], rtol=0, atol=1e-6)
    assert torch.equal(tok.tokenize(y)[keep], ids[keep])
    assert not torch.allclose(z2[0, 1], z[0, 1])
    # a channel tokenized alone gives the same embedding as inside the batch
    alone, _ = tok.encode(x[1:2, 2:3])
    torch.testing.assert_close(alone[0, 0], z[1, 2], rtol=0, atol=1e-5)


def _round_half_up(v: float) -> int:
    return math.floor(v + 0.5)


@pytest.mark.parametrize(("mask_freq", "mask_time", "n_frames"),
                         [(0.5, 0.5, 9), (0.3, 0.25, 19), (0.5, 0.5, 1)])
def test_masks_whole_bands_and_frames_with_exact_fractions(mask_freq, mask_time, n_frames):
    tok = tiny(mask_freq=mask_freq, mask_time=mask_time)
    keep = tok.masks(n_frames, torch.Generator().manual_seed(3))
    assert keep.shape == (n_frames, 100) and keep.dtype == torch.bool
    n_hidden_frames = _round_half_up(mask_time * n_frames)
    n_hidden_bands = _round_half_up(mask_freq * 20)
    if n_hidden_frames == n_frames:
        assert not keep.any()
        return
    # visible bins = kept band AND kept frame: a product of a frame and a band indicator
    band_keep = keep.any(0)
    frame_keep = keep.any(1)
    assert torch.equal(keep, frame_keep[:, None] & band_keep[None, :])
    per_band = band_keep.view(20, 5)
    assert (per_band == per_band[:, :1]).all()  # whole bands of 5 adjacent bins
    assert int((~per_band[:, 0]).sum()) == n_hidden_bands
    assert int((~frame_keep).sum()) == n_hidden_frames
    visible = (n_frames - n_hidden_frames) / n_frames * (20 - n_hidden_bands) / 20
    assert keep.float().mean().item() == pytest.approx(visible)
    assert (~keep).float().mean().item() == pytest.approx(1 - visible)  # symmetric pass


def test_masks_deterministic_and_uniform():
    tok = tiny()
    a = tok.masks(9, torch.Generator().manual_seed(4))
    b = tok.masks(9, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    g = torch.Generator().manual_seed(5)
    draws = torch.stack([tok.masks(9, g) for _ in range(300)])
    band_hidden = (~draws.any(1)).view(300, 20, 5)[..., 0].float().mean(0)
    frame_hidden = (~draws.any(2)).float().mean(0)
    assert ((band_hidden > 0.4) & (band_hidden < 0.6)).all()  # each band ~50% of the time
    assert ((frame_hidden > 0.45) & (frame_hidden < 0.67)).all()  # 5 of 9 frames hidden
    assert not torch.equal(draws[0], draws[1])


def test_only_the_frequency_path_input_is_masked_and_loss_formula():
    tok = tiny(2).eval()  # eval: no EMA update, so the loss can be recomputed by hand
    x = torch.randn(3, 2, 650)
    seen = {"freq": [], "temporal": []}
    hooks = [
        tok.freq_embed.register_forward_pre_hook(lambda m, a: seen["freq"].append(a[0].clone())),
        tok.temporal.register_forward_pre_hook(lambda m, a: seen["temporal"].append(a[0].clone())),
    ]
    loss, logs = tok.training_loss(x, torch.Generator().manual_seed(6))
    for h in hooks:
        h.remove()
    xs = robust_scale(x.reshape(6, 650))
    spec = stft_magnitude(xs)  # (6, 5, 100)
    keep = tok.masks(5, torch.Generator().manual_seed(6))
    # frequency path: the masked spectrogram, then its complement; hidden bins are zero
    assert len(seen["freq"]) == 2
    for got, visible in zip(seen["freq"], (keep, ~keep), strict=True):
        torch.testing.assert_close(got, (spec * visible).reshape(30, 1, 100), rtol=0, atol=0)
    # temporal path: once, the whole unmasked scaled signal
    assert len(seen["temporal"]) == 1
    torch.testing.assert_close(seen["temporal"][0], xs[:, None, :], rtol=0, atol=0)

    # loss = Σ_passes MSE(decode(q), full spectrogram) + β·MSE(z, q)
    expected_recon, expected_vq = 0.0, 0.0
    temporal = tok._temporal_path(xs)
    for visible in (keep, ~keep):
        z = tok._encode(spec * visible, temporal)
        q = tok.codebook[torch.cdist(z.reshape(-1, 16), tok.codebook).argmin(1)].view(z.shape)
        expected_recon += F.mse_loss(tok._decode(q), spec).item()
        expected_vq += tok.config.commitment * (z - q).square().mean().item()
    assert logs["recon"] == pytest.approx(expected_recon, rel=1e-5)
    assert logs["vq"] == pytest.approx(expected_vq, rel=1e-4)
    assert loss.item() == pytest.approx(expected_recon + expected_vq, rel=1e-5)
    assert 1.0 <= logs["perplexity"] <= 32.0

    # without the symmetric pass the frequency path runs once
    one = tiny(2, symmetric=False).eval()
    calls = []
    one.freq_embed.register_forward_pre_hook(lambda m, a: calls.append(1))
    one.training_loss(x, torch.Generator().manual_seed(6))
    assert len(calls) == 1


def test_encoder_gets_the_commitment_gradient():
    """grad(β) − grad(0) is the commitment term's gradient: nonzero on the encoder (the
    reference's straight-through VQ loss would cancel it), zero on the decoder, linear in β."""
    x = torch.randn(4, 1, 500, dtype=torch.float64)
    base = tiny(3).double()
    grads = {}
    for beta in (0.0, 1.0, 2.0):
        tok = tiny(commitment=beta).double()
        tok.load_state_dict(base.state_dict())
        loss, _ = tok.training_loss(x, torch.Generator().manual_seed(7))
        loss.backward()
        grads[beta] = {n: p.grad.clone() for n, p in tok.named_parameters()}
    encoder = ("freq_embed", "freq_blocks", "freq_pool", "temporal", "time_blocks")
    decoder = ("decoder_blocks", "decoder_head")
    n_encoder = 0
    for name in grads[0.0]:
        d1 = grads[1.0][name] - grads[0.0][name]
        d2 = grads[2.0][name] - grads[0.0][name]
        if name.startswith(decoder):
            torch.testing.assert_close(d1, torch.zeros_like(d1), rtol=0, atol=1e-12)
        else:
            assert name.startswith(encoder), name
            torch.testing.assert_close(d2, 2 * d1, rtol=1e-6, atol=1e-12)
            n_encoder += bool(d1.abs().max() > 1e-9)
    assert n_encoder > 10  # the commitment gradient reaches (almost) every encoder tensor


def test_learns_two_frequencies_and_tokens_separate_them():
    """20-Hz and 70-Hz sinusoids (random amplitude and phase) on a short STFT (0.1-s frames,
    10-Hz bins, so the spectral magnitudes are small enough for a few dozen steps): the loss
    falls, the two frequencies get disjoint tokens, and each reconstruction is closer to its own
    class's spectrum than to the other's, so the tokens carry the frequency."""
    short = dict(n_fft=20, hop=10, n_bins=10, band_size=2, gate_groups=1, n_codes=16)
    freqs = [20.0] * 16 + [70.0] * 16
    x = sines(freqs, n_times=100, seed=9)
    tok = tiny(10, **short)
    opt = torch.optim.AdamW(tok.parameters(), lr=5e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(11)
    history = []
    for _ in range(40):
        loss, logs = tok.training_loss(x, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(logs["recon"])
    assert np.mean(history[-5:]) < 0.5 * np.mean(history[:3])
    tok.eval()
    with torch.no_grad():
        out = tok(sines([20.0] * 8 + [70.0] * 8, n_times=100, seed=12))
    low, high = set(out.indices[:8].flatten().tolist()), set(out.indices[8:].flatten().tolist())
    assert low.isdisjoint(high), (low, high)
    r, s = out.reconstruction, out.spectrogram
    for own, other in ((slice(0, 8), slice(8, 16)), (slice(8, 16), slice(0, 8))):
        assert F.mse_loss(r[own], s[own]) < 0.5 * F.mse_loss(r[own], s[other])
    usage = tok.codebook_usage(out.indices)
    assert usage["n_used"] == len(low | high) >= 2


def test_bf16_autocast_on_cpu():
    tok = tiny(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logs = tok.training_loss(torch.randn(2, 2, 400), torch.Generator().manual_seed(0))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in tok.parameters() if p.grad is not None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_bf16_step_with_device_generator():
    tok = tiny(4).cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    assert tok.masks(5, g).device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, logs = tok.training_loss(torch.randn(3, 2, 400, device="cuda"), g)
    assert torch.isfinite(loss) and np.isfinite(logs["recon"])
    loss.backward()
    ids = tok.eval().tokenize(torch.randn(2, 2, 400, device="cuda"))
    assert ids.device.type == "cuda" and ids.shape == (2, 2, 3)


def test_codebook_usage_by_hand():
    tok = tiny(n_codes=6)
    usage = tok.codebook_usage(torch.tensor([[0, 0, 3], [3, 5, 0]]))
    assert usage["counts"].tolist() == [3, 0, 0, 2, 0, 1]
    assert usage["n_used"] == 3
    p = np.array([3, 2, 1]) / 6
    assert usage["perplexity"] == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        tok.codebook_usage(np.array([6]))


def test_config_defaults_round_trip_and_errors():
    cfg = TokenizerConfig()
    assert (cfg.n_bands, cfg.dim, cfg.n_codes, cfg.decoder_depth) == (20, 64, 8192, 2)
    assert TokenizerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown field"):
        TokenizerConfig.from_dict({"dims": 3})
    for bad, field in [({"n_bins": 98}, "n_bins"), ({"n_bins": 105}, "n_bins"),
                       ({"gate_groups": 3}, "gate_groups"), ({"norm": "batchnorm"}, "norm"),
                       ({"n_heads": 7}, "n_heads"), ({"norm_groups": 5}, "norm_groups"), ({"mask_freq": 1.5}, "mask_freq"),
                       ({"decay": 1.0}, "decay")]:
        with pytest.raises(ValueError, match=f"TokenizerConfig.{field}"):
            TokenizerConfig(**bad)


def test_save_load_round_trip(tmp_path):
    tok = tiny(5)
    tok.training_loss(torch.randn(2, 1, 400))  # move the codebook by EMA
    path = save_model(tmp_path / "sub" / "tok.pt", tok)
    assert [p.name for p in path.parent.iterdir()] == ["tok.pt"]  # no temp file left
    loaded = load_model(path)
    assert isinstance(loaded, TFMTokenizer) and not loaded.training
    assert loaded.config == tok.config
    torch.testing.assert_close(loaded.codebook, tok.codebook, rtol=0, atol=0)
    x = torch.randn(2, 2, 450)
    assert torch.equal(loaded.tokenize(x), tok.eval().tokenize(x))
