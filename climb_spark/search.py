"""Search stage (CLIMB-Search): mixtures over the super-clusters -> proxy scores -> LightGBM
predictor -> the next mixtures, in a driver-side loop; the final mixture goes to `mixtures`.

Methods, all at the same proxy budget and with the same proxy and seed:
- climb: iteration 1 from RegMix's sampler, later ones uniformly from the predictor's top
  max(n^2, 128) of 100k Dirichlet(p) candidates; final = argmax (or top-mean) of a refit.
- regmix: one round of sum(budget) sampler mixtures; final = mean of the predictor's top 128.
- random: sum(budget) mixtures uniform over the simplex; final = the best one observed.
- uniform, token-prop: 1/M and p, no proxies.

A search is named by its settings and pools, so the same command resumes it: every proxy already
in `proxy_results` is reused, and the seeded samplers and deterministic predictor replay the
same mixtures.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from . import mixture, predictor, token_pools
from .config import Config, ConfigError
from .ids import content_id
from .proxies import ProxyRunner, ProxySpec
from .sparkutil import merge_upsert
from .tables import MIXTURES, PROXY_RESULTS, Lakehouse
from .tracking import SearchRun


@dataclass
class SearchReport:
    search_id: str
    method: str
    weights: list[float]
    prior: list[float]
    predicted: float | None
    best_observed: float | None
    n_proxies: int
    mlflow_run_id: str

    def summary(self) -> str:
        w = ", ".join(f"{i}:{v:.3f}" for i, v in enumerate(self.weights) if v >= 0.0005)
        lines = [f"search {self.search_id} ({self.method}): {self.n_proxies} proxies, MLflow run {self.mlflow_run_id}",
                 f"  final mixture  {w}"]
        if self.predicted is not None:
            lines.append(f"  predicted score {self.predicted:.4f}")
        if self.best_observed is not None:
            lines.append(f"  best observed score {self.best_observed:.4f}")
        return "\n".join(lines)


def validate(cfg: Config) -> None:
    s = cfg.search
    if not s.budget or any(b < 1 for b in s.budget):
        raise ConfigError(f"search.budget: needs one or more positive batch sizes, got {s.budget}")
    if sum(s.budget) < 2 and s.method in ("climb", "regmix"):
        raise ConfigError("search.budget: the predictor needs at least 2 proxies")
    if cfg.proxy.kind == "command" and not cfg.proxy.command:
        raise ConfigError("proxy.command: required with proxy.kind=command (an argv list)")
    if cfg.target.kind != "holdout" and not cfg.target.path:
        raise ConfigError(f"target.path: required with target.kind={cfg.target.kind}")
    if cfg.proxy.d_model % max(cfg.proxy.n_heads, 1):
        raise ConfigError("proxy.d_model: must be a multiple of proxy.n_heads")
    if not 0 < cfg.target.holdout_fraction < 1:
        raise ConfigError("target.holdout_fraction: must be between 0 and 1")


def search_id(cfg: Config, pool: token_pools.Pool, method: str) -> str:
    if cfg.search.search_id:
        return cfg.search.search_id if method == cfg.search.method else f"{cfg.search.search_id}-{method}"
    settings = dataclasses.asdict(cfg.search)
    for k in ("search_id", "method", "parallelism"):
        settings.pop(k)
    key = {"method": method, "pool": pool.pool_id, "search": settings, "proxy": dataclasses.asdict(cfg.proxy)}
    return f"{method}-" + content_id(key, 10)


def run(spark: SparkSession, cfg: Config, method: str | None = None, log=print,
        pool: token_pools.Pool | None = None) -> SearchReport:
    validate(cfg)
    method = method or cfg.search.method
    lake = Lakehouse(cfg.lakehouse)
    pool = pool or token_pools.ensure(spark, cfg, log)
    sid = search_id(cfg, pool, method)
    prior = np.asarray(pool.prior, dtype=np.float64)
    prior /= prior.sum()
    tracker = SearchRun(cfg.mlflow, sid, f"search-{method}", {
        "method": method, "pool_id": pool.pool_id, "cluster_run_id": pool.cluster_run_id,
        "super_clusters": len(prior), **{f"search.{k}": v for k, v in dataclasses.asdict(cfg.search).items()},
        **{f"proxy.{k}": v for k, v in dataclasses.asdict(cfg.proxy).items()},
        **{f"target.{k}": v for k, v in dataclasses.asdict(cfg.target).items()},
        **{f"prior_{i:02d}": round(p, 6) for i, p in enumerate(prior)}})
    runner = ProxyRunner(spark, pool, cfg.proxy, cfg.target, lake.ensure(spark, PROXY_RESULTS), tracker,
                         cfg.search.parallelism, log)
    rng = np.random.default_rng(cfg.search.seed)
    s = cfg.search
    history: list[dict] = []
    fit = None
    predicted = None

    def batch(weights: np.ndarray, iteration: int) -> None:
        specs = [ProxySpec(sid, method, iteration, i, tuple(float(v) for v in w), cfg.proxy.seed)
                 for i, w in enumerate(weights)]
        rows = runner.run(specs, f"search {sid} iteration {iteration}")
        history.extend(rows)
        scores = [r["score"] for r in rows]
        tracker.log_metrics({"best_score": max(r["score"] for r in history), "iteration_best_score": max(scores),
                             "iteration_mean_score": float(np.mean(scores))}, iteration)

    if method == "climb":
        batch(mixture.regmix_sample(prior, s.budget[0], rng, s), 1)
        for iteration, n in enumerate(s.budget[1:], start=2):
            fit = _fit(history, s.seed, tracker, iteration - 1)
            cands = mixture.dirichlet_candidates(prior, s.candidates, rng)
            batch(mixture.next_batch(cands, fit.predict(cands), n, s.top_min, rng), iteration)
        fit = _fit(history, s.seed, tracker, len(s.budget))
        weights, predicted = _final(fit, prior, rng, s.candidates, s.final, s.top_mean_n, s.min_weight)
    elif method == "regmix":
        batch(mixture.regmix_sample(prior, sum(s.budget), rng, s), 1)
        fit = _fit(history, s.seed, tracker, 1)
        weights, predicted = _final(fit, prior, rng, s.candidates, "top-mean", s.top_mean_n, s.min_weight)
        argmax, best = _final(fit, prior, np.random.default_rng(s.seed + 1), s.candidates, "argmax", 1,
                              s.min_weight)
        tracker.log_dict({"weights": argmax.tolist(), "predicted_score": best}, "regmix_argmax.json")
    elif method == "random":
        batch(mixture.uniform_random(len(prior), sum(s.budget), rng), 1)
        best = max(history, key=lambda r: r["score"])
        weights = np.asarray(best["weights"])
    elif method == "uniform":
        weights = np.full(len(prior), 1.0 / len(prior))
    else:  # token-prop
        weights = prior.copy()

    best_observed = max((r["score"] for r in history), default=None)
    table = lake.ensure(spark, MIXTURES)
    before = spark.table(table).where(F.col("search_id") == sid).select("weights", "n_proxies").first()
    if before is None or list(before["weights"]) != [float(w) for w in weights] or before["n_proxies"] != len(history):
        _log_outputs(tracker, history, fit, weights, prior, predicted)
    row = {"search_id": sid, "method": method, "weights": [float(w) for w in weights],
           "prior": [float(p) for p in prior], "predicted_score": predicted, "best_observed_score": best_observed,
           "n_proxies": len(history), "pool_id": pool.pool_id, "cluster_run_id": pool.cluster_run_id,
           "mlflow_run_id": tracker.run_id,
           "config": json.dumps({"search": dataclasses.asdict(s), "proxy": dataclasses.asdict(cfg.proxy),
                                 "target": dataclasses.asdict(cfg.target)}, sort_keys=True),
           "created_at": pd.Timestamp.now(tz="UTC").to_pydatetime()}
    # A re-run computes the same mixture; only a changed one replaces the row (created_at kept).
    merge_upsert(spark, table, spark.createDataFrame([row], MIXTURES.schema),
                 MIXTURES.key, replace_when="t.weights <> s.weights")
    tracker.finish()
    return SearchReport(sid, method, row["weights"], row["prior"], predicted, best_observed, len(history),
                        tracker.run_id)


def _fit(history: list[dict], seed: int, tracker: SearchRun, step: int) -> predictor.Fit:
    x = np.array([r["weights"] for r in history])
    y = np.array([r["score"] for r in history])
    fit = predictor.fit(x, y, seed)
    tracker.log_metrics(fit.metrics(), step)
    return fit


def _final(fit: predictor.Fit, prior: np.ndarray, rng: np.random.Generator, n: int, how: str,
           top_n: int, min_weight: float) -> tuple[np.ndarray, float]:
    cands = mixture.dirichlet_candidates(prior, n, rng)
    pred = fit.predict(cands)
    if how == "argmax":
        weights = cands[int(np.argmax(pred))]
    else:
        weights = cands[np.argsort(-pred, kind="stable")[:top_n]].mean(axis=0)
    # Dirichlet draws carry dust weights (1e-30); zero them as the sampler does, so a weight
    # in the final mixture means documents in the export.
    weights = np.where(weights < min_weight, 0.0, weights)
    weights /= weights.sum()
    return weights, float(fit.predict(weights[None, :])[0])


def _log_outputs(tracker: SearchRun, history: list[dict], fit, weights: np.ndarray, prior: np.ndarray,
                 predicted: float | None) -> None:
    from . import search_plots

    tracker.log_dict({"search_id": tracker.search_id, "weights": [float(w) for w in weights],
                      "prior": [float(p) for p in prior], "predicted_score": predicted}, "final_mixture.json")
    if history:
        tracker.log_dict({"pairs": [{k: r[k] for k in ("iteration", "proxy_index", "weights", "score", "target_loss")}
                                    for r in history]}, "proxy_results.json")
        tracker.log_figure(search_plots.scores_by_iteration(history), "figures/score_by_iteration.png")
        tracker.log_figure(search_plots.weights_by_iteration(history, weights, prior), "figures/weights_by_iteration.png")
    if fit is not None:
        tracker.log_figure(search_plots.predicted_vs_actual(history, fit), "figures/predicted_vs_actual.png")
        tracker.log_lightgbm(fit.booster)
