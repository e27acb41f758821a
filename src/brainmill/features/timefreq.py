"""Time-frequency front end and TFM tokens as scikit-learn transformers.

The torch pieces (robust scaling, STFT magnitude, the tokenizer itself) live in
:mod:`brainmill.models` so they run with torch and numpy alone; this module adds what a
notebook user expects around them: resampling with MNE, ``(n_epochs, n_channels, n_times)``
arrays in and out, and scikit-learn's ``fit``/``transform``.

Defaults follow the TFM-Tokenizer reference (``shared/reference/methods.md`` §2): signals
resampled to 200 Hz, each channel scaled by the 95th percentile of its absolute value, a 1-s
Hann window with a 0.5-s hop, magnitude bins 0–99 Hz.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import mne
import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..evaluation import check_groups
from ..models.frontend import robust_scale, stft_magnitude
from ..models.tokenizer import TFMTokenizer, TokenizerConfig
from ..training import TrainConfig, Trainer, fp32_scope, window_epochs

__all__ = ["TFMTokens", "TimeFrequency", "resample_signals", "token_counts", "tokenize"]


def _check_signals(X: Any, name: str) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 3:
        raise ValueError(f"{name}: X must be (n_epochs, n_channels, n_times), got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    if not np.isfinite(X).all():
        raise ValueError(f"{name}: X contains NaN or infinite values")
    return X


def resample_signals(X: np.ndarray, sfreq: float, target: float) -> np.ndarray:
    """Resample epochs along time with MNE's FFT method (as the reference's scipy resample).

    Parameters
    ----------
    X : ndarray, shape (n_epochs, n_channels, n_times)
        Signals sampled at ``sfreq``.
    sfreq, target : float
        Current and new sampling frequency (Hz).

    Returns
    -------
    ndarray, shape (n_epochs, n_channels, round(n_times * target / sfreq)), float32
    """
    X = np.asarray(X, dtype=np.float64)
    if np.isclose(sfreq, target):
        return X.astype(np.float32)
    out = mne.filter.resample(X, up=float(target) / float(sfreq), axis=-1, verbose="error")
    return np.ascontiguousarray(out, dtype=np.float32)


class TimeFrequency(TransformerMixin, BaseEstimator):
    """Per-channel magnitude spectrograms (resample → robust scale → STFT). Nothing is fitted.

    Parameters
    ----------
    sfreq : float
        Sampling frequency of the input (Hz).
    target_sfreq : float
        Frequency the signals are resampled to before the STFT. Default 200.
    n_fft, hop : int
        STFT window and hop in samples at ``target_sfreq``. Defaults 200 and 100 (1 s, 0.5 s).
    n_bins : int
        Frequency bins kept from 0 Hz (resolution ``target_sfreq / n_fft``). Default 100.
    scale : bool
        Divide each channel by the 95th percentile of its absolute value first. Default True.

    Notes
    -----
    ``transform`` maps ``(n_epochs, n_channels, n_times)`` to
    ``(n_epochs, n_channels, n_frames, n_bins)`` float32 with
    ``n_frames = 1 + (n_times' - n_fft) // hop`` and ``n_times'`` the resampled length.
    """

    def __init__(self, sfreq: float = 200.0, target_sfreq: float = 200.0, n_fft: int = 200,
                 hop: int = 100, n_bins: int = 100, scale: bool = True) -> None:
        self.sfreq = sfreq
        self.target_sfreq = target_sfreq
        self.n_fft = n_fft
        self.hop = hop
        self.n_bins = n_bins
        self.scale = scale

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> TimeFrequency:
        X = _check_signals(X, type(self).__name__)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        X = resample_signals(_check_signals(X, type(self).__name__), self.sfreq,
                             self.target_sfreq)
        x = torch.from_numpy(X)
        if self.scale:
            x = robust_scale(x)
        with torch.no_grad():
            spec = stft_magnitude(x, n_fft=self.n_fft, hop=self.hop, n_bins=self.n_bins)
        return spec.numpy()

    def frame_times(self, n_times: int) -> np.ndarray:
        """Centre time (s) of each STFT frame for an input of ``n_times`` samples."""
        n = int(round(n_times * self.target_sfreq / self.sfreq))
        n_frames = 1 + (n - self.n_fft) // self.hop
        return (np.arange(n_frames) * self.hop + self.n_fft / 2) / self.target_sfreq


class TFMTokens(TransformerMixin, BaseEstimator):
    """Discrete time-frequency tokens per channel and frame from a learned TFM tokenizer.

    ``fit`` trains a :class:`brainmill.models.tokenizer.TFMTokenizer` on every channel of every
    epoch as an independent single-channel window (masked spectrogram reconstruction, no labels:
    ``y`` is ignored). ``transform`` returns the code index of every (channel, frame).

    Parameters
    ----------
    sfreq : float
        Sampling frequency of the input (Hz); signals are resampled to ``tokenizer['sfreq']``.
    tokenizer : dict or None
        :class:`~brainmill.models.tokenizer.TokenizerConfig` fields (default: the reference's).
    training : dict or None
        :class:`~brainmill.training.TrainConfig` fields except ``seed``.
    seed : int
        Seed of initialisation, masks and batch order.
    run_dir : str or None
        Checkpoint folder for resumable training (see :class:`~brainmill.training.Trainer`).
    batch_size : int
        Most windows per forward pass in ``transform``. Default 512.
    n_jobs : int or None
        Threads of ``transform`` on CPU (:func:`tokenize`); ``None``: torch's thread count.

    Attributes
    ----------
    tokenizer_ : TFMTokenizer
        The trained model (eval mode, on CPU).
    training_ : dict
        History, best epoch, device, precision, seconds of the training run.
    codebook_ : ndarray, shape (n_codes, dim)
    """

    def __init__(self, sfreq: float = 200.0, tokenizer: dict | None = None,
                 training: dict | None = None, seed: int = 0, run_dir: str | None = None,
                 batch_size: int = 512, n_jobs: int | None = None) -> None:
        self.sfreq = sfreq
        self.tokenizer = tokenizer
        self.training = training
        self.seed = seed
        self.run_dir = run_dir
        self.batch_size = batch_size
        self.n_jobs = n_jobs

    def _windows(self, X: np.ndarray) -> np.ndarray:
        cfg = TokenizerConfig(**(self.tokenizer or {}))
        Xr = resample_signals(_check_signals(X, type(self).__name__), self.sfreq, cfg.sfreq)
        if Xr.shape[-1] < cfg.n_fft:
            raise ValueError(
                f"TFMTokens: epochs of {X.shape[-1]} samples at {self.sfreq} Hz are "
                f"{Xr.shape[-1]} samples at {cfg.sfreq} Hz, shorter than one STFT window "
                f"(n_fft={cfg.n_fft}); use longer epochs or a smaller n_fft")
        return Xr

    def fit(self, X: np.ndarray, y: np.ndarray | None = None,
            groups: np.ndarray | None = None) -> TFMTokens:
        """Train the tokenizer on every channel of every epoch (``y`` is ignored).

        ``groups`` (one label per epoch, optional): the validation split holds whole groups
        (recordings) instead of whole epochs; the channels of one epoch always stay together.
        """
        Xr = self._windows(X)
        n, c, t = Xr.shape
        torch.manual_seed(self.seed)  # the initial weights and codebook
        model = TFMTokenizer(TokenizerConfig(**(self.tokenizer or {})))
        trainer = Trainer(TrainConfig(**{**(self.training or {}), "seed": self.seed}),
                          run_dir=self.run_dir)
        # channels of one epoch (of one group) stay on one side of the validation split
        groups = check_groups(groups, n, "TFMTokens")
        rows = window_epochs(n, c)
        if groups is not None:
            rows = groups[rows]
        result = trainer.fit(
            model,
            lambda m, batch, gen: m.training_loss(batch[0], gen),
            (torch.from_numpy(Xr.reshape(n * c, 1, t)),),
            groups=rows,
        )
        self.tokenizer_ = model.cpu().eval()
        self.training_ = result.summary()
        self.codebook_ = model.codebook.detach().cpu().numpy().copy()
        self.n_features_in_ = c
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Token ids, shape (n_epochs, n_channels, n_frames), int64."""
        check_is_fitted(self, "tokenizer_")
        return tokenize(self.tokenizer_, self._windows(X), self.batch_size, self.n_jobs)


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """torch's (process-wide) intra-op thread count set to ``n``, restored on exit."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tokenize(model: TFMTokenizer, X: np.ndarray, batch_size: int = 512,
             n_jobs: int | None = None) -> np.ndarray:
    """Tokens of already-resampled signals ``(n, C, T)``, ``batch_size`` epochs·channels at a time.

    On CPU the batches run side by side on ``n_jobs`` threads, each computing its batch with
    one intra-op thread (torch's thread count is set to 1 meanwhile and restored after), and
    their number is rounded up to a multiple of ``n_jobs`` so the threads finish together.
    Independent streams do not wait for each other at every small operation as intra-op
    threads do, which made them faster and steadier on a 2-core VM (``BENCHMARKS.md``).
    Every window is tokenized on its own, so the ids do not depend on the batching.

    Parameters
    ----------
    model : TFMTokenizer
        Left in its training mode; tokenized in eval mode.
    X : ndarray, shape (n, C, T)
        Signals at ``model.config.sfreq``.
    batch_size : int
        Most windows (epochs·channels) per forward pass.
    n_jobs : int, optional
        Threads on CPU; by default :func:`torch.get_num_threads` (Snakemake's ``threads`` in
        the workflow). 1, a CUDA model, or CPU autocast (thread-local in torch, so not seen
        by worker threads) tokenizes one batch after another.

    Returns
    -------
    ndarray of int64, shape (n, C, n_frames)
    """
    n, c, t = X.shape
    flat = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32).reshape(n * c, 1, t))
    device = next(model.parameters()).device
    jobs = torch.get_num_threads() if n_jobs is None else int(n_jobs)
    if jobs < 1 or batch_size < 1:
        raise ValueError(f"tokenize: n_jobs and batch_size must be at least 1 (got "
                         f"{n_jobs} and {batch_size})")
    threaded = (jobs > 1 and device.type == "cpu" and not torch.is_autocast_enabled("cpu")
                and len(flat) > 1)
    n_batches = max(1, -(-len(flat) // batch_size))
    if threaded:
        n_batches = min(len(flat), -(-n_batches // jobs) * jobs)
    size = max(1, -(-len(flat) // n_batches))
    starts = range(0, len(flat), size)

    def one(start: int) -> torch.Tensor:
        return model.tokenize(flat[start:start + size].to(device)).cpu()

    was_training = model.training
    model.eval()
    try:  # model.tokenize is no-grad itself, also in the worker threads
        if threaded:
            with _torch_threads(1), ThreadPoolExecutor(min(jobs, len(starts))) as pool:
                out = list(pool.map(one, starts))
        else:  # fp32 on CUDA means fp32 convolutions too (not cuDNN's default TF32)
            autocast = device.type == "cuda" and torch.is_autocast_enabled("cuda")
            with fp32_scope(device, "bf16" if autocast else "fp32"):
                out = [one(start) for start in starts]
    finally:
        model.train(was_training)
    ids = torch.cat(out).reshape(n, c, -1)
    return ids.numpy().astype(np.int64)


def token_counts(ids: np.ndarray, n_codes: int) -> np.ndarray:
    """Occurrences of every code, shape (n_codes,), over all epochs, channels and frames."""
    return np.bincount(np.asarray(ids).ravel(), minlength=n_codes)
