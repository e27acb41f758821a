"""S4D: FFT path vs explicit recurrence, kernel vs full conjugate-pair system, causality, init."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from brainmill.nn.ssm import S4D, s4d_imag_init

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]


def make(init="lin", bidirectional=True, d_model=3, d_state=16, seed=0, **kw):
    torch.manual_seed(seed)
    return S4D(d_model, d_state, init=init, bidirectional=bidirectional, **kw).double()


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("init,d_state", [("lin", 16), ("inv", 16), ("inv", 64)])
def test_fft_path_equals_explicit_recurrence_float64(init, d_state, bidirectional):
    m = make(init, bidirectional, d_state=d_state)
    u = torch.randn(2, 3, 50, dtype=torch.float64)
    torch.testing.assert_close(m(u), m.forward_recurrent(u), atol=1e-10, rtol=0)


def test_fft_path_equals_recurrence_float32():
    torch.manual_seed(0)
    m = S4D(4, 16, bidirectional=True)
    u = torch.randn(2, 4, 50)
    torch.testing.assert_close(m(u), m.forward_recurrent(u), atol=1e-4, rtol=1e-4)


def _full_conjugate_kernel(m, length):
    """Σ over all N states (each mode and its conjugate) of C B̄ Ā^ℓ, computed in numpy."""
    dt = np.exp(m.log_dt.detach().numpy())[:, None]
    a = -np.exp(m.log_A_real.detach().numpy()) + 1j * m.A_imag.detach().numpy()
    c = m.C.detach().numpy()
    c = c[..., 0] + 1j * c[..., 1]
    a_bar = np.exp(dt * a)
    b_bar = (a_bar - 1) / a
    a_full = np.concatenate([a_bar, a_bar.conj()], -1)
    b_full = np.concatenate([b_bar, b_bar.conj()], -1)
    c_full = np.concatenate([c, c.conj()], -1)
    out = np.zeros(c.shape[:2] + (length,), dtype=complex)
    power = np.ones_like(a_full)
    for ell in range(length):
        out[..., ell] = (c_full * b_full * power).sum(-1)
        power = power * a_full
    assert np.abs(out.imag).max() < 1e-12
    return torch.from_numpy(out.real)


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_kernel_equals_full_conjugate_pair_system(init):
    m = make(init, bidirectional=True)
    torch.testing.assert_close(m.kernel(40), _full_conjugate_kernel(m, 40), atol=1e-12, rtol=0)
    assert m.kernel(40).shape == (2, 3, 40)


def test_kernel_is_impulse_response_of_recurrence():
    m = make("lin", bidirectional=False)
    u = torch.zeros(1, 3, 30, dtype=torch.float64)
    u[..., 0] = 1.0
    y = m.forward_recurrent(u)[0]
    expected = m.kernel(30)[0].clone()
    expected[:, 0] += m.D.detach()
    torch.testing.assert_close(y, expected, atol=1e-12, rtol=0)


def test_unidirectional_is_linear_causal_convolution_not_circular():
    m = make("lin", bidirectional=False)
    length = 24
    u = torch.randn(2, 3, length, dtype=torch.float64)
    k = m.kernel(length)[0]
    d = m.D.detach()
    direct = torch.zeros_like(u)
    for t in range(length):
        for s in range(t + 1):
            direct[..., t] += k[:, t - s] * u[..., s]
    direct += d[:, None] * u
    y = m(u)
    torch.testing.assert_close(y, direct, atol=1e-12, rtol=0)
    # A length-L FFT would wrap around; that gives a different (wrong) answer.
    circular = torch.fft.irfft(torch.fft.rfft(u) * torch.fft.rfft(k), n=length) + d[:, None] * u
    assert (circular - direct).abs().max() > 1e-3
    # Causality: the output up to t does not see inputs after t.
    u2 = u.clone()
    u2[..., 15:] = torch.randn(2, 3, length - 15, dtype=torch.float64)
    torch.testing.assert_close(m(u2)[..., :15], y[..., :15], atol=1e-12, rtol=0)


def test_bidirectional_is_the_explicit_two_sided_sum():
    m = make("inv", bidirectional=True, seed=3)
    length = 20
    u = torch.randn(2, 3, length, dtype=torch.float64)
    k0, k1 = m.kernel(length)
    direct = m.D.detach()[:, None] * u
    for t in range(length):
        for s in range(length):
            if s <= t:
                direct[..., t] += k0[:, t - s] * u[..., s]
            else:
                direct[..., t] += k1[:, s - t - 1] * u[..., s]
    torch.testing.assert_close(m(u), direct, atol=1e-12, rtol=0)
    # Non-causal: the first output depends on the last input.
    u2 = u.clone()
    u2[..., -1] += 1.0
    assert (m(u2)[..., 0] - m(u)[..., 0]).abs().min() > 0


def test_imag_init_values():
    inv = s4d_imag_init(64, "inv")
    assert inv.shape == (32,)
    np.testing.assert_allclose(inv[:3].numpy(), [1283.4, 414.2, 240.4], atol=0.05)
    assert inv[-1].item() == pytest.approx(0.323, abs=5e-4)
    lin = s4d_imag_init(64, "lin")
    np.testing.assert_allclose(lin.numpy(), math.pi * np.arange(32), rtol=1e-15)
    with pytest.raises(ValueError, match="init"):
        s4d_imag_init(64, "legs")


def test_parameter_init_and_dt_range():
    torch.manual_seed(0)
    m = S4D(2000, 64, dt_min=2e-3, dt_max=5e-2, init="inv")
    dt = m.dt.detach()
    assert dt.min() >= 2e-3 * (1 - 1e-6) and dt.max() <= 5e-2 * (1 + 1e-6)
    # log-uniform: log dt spread over the whole range, median near the geometric midpoint
    assert dt.min() < 2.2e-3 and dt.max() > 4.5e-2
    assert dt.log().median().item() == pytest.approx(
        0.5 * (math.log(2e-3) + math.log(5e-2)), abs=0.1
    )
    torch.testing.assert_close(
        -m.log_A_real.exp().detach(), torch.full((2000, 32), -0.5)
    )
    torch.testing.assert_close(m.A_imag.detach()[5], s4d_imag_init(64, "inv").float())
    c = torch.view_as_complex(m.C.detach())
    assert c.shape == (2, 2000, 32)  # bidirectional: two C's, shared A, dt, D
    assert c.abs().square().mean().item() == pytest.approx(1.0, abs=0.02)
    assert m.D.shape == (2000,)
    assert m.log_dt._optim == {"weight_decay": 0.0}
    assert S4D(3, 8, bidirectional=False).C.shape == (1, 3, 4, 2)
    with pytest.raises(ValueError, match="even"):
        S4D(3, 7)
    with pytest.raises(ValueError, match="init"):
        S4D(3, 8, init="foo")


def test_gradients_reach_every_parameter():
    m = make("lin", bidirectional=True)
    m(torch.randn(2, 3, 17, dtype=torch.float64)).square().sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_runs_float32_and_under_bf16_autocast(device, bidirectional):
    torch.manual_seed(0)
    m = S4D(8, 16, bidirectional=bidirectional, dropout=0.1).to(device)
    x = torch.randn(2, 8, 33, device=device)
    y = m(x)
    assert y.shape == x.shape and y.dtype == torch.float32 and torch.isfinite(y).all()
    with torch.autocast(device, dtype=torch.bfloat16):
        h = torch.nn.functional.linear(x.transpose(1, 2), torch.eye(8, device=device))
        yb = m(h.transpose(1, 2))  # bf16 input, as an autocast Linear would produce
    assert yb.shape == x.shape and yb.dtype == torch.bfloat16 and torch.isfinite(yb).all()
    yb.float().sum().backward()
    assert torch.isfinite(m.C.grad).all()
    m.eval()
    torch.testing.assert_close(m(x), m.forward_recurrent(x), atol=1e-4, rtol=1e-4)
