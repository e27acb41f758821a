"""Vector quantiser with an exponential-moving-average codebook (VQ-VAE, EMA variant)."""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EMAVectorQuantizer", "QuantizerOutput"]

#: Score elements per chunk of the CPU nearest-code search (float32: 4 MB, 128 rows at K = 8192).
_CPU_SCORE_ELEMENTS = 1 << 20
#: Codes per block of the two-level CPU argmin (:func:`_first_argmin`).
_ARGMIN_BLOCK = 128


def _first_argmin(scores: torch.Tensor) -> torch.Tensor:
    """``scores.argmin(1)`` of ``(M, K)`` scores, ``K`` a multiple of :data:`_ARGMIN_BLOCK`.

    Block minima (a contiguous reduction torch vectorises), the first block reaching the row's
    minimum, then the first index inside it: the lowest index of the minimum, as ``argmin``.
    """
    rows, k = scores.shape
    blocks = scores.view(rows, k // _ARGMIN_BLOCK, _ARGMIN_BLOCK)
    block = blocks.amin(-1).argmin(1)
    within = blocks[torch.arange(rows, device=scores.device), block].argmin(1)
    return block * _ARGMIN_BLOCK + within


class QuantizerOutput(NamedTuple):
    """What :class:`EMAVectorQuantizer` returns.

    Attributes
    ----------
    quantized : torch.Tensor
        ``(..., dim)``: the nearest codes in value, the identity of ``z`` in gradient
        (straight-through).
    indices : torch.Tensor
        ``(...)`` int64 code index of every vector.
    loss : torch.Tensor
        Scalar commitment loss ``β·mean‖z − sg(q)‖²``.
    perplexity : torch.Tensor
        Scalar ``exp(−Σ_k p_k log p_k)`` of the batch's code usage ``p``.
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    perplexity: torch.Tensor


class EMAVectorQuantizer(nn.Module):
    """Vector quantiser whose codebook follows an exponential moving average of its assignments.

    Forward, for the ``M`` vectors ``z_i`` of a batch and codes ``e_k``:

    - assignment ``k_i = argmin_k ‖z_i − e_k‖²``, ``q_i = e_{k_i}``;
    - output ``z + sg(q − z)`` (straight-through: value ``q``, gradient identity to ``z``);
    - loss ``β·mean‖z − sg(q)‖²`` (``β = commitment``). Only the encoder gets this gradient,
      ``∂loss/∂z = 2β(z − q)/numel``; the codebook is a buffer, moved by the EMA alone. (The
      TFM-Tokenizer reference computes its VQ loss on the straight-through tensor, so its encoder
      gradients cancel; here ``sg`` is on ``q`` only, so they cannot.)
    - perplexity ``exp(−Σ_k p_k log p_k)``, ``p_k = n_k / M``.

    EMA update (training mode only, before which ``q`` was taken), with ``n_k`` the count and
    ``s_k = Σ_{i: k_i = k} z_i`` the sum of the vectors assigned to code ``k``:

    - ``N_k ← γ N_k + (1 − γ) n_k``, ``S_k ← γ S_k + (1 − γ) s_k`` (``γ = decay``);
    - Laplace smoothing ``Ñ_k = (N_k + ε) / (Σ_j N_j + K ε) · Σ_j N_j``;
    - ``e_k ← S_k / Ñ_k``.

    Dead-code restart (if ``dead_code_threshold > 0``): after the update, every code with
    ``N_k < dead_code_threshold`` (an EMA usage below that many assignments per batch) is set to a
    randomly drawn vector ``z_i`` of the current batch (drawn without replacement when the batch
    is large enough, from torch's global generator), with ``N_k ← threshold`` and
    ``S_k ← threshold·z_i`` so it is not restarted again straight away. 0 disables restarts.
    The threshold is per batch, so batches with few vectors per code (``M / K`` near or below
    the threshold) keep most codes under it and restart them at every update; once the EMA has
    settled (``1 / (1 − γ)`` updates), an update that restarts more than a quarter of the
    codebook raises a ``RuntimeWarning`` (once per quantiser) naming the batch and the remedy.

    Init: ``e_k ~ N(0, I/dim)`` (norm about 1, the scale of L2-normalised inputs), ``N_k = 1``
    and ``S_k = e_k``, as if each code had once been assigned its own initial vector; codes unused
    in the first batch are then restarted from the data (with the default threshold 1).

    Sources: van den Oord, Vinyals, Kavukcuoglu, "Neural discrete representation learning",
    arXiv 1711.00937 (straight-through, commitment loss, EMA update in Appendix A.1); Razavi et
    al., VQ-VAE-2, arXiv 1906.00446 (Laplace smoothing as used in their code); dead-code restart
    as in Dhariwal et al., Jukebox, arXiv 2005.00341 §2.3. Used by TFM-Tokenizer
    (Pradeepkumar et al., arXiv 2502.16060: K = 8192, dim 64, decay 0.99, eps 1e-5, L2-normalised
    inputs).

    Parameters
    ----------
    n_codes : int
        Codebook size ``K``.
    dim : int
        Code width.
    decay : float
        EMA decay ``γ``.
    eps : float
        Laplace smoothing ``ε``.
    commitment : float
        Commitment weight ``β``.
    dead_code_threshold : float
        Restart codes whose EMA usage falls below this; 0 disables.
    l2_normalize : bool
        L2-normalise ``z`` over its last axis first (inside the autograd graph), as TFM-Tokenizer
        does before its quantiser; ``quantized`` and ``loss`` then refer to the normalised ``z``.

    Shapes
    ------
    ``z``: ``(..., dim)`` → :class:`QuantizerOutput` with ``quantized`` ``(..., dim)`` and
    ``indices`` ``(...)``.

    Notes
    -----
    The EMA statistics are not all-reduced across processes; under data parallelism each replica
    would update its own codebook.
    """

    def __init__(
        self,
        n_codes: int,
        dim: int,
        decay: float = 0.99,
        eps: float = 1e-5,
        commitment: float = 0.25,
        dead_code_threshold: float = 1.0,
        l2_normalize: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMAVectorQuantizer: decay must be in [0, 1), got {decay}")
        self.n_codes = n_codes
        self.dim = dim
        self.decay = decay
        self.eps = eps
        self.commitment = commitment
        self.dead_code_threshold = dead_code_threshold
        self.l2_normalize = l2_normalize
        codebook = torch.randn(n_codes, dim) / math.sqrt(dim)
        self.register_buffer("codebook", codebook)
        self.register_buffer("cluster_size", torch.ones(n_codes))
        self.register_buffer("embed_sum", codebook.clone())
        self._updates = 0  # EMA updates so far (not saved: only for the churn warning)
        self._warned_churn = False

    # ------------------------------------------------------------------ pieces

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code by squared distance, for ``flat`` ``(M, dim)`` → ``(M,)``.

        ``‖z − e‖² = ‖z‖² − 2 z·e + ‖e‖²``; ``‖z‖²`` is the same for every code of a row, so
        the argmin of ``‖e‖² − 2 z·e`` (one fused ``addmm``, no other (M, K) pass) is taken.
        Ties go to the lowest index. On CPU the rows go through in chunks whose ``(rows, K)``
        score block stays within 4 MB (for K = 8192 and 20 000 rows, 0.32–0.33 s instead of
        0.37 s in one block on a 2-core CPU), and the argmin is taken in two levels: the
        minimum of each block of :data:`_ARGMIN_BLOCK` codes, then the first block holding the
        row's minimum, then the first index within it, which is the same index (the first of
        the minima) as one ``argmin`` at 1.0 instead of 3.6 µs per row of 8192 codes.
        """
        cb = self.codebook
        sq = cb.square().sum(1)[None, :]
        rows = flat.shape[0]
        cpu = flat.device.type == "cpu"
        step = max(1, _CPU_SCORE_ELEMENTS // self.n_codes) if cpu else rows
        two_level = cpu and self.n_codes % _ARGMIN_BLOCK == 0 and self.n_codes >= 4 * _ARGMIN_BLOCK
        out = torch.empty(rows, dtype=torch.long, device=flat.device)
        for start in range(0, rows, step):
            scores = torch.addmm(sq, flat[start:start + step], cb.t(), alpha=-2.0)
            out[start:start + step] = _first_argmin(scores) if two_level else scores.argmin(1)
        return out

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest-code indices ``(...)`` of ``z`` ``(..., dim)``, without moving the codebook.

        What :meth:`forward` returns as ``indices``, without the EMA update, the loss or the
        quantised vectors: the lookup of a tokenizer at inference.
        """
        z = self._normalized(z)
        with torch.autocast(z.device.type, enabled=False):
            flat = z.detach().reshape(-1, self.dim).to(self.codebook.dtype)
            return self.nearest(flat).view(z.shape[:-1])

    def _normalized(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` with its last axis checked, L2-normalised when ``l2_normalize``."""
        if z.shape[-1] != self.dim:
            raise ValueError(
                f"EMAVectorQuantizer(dim={self.dim}): last axis of z must be {self.dim}, "
                f"got shape {tuple(z.shape)}"
            )
        return F.normalize(z, dim=-1) if self.l2_normalize else z

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors of ``indices`` ``(...)`` → ``(..., dim)``."""
        return F.embedding(indices, self.codebook)

    # Python-side state (the update count, the dead-code count) would make torch.compile guard
    # on its value and recompile at every step: the update runs eagerly, outside the graph
    @torch.compiler.disable
    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor) -> None:
        sums = torch.zeros_like(self.embed_sum).index_add_(0, indices, flat)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.n_codes * self.eps) * total
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        self._updates += 1
        if self.dead_code_threshold > 0:
            self._restart_dead(flat)

    @torch.no_grad()
    def _restart_dead(self, flat: torch.Tensor) -> None:
        dead = self.cluster_size < self.dead_code_threshold
        n_dead = int(dead.sum())
        if n_dead == 0 or flat.shape[0] == 0:
            return
        self._warn_if_churning(n_dead, flat.shape[0])
        m = flat.shape[0]
        if m >= n_dead:
            pick = torch.randperm(m, device=flat.device)[:n_dead]
        else:
            pick = torch.randint(m, (n_dead,), device=flat.device)
        fresh = flat[pick]
        self.codebook[dead] = fresh
        self.embed_sum[dead] = fresh * self.dead_code_threshold
        self.cluster_size[dead] = self.dead_code_threshold

    def _warn_if_churning(self, n_dead: int, m: int) -> None:
        settled = self._updates >= 1.0 / (1.0 - self.decay)
        if self._warned_churn or not settled or 4 * n_dead <= self.n_codes:
            return
        self._warned_churn = True
        warnings.warn(
            f"EMAVectorQuantizer: {n_dead} of {self.n_codes} codes were under "
            f"dead_code_threshold={self.dead_code_threshold} and restarted in one update, after "
            f"{self._updates} updates: the codebook is churning. The batch held {m} vectors, "
            f"{m / self.n_codes:.2f} per code; use more per batch (a larger batch or longer "
            "windows), fewer codes or a lower dead_code_threshold.",
            RuntimeWarning, stacklevel=2)

    # ------------------------------------------------------------------ forward

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        z = self._normalized(z)
        with torch.autocast(z.device.type, enabled=False):
            flat = z.detach().reshape(-1, self.dim).to(self.codebook.dtype)
            indices = self.nearest(flat)
            q = self.codebook[indices]  # a copy: later in-place EMA updates do not touch it
            counts = torch.bincount(indices, minlength=self.n_codes).to(flat.dtype)
            if self.training:
                self._ema_update(flat, indices, counts)

            work = torch.promote_types(z.dtype, torch.float32)
            q = q.view(z.shape)
            loss = self.commitment * F.mse_loss(z.to(work), q.to(work))
            probs = counts / counts.sum().clamp(min=1)
            perplexity = torch.exp(-torch.special.xlogy(probs, probs).sum())
        q = q.to(z.dtype)
        quantized = z + (q - z).detach()
        return QuantizerOutput(quantized, indices.view(z.shape[:-1]), loss, perplexity)

    def extra_repr(self) -> str:
        return (
            f"n_codes={self.n_codes}, dim={self.dim}, decay={self.decay}, eps={self.eps}, "
            f"commitment={self.commitment}, dead_code_threshold={self.dead_code_threshold}"
        )
