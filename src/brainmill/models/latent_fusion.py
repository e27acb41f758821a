"""Latent Fusion Transformer: a classifier over the diffusion backbone's pooled gate activations.

EEGDM's "LFT" (``shared/reference/methods.md`` §3), re-implemented with
:class:`brainmill.nn.TransformerBlock`:

- Input: ``(B, C, n_layers, H, P)`` std-pooled gate activations of every channel, backbone
  layer and pool (:meth:`brainmill.models.diffusion.EEGDiffusion.representations`).
- **Fusion module**: per backbone layer ``l`` the ``C`` channel features are LayerNorm-ed,
  projected by a layer-specific linear map to ``dim`` and given a learned channel-position
  embedding: the channel tokens of that layer. ``N`` learned fusion tokens pass through one
  cross-attention block per backbone layer (queries: the fusion tokens; keys/values: layer
  ``l``'s channel tokens), in layer order. The module is shared across pools.
- **Classifier module**: the ``P·N`` fused tokens plus a learned pool embedding go through
  ``depth`` self-attention blocks; a final norm, global average pooling and a linear head.

Differences from the reference: sizes default far smaller (reference: dim 128, 16 fusion tokens,
8 classifier blocks, 8 heads), and each fusion block is a cross-attention + MLP block (the
reference's decoder blocks also self-attend among the fusion tokens).

Imports only torch and numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from brainmill.nn.blocks import TransformerBlock
from brainmill.nn.registry import ACTS, NORMS, make_norm

from ._config import ConfigMixin, check

__all__ = ["LatentFusionConfig", "LatentFusionTransformer"]


@dataclass
class LatentFusionConfig(ConfigMixin):
    """Hyper-parameters of :class:`LatentFusionTransformer`.

    Attributes
    ----------
    n_classes : int
    n_layers, feature_dim : int
        Backbone layers and their width ``H`` (the input's axes 2 and 3).
    dim, n_heads : int
        Width and attention heads.
    n_fusion_tokens : int
        Learned fusion queries ``N``.
    depth : int
        Self-attention blocks of the classifier module.
    mlp_ratio, dropout : float
    norm, act : str
        :data:`brainmill.nn.registry.NORMS` / :data:`brainmill.nn.registry.ACTS` names.
    max_channels, max_pools : int
        Largest channel count and pools per window accepted.
    """

    n_classes: int
    n_layers: int
    feature_dim: int
    dim: int = 64
    n_heads: int = 4
    n_fusion_tokens: int = 8
    depth: int = 2
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    norm: str = "layernorm"
    act: str = "gelu"
    max_channels: int = 256
    max_pools: int = 256

    def __post_init__(self) -> None:
        c = "LatentFusionConfig"
        for name in ("n_classes", "n_layers", "feature_dim", "dim", "n_heads",
                     "n_fusion_tokens", "max_channels", "max_pools"):
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


class LatentFusionTransformer(nn.Module):
    """Fusion tokens cross-attend to each backbone layer's channel tokens, then classify.

    Shapes
    ------
    ``forward(features)``: ``(B, C, n_layers, feature_dim, P)`` → logits ``(B, n_classes)``,
    ``C ≤ max_channels``, ``P ≤ max_pools``.
    """

    def __init__(self, config: LatentFusionConfig) -> None:
        super().__init__()
        cfg = config
        self.config = cfg
        d = cfg.dim
        self.in_norm = nn.LayerNorm(cfg.feature_dim)
        self.layer_proj = nn.Parameter(torch.empty(cfg.n_layers, cfg.feature_dim, d))
        nn.init.normal_(self.layer_proj, std=cfg.feature_dim ** -0.5)
        self.layer_bias = nn.Parameter(torch.zeros(cfg.n_layers, d))
        self.channel_embed = nn.Embedding(cfg.max_channels, d)
        self.pool_embed = nn.Embedding(cfg.max_pools, d)
        for table in (self.channel_embed, self.pool_embed):
            nn.init.trunc_normal_(table.weight, std=0.02, a=-0.04, b=0.04)
        self.context_norm = nn.LayerNorm(d)
        self.fusion_tokens = nn.Parameter(torch.empty(cfg.n_fusion_tokens, d))
        nn.init.trunc_normal_(self.fusion_tokens, std=0.02, a=-0.04, b=0.04)

        def block() -> TransformerBlock:
            return TransformerBlock(d, cfg.n_heads, mlp_ratio=cfg.mlp_ratio, norm=cfg.norm,
                                    act=cfg.act, dropout=cfg.dropout)

        self.fusion = nn.ModuleList(block() for _ in range(cfg.n_layers))
        self.blocks = nn.ModuleList(block() for _ in range(cfg.depth))
        self.norm = make_norm(cfg.norm, d)
        self.head = nn.Linear(d, cfg.n_classes)

    def _check(self, features: torch.Tensor) -> None:
        cfg = self.config
        if features.ndim != 5 or features.shape[2:4] != (cfg.n_layers, cfg.feature_dim):
            raise ValueError(
                f"LatentFusionTransformer: features must be (batch, channels, {cfg.n_layers} "
                f"layers, {cfg.feature_dim} features, pools), got {tuple(features.shape)}")
        if features.shape[1] > cfg.max_channels or features.shape[4] > cfg.max_pools:
            raise ValueError(f"LatentFusionTransformer: {features.shape[1]} channels × "
                             f"{features.shape[4]} pools exceed max_channels="
                             f"{cfg.max_channels} / max_pools={cfg.max_pools}")

    def fused(self, features: torch.Tensor) -> torch.Tensor:
        """Fusion tokens after the last backbone layer, ``(B, P, N, dim)``."""
        self._check(features)
        b, c, n_layers, _, p = features.shape
        x = features.permute(0, 4, 2, 1, 3).reshape(b * p, n_layers, c, -1)
        x = torch.einsum("blch,lhd->blcd", self.in_norm(x), self.layer_proj)
        x = x + self.layer_bias[:, None] + self.channel_embed.weight[:c]
        x = self.context_norm(x)
        q = self.fusion_tokens.expand(b * p, -1, -1)
        for layer, block in enumerate(self.fusion):
            q = block(q, context=x[:, layer])
        return q.reshape(b, p, *q.shape[1:])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        q = self.fused(features)
        b, p, n, d = q.shape
        h = (q + self.pool_embed.weight[:p][None, :, None]).reshape(b, p * n, d)
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h).mean(dim=1))
