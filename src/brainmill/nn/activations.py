"""Activations beyond torch's own GELU: SwiGLU, GR-KAN's group-rational unit and CRReLU.

All act on the last axis of a channels-last tensor ``(..., D)``. Formulas and pitfalls follow
``shared/reference/layers.md`` §2 (GR-KAN) and §5 (CRReLU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RATIONAL_INITS", "CRReLU", "GroupRational", "SwiGLU", "rational_parts"]


class SwiGLU(nn.Module):
    r"""Swish-gated linear unit on a pre-projected input: :math:`\mathrm{SiLU}(a) \odot b`.

    The input's last axis holds the two projections ``[a, b]`` = ``x.chunk(2, -1)`` (gate first),
    so a preceding Linear must output twice the hidden width; :class:`brainmill.nn.mlp.MLP` does
    this when it sees ``gated = True``. Source: Shazeer, "GLU Variants Improve Transformer",
    arXiv 2002.05202. Shapes: (..., 2H) → (..., H).
    """

    gated = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2:
            raise ValueError(f"SwiGLU needs an even last axis, got {x.shape[-1]}")
        gate, value = x.chunk(2, dim=-1)
        return F.silu(gate) * value


# ---------------------------------------------------------------------------------------------
# GR-KAN group-rational unit
# ---------------------------------------------------------------------------------------------

#: Initial coefficients ``(a0..a5, b1..b4)`` of the (5, 4) rational, fitted on [−3, 3]
#: (KAT's ``init.json``, transcribed). "gelu" is the ``gelu_old`` entry: the file's current "gelu"
#: entry was fitted for the denominator ``1 + |Σ b_j x^j|`` and is off by 1.47 under the
#: ``1 + Σ |b_j x^j|`` form used here (layers.md §2); ``gelu_old`` fits GELU to 4.1e-3.
RATIONAL_INITS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "identity": ((0.0, 1.0, 0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0)),
    "swish": (
        (3.0549e-07, 0.50000079, 0.24999783, 0.05326628, 0.00580303, 0.00027520),
        (-4.1116e-06, 0.10652899, -1.2690e-06, 0.00055023),
    ),
    "gelu": (
        (-0.00124236, 0.50804971, 0.41586363, 0.13022719, 0.02435590, 0.00290284),
        (-0.06675016, 0.17927646, 0.03746683, 1.66e-10),
    ),
}


def rational_parts(x: torch.Tensor, numerator: torch.Tensor,
                   denominator: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Numerator and denominator of the grouped rational, evaluated by Horner's rule.

    :math:`P(x) = \sum_{i=0}^{5} a_i x^i` and
    :math:`Q(x) = 1 + \sum_{j=1}^{4} |b_j x^j| = 1 + \sum_j |b_j|\,|x|^j \ge 1`.

    Parameters
    ----------
    x : Tensor (..., G, D/G)
        Input split into G contiguous channel groups.
    numerator : Tensor (G or 1, 6)
        a_0..a_5 per group (or shared).
    denominator : Tensor (G or 1, 4)
        b_1..b_4 per group (or shared).
    """
    p = numerator[:, 5:6]
    for i in range(4, -1, -1):
        p = p * x + numerator[:, i:i + 1]
    ax = x.abs()
    b = denominator.abs()
    q = b[:, 3:4]
    for j in range(2, -1, -1):
        q = q * ax + b[:, j:j + 1]
    return p, 1.0 + q * ax


class GroupRational(nn.Module):
    r"""Group-rational activation of GR-KAN (Kolmogorov–Arnold Transformer).

    :math:`F(x) = P(x)/Q(x)` of degrees (5, 4) with the pole-free ("safe PAU", version A)
    denominator :math:`Q(x) = 1 + \sum_{j=1}^{4} |b_j x^j| \ge 1`. Channel c of the last axis D
    belongs to group :math:`g = \lfloor c/(D/G) \rfloor` (contiguous blocks). As in the released
    code and checkpoints, the numerator ``weight_numerator`` (1, 6) is shared by all groups and
    each group has its own denominator ``weight_denominator`` (G, 4): 6 + 4G parameters. (The
    paper, p. 7, states the opposite sharing; layers.md §2 records the discrepancy.) All groups
    are identical at initialisation.

    Source: Yang & Wang, "Kolmogorov–Arnold Transformer", ICLR 2025, arXiv 2409.10594;
    formula of the CUDA/Triton kernels in ``Adamdad/rational_kat_cu`` (layers.md §2). This is a
    pure-PyTorch implementation (the repository's own torch fallback uses
    :math:`1 + \sum_j |b_j| x^j`, which has poles; it is *not* what is computed here). It is
    evaluated in at least float32 and returned in the input's dtype; autograd gives
    :math:`dF/dx = R/Q - P S/Q^2`.

    Parameters
    ----------
    num_groups : int
        G, default 8.
    init : {"identity", "swish", "gelu"}
        Function the coefficients are fitted to on [−3, 3] (:data:`RATIONAL_INITS`); max error
        0, 1.9e-6, 4.1e-3. KAT uses "identity" before fc1 and "swish" as the MLP activation.
    dim : int, optional
        Channel count D; when given, checked to be divisible by G.

    Shapes
    ------
    (..., D) → (..., D), with D divisible by G.
    """

    def __init__(self, num_groups: int = 8, init: str = "swish", dim: int | None = None):
        super().__init__()
        if init not in RATIONAL_INITS:
            raise ValueError(f"unknown rational init {init!r}; valid: {sorted(RATIONAL_INITS)}")
        if dim is not None and dim % num_groups:
            raise ValueError(f"dim={dim} is not divisible by num_groups={num_groups}")
        self.num_groups = num_groups
        self.init = init
        self.dim = dim
        a, b = RATIONAL_INITS[init]
        self.weight_numerator = nn.Parameter(torch.tensor([a], dtype=torch.float32))
        self.weight_denominator = nn.Parameter(
            torch.tensor([b], dtype=torch.float32).repeat(num_groups, 1))

    def extra_repr(self) -> str:
        return f"num_groups={self.num_groups}, init={self.init!r}, dim={self.dim}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x.shape[-1]
        if d % self.num_groups:
            raise ValueError(f"last axis {d} is not divisible by num_groups={self.num_groups}")
        dtype = torch.promote_types(x.dtype, torch.float32)
        xg = x.to(dtype).reshape(*x.shape[:-1], self.num_groups, d // self.num_groups)
        p, q = rational_parts(xg, self.weight_numerator.to(dtype),
                              self.weight_denominator.to(dtype))
        return (p / q).reshape(x.shape).to(x.dtype)


class CRReLU(nn.Module):
    r"""Correction-regularised ReLU: :math:`f(x) = \mathrm{ReLU}(x) + \varepsilon\, x\,
    e^{-x^2/2}`.

    ε is one learnable scalar (0-dim parameter ``epsilon``) per module, initialised to 0.01.
    f(0) = 0; the left derivative at 0 is ε and the right one 1 + ε; ∂f/∂ε = x e^{−x²/2}.
    Source: Sun, Wu et al., "A Method on Searching Better Activation Functions" (EAFO),
    arXiv 2405.12954, ICLR 2025 (layers.md §5). Shapes: any → same shape.
    """

    def __init__(self, epsilon: float = 0.01):
        super().__init__()
        self.epsilon = nn.Parameter(torch.tensor(float(epsilon)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x) + self.epsilon.to(x.dtype) * x * torch.exp(-0.5 * x * x)
