"""TokenTransformer: shapes, codebook init, channel-major sequence, MTP masking and loss,
learning a tiny task, config, checkpoints, and the light import of brainmill.models."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from brainmill.models import (
    TokenTransformer,
    TokenTransformerConfig,
    load_model,
    save_model,
)

TINY = dict(n_codes=10, n_classes=3, dim=16, n_heads=2, depth=2, mlp_ratio=2.0, dropout=0.0)


def tiny(seed: int = 0, codebook=None, **kw) -> TokenTransformer:
    torch.manual_seed(seed)
    return TokenTransformer(TokenTransformerConfig(**{**TINY, **kw}), codebook=codebook)


def random_ids(*shape, n_codes=10, seed=0) -> torch.Tensor:
    return torch.randint(n_codes, shape, generator=torch.Generator().manual_seed(seed))


def test_shapes():
    model = tiny()
    ids = random_ids(2, 3, 5)
    assert model(ids).shape == (2, 3)
    assert model.features(ids).shape == (2, 16)
    assert model.hidden(ids).shape == (2, 1 + 15, 16)
    assert model.mtp_logits(ids, torch.zeros(2, 3, 5, dtype=torch.bool)).shape == (2, 3, 5, 10)
    torch.testing.assert_close(model.head(model.features(ids)), model(ids))
    with pytest.raises(ValueError, match="batch, channels, frames"):
        model(ids[0])
    with pytest.raises(ValueError, match=r"ids.long\(\)"):
        model(ids.int())
    with pytest.raises(ValueError, match=r"\[0, n_codes=10\)"):
        model(torch.full((1, 1, 2), 10))  # the [MASK] id is not a valid input
    with pytest.raises(ValueError, match="max_channels"):
        tiny(max_channels=2)(ids)


def test_embedding_initialised_from_codebook():
    cb = torch.randn(10, 16)
    model = tiny(codebook=cb)
    torch.testing.assert_close(model.token_embed.weight[:10], cb, rtol=0, atol=0)
    assert model.token_embed.weight.shape == (11, 16)  # + [MASK]
    assert model.mask_id == 10
    assert not torch.allclose(model.token_embed.weight[10], torch.zeros(16))
    torch.testing.assert_close(tiny(codebook=cb.numpy()).token_embed.weight[:10], cb)
    with pytest.raises(ValueError, match=r"\(n_codes, dim\) = \(10, 16\)"):
        tiny(codebook=torch.randn(10, 8))


def test_sequence_is_cls_then_channel_major_with_shared_frame_positions():
    model = tiny(1)
    b, c, f = 2, 3, 4
    ids = random_ids(b, c, f, seed=1)
    seq = model.embed(ids)
    assert seq.shape == (b, 1 + c * f, 16)
    torch.testing.assert_close(seq[:, 0], model.cls_token.expand(b, -1))
    emb, chan = model.token_embed.weight, model.channel_embed.weight
    for bi in range(b):
        for ci in range(c):
            for fi in range(f):
                pe = torch.tensor([math.sin(fi / 10000 ** (2 * (i // 2) / 16)) if i % 2 == 0
                                   else math.cos(fi / 10000 ** (2 * (i // 2) / 16))
                                   for i in range(16)])
                expected = emb[ids[bi, ci, fi]] + chan[ci] + pe
                torch.testing.assert_close(seq[bi, 1 + ci * f + fi], expected)


def test_channel_permutation_invariance_and_frame_order_sensitivity():
    """Without positions attention is permutation-equivariant and [CLS] pools: permuting the
    channels of the ids together with the channel-embedding rows leaves the output unchanged,
    while permuting frames (whose sinusoidal positions stay put) changes it."""
    model = tiny(2).eval()
    ids = random_ids(3, 4, 5, seed=2)
    ref = model(ids)
    perm = torch.tensor([2, 0, 3, 1])
    permuted = tiny(2).eval()
    with torch.no_grad():
        permuted.channel_embed.weight[:4] = model.channel_embed.weight[perm]
    torch.testing.assert_close(permuted(ids[:, perm]), ref, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(model(ids[:, perm]), ref, atol=1e-4)
    assert not torch.allclose(model(ids[:, :, torch.tensor([4, 3, 2, 1, 0])]), ref, atol=1e-4)


def test_mtp_masks_only_masked_positions_and_loss_formula():
    model = tiny(3).eval()
    ids = random_ids(8, 4, 8, seed=3)
    seen = []
    model.token_embed.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    loss, logs = model.mtp_loss(ids, torch.Generator().manual_seed(4))
    assert len(seen) == 2
    m1, m2 = seen[0] == model.mask_id, seen[1] == model.mask_id
    # a Bernoulli(0.5) mask per token and sample, from the caller's generator
    expected = torch.rand(ids.shape, generator=torch.Generator().manual_seed(4)) < 0.5
    assert torch.equal(m1, expected)
    assert 0.4 < m1.float().mean().item() < 0.6
    assert not torch.equal(m1[0], m1[1])
    # symmetric pass hides exactly the complement; unmasked ids are untouched
    assert torch.equal(m2, ~m1)
    assert torch.equal(seen[0][~m1], ids[~m1]) and torch.equal(seen[1][m1], ids[m1])
    # loss = Σ_passes mean CE over that pass's masked positions, by hand from log-softmax
    total, correct = 0.0, 0
    for m in (m1, m2):
        logits = model.mtp_logits(ids, m)
        logp = logits.log_softmax(-1).gather(-1, ids[..., None])[..., 0]
        total += -logp[m].mean().item()
        correct += int((logits.argmax(-1) == ids)[m].sum())
    assert loss.item() == pytest.approx(total, rel=1e-5)
    assert logs["mtp_loss"] == pytest.approx(total, rel=1e-5)
    assert logs["mtp_accuracy"] == pytest.approx(correct / ids.numel())
    # gradients reach the token embedding, including the [MASK] row
    loss.backward()
    assert model.token_embed.weight.grad[model.mask_id].abs().sum() > 0


def test_mtp_loss_learns_a_deterministic_pattern():
    """Code at frame f is f mod n_codes in every sample: masked tokens are predictable from the
    frame position, so the MTP loss must fall well below chance (2·ln 10)."""
    model = tiny(4)
    ids = (torch.arange(6) % 10).expand(16, 2, 6).contiguous()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(5)
    for _ in range(40):
        loss, logs = model.mtp_loss(ids, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert logs["mtp_loss"] < 0.5 * 2 * math.log(10)
    assert logs["mtp_accuracy"] > 0.9


def test_learns_a_tiny_classification_task():
    """Class 0 windows draw their tokens from codes 0-4, class 1 from codes 5-9, in random
    order; a held-out set must be classified almost perfectly after a few dozen steps."""
    gen = torch.Generator().manual_seed(6)
    y = torch.arange(96) % 2
    ids = torch.randint(5, (96, 2, 4), generator=gen) + 5 * y[:, None, None]
    train, test = slice(0, 64), slice(64, None)
    model = tiny(7, n_classes=2)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(25):
        loss, logs = model.classification_loss(ids[train], y[train])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(ids[test]).argmax(-1) == y[test]).float().mean().item()
        _, logs = model.classification_loss(ids[test], y[test], label_smoothing=0.0)
    assert acc > 0.95
    assert logs["accuracy"] == pytest.approx(acc)


def test_classification_loss_is_label_smoothed_ce():
    model = tiny(8).eval()
    ids, y = random_ids(5, 2, 3, seed=8), torch.tensor([0, 1, 2, 1, 0])
    loss, logs = model.classification_loss(ids, y, label_smoothing=0.1)
    logp = model(ids).log_softmax(-1)
    target = torch.full((5, 3), 0.1 / 3)
    target[torch.arange(5), y] += 0.9
    assert loss.item() == pytest.approx(-(target * logp).sum(-1).mean().item(), rel=1e-6)
    assert logs["accuracy"] == pytest.approx((logp.argmax(-1) == y).float().mean().item())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_bf16_mtp_and_classification():
    model = tiny(10).cuda()
    ids = random_ids(4, 2, 3).cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, logs = model.mtp_loss(ids, g)
        closs, _ = model.classification_loss(ids, torch.tensor([0, 1, 2, 0], device="cuda"))
    assert torch.isfinite(loss) and torch.isfinite(closs) and 0 <= logs["mtp_accuracy"] <= 1
    (loss + closs).backward()


def test_config_round_trip_and_errors():
    cfg = TokenTransformerConfig(n_codes=8192, n_classes=5)
    assert (cfg.dim, cfg.n_heads, cfg.depth, cfg.dropout) == (64, 4, 4, 0.2)
    assert TokenTransformerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown field"):
        TokenTransformerConfig.from_dict({**cfg.to_dict(), "heads": 2})
    with pytest.raises(ValueError, match="TokenTransformerConfig.n_heads"):
        TokenTransformerConfig(n_codes=8, n_classes=2, dim=10, n_heads=4)
    with pytest.raises(ValueError, match="TokenTransformerConfig.n_classes"):
        TokenTransformerConfig(n_codes=8, n_classes=0)


def test_save_load_round_trip_and_errors(tmp_path):
    model = tiny(9, codebook=torch.randn(10, 16))
    path = save_model(tmp_path / "m.pt", model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    payload = torch.load(path, weights_only=True)
    assert payload["kind"] == "token_transformer" and payload["config"] == model.config.to_dict()
    assert "time_table" not in payload["state_dict"]  # rebuilt, not stored
    loaded = load_model(path)
    assert isinstance(loaded, TokenTransformer) and not loaded.training
    ids = random_ids(2, 2, 3, seed=9)
    torch.testing.assert_close(loaded(ids), model.eval()(ids), rtol=0, atol=0)
    with pytest.raises(TypeError, match="cannot save a Linear"):
        save_model(tmp_path / "x.pt", torch.nn.Linear(2, 2))
    torch.save({"kind": "nope", "config": {}, "state_dict": {}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="unknown model kind 'nope'"):
        load_model(tmp_path / "bad.pt")
    torch.save({"weights": np.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(Exception, match="other.pt|WeightsUnpickler"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_model(tmp_path / "missing.pt")


def test_import_needs_only_torch_and_numpy():
    code = ("import sys, brainmill.models; "
            "bad = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'scipy', 'sklearn', 'mne', 'pandas', 'pydantic'}); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_cross_entropy_reference_is_torch():
    """Sanity anchor for the hand formulas above: F.cross_entropy equals −mean log-softmax."""
    logits, target = torch.randn(4, 6), torch.tensor([0, 5, 2, 2])
    hand = -logits.log_softmax(-1)[torch.arange(4), target].mean()
    torch.testing.assert_close(F.cross_entropy(logits, target), hand)
