"""Fast CPU inference of the TFM-Tokenizer's encoder Transformers: same weights, same numbers, less memory traffic.

At inference almost all of the tokenizer's work is the frequency path: a convolutional stem and
a Transformer over the ``n_bands`` band patches of every STFT frame (about 2.2 M multiply-adds
per frame at the reference size, ~10× the rest of the encoder). Run as written in
:meth:`brainmill.models.tokenizer.TFMTokenizer._frequency_path` on a batch of many thousand
frames, each intermediate is tens of MB: every elementwise op streams it through main memory,
and every fresh allocation of that size is page-faulted in again. A profile on a 2-core CPU
put 22 % of the time in tensor copies and 10 % in GELU, against 33 % in the matrix products
and convolutions.

:func:`frequency_path_inference` computes the same function on chunks of frames small enough
that every intermediate stays in the per-core L2 cache, channels-last throughout (the stem's
strided and 1×1 convolutions become Linear layers on band patches, GroupNorm is computed on the
channels-last layout), with the three attention projections fused into one matrix product,
in-place activations and residual updates, and explicit attention (faster than PyTorch's CPU
flash kernel on sequences of 20 bands with head width 8). :func:`blocks_inference` runs the
Transformer over frames the same way, chunked over channels. Results agree with the module path
to float32 rounding (about 1e-6); :func:`supports_fast_path` says when it applies (inference on
CPU in float32, LayerNorm/GELU blocks without QK-norm), and the module path stays the reference
in the tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from brainmill.nn.blocks import TransformerBlock

__all__ = ["blocks_inference", "frequency_path_inference", "supports_fast_path"]

#: Largest intermediate of one chunk, bytes: within the 2-MB per-core L2 of the machine we
#: measured on (a chunk sweep there: 32 frames 68.9, 64 frames 57.4, 96 frames 55.3 µs/frame;
#: at 128 frames, 2.6 MB, a fresh allocation is page-faulted in every time and it gets slower).
CHUNK_BYTES = 2_000_000


def _fast_block(blk: nn.Module) -> bool:
    return (isinstance(blk, TransformerBlock) and isinstance(blk.norm1, nn.LayerNorm)
            and isinstance(blk.norm2, nn.LayerNorm) and isinstance(blk.mlp.act, nn.GELU)
            and isinstance(blk.attn.q_norm, nn.Identity) and blk.attn.q_proj.bias is not None
            and blk.mlp.fc1.bias is not None)


def supports_fast_path(model: nn.Module, spec: torch.Tensor) -> bool:
    """Whether this module computes the model's encoder Transformers on ``spec`` here.

    True for a model in eval mode, without gradient recording, on CPU, in float32 without
    autocast, whose frequency and temporal Transformer blocks use LayerNorm, GELU and no
    QK-norm.
    """
    return (not model.training and not torch.is_grad_enabled() and spec.device.type == "cpu"
            and spec.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
            and all(_fast_block(b) for b in (*model.freq_blocks, *model.time_blocks)))


def _gelu_(h: torch.Tensor, act: nn.GELU) -> torch.Tensor:
    return torch.ops.aten.gelu_(h, approximate=act.approximate)


def _group_norm_channels_last_(h: torch.Tensor, norm: nn.GroupNorm,
                               average: torch.Tensor) -> torch.Tensor:
    """In-place ``GroupNorm`` of ``h`` ``(M, L, C)`` as ``F.group_norm`` on ``(M, C, L)``.

    ``average`` is :func:`_group_average`'s matrix. Two-pass statistics (mean, then the mean
    square of the centred values), as PyTorch's own kernel, so values with a large mean do not
    lose precision.
    """
    h.sub_(torch.mm(h.sum(1), average)[:, None, :])
    var = torch.mm(h.square().sum(1), average)  # (M, C): the group's variance, per channel
    return h.mul_(var.add_(norm.eps).rsqrt_().mul_(norm.weight)[:, None, :]).add_(norm.bias)


def _group_average(groups: int, channels: int, length: int, like: torch.Tensor) -> torch.Tensor:
    """``(C, C)`` matrix taking per-channel sums over ``length`` to per-channel group means."""
    size = channels // groups
    block = torch.full((size, size), 1.0 / (size * length), dtype=like.dtype, device=like.device)
    return torch.block_diag(*([block] * groups))


def _transformer_block_(blk: TransformerBlock, h: torch.Tensor, qkv_w: torch.Tensor,
                        qkv_b: torch.Tensor) -> torch.Tensor:
    """One pre-norm block on ``h`` ``(M, L, dim)``, updating ``h`` in place."""
    attn = blk.attn
    m, length, d = h.shape
    y = F.layer_norm(h, (d,), blk.norm1.weight, blk.norm1.bias, blk.norm1.eps)
    qkv = (F.linear(y, qkv_w, qkv_b).view(m, length, 3, attn.n_heads, attn.head_dim)
           .permute(2, 0, 3, 1, 4).contiguous())  # (3, M, heads, L, head_dim)
    scores = torch.matmul(qkv[0], qkv[1].transpose(-1, -2))  # q is pre-scaled by 1/√d_h
    o = torch.matmul(torch.softmax(scores, dim=-1), qkv[2])
    flat = h.view(m * length, d)
    flat.addmm_(o.transpose(1, 2).reshape(m * length, d), attn.out_proj.weight.t())
    flat.add_(attn.out_proj.bias)
    y = F.layer_norm(h, (d,), blk.norm2.weight, blk.norm2.bias, blk.norm2.eps)
    hidden = _gelu_(F.linear(y, blk.mlp.fc1.weight, blk.mlp.fc1.bias), blk.mlp.act)
    flat.addmm_(hidden.view(m * length, -1), blk.mlp.fc2.weight.t()).add_(blk.mlp.fc2.bias)
    return h


def _fused_qkv(blk: TransformerBlock) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k, v projections as one Linear, with 1/√d_h folded into q's rows."""
    a, scale = blk.attn, blk.attn.head_dim ** -0.5
    return (torch.cat([a.q_proj.weight * scale, a.k_proj.weight, a.v_proj.weight]),
            torch.cat([a.q_proj.bias * scale, a.k_proj.bias, a.v_proj.bias]))


def blocks_inference(blocks: nn.ModuleList, h: torch.Tensor) -> torch.Tensor:
    """A stack of :class:`TransformerBlock` on ``h`` ``(N, L, dim)``, chunked over ``N``.

    Same function as ``for blk in blocks: h = blk(h)`` in eval mode (no padding mask, no
    context); ``h`` is overwritten. Used for the tokenizer's Transformer over frames.
    """
    if not len(blocks):
        return h
    n, length, _ = h.shape
    widest = max(max(b.mlp.fc1.out_features, 3 * b.dim) for b in blocks)
    rows = max(1, CHUNK_BYTES // (4 * length * widest))
    fused = [_fused_qkv(b) for b in blocks]
    for start in range(0, n, rows):
        part = h[start:start + rows]
        for blk, (w, b) in zip(blocks, fused, strict=True):
            part = _transformer_block_(blk, part, w, b)
    return h


def _stem_layers(model: nn.Module) -> list[tuple[nn.Conv1d, nn.GELU, nn.GroupNorm]]:
    layers = list(model.freq_embed)
    return [tuple(layers[i:i + 3]) for i in range(0, len(layers), 3)]


def frequency_path_inference(model: nn.Module, spec: torch.Tensor,
                             chunk_frames: int | None = None) -> torch.Tensor:
    """``model._frequency_path(spec)`` computed chunk by chunk, channels-last, in place.

    Parameters
    ----------
    model : TFMTokenizer
        In eval mode; see :func:`supports_fast_path`.
    spec : torch.Tensor
        ``(N, F, n_bins)`` magnitude spectrogram, float32 on CPU.
    chunk_frames : int, optional
        Frames per chunk; by default the most that keep the widest intermediate (the MLP
        hidden layer) within ``CHUNK_BYTES``.

    Returns
    -------
    torch.Tensor
        ``(N, F, dim / 2)``, equal to the module path up to float32 rounding.
    """
    cfg = model.config
    n, f, _ = spec.shape
    n_bands = cfg.n_bands
    if chunk_frames is None:
        widest = max(cfg.dim, *(b.mlp.fc1.out_features for b in model.freq_blocks),
                     3 * cfg.dim)
        chunk_frames = max(1, CHUNK_BYTES // (4 * n_bands * widest))
    stem = [(conv.weight.flatten(1), conv.bias, act, norm,
             _group_average(norm.num_groups, norm.num_channels, n_bands, spec))
            for conv, act, norm in _stem_layers(model)]
    fused = [_fused_qkv(b) for b in model.freq_blocks]
    pool = model.freq_pool
    groups = cfg.gate_groups
    # both pooling convolutions as one Linear on the channels-last (bands × dim) patch of a group
    pool_w = torch.cat([pool.value.weight, pool.gate.weight]).transpose(1, 2).flatten(1)
    pool_b = torch.cat([pool.value.bias, pool.gate.bias])
    half = pool.value.out_channels

    patches = spec.reshape(n * f, n_bands, cfg.band_size)
    out = spec.new_empty(n * f, half * groups)
    for start in range(0, n * f, chunk_frames):
        h = patches[start:start + chunk_frames]
        for weight, bias, act, norm, average in stem:
            h = _group_norm_channels_last_(_gelu_(F.linear(h, weight, bias), act), norm, average)
        for blk, (w, b) in zip(model.freq_blocks, fused, strict=True):
            h = _transformer_block_(blk, h, w, b)
        o = F.linear(h.reshape(h.shape[0], groups, -1), pool_w, pool_b)
        gated = o[..., :half].mul_(o[..., half:].sigmoid_())  # (m, groups, half)
        # the convolution's output is (m, half channels, groups positions), flattened row-major
        out[start:start + chunk_frames] = gated.transpose(1, 2).reshape(h.shape[0], -1)
    return out.view(n, f, -1)
