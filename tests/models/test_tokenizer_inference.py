"""The tokenizer's CPU inference path against the module path it replaces at inference."""

from __future__ import annotations

import pytest
import torch

from brainmill.models import tokenizer_inference
from brainmill.models.tokenizer import TFMTokenizer, TokenizerConfig
from brainmill.models.tokenizer_inference import frequency_path_inference, supports_fast_path

SMALL = {"dim": 32, "n_heads": 4, "freq_depth": 2, "time_depth": 1, "decoder_depth": 1,
         "n_codes": 64, "norm_groups": 8}


def _model(**kwargs) -> TFMTokenizer:
    torch.manual_seed(0)
    return TFMTokenizer(TokenizerConfig(**kwargs)).eval()


def _spectrogram(model: TFMTokenizer, n: int = 6, n_times: int = 1000) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, n_times, generator=gen) * torch.linspace(0.5, 20.0, n)[:, None, None]
    return model._prepare(x)[1]


@pytest.mark.parametrize("config", [{}, SMALL], ids=["reference-size", "small"])
@pytest.mark.parametrize("chunk_frames", [None, 7, 1])
def test_equals_the_module_path(config, chunk_frames):
    model = _model(**config)
    spec = _spectrogram(model)  # 6 × 9 = 54 frames: chunks of 7 leave a remainder of 5
    with torch.no_grad():
        ref = model._frequency_path(spec)
        got = frequency_path_inference(model, spec, chunk_frames)
        # masked input (whole bands and frames zero), as the training passes see it
        keep = model.masks(spec.shape[1], torch.Generator().manual_seed(2))
        ref_masked = model._frequency_path(spec * keep)
        got_masked = frequency_path_inference(model, spec * keep, chunk_frames)
    assert got.shape == ref.shape == (6, 9, model.config.dim // 2)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_masked, ref_masked, rtol=1e-5, atol=1e-5)


def test_group_norm_keeps_precision_with_a_large_mean():
    norm = torch.nn.GroupNorm(4, 16)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.uniform_(-1.0, 1.0)
    h = 1000.0 + torch.randn(3, 20, 16, generator=torch.Generator().manual_seed(0))
    exact = torch.nn.functional.group_norm(h.double().transpose(1, 2), 4, norm.weight.double(),
                                           norm.bias.double()).transpose(1, 2)
    torch_error = (norm(h.transpose(1, 2)).transpose(1, 2) - exact).abs().max()
    average = tokenizer_inference._group_average(4, 16, 20, h)
    got = tokenizer_inference._group_norm_channels_last_(h.clone(), norm, average)
    # two-pass statistics: float32 error like PyTorch's own kernel (~1e-4 here); the one-pass
    # E[x²] − E[x]² loses about 0.4 at this mean
    assert (got - exact).abs().max() <= 2 * torch_error + 1e-5


def test_tokenize_uses_it_and_gives_the_module_paths_tokens(monkeypatch):
    model = _model(**SMALL)
    x = torch.randn(3, 4, 1000, generator=torch.Generator().manual_seed(3))
    calls = []
    real = tokenizer_inference.frequency_path_inference

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr("brainmill.models.tokenizer.frequency_path_inference", spy)
    fast = model.tokenize(x)
    assert calls, "tokenize in eval mode on CPU should take the inference path"
    model.fast_inference = False
    calls.clear()
    with torch.no_grad():
        ref = model(x).indices  # module path and the quantiser's own forward
    assert not calls
    assert fast.shape == ref.shape == (3, 4, model.n_frames(1000))
    assert torch.equal(fast, ref)


def test_only_used_where_it_computes_the_same_function():
    model = _model(**SMALL)
    spec = _spectrogram(model, n=2)
    with torch.no_grad():
        assert supports_fast_path(model, spec)
        assert not supports_fast_path(model, spec.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not supports_fast_path(model, spec)
        assert not supports_fast_path(model.train(), spec)
    model.eval()
    assert not supports_fast_path(model, spec)  # gradients recorded
    for other in ({"norm": "rmsnorm"}, {"act": "swiglu"}):
        with torch.no_grad():
            assert not supports_fast_path(_model(**SMALL, **other), spec)


def test_training_mode_tokenize_still_moves_the_codebook():
    model = _model(**SMALL).train()
    before = model.codebook.clone()
    model.tokenize(torch.randn(2, 1, 1000))
    assert not torch.equal(model.codebook, before)


def test_blocks_inference_equals_the_module_stack_in_chunks(monkeypatch):
    model = _model(**SMALL)
    h = torch.randn(11, 9, model.config.dim, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = h.clone()
        for blk in model.time_blocks:
            ref = blk(ref)
        # chunks of 2 rows of 9 frames (11 rows: a remainder of 1)
        monkeypatch.setattr(tokenizer_inference, "CHUNK_BYTES", 4 * 9 * 4 * model.config.dim * 2)
        got = tokenizer_inference.blocks_inference(model.time_blocks, h.clone())
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
