"""MultiHeadAttention against a naive float64 softmax(QKᵀ/√d)V, masks, QK-norm and rotary."""

from __future__ import annotations

import math

import pytest
import torch

from brainmill.nn.attention import MultiHeadAttention
from brainmill.nn.positions import RotaryEmbedding

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]


def _layer_norm(t, ln):
    if not isinstance(ln, torch.nn.LayerNorm):
        return t
    mu = t.mean(-1, keepdim=True)
    var = ((t - mu) ** 2).mean(-1, keepdim=True)
    return (t - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def naive_attention(m, x, context=None, kpm=None, blocked=None, additive=None, rope=None):
    """Reference: explicit projections, logits, −∞ masking and softmax, all in float64."""
    c = x if context is None else context
    b, n_q, _ = x.shape
    n_k = c.shape[1]
    h, d = m.n_heads, m.head_dim

    def proj(lin, t, n):
        return (t @ lin.weight.T + lin.bias).view(b, n, h, d).transpose(1, 2)

    q = _layer_norm(proj(m.q_proj, x, n_q), m.q_norm)
    k = _layer_norm(proj(m.k_proj, c, n_k), m.k_norm)
    v = proj(m.v_proj, c, n_k)
    if rope is not None:
        q, k = rope(q, k)
    logits = q @ k.transpose(-1, -2) / math.sqrt(d)
    if additive is not None:
        logits = logits + additive
    if blocked is not None:
        logits = logits.masked_fill(blocked, -math.inf)
    if kpm is not None:
        logits = logits.masked_fill(kpm[:, None, None, :], -math.inf)
    p = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # fully masked rows → 0
    o = (p @ v).transpose(1, 2).reshape(b, n_q, h * d)
    return o @ m.out_proj.weight.T + m.out_proj.bias


def make(dim=16, heads=4, qk_norm=False, seed=0):
    torch.manual_seed(seed)
    m = MultiHeadAttention(dim, heads, qk_norm=qk_norm).double().eval()
    if qk_norm:  # non-trivial affine so the test sees it
        with torch.no_grad():
            for ln in (m.q_norm, m.k_norm):
                ln.weight.uniform_(0.5, 1.5)
                ln.bias.normal_(0, 0.1)
    return m


@pytest.mark.parametrize("qk_norm", [False, True])
def test_self_attention_equals_naive(qk_norm):
    m = make(qk_norm=qk_norm)
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    torch.testing.assert_close(m(x), naive_attention(m, x), atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("qk_norm", [False, True])
def test_key_padding_mask_equals_naive_and_ignores_padded_values(qk_norm):
    m = make(qk_norm=qk_norm, seed=1)
    x = torch.randn(3, 6, 16, dtype=torch.float64)
    lengths = torch.tensor([6, 4, 1])
    kpm = torch.arange(6)[None, :] >= lengths[:, None]  # True = padded
    out = m(x, key_padding_mask=kpm)
    torch.testing.assert_close(out, naive_attention(m, x, kpm=kpm), atol=1e-12, rtol=1e-10)
    # Whatever sits in the padded key positions does not reach the unpadded queries' output.
    x2 = x.clone()
    x2[kpm] = 100.0 * torch.randn(int(kpm.sum()), 16, dtype=torch.float64)
    out2 = m(x2, key_padding_mask=kpm)
    keep = ~kpm
    torch.testing.assert_close(out2[keep], out[keep], atol=1e-12, rtol=1e-10)


def test_cross_attention_different_lengths_equals_naive():
    m = make(dim=12, heads=3, qk_norm=True, seed=2)
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    ctx = torch.randn(2, 9, 12, dtype=torch.float64)
    kpm = torch.zeros(2, 9, dtype=torch.bool)
    kpm[1, 6:] = True
    out = m(x, context=ctx, key_padding_mask=kpm)
    assert out.shape == (2, 5, 12)
    torch.testing.assert_close(
        out, naive_attention(m, x, context=ctx, kpm=kpm), atol=1e-12, rtol=1e-10
    )
    # Without a mask too, and the context really is what is attended to.
    torch.testing.assert_close(
        m(x, context=ctx), naive_attention(m, x, context=ctx), atol=1e-12, rtol=1e-10
    )
    assert not torch.allclose(m(x, context=ctx), m(x, context=ctx.flip(0)))


def test_bool_attn_mask_true_blocks_and_causal_mask_is_causal():
    m = make(seed=3)
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    causal = torch.ones(6, 6, dtype=torch.bool).triu(1)  # True = not attended
    out = m(x, attn_mask=causal)
    torch.testing.assert_close(out, naive_attention(m, x, blocked=causal), atol=1e-12, rtol=1e-10)
    x2 = x.clone()
    x2[:, 4:] = torch.randn(2, 2, 16, dtype=torch.float64)
    torch.testing.assert_close(m(x2, attn_mask=causal)[:, :4], out[:, :4])
    # combined with key padding
    kpm = torch.tensor([[False] * 6, [False] * 3 + [True] * 3])
    torch.testing.assert_close(
        m(x, key_padding_mask=kpm, attn_mask=causal),
        naive_attention(m, x, kpm=kpm, blocked=causal),
        atol=1e-12,
        rtol=1e-10,
    )


def test_additive_float_attn_mask_with_neg_inf():
    m = make(seed=4)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    additive = torch.randn(4, 5, 5, dtype=torch.float64)  # per head, broadcast over batch
    additive[:, 0, 3] = -math.inf
    kpm = torch.tensor([[False] * 5, [False] * 4 + [True]])
    out = m(x, key_padding_mask=kpm, attn_mask=additive)
    torch.testing.assert_close(
        out, naive_attention(m, x, kpm=kpm, additive=additive), atol=1e-12, rtol=1e-10
    )


def test_fully_masked_query_gives_zero_attention_not_nan():
    m = make(seed=5)
    x = torch.randn(2, 4, 16, dtype=torch.float64, requires_grad=True)
    kpm = torch.tensor([[False, False, True, True], [True] * 4])
    out = m(x, key_padding_mask=kpm)
    assert torch.isfinite(out).all()
    # batch element 1 attends to nothing: the heads give 0, so the output is the out-bias
    torch.testing.assert_close(out[1], m.out_proj.bias.expand(4, 16))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_qk_norm_logits_follow_formula_and_are_scale_invariant():
    """z_ij = ⟨LN(q_i), LN(k_j)⟩/√d_h: unchanged when W_q, W_k are scaled; |z| ≤ √d_h."""
    torch.manual_seed(6)
    m = MultiHeadAttention(16, 2, qk_norm=True).double()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    logits = m.attention_logits(x)
    torch.testing.assert_close(
        logits, _naive_logits(m, x), atol=1e-12, rtol=1e-10
    )
    assert logits.abs().max() <= math.sqrt(m.head_dim) + 1e-9  # identity affine at init
    with torch.no_grad():
        for lin in (m.q_proj, m.k_proj):
            lin.weight.mul_(100.0)
            lin.bias.mul_(100.0)
    # Scale invariance is exact up to LayerNorm's eps (1e-5, now 1e4 times smaller relative to
    # the variance): the scaled logits equal the eps-free formula, and the old ones nearly.
    scaled = m.attention_logits(x)
    torch.testing.assert_close(scaled, _naive_logits(m, x, eps=0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(scaled, logits, atol=1e-3, rtol=0)

    plain = MultiHeadAttention(16, 2, qk_norm=False).double()
    before = plain.attention_logits(x)
    with torch.no_grad():
        for lin in (plain.q_proj, plain.k_proj):
            lin.weight.mul_(100.0)
            lin.bias.mul_(100.0)
    torch.testing.assert_close(plain.attention_logits(x), 1e4 * before)


def _naive_logits(m, x, eps=1e-5):
    b, n, _ = x.shape

    def proj(lin):
        return (x @ lin.weight.T + lin.bias).view(b, n, m.n_heads, m.head_dim).transpose(1, 2)

    def ln(t):
        return (t - t.mean(-1, keepdim=True)) / torch.sqrt(t.var(-1, unbiased=False,
                                                                keepdim=True) + eps)

    return ln(proj(m.q_proj)) @ ln(proj(m.k_proj)).transpose(-1, -2) / math.sqrt(m.head_dim)


@pytest.mark.parametrize("qk_norm", [False, True])
def test_rotary_equals_naive_and_makes_attention_position_aware(qk_norm):
    m = make(qk_norm=qk_norm, seed=7)
    rope = RotaryEmbedding(m.head_dim)
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    out = m(x, rope=rope)
    torch.testing.assert_close(out, naive_attention(m, x, rope=rope), atol=1e-12, rtol=1e-10)
    # Without positions, self-attention is permutation-equivariant; with rotary it is not.
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    torch.testing.assert_close(m(x[:, perm]), m(x)[:, perm])
    assert not torch.allclose(m(x[:, perm], rope=rope), out[:, perm])


def test_rotary_logits_depend_only_on_relative_position():
    """Same token at every position: with rotary, z_mn is a function of m − n (Toeplitz)."""
    m = make(qk_norm=True, seed=10)
    rope = RotaryEmbedding(m.head_dim)
    x = torch.randn(1, 1, 16, dtype=torch.float64).expand(1, 7, 16)
    z = m.attention_logits(x, rope=rope)[0]  # (heads, 7, 7)
    for lag in range(-6, 7):
        diag = torch.diagonal(z, offset=lag, dim1=-2, dim2=-1)
        torch.testing.assert_close(diag, diag[:, :1].expand_as(diag), atol=1e-12, rtol=0)
    assert (z[:, 0, 1] - z[:, 0, 2]).abs().max() > 1e-6  # but not constant
    flat = m.attention_logits(x)[0]
    torch.testing.assert_close(flat, flat[:, :1, :1].expand_as(flat))  # no rope: no position


def test_dropout_only_in_training_and_bad_shapes():
    torch.manual_seed(8)
    m = MultiHeadAttention(8, 2, dropout=0.5)
    x = torch.randn(2, 5, 8)
    m.eval()
    torch.testing.assert_close(m(x), m(x))
    m.train()
    assert not torch.allclose(m(x), m(x))
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="key_padding_mask"):
        m(x, key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="context"):
        m(x, context=torch.randn(2, 5, 6))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("qk_norm", [False, True])
def test_runs_float32_and_under_bf16_autocast(device, qk_norm):
    torch.manual_seed(9)
    m = MultiHeadAttention(16, 4, qk_norm=qk_norm).to(device)
    rope = RotaryEmbedding(4).to(device)
    x = torch.randn(2, 6, 16, device=device)
    ctx = torch.randn(2, 3, 16, device=device)
    kpm = torch.zeros(2, 6, dtype=torch.bool, device=device)
    kpm[1, 4:] = True
    causal = torch.ones(6, 6, dtype=torch.bool, device=device).triu(1)
    y = m(x, key_padding_mask=kpm, attn_mask=causal, rope=rope)
    assert y.shape == (2, 6, 16) and y.dtype == torch.float32 and torch.isfinite(y).all()
    additive = torch.zeros(6, 6, device=device).masked_fill(causal, -math.inf)
    with torch.autocast(device, dtype=torch.bfloat16):
        ys = m(x, key_padding_mask=kpm, rope=rope)
        yc = m(x, context=ctx)
        ya = m(x, key_padding_mask=kpm, attn_mask=additive)
    for out in (ys, yc, ya):
        assert out.shape == (2, 6, 16) and torch.isfinite(out).all()
    ys.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
