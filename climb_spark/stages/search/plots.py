"""The search's figures for MLflow: scores by iteration, weights by iteration, predicted vs actual."""
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
    ax.scatter(its + jitter, scores, s=14, alpha=0.7)
    for it in np.unique(its):
        ax.hlines(scores[its == it].max(), it - 0.3, it + 0.3, colors="C3")
    ax.set(xlabel="iteration", ylabel="proxy score (higher is better)", title="Proxy scores by iteration",
           xticks=np.unique(its))
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
        pred, kind = fit.cv_pred, "out-of-fold (k-fold CV)"
        spearman = fit.cv_spearman
    else:
        pred, kind = fit.predict(x), "in-sample"
        spearman = fit.val_spearman
    its = [r["iteration"] for r in history]
    points = ax.scatter(y, pred, s=14, c=its, cmap="viridis")
    fig.colorbar(points, ax=ax, label="iteration", ticks=sorted(set(its)))
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1, label="perfect prediction")
    best = int(np.argmax(y))
    ax.scatter([y[best]], [pred[best]], s=80, facecolors="none", edgecolors="C3", label="best observed")
    title = f"Predictor: {kind} predicted vs actual"
    if spearman is not None:
        title += f"\nSpearman {spearman:.2f} over {len(y)} pairs"
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
    ax.bar(x, [r[key] for r in rows], yerr=[r[err] for r in rows], capsize=4,
           color=["C3" if r["method"] == "climb" else "C0" for r in rows])
    values = np.array([r[key] for r in rows])
    spread = max(float(np.ptp(values)), float(max(r[err] for r in rows)), 1e-6)
    ax.set_ylim(values.min() - 1.5 * spread, values.max() + 1.5 * spread)
    ylabel = "target loss (lower is better)" if use_loss else "proxy score (higher is better)"
    ax.set(xticks=x, xticklabels=[r["method"] for r in rows], ylabel=f"{ylabel}, mean +- std",
           title=f"Final mixtures retrained over {len(rows[0]['seeds'])} seeds, best first")
    fig.tight_layout()
    return fig
