"""z-loss: value, invariances and the direction of its gradient."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from brainmill.nn.losses import z_loss

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]


def test_two_zero_logits_give_coef_ln2_squared():
    assert z_loss(torch.zeros(2)).item() == pytest.approx(1e-4 * math.log(2) ** 2, rel=1e-6)
    assert z_loss(torch.zeros(2)).item() == pytest.approx(4.8045e-5, rel=1e-4)


def test_matches_formula_mean_over_tokens():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 7, dtype=torch.float64) * 3
    expected = 2e-3 * (torch.log(torch.exp(logits).sum(-1)) ** 2).mean()
    torch.testing.assert_close(z_loss(logits, coef=2e-3), expected)


def test_zero_when_logsumexp_is_zero_and_shift_changes_it_not_ce():
    logits = torch.log_softmax(torch.tensor([[1.0, -2.0, 0.5]]), dim=-1)  # logsumexp = 0
    assert z_loss(logits).item() == pytest.approx(0.0, abs=1e-12)
    target = torch.tensor([0])
    shifted = logits + 3.0
    assert F.cross_entropy(shifted, target).item() == pytest.approx(
        F.cross_entropy(logits, target).item(), abs=1e-6
    )
    assert z_loss(shifted).item() == pytest.approx(1e-4 * 9.0, rel=1e-5)


def test_gradient_pushes_log_z_toward_zero():
    torch.manual_seed(1)
    for shift in (4.0, -4.0):
        logits = (torch.randn(5, 6, dtype=torch.float64) + shift).requires_grad_()
        z_loss(logits, coef=1.0).backward()
        log_z = torch.logsumexp(logits.detach(), -1)
        # d/dy (log Z)² / n = 2 log Z softmax(y) / n
        expected = 2 * log_z[:, None] * torch.softmax(logits.detach(), -1) / 5
        torch.testing.assert_close(logits.grad, expected)
        stepped = logits.detach() - 0.1 * logits.grad
        assert (torch.logsumexp(stepped, -1).abs() < log_z.abs()).all()


def test_mask_averages_over_counted_tokens_only():
    logits = torch.tensor([[[0.0, 0.0], [5.0, 5.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, False, True]])
    assert z_loss(logits, mask=mask).item() == pytest.approx(1e-4 * math.log(2) ** 2, rel=1e-6)
    with pytest.raises(ValueError, match="mask"):
        z_loss(logits, mask=torch.ones(3, dtype=torch.bool))


@pytest.mark.parametrize("device", DEVICES)
def test_float32_and_bf16_autocast(device):
    logits = torch.randn(4, 9, 50, device=device) * 20
    with torch.autocast(device, dtype=torch.bfloat16):
        lb = z_loss(logits.bfloat16())
    lf = z_loss(logits)
    assert lb.dtype == lf.dtype == torch.float32 and lb.shape == ()
    assert torch.isfinite(lb) and lb.item() == pytest.approx(lf.item(), rel=2e-2)
