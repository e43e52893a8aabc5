"""CLIMB-Search as a plain strategy: no Spark, no tables, no MLflow.

    result = strategy.run(prior, evaluate, cfg.search, seed=42, method="climb")

`evaluate(weights, iteration)` gets an (n, M) array of mixtures and returns their n scores
(higher is better); the strategy decides which mixtures to ask for and which to return. It never
asks twice for one mixture (weights equal to 4 decimals), and with `upper` (data availability:
search.max_passes) every mixture it asks for or returns stays under those bounds. The
search stage wraps it with proxies as Spark tasks, resume and logging; `benchmarks/search.py`
wraps it with response surfaces whose optimum is known. Everything random comes from `seed`,
so the same evaluations replay the same mixtures (which is what makes a search resumable).

Methods:
- climb-paper: the recipe exactly (climb-algorithm.md): RegMix sampler, then the top
  max(n^2, 128) of 100k Dirichlet(p) candidates by the recipe's LightGBM (90/10 split), final =
  its argmax (search.final=top-mean for the recipe's older choice).
- climb: a first round half sampler, half uniform over the simplex, then `search.predictor`,
  `search.explore` and `search.final` (defaults: an ensemble of LightGBM, kernel ridge and a
  log-linear data-mixing law, with an uncertainty that grows away from the mixtures tried; later
  batches at the predicted best over candidates spread across the simplex and around the best
  observed, never a mixture trained before; the last batch trains the mixture the predictor
  would pick, and the final is the best pessimistic bound among the trained mixtures, so it has
  an observed score). Where the predictor cannot rank (cross-validated Spearman below
  search.min_cv_spearman), it says so and falls back on what was observed.
- regmix: one round of sum(budget) sampler mixtures; final = mean of the predictor's top 128.
- random: sum(budget) mixtures uniform over the simplex; final = the best observed.
- uniform, token-prop: 1/M and p, no evaluations.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from climb_spark.config import SearchConfig
from climb_spark.errors import InputError
from climb_spark.stages.search import predictor, samplers

Evaluate = Callable[[np.ndarray, int], Sequence[float]]
STRATEGY_METHODS = ("climb", "climb-paper", "regmix", "random", "uniform", "token-prop")
# Local candidates around a mixture: log-normal steps of each weight, or a share of another mixture.
LOCAL_LOG_STEPS = (0.1, 0.3, 0.6)
LOCAL_MIX_SHARES = (0.05, 0.15, 0.3)


@dataclass
class Pair:
    iteration: int
    weights: np.ndarray
    score: float


@dataclass
class Result:
    method: str
    prior: np.ndarray
    weights: np.ndarray
    predicted: float | None  # the predictor's score for the final mixture
    best_observed: float | None
    history: list[Pair]
    diagnostics: list[dict] = field(default_factory=list)  # one per predictor fit, with its step
    warnings: list[str] = field(default_factory=list)
    chosen_from: str = "fixed"  # predictor | observed | fixed
    fit: object | None = None  # the last predictor (a LightGBM booster inside), for logging
    extra: dict = field(default_factory=dict)  # regmix: the argmax beside its top-mean
    # Why this mixture: its predicted and (when it was trained) observed score against the best
    # observed mixture's, in one sentence a reviewer can read.
    explanation: str = ""
    predicted_std: float | None = None
    observed: float | None = None  # the final mixture's own proxy score, when it was trained

    @property
    def best_observed_weights(self) -> np.ndarray | None:
        return _best(self.history).weights if self.history else None


def paper_config(cfg: SearchConfig) -> SearchConfig:
    """The recipe's settings for everything the climb method lets you change."""
    final = cfg.final if cfg.final in ("argmax", "top-mean") else "argmax"
    return dataclasses.replace(cfg, first_round="recipe", predictor="recipe", explore="recipe", final=final)


def run(prior: np.ndarray, evaluate: Evaluate, cfg: SearchConfig, seed: int | None = None,
        method: str = "climb", on_fit: Callable[[int, dict], None] | None = None,
        upper: np.ndarray | None = None) -> Result:
    """`upper`: the largest weight each super-cluster may take (its data at search.max_passes over
    the token budget); every mixture proposed, trained or returned stays under it."""
    if method not in STRATEGY_METHODS:
        raise ValueError(f"unknown search method {method!r}; one of {', '.join(STRATEGY_METHODS)}")
    prior = np.asarray(prior, dtype=np.float64)
    prior = prior / prior.sum()
    seed = cfg.seed if seed is None else seed
    upper = np.ones(len(prior)) if upper is None else np.minimum(np.asarray(upper, dtype=np.float64), 1.0)
    if upper.shape != prior.shape or not np.all(np.isfinite(upper)) or np.any(upper < 0):
        raise ValueError(f"upper must hold one finite, non-negative bound per super-cluster, got {upper!r}")
    if upper.sum() < 1.0 - 1e-9:
        raise InputError(f"search: even at search.max_passes the super-clusters hold only {upper.sum():.1%} of the "
                         "token budget: raise search.max_passes or lower search.token_budget")
    search = _Search(prior, evaluate, paper_config(cfg) if method == "climb-paper" else cfg, seed, method, on_fit,
                     upper)
    return search.run()


def upper_bounds(tokens, token_budget: int, max_passes: float) -> np.ndarray | None:
    """The largest weight each super-cluster may take: max_passes passes over its tokens when
    token_budget tokens are drawn in all (0 = all of them). None = no limit (max_passes 0)."""
    if not max_passes:
        return None
    tokens = np.asarray(tokens, dtype=np.float64)
    budget = token_budget or tokens.sum()
    return np.minimum(max_passes * tokens / budget, 1.0)


def mixture_key(weights) -> tuple:
    """Mixtures with the same key are the same point of the search: weights to 4 decimals (0.01%
    of the tokens), which no proxy can tell apart."""
    return tuple(np.round(np.asarray(weights, dtype=np.float64), KEY_DECIMALS) + 0.0)


KEY_DECIMALS = 4


class _Search:
    def __init__(self, prior, evaluate, cfg: SearchConfig, seed: int, method: str, on_fit, upper):
        self.prior, self.evaluate, self.cfg, self.seed, self.method = prior, evaluate, cfg, seed, method
        self.upper = upper
        self.on_fit = on_fit or (lambda step, metrics: None)
        self.rng = np.random.default_rng(seed)
        self.history: list[Pair] = []
        self.seen: set[tuple] = set()
        self.diagnostics: list[dict] = []
        self.warnings: list[str] = []

    def run(self) -> Result:
        s, m = self.cfg, len(self.prior)
        if self.method == "uniform":
            return self._result(self._feasible(np.full((1, m), 1.0 / m))[0])
        if self.method == "token-prop":
            return self._result(self._feasible(self.prior[None, :])[0])
        if self.method == "random":
            self._batch(samplers.uniform_random(m, sum(s.budget), self.rng), 1)
            best = _best(self.history)
            return self._result(best.weights, chosen_from="observed", observed=best.score,
                                explanation=f"the best of {len(self.history)} random mixtures (observed {best.score:.4f})")
        if self.method == "regmix":
            self._batch(samplers.regmix_sample(self.prior, sum(s.budget), self.rng, s), 1)
            fit = self._fit(1, "recipe")
            cands = self._candidates(samplers.dirichlet_candidates(self.prior, s.candidates, self.rng))
            pred = fit.predict(cands)
            result = self._predicted(self._top_mean(cands, pred), fit)
            argmax = self._clean(cands[int(np.argmax(_choosable(pred, "predicted scores")))])
            result.extra["argmax"] = {"weights": argmax.tolist(),
                                      "predicted_score": float(fit.predict(argmax[None, :])[0])}
            return result
        # climb and climb-paper
        self._batch(self._first(s.budget[0]), 1)
        for iteration, n in enumerate(s.budget[1:], start=2):
            fit = self._fit(iteration - 1, s.predictor)
            self._batch(self._next(fit, n, last=iteration == len(s.budget)), iteration)
        return self._final(self._fit(len(s.budget), s.predictor))

    def _first(self, n: int) -> np.ndarray:
        if self.cfg.first_round == "recipe":
            return samplers.regmix_sample(self.prior, n, self.rng, self.cfg)
        # The sampler's mixtures are sparse and lean to the prior; the other half covers the dense
        # interior. A handful of uniform draws often fall close together, leaving a region (and an
        # interior optimum) unseen, so each is the farthest (L1) of many draws from every mixture
        # already chosen: a maximin design.
        dense = n // 2
        sparse = samplers.regmix_sample(self.prior, n - dense, self.rng, self.cfg)
        if dense == 0:
            return sparse
        pool = self._feasible(samplers.uniform_random(len(self.prior), 64 * dense, self.rng))
        nearest = np.abs(pool[:, None, :] - self._feasible(sparse)[None]).sum(axis=2).min(axis=1)
        picks = []
        for _ in range(dense):
            pick = pool[int(np.argmax(nearest))]
            picks.append(pick)
            nearest = np.minimum(nearest, np.abs(pool - pick).sum(axis=1))
        return np.vstack([sparse, picks])

    # --- evaluations and fits -------------------------------------------------------------
    def _feasible(self, weights: np.ndarray) -> np.ndarray:
        return samplers.cap_rows(weights, self.upper)

    def _candidates(self, weights: np.ndarray) -> np.ndarray:
        return self._feasible(weights)

    def _batch(self, weights: np.ndarray, iteration: int) -> None:
        """Trains the mixtures not trained before (a proposal the same as an earlier one, or as
        another of its batch, is dropped: no proxy is spent twice on one point)."""
        fresh, keys = [], set()
        for w in self._feasible(np.atleast_2d(weights)):
            key = mixture_key(w)
            if key not in self.seen and key not in keys:
                keys.add(key)
                fresh.append(w)
        if not fresh:
            return
        weights = np.array(fresh)
        scores = np.asarray(self.evaluate(weights, iteration), dtype=np.float64)
        if scores.shape != (len(weights),) or not np.all(np.isfinite(scores)):
            raise ValueError(f"evaluate returned {scores!r} for {len(weights)} mixtures; "
                             "it must return one finite score per mixture")
        if len(weights) > 1 and np.ptp(scores) == 0:
            # Not a result: a search over identical scores would pick a mixture at random.
            raise InputError(f"search: all {len(scores)} proxies of iteration {iteration} scored exactly "
                             f"{scores[0]:.6f} on {len(weights)} different mixtures: the proxies learned nothing "
                             "(check proxy.steps and the token pools)")
        self.seen |= keys
        self.history.extend(Pair(iteration, np.asarray(w, dtype=np.float64), float(v))
                            for w, v in zip(weights, scores))

    def _pairs(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([p.weights for p in self.history]), np.array([p.score for p in self.history])

    def _fit(self, step: int, kind: str):
        x, y = self._pairs()
        if kind == "recipe" or len(x) < 3:
            fit = predictor.fit(x, y, self.seed)
            metrics = fit.metrics()
            if len(x) >= 3:
                cv = predictor.cross_validate(x, y, self.seed, self.cfg.folds)
                metrics.update(predictor_cv_spearman=cv[0], predictor_cv_mae=cv[1])
        else:
            fit = predictor.fit_ensemble(x, y, self.seed, self.cfg.folds)
            metrics = fit.metrics()
        if len(x) >= 3 and metrics.get("predictor_cv_spearman") is None:
            metrics["predictor_cv_spearman"] = 0.0  # constant predictions: they rank nothing
        # What a user must know about the predictor: can it tell mixtures apart at all?
        probe = samplers.dirichlet_candidates(self.prior, 2000, np.random.default_rng(self.seed + step))
        pred = fit.predict(probe)
        metrics["predictor_distinct_share"] = len(np.unique(np.round(pred, 12))) / len(pred)
        metrics["predictor_top_tie_share"] = float(np.mean(np.isclose(pred, pred.max(), rtol=0, atol=1e-12)))
        cv = metrics.get("predictor_cv_spearman")
        metrics["predictor_can_rank"] = float(cv is not None and np.isfinite(cv) and cv >= self.cfg.min_cv_spearman
                                              and metrics["predictor_distinct_share"] > 0.01)
        metrics = {k: float(v) for k, v in metrics.items() if v is not None}
        self.diagnostics.append({"step": step, **metrics})
        self.on_fit(step, metrics)
        return fit

    def _can_rank(self) -> bool:
        return bool(self.diagnostics and self.diagnostics[-1]["predictor_can_rank"])

    # --- later batches ----------------------------------------------------------------------
    def _next(self, fit, n: int, last: bool) -> np.ndarray:
        s = self.cfg
        if s.explore == "recipe":
            cands = self._candidates(samplers.dirichlet_candidates(self.prior, s.candidates, self.rng))
            top = samplers.top_indices(_choosable(fit.predict(cands), "predicted scores"), n, s.top_min)
            # The recipe samples its batch from the predicted top; a mixture trained before is not
            # a new point, so the sample is drawn from the rest of the top.
            fresh = [i for i in top if mixture_key(self._clean(cands[i])) not in self.seen]
            return cands[self.rng.choice(fresh, size=min(n, len(fresh)), replace=False)] if fresh else cands[:0]
        # A predictor that cannot rank yet still says which way is up near the best observed:
        # stay there (a trust region) until it can.
        local = self._local_candidates(s.candidates // 4)
        cands = self._candidates(np.vstack([samplers.spread_candidates(self.prior, s.candidates, self.rng), local])
                                 if self._can_rank() else local)
        mean, std = _dist(fit, cands)
        value = mean + s.explore_kappa * std
        picks = []
        if last and s.final == "evaluated" and self._can_rank():
            # The last batch trains what the final choice would return now, so that the mixture
            # returned is one that was trained, with a score observed and not only predicted.
            pick = self._robust_pick(fit)
            picks = [] if mixture_key(pick) in self.seen else [pick]
        return self._diverse(cands, value, n, picks)

    def _local_candidates(self, n: int, centres: np.ndarray | None = None) -> np.ndarray:
        """Mixtures near the given centres (default: the best observed ones): half by moving each
        weight by a log-normal factor (the same domains, other proportions), half by mixing in a
        little of a mixture from anywhere on the simplex (domains added or shifted)."""
        if centres is None:
            x, y = self._pairs()
            centres = x[np.argsort(-y, kind="stable")[: max(1, min(5, len(x) // 3))]]
        centre = centres[self.rng.integers(len(centres), size=n)]
        half = n // 2
        sigma = self.rng.choice(LOCAL_LOG_STEPS, size=(half, 1))
        scaled = centre[:half] * np.exp(sigma * self.rng.standard_normal((half, centre.shape[1])))
        share = self.rng.choice(LOCAL_MIX_SHARES, size=(n - half, 1))
        mixed = (1 - share) * centre[half:] + share * samplers.spread_candidates(self.prior, n - half, self.rng)
        return np.vstack([scaled / scaled.sum(axis=1, keepdims=True), mixed])

    def _diverse(self, cands: np.ndarray, value: np.ndarray, n: int, picked: list | None = None) -> np.ndarray:
        """The n best by value, none closer than search.min_distance (L1) to another pick or to a
        mixture already evaluated. Where too few are that far apart (a small simplex, a narrow
        trust region), the distance halves, down to distinct mixtures; never a repeat."""
        seen, _ = self._pairs()
        picked = [np.asarray(p, dtype=np.float64) for p in (picked or [])]
        keys = {mixture_key(self._clean(p)) for p in picked} | self.seen
        order = np.argsort(-_choosable(value, "optimistic bounds"), kind="stable")[:5000]
        distance = self.cfg.min_distance
        while len(picked) < n:
            for i in order:
                c = cands[i]
                key = mixture_key(self._clean(c))
                if key in keys:
                    continue
                others = np.vstack([seen, *picked]) if picked else seen
                if np.abs(others - c).sum(axis=1).min() >= distance:
                    picked.append(c)
                    keys.add(key)
                    if len(picked) == n:
                        break
            if distance < 1e-6:
                break
            distance /= 2
        return np.array([self._clean(p) for p in picked]) if picked else cands[:0]

    # --- the final mixture ------------------------------------------------------------------
    def _robust_pick(self, fit) -> np.ndarray:
        """The best pessimistic bound (mean - kappa x spread) among the observed mixtures and
        candidates near them and across the simplex: a candidate must beat what was observed even
        where the ensemble is unsure of it."""
        s = self.cfg
        observed, _ = self._pairs()
        cands = np.vstack([observed, self._candidates(np.vstack([
            self._local_candidates(s.candidates // 2), samplers.spread_candidates(self.prior, s.candidates // 2, self.rng)]))])
        mean, std = _dist(fit, cands)
        return self._clean(cands[int(np.argmax(_choosable(mean - s.kappa * std, "pessimistic bounds")))])

    def _final(self, fit) -> Result:
        s = self.cfg
        if s.final == "argmax" or s.final == "top-mean":
            cands = self._candidates(samplers.dirichlet_candidates(self.prior, s.candidates, self.rng))
            pred = fit.predict(cands)
            weights = cands[int(np.argmax(_choosable(pred, "predicted scores")))] if s.final == "argmax" else \
                self._top_mean(cands, pred)
            return self._predicted(weights, fit)
        best = _best(self.history)
        if not self._can_rank():
            self._warn("the final mixture is the best observed one, not a prediction")
            return self._result(best.weights, fit=fit, chosen_from="observed", observed=best.score,
                                explanation=f"the best observed mixture (score {best.score:.4f}); the predictor "
                                            "cannot rank, so nothing was predicted")
        observed, scores = self._pairs()
        if s.final == "evaluated":
            # Among the trained mixtures, the best by the predictor's pessimistic bound: it pools
            # each score with its neighbours', so one lucky proxy does not win alone.
            mean, std = _dist(fit, observed)
            i = int(np.argmax(_choosable(mean - s.kappa * std, "pessimistic bounds")))
            weights = observed[i]
        else:
            weights = self._robust_pick(fit)
        return self._explained(weights, fit, best)

    def _explained(self, weights: np.ndarray, fit, best: Pair) -> Result:
        s = self.cfg
        means, spreads = _dist(fit, np.vstack([weights, best.weights]))
        (mean, best_mean), (spread, best_spread) = np.ravel(means), np.ravel(spreads)
        observed = next((p.score for p in self.history if mixture_key(p.weights) == mixture_key(weights)), None)
        bound = f"pessimistic bound mean - {s.kappa:g} x spread"
        if observed is not None and mixture_key(weights) == mixture_key(best.weights):
            why = (f"the best observed mixture (score {best.score:.4f}); predicted {mean:.4f} +- {spread:.4f}, "
                   f"the best {bound} of the mixtures considered")
        elif observed is not None:
            why = (f"a trained mixture (score {observed:.4f}, predicted {mean:.4f} +- {spread:.4f}) chosen over the best "
                   f"observed one (score {best.score:.4f}, predicted {best_mean:.4f} +- {best_spread:.4f}): its {bound} "
                   f"is higher, {mean - s.kappa * spread:.4f} against {best_mean - s.kappa * best_spread:.4f}; "
                   "a single proxy's score carries its seed's noise, the predictor pools its neighbours'")
        else:
            why = (f"an untrained mixture predicted {mean:.4f} +- {spread:.4f}, chosen over the best observed one "
                   f"(score {best.score:.4f}, predicted {best_mean:.4f} +- {best_spread:.4f}) because its {bound} is "
                   f"higher, {mean - s.kappa * spread:.4f} against {best_mean - s.kappa * best_spread:.4f}")
        return self._result(weights, predicted=float(mean), fit=fit,
                            chosen_from="observed" if observed is not None else "predictor",
                            observed=observed, explanation=why, predicted_std=float(spread))

    def _warn(self, what_was_done: str) -> None:
        d = self.diagnostics[-1]
        cv, distinct = d.get("predictor_cv_spearman", float("nan")), d["predictor_distinct_share"]
        why = []  # the failed conditions of _fit's predictor_can_rank, each with its threshold
        if not (np.isfinite(cv) and cv >= self.cfg.min_cv_spearman):
            why.append(f"its cross-validated Spearman is {cv:.2f} over {len(self.history)} pairs, "
                       f"below the {self.cfg.min_cv_spearman} it needs")
        if distinct <= 0.01:
            why.append(f"only {distinct:.1%} of its predictions on 2,000 mixtures differ (it needs over 1%)")
        self.warnings.append(f"the predictor cannot rank mixtures ({'; '.join(why)}): {what_was_done}")

    def _top_mean(self, cands: np.ndarray, pred: np.ndarray) -> np.ndarray:
        return cands[np.argsort(-_choosable(pred, "predicted scores"), kind="stable")[: self.cfg.top_mean_n]].mean(axis=0)

    def _predicted(self, weights: np.ndarray, fit) -> Result:
        rule = self.cfg.final if self.method != "regmix" else "top-mean"
        if not self._can_rank():
            self._warn(f"{self.method} keeps its recipe's choice ({rule} "
                       "of the predictor) all the same; read it as close to a random pick")
        weights = self._clean(self._feasible(weights[None, :])[0])
        predicted = float(fit.predict(weights[None, :])[0])
        best = _best(self.history)
        return self._result(weights, predicted=predicted, fit=fit, chosen_from="predictor",
                            explanation=f"the recipe's {rule} of the predictor over {self.cfg.candidates:,} Dirichlet(p) "
                                        f"candidates, predicted {predicted:.4f}, untrained (best observed "
                                        f"{best.score:.4f})")

    def _clean(self, weights: np.ndarray) -> np.ndarray:
        # Dirichlet draws carry dust weights (1e-30); zero them as the sampler does, so a weight
        # in the final mixture means documents in the export.
        weights = np.where(weights < self.cfg.min_weight, 0.0, weights)
        return self._feasible((weights / weights.sum())[None, :])[0]

    def _result(self, weights: np.ndarray, predicted: float | None = None, fit=None, chosen_from: str = "fixed",
                observed: float | None = None, explanation: str = "", predicted_std: float | None = None) -> Result:
        best = max((p.score for p in self.history), default=None)
        if not explanation and chosen_from == "fixed":
            explanation = f"{self.method}: a fixed mixture, no proxies"
        return Result(self.method, self.prior, np.asarray(weights, dtype=np.float64), predicted, best,
                      self.history, self.diagnostics, self.warnings, chosen_from, fit, explanation=explanation,
                      predicted_std=predicted_std, observed=observed)


def _best(history: list[Pair]) -> Pair:
    return max(history, key=lambda p: p.score)


def _choosable(values: np.ndarray, what: str) -> np.ndarray:
    """The values a mixture is chosen by. np.argmax and argsort take a NaN for the largest value
    (or the smallest) instead of failing: a NaN among them would choose the first mixture tried,
    and a result chosen that way must not look like one."""
    values = np.asarray(values, dtype=np.float64)
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        raise InputError(f"search: {bad:,} of the {len(values):,} {what} a mixture is chosen by are not finite "
                         "numbers (NaN or infinite), so no choice among them means anything; check the search "
                         "settings and the proxies' scores")
    return values


def _dist(fit, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(fit, "predict_dist"):
        return fit.predict_dist(x)
    return fit.predict(x), np.zeros(len(x))
