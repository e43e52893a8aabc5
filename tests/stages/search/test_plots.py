"""The search's figures read without help: every axis labelled, every series in a legend,
super-clusters by name, and the predicted-vs-actual title saying held-out or in-sample."""
import numpy as np
import pytest

from climb_spark.stages.search import plots, predictor

NAMES = ["0: python, module", "1: film, review", "2: election, debate"]


@pytest.fixture
def history():
    rng = np.random.default_rng(0)
    weights = rng.dirichlet(np.ones(3), 12)
    return [{"iteration": 1 + i // 6, "weights": w.tolist(), "score": float(-3 + w[0] - 0.5 * w[2])}
            for i, w in enumerate(weights)]


def _labelled(fig):
    import matplotlib.pyplot as plt

    try:
        axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        assert all(ax.get_xlabel() and ax.get_ylabel() for ax in axes), [(a.get_xlabel(), a.get_ylabel()) for a in axes]
        return axes[0]
    finally:
        plt.close(fig)


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_every_search_figure_has_labelled_axes_a_legend_and_names(history):
    ax = _labelled(plots.scores_by_iteration(history))
    assert _legend(ax) == ["one proxy (one mixture)", "best of the iteration"]

    prior = np.array([0.5, 0.3, 0.2])
    ax = _labelled(plots.weights_by_iteration(history, np.array([0.6, 0.3, 0.1]), prior, NAMES))
    assert any(t.startswith("best observed (iter ") for t in _legend(ax)) and [t.get_text() for t in ax.get_xticklabels()] == NAMES

    ax = _labelled(plots.mixture_vs_prior(NAMES, prior, {"climb (chosen)": [0.6, 0.3, 0.1], "uniform": [1 / 3] * 3}))
    assert _legend(ax) == ["prior p (token share)", "climb (chosen)", "uniform"]
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES

    rows = [{"method": m, "scale": scale, "seeds": [1, 2], "mean_score": s, "std_score": 0.01, "mean_target_loss": -s,
             "std_target_loss": 0.01, "margin": d, "margin_low": d - 0.05, "margin_high": d + 0.05}
            for scale in ("proxy", "target") for m, s, d in (("climb", -3.1, 0.2), ("uniform", -3.3, -0.2))]
    fig = plots.comparison(rows)
    assert [ax.get_title().split(":")[0] for ax in fig.axes] == ["proxy scale", "target scale"]
    for ax in fig.axes:
        # The axis is the difference to the best method: zero is on it, so a small gap looks small.
        low, high = ax.get_ylim()
        assert low < 0 < high
    ax = _labelled(fig)
    assert _legend(ax) == ["climb", "baseline", "paired interval over seeds"]


def test_predicted_vs_actual_says_held_out_or_in_sample(history):
    x = np.array([r["weights"] for r in history])
    y = np.array([r["score"] for r in history])
    ensemble = predictor.fit_ensemble(x, y, seed=0, folds=3)
    ax = _labelled(plots.predicted_vs_actual(history, ensemble))
    assert ax.get_title().startswith("Predictor, held-out: predicted vs actual\nheld-out Spearman")

    recipe = predictor.fit(x, y, seed=0)
    ax = _labelled(plots.predicted_vs_actual(history, recipe))
    assert ax.get_title().startswith("Predictor, in-sample: predicted vs actual")
    assert "in-sample" in ax.get_ylabel()
