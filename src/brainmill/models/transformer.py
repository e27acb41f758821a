"""Token Transformer: a classifier over the discrete tokens of every channel and frame.

The downstream "TFM-Encoder" of ``shared/reference/methods.md`` §2 (Pradeepkumar et al., arXiv
2502.16060), re-implemented with :class:`brainmill.nn.TransformerBlock`:

- token embedding ``nn.Embedding(n_codes + 1, dim)``, optionally initialised from the
  tokenizer's codebook; row ``n_codes`` is the [MASK] token;
- plus a learned channel embedding and the fixed sinusoidal position of the frame (the same
  frame index in every channel gets the same position);
- sequence = [CLS] followed by all tokens flattened channel-major (c0f0, c0f1, …, c1f0, …);
- pre-norm Transformer blocks, a final norm, a classifier on [CLS] and a masked-token-prediction
  (MTP) head on every token.

Pre-training (:meth:`TokenTransformer.mtp_loss`): hide a Bernoulli(0.5) subset of the tokens
behind [MASK] and predict them, then the same with the complementary subset (symmetric masking).

Differences from the reference: softmax attention instead of linear attention, 4 heads by
default (reference 8), and a final norm before the heads (pre-norm stacks need one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from brainmill.nn.blocks import TransformerBlock
from brainmill.nn.positions import sinusoidal_table
from brainmill.nn.registry import ACTS, NORMS, make_norm

from ._config import ConfigMixin, check

__all__ = ["TokenTransformer", "TokenTransformerConfig"]


@dataclass
class TokenTransformerConfig(ConfigMixin):
    """Hyper-parameters of :class:`TokenTransformer`.

    Attributes
    ----------
    n_codes : int
        Vocabulary size (the tokenizer's ``n_codes``); id ``n_codes`` is reserved for [MASK].
    n_classes : int
        Outputs of the classifier head.
    dim, n_heads, depth : int
        Width, attention heads and number of Transformer blocks.
    mlp_ratio : float
        MLP width over ``dim``.
    dropout : float
        Dropout inside the blocks.
    norm, act : str
        :data:`brainmill.nn.registry.NORMS` / :data:`brainmill.nn.registry.ACTS` names.
    max_channels, max_frames : int
        Largest channel count and frames per channel accepted.
    """

    n_codes: int
    n_classes: int
    dim: int = 64
    n_heads: int = 4
    depth: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.2
    norm: str = "layernorm"
    act: str = "gelu"
    max_channels: int = 256
    max_frames: int = 1024

    def __post_init__(self) -> None:
        c = "TokenTransformerConfig"
        for name in ("n_codes", "n_classes", "dim", "n_heads", "max_channels", "max_frames"):
            v = getattr(self, name)
            check(isinstance(v, int) and v >= 1, c, name, v, "a positive integer")
        check(isinstance(self.depth, int) and self.depth >= 0, c, "depth", self.depth,
              "a non-negative integer")
        check(self.dim % self.n_heads == 0, c, "n_heads", self.n_heads,
              f"a divisor of dim={self.dim}")
        check(self.mlp_ratio > 0, c, "mlp_ratio", self.mlp_ratio, "positive")
        check(0.0 <= self.dropout < 1.0, c, "dropout", self.dropout, "in [0, 1)")
        check(self.norm in NORMS, c, "norm", self.norm, f"one of {', '.join(NORMS)}")
        check(self.act in ACTS, c, "act", self.act, f"one of {', '.join(ACTS)}")


class TokenTransformer(nn.Module):
    """Transformer classifier over token ids ``(B, C, F)`` (see the module docstring).

    Parameters
    ----------
    config : TokenTransformerConfig
        Hyper-parameters.
    codebook : torch.Tensor or numpy.ndarray, optional
        ``(n_codes, dim)`` tokenizer codebook copied into the first ``n_codes`` embedding rows
        (e.g. ``TFMTokenizer.codebook``). Otherwise, and for the [MASK] row, rows are drawn from
        ``N(0, I/dim)``, the scale of the unit-norm codes.

    Shapes
    ------
    ``ids`` ``(B, C, F)`` int64 in ``[0, n_codes)``, ``C ≤ max_channels``, ``F ≤ max_frames``.
    The sequence has ``1 + C·F`` tokens; position ``1 + c·F + f`` holds channel ``c``, frame
    ``f``.
    """

    def __init__(self, config: TokenTransformerConfig,
                 codebook: torch.Tensor | np.ndarray | None = None) -> None:
        super().__init__()
        cfg = config
        self.config = cfg
        d = cfg.dim
        self.mask_id = cfg.n_codes
        self.token_embed = nn.Embedding(cfg.n_codes + 1, d)
        nn.init.normal_(self.token_embed.weight, std=d**-0.5)
        if codebook is not None:
            cb = torch.as_tensor(codebook)
            if cb.shape != (cfg.n_codes, d):
                raise ValueError(
                    f"TokenTransformer: codebook must be (n_codes, dim) = ({cfg.n_codes}, {d}), "
                    f"got {tuple(cb.shape)}; build the config with the tokenizer's n_codes and dim"
                )
            with torch.no_grad():
                self.token_embed.weight[: cfg.n_codes].copy_(cb)
        self.channel_embed = nn.Embedding(cfg.max_channels, d)
        nn.init.trunc_normal_(self.channel_embed.weight, std=0.02, a=-0.04, b=0.04)
        # Fixed, so rebuilt rather than saved in the state dict.
        self.register_buffer("time_table", sinusoidal_table(cfg.max_frames, d), persistent=False)
        self.cls_token = nn.Parameter(torch.empty(d))
        nn.init.trunc_normal_(self.cls_token, std=0.02, a=-0.04, b=0.04)
        self.blocks = nn.ModuleList(
            TransformerBlock(d, cfg.n_heads, mlp_ratio=cfg.mlp_ratio, norm=cfg.norm, act=cfg.act,
                             dropout=cfg.dropout) for _ in range(cfg.depth))
        self.norm = make_norm(cfg.norm, d)
        self.head = nn.Linear(d, cfg.n_classes)
        self.mtp_head = nn.Linear(d, cfg.n_codes)

    # ------------------------------------------------------------------ pieces

    def _check_ids(self, ids: torch.Tensor) -> None:
        cfg = self.config
        if ids.ndim != 3 or ids.dtype != torch.int64:
            raise ValueError(f"TokenTransformer: ids must be (batch, channels, frames) int64, got "
                             f"{tuple(ids.shape)} {ids.dtype}; convert with ids.long()")
        _, c, f = ids.shape
        if c > cfg.max_channels or f > cfg.max_frames:
            raise ValueError(f"TokenTransformer: {c} channels × {f} frames exceed max_channels="
                             f"{cfg.max_channels} / max_frames={cfg.max_frames}; raise them in "
                             "the config")
        # the range check reads a value back from the device (a sync, and a graph break under
        # torch.compile): done in eager mode only
        if ids.numel() and not torch.compiler.is_compiling() and \
                bool(((ids < 0) | (ids >= cfg.n_codes)).any()):
            raise ValueError(f"TokenTransformer: ids must be in [0, n_codes={cfg.n_codes}), got "
                             f"[{int(ids.min())}, {int(ids.max())}]")

    def embed(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Input sequence ``(B, 1 + C·F, dim)``: [CLS], then token + channel + frame embeddings.

        ``mask`` ``(B, C, F)`` or ``(C, F)`` bool, True = replace the token by [MASK].
        """
        self._check_ids(ids)
        b, c, f = ids.shape
        if mask is not None:
            ids = ids.masked_fill(mask.to(ids.device).expand_as(ids), self.mask_id)
        h = self.token_embed(ids)  # (B, C, F, dim)
        chan = self.channel_embed.weight[:c]
        h = h + chan[None, :, None, :] + self.time_table[:f].to(h.dtype)[None, None, :, :]
        cls = self.cls_token.to(h.dtype).expand(b, 1, -1)
        return torch.cat([cls, h.reshape(b, c * f, -1)], dim=1)

    def hidden(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final-normalised outputs ``(B, 1 + C·F, dim)`` (index 0 is [CLS])."""
        h = self.embed(ids, mask)
        for blk in self.blocks:
            h = blk(h)
        return self.norm(h)

    # ------------------------------------------------------------------ public API

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        """[CLS] embedding ``(B, dim)`` of ``ids`` ``(B, C, F)``."""
        return self.hidden(ids)[:, 0]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, n_classes)`` of ``ids`` ``(B, C, F)``."""
        return self.head(self.features(ids))

    def mtp_logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MTP logits ``(B, C, F, n_codes)`` with the ``mask`` ed tokens hidden behind [MASK]."""
        b, c, f = ids.shape
        return self.mtp_head(self.hidden(ids, mask)[:, 1:]).view(b, c, f, -1)

    def mtp_loss(
        self, ids: torch.Tensor, generator: torch.Generator | None = None,
        mask_prob: float = 0.5,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Symmetric masked-token-prediction loss.

        ``m ~ Bernoulli(mask_prob)`` independently for every token of every sample; ``loss =
        CE_m + CE_¬m`` where ``CE_m`` is the mean cross-entropy of the MTP head over the
        positions of ``m``, predicted from the sequence with those positions replaced by [MASK]
        (a pass with no masked position contributes 0).

        Parameters
        ----------
        ids : torch.Tensor
            ``(B, C, F)`` token ids.
        generator : torch.Generator, optional
            Draws the mask (torch's default CPU generator when None).
        mask_prob : float
            Bernoulli probability of the first pass. Default 0.5.

        Returns
        -------
        loss : torch.Tensor
            Scalar.
        logs : dict
            ``mtp_loss`` (float, the loss) and ``mtp_accuracy`` (top-1 over every predicted
            position of both passes).
        """
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"mtp_loss: mask_prob must be in (0, 1), got {mask_prob}")
        device = generator.device if generator is not None else torch.device("cpu")
        mask = torch.rand(ids.shape, generator=generator, device=device) < mask_prob
        mask = mask.to(ids.device)
        loss = ids.new_zeros((), dtype=torch.float32)
        correct, total = 0, 0
        for m in (mask, ~mask):
            n = int(m.sum())
            if n == 0:
                continue
            logits = self.mtp_head(self.hidden(ids, m)[:, 1:][m.flatten(1)]).float()
            target = ids[m]
            loss = loss + F.cross_entropy(logits, target)
            correct += int((logits.argmax(-1) == target).sum())
            total += n
        return loss, {"mtp_loss": loss.item(), "mtp_accuracy": correct / max(total, 1)}

    def classification_loss(
        self, ids: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.1
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Label-smoothed cross-entropy of the classifier; logs ``loss`` and ``accuracy``.

        ``ids`` ``(B, C, F)``, ``y`` ``(B,)`` int64 class indices.
        """
        logits = self.forward(ids).float()
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        acc = (logits.argmax(-1) == y).float().mean()
        return loss, {"loss": loss.item(), "accuracy": acc.item()}
