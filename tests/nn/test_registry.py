"""Norms and activations by name, in both tensor layouts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from brainmill.nn import registry
from brainmill.nn.activations import CRReLU, GroupRational, SwiGLU
from brainmill.nn.norms import BatchChannelNorm, EvoNormB0, EvoNormS0, UnifiedNorm
from brainmill.nn.registry import ACTS, NORMS, make_act, make_norm

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="CUDA is not available")),
]
NORM_NAMES = ["layernorm", "rmsnorm", "unified", "batch_channel", "evonorm_s0", "evonorm_b0"]
ACT_NAMES = ["gelu", "swiglu", "rational", "crrelu"]
NATIVE = {"layernorm": nn.LayerNorm, "rmsnorm": nn.RMSNorm, "unified": UnifiedNorm,
          "batch_channel": BatchChannelNorm, "evonorm_s0": EvoNormS0, "evonorm_b0": EvoNormB0}


def test_registered_names():
    assert sorted(NORMS) == sorted(NORM_NAMES)
    assert sorted(ACTS) == sorted(ACT_NAMES)
    assert set(registry.NORM_LAYOUTS) == set(NORMS)


def _with_random_affine(module):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module


@pytest.mark.parametrize("name", NORM_NAMES)
@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_make_norm_normalises_the_channel_axis_of_each_layout(name, layout):
    dim = 16
    norm = _with_random_affine(make_norm(name, dim, layout=layout)).double()
    native_layout = registry.NORM_LAYOUTS[name]
    inner = norm if layout == native_layout else norm.module
    assert isinstance(inner, NATIVE[name])
    # The same module applied by hand to the tensor transposed to its native layout.
    reference = _with_random_affine(NATIVE[name](dim)).double()
    reference.load_state_dict(inner.state_dict())
    x = torch.randn(3, 7, dim, dtype=torch.float64)  # (batch, tokens, dim)
    if layout == "channels_first":
        x = x.transpose(1, 2).contiguous()  # (batch, dim, length)
    y = norm(x)
    assert y.shape == x.shape
    x_native = x if layout == native_layout else x.transpose(1, 2)
    y_native = reference(x_native)
    expected = y_native if layout == native_layout else y_native.transpose(1, 2)
    torch.testing.assert_close(y, expected)


def test_make_norm_channels_last_layernorm_uses_the_last_axis():
    x = torch.randn(2, 5, 8) * 3 + 1
    y = make_norm("layernorm", 8)(x)
    torch.testing.assert_close(y.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    y = make_norm("layernorm", 2, layout="channels_first")(x.transpose(1, 2)[:, :2])
    assert y.shape == (2, 2, 5)


def test_make_norm_channels_last_bcn_normalises_channel_groups():
    norm = make_norm("batch_channel", 8, num_groups=2)
    x = torch.randn(4, 6, 8) * 5 + 2  # (batch, tokens, channels)
    y = norm(x)
    per_group = y.reshape(4, 6, 2, 4).permute(0, 2, 1, 3).reshape(4, 2, -1)
    torch.testing.assert_close(per_group.mean(-1), torch.zeros(4, 2), atol=1e-5, rtol=0)


def test_make_norm_passes_kwargs_and_pad_mask():
    norm = make_norm("unified", 8, layout="channels_first", warmup_iters=5)
    assert norm.module.warmup_iters == 5
    x = torch.randn(2, 8, 6)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[1, 4:] = True
    y = norm(x, pad_mask=pad)
    x2 = x.transpose(1, 2)[~pad].square().mean(0)
    torch.testing.assert_close(norm.module.running_var, 0.9 + 0.1 * x2)
    assert y.shape == x.shape


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError) as err:
        make_norm("batchnorm", 8)
    assert all(name in str(err.value) for name in NORM_NAMES)
    with pytest.raises(ValueError) as err:
        make_act("relu")
    assert all(name in str(err.value) for name in ACT_NAMES)
    with pytest.raises(ValueError, match="channels_first"):
        make_norm("layernorm", 8, layout="nchw")


def test_make_act():
    assert isinstance(make_act("gelu"), nn.GELU)
    assert isinstance(make_act("swiglu", 16), SwiGLU) and make_act("swiglu").gated
    assert isinstance(make_act("crrelu"), CRReLU)
    rational = make_act("rational", dim=64)
    assert isinstance(rational, GroupRational) and rational.num_groups == 8
    assert rational.init == "swish"
    assert make_act("rational", dim=12).num_groups == 4
    assert make_act("rational").num_groups == 8
    assert make_act("rational", dim=16, init="identity").init == "identity"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NORM_NAMES)
@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_made_norms_run_in_float32_and_bfloat16_autocast(name, layout, device):
    norm = make_norm(name, 16, layout=layout).to(device)
    shape = (3, 7, 16) if layout == "channels_last" else (3, 16, 7)
    for autocast in (False, True):
        x = torch.randn(*shape, device=device, requires_grad=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            y = norm(x)
        assert y.shape == shape and torch.isfinite(y).all()
        y.float().square().mean().backward()
        assert torch.isfinite(x.grad).all()
