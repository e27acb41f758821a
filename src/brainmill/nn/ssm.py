"""S4D: a diagonal state-space layer applied as a long convolution (optionally bidirectional).

Channels-first layout, braindecode style: ``(batch, d_model, length)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["S4D"]

_INITS = ("lin", "inv")


def s4d_imag_init(d_state: int, init: str) -> torch.Tensor:
    """Imaginary parts ``Im A_n`` of the ``d_state / 2`` complex modes, ``n = 0 … N/2 − 1``.

    - ``"lin"`` (S4D-Lin): ``Im A_n = π n``.
    - ``"inv"`` (S4D-Inv): ``Im A_n = (N/π)·(N/(2n+1) − 1)``; for ``N = 64``: 1283.4, 414.2, …,
      0.323.

    Source: Gu, Gupta, Goel, Ré, "On the parameterization and initialization of diagonal state
    space models", arXiv 2206.11893, §4.

    Returns
    -------
    torch.Tensor
        Float64 ``(d_state // 2,)``.
    """
    n = torch.arange(d_state // 2, dtype=torch.float64)
    if init == "lin":
        return math.pi * n
    if init == "inv":
        return (d_state / math.pi) * (d_state / (2 * n + 1) - 1)
    raise ValueError(f"S4D: unknown init {init!r}; valid: {', '.join(_INITS)}")


class S4D(nn.Module):
    """Diagonal state-space layer (S4D) with zero-order-hold discretisation, FFT-applied.

    Each of the ``H = d_model`` channels is an independent single-input single-output SSM with
    ``N/2`` complex modes (``N = d_state``, conjugate pairs folded into ``2·Re``):

    - ``A_n = −exp(log_A_real_n) + i·A_imag_n``, ``dt = exp(log_dt)``, ``B = 1``, ``C`` complex,
      ``D`` real.
    - ZOH: ``Ā = exp(dt·A)``, ``B̄ = (exp(dt·A) − 1)/A``; recurrence
      ``x_t = Ā x_{t−1} + B̄ u_t``, ``y_t = 2·Re(C x_t) + D u_t`` (:meth:`forward_recurrent`).
    - Closed-form kernel (a Vandermonde product, :meth:`kernel`):
      ``K[ℓ] = 2·Re Σ_n C_n B̄_n exp(dt·A_n·ℓ)``, ``ℓ = 0 … L−1``.
    - Output (:meth:`forward`): ``y = irfft(rfft(u, 2L)·rfft(K, 2L))[:L] + D·u``, a linear
      (causal) convolution; the zero-padding to ``2L`` prevents circular wrap-around.
    - Bidirectional: a second ``C`` (``A``, ``dt`` and ``D`` shared, as in the reference
      ``FFTConv(bidirectional=True)``) gives a kernel ``K'`` for the reversed direction, and
      ``y_t = Σ_{s≤t} K[t−s] u_s + Σ_{s>t} K'[s−t−1] u_s + D u_t``. The backward kernel has no
      lag-0 term (the reference's off-by-one, kept).

    Init (minimal S4D): ``log_dt ~ U[log dt_min, log dt_max]`` per channel, ``Re A = −0.5``,
    ``Im A`` from :func:`s4d_imag_init`, ``C`` complex standard normal (``E|C|² = 1``),
    ``D ~ N(0, 1)``. The ``A`` and ``dt`` parameters carry ``_optim = {"weight_decay": 0.0}``, the
    reference's hint that they should not be decayed.

    Only the SSM convolution is here: the minimal S4D's GELU + ``Conv1d(H, 2H, 1)`` + GLU output
    stage belongs to the block that uses the layer (as in EEGDM, ``activation=None``).

    Source: Gu, Gupta, Goel, Ré, arXiv 2206.11893 (S4D); reference code ``state-spaces/s4``
    (``models/s4/s4d.py``, ``src/models/sequence/kernels/fftconv.py``), re-implemented from the
    formulas.

    Parameters
    ----------
    d_model : int
        Channels ``H``.
    d_state : int
        State size ``N`` (even); the layer keeps ``N/2`` complex modes per channel.
    dt_min, dt_max : float
        Range of the log-uniform step-size init.
    init : {"lin", "inv"}
        S4D-Lin or S4D-Inv imaginary parts.
    bidirectional : bool
        Add the reversed-direction kernel (non-causal layer).
    dropout : float
        Dropout on the output.

    Shapes
    ------
    ``x``: ``(batch, d_model, length)`` → ``(batch, d_model, length)``.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        init: str = "lin",
        bidirectional: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if d_state % 2:
            raise ValueError(f"S4D: d_state must be even (conjugate pairs), got {d_state}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"S4D: need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        self.d_model = d_model
        self.d_state = d_state
        self.init = init
        self.bidirectional = bidirectional
        modes = d_state // 2
        n_dir = 2 if bidirectional else 1

        log_dt = torch.rand(d_model) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        self.log_A_real = nn.Parameter(torch.full((d_model, modes), math.log(0.5)))
        imag = s4d_imag_init(d_state, init).float()
        self.A_imag = nn.Parameter(imag.repeat(d_model, 1))
        # Complex C stored as (..., 2) real pairs; each part N(0, 1/2) so that E|C|^2 = 1.
        self.C = nn.Parameter(torch.randn(n_dir, d_model, modes, 2) * math.sqrt(0.5))
        self.D = nn.Parameter(torch.randn(d_model))
        for p in (self.log_dt, self.log_A_real, self.A_imag):
            p._optim = {"weight_decay": 0.0}
        self.dropout = nn.Dropout(dropout)

    # ------------------------------------------------------------------ discretisation

    @property
    def dt(self) -> torch.Tensor:
        """Step sizes ``exp(log_dt)``, ``(d_model,)``."""
        return self.log_dt.exp()

    def _zoh(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``dt·A``, ``B̄ = (exp(dt·A) − 1)/A`` (both ``(H, N/2)``) and ``C`` ``(dirs, H, N/2)``."""
        a = torch.complex(-self.log_A_real.exp(), self.A_imag)
        dt_a = self.dt[:, None] * a
        b_bar = torch.expm1(dt_a) / a
        c = torch.view_as_complex(self.C.contiguous())
        return dt_a, b_bar, c

    def kernel(self, length: int) -> torch.Tensor:
        """Closed-form ZOH kernel ``K[d, h, ℓ] = 2·Re Σ_n C[d, h, n] B̄[h, n] exp(dtA[h, n]·ℓ)``.

        Returns
        -------
        torch.Tensor
            ``(n_directions, d_model, length)`` in the parameters' dtype; direction 0 is the
            forward (causal) kernel, direction 1 (bidirectional only) the reversed one.
        """
        with torch.autocast(self.log_dt.device.type, enabled=False):
            dt_a, b_bar, c = self._zoh()
            ell = torch.arange(length, device=dt_a.device, dtype=self.log_dt.dtype)
            vander = torch.exp(dt_a[..., None] * ell)  # (H, N/2, L)
            return 2 * torch.einsum("dhn,hnl->dhl", c * b_bar, vander).real

    # ------------------------------------------------------------------ forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        with torch.autocast(x.device.type, enabled=False):
            u = x.to(self.log_dt.dtype)
            k = self.kernel(length)
            if self.bidirectional:
                # Lags 0 … L−1 forward, then lags −L … −1 from the reversed kernel: K'[s−t−1].
                k = F.pad(k[0], (0, length)) + F.pad(k[1].flip(-1), (length, 0))
            else:
                k = k[0]
            n_fft = 2 * length
            y = torch.fft.irfft(
                torch.fft.rfft(u, n=n_fft) * torch.fft.rfft(k, n=n_fft), n=n_fft
            )[..., :length]
            y = y + self.D[:, None] * u
        return self.dropout(y.to(x.dtype))

    def forward_recurrent(self, x: torch.Tensor) -> torch.Tensor:
        """The same layer as the explicit step-by-step ZOH recurrence (reference, O(L) steps).

        Forward direction: ``x_t = Ā x_{t−1} + B̄ u_t``, ``y_t = 2·Re(C_0 x_t)``. Backward
        direction (bidirectional): ``r_t = Ā r_{t+1} + B̄ u_{t+1}``, ``r_{L−1} = 0``,
        ``y_t += 2·Re(C_1 r_t)``. Then ``y_t += D u_t``.
        """
        length = x.shape[-1]
        with torch.autocast(x.device.type, enabled=False):
            u = x.to(self.log_dt.dtype)
            dt_a, b_bar, c = self._zoh()
            a_bar = dt_a.exp()
            state = torch.zeros(*u.shape[:-1], a_bar.shape[-1], dtype=a_bar.dtype,
                                device=u.device)
            ys = []
            for t in range(length):
                state = a_bar * state + b_bar * u[..., t, None]
                ys.append(2 * (c[0] * state).sum(-1).real)
            y = torch.stack(ys, dim=-1)
            if self.bidirectional:
                state = torch.zeros_like(state)
                back = [torch.zeros_like(ys[0])]
                for t in range(length - 2, -1, -1):
                    state = a_bar * state + b_bar * u[..., t + 1, None]
                    back.append(2 * (c[1] * state).sum(-1).real)
                y = y + torch.stack(back[::-1], dim=-1)
            y = y + self.D[:, None] * u
        return self.dropout(y.to(x.dtype))

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_state={self.d_state}, init={self.init!r}, "
            f"bidirectional={self.bidirectional}"
        )
