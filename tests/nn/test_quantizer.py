"""EMAVectorQuantizer: hand-computed EMA step, dead-code restart, straight-through gradients."""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch

from brainmill.nn.quantizer import EMAVectorQuantizer, QuantizerOutput

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]

T = torch.float64


def tiny(**kw):
    """3 codes in 2-D with hand-set EMA state."""
    vq = EMAVectorQuantizer(3, 2, **kw).double()
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
        vq.cluster_size.copy_(torch.tensor([1.0, 2.0, 3.0]))
        vq.embed_sum.copy_(torch.tensor([[0.5, 0.0], [1.0, 1.0], [0.0, 2.0]]))
    return vq


Z = torch.tensor([[0.1, 0.1], [0.9, 0.2], [1.1, -0.1], [0.2, 0.8]], dtype=T)


def test_ema_step_equals_hand_computation():
    vq = tiny(decay=0.9, eps=0.1, commitment=0.5, dead_code_threshold=0.0)
    out = vq(Z)
    assert isinstance(out, QuantizerOutput)
    assert out.indices.tolist() == [0, 1, 1, 2]
    # Assignments: code 0 ← z0, code 1 ← z1, z2, code 2 ← z3; counts n = (1, 2, 1).
    # N = 0.9·(1, 2, 3) + 0.1·(1, 2, 1) = (1.0, 2.0, 2.8)
    torch.testing.assert_close(vq.cluster_size, torch.tensor([1.0, 2.0, 2.8], dtype=T))
    # S0 = 0.9·(0.5, 0) + 0.1·(0.1, 0.1); S1 = 0.9·(1, 1) + 0.1·(2.0, 0.1);
    # S2 = 0.9·(0, 2) + 0.1·(0.2, 0.8)
    s = torch.tensor([[0.46, 0.01], [1.1, 0.91], [0.02, 1.88]], dtype=T)
    torch.testing.assert_close(vq.embed_sum, s)
    # Laplace: Ñ = (N + 0.1) / (5.8 + 3·0.1) · 5.8 = (1.1, 2.1, 2.9) · 5.8 / 6.1
    n_smooth = torch.tensor([1.1, 2.1, 2.9], dtype=T) * 5.8 / 6.1
    torch.testing.assert_close(vq.codebook, s / n_smooth[:, None])
    # Outputs use the codebook from before the update.
    q = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=T)
    torch.testing.assert_close(out.quantized, q)
    sq = (0.01 + 0.01) + (0.01 + 0.04) + (0.01 + 0.01) + (0.04 + 0.04)
    assert out.loss.item() == pytest.approx(0.5 * sq / 8, rel=1e-12)
    # usage (1/4, 1/2, 1/4): entropy 1.5 ln 2, perplexity 2^1.5
    assert out.perplexity.item() == pytest.approx(2**1.5, rel=1e-12)


def test_eval_mode_does_not_update():
    vq = tiny(dead_code_threshold=1.0).eval()
    before = {k: v.clone() for k, v in vq.state_dict().items()}
    out = vq(Z)
    assert out.indices.tolist() == [0, 1, 1, 2]
    for k, v in vq.state_dict().items():
        torch.testing.assert_close(v, before[k], atol=0, rtol=0)


def test_dead_code_restart_from_batch_outputs():
    vq = EMAVectorQuantizer(4, 2, decay=0.9, dead_code_threshold=2.0).double()
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [10.0, 10.0]]))
        vq.cluster_size.copy_(torch.tensor([5.0, 5.0, 5.0, 2.1]))
        vq.embed_sum.copy_(vq.codebook * vq.cluster_size[:, None])
    z = torch.tensor([[0.1, 0.0], [0.9, 0.1], [0.1, 0.9], [1.0, 0.1], [0.0, 0.2]], dtype=T)
    torch.manual_seed(0)
    vq.train()(z)
    # code 3 unused: N3 = 0.9 · 2.1 = 1.89 < 2 → restarted from a row of z
    assert any(torch.equal(vq.codebook[3], row) for row in z)
    assert vq.cluster_size[3].item() == 2.0
    torch.testing.assert_close(vq.embed_sum[3], 2.0 * vq.codebook[3])
    # the live codes followed the EMA and were not restarted
    assert vq.cluster_size[:3].tolist() == pytest.approx([4.5 + 0.2, 4.5 + 0.2, 4.5 + 0.1])
    # same seed, same restart
    vq2 = EMAVectorQuantizer(4, 2, decay=0.9, dead_code_threshold=2.0).double()
    with torch.no_grad():
        vq2.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [10.0, 10.0]]))
        vq2.cluster_size.copy_(torch.tensor([5.0, 5.0, 5.0, 2.1]))
        vq2.embed_sum.copy_(vq2.codebook * vq2.cluster_size[:, None])
    torch.manual_seed(0)
    vq2(z)
    torch.testing.assert_close(vq2.codebook, vq.codebook, atol=0, rtol=0)


def test_no_restart_when_threshold_zero():
    vq = EMAVectorQuantizer(4, 2, decay=0.9, dead_code_threshold=0.0).double()
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [10.0, 10.0]]))
        vq.cluster_size.copy_(torch.tensor([5.0, 5.0, 5.0, 1e-3]))
        vq.embed_sum.copy_(vq.codebook * vq.cluster_size[:, None])
    vq(torch.tensor([[0.1, 0.0], [0.9, 0.1]], dtype=T))
    assert vq.codebook[3, 0].item() > 1.0  # still far away, only shrunk by the smoothing


def test_restart_with_more_dead_codes_than_batch_vectors():
    torch.manual_seed(1)
    vq = EMAVectorQuantizer(8, 3, dead_code_threshold=1.0).double()
    z = torch.randn(3, 3, dtype=T) + 5.0
    vq(z)  # every code but (at most) the 3 used ones is dead
    rows = {tuple(r.tolist()) for r in z}
    restarted = [tuple(c.tolist()) in rows for c in vq.codebook]
    assert sum(restarted) >= 5


def test_first_batch_restarts_unused_codes_from_data():
    torch.manual_seed(2)
    vq = EMAVectorQuantizer(16, 4)
    z = torch.randn(64, 4) * 0.1 + 3.0  # far from the N(0, I/4) init
    vq(z)
    used = torch.unique(vq(z).indices)  # second pass: assignments spread over restarted codes
    assert len(used) > 4
    assert (vq.codebook.mean(1) > 2.0).sum() >= 12


def test_straight_through_and_commitment_gradients():
    torch.manual_seed(3)
    beta = 0.25
    vq = EMAVectorQuantizer(5, 3, commitment=beta).double()
    z = torch.randn(2, 4, 3, dtype=T, requires_grad=True)
    w = torch.randn(2, 4, 3, dtype=T)
    codebook_before = vq.codebook.clone()
    out = vq(z)
    q = codebook_before[out.indices]
    torch.testing.assert_close(out.quantized, q, atol=1e-15, rtol=0)  # z + (q − z) ≈ q
    ((out.quantized * w).sum() + out.loss).backward()
    expected = w + 2 * beta * (z.detach() - q) / z.numel()
    torch.testing.assert_close(z.grad, expected, atol=1e-15, rtol=0)
    # The commitment gradient alone is there (it does not cancel)...
    z.grad = None
    out2 = vq(z)
    out2.loss.backward()
    q2 = out2.quantized.detach()
    torch.testing.assert_close(z.grad, 2 * beta * (z.detach() - q2) / z.numel(), atol=1e-15,
                               rtol=0)
    assert z.grad.abs().sum() > 0
    # ...and the codebook is a buffer: no parameters, no autograd gradient.
    assert list(vq.parameters()) == []
    assert not vq.codebook.requires_grad and vq.codebook.grad is None
    assert {"codebook", "cluster_size", "embed_sum"} <= set(vq.state_dict())


def test_perplexity_uniform_and_collapsed():
    vq = EMAVectorQuantizer(6, 2).double().eval()
    angles = torch.arange(6, dtype=T) * (2 * math.pi / 6)
    with torch.no_grad():
        vq.codebook.copy_(torch.stack([angles.cos(), angles.sin()], 1))
    out = vq(vq.codebook.clone().repeat(3, 1))
    assert out.indices.tolist() == list(range(6)) * 3
    assert out.perplexity.item() == pytest.approx(6.0, rel=1e-12)
    out = vq(vq.codebook[2].repeat(5, 1))
    assert out.perplexity.item() == pytest.approx(1.0, rel=1e-12)


def test_l2_normalize_option_and_shapes():
    torch.manual_seed(4)
    vq = EMAVectorQuantizer(7, 4, l2_normalize=True).eval()
    z = (torch.randn(2, 3, 5, 4) * 10).requires_grad_()
    out = vq(z)
    assert out.quantized.shape == z.shape and out.indices.shape == (2, 3, 5)
    zn = torch.nn.functional.normalize(z.detach(), dim=-1).reshape(-1, 4)
    expected = torch.cdist(zn, vq.codebook).argmin(1).view(2, 3, 5)
    assert torch.equal(out.indices, expected)
    torch.testing.assert_close(vq.embed(out.indices), out.quantized.detach())
    out.quantized.sum().backward()
    assert torch.isfinite(z.grad).all()
    with pytest.raises(ValueError, match="last axis"):
        vq(torch.randn(3, 5))


@pytest.mark.parametrize("device", DEVICES)
def test_runs_float32_and_under_bf16_autocast(device):
    torch.manual_seed(5)
    vq = EMAVectorQuantizer(32, 8).to(device)
    z = torch.randn(4, 10, 8, device=device, requires_grad=True)
    out = vq(z)
    assert out.quantized.dtype == torch.float32 and out.quantized.shape == z.shape
    lin = torch.nn.Linear(8, 8).to(device)
    with torch.autocast(device, dtype=torch.bfloat16):
        out = vq(lin(z))  # bf16 encoder output
    assert out.quantized.shape == z.shape and out.indices.shape == (4, 10)
    assert torch.isfinite(out.quantized.float()).all()
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    assert 1.0 <= out.perplexity.item() <= 32.0
    (out.quantized.float().sum() + out.loss).backward()
    assert torch.isfinite(lin.weight.grad).all()
    assert torch.isfinite(vq.codebook).all()


def test_nearest_in_chunks_equals_the_exhaustive_search():
    # 700 rows × 2048 codes is more than one CPU chunk of scores, with a remainder
    gen = torch.Generator().manual_seed(0)
    vq = EMAVectorQuantizer(2048, 16).double()
    with torch.no_grad():
        vq.codebook.copy_(torch.randn(2048, 16, generator=gen, dtype=T))
    flat = torch.randn(700, 16, generator=gen, dtype=T)
    ref = torch.cdist(flat, vq.codebook).argmin(dim=1)
    got = vq.nearest(flat)
    assert got.shape == (700,) and torch.equal(got, ref)
    # duplicated codes: the lowest index wins, in every chunk
    with torch.no_grad():
        vq.codebook[1500] = vq.codebook[ref[0]]
    assert vq.nearest(flat[:1]).item() == min(ref[0].item(), 1500)


def test_two_level_argmin_is_argmin_with_ties_and_nan():
    """Block minima, first block reaching the row minimum, first index in it: exactly
    ``argmin`` (the lowest index of the minimum), on scores full of ties."""
    from brainmill.nn.quantizer import _ARGMIN_BLOCK, _first_argmin

    gen = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 4, (300, 8 * _ARGMIN_BLOCK), generator=gen).float()
    scores[7, :] = 2.0  # a whole row of ties: index 0
    scores[8, 5 * _ARGMIN_BLOCK + 3] = -1.0  # one minimum late in the row
    scores[9, 3] = float("nan")  # argmin treats NaN as the minimum
    assert torch.equal(_first_argmin(scores), scores.argmin(1))


def _train(vq, batch, updates, seed=0):
    gen = torch.Generator().manual_seed(seed)
    vq.train()
    for _ in range(updates):
        vq(torch.randn(batch, vq.dim, generator=gen))


def test_churning_codebook_warns_once_with_the_batch_and_the_remedy():
    # 8 vectors per update for 64 codes: EMA usage ~0.125 per code, under the 0.5 threshold,
    # so most codes are restarted at every update once the EMA has settled (10 updates)
    torch.manual_seed(0)
    vq = EMAVectorQuantizer(64, 8, decay=0.9, dead_code_threshold=0.5, l2_normalize=True)
    with pytest.warns(RuntimeWarning, match=r"of 64 codes .* churning\. The batch held 8 "
                                            r"vectors, 0\.12 per code") as record:
        _train(vq, batch=8, updates=40)
    assert len([w for w in record if "churning" in str(w.message)]) == 1  # once
    after = re.search(r"after (\d+) updates", str(record[0].message))
    assert after and int(after.group(1)) >= 10  # not before the EMA settled (1 / (1 - 0.9))


def test_large_batches_and_disabled_restarts_do_not_warn():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _train(EMAVectorQuantizer(64, 8, decay=0.9, dead_code_threshold=0.5,
                                  l2_normalize=True), batch=2048, updates=40)
        _train(EMAVectorQuantizer(64, 8, decay=0.9, dead_code_threshold=0.0,
                                  l2_normalize=True), batch=8, updates=40)


def test_compiled_training_steps_do_not_recompile_at_every_update():
    """The update count and dead-code count are Python values: inside a compiled graph,
    torch.compile would guard on them and recompile at each step."""
    torch._dynamo.reset()
    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    vq = EMAVectorQuantizer(n_codes=16, dim=4, decay=0.5, dead_code_threshold=0.5)
    step = torch.compile(lambda z: vq(z).quantized.sum(), backend=counting)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        step(torch.randn(8, 4, generator=g))
    n_warm = len(graphs)
    for _ in range(5):
        step(torch.randn(8, 4, generator=g))
    assert n_warm >= 1 and len(graphs) == n_warm
    assert vq._updates == 7
    torch._dynamo.reset()
