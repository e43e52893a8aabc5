"""The search strategy without Spark: known optima, a predictor that cannot rank, replay."""
import re

import numpy as np
import pytest

from climb_spark.config import SearchConfig
from climb_spark.errors import InputError
from climb_spark.stages.search import predictor, samplers, strategy

PRIOR = np.array([0.35, 0.25, 0.2, 0.1, 0.06, 0.04])
TARGET = np.array([0.05, 0.1, 0.05, 0.2, 0.5, 0.1])  # far from the prior on purpose
CFG = SearchConfig(budget=[8, 4, 2], candidates=5000)


def loss(w: np.ndarray) -> np.ndarray:
    return np.square(np.atleast_2d(w) - TARGET).sum(axis=1)


def test_climb_gets_close_to_a_known_optimum_and_beats_the_fixed_mixtures():
    asked = []

    def evaluate(w, iteration):
        asked.append((iteration, len(w)))
        return -loss(w)

    result = strategy.run(PRIOR, evaluate, CFG, seed=3)
    assert asked == [(1, 8), (2, 4), (3, 2)]  # the budget, batch by batch
    assert len(result.history) == 14 and result.weights.sum() == pytest.approx(1)
    # Closer than the fixed mixtures every time, and by a factor over seeds; the later batches went
    # where the first one pointed (better than the first round's best) in most of them.
    runs = [strategy.run(PRIOR, lambda w, i: -loss(w), CFG, seed=seed) for seed in range(6)]
    finals = [loss(r.weights)[0] for r in runs]
    assert max(finals) < min(loss(PRIOR)[0], loss(np.full(6, 1 / 6))[0]) / 2
    assert np.mean(finals) < min(loss(PRIOR)[0], loss(np.full(6, 1 / 6))[0]) / 4
    improved = [max(p.score for p in r.history if p.iteration > 1) > max(p.score for p in r.history if p.iteration == 1)
                for r in runs]
    assert sum(improved) >= 4, improved
    # The final mixture was trained (the last batch trains what the predictor would pick).
    assert result.chosen_from == "observed" and result.observed is not None and not result.warnings
    d = result.diagnostics[-1]
    assert d["predictor_can_rank"] == 1.0 and d["predictor_cv_spearman"] > 0.5


def test_a_predictor_that_cannot_rank_is_reported_and_the_best_observed_is_returned():
    warned = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        # Pure noise: nothing to learn (a noise fit can pass the CV bar by chance, ~10% at 14 pairs).
        result = strategy.run(PRIOR, lambda w, i: rng.normal(size=len(w)), CFG, seed=seed)
        if result.warnings:
            warned += 1
            assert result.chosen_from == "observed"
            assert np.array_equal(result.weights, result.best_observed_weights)
            assert "cannot rank" in result.warnings[0] and "best observed" in result.warnings[0]
            # The reason is the failed condition with its threshold, not every diagnostic.
            assert re.match(r"the predictor cannot rank mixtures \((its cross-validated Spearman is -?[\d.]+ over "
                            r"\d+ pairs, below the 0.3 it needs|only [\d.]+% of its predictions)", result.warnings[0])
            assert result.diagnostics[-1]["predictor_can_rank"] == 0.0
    assert warned >= 6

    # Nearly every score tied: nothing to rank by, so the best observed is returned, with a warning
    # where the ties defeat the predictor (one mixture per batch, at a random place in it, scores 1;
    # three 1s can fall together by chance and rank).
    warned = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        tied = strategy.run(PRIOR, lambda w, i: (np.arange(len(w)) == rng.integers(len(w))).astype(float), CFG,
                            seed=seed)
        assert tied.chosen_from == "observed" and tied.observed == 1.0
        if tied.warnings:
            warned += 1
            assert "(it needs over 1%)" in tied.warnings[0] or "below the 0.3 it needs" in tied.warnings[0]
    assert warned >= 6


def test_the_paper_recipe_is_kept_and_warns_instead_of_hiding_a_blind_argmax():
    rng = np.random.default_rng(0)
    paper = strategy.run(PRIOR, lambda w, i: rng.normal(size=len(w)), CFG, seed=1, method="climb-paper")
    assert paper.chosen_from == "predictor" and "climb-paper keeps its recipe's choice (argmax" in paper.warnings[0]
    # The recipe's first round is RegMix's sampler alone, from the search's seed.
    first = np.array([p.weights for p in paper.history if p.iteration == 1])
    assert np.array_equal(first, samplers.regmix_sample(PRIOR, 8, np.random.default_rng(1), CFG))
    assert "predictor_cv_spearman" in paper.diagnostics[-1]  # defined although the 10% slice is one row


def test_the_same_seed_replays_the_same_mixtures_so_a_search_can_resume():
    cache: dict = {}

    def evaluate(w, iteration):
        out = []
        for row in w:
            key = tuple(np.round(row, 12))
            cache.setdefault(key, float(-loss(row)[0]))
            out.append(cache[key])
        return out

    first = strategy.run(PRIOR, evaluate, CFG, seed=7)
    n = len(cache)
    again = strategy.run(PRIOR, evaluate, CFG, seed=7)  # every evaluation is now a lookup
    assert len(cache) == n == 14
    assert np.array_equal(first.weights, again.weights)
    other = strategy.run(PRIOR, evaluate, CFG, seed=8)
    assert not np.array_equal(np.array([p.weights for p in other.history]),
                              np.array([p.weights for p in first.history]))


@pytest.mark.parametrize("method", ["regmix", "random", "uniform", "token-prop"])
def test_baselines_spend_the_same_budget_in_one_round(method):
    result = strategy.run(PRIOR, lambda w, i: -loss(w), CFG, seed=2, method=method)
    spent = {"regmix": 14, "random": 14}.get(method, 0)
    assert len(result.history) == spent and {p.iteration for p in result.history} <= {1}
    if method == "uniform":
        assert result.weights == pytest.approx(np.full(6, 1 / 6))
    if method == "token-prop":
        assert result.weights == pytest.approx(PRIOR)
    if method == "regmix":
        assert "argmax" in result.extra


def test_bad_evaluations_and_methods_are_explained():
    with pytest.raises(ValueError, match="one finite score per mixture"):
        strategy.run(PRIOR, lambda w, i: [0.0], CFG)
    with pytest.raises(ValueError, match="one finite score per mixture"):
        strategy.run(PRIOR, lambda w, i: np.full(len(w), np.nan), CFG)
    with pytest.raises(ValueError, match="unknown search method"):
        strategy.run(PRIOR, lambda w, i: np.zeros(len(w)), CFG, method="doremi-ish")
    # Proxies that learned nothing (proxy.steps too small, an empty pool) score every mixture alike.
    with pytest.raises(InputError, match=r"all \d+ proxies of iteration 1 scored exactly 6.931472 .* learned nothing"):
        strategy.run(PRIOR, lambda w, i: np.full(len(w), np.log(1024)), CFG)


@pytest.mark.parametrize("cfg", [
    SearchConfig(budget=[8, 4, 2], candidates=5000, kappa=float("nan")),  # the next batch's bound
    SearchConfig(budget=[8, 4, 2], candidates=5000, kappa=float("inf")),
    SearchConfig(budget=[8, 4], candidates=5000, explore="recipe", kappa=float("nan")),  # the final's bound
])
def test_a_choice_over_values_that_are_not_numbers_is_an_error_not_the_first_mixture(cfg):
    """np.argmax over NaN is index 0: a NaN search.kappa (before the config checked it) returned
    the first mixture tried as the final one, "chosen from observed", with exit 0."""
    with pytest.raises(InputError, match=r"search: [\d,]+ of the [\d,]+ (optimistic|pessimistic) bounds a mixture is "
                                         r"chosen by are not finite numbers"):
        strategy.run(PRIOR, lambda w, i: -loss(w), cfg, seed=3)


def test_ensemble_ranks_held_out_mixtures_from_a_handful_of_pairs():
    rng = np.random.default_rng(0)
    x, test = rng.dirichlet(np.ones(6), 12), rng.dirichlet(np.ones(6), 500)
    ens = predictor.fit_ensemble(x, -loss(x), seed=42)
    assert predictor.spearman(ens.predict(test), -loss(test)) > 0.6
    # The recipe's single LightGBM model cannot split 12 rows into leaves of 5 usefully.
    recipe = predictor.fit(x, -loss(x), seed=42)
    assert len(np.unique(recipe.predict(test))) <= 3
    mean, std = ens.predict_dist(test)
    assert np.all(std >= 0) and std.max() > 0
    assert ens.cv_spearman is not None and len(ens.cv_pred) == 12


def _recording(loss_fn):
    """evaluate() that fails the test if a mixture (by its key) is asked for twice."""
    asked: list[tuple] = []

    def evaluate(w, iteration):
        for row in w:
            key = strategy.mixture_key(row)
            assert key not in asked, f"iteration {iteration} asked again for {row}"
            asked.append(key)
        return -loss_fn(w)

    return evaluate, asked


@pytest.mark.parametrize("method", ["climb", "climb-paper", "regmix", "random"])
def test_no_mixture_is_trained_twice_within_or_across_iterations(method):
    # The default run's trap: the best first-round mixture sits on a corner, and the points near a
    # corner all round to it.
    corner = np.eye(6)[0]
    evaluate, asked = _recording(lambda w: np.square(np.atleast_2d(w) - corner).sum(axis=1))
    result = strategy.run(PRIOR, evaluate, CFG, seed=5, method=method)
    assert len(asked) == len(result.history) <= 14
    assert len({strategy.mixture_key(p.weights) for p in result.history}) == len(result.history)

    # Two super-clusters: fewer distinct mixtures exist near the optimum than the budget asks for;
    # the batches shrink instead of repeating one.
    evaluate, asked = _recording(lambda w: np.square(np.atleast_2d(w) - [1.0, 0.0]).sum(axis=1))
    small = strategy.run(np.array([0.7, 0.3]), evaluate, SearchConfig(budget=[4, 8, 8], candidates=500), seed=1,
                         method=method)
    assert len(asked) == len(small.history) == len(set(asked))


def test_a_resumed_search_replays_its_mixtures_and_trains_only_what_is_missing():
    cache: dict = {}
    trained: list[tuple] = []

    def evaluate(w, iteration, stop_at=None):
        if iteration == stop_at:
            raise KeyboardInterrupt  # the driver killed as iteration `stop_at` starts
        out = []
        for row in w:
            key = strategy.mixture_key(row)
            if key not in cache:
                trained.append(key)
                cache[key] = float(-loss(row)[0])
            out.append(cache[key])
        return out

    with pytest.raises(KeyboardInterrupt):
        strategy.run(PRIOR, lambda w, i: evaluate(w, i, stop_at=3), CFG, seed=11)
    assert len(trained) == 12  # iterations 1 and 2
    resumed = strategy.run(PRIOR, evaluate, CFG, seed=11)
    assert len(trained) == len(set(trained)) == 14 == len(resumed.history)


def test_every_mixture_respects_the_repetition_limit():
    # 2 passes over a budget of all tokens: no super-cluster above twice its token share.
    upper = strategy.upper_bounds(PRIOR * 1_000_000, 0, 2.0)
    assert upper == pytest.approx(2 * PRIOR)
    far = np.eye(6)[5]  # the optimum asks for all of the smallest super-cluster (4% of the tokens)
    for method in ("climb", "climb-paper", "regmix", "random", "uniform", "token-prop"):
        result = strategy.run(PRIOR, lambda w, i: -np.square(np.atleast_2d(w) - far).sum(axis=1), CFG, seed=3,
                              method=method, upper=upper)
        for w in [p.weights for p in result.history] + [result.weights]:
            assert w.sum() == pytest.approx(1) and np.all(w <= upper + 1e-9), (method, w)
    climb = strategy.run(PRIOR, lambda w, i: -np.square(np.atleast_2d(w) - far).sum(axis=1), CFG, seed=3, upper=upper)
    assert climb.weights[5] == pytest.approx(upper[5], abs=0.02)  # it goes as far as the data allows

    # A token budget the data cannot fill even at the limit is a clear error, not a silent repeat.
    with pytest.raises(InputError, match="hold only 40.0% of the token budget"):
        strategy.run(PRIOR, lambda w, i: -loss(w), CFG, upper=strategy.upper_bounds(PRIOR * 100, 500, 2.0))
    assert strategy.upper_bounds(PRIOR, 0, 0) is None  # max_passes 0: no limit


def test_cap_rows_moves_only_what_is_over_its_bound():
    upper = np.array([0.5, 0.5, 0.2, 0.2])
    rows = np.array([[0.3, 0.3, 0.2, 0.2], [0.25] * 4, [0.1, 0.1, 0.0, 0.8], [1.0, 0.0, 0.0, 0.0]])
    capped = samplers.cap_rows(rows, upper)
    assert capped[0] == pytest.approx(rows[0])  # feasible: unchanged
    assert np.allclose(capped.sum(axis=1), 1) and np.all(capped <= upper + 1e-12)
    assert capped[1] == pytest.approx([0.3, 0.3, 0.2, 0.2])
    # The excess goes to the domains already in the mixture, in proportion, until they are full.
    assert capped[2] == pytest.approx([0.4, 0.4, 0.0, 0.2])
    assert capped[3] == pytest.approx([0.5, 0.5 * 0.5 / 0.9, 0.2 * 0.5 / 0.9, 0.2 * 0.5 / 0.9])


def test_the_final_choice_says_why():
    evaluate, _ = _recording(loss)
    result = strategy.run(PRIOR, evaluate, SearchConfig(budget=[8, 4, 2], candidates=5000, final="robust"), seed=3)
    best = max(p.score for p in result.history)
    if result.chosen_from == "predictor":
        assert result.observed is None
        assert result.explanation.startswith(f"an untrained mixture predicted {result.predicted:.4f} +- ")
        assert f"chosen over the best observed one (score {best:.4f}" in result.explanation
        assert "pessimistic bound mean - 1 x spread is higher" in result.explanation
    else:
        assert result.observed is not None and f"score {result.observed:.4f}" in result.explanation

    # final=evaluated (the default) returns a trained mixture, with its own observed score beside
    # the prediction.
    trained = strategy.run(PRIOR, _recording(loss)[0], CFG, seed=3)
    assert trained.chosen_from == "observed" and trained.observed is not None
    mean, spread = trained.fit.predict_dist(trained.weights[None, :])
    assert (trained.predicted, trained.predicted_std) == pytest.approx((mean[0], spread[0]))
    assert trained.predicted_std > 0 and f"predicted {trained.predicted:.4f} +- {trained.predicted_std:.4f}" in trained.explanation
    assert any(strategy.mixture_key(p.weights) == strategy.mixture_key(trained.weights) for p in trained.history)
    assert trained.predicted is not None and f"predicted {trained.predicted:.4f}" in trained.explanation

    # A predictor that cannot rank: the best observed, and the sentence says nothing was predicted.
    rng = np.random.default_rng(0)
    blind = strategy.run(PRIOR, lambda w, i: rng.normal(size=len(w)), CFG, seed=0)
    if blind.warnings:
        assert blind.explanation.startswith("the best observed mixture (score ") and "cannot rank" in blind.explanation

    # Fixed mixtures and the baselines say what they are.
    assert strategy.run(PRIOR, lambda w, i: -loss(w), CFG, method="uniform").explanation.startswith("uniform: a fixed")
    assert "the best of 14 random mixtures" in strategy.run(PRIOR, lambda w, i: -loss(w), CFG, method="random").explanation
