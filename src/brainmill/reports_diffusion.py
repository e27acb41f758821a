"""Report sections of the diffusion branch: backbone training, real vs generated windows and
their power spectra per channel group.

Figures only read what the stages wrote (``training.json``, ``samples.npz`` and
``samples.json`` of ``results/{ds}/models/diffusion/``).
"""

from __future__ import annotations

import html
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .generation_quality import channel_groups, mean_psd  # noqa: E402


def backbone_html(info: dict[str, Any], summary: dict[str, Any] | None) -> str:
    """What the backbone saw, how its training went, and how its samples compare, in words."""
    tr = info.get("training", {})
    subs = ", ".join(f"sub-{s}" for s in info.get("subjects", []))
    held_out = info.get("held_out_subjects", [])
    seen = ("It saw the signals (never the labels) of these subjects, test folds included, "
            "and also describes them for decoding. ")
    if held_out:
        seen += ("Never seen by it, so decoded by a strictly held-out backbone: "
                 + ", ".join(f"sub-{s}" for s in held_out) + ". ")
    text = (f"<p>Trained without labels on {info['n_windows']} single-channel windows of "
            f"{info['n_times']} samples at {info['sfreq']:g} Hz ({html.escape(subs)}); "
            f"{info.get('n_parameters')} parameters. {seen}Device "
            f"{html.escape(str(tr.get('device')))}, precision "
            f"{html.escape(str(tr.get('precision')))}, {tr.get('n_steps')} steps in "
            f"{tr.get('seconds', 0):.1f} s.</p>")
    if summary:
        lsd = ", ".join(f"{g} {v:.2f} dB" for g, v in summary["lsd_db"].items())
        text += (f"<p>Generated vs real windows ({summary['n_per_channel']} per channel, "
                 f"{summary['sampling_steps']} DDIM steps): log-spectral distance over "
                 f"{summary['band_hz'][0]:g}-{summary['band_hz'][1]:g} Hz: {lsd}.")
        if "c2st" in summary:
            c = summary["c2st"]
            folds = (", the channels of one real epoch kept in one fold" if c.get("grouped")
                     else "")
            text += (f" A classifier tells them apart with cross-validated accuracy "
                     f"{c['accuracy']:.2f} (0.5 = indistinguishable; p = {c['p_value']:.2g}"
                     f"{folds}).")
        text += (" The real windows are drawn from the backbone's own training data, so this "
                 "is descriptive; held-out comparisons are in BENCHMARKS.md.</p>")
    return text


def _samples(samples: Any) -> tuple[np.ndarray, np.ndarray, list[str], float]:
    return (samples["real"], samples["generated"], [str(c) for c in samples["ch_names"]],
            float(samples["sfreq"]))


def examples_figure(samples: Any, n_channels: int = 3, n_examples: int = 2) -> plt.Figure:
    """A few real and generated windows of the first channels, in µV."""
    real, gen, names, sfreq = _samples(samples)
    rows = min(n_channels, len(names))
    cols = min(n_examples, real.shape[1])
    t = np.arange(real.shape[-1]) / sfreq
    fig, axes = plt.subplots(rows, 2, figsize=(9, 1.6 * rows + 0.6), squeeze=False,
                             sharex=True, layout="constrained")
    for r in range(rows):
        for col, (data, label) in enumerate(((real, "real"), (gen, "generated"))):
            ax = axes[r, col]
            for k in range(cols):
                ax.plot(t, 1e6 * data[r, k], lw=0.6, color=f"C{k}")
            ax.set_title(f"{names[r]}: {label}", fontsize=8)
            ax.set_ylabel("µV", fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    return fig


def psd_figure(samples: Any) -> plt.Figure:
    """Mean Welch PSD of real vs generated windows per channel group."""
    real, gen, names, sfreq = _samples(samples)
    groups = {g: idx for g, idx in channel_groups(names).items()
              if g != "all" or len(channel_groups(names)) > 2}
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 2.8), squeeze=False,
                             sharey=True, layout="constrained")
    for ax, (group, idx) in zip(axes[0], groups.items(), strict=True):
        for data, label, style in ((real, "real", "-"), (gen, "generated", "--")):
            f, p = mean_psd(data[idx].reshape(-1, data.shape[-1]), sfreq)
            ax.semilogy(f, p * 1e12, style, label=label)
        ax.set(title=f"{group} ({len(idx)} ch)", xlabel="frequency (Hz)")
    axes[0, 0].set_ylabel("PSD (µV²/Hz)")
    axes[0, 0].legend(fontsize=7)
    return fig
