"""Position encodings: sinusoidal table, learned table, rotary relative-position property."""

from __future__ import annotations

import math

import pytest
import torch

from brainmill.nn.positions import LearnedPosition, RotaryEmbedding, SinusoidalPosition

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]


def test_sinusoidal_values_match_formula():
    dim, max_len = 6, 20
    layer = SinusoidalPosition(dim, max_len)
    x = torch.zeros(2, 11, dim)
    y = layer(x)
    for p in (0, 3, 10):
        for i in range(dim // 2):
            angle = p / 10000 ** (2 * i / dim)
            assert y[1, p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert y[1, p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_odd_dim_and_too_long():
    layer = SinusoidalPosition(5, 8)
    y = layer(torch.zeros(1, 8, 5))
    assert y.shape == (1, 8, 5)
    assert y[0, 2, 4].item() == pytest.approx(math.sin(2 / 10000 ** (4 / 5)), abs=1e-6)
    with pytest.raises(ValueError, match="max_len"):
        layer(torch.zeros(1, 9, 5))
    assert "table" not in layer.state_dict()


def test_learned_position_adds_trainable_rows():
    torch.manual_seed(0)
    layer = LearnedPosition(4, 10)
    x = torch.randn(3, 7, 4)
    y = layer(x)
    torch.testing.assert_close(y - x, layer.weight[:7].expand(3, 7, 4))
    y.sum().backward()
    assert torch.all(layer.weight.grad[:7] == 3.0)
    assert torch.all(layer.weight.grad[7:] == 0.0)
    assert layer.weight.abs().max() <= 0.04 + 1e-7
    with pytest.raises(ValueError, match="max_len"):
        layer(torch.zeros(1, 11, 4))


def test_rotary_relative_position_property():
    torch.manual_seed(0)
    rope = RotaryEmbedding(8)
    q = torch.randn(1, 1, 1, 8, dtype=torch.float64)
    k = torch.randn(1, 1, 1, 8, dtype=torch.float64)

    def score(m, n):
        qr, kr = rope(q, k, q_pos=torch.tensor([m]), k_pos=torch.tensor([n]))
        return (qr * kr).sum().item()

    # depends only on m − n ...
    assert score(5, 2) == pytest.approx(score(103, 100), abs=1e-10)
    assert score(0, 7) == pytest.approx(score(13, 20), abs=1e-10)
    # ... and does depend on it
    assert abs(score(5, 2) - score(5, 3)) > 1e-3
    # position 0 is the identity, and the rotation preserves norms
    qr, _ = rope(q, k, q_pos=torch.tensor([0]), k_pos=torch.tensor([0]))
    torch.testing.assert_close(qr, q)
    qr, _ = rope(q, k, q_pos=torch.tensor([37]), k_pos=torch.tensor([0]))
    assert qr.norm().item() == pytest.approx(q.norm().item(), rel=1e-12)


def test_rotary_matches_pairwise_rotation_formula():
    """Feature pair (i, i + d/2) at position m is rotated by m·base^(−2i/d)."""
    torch.manual_seed(1)
    d, m = 6, 4
    rope = RotaryEmbedding(d, base=100.0)
    x = torch.randn(1, 1, m + 1, d, dtype=torch.float64)
    xr, _ = rope(x, x)
    for i in range(d // 2):
        theta = m * 100.0 ** (-2 * i / d)
        a, b = x[0, 0, m, i], x[0, 0, m, i + d // 2]
        assert xr[0, 0, m, i].item() == pytest.approx(
            (a * math.cos(theta) - b * math.sin(theta)).item(), abs=1e-12
        )
        assert xr[0, 0, m, i + d // 2].item() == pytest.approx(
            (b * math.cos(theta) + a * math.sin(theta)).item(), abs=1e-12
        )


def test_rotary_rejects_odd_or_wrong_width():
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(5)
    with pytest.raises(ValueError, match="head_dim"):
        RotaryEmbedding(4)(torch.zeros(1, 1, 2, 6), torch.zeros(1, 1, 2, 6))


@pytest.mark.parametrize("device", DEVICES)
def test_positions_run_float32_and_autocast(device):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8, device=device)
    for layer in (SinusoidalPosition(8, 16), LearnedPosition(8, 16)):
        layer = layer.to(device)
        assert layer(x).dtype == torch.float32
        with torch.autocast(device, dtype=torch.bfloat16):
            y = layer(x.bfloat16())
        assert y.shape == x.shape and y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    rope = RotaryEmbedding(4).to(device)
    q = torch.randn(2, 3, 5, 4, device=device, dtype=torch.bfloat16)
    k = torch.randn(2, 3, 7, 4, device=device, dtype=torch.bfloat16)
    with torch.autocast(device, dtype=torch.bfloat16):
        qr, kr = rope(q, k)
    assert qr.shape == q.shape and kr.shape == k.shape
    assert qr.dtype == kr.dtype == torch.bfloat16
    assert torch.isfinite(qr).all() and torch.isfinite(kr).all()
