"""Normalisation and activation layers by name, as a config chooses them.

``make_norm(name, dim, layout=...)`` returns a module that normalises the channel axis of a
channels-last ``(batch, tokens, dim)`` tensor (``layout="channels_last"``, the default) or of a
channels-first ``(batch, dim, length)`` tensor (``layout="channels_first"``). A norm whose native
layout differs (BCN and EvoNorm are channels-first; LayerNorm, RMSNorm and UN channels-last) is
wrapped in a transpose adapter. ``make_act(name, dim=None)`` returns an activation over the last
axis.

Norms: ``layernorm | rmsnorm | unified | batch_channel | evonorm_s0 | evonorm_b0``.
Activations: ``gelu | swiglu | rational | crrelu``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .activations import CRReLU, GroupRational, SwiGLU
from .norms import BatchChannelNorm, EvoNormB0, EvoNormS0, UnifiedNorm

__all__ = ["ACTS", "LAYOUTS", "NORM_LAYOUTS", "NORMS", "ChannelsFirstAdapter",
           "ChannelsLastAdapter", "make_act", "make_norm"]

LAYOUTS = ("channels_last", "channels_first")


class ChannelsLastAdapter(nn.Module):
    """Run a channels-first norm on channels-last input: (B, ..., C) → (B, C, ...) → back."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.module(x.movedim(-1, 1), **kwargs).movedim(1, -1)


class ChannelsFirstAdapter(nn.Module):
    """Run a channels-last norm on channels-first input: (B, C, ...) → (B, ..., C) → back."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.module(x.movedim(1, -1), **kwargs).movedim(-1, 1)


#: name → constructor ``f(dim, **kwargs)`` of the norm in its native layout.
NORMS: dict[str, Callable[..., nn.Module]] = {
    "layernorm": nn.LayerNorm,
    "rmsnorm": nn.RMSNorm,
    "unified": UnifiedNorm,
    "batch_channel": BatchChannelNorm,
    "evonorm_s0": EvoNormS0,
    "evonorm_b0": EvoNormB0,
}

#: name → the layout the constructed module expects natively.
NORM_LAYOUTS: dict[str, str] = {
    "layernorm": "channels_last",
    "rmsnorm": "channels_last",
    "unified": "channels_last",
    "batch_channel": "channels_first",
    "evonorm_s0": "channels_first",
    "evonorm_b0": "channels_first",
}


def _gelu(dim: int | None = None, **kwargs) -> nn.Module:
    return nn.GELU(**kwargs)


def _swiglu(dim: int | None = None) -> nn.Module:
    return SwiGLU()


def _rational(dim: int | None = None, num_groups: int = 8, **kwargs) -> nn.Module:
    # KAT's default is 8 groups; for a width it does not divide, use the largest divisor below.
    if dim is not None:
        num_groups = math.gcd(dim, num_groups)
    return GroupRational(num_groups=num_groups, dim=dim, **kwargs)


def _crrelu(dim: int | None = None, **kwargs) -> nn.Module:
    return CRReLU(**kwargs)


#: name → constructor ``f(dim=None, **kwargs)``.
ACTS: dict[str, Callable[..., nn.Module]] = {
    "gelu": _gelu,
    "swiglu": _swiglu,
    "rational": _rational,
    "crrelu": _crrelu,
}


def _lookup(table: dict, kind: str, name: str):
    try:
        return table[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown {kind} {name!r}; valid names: {', '.join(table)}") from None


def make_norm(name: str, dim: int, layout: str = "channels_last", **kwargs) -> nn.Module:
    """Build norm ``name`` over ``dim`` channels for tensors in ``layout``.

    Parameters
    ----------
    name : str
        One of :data:`NORMS`.
    dim : int
        Number of channels.
    layout : {"channels_last", "channels_first"}
        ``channels_last``: input (batch, tokens, dim), normalised over the last axis;
        ``channels_first``: input (batch, dim, length), normalised over axis 1.
    **kwargs
        Passed to the norm's constructor (e.g. ``warmup_iters`` for ``unified``).
    """
    ctor = _lookup(NORMS, "norm", name)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    module = ctor(dim, **kwargs)
    native = NORM_LAYOUTS[name]
    if native == layout:
        return module
    return ChannelsLastAdapter(module) if layout == "channels_last" else ChannelsFirstAdapter(module)


def make_act(name: str, dim: int | None = None, **kwargs) -> nn.Module:
    """Build activation ``name``; ``dim`` is the width it acts on (used by ``rational``).

    ``swiglu`` halves the last axis (its module has ``gated = True``). ``rational`` uses
    G = gcd(dim, 8) groups when ``dim`` is given (8 otherwise). ``**kwargs`` go to the
    constructor.
    """
    return _lookup(ACTS, "activation", name)(dim=dim, **kwargs)
