"""Report pieces for the ACM decoders: inner-CV heat-map, per-fold choices, tangent-space view,
and the dataset-level comparison with the classical decoders."""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

CLASSICAL = ("ts_lr", "csp_lda")


def is_acm(metrics: dict[str, Any]) -> bool:
    return str(metrics.get("decoder", "")).startswith("acm_")


def fold_choices(metrics: dict[str, Any]) -> pd.DataFrame:
    """One row per outer fold: protocol, fold, chosen order, lag (and C, kernel), n_train."""
    rows = []
    for protocol, res in metrics["protocols"].items():
        for fold in res.get("folds", []):
            info = fold.get("fit_info") or {}
            rows.append({"protocol": protocol, "fold": fold["fold"],
                         "test_session": fold.get("test_session"),
                         "n_train": info.get("n_train"), "selection": info.get("selection"),
                         "order": info.get("order"), "lag": info.get("lag"),
                         "C": info.get("C"), "kernel": info.get("kernel"),
                         "inner score": info.get("scoring")})
    return pd.DataFrame(rows)


def heatmap_figure(metrics: dict[str, Any], protocol: str) -> plt.Figure | None:
    """Mean inner-CV score over outer folds per (order, lag); chosen points marked by count."""
    folds = metrics["protocols"].get(protocol, {}).get("folds", [])
    infos = [f["fit_info"] for f in folds if f.get("fit_info", {}).get("inner_scores")]
    infos = [i for i in infos if i.get("selection") == "grid"]
    if not infos:
        return None
    orders, lags = infos[0]["orders"], infos[0]["lags"]
    grids = np.array([[[np.nan if v is None else v for v in row] for row in i["inner_scores"]]
                      for i in infos], dtype=float)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells: infeasible points
        mean = np.nanmean(grids, axis=0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * len(lags), 1.0 + 0.4 * len(orders)),
                           layout="constrained")
    im = ax.imshow(mean, origin="lower", cmap="viridis", aspect="auto")
    fig.colorbar(im, ax=ax, label=f"inner {infos[0].get('scoring')} (mean over folds)")
    counts = Counter((i["order"], i["lag"]) for i in infos)
    for (o, lg), n in counts.items():
        ax.text(lags.index(lg), orders.index(o), str(n), ha="center", va="center",
                color="w", fontsize=8, fontweight="bold")
    ax.set_xticks(range(len(lags)), lags)
    ax.set_yticks(range(len(orders)), orders)
    ax.set(xlabel="lag (samples)", ylabel="order",
           title=f"{metrics['decoder']} — {protocol}: inner-CV scores")
    ax.title.set_fontsize(9)
    return fig


def projection_figure(metrics: dict[str, Any]) -> plt.Figure | None:
    """Scatter of the 2-D PCA of tangent vectors, coloured by class."""
    proj = metrics.get("tangent_projection")
    if not proj:
        return None
    pts, y = np.asarray(proj["points"]), np.asarray(proj["y"])
    fig, ax = plt.subplots(figsize=(4.2, 3.6), layout="constrained")
    for k, name in enumerate(metrics["classes"]):
        sel = y == k
        ax.scatter(pts[sel, 0], pts[sel, 1], s=12, alpha=0.75, label=name)
    ax.set(xlabel=f"PC1 ({proj['explained'][0]:.0%})", ylabel=f"PC2 ({proj['explained'][1]:.0%})",
           title=f"{metrics['decoder']}: tangent vectors, order {proj['order']}, "
                 f"lag {proj['lag']}")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    return fig


def comparison_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Paired per-subject comparison of every ACM decoder with every classical decoder.

    Columns: ``acm``, ``versus``, ``protocol``, ``metric`` (accuracy, roc_auc),
    ``n_subjects``, ``mean_difference`` (ACM − other, mean over subjects), ``sd``,
    ``acm_better`` (subjects where ACM scored higher).
    """
    ok = scores[scores["skipped"] == ""] if "skipped" in scores else scores
    rows = []
    acms = sorted(d for d in ok["decoder"].unique() if str(d).startswith("acm_"))
    others = [d for d in CLASSICAL if d in set(ok["decoder"])]
    for acm in acms:
        for other in others:
            for protocol in sorted(ok["protocol"].unique()):
                for metric in ("accuracy", "roc_auc"):
                    col = f"{metric}_mean"
                    if col not in ok:
                        continue
                    a = ok[(ok.decoder == acm) & (ok.protocol == protocol)].set_index("subject")
                    b = ok[(ok.decoder == other) & (ok.protocol == protocol)].set_index("subject")
                    diff = (a[col] - b[col]).dropna()
                    if diff.empty:
                        continue
                    rows.append({"acm": acm, "versus": other, "protocol": protocol,
                                 "metric": metric, "n_subjects": len(diff),
                                 "mean_difference": float(diff.mean()),
                                 "sd": float(diff.std(ddof=1)) if len(diff) > 1 else None,
                                 "acm_better": int((diff > 0).sum())})
    return pd.DataFrame(rows)
