"""TFM-Tokenizer: single-channel EEG to discrete time-frequency tokens, one per STFT frame.

Re-implemented from the description in ``shared/reference/methods.md`` §2 (Pradeepkumar et al.,
"Tokenizing Single-Channel EEG with Time-Frequency Motif Learning", arXiv 2502.16060), with the
layers of :mod:`brainmill.nn`. Every channel is tokenized on its own:

1. robust scaling ``x / (Q95(|x|) + 1e-8)``, then the STFT magnitude ``S`` (1-s Hann frames,
   0.5-s hop, bins 0–99 Hz at 200 Hz; :mod:`brainmill.models.frontend`);
2. frequency path, per frame: the bins are cut into bands of ``band_size`` by a strided Conv1d,
   refined by two 1×1 convolutions, mixed by a Transformer over the bands and pooled by a gated
   convolution into ``dim/2`` features;
3. temporal path, on the raw scaled signal: a Conv1d whose kernel and stride are the STFT's
   frame and hop (so its outputs line up with the frames) and 1×1 convolutions to ``dim/2``;
4. both halves are concatenated, mixed by a Transformer over the frames, L2-normalised and
   quantised by an EMA codebook; the code index is the token;
5. a decoder (Transformer, Linear, Tanh, Linear) reconstructs the frame's magnitude spectrum.

Training (:meth:`TFMTokenizer.training_loss`) masks whole frequency bands and whole frames of the
frequency path's input (never the temporal path's), and reconstructs the *full* spectrogram.

Differences from the reference code, by choice:

- softmax attention (:class:`brainmill.nn.TransformerBlock`, PyTorch SDPA) instead of linear
  attention; pre-norm blocks, no final norm in the stacks;
- decoder depth 2 by default (reference 8; ``decoder_depth`` restores it);
- the VQ loss is the commitment ``β·‖z − sg(q)‖²`` of :class:`brainmill.nn.EMAVectorQuantizer`,
  so the encoder really gets its gradient (the reference computes it on the straight-through
  tensor, where the encoder gradients cancel);
- dead-code restart is available (``dead_code_threshold``), off by default like the reference;
- the temporal path runs once per step and is shared by the masked and the symmetric pass (its
  input is the same unmasked signal in both);
- exact mask counts (nearest integer to ``mask_freq·n_bands`` bands and ``mask_time·F`` frames)
  drawn by permutation from a caller-owned generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from brainmill.nn.blocks import TransformerBlock
from brainmill.nn.quantizer import EMAVectorQuantizer
from brainmill.nn.registry import ACTS, NORMS

from ._config import ConfigMixin, check
from .frontend import n_frames, robust_scale, stft_magnitude
from .tokenizer_inference import blocks_inference, frequency_path_inference, supports_fast_path

__all__ = ["GatedAggregation", "TFMTokenizer", "TokenizerConfig", "TokenizerOutput"]


@dataclass
class TokenizerConfig(ConfigMixin):
    """Hyper-parameters of :class:`TFMTokenizer` (defaults: the reference's 2×2×8 model).

    Attributes
    ----------
    sfreq : float
        Sampling rate the input must already have, Hz (informational; resample before).
    n_fft, hop : int
        STFT frame length and hop in samples; the temporal Conv1d uses the same kernel/stride.
    n_bins : int
        Spectrum bins kept per frame (≤ ``n_fft // 2 + 1``), a multiple of ``band_size``.
    band_size : int
        Bins per frequency band (frequency-patch width and mask unit).
    dim, n_heads : int
        Token width and attention heads of every Transformer.
    freq_depth, time_depth, decoder_depth : int
        Blocks of the frequency, temporal and decoder Transformers (reference: 2, 2, 8).
    n_codes : int
        Codebook size K.
    decay, commitment, dead_code_threshold : float
        EMA decay, commitment weight β, dead-code restart threshold (0 = never, as reference).
    mask_freq, mask_time : float
        Fractions of bands and of frames hidden from the frequency path in the masked pass.
    symmetric : bool
        Also run the pass that sees exactly the complement of the mask.
    dropout : float
        Dropout inside the Transformer blocks.
    norm, act : str
        :data:`brainmill.nn.registry.NORMS` / :data:`brainmill.nn.registry.ACTS` names for
        the Transformer blocks.
    mlp_ratio : float
        Transformer MLP width over ``dim``.
    gate_groups : int
        Outputs of the gated aggregation over bands: kernel = stride = ``n_bands / gate_groups``
        bands, ``dim / 2 / gate_groups`` channels each (20 bands → 4 groups of 5, 8 channels).
    norm_groups : int
        Groups of the GroupNorm layers in the convolutional stems (reference 16).
    """

    sfreq: float = 200.0
    n_fft: int = 200
    hop: int = 100
    n_bins: int = 100
    band_size: int = 5
    dim: int = 64
    n_heads: int = 8
    freq_depth: int = 2
    time_depth: int = 2
    decoder_depth: int = 2
    n_codes: int = 8192
    decay: float = 0.99
    commitment: float = 1.0
    dead_code_threshold: float = 0.0
    mask_freq: float = 0.5
    mask_time: float = 0.5
    symmetric: bool = True
    dropout: float = 0.1
    norm: str = "layernorm"
    act: str = "gelu"
    mlp_ratio: float = 4.0
    gate_groups: int = 4
    norm_groups: int = 16

    def __post_init__(self) -> None:
        c = "TokenizerConfig"
        check(self.sfreq > 0, c, "sfreq", self.sfreq, "positive")
        for name in ("n_fft", "hop", "n_bins", "band_size", "dim", "n_heads", "n_codes",
                     "gate_groups", "norm_groups"):
            v = getattr(self, name)
            check(isinstance(v, int) and v >= 1, c, name, v, "a positive integer")
        for name in ("freq_depth", "time_depth", "decoder_depth"):
            v = getattr(self, name)
            check(isinstance(v, int) and v >= 0, c, name, v, "a non-negative integer")
        check(self.n_bins <= self.n_fft // 2 + 1, c, "n_bins", self.n_bins,
              f"at most n_fft // 2 + 1 = {self.n_fft // 2 + 1}")
        check(self.n_bins % self.band_size == 0, c, "n_bins", self.n_bins,
              f"a multiple of band_size={self.band_size}")
        check(self.n_bands % self.gate_groups == 0, c, "gate_groups", self.gate_groups,
              f"a divisor of the number of bands n_bins / band_size = {self.n_bands}")
        check(self.dim % 2 == 0 and (self.dim // 2) % self.gate_groups == 0, c, "dim", self.dim,
              f"even, with dim / 2 divisible by gate_groups={self.gate_groups}")
        check(self.dim % self.n_heads == 0, c, "n_heads", self.n_heads,
              f"a divisor of dim={self.dim}")
        check(self.dim % self.norm_groups == 0, c, "norm_groups", self.norm_groups,
              f"a divisor of dim={self.dim}")
        check(0.0 <= self.decay < 1.0, c, "decay", self.decay, "in [0, 1)")
        check(self.commitment >= 0, c, "commitment", self.commitment, "non-negative")
        check(self.dead_code_threshold >= 0, c, "dead_code_threshold", self.dead_code_threshold,
              "non-negative (0 disables restarts)")
        check(0.0 <= self.mask_freq <= 1.0, c, "mask_freq", self.mask_freq, "in [0, 1]")
        check(0.0 <= self.mask_time <= 1.0, c, "mask_time", self.mask_time, "in [0, 1]")
        check(0.0 <= self.dropout < 1.0, c, "dropout", self.dropout, "in [0, 1)")
        check(self.norm in NORMS, c, "norm", self.norm, f"one of {', '.join(NORMS)}")
        check(self.act in ACTS, c, "act", self.act, f"one of {', '.join(ACTS)}")
        check(self.mlp_ratio > 0, c, "mlp_ratio", self.mlp_ratio, "positive")

    @property
    def n_bands(self) -> int:
        """Frequency bands per frame, ``n_bins // band_size``."""
        return self.n_bins // self.band_size


class TokenizerOutput(NamedTuple):
    """What :meth:`TFMTokenizer.forward` returns for ``x`` ``(B, C, T)`` with ``F`` frames.

    Attributes
    ----------
    reconstruction : torch.Tensor
        ``(B, C, F, n_bins)`` decoded magnitude spectrum.
    indices : torch.Tensor
        ``(B, C, F)`` int64 tokens.
    z : torch.Tensor
        ``(B, C, F, dim)`` L2-normalised encoder output (before quantisation).
    spectrogram : torch.Tensor
        ``(B, C, F, n_bins)`` STFT magnitude of the scaled input (the reconstruction target).
    vq_loss, perplexity : torch.Tensor
        Scalars from the quantiser.
    """

    reconstruction: torch.Tensor
    indices: torch.Tensor
    z: torch.Tensor
    spectrogram: torch.Tensor
    vq_loss: torch.Tensor
    perplexity: torch.Tensor


class GatedAggregation(nn.Module):
    r"""Pool a band sequence into a fixed vector with a gated strided convolution.

    :math:`y = \mathrm{flatten}\big(W_a * h \odot \sigma(W_b * h)\big)` where ``W_a``, ``W_b``
    are Conv1d(dim → out_dim / groups, kernel = stride = n_bands / groups) over the band axis,
    flattened channel-major to ``out_dim``.

    Shapes
    ------
    ``h`` ``(N, dim, n_bands)`` → ``(N, out_dim)``.
    """

    def __init__(self, dim: int, out_dim: int, n_bands: int, groups: int) -> None:
        super().__init__()
        if n_bands % groups or out_dim % groups:
            raise ValueError(f"GatedAggregation: groups={groups} must divide n_bands={n_bands} "
                             f"and out_dim={out_dim}")
        k = n_bands // groups
        self.value = nn.Conv1d(dim, out_dim // groups, k, stride=k)
        self.gate = nn.Conv1d(dim, out_dim // groups, k, stride=k)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return (self.value(h) * torch.sigmoid(self.gate(h))).flatten(1)


def _conv_stem(in_ch: int, dim: int, kernel: int, stride: int, groups: int,
               n_refine: int) -> list[nn.Module]:
    """Conv1d(kernel, stride) → GELU → GroupNorm, then ``n_refine`` × [1×1 conv, GELU, GroupNorm]."""
    layers: list[nn.Module] = [nn.Conv1d(in_ch, dim, kernel, stride=stride), nn.GELU(),
                               nn.GroupNorm(groups, dim)]
    for _ in range(n_refine):
        layers += [nn.Conv1d(dim, dim, 1), nn.GELU(), nn.GroupNorm(groups, dim)]
    return layers


class TFMTokenizer(nn.Module):
    """The TFM-Tokenizer (see the module docstring for the architecture and its sources).

    Parameters
    ----------
    config : TokenizerConfig, optional
        Hyper-parameters; the defaults when None.

    Shapes
    ------
    Input ``x`` ``(B, C, T)`` at ``config.sfreq`` with ``T >= n_fft``; every channel is
    processed independently (channels only share the batch, and the codebook's EMA update in
    training mode). ``F = 1 + (T − n_fft) // hop`` tokens per channel.

    Notes
    -----
    In training mode every forward pass (``forward``, ``tokenize``, ``encode``, ``reconstruct``,
    ``training_loss``) updates the codebook by EMA and applies dropout: call ``.eval()`` before
    tokenizing for downstream use.

    In eval mode on CPU without gradients (``tokenize`` always; ``encode``/``forward`` under
    ``torch.no_grad()``) the encoder's Transformers run through
    :mod:`brainmill.models.tokenizer_inference`, which gives the same numbers as the modules
    (to float32 rounding) 1.25–1.7× faster at the reference size on a 2-core CPU; set
    ``fast_inference = False`` on the instance to always use the modules.
    """

    def __init__(self, config: TokenizerConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else TokenizerConfig()
        self.config = cfg
        d, half, g = cfg.dim, cfg.dim // 2, cfg.norm_groups

        def blocks(n: int) -> nn.ModuleList:
            return nn.ModuleList(
                TransformerBlock(d, cfg.n_heads, mlp_ratio=cfg.mlp_ratio, norm=cfg.norm,
                                 act=cfg.act, dropout=cfg.dropout) for _ in range(n))

        self.freq_embed = nn.Sequential(*_conv_stem(1, d, cfg.band_size, cfg.band_size, g, 2))
        self.freq_blocks = blocks(cfg.freq_depth)
        self.freq_pool = GatedAggregation(d, half, cfg.n_bands, cfg.gate_groups)
        self.temporal = nn.Sequential(*_conv_stem(1, d, cfg.n_fft, cfg.hop, g, 1),
                                      nn.Conv1d(d, half, 1))
        self.time_blocks = blocks(cfg.time_depth)
        self.quantizer = EMAVectorQuantizer(
            cfg.n_codes, d, decay=cfg.decay, commitment=cfg.commitment,
            dead_code_threshold=cfg.dead_code_threshold, l2_normalize=True)
        self.decoder_blocks = blocks(cfg.decoder_depth)
        self.decoder_head = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, cfg.n_bins))
        #: take :mod:`brainmill.models.tokenizer_inference` where it applies (False: always the
        #: module path, e.g. to time or check one against the other)
        self.fast_inference = True

    # ------------------------------------------------------------------ pieces

    def n_frames(self, n_times: int) -> int:
        """Tokens per channel for windows of ``n_times`` samples."""
        return n_frames(n_times, self.config.n_fft, self.config.hop)

    @property
    def codebook(self) -> torch.Tensor:
        """``(n_codes, dim)`` code vectors (unit-norm scale; a buffer moved by EMA)."""
        return self.quantizer.codebook

    def _prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(B, C, T)`` → scaled rows ``(B·C, T)`` and their spectrogram ``(B·C, F, n_bins)``."""
        cfg = self.config
        if x.ndim != 3:
            raise ValueError(f"TFMTokenizer: x must be (batch, channels, times), got shape "
                             f"{tuple(x.shape)}; add a channel axis for single-channel data")
        if not x.is_floating_point():
            raise ValueError(f"TFMTokenizer: x must be floating point, got {x.dtype}")
        self.n_frames(x.shape[-1])
        xs = robust_scale(x.reshape(-1, x.shape[-1]))
        spec = stft_magnitude(xs, cfg.n_fft, cfg.hop, cfg.n_bins)
        return xs, spec

    def _frequency_path(self, spec: torch.Tensor) -> torch.Tensor:
        """``(N, F, n_bins)`` (possibly masked) spectrogram → ``(N, F, dim/2)``, by the modules."""
        n, f, b = spec.shape
        h = self.freq_embed(spec.reshape(n * f, 1, b))  # (N·F, dim, n_bands)
        h = h.transpose(1, 2)
        for blk in self.freq_blocks:
            h = blk(h)
        return self.freq_pool(h.transpose(1, 2)).view(n, f, -1)

    def _temporal_path(self, xs: torch.Tensor) -> torch.Tensor:
        """``(N, T)`` scaled signal → ``(N, F, dim/2)``."""
        return self.temporal(xs[:, None, :]).transpose(1, 2)

    def _encode(self, spec_in: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
        """Fuse both paths → L2-normalised ``(N, F, dim)``.

        At inference on CPU both Transformers run through
        :mod:`brainmill.models.tokenizer_inference` (same numbers, see the class Notes).
        """
        if self.fast_inference and supports_fast_path(self, spec_in):
            h = torch.cat([frequency_path_inference(self, spec_in), temporal], dim=-1)
            return F.normalize(blocks_inference(self.time_blocks, h), dim=-1)
        h = torch.cat([self._frequency_path(spec_in), temporal], dim=-1)
        for blk in self.time_blocks:
            h = blk(h)
        return F.normalize(h, dim=-1)

    def _decode(self, q: torch.Tensor) -> torch.Tensor:
        """Quantised ``(N, F, dim)`` → reconstructed magnitudes ``(N, F, n_bins)``."""
        for blk in self.decoder_blocks:
            q = blk(q)
        return self.decoder_head(q)

    # ------------------------------------------------------------------ masking

    def masks(self, n_frames: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The frequency path's visibility mask of one masked pass, shared by the whole batch.

        ``round(mask_freq · n_bands)`` whole bands (``band_size`` adjacent bins each) and
        ``round(mask_time · n_frames)`` whole frames are hidden, chosen uniformly without
        replacement (bands first, then frames, from ``generator``; rounding half up). A bin is
        visible when its band *and* its frame are kept, so with the defaults about 25% is
        visible; the symmetric pass sees ``~keep``.

        Parameters
        ----------
        n_frames : int
            Frames ``F`` of the batch.
        generator : torch.Generator, optional
            Source of randomness (torch's default CPU generator when None).

        Returns
        -------
        torch.Tensor
            ``keep`` ``(F, n_bins)`` bool, on the generator's device.
        """
        cfg = self.config
        device = generator.device if generator is not None else torch.device("cpu")

        def kept(n: int, fraction: float) -> torch.Tensor:
            hidden = torch.randperm(n, generator=generator, device=device)[
                : math.floor(fraction * n + 0.5)]
            keep = torch.ones(n, dtype=torch.bool, device=device)
            keep[hidden] = False
            return keep

        band_keep = kept(cfg.n_bands, cfg.mask_freq).repeat_interleave(cfg.band_size)
        frame_keep = kept(n_frames, cfg.mask_time)
        return frame_keep[:, None] & band_keep[None, :]

    # ------------------------------------------------------------------ public API

    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        """Unmasked pass: tokens, reconstruction and embeddings of ``x`` ``(B, C, T)``."""
        b, c = x.shape[:2]
        xs, spec = self._prepare(x)
        z = self._encode(spec, self._temporal_path(xs))
        out = self.quantizer(z)
        recon = self._decode(out.quantized)
        f = spec.shape[1]
        return TokenizerOutput(recon.view(b, c, f, -1), out.indices.view(b, c, f),
                               z.view(b, c, f, -1), spec.view(b, c, f, -1), out.loss,
                               out.perplexity)

    def training_loss(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Masked-reconstruction loss of one batch.

        ``loss = Σ_passes [MSE(recon_p, S) + vq_p]`` over the masked pass (frequency-path input
        ``S ⊙ keep``) and, when ``config.symmetric``, the complementary pass (``S ⊙ ¬keep``),
        with ``keep = masks(F, generator)`` and ``S`` the full spectrogram, which is always the
        target. The temporal path sees the unmasked signal.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, C, T)`` batch.
        generator : torch.Generator, optional
            Draws the mask (see :meth:`masks`).

        Returns
        -------
        loss : torch.Tensor
            Scalar.
        logs : dict
            ``recon`` (sum of the passes' MSE), ``vq`` (sum of their quantiser losses; so
            ``loss = recon + vq``) and ``perplexity`` (mean over the passes), floats.
        """
        xs, spec = self._prepare(x)
        temporal = self._temporal_path(xs)
        keep = self.masks(spec.shape[1], generator).to(spec.device)
        passes = [keep, ~keep] if self.config.symmetric else [keep]
        recon_loss = spec.new_zeros(())
        vq_loss = spec.new_zeros(())
        perplexity = 0.0
        for visible in passes:
            z = self._encode(spec * visible, temporal)
            out = self.quantizer(z)
            recon = self._decode(out.quantized)
            recon_loss = recon_loss + F.mse_loss(recon.float(), spec.float())
            vq_loss = vq_loss + out.loss
            perplexity += out.perplexity.item() / len(passes)
        loss = recon_loss + vq_loss
        return loss, {"recon": recon_loss.item(), "vq": vq_loss.item(), "perplexity": perplexity}

    @torch.no_grad()
    def tokenize(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids ``(B, C, F)`` int64 of ``x`` ``(B, C, T)`` (no gradient; see class Notes)."""
        b, c = x.shape[:2]
        xs, spec = self._prepare(x)
        z = self._encode(spec, self._temporal_path(xs))
        # in training mode the quantiser's forward also moves the codebook (class Notes)
        ids = self.quantizer(z).indices if self.training else self.quantizer.codes(z)
        return ids.view(b, c, spec.shape[1])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised embeddings ``z`` ``(B, C, F, dim)`` and the spectrogram ``(B, C, F, n_bins)``."""
        b, c = x.shape[:2]
        xs, spec = self._prepare(x)
        z = self._encode(spec, self._temporal_path(xs))
        f = spec.shape[1]
        return z.view(b, c, f, -1), spec.view(b, c, f, -1)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded magnitude spectrogram ``(B, C, F, n_bins)`` of the unmasked input."""
        return self.forward(x).reconstruction

    def codebook_usage(self, ids: torch.Tensor | np.ndarray) -> dict:
        """How many codes a set of token ids uses.

        Parameters
        ----------
        ids : torch.Tensor or numpy.ndarray
            Token ids of any shape, values in ``[0, n_codes)``.

        Returns
        -------
        dict
            ``n_used`` (int, codes with count > 0), ``perplexity`` (float,
            ``exp(−Σ p_k log p_k)`` of the usage frequencies) and ``counts`` (``(n_codes,)``
            int64 ndarray).
        """
        arr = ids.detach().cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
        arr = arr.ravel().astype(np.int64)
        k = self.config.n_codes
        if arr.size and (arr.min() < 0 or arr.max() >= k):
            raise ValueError(f"codebook_usage: ids must be in [0, {k}), got range "
                             f"[{arr.min()}, {arr.max()}]")
        counts = np.bincount(arr, minlength=k)
        p = counts[counts > 0] / max(arr.size, 1)
        return {"n_used": int((counts > 0).sum()),
                "perplexity": float(np.exp(-(p * np.log(p)).sum())), "counts": counts}
