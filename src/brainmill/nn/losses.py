"""Auxiliary training losses."""

from __future__ import annotations

import torch

__all__ = ["z_loss"]


def z_loss(
    logits: torch.Tensor, coef: float = 1e-4, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Output-logit z-loss: ``coef · mean_tokens (log Z)²`` with ``Z = Σ_j exp(y_j)``.

    Added to the cross-entropy, it keeps the softmax normaliser ``log Z`` near 0 and so stops the
    output logits drifting (e.g. becoming very negative) away from the log-probabilities; its
    gradient w.r.t. the logits is ``2·coef·log Z·softmax(y) / n_tokens``. Computed in float32
    (float64 inputs stay float64), whatever autocast is doing.

    Sources: Chowdhery et al., PaLM, arXiv 2204.02311 §5; Wortsman et al., "Small-scale proxies
    for large-scale Transformer training instabilities", arXiv 2309.14322 §3.2 (coef 1e-4).

    Parameters
    ----------
    logits : torch.Tensor
        ``(..., n_classes)``; every leading position is one token.
    coef : float
        Weight of the loss, 1e-4 in both papers.
    mask : torch.Tensor, optional
        ``(...)`` bool, True for the tokens that count (e.g. those the cross-entropy uses);
        the mean is over those tokens only. Default: all tokens.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    work = logits if logits.dtype == torch.float64 else logits.float()
    log_z = torch.logsumexp(work, dim=-1)
    sq = log_z.square()
    if mask is None:
        return coef * sq.mean()
    mask = mask.to(torch.bool)
    if mask.shape != sq.shape:
        raise ValueError(
            f"z_loss: mask must have the logits' leading shape {tuple(sq.shape)}, "
            f"got {tuple(mask.shape)}"
        )
    return coef * sq[mask].sum() / mask.sum().clamp(min=1)
