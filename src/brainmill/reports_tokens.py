"""Report sections of the token branch: codebook usage, tokens over spectrograms,
class-discriminative tokens and training curves.

Figures only read what the stages wrote (``training.json`` of the tokenizer, ``tokens.npz``,
``metrics.json``) plus the epochs for the spectrogram background.
"""

from __future__ import annotations

import html
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mne  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .features.timefreq import TimeFrequency  # noqa: E402
from .io import FeatureSet  # noqa: E402
from .token_decoding import discriminative_tokens  # noqa: E402


def usage_figure(info: dict[str, Any]) -> plt.Figure:
    """Codebook usage of the tokenizer's training windows: rank-ordered code counts."""
    usage = info["usage"]
    counts = np.sort(np.asarray(usage["counts"], dtype=float))[::-1]
    used = counts[counts > 0]
    fig, ax = plt.subplots(figsize=(6, 3), layout="constrained")
    ax.bar(np.arange(1, len(used) + 1), used / used.sum(), width=1.0, color="C0")
    ax.set(xlabel="code rank", ylabel="share of tokens", yscale="log",
           title=f"{usage['n_used']} of {usage['n_codes']} codes used, perplexity "
                 f"{usage['perplexity']:.1f}")
    return fig


def curves_figure(history: list[dict[str, Any]], keys: list[str], title: str) -> plt.Figure | None:
    """Per-epoch curves of the given history keys (those present)."""
    keys = [k for k in keys if history and any(k in h for h in history)]
    if not keys:
        return None
    fig, ax = plt.subplots(figsize=(6, 3), layout="constrained")
    epochs = [h.get("epoch", i) for i, h in enumerate(history)]
    for k in keys:
        ax.plot(epochs, [h.get(k, np.nan) for h in history], marker=".", label=k)
    ax.set(xlabel="epoch", title=title)
    ax.legend(fontsize=7)
    return fig


def fold_curves_figure(metrics: dict[str, Any], protocol: str) -> plt.Figure | None:
    """Fine-tuning curves of every fold: training loss and the validation score."""
    folds = metrics["protocols"].get(protocol, {}).get("folds", [])
    runs = [f.get("fit_info", {}).get("training", {}).get("history", []) for f in folds]
    runs = [r for r in runs if r]
    if not runs:
        return None
    monitor = "val_" + metrics.get("params", {}).get("monitor", "kappa")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3), layout="constrained")
    for k, hist in enumerate(runs):
        ep = [h.get("epoch", i) for i, h in enumerate(hist)]
        axes[0].plot(ep, [h.get("train_loss", np.nan) for h in hist], color=f"C{k % 10}")
        axes[1].plot(ep, [h.get(monitor, np.nan) for h in hist], color=f"C{k % 10}",
                     label=f"fold {k}")
    axes[0].set(xlabel="epoch", ylabel="training loss", title="fine-tuning, per fold")
    axes[1].set(xlabel="epoch", ylabel=monitor, title="validation split of the training fold")
    axes[1].legend(fontsize=6, ncol=2)
    return fig


def token_spectrogram_figure(epochs: mne.BaseEpochs, tokens: FeatureSet,
                             max_examples: int = 3, channel: int = 0) -> plt.Figure:
    """Magnitude spectrogram of example epochs (one per class) with each frame's token id."""
    meta = tokens.meta
    tf = TimeFrequency(sfreq=float(epochs.info["sfreq"]), target_sfreq=meta["sfreq"],
                       n_fft=meta["n_fft"], hop=meta["hop"],
                       n_bins=min(meta["n_fft"] // 2, 100))
    X = epochs.get_data(picks="data")
    picks = []
    for k in range(len(tokens.classes)):
        rows = np.flatnonzero(tokens.y == k)
        if len(rows):
            picks.append(int(rows[0]))
    picks = picks[:max_examples]
    spec = tf.fit(X[picks]).transform(X[picks])[:, channel]  # (n, frames, bins)
    fig, axes = plt.subplots(1, len(picks), figsize=(4 * len(picks), 3.2), squeeze=False,
                             layout="constrained")
    freqs = np.arange(spec.shape[-1]) * meta["sfreq"] / meta["n_fft"]
    times = tf.frame_times(X.shape[-1])
    for ax, row, s in zip(axes[0], picks, spec, strict=True):
        ax.pcolormesh(times, freqs, np.log10(s.T + 1e-6), shading="nearest", cmap="magma")
        ids = tokens.X[row, channel]
        for t, code in zip(times, ids, strict=False):
            ax.text(t, freqs[-1] * 0.97, str(int(code)), rotation=90, ha="center", va="top",
                    fontsize=6, color="w")
        ax.set(title=f"{tokens.classes[tokens.y[row]]} (epoch {row})", xlabel="time (s)",
               ylabel="frequency (Hz)")
    fig.suptitle(f"log magnitude of channel {epochs.ch_names[channel]} with its token per frame",
                 fontsize=9)
    return fig


def discriminative_table(tokens: FeatureSet, top: int = 5) -> pd.DataFrame:
    """The most over-represented tokens per class in this subject's epochs (descriptive)."""
    rows = discriminative_tokens(tokens.X, tokens.y, tokens.classes, int(tokens.meta["n_codes"]),
                                 top=top)
    return pd.DataFrame(rows)


def tokenizer_html(info: dict[str, Any]) -> str:
    """What the tokenizer saw and how its training went, in words."""
    tr = info.get("training", {})
    subs = ", ".join(f"sub-{s}" for s in info.get("subjects", []))
    seen = ("It saw the signals (never the labels) of subjects it also tokenizes for decoding, "
            "test folds included. " if info.get("transductive", True) else
            "None of the decoded subjects' signals trained it. ")
    return (
        f"<p>Trained without labels on {info['n_windows']} single-channel windows of "
        f"{info['n_times']} samples ({html.escape(subs)}). {seen}"
        f"Device {html.escape(str(tr.get('device')))}, precision "
        f"{html.escape(str(tr.get('precision')))}, {tr.get('n_steps')} steps in "
        f"{tr.get('seconds', 0):.1f} s; best epoch {tr.get('best_epoch')}, stopped early: "
        f"{tr.get('stopped_early')}; validation windows: {tr.get('n_val')}.</p>")
