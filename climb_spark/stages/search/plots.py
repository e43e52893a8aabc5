"""The search's figures for MLflow and the run report: scores by iteration, weights by iteration,
predicted vs actual, the comparison and the chosen mixture against the prior. Every axis is
labelled, every series is in a legend, and super-clusters are named by their top terms where the
caller has them."""
from __future__ import annotations

import numpy as np


def _figure(width: float = 7, height: float = 4):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100)


def scores_by_iteration(history: list[dict]):
    fig, ax = _figure()
    its = np.array([r["iteration"] for r in history])
    scores = np.array([r["score"] for r in history])
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(its))
    ax.scatter(its + jitter, scores, s=14, alpha=0.7, label="one proxy (one mixture)")
    for i, it in enumerate(np.unique(its)):
        ax.hlines(scores[its == it].max(), it - 0.3, it + 0.3, colors="C3",
                  label="best of the iteration" if i == 0 else None)
    ax.set(xlabel="iteration", ylabel="proxy score (higher is better)", title="Proxy scores by iteration",
           xticks=np.unique(its))
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def weights_by_iteration(history: list[dict], final: np.ndarray, prior: np.ndarray,
                         names: list[str] | None = None):
    fig, ax = _figure(max(7, 0.9 * len(prior)), 4.5)
    its = sorted({r["iteration"] for r in history})
    rows = [np.mean([r["weights"] for r in history if r["iteration"] == it], axis=0) for it in its]
    best = max(history, key=lambda r: r["score"])
    labels = [f"iter {it} mean" for it in its] + [f"best observed (iter {best['iteration']})", "final", "prior p"]
    rows += [np.asarray(best["weights"]), np.asarray(final), np.asarray(prior)]
    width = 0.8 / len(rows)
    x = np.arange(len(prior))
    for i, (row, label) in enumerate(zip(rows, labels)):
        ax.bar(x + i * width - 0.4 + width / 2, row, width, label=label)
    ax.set(xlabel="super-cluster (top terms)", ylabel="weight", title="Mixture weights", xticks=x)
    ax.set_xticklabels(names or [str(i) for i in x], rotation=30, ha="right", fontsize="small")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def predicted_vs_actual(history: list[dict], fit):
    """Out-of-fold predictions where the predictor has them (the ensemble), in-sample otherwise;
    the title says which, since in-sample agreement flatters a predictor."""
    fig, ax = _figure(5, 5)
    x = np.array([r["weights"] for r in history])
    y = np.array([r["score"] for r in history])
    if getattr(fit, "cv_pred", None) is not None and len(fit.cv_pred) == len(y):
        pred, kind = fit.cv_pred, "held-out (out-of-fold, k-fold CV)"
        spearman, what = fit.cv_spearman, "held-out Spearman"
    else:
        from climb_spark.stages.search.predictor import spearman as rank_corr

        pred, kind = fit.predict(x), "in-sample (fitted on these pairs)"
        spearman, what = rank_corr(pred, y), "in-sample Spearman"
    its = [r["iteration"] for r in history]
    points = ax.scatter(y, pred, s=14, c=its, cmap="viridis")
    fig.colorbar(points, ax=ax, label="iteration", ticks=sorted(set(its)))
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1, label="perfect prediction")
    best = int(np.argmax(y))
    ax.scatter([y[best]], [pred[best]], s=80, facecolors="none", edgecolors="C3", label="best observed")
    title = f"Predictor, {kind.split(' (')[0]}: predicted vs actual"
    if spearman is not None:
        title += f"\n{what} {spearman:.2f} over {len(y)} pairs"
    held_out = getattr(fit, "val_spearman", None)
    if held_out is not None and kind.startswith("in-sample"):
        title += f"; held-out 10% slice {held_out:.2f}"
    ax.set(xlabel="actual proxy score (higher is better)", ylabel=f"predicted score, {kind}", title=title)
    ax.legend(fontsize="small", loc="upper left")
    fig.tight_layout()
    return fig


def comparison(rows: list[dict]):
    """compare's result, one panel per scale (the proxy's, and the larger target model's): each
    method's score against the best method's, seed by seed, with its paired interval. The axis
    is the difference, so it is zero-based and a 1% gap looks like one; the best method's bar is
    its lead over the runner-up."""
    scales = [sc for sc in ("proxy", "target") if any(r.get("scale", "proxy") == sc for r in rows)]
    fig, axes = _figure(max(6, 1.0 * len(rows) / max(len(scales), 1)) * len(scales), 4.2)
    fig.clf()
    for i, scale in enumerate(scales):
        ax = fig.add_subplot(1, len(scales), i + 1)
        mine = sorted([r for r in rows if r.get("scale", "proxy") == scale], key=lambda r: -r["mean_score"])
        x = np.arange(len(mine))
        margin = np.array([r.get("margin") if r.get("margin") is not None else r["mean_score"] - mine[0]["mean_score"]
                           for r in mine])
        low = np.array([r.get("margin_low") if r.get("margin_low") is not None else m for r, m in zip(mine, margin)])
        high = np.array([r.get("margin_high") if r.get("margin_high") is not None else m for r, m in zip(mine, margin)])
        colors = ["C3" if r["method"] == "climb" else "C0" for r in mine]
        ax.bar(x, margin, color=colors)
        ax.errorbar(x, margin, yerr=[margin - low, high - margin], fmt="none", ecolor="black", capsize=4)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set(xticks=x, xlabel="search method (best first)",
               ylabel="score difference (higher is better)",
               title=f"{scale} scale: {mine[0]['method']} first\n(its bar: lead over {mine[1]['method'] if len(mine) > 1 else '-'};"
                     f" others: gap to it; {len(mine[0]['seeds'])} seeds)")
        ax.set_xticklabels([r["method"] for r in mine], rotation=30, ha="right")
        from matplotlib.patches import Patch

        handles = [Patch(color=c, label=label) for c, label in (("C3", "climb"), ("C0", "baseline")) if c in colors]
        handles.append(_interval_handle(rows))
        ax.legend(handles=handles, fontsize="small")
    fig.tight_layout()
    return fig


def _interval_handle(rows: list[dict]):
    from matplotlib.lines import Line2D

    paired = any(r.get("margin_low") is not None for r in rows)
    return Line2D([], [], color="black", marker="_", markersize=10, linestyle="-",
                  label="paired interval over seeds" if paired else "no interval (one seed)")


def mixture_vs_prior(names: list[str], prior, mixtures: dict[str, list[float]]):
    """Each search's final mixture beside the prior p (token shares) per super-cluster; the first
    entry of `mixtures` is the chosen one, drawn in the highlight colour."""
    others = [f"C{j}" for j in range(10) if j not in (3, 7)]  # C3 marks the chosen one, C7 is the prior's grey
    rows = [("prior p (token share)", np.asarray(prior, dtype=np.float64), "C7")]
    rows += [(label, np.asarray(w, dtype=np.float64), "C3" if i == 0 else others[(i - 1) % len(others)])
             for i, (label, w) in enumerate(mixtures.items())]
    fig, ax = _figure(max(7, 0.35 * len(names) * len(rows)), 4.5)
    width = 0.8 / len(rows)
    x = np.arange(len(names))
    for i, (label, row, color) in enumerate(rows):
        ax.bar(x + i * width - 0.4 + width / 2, row, width, label=label, color=color)
    ax.set(xlabel="super-cluster (top terms)", ylabel="weight (share of training tokens)",
           title="Chosen mixture against the prior and the baselines", xticks=x)
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize="small")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never on them
    fig.tight_layout()
    return fig
