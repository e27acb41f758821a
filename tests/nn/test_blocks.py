"""TransformerBlock and GatedSSMBlock: every norm/act name, pre-norm residual structure, padding,
causality, conditioning, dtype/device."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from brainmill.nn import GatedSSMBlock, TransformerBlock
from brainmill.nn.positions import RotaryEmbedding
from brainmill.nn.registry import ACTS, NORMS

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="no CUDA device")),
]
ALL_NORMS = list(NORMS)
ALL_ACTS = list(ACTS)
# Norms whose statistics stay within one time step (UN only in eval mode).
PER_STEP_NORMS = ["layernorm", "rmsnorm", "unified"]

DIM, HEADS, B, L = 16, 2, 3, 7


def _check_grads(module: torch.nn.Module, skip: tuple[str, ...] = ()) -> None:
    for name, p in module.named_parameters():
        if name.startswith(skip):
            continue
        assert p.grad is not None, f"no gradient reached {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient in {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient in {name}"


def _zero_(*layers: torch.nn.Module) -> None:
    with torch.no_grad():
        for layer in layers:
            layer.weight.zero_()
            if layer.bias is not None:
                layer.bias.zero_()


# ============================================================================ TransformerBlock


@pytest.mark.parametrize("act", ALL_ACTS)
@pytest.mark.parametrize("norm", ALL_NORMS)
def test_transformer_block_every_norm_and_act(norm, act):
    torch.manual_seed(0)
    block = TransformerBlock(DIM, HEADS, mlp_ratio=2.0, norm=norm, act=act, qk_norm=True)
    x = torch.randn(B, L, DIM, requires_grad=True)
    y = block(x)
    assert y.shape == (B, L, DIM)
    assert torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()
    _check_grads(block)
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("norm", ALL_NORMS)
def test_transformer_block_is_identity_with_zeroed_output_projections(norm):
    """Pre-norm: x + f(norm(x)); with both branches' last Linear at 0 the block returns x."""
    torch.manual_seed(1)
    block = TransformerBlock(DIM, HEADS, norm=norm, act="swiglu")
    _zero_(block.attn.out_proj, block.mlp.fc2)
    x = 3.0 * torch.randn(B, L, DIM) + 1.0
    torch.testing.assert_close(block(x), x, rtol=0, atol=0)
    mask = torch.zeros(B, L, dtype=torch.bool)
    mask[0, -2:] = True
    torch.testing.assert_close(block(x, key_padding_mask=mask), x, rtol=0, atol=0)
    ctx = torch.randn(B, 4, DIM)
    torch.testing.assert_close(block(x, context=ctx), x, rtol=0, atol=0)


def test_transformer_block_equals_prenorm_composition():
    torch.manual_seed(2)
    block = TransformerBlock(DIM, HEADS, norm="layernorm", act="gelu").eval()
    with torch.no_grad():  # non-trivial affine so a post-norm / shared-norm bug shows
        for n in (block.norm1, block.norm2):
            n.weight.uniform_(0.5, 1.5)
            n.bias.normal_()
    x = torch.randn(B, L, DIM)
    mask = torch.zeros(B, L, dtype=torch.bool)
    mask[1, -3:] = True
    rope = RotaryEmbedding(DIM // HEADS)
    h = x + block.attn(block.norm1(x), key_padding_mask=mask, rope=rope)
    expected = h + block.mlp(block.norm2(h))
    torch.testing.assert_close(block(x, key_padding_mask=mask, rope=rope), expected)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("norm", ALL_NORMS)
def test_transformer_block_key_padding_mask(norm, mode):
    """Changing padded tokens leaves the outputs at real tokens unchanged."""
    torch.manual_seed(3)
    block = TransformerBlock(DIM, HEADS, norm=norm, act="gelu")
    block.train(mode == "train")
    x = torch.randn(B, L, DIM)
    mask = torch.zeros(B, L, dtype=torch.bool)
    mask[0, -3:] = True
    mask[2, 0] = True
    x2 = x.clone()
    x2[mask] = 10.0 * torch.randn(int(mask.sum()), DIM)
    # Fresh copies so stateful norms (UN, BN running stats) see the same state in both calls.
    y1 = copy.deepcopy(block)(x, key_padding_mask=mask)
    y2 = copy.deepcopy(block)(x2, key_padding_mask=mask)
    keep = ~mask
    torch.testing.assert_close(y1[keep], y2[keep], rtol=1e-5, atol=1e-5)
    # Without the mask the padded tokens do matter (so the check above is not vacuous).
    z1 = copy.deepcopy(block)(x)
    z2 = copy.deepcopy(block)(x2)
    assert (z1[keep] - z2[keep]).abs().max() > 1e-3


def test_transformer_block_cross_attention():
    torch.manual_seed(4)
    block = TransformerBlock(DIM, HEADS)
    x = torch.randn(B, L, DIM)
    ctx = torch.randn(B, 5, DIM)
    y = block(x, context=ctx)
    assert y.shape == (B, L, DIM)
    assert not torch.allclose(y, block(x))  # keys/values come from the context
    assert not torch.allclose(y, block(x, context=torch.randn(B, 5, DIM)))
    # Padded context tokens are ignored.
    mask = torch.zeros(B, 5, dtype=torch.bool)
    mask[:, -2:] = True
    ctx2 = ctx.clone()
    ctx2[:, -2:] = torch.randn(B, 2, DIM)
    torch.testing.assert_close(block(x, context=ctx, key_padding_mask=mask),
                               block(x, context=ctx2, key_padding_mask=mask))
    with pytest.raises(ValueError):
        block(x, key_padding_mask=torch.zeros(B, L + 1, dtype=torch.bool))


def test_transformer_block_rope_breaks_permutation_equivariance():
    """Without positions self-attention + MLP commute with a token permutation; RoPE does not."""
    torch.manual_seed(5)
    block = TransformerBlock(DIM, HEADS).eval()
    x = torch.randn(2, L, DIM)
    perm = torch.randperm(L)
    torch.testing.assert_close(block(x)[:, perm], block(x[:, perm]))
    rope = RotaryEmbedding(DIM // HEADS)
    assert not torch.allclose(block(x, rope=rope)[:, perm], block(x[:, perm], rope=rope),
                              atol=1e-4)


# ============================================================================ GatedSSMBlock

C, CC, T = 8, 5, 40


@pytest.mark.parametrize("cond_kind", ["none", "global", "sequence"])
@pytest.mark.parametrize("norm", ALL_NORMS)
def test_gated_ssm_block_every_norm(norm, cond_kind):
    torch.manual_seed(6)
    cond_channels = None if cond_kind == "none" else CC
    block = GatedSSMBlock(C, d_state=8, cond_channels=cond_channels, norm=norm)
    x = torch.randn(B, C, T, requires_grad=True)
    cond = {"none": None, "global": torch.randn(B, CC), "sequence": torch.randn(B, CC, T)}[
        cond_kind]
    res, skip = block(x, cond)
    assert res.shape == skip.shape == (B, C, T)
    assert torch.isfinite(res).all() and torch.isfinite(skip).all()
    ((res * torch.randn_like(res)).sum() + (skip * torch.randn_like(skip)).sum()).backward()
    _check_grads(block)  # incl. the zero-initialised conditioning projection
    assert x.grad.abs().sum() > 0


def test_gated_ssm_block_formula():
    """(x + r)/√2 and s from out_proj(tanh(f)·σ(g)), f, g = gate_proj(S4D(norm(x)) + W_c c)."""
    torch.manual_seed(7)
    block = GatedSSMBlock(C, d_state=8, cond_channels=CC, zero_init_cond=False)
    x, c = torch.randn(B, C, T), torch.randn(B, CC, T)
    h = block.ssm(block.norm(x)) + block.cond_proj(c)
    f, g = block.gate_proj(h).chunk(2, dim=1)
    r, s = block.out_proj(torch.tanh(f) * torch.sigmoid(g)).chunk(2, dim=1)
    res, skip = block(x, c)
    torch.testing.assert_close(res, (x + r) / math.sqrt(2))
    torch.testing.assert_close(skip, s)
    res2, skip2, gated = block(x, c, return_gated=True)
    assert torch.equal(res2, res) and torch.equal(skip2, skip)
    torch.testing.assert_close(gated, torch.tanh(f) * torch.sigmoid(g))
    _zero_(block.out_proj)
    res, skip = block(x, c)
    torch.testing.assert_close(res, x / math.sqrt(2))
    assert skip.abs().max() == 0


@pytest.mark.parametrize("norm", PER_STEP_NORMS)
def test_gated_ssm_block_unidirectional_is_causal(norm):
    torch.manual_seed(8)
    block = GatedSSMBlock(C, d_state=8, cond_channels=CC, norm=norm, bidirectional=False,
                          zero_init_cond=False).eval()
    x, c = torch.randn(B, C, T), torch.randn(B, CC, T)
    t0 = 25
    x2, c2 = x.clone(), c.clone()
    x2[..., t0 + 1:] += 5 * torch.randn(B, C, T - t0 - 1)
    c2[..., t0 + 1:] += 5 * torch.randn(B, CC, T - t0 - 1)
    (r1, s1), (r2, s2) = block(x, c), block(x2, c2)
    torch.testing.assert_close(r1[..., :t0 + 1], r2[..., :t0 + 1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s1[..., :t0 + 1], s2[..., :t0 + 1], rtol=1e-5, atol=1e-5)
    assert (s1[..., t0 + 1:] - s2[..., t0 + 1:]).abs().max() > 1e-3


def test_gated_ssm_block_bidirectional_sees_the_future():
    torch.manual_seed(9)
    block = GatedSSMBlock(C, d_state=8, bidirectional=True).eval()
    x = torch.randn(B, C, T)
    x2 = x.clone()
    x2[..., 30:] += 5 * torch.randn(B, C, T - 30)
    (_, s1), (_, s2) = block(x), block(x2)
    assert (s1[..., :30] - s2[..., :30]).abs().max() > 1e-4


def test_gated_ssm_block_pooling_norm_is_not_causal():
    """The docstring's caveat: a norm with statistics over the length leaks the future."""
    torch.manual_seed(10)
    block = GatedSSMBlock(C, d_state=8, norm="evonorm_s0", bidirectional=False).eval()
    x = torch.randn(B, C, T)
    x2 = x.clone()
    x2[..., 30:] *= 10
    (_, s1), (_, s2) = block(x), block(x2)
    assert (s1[..., :30] - s2[..., :30]).abs().max() > 1e-4


def test_gated_ssm_block_conditioning():
    torch.manual_seed(11)
    block = GatedSSMBlock(C, d_state=8, cond_channels=CC)
    x, c = torch.randn(B, C, T), torch.randn(B, CC)
    # Zero-initialised W_c: a fresh block ignores the conditioning ...
    torch.testing.assert_close(block(x, c)[0], block(x, torch.randn(B, CC))[0])
    # ... but the conditioning gets a gradient, and one step makes it matter.
    res, skip = block(x, c)
    (res.square().sum() + skip.square().sum()).backward()
    assert block.cond_proj.weight.grad.abs().sum() > 0
    with torch.no_grad():
        for p in block.cond_proj.parameters():
            p -= 0.5 * p.grad
    r1, s1 = block(x, c)
    r2, s2 = block(x, torch.randn(B, CC))
    assert (r1 - r2).abs().max() > 1e-4 and (s1 - s2).abs().max() > 1e-4
    # A (B, cond_channels) conditioning equals the same vector repeated over the length.
    torch.testing.assert_close(block(x, c)[1], block(x, c[..., None].expand(B, CC, T))[1])
    # Not zero-initialised: conditioning matters from the start.
    b2 = GatedSSMBlock(C, d_state=8, cond_channels=CC, zero_init_cond=False)
    assert (b2(x, c)[0] - b2(x)[0]).abs().max() > 1e-4


def test_gated_ssm_block_rejects_bad_inputs():
    block = GatedSSMBlock(C, d_state=8)
    with pytest.raises(ValueError, match="cond_channels=None"):
        block(torch.randn(B, C, T), torch.randn(B, CC))
    with pytest.raises(ValueError):
        block(torch.randn(B, T, C))
    cblock = GatedSSMBlock(C, d_state=8, cond_channels=CC)
    with pytest.raises(ValueError):
        cblock(torch.randn(B, C, T), torch.randn(B, CC, T + 1))


# ============================================================================ dtype / device


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("norm", ALL_NORMS)
@pytest.mark.parametrize("device", DEVICES)
def test_blocks_float32_and_bf16_autocast(device, norm):
    torch.manual_seed(12)
    tb = TransformerBlock(DIM, HEADS, norm=norm, act="rational", qk_norm=True).to(device).eval()
    gb = GatedSSMBlock(C, d_state=8, cond_channels=CC, norm=norm,
                       zero_init_cond=False).to(device).eval()
    x = torch.randn(B, L, DIM, device=device)
    u, c = torch.randn(B, C, T, device=device), torch.randn(B, CC, device=device)
    y32 = tb(x)
    r32, s32 = gb(u, c)
    assert y32.dtype == r32.dtype == s32.dtype == torch.float32
    assert y32.device.type == r32.device.type == device
    with torch.autocast(device, dtype=torch.bfloat16):
        y16 = tb(x)
        r16, s16 = gb(u, c)
    for out in (y16, r16, s16):
        assert torch.isfinite(out).all()
    assert _rel_err(y16, y32) < 5e-2
    assert _rel_err(r16, r32) < 5e-2
    assert _rel_err(s16, s32) < 5e-2
    # Backward under autocast (training mode) reaches every parameter.
    tb.train()
    gb.train()
    with torch.autocast(device, dtype=torch.bfloat16):
        loss = tb(x).float().square().mean() + sum(o.float().square().mean() for o in gb(u, c))
    loss.backward()
    _check_grads(tb)
    _check_grads(gb)
