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
    """compare's result: each method's final mixture retrained over the seeds, mean +- std."""
    use_loss = all(r["mean_target_loss"] is not None for r in rows)
    key, err = ("mean_target_loss", "std_target_loss") if use_loss else ("mean_score", "std_score")
    rows = sorted(rows, key=lambda r: r[key], reverse=not use_loss)  # best first
    fig, ax = _figure(max(6, 1.1 * len(rows)), 4)
    x = np.arange(len(rows))
    colors = ["C3" if r["method"] == "climb" else "C0" for r in rows]
    ax.bar(x, [r[key] for r in rows], yerr=[r[err] for r in rows], capsize=4, color=colors)
    values = np.array([r[key] for r in rows])
    spread = max(float(np.ptp(values)), float(max(r[err] for r in rows)), 1e-6)
    ax.set_ylim(values.min() - 1.5 * spread, values.max() + 1.5 * spread)
    ylabel = "target loss (lower is better)" if use_loss else "proxy score (higher is better)"
    ax.set(xticks=x, xticklabels=[r["method"] for r in rows], xlabel="search method", ylabel=f"{ylabel}, mean +- std",
           title=f"Final mixtures retrained over {len(rows[0]['seeds'])} seeds, best first")
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=label) for c, label in (("C3", "climb"), ("C0", "baseline"))
               if c in colors]
    handles.append(_std_handle())
    ax.legend(handles=handles, fontsize="small")
    fig.tight_layout()
    return fig


def _std_handle():
    from matplotlib.lines import Line2D

    return Line2D([], [], color="black", marker="_", markersize=10, linestyle="-", label="+- std over seeds")


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
