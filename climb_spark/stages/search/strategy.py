"""CLIMB-Search as a plain strategy: no Spark, no tables, no MLflow.

    result = strategy.run(prior, evaluate, cfg.search, seed=42, method="climb")

`evaluate(weights, iteration)` gets an (n, M) array of mixtures and returns their n scores
(higher is better); the strategy decides which mixtures to ask for and which to return. The
search stage wraps it with proxies as Spark tasks, resume and logging; `benchmarks/search.py`
wraps it with response surfaces whose optimum is known. Everything random comes from `seed`,
so the same evaluations replay the same mixtures (which is what makes a search resumable).

Methods:
- climb-paper: the recipe exactly (climb-algorithm.md): RegMix sampler, then the top
  max(n^2, 128) of 100k Dirichlet(p) candidates by the recipe's LightGBM (90/10 split), final =
  its argmax (search.final=top-mean for the recipe's older choice).
- climb: the same first round, then `search.predictor`, `search.explore` and `search.final`
  (defaults: k-fold LightGBM ensemble; batches by an optimistic bound over global and local
  candidates; a final chosen by a pessimistic bound among the observed mixtures and candidates
  near them). Where the predictor cannot rank (cross-validated Spearman below
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
# Local candidates: Dirichlet(concentration * w + floor) around the best mixtures seen so far.
LOCAL_CONCENTRATIONS = (10.0, 30.0, 100.0)
LOCAL_FLOOR = 0.02


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

    @property
    def best_observed_weights(self) -> np.ndarray | None:
        return _best(self.history).weights if self.history else None


def paper_config(cfg: SearchConfig) -> SearchConfig:
    """The recipe's settings for everything the climb method lets you change."""
    final = cfg.final if cfg.final in ("argmax", "top-mean") else "argmax"
    return dataclasses.replace(cfg, first_round="recipe", predictor="recipe", explore="recipe", final=final)


def run(prior: np.ndarray, evaluate: Evaluate, cfg: SearchConfig, seed: int | None = None,
        method: str = "climb", on_fit: Callable[[int, dict], None] | None = None) -> Result:
    if method not in STRATEGY_METHODS:
        raise ValueError(f"unknown search method {method!r}; one of {', '.join(STRATEGY_METHODS)}")
    prior = np.asarray(prior, dtype=np.float64)
    prior = prior / prior.sum()
    seed = cfg.seed if seed is None else seed
    search = _Search(prior, evaluate, paper_config(cfg) if method == "climb-paper" else cfg, seed, method, on_fit)
    return search.run()


class _Search:
    def __init__(self, prior, evaluate, cfg: SearchConfig, seed: int, method: str, on_fit):
        self.prior, self.evaluate, self.cfg, self.seed, self.method = prior, evaluate, cfg, seed, method
        self.on_fit = on_fit or (lambda step, metrics: None)
        self.rng = np.random.default_rng(seed)
        self.history: list[Pair] = []
        self.diagnostics: list[dict] = []
        self.warnings: list[str] = []

    def run(self) -> Result:
        s, m = self.cfg, len(self.prior)
        if self.method == "uniform":
            return self._result(np.full(m, 1.0 / m))
        if self.method == "token-prop":
            return self._result(self.prior.copy())
        if self.method == "random":
            self._batch(samplers.uniform_random(m, sum(s.budget), self.rng), 1)
            return self._result(_best(self.history).weights, chosen_from="observed")
        if self.method == "regmix":
            self._batch(samplers.regmix_sample(self.prior, sum(s.budget), self.rng, s), 1)
            fit = self._fit(1, "recipe")
            cands = samplers.dirichlet_candidates(self.prior, s.candidates, self.rng)
            pred = _choosable(fit.predict(cands), "predicted scores")
            result = self._predicted(self._top_mean(cands, pred), fit)
            argmax = self._clean(cands[int(np.argmax(pred))])
            result.extra["argmax"] = {"weights": argmax.tolist(),
                                      "predicted_score": float(fit.predict(argmax[None, :])[0])}
            return result
        # climb and climb-paper
        self._batch(self._first(s.budget[0]), 1)
        for iteration, n in enumerate(s.budget[1:], start=2):
            fit = self._fit(iteration - 1, s.predictor)
            self._batch(self._next(fit, n), iteration)
        return self._final(self._fit(len(s.budget), s.predictor))

    def _first(self, n: int) -> np.ndarray:
        if self.cfg.first_round == "recipe":
            return samplers.regmix_sample(self.prior, n, self.rng, self.cfg)
        # The sampler's mixtures are sparse and lean to the prior; uniform draws over the simplex
        # give the predictor the dense interior too.
        dense = n // 2
        return np.vstack([samplers.regmix_sample(self.prior, n - dense, self.rng, self.cfg),
                          samplers.uniform_random(len(self.prior), dense, self.rng)])

    # --- evaluations and fits -------------------------------------------------------------
    def _batch(self, weights: np.ndarray, iteration: int) -> None:
        scores = np.asarray(self.evaluate(weights, iteration), dtype=np.float64)
        if scores.shape != (len(weights),) or not np.all(np.isfinite(scores)):
            raise ValueError(f"evaluate returned {scores!r} for {len(weights)} mixtures; "
                             "it must return one finite score per mixture")
        distinct = len(np.unique(np.round(weights, 6), axis=0))
        if distinct > 1 and np.ptp(scores) == 0:
            # Not a result: a search over identical scores would pick a mixture at random.
            raise InputError(f"search: all {len(scores)} proxies of iteration {iteration} scored exactly "
                             f"{scores[0]:.6f} on {distinct} different mixtures: the proxies learned nothing "
                             "(check proxy.steps and the token pools)")
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
    def _next(self, fit, n: int) -> np.ndarray:
        s = self.cfg
        cands = samplers.dirichlet_candidates(self.prior, s.candidates, self.rng)
        if s.explore == "recipe":
            return samplers.next_batch(cands, _choosable(fit.predict(cands), "predicted scores"), n, s.top_min,
                                       self.rng)
        local = self._local_candidates(s.candidates // 4)
        # A predictor that cannot rank yet still says which way is up near the best observed:
        # stay there (a trust region) until it can.
        cands = np.vstack([cands, local]) if self._can_rank() else local
        mean, std = _dist(fit, cands)
        return self._diverse(cands, _choosable(mean + s.kappa * std, "optimistic bounds"), n)

    def _local_candidates(self, n: int) -> np.ndarray:
        x, y = self._pairs()
        top = x[np.argsort(-y, kind="stable")[: max(1, min(5, len(x) // 3))]]
        centre = top[self.rng.integers(len(top), size=n)]
        kappa = self.rng.choice(LOCAL_CONCENTRATIONS, size=(n, 1))
        return samplers.dirichlet_rows(kappa * centre + LOCAL_FLOOR, self.rng)

    def _diverse(self, cands: np.ndarray, value: np.ndarray, n: int) -> np.ndarray:
        """The n best by value, none closer than search.min_distance (L1) to another pick or to a
        mixture already evaluated, so a batch never spends proxies twice on the same point."""
        seen, _ = self._pairs()
        picked: list[np.ndarray] = []
        for i in np.argsort(-value, kind="stable")[:5000]:
            c = cands[i]
            others = np.vstack([seen, *picked]) if picked else seen
            if np.abs(others - c).sum(axis=1).min() >= self.cfg.min_distance:
                picked.append(c[None, :])
                if len(picked) == n:
                    break
        if len(picked) < n:  # a tiny simplex: fill up with the best remaining
            rest = [cands[i][None, :] for i in np.argsort(-value, kind="stable")[: n - len(picked)]]
            picked.extend(rest)
        return np.vstack(picked)

    # --- the final mixture ------------------------------------------------------------------
    def _final(self, fit) -> Result:
        s = self.cfg
        if s.final == "argmax" or s.final == "top-mean":
            cands = samplers.dirichlet_candidates(self.prior, s.candidates, self.rng)
            pred = _choosable(fit.predict(cands), "predicted scores")
            weights = cands[int(np.argmax(pred))] if s.final == "argmax" else self._top_mean(cands, pred)
            return self._predicted(weights, fit)
        if not self._can_rank():
            self._warn("the final mixture is the best observed one, not a prediction")
            return self._result(_best(self.history).weights, fit=fit, chosen_from="observed")
        # Observed mixtures compete with candidates; a candidate must beat them on a pessimistic
        # bound, so the choice never rests on an extrapolation that the ensemble disagrees about.
        observed, _ = self._pairs()
        cands = np.vstack([observed, self._local_candidates(s.candidates // 2),
                           samplers.dirichlet_candidates(self.prior, s.candidates // 2, self.rng)])
        mean, std = _dist(fit, cands)
        best = int(np.argmax(_choosable(mean - s.kappa * std, "pessimistic bounds")))
        weights = self._clean(cands[best])
        chosen = "observed" if best < len(observed) else "predictor"
        return self._result(weights, predicted=float(fit.predict(weights[None, :])[0]), fit=fit, chosen_from=chosen)

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
        return cands[np.argsort(-pred, kind="stable")[: self.cfg.top_mean_n]].mean(axis=0)

    def _predicted(self, weights: np.ndarray, fit) -> Result:
        if not self._can_rank():
            self._warn(f"{self.method} keeps its recipe's choice ({self.cfg.final if self.method != 'regmix' else 'top-mean'} "
                       "of the predictor) all the same; read it as close to a random pick")
        weights = self._clean(weights)
        return self._result(weights, predicted=float(fit.predict(weights[None, :])[0]), fit=fit,
                            chosen_from="predictor")

    def _clean(self, weights: np.ndarray) -> np.ndarray:
        # Dirichlet draws carry dust weights (1e-30); zero them as the sampler does, so a weight
        # in the final mixture means documents in the export.
        weights = np.where(weights < self.cfg.min_weight, 0.0, weights)
        return weights / weights.sum()

    def _result(self, weights: np.ndarray, predicted: float | None = None, fit=None,
                chosen_from: str = "fixed") -> Result:
        best = max((p.score for p in self.history), default=None)
        return Result(self.method, self.prior, np.asarray(weights, dtype=np.float64), predicted, best,
                      self.history, self.diagnostics, self.warnings, chosen_from, fit)


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


def _best(history: list[Pair]) -> Pair:
    return max(history, key=lambda p: p.score)


def _dist(fit, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(fit, "predict_dist"):
        return fit.predict_dist(x)
    return fit.predict(x), np.zeros(len(x))
