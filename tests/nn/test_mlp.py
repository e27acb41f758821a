"""The feed-forward block: composition, gated widths, dropout, devices."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brainmill.nn.activations import CRReLU, GroupRational, SwiGLU
from brainmill.nn.mlp import MLP
from brainmill.nn.registry import ACTS

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="CUDA is not available")),
]


@pytest.mark.parametrize("act", sorted(ACTS))
def test_mlp_is_linear_act_linear(act):
    torch.manual_seed(0)
    mlp = MLP(12, 32, act=act).double()
    gated = act == "swiglu"
    assert mlp.fc1.in_features == 12 and mlp.fc1.out_features == (64 if gated else 32)
    assert mlp.fc2.in_features == 32 and mlp.fc2.out_features == 12
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    h = x @ mlp.fc1.weight.T + mlp.fc1.bias
    if act == "gelu":
        h = F.gelu(h)
    elif act == "swiglu":
        h = F.silu(h[..., :32]) * h[..., 32:]
    elif act == "crrelu":
        h = F.relu(h) + mlp.act.epsilon * h * torch.exp(-(h**2) / 2)
    else:
        assert isinstance(mlp.act, GroupRational) and mlp.act.num_groups == 8
        h = mlp.act(h)
    expected = h @ mlp.fc2.weight.T + mlp.fc2.bias
    torch.testing.assert_close(mlp(x), expected)


def test_mlp_accepts_a_module_and_no_bias():
    mlp = MLP(8, 16, act=SwiGLU(), bias=False)
    assert mlp.gated and mlp.fc1.out_features == 32
    assert mlp.fc1.bias is None and mlp.fc2.bias is None
    assert mlp(torch.randn(3, 8)).shape == (3, 8)
    assert isinstance(MLP(8, 16, act=CRReLU()).act, CRReLU)


def test_mlp_dropout_only_in_training():
    torch.manual_seed(0)
    mlp = MLP(8, 64, dropout=0.5)
    x = torch.randn(4, 8)
    assert not torch.allclose(mlp(x), mlp(x))
    mlp.eval()
    torch.testing.assert_close(mlp(x), mlp.fc2(F.gelu(mlp.fc1(x))))


def test_mlp_unknown_activation():
    with pytest.raises(ValueError, match="gelu"):
        MLP(8, 16, act="relu6")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("act", sorted(ACTS))
def test_mlp_runs_in_float32_and_bfloat16_autocast(act, device):
    mlp = MLP(16, 32, act=act).to(device)
    for autocast in (False, True):
        x = torch.randn(2, 5, 16, device=device, requires_grad=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            y = mlp(x)
        assert y.shape == (2, 5, 16) and torch.isfinite(y).all()
        assert y.dtype == (torch.bfloat16 if autocast else torch.float32)
        y.float().sum().backward()
        assert torch.isfinite(x.grad).all()
