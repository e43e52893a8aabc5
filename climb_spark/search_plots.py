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


def weights_by_iteration(history: list[dict], final: np.ndarray, prior: np.ndarray):
    fig, ax = _figure(max(7, 0.4 * len(prior)), 4)
    its = sorted({r["iteration"] for r in history})
    rows = [np.mean([r["weights"] for r in history if r["iteration"] == it], axis=0) for it in its]
    labels = [f"iter {it} mean" for it in its] + ["final", "prior p"]
    rows += [np.asarray(final), np.asarray(prior)]
    width = 0.8 / len(rows)
    x = np.arange(len(prior))
    for i, (row, label) in enumerate(zip(rows, labels)):
        ax.bar(x + i * width - 0.4 + width / 2, row, width, label=label)
    ax.set(xlabel="super-cluster", ylabel="weight", title="Mixture weights", xticks=x)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def predicted_vs_actual(history: list[dict], fit):
    fig, ax = _figure(5, 5)
    x = np.array([r["weights"] for r in history])
    y = np.array([r["score"] for r in history])
    pred = fit.predict(x)
    ax.scatter(y, pred, s=14, c=[r["iteration"] for r in history], cmap="viridis")
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1)
    title = "Predictor: predicted vs actual"
    if fit.val_spearman is not None:
        title += f"\nheld-out Spearman {fit.val_spearman:.2f}"
    ax.set(xlabel="actual proxy score", ylabel="predicted", title=title)
    fig.tight_layout()
    return fig
