"""The Transformer feed-forward block."""

from __future__ import annotations

import torch
from torch import nn

from .registry import make_act

__all__ = ["MLP"]


class MLP(nn.Module):
    r"""Position-wise feed-forward block: Linear → activation → dropout → Linear.

    :math:`\mathrm{MLP}(x) = W_2\, \mathrm{drop}(\phi(W_1 x + b_1)) + b_2`. For a gated activation
    (``gated = True``, e.g. SwiGLU) the first Linear outputs 2·hidden features, which the
    activation reduces to ``hidden``: :math:`W_2(\mathrm{SiLU}(x W) \odot x V)` (Shazeer,
    arXiv 2002.05202).

    Parameters
    ----------
    dim : int
        Input and output width.
    hidden : int
        Hidden width (after the activation).
    act : str or nn.Module
        A name of :data:`brainmill.nn.registry.ACTS` (built with ``dim=hidden``) or a module.
        Default "gelu".
    dropout : float
        After the activation. Default 0.
    bias : bool
        Biases of both Linear layers. Default True.

    Shapes
    ------
    (..., dim) → (..., dim).
    """

    def __init__(self, dim: int, hidden: int, act: str | nn.Module = "gelu", dropout: float = 0.0,
                 bias: bool = True):
        super().__init__()
        self.act = make_act(act, dim=hidden) if isinstance(act, str) else act
        self.gated = bool(getattr(self.act, "gated", False))
        self.fc1 = nn.Linear(dim, hidden * (2 if self.gated else 1), bias=bias)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))
