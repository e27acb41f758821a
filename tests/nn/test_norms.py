"""Normalisation layers against their formulas (layers.md §1 UN, §3 BCN/WS, §4 EvoNorm).

Every expected value is written out independently here, not taken from the module.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from brainmill.nn.norms import (
    BatchChannelNorm,
    EstimatedBatchNorm,
    EvoNormB0,
    EvoNormS0,
    UnifiedNorm,
    WSConv1d,
    WSLinear,
    fit_num_groups,
)

EPS = 1e-5
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="CUDA is not available")),
]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=gen(seed), dtype=dtype)


def un64(dim, **kwargs) -> UnifiedNorm:
    """A float64 UN with random γ, β (so that they matter in every check)."""
    un = UnifiedNorm(dim, **kwargs).double()
    with torch.no_grad():
        un.weight.copy_(1.0 + 0.5 * randn(dim, seed=100))
        un.bias.copy_(0.3 * randn(dim, seed=101))
    return un


def sigma2_from_output(un: UnifiedNorm, x, y):
    """Recover σ² per channel from y = γ x / sqrt(σ² + eps) + β."""
    ratio = x / ((y - un.bias) / un.weight)  # = sqrt(σ² + eps), the same for every token
    return ratio.reshape(-1, x.shape[-1]).square().mean(0) - EPS


# =============================================================================================
# Unified Normalization
# =============================================================================================


def test_un_warmup_forward_is_batch_rms_without_centring():
    un = un64(6)
    x = randn(3, 5, 6, seed=1) + 2.0  # non-zero mean: centred statistics would differ
    y = un(x)
    x2 = x.square().mean(dim=(0, 1))
    expected = un.weight * x / torch.sqrt(x2 + EPS) + un.bias
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(un.running_var, 0.9 + 0.1 * x2, rtol=0, atol=1e-12)
    assert int(un.iters) == 1
    torch.testing.assert_close(un.buffer_x2[1], x2)  # t = 1 → slot 1 of 4

    var = x.var(dim=(0, 1), unbiased=False)
    mean = x.mean(dim=(0, 1))
    centred = un.weight * (x - mean) / torch.sqrt(var + EPS) + un.bias
    assert (y - centred).abs().max() > 0.1


def test_un_uses_batch_statistics_throughout_warmup():
    un = un64(4, warmup_iters=50)
    for step in range(6):  # past the window (t > M) but still before warm-up ends
        x = randn(2, 7, 4, seed=10 + step) * (1 + step)
        y = un(x)
        x2 = x.square().mean(dim=(0, 1))
        torch.testing.assert_close(sigma2_from_output(un, x, y), x2, rtol=1e-9, atol=1e-9)


def test_un_without_warmup_smooths_once_the_window_is_full():
    un = un64(3, window_size=4, warmup_iters=0)
    seen = []
    for step in range(6):
        x = randn(2, 5, 3, seed=60 + step) * (1 + step)
        y = un(x)
        seen.append(x.square().mean(dim=(0, 1)))
        expected = seen[-1] if step < 4 else torch.stack(seen[-4:]).log().mean(0).exp()
        torch.testing.assert_close(sigma2_from_output(un, x, y), expected)


def test_un_geometric_mean_smoothing_after_warmup():
    un = un64(4, window_size=4, warmup_iters=10)
    un.iters.fill_(10)
    prefill = 0.2 + 3.0 * torch.rand(4, 4, generator=gen(2), dtype=torch.float64)
    un.buffer_x2.copy_(prefill)
    x = randn(3, 6, 4, seed=3) * 1.5
    y = un(x)  # t = 11, slot 11 % 4 = 3

    window = prefill.clone()
    window[3] = x.square().mean(dim=(0, 1))
    gm = window.log().mean(0).exp()
    am = window.mean(0)
    assert (am - gm).abs().min() > 1e-3  # the test can tell the two means apart
    sigma2 = sigma2_from_output(un, x, y)
    torch.testing.assert_close(sigma2, gm, rtol=1e-9, atol=1e-9)
    assert not torch.allclose(sigma2, am, rtol=1e-4)
    torch.testing.assert_close(un.buffer_x2, window)
    torch.testing.assert_close(un.running_var, 0.9 + 0.1 * gm)


def _outlier_setup(scale: float, filtration: bool = True):
    un = un64(4, window_size=4, warmup_iters=10, outlier_filtration=filtration)
    un.iters.fill_(10)
    un.buffer_x2.copy_(torch.tensor([[0.6, 1.4, 0.9, 1.2], [1.3, 0.7, 1.1, 0.8],
                                     [0.9, 1.1, 1.3, 0.7], [1.0, 0.9, 0.8, 1.3]],
                                    dtype=torch.float64))
    un.running_var.fill_(1.5)
    x = randn(4, 8, 4, seed=4)
    x = x / x.square().mean(dim=(0, 1)).sqrt() * scale  # x2 = scale² exactly
    return un, x


def test_un_outlier_filtration_skips_a_100x_batch():
    un, x = _outlier_setup(scale=100.0)
    before = un.buffer_x2.clone()
    ema_old = 0.1 * randn(4, seed=53)
    un.ema_gz.copy_(ema_old)
    x.requires_grad_(True)
    y = un(x)  # t = 11, slot 3
    xd = x.detach()
    x2 = xd.square().mean(dim=(0, 1))
    assert int(un.skip_counter) == 1
    torch.testing.assert_close(un.buffer_x2[3], torch.full((4,), 1.5, dtype=torch.float64))
    torch.testing.assert_close(un.buffer_x2[:3], before[:3])
    torch.testing.assert_close(sigma2_from_output(un, xd, y.detach()), x2)  # current x2 used
    torch.testing.assert_close(un.running_var, 0.9 * 1.5 + 0.1 * x2)

    # Backward of a skipped step: r = 1, the gz slot gets the old EMA, dx is centred by gz.
    dy = randn(*x.shape, seed=54)
    y.backward(dy)
    std = torch.sqrt(x2 + EPS)
    z = xd / std
    g = dy * un.weight.detach()
    gz = (g * z).mean(dim=(0, 1))
    torch.testing.assert_close(un.buffer_gz[3], ema_old)
    torch.testing.assert_close(un.ema_gz, 0.9 * ema_old + 0.1 * gz)
    torch.testing.assert_close(x.grad, (g - gz * z) / std, rtol=0, atol=1e-12)


def test_un_outlier_filtration_keeps_an_ordinary_batch():
    un, x = _outlier_setup(scale=1.0)
    y = un(x)
    assert int(un.skip_counter) == 0
    window = un.buffer_x2.clone()
    torch.testing.assert_close(window[3], x.square().mean(dim=(0, 1)))
    torch.testing.assert_close(sigma2_from_output(un, x, y), window.log().mean(0).exp())


def test_un_outlier_threshold_is_window_size_times_variance_of_sqrt_window():
    # Window ≈ 100 ± 20: Var(sqrt(window)) ≈ 0.5 but Var(window) ≈ 300. A 3× batch gives
    # AM − GM ≈ 18 per channel: above M·Var(sqrt) = 2, far below M·Var(window).
    un, x = _outlier_setup(scale=300.0 ** 0.5)
    un.buffer_x2.mul_(100.0)
    window = un.buffer_x2.clone()
    window[3] = 300.0
    am, gm = window.mean(0), window.log().mean(0).exp()
    rec = un.buffer_x2.sqrt().var()
    assert ((am - gm) > 4 * rec).any() and not ((am - gm) > 4 * un.buffer_x2.var()).any()
    un(x)
    assert int(un.skip_counter) == 1


def test_un_without_filtration_smooths_even_an_outlier():
    un, x = _outlier_setup(scale=100.0, filtration=False)
    y = un(x)
    assert int(un.skip_counter) == 0
    torch.testing.assert_close(sigma2_from_output(un, x, y), un.buffer_x2.log().mean(0).exp())


def test_un_backward_in_warmup_matches_the_approximate_formula():
    un = un64(5)
    ema_old = 0.2 * randn(5, seed=5)
    un.ema_gz.copy_(ema_old)
    x = randn(3, 4, 5, seed=6, ).requires_grad_(True)
    dy = randn(3, 4, 5, seed=7)
    un(x).backward(dy)

    xd = x.detach()
    sigma2 = xd.square().mean(dim=(0, 1))
    std = torch.sqrt(sigma2 + EPS)
    z = xd / std
    g = dy * un.weight.detach()  # r = 1 for t < 1000
    gz = (g * z).mean(dim=(0, 1))
    ema_new = 0.9 * ema_old + 0.1 * gz
    dx = (g - ema_new * z) / std
    torch.testing.assert_close(x.grad, dx, rtol=0, atol=1e-12)
    torch.testing.assert_close(un.ema_gz, ema_new)
    torch.testing.assert_close(un.buffer_gz[1], gz)
    torch.testing.assert_close(un.weight.grad, (dy * z).sum(dim=(0, 1)))
    torch.testing.assert_close(un.bias.grad, dy.sum(dim=(0, 1)))

    # The exact gradient of the same forward (autograd through the batch statistic) differs.
    xe = xd.clone().requires_grad_(True)
    ye = un.weight.detach() * xe / torch.sqrt(xe.square().mean(dim=(0, 1)) + EPS)
    ye.backward(dy)
    assert (xe.grad - x.grad).abs().max() > 1e-2


def test_un_gradcheck_fails_by_design():
    un = un64(3)
    x = randn(2, 3, 3, seed=8).requires_grad_(True)
    assert not torch.autograd.gradcheck(un, (x,), raise_exception=False)


@pytest.mark.parametrize("iters", [500, 2000])
def test_un_backward_after_warmup_uses_windows_and_compensation(iters):
    # Smoothing starts after T_w = 10 steps; the compensation r only after max(1000, T_w).
    m, t_w = 4, 10
    un = un64(6, window_size=m, warmup_iters=t_w)
    un.iters.fill_(iters)  # t = iters + 1, slot 1 of 4 in both cases
    buf_x2 = 0.5 + torch.rand(m, 6, generator=gen(9), dtype=torch.float64)
    buf_gz = 0.1 * randn(m, 6, seed=10)
    ema_old = 0.1 * randn(6, seed=11)
    rv_old = torch.tensor([1e-3, 0.5, 1.0, 2.0, 50.0, 0.8], dtype=torch.float64)
    un.buffer_x2.copy_(buf_x2)
    un.buffer_gz.copy_(buf_gz)
    un.ema_gz.copy_(ema_old)
    un.running_var.copy_(rv_old)
    x = randn(2, 5, 6, seed=12).requires_grad_(True)
    dy = randn(2, 5, 6, seed=13)
    y = un(x)
    y.backward(dy)

    xd = x.detach()
    window = buf_x2.clone()
    window[1] = xd.square().mean(dim=(0, 1))
    sigma2 = window.log().mean(0).exp()
    std = torch.sqrt(sigma2 + EPS)
    if iters < 1000:
        r = torch.ones(6, dtype=torch.float64)
    else:
        r = (std / torch.sqrt(rv_old + EPS)).clamp(0.2, 5.0)
        assert r.min() == 0.2 and r.max() == 5.0 and ((r > 0.2) & (r < 5.0)).any()
    z = xd / std
    gamma = un.weight.detach()
    torch.testing.assert_close(y.detach(), gamma * z + un.bias.detach())
    g = dy * gamma * r
    gz = (g * z).mean(dim=(0, 1))
    gz_window = buf_gz.clone()
    gz_window[1] = gz
    ema_new = 0.9 * ema_old + 0.1 * gz_window.mean(0)
    torch.testing.assert_close(x.grad, (g - ema_new * z) / std, rtol=0, atol=1e-12)
    torch.testing.assert_close(un.ema_gz, ema_new)
    torch.testing.assert_close(un.weight.grad, (dy * r * z).sum(dim=(0, 1)))


def test_un_padding_is_ignored_by_the_statistics():
    x = randn(2, 5, 3, seed=14)
    pad = torch.zeros(2, 5, dtype=torch.bool)
    pad[0, 3:] = True
    pad[1, 4:] = True
    x_changed = x.clone()
    x_changed[pad] = 1e3 * randn(int(pad.sum()), 3, seed=15)
    un_a, un_b = un64(3), un64(3)
    y_a, y_b = un_a(x, pad_mask=pad), un_b(x_changed, pad_mask=pad)
    torch.testing.assert_close(y_a[~pad], y_b[~pad], rtol=0, atol=1e-12)
    x2 = x[~pad].square().mean(0)
    torch.testing.assert_close(un_a.running_var, 0.9 + 0.1 * x2)
    with pytest.raises(ValueError, match="pad_mask"):
        un_a(x, pad_mask=pad[:, :4])


def test_un_eval_uses_running_statistics():
    un = un64(5).eval()
    un.running_var.copy_(0.5 + torch.rand(5, generator=gen(16), dtype=torch.float64))
    x = randn(2, 3, 5, seed=17)
    expected = un.weight * x / torch.sqrt(un.running_var + EPS) + un.bias
    torch.testing.assert_close(un(x), expected, rtol=0, atol=1e-12)
    assert int(un.iters) == 0


@pytest.mark.parametrize("bias", [True, False])
def test_un_fold_into_linear_float64(bias):
    un = un64(8)
    un(randn(4, 6, 8, seed=18) * 3)  # a training step, so running_var is not all ones
    un.running_var.mul_(0.5 + torch.rand(8, generator=gen(19), dtype=torch.float64))
    un.eval()
    torch.manual_seed(0)
    lin = nn.Linear(8, 7, bias=bias).double()
    folded = un.fold_into(lin)
    x = randn(3, 4, 8, seed=20)
    torch.testing.assert_close(folded(x), lin(un(x)), rtol=0, atol=1e-12)
    assert folded.weight.dtype == torch.float64 and folded.bias is not None


def test_un_fold_into_linear_float32_and_rejects_wrong_width():
    un = UnifiedNorm(8)
    with torch.no_grad():
        un.weight.uniform_(0.5, 2.0)
        un.bias.normal_()
        un.running_var.uniform_(0.2, 3.0)
    un.train()  # fold_into uses the running statistics whatever the mode
    lin = nn.Linear(8, 4)
    folded = un.fold_into(lin)
    x = torch.randn(5, 8)
    torch.testing.assert_close(folded(x), lin(un.eval()(x)), rtol=0, atol=1e-5)
    with pytest.raises(ValueError):
        un.fold_into(nn.Linear(7, 4))


def test_un_window_of_one_never_smooths():
    un = un64(3, window_size=1, warmup_iters=0)
    un.iters.fill_(5000)
    x = randn(2, 4, 3, seed=21)
    y = un(x)
    torch.testing.assert_close(sigma2_from_output(un, x, y), x.square().mean(dim=(0, 1)))


def test_un_restart_warmup_and_two_dim_input():
    un = un64(3)
    un(randn(4, 3, seed=22))  # (N, C) input
    assert int(un.iters) == 1
    un.restart_warmup()
    assert int(un.iters) == 0


# =============================================================================================
# Weight Standardization
# =============================================================================================


def ws_reference(w: torch.Tensor) -> torch.Tensor:
    """(W − mean) / (unbiased std + eps) per output filter, written out with explicit loops."""
    out = torch.empty_like(w)
    for o in range(w.shape[0]):
        flat = w[o].flatten()
        n = flat.numel()
        mu = flat.sum() / n
        std = torch.sqrt(((flat - mu) ** 2).sum() / (n - 1))
        out[o] = (w[o] - mu) / (std + EPS)
    return out


def test_ws_conv1d_matches_formula_and_is_standardised():
    torch.manual_seed(0)
    conv = WSConv1d(4, 6, kernel_size=3, padding=1).double()
    x = randn(2, 4, 9, seed=23)
    w_hat = ws_reference(conv.weight.detach())
    torch.testing.assert_close(conv(x), F.conv1d(x, w_hat, conv.bias, padding=1))
    flat = w_hat.reshape(6, -1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(6, dtype=torch.float64))
    torch.testing.assert_close(flat.std(1), torch.ones(6, dtype=torch.float64), rtol=1e-3,
                               atol=0)


def test_ws_linear_matches_formula():
    torch.manual_seed(0)
    lin = WSLinear(5, 3).double()
    x = randn(4, 5, seed=24)
    torch.testing.assert_close(lin(x), x @ ws_reference(lin.weight.detach()).T + lin.bias)


@pytest.mark.parametrize("cls,args,shape", [(WSConv1d, (4, 6, 3), (2, 4, 9)),
                                            (WSLinear, (5, 3), (4, 5))])
def test_ws_invariant_to_filter_scale_and_shift(cls, args, shape):
    torch.manual_seed(0)
    layer = cls(*args)
    x = torch.randn(*shape)
    y = layer(x)
    with torch.no_grad():
        shift = torch.randn(layer.weight.shape[0]).view(-1, *([1] * (layer.weight.ndim - 1)))
        layer.weight.mul_(7.0).add_(shift)
    torch.testing.assert_close(layer(x), y, rtol=1e-3, atol=1e-4)
    layer(x).sum().backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


# =============================================================================================
# Batch-Channel Normalization
# =============================================================================================


def bcn_reference(x, g, bn_w, bn_b, gamma, beta, mean=None, var=None):
    """BN (batch statistics unless given) → per-sample group norm → per-group affine."""
    dims = [0] + list(range(2, x.ndim))
    shape = [1, -1] + [1] * (x.ndim - 2)
    if mean is None:
        mean = x.mean(dim=dims)
        var = ((x - mean.view(shape)) ** 2).mean(dim=dims)
    xb = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + EPS) * bn_w.view(shape) \
        + bn_b.view(shape)
    n = x.shape[0]
    grouped = xb.reshape(n, g, -1)
    gm = grouped.mean(-1, keepdim=True)
    gv = ((grouped - gm) ** 2).mean(-1, keepdim=True)
    out = (grouped - gm) / torch.sqrt(gv + EPS) * gamma.view(1, g, 1) + beta.view(1, g, 1)
    return out.reshape(x.shape)


def _random_bcn(c, g, **kwargs):
    bcn = BatchChannelNorm(c, num_groups=g, **kwargs).double()
    with torch.no_grad():
        bcn.weight.copy_(1 + 0.3 * randn(1, g, 1, seed=25))
        bcn.bias.copy_(0.5 * randn(1, g, 1, seed=26))
        bcn.bn.weight.copy_(1 + 0.3 * randn(c, seed=27))
        bcn.bn.bias.copy_(0.5 * randn(c, seed=28))
    return bcn


@pytest.mark.parametrize("shape", [(4, 64, 10), (3, 64, 4, 5)])
def test_bcn_train_matches_formula(shape):
    bcn = _random_bcn(64, 32)
    x = randn(*shape, seed=29) * 2 + 1
    expected = bcn_reference(x, 32, bcn.bn.weight, bcn.bn.bias, bcn.weight, bcn.bias)
    torch.testing.assert_close(bcn(x), expected.detach())


def test_bcn_at_init_is_group_norm_of_batch_norm():
    bcn = BatchChannelNorm(64).double()
    x = randn(4, 64, 6, seed=30)
    expected = F.group_norm(F.batch_norm(x, None, None, training=True, eps=EPS), 32, eps=EPS)
    torch.testing.assert_close(bcn(x), expected)


def test_bcn_eval_uses_running_stats_and_per_sample_group_norm():
    bcn = _random_bcn(8, 4)
    mean, var = torch.zeros(8, dtype=torch.float64), torch.ones(8, dtype=torch.float64)
    for step in range(3):
        x = randn(5, 8, 6, seed=31 + step) * 2 + 3
        bcn(x)
        n = x[:, 0].numel()
        mean = 0.9 * mean + 0.1 * x.mean(dim=(0, 2))
        var = 0.9 * var + 0.1 * x.var(dim=(0, 2), unbiased=False) * n / (n - 1)
    torch.testing.assert_close(bcn.bn.running_mean, mean)
    torch.testing.assert_close(bcn.bn.running_var, var)
    bcn.eval()
    x = randn(3, 8, 6, seed=40) * 2 + 3
    y = bcn(x)
    expected = bcn_reference(x, 4, bcn.bn.weight, bcn.bn.bias, bcn.weight, bcn.bias, mean, var)
    torch.testing.assert_close(y, expected.detach())
    group_means = y.reshape(3, 4, -1).mean(-1)
    torch.testing.assert_close(group_means, bcn.bias.detach().view(1, 4).expand(3, 4))


def test_bcn_parameter_shapes_and_group_fallback():
    bcn = BatchChannelNorm(64)
    assert bcn.bn.weight.shape == (64,) and bcn.bn.bias.shape == (64,)
    assert bcn.weight.shape == (1, 32, 1) and bcn.bias.shape == (1, 32, 1)
    assert BatchChannelNorm(48).num_groups == 24
    assert BatchChannelNorm(22, num_groups=8).num_groups == 2


def test_estimated_batch_norm_frozen_and_moving():
    est = EstimatedBatchNorm(3).double()
    x = randn(4, 3, 5, seed=41) + 2
    torch.testing.assert_close(est(x), x / (1 + EPS) ** 0.5)  # r = 0: μ̂ = 0, σ̂² = 1 stay

    mu_old = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    var_old = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    est.running_mean.copy_(mu_old)
    est.running_var.copy_(var_old)
    est.estbn_moving_speed.fill_(0.3)
    y = est(x)
    mu = 0.7 * mu_old + 0.3 * x.mean(dim=(0, 2))
    var = 0.7 * var_old + 0.3 * ((x - mu_old.view(1, 3, 1)) ** 2).mean(dim=(0, 2))
    torch.testing.assert_close(est.running_mean, mu)
    torch.testing.assert_close(est.running_var, var)
    torch.testing.assert_close(y, (x - mu.view(1, 3, 1)) / torch.sqrt(var.view(1, 3, 1) + EPS))


def test_bcn_with_estimate_runs_the_estimated_batch_step():
    bcn = BatchChannelNorm(8, num_groups=4, estimate=True).double()
    assert isinstance(bcn.bn, EstimatedBatchNorm)
    x = randn(1, 8, 6, seed=42)  # one sample: the point of the micro-batch variant
    expected = F.group_norm(x / (1 + EPS) ** 0.5, 4, eps=EPS)
    torch.testing.assert_close(bcn(x), expected)


# =============================================================================================
# EvoNorm
# =============================================================================================


def _random_evo(cls, c, **kwargs):
    evo = cls(c, **kwargs).double()
    with torch.no_grad():
        evo.weight.copy_(1 + 0.3 * randn(c, seed=43))
        evo.bias.copy_(0.5 * randn(c, seed=44))
        if evo.v is not None:
            evo.v.copy_(1 + 0.5 * randn(c, seed=45))
    return evo


def s0_reference(x, g, v, gamma, beta):
    n, c = x.shape[:2]
    grouped = x.reshape(n, g, -1)
    var = ((grouped - grouped.mean(-1, keepdim=True)) ** 2).mean(-1, keepdim=True)
    std = torch.sqrt(var + EPS).expand(-1, -1, grouped.shape[-1]).reshape(x.shape)
    shape = [1, c] + [1] * (x.ndim - 2)
    return x * torch.sigmoid(v.view(shape) * x) / std * gamma.view(shape) + beta.view(shape)


@pytest.mark.parametrize("shape", [(3, 64, 7), (2, 64, 3, 4)])
def test_evonorm_s0_matches_formula(shape):
    evo = _random_evo(EvoNormS0, 64)
    assert evo.num_groups == 32
    x = randn(*shape, seed=46) + 0.5
    expected = s0_reference(x, 32, evo.v, evo.weight, evo.bias).detach()
    torch.testing.assert_close(evo(x), expected, rtol=0, atol=1e-6)


def test_evonorm_s0_with_v_zero_is_half_x_over_group_std():
    evo = EvoNormS0(16, num_groups=4).double()
    with torch.no_grad():
        evo.v.zero_()
    x = randn(2, 16, 5, seed=47)
    grouped = x.reshape(2, 4, -1)
    std = grouped.var(-1, unbiased=False, keepdim=True).add(EPS).sqrt()
    expected = (0.5 * grouped / std).reshape(x.shape)
    torch.testing.assert_close(evo(x), expected)


def test_evonorm_s0_is_batch_independent_and_mode_independent():
    evo = _random_evo(EvoNormS0, 12, num_groups=4)
    x = randn(4, 12, 6, seed=48)
    y = evo(x)
    for i in range(4):
        torch.testing.assert_close(evo(x[i:i + 1]), y[i:i + 1])
    torch.testing.assert_close(evo.eval()(x), y)


def b0_reference(x, batch_var, v, gamma, beta):
    n, c = x.shape[:2]
    shape = [1, c] + [1] * (x.ndim - 2)
    flat = x.reshape(n, c, -1)
    inst_var = ((flat - flat.mean(-1, keepdim=True)) ** 2).mean(-1)
    inst_std = torch.sqrt(inst_var + EPS).view(n, c, *([1] * (x.ndim - 2)))
    left = torch.sqrt(batch_var + EPS).view(shape)
    den = torch.maximum(left, v.view(shape) * x + inst_std)
    return x / den * gamma.view(shape) + beta.view(shape)


def test_evonorm_b0_train_and_eval_match_formula():
    evo = _random_evo(EvoNormB0, 6)
    x = randn(4, 6, 5, seed=49) * 1.5 + 0.5
    y = evo(x)
    flat = x.transpose(0, 1).reshape(6, -1)
    batch_var = ((flat - flat.mean(1, keepdim=True)) ** 2).mean(1)
    torch.testing.assert_close(evo.moving_var, 0.9 + 0.1 * batch_var)
    torch.testing.assert_close(y, b0_reference(x, batch_var, evo.v, evo.weight,
                                               evo.bias).detach())
    evo.eval()
    x_eval = randn(2, 6, 5, seed=50)
    moving = evo.moving_var.clone()
    expected = b0_reference(x_eval, moving, evo.v, evo.weight, evo.bias).detach()
    torch.testing.assert_close(evo(x_eval), expected)
    torch.testing.assert_close(evo.moving_var, moving)  # eval does not update it


def test_evonorm_b0_with_v_zero_divides_by_max_of_batch_and_instance_std():
    evo = EvoNormB0(5).double()
    with torch.no_grad():
        evo.v.zero_()
    x = randn(3, 5, 8, seed=51)
    x[0] *= 10  # one loud sample: its instance std beats the batch std
    batch_std = x.var(dim=(0, 2), unbiased=False).add(EPS).sqrt().view(1, 5, 1)
    inst_std = x.var(dim=2, unbiased=False, keepdim=True).add(EPS).sqrt()
    assert (inst_std > batch_std).any() and (inst_std < batch_std).any()
    torch.testing.assert_close(evo(x), x / torch.maximum(batch_std, inst_std))


@pytest.mark.parametrize("cls", [EvoNormS0, EvoNormB0])
def test_evonorm_without_nonlinearity_is_affine_only(cls):
    evo = _random_evo(cls, 8, nonlinearity=False)
    assert evo.v is None
    x = randn(3, 8, 4, seed=52)
    assert torch.equal(evo(x), x * evo.weight.view(1, 8, 1) + evo.bias.view(1, 8, 1))


def test_evonorm_group_fallback_and_init_zero():
    assert EvoNormS0(48).num_groups == 24
    assert EvoNormS0(64).num_groups == 32
    assert fit_num_groups(7, 32) == 7
    assert fit_num_groups(22, 32) == 22
    evo = EvoNormB0(4, init_zero=True)
    assert torch.equal(evo.weight.detach(), torch.zeros(4))
    assert torch.equal(evo(torch.randn(2, 4, 3)), torch.zeros(2, 4, 3))


# =============================================================================================
# dtypes and devices
# =============================================================================================

LAYERS = {
    "unified": (lambda: UnifiedNorm(16), (2, 5, 16)),
    "ws_linear": (lambda: WSLinear(16, 8), (2, 5, 16)),
    "ws_conv1d": (lambda: WSConv1d(16, 8, 3, padding=1), (2, 16, 11)),
    "batch_channel": (lambda: BatchChannelNorm(16, num_groups=4), (3, 16, 11)),
    "batch_channel_est": (lambda: BatchChannelNorm(16, num_groups=4, estimate=True), (3, 16, 11)),
    "evonorm_s0": (lambda: EvoNormS0(16, num_groups=4), (3, 16, 11)),
    "evonorm_b0": (lambda: EvoNormB0(16), (3, 16, 11)),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_layers_run_in_float32_and_bfloat16_autocast(name, device, mode):
    make, shape = LAYERS[name]
    torch.manual_seed(0)
    layer = make().to(device).train(mode == "train")
    out_features = 8 if name.startswith("ws_") else None
    expected_shape = list(shape)
    if out_features:
        expected_shape[-1 if name == "ws_linear" else 1] = out_features
    for autocast in (False, True):
        x = torch.randn(*shape, device=device, requires_grad=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            y = layer(x)
        assert y.shape == tuple(expected_shape)
        assert torch.isfinite(y).all()
        if not autocast:
            assert y.dtype == torch.float32
        y.float().square().mean().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
