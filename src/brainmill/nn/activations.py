"""Activations beyond torch's own GELU: SwiGLU, GR-KAN's group-rational unit and CRReLU.

All act on the last axis of a channels-last tensor ``(..., D)``. Formulas and pitfalls follow
``shared/reference/layers.md`` §2 (GR-KAN) and §5 (CRReLU).
"""

from __future__ import annotations

import contextlib

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


def _group_rational_reference(x: torch.Tensor, numerator: torch.Tensor,
                              denominator: torch.Tensor, num_groups: int) -> torch.Tensor:
    """The group rational as plain autograd ops (the former ``GroupRational.forward``).

    Kept as the reference the tests hold :class:`_GroupRationalFunction` to: same values, and its
    gradients are what autograd makes of :func:`rational_parts`. It saves about ten tensors of
    the input's size for backward.
    """
    d = x.shape[-1]
    dtype = torch.promote_types(x.dtype, torch.float32)
    xg = x.to(dtype).reshape(*x.shape[:-1], num_groups, d // num_groups)
    p, q = rational_parts(xg, numerator.to(dtype), denominator.to(dtype))
    return (p / q).reshape(x.shape).to(x.dtype)


#: Elements per chunk of the CPU loops of :class:`_GroupRationalFunction`: just under ATen's
#: parallel grain size (32768), so every op of the loop runs serially on data that stays in
#: cache, and never waits for the intra-op thread pool (which on a busy machine can cost
#: milliseconds per op). Other devices take large chunks, which only bound the workspace.
_CPU_CHUNK_NUMEL = 32767
_DEVICE_CHUNK_NUMEL = 1 << 20


def _chunk_rows(xg: torch.Tensor) -> int:
    per_row = max(1, xg.shape[1] * xg.shape[2])
    limit = _CPU_CHUNK_NUMEL if xg.device.type == "cpu" else _DEVICE_CHUNK_NUMEL
    return max(1, min(xg.shape[0], limit // per_row))


def _no_autocast(device: torch.device):
    """Autocast off inside the function's own arithmetic (it picks its dtypes itself)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def _coefficient_views(coef: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Columns of a (G or 1, k) coefficient table, each broadcastable against (rows, G, D/G):
    0-dim tensors for a shared row, (G, 1) views otherwise."""
    if coef.shape[0] == 1:
        return coef[0].unbind()
    return coef.unsqueeze(-1).unbind(1)


class _GroupRationalFunction(torch.autograd.Function):
    r"""F(x) = P(x)/Q(x) per channel group with a hand-written backward (layers.md §2).

    Inputs: ``x`` (..., D), ``numerator`` (G or 1, 6), ``denominator`` (G or 1, 4) and the group
    count G. Computed in ``promote_types(x.dtype, float32)`` and returned in ``x.dtype``.

    Only ``x`` and the coefficients are saved; the backward re-evaluates, by Horner's rule,
    :math:`P`, :math:`R = P'`, :math:`Q = 1 + \sum_j |b_j||x|^j` and
    :math:`\tilde S = \sum_j j|b_j||x|^{j-1}` (so :math:`Q' = \mathrm{sign}(x)\tilde S`), and
    with :math:`h = g/Q` (g the output gradient) and :math:`F = P/Q`:

    * :math:`\partial L/\partial x = h\,(R - F\,\mathrm{sign}(x)\tilde S)`,
    * :math:`\partial L/\partial a_i = \sum h\,x^i` (over the positions sharing :math:`a_i`),
    * :math:`\partial L/\partial b_{g,j} = -\mathrm{sign}(b_{g,j})\sum_{\text{group } g}
      h F\,|x|^j` (:math:`d|b x^j|/db = \mathrm{sign}(b x^j)\,x^j = \mathrm{sign}(b)|x|^j`).

    sign(0) = 0 throughout, as autograd's ``abs`` does. The work runs over chunks of rows
    (:data:`_CPU_CHUNK_NUMEL` elements on CPU) with preallocated buffers; the coefficient sums
    are accumulated elementwise over the chunks and reduced once at the end. Under
    ``backward(create_graph=True)`` the gradients come from autograd through
    :func:`_group_rational_reference` instead, so higher derivatives exist.
    """

    @staticmethod
    def forward(ctx, x, numerator, denominator, num_groups):
        ctx.save_for_backward(x, numerator, denominator)
        ctx.num_groups = num_groups
        with _no_autocast(x.device):
            return _GroupRationalFunction._forward(x, numerator, denominator, num_groups)

    @staticmethod
    def _forward(x, numerator, denominator, num_groups):
        dtype = torch.promote_types(x.dtype, torch.float32)
        d = x.shape[-1]
        xg = x.reshape(-1, num_groups, d // num_groups)
        out = torch.empty(xg.shape, dtype=x.dtype, device=x.device)
        if xg.numel() == 0:
            return out.reshape(x.shape)
        a = _coefficient_views(numerator.to(dtype))
        b = _coefficient_views(denominator.to(dtype).abs())
        one = torch.ones((), dtype=dtype, device=x.device)
        rows = _chunk_rows(xg)
        buf = torch.empty((3 if x.dtype == dtype else 4, rows, *xg.shape[1:]), dtype=dtype,
                          device=x.device)
        for start in range(0, xg.shape[0], rows):
            n = min(rows, xg.shape[0] - start)
            p, q, ax, *conv = buf[:, :n].unbind()
            c = xg[start:start + n]
            if conv:
                c = conv[0].copy_(c)
            torch.addcmul(a[4], c, a[5], out=p)  # P(x), Horner
            for i in (3, 2, 1, 0):
                torch.addcmul(a[i], p, c, out=p)
            torch.abs(c, out=ax)  # Q(x) = 1 + Σ |b_j| |x|^j, Horner in |x|
            torch.addcmul(b[2], ax, b[3], out=q)
            torch.addcmul(b[1], q, ax, out=q)
            torch.addcmul(b[0], q, ax, out=q)
            torch.addcmul(one, q, ax, out=q)
            torch.div(p, q, out=out[start:start + n])
        return out.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        x, numerator, denominator = ctx.saved_tensors
        need_x, need_a, need_b = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():
            # backward(create_graph=True): differentiable gradients from autograd through the
            # reference, so double backward works (rare; costs the reference's memory).
            wanted = [t for t, need in zip((x, numerator, denominator), (need_x, need_a, need_b),
                                           strict=True) if need]
            y = _group_rational_reference(x, numerator, denominator, ctx.num_groups)
            found = iter(torch.autograd.grad(y, wanted, grad, create_graph=True))
            return (*(next(found) if need else None for need in (need_x, need_a, need_b)), None)
        with _no_autocast(x.device):
            dx, da, db = _GroupRationalFunction._backward(
                grad, x, numerator, denominator, ctx.num_groups, need_x, need_a, need_b)
        return dx, da, db, None

    @staticmethod
    def _backward(grad, x, numerator, denominator, num_groups, need_x, need_a, need_b):
        dtype = torch.promote_types(x.dtype, torch.float32)
        dev = x.device
        d = x.shape[-1]
        xg = x.reshape(-1, num_groups, d // num_groups)
        gg = grad.reshape(xg.shape)
        num = numerator.to(dtype)
        den = denominator.to(dtype)
        a = _coefficient_views(num)
        ra = _coefficient_views(num[:, 1:] * torch.arange(1, 6, dtype=dtype, device=dev))
        b_abs = den.abs()
        b = _coefficient_views(b_abs)
        rb = _coefficient_views(b_abs * torch.arange(1, 5, dtype=dtype, device=dev))
        one = torch.ones((), dtype=dtype, device=dev)
        dx = torch.empty(xg.shape, dtype=x.dtype, device=dev) if need_x else None
        rows = _chunk_rows(xg)
        # Σ h x^i (i = 0..5) and Σ hF |x|^j (j = 1..4), accumulated elementwise over chunks.
        # Zeroed and reduced one chunk-sized slab at a time, so that on CPU these ops stay
        # serial too.
        acc = torch.empty((10, rows, *xg.shape[1:]), dtype=dtype, device=dev)
        for slab in acc:
            slab.zero_()
        buf = torch.empty((6 if x.dtype == dtype else 7, rows, *xg.shape[1:]), dtype=dtype,
                          device=dev)
        for start in range(0, xg.shape[0] if xg.numel() else 0, rows):
            n = min(rows, xg.shape[0] - start)
            p, r, q, ax, s, h, *conv = buf[:, :n].unbind()
            m = acc[:, :n].unbind()
            c = xg[start:start + n]
            if conv:
                c = conv[0].copy_(c)
            g = gg[start:start + n]
            torch.addcmul(a[4], c, a[5], out=p)  # P
            for i in (3, 2, 1, 0):
                torch.addcmul(a[i], p, c, out=p)
            torch.abs(c, out=ax)  # Q
            torch.addcmul(b[2], ax, b[3], out=q)
            torch.addcmul(b[1], q, ax, out=q)
            torch.addcmul(b[0], q, ax, out=q)
            torch.addcmul(one, q, ax, out=q)
            if need_x:
                torch.addcmul(ra[3], c, ra[4], out=r)  # R = P'
                for i in (2, 1, 0):
                    torch.addcmul(ra[i], r, c, out=r)
                torch.addcmul(rb[2], ax, rb[3], out=s)  # S̃; Q' = sign(x)·S̃
                torch.addcmul(rb[1], s, ax, out=s)
                torch.addcmul(rb[0], s, ax, out=s)
                s.mul_(torch.sign(c, out=h))
            torch.div(g, q, out=h)  # h = g/Q
            p.div_(q).mul_(h)  # p ← hF = g P/Q²
            if need_x:
                r.mul_(h)
                torch.addcmul(r, p, s, value=-1, out=dx[start:start + n])
            x2 = torch.mul(c, c, out=s)
            if need_a:
                m[0].add_(h)
                m[1].addcmul_(h, c)
                t = h.mul_(x2)
                m[2].add_(t)
                m[3].addcmul_(t, c)
                t.mul_(x2)
                m[4].add_(t)
                m[5].addcmul_(t, c)
            if need_b:
                m[6].addcmul_(p, ax)
                m[7].addcmul_(p, x2)
                p.mul_(x2)
                m[8].addcmul_(p, ax)
                m[9].addcmul_(p, x2)
        sums = torch.stack([slab.sum(dim=(0, 2)) for slab in acc])  # (10, G)
        da = db = None
        if need_a:
            da = sums[:6].T
            if numerator.shape[0] == 1:
                da = da.sum(0, keepdim=True)
            da = da.to(numerator.dtype)
        if need_b:
            db = -sums[6:].T * den.sign()
            if denominator.shape[0] == 1:
                db = db.sum(0, keepdim=True)
            db = db.to(denominator.dtype)
        if need_x:
            dx = dx.reshape(x.shape)
        return dx, da, db


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
    evaluated in at least float32 and returned in the input's dtype. Forward and backward are a
    custom autograd function (:class:`_GroupRationalFunction`) that saves only the input and
    recomputes P, Q and their derivatives in the backward, :math:`dF/dx = R/Q - P S/Q^2`; it
    agrees with autograd through the plain formula (:func:`_group_rational_reference`) to
    rounding, at the activation memory of a GELU.

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
        return _GroupRationalFunction.apply(x, self.weight_numerator, self.weight_denominator,
                                            self.num_groups)


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
