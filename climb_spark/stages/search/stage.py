"""Search stage (CLIMB-Search) on Spark: `strategy.run` decides which mixtures to try and
which to return; this runner trains each batch's proxies as Spark tasks, keeps every result in
`proxy_results` and MLflow as it finishes, and writes the final mixture to `mixtures`. The
`doremi` baseline learns its mixture while training instead (`doremi.run`).

A search is named by its settings and pools, so the same command resumes it: every proxy already
in `proxy_results` is reused, and the seeded strategy replays the same mixtures.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from climb_spark import tracking
from climb_spark.config import Config, check_method, check_search
from climb_spark.curated import super_cluster_name
from climb_spark.errors import ClimbError
from climb_spark.ids import search_id
from climb_spark.lakehouse.delta import merge_upsert
from climb_spark.lakehouse.tables import (CENTROIDS, CLUSTER_STATS, DOC_CLUSTERS, DOC_FEATURES, DOCUMENTS, MIXTURES,
                                          PROXY_RESULTS, SUPER_CLUSTERS, TOKEN_POOLS, Lakehouse)
from climb_spark.proxy import pools
from climb_spark.proxy.runner import ProxyRunner, ProxySpec
from climb_spark.stages.contract import Counted, Stage
from climb_spark.stages.search import doremi, samplers, strategy
from climb_spark.tracking import SearchRun


@dataclass
class SearchReport(Counted):
    search_id: str
    method: str
    weights: list[float]
    prior: list[float]
    predicted: float | None
    best_observed: float | None
    n_proxies: int
    mlflow_run_id: str
    chosen_from: str = "fixed"
    warnings: list[str] = dataclasses.field(default_factory=list)
    explanation: str = ""

    def summary(self) -> str:
        w = ", ".join(f"{i}:{v:.3f}" for i, v in enumerate(self.weights) if v >= 0.0005)
        lines = [f"search {self.search_id} ({self.method}): {self.n_proxies} proxies trained, MLflow run "
                 f"{self.mlflow_run_id}", f"  final mixture  {w}"]
        if self.predicted is not None:
            lines.append(f"  predicted score {self.predicted:.4f}")
        if self.best_observed is not None:
            lines.append(f"  best observed score {self.best_observed:.4f}")
        if self.explanation:
            lines.append(f"  why            {self.explanation}")
        lines += [f"  WARNING {w}" for w in self.warnings]
        return "\n".join(lines)


def run(spark: SparkSession, cfg: Config, method: str | None = None, log=print,
        pool: pools.Pool | None = None) -> SearchReport:
    check_search(cfg)
    method = method or cfg.search.method
    check_method(method, cfg)
    lake = Lakehouse(cfg.lakehouse)
    pool = pool or pools.ensure(spark, cfg, log)
    sid = search_id(cfg, pool.pool_id, method)
    overlap = pool.overlap.warning(cfg.target.max_overlap) if pool.overlap else None
    if pool.overlap and pool.overlap.in_corpus:
        log(f"search {sid}: target: {pool.overlap.describe()}")
    prior = np.asarray(pool.prior, dtype=np.float64)
    prior /= prior.sum()
    upper = strategy.upper_bounds(pool.n_tokens, cfg.search.token_budget or cfg.export.token_budget,
                                  cfg.search.max_passes)
    # search.method is the method this search ran (compare runs every method under one config):
    # a filter on params.`search.method` finds each method's runs.
    settings = dict(dataclasses.asdict(cfg.search), method=method)
    tracker = SearchRun(cfg.mlflow, sid, f"search-{method}", {
        "method": method, "pool_id": pool.pool_id, "cluster_run_id": pool.cluster_run_id,
        "super_clusters": len(prior), **{f"search.{k}": v for k, v in settings.items()},
        **{f"proxy.{k}": v for k, v in dataclasses.asdict(cfg.proxy).items()},
        **{f"target.{k}": v for k, v in dataclasses.asdict(cfg.target).items()},
        **{f"prior_{i:02d}": round(p, 6) for i, p in enumerate(prior)}}, inputs=read_versions(spark, lake))
    runner = ProxyRunner(spark, pool, cfg.proxy, cfg.target, lake.ensure(spark, PROXY_RESULTS), tracker,
                         cfg.search.parallelism, log)
    history: list[dict] = []

    def evaluate(weights: np.ndarray, iteration: int) -> list[float]:
        specs = [ProxySpec(sid, method, iteration, i, tuple(float(v) for v in w), cfg.proxy.seed)
                 for i, w in enumerate(weights)]
        rows = runner.run(specs, f"search {sid} iteration {iteration}")
        history.extend(rows)
        scores = [r["score"] for r in rows]
        tracker.log_metrics({"best_score": max(r["score"] for r in history), "iteration_best_score": max(scores),
                             "iteration_mean_score": float(np.mean(scores))}, iteration)
        return scores

    table = lake.ensure(spark, MIXTURES)
    before = spark.table(table).where(F.col("search_id") == sid).select("weights", "n_proxies").first()
    try:
        if method == "doremi":
            result = doremi.run(spark, cfg, pool, prior, sid, tracker, log, list(before["weights"]) if before else None)
            if upper is not None:
                result.weights = samplers.cap_rows(result.weights[None, :], upper)[0]
        else:
            result = strategy.run(prior, evaluate, cfg.search, cfg.search.seed, method,
                                  on_fit=lambda step, metrics: tracker.log_metrics(metrics, step), upper=upper)
    except ClimbError as err:
        tracker.fail(str(err))
        raise
    if overlap:
        result.warnings.insert(0, overlap)
    n_proxies = result.extra.get("proxies", len({r["proxy_key"] for r in history}))
    weights, predicted = result.weights, result.predicted
    for warning in result.warnings:
        log(f"search {sid}: WARNING {warning}")
    tracker.set_tags({"climb.warnings": " | ".join(result.warnings) or "none",
                      "climb.final_from": result.chosen_from, "climb.final_reason": result.explanation[:5000],
                      **({"climb.target_overlap": pool.overlap.describe()} if pool.overlap else {})})
    if "argmax" in result.extra:
        tracker.log_dict(result.extra["argmax"], "regmix_argmax.json")

    best_observed = result.best_observed
    changed = before is None or list(before["weights"]) != [float(w) for w in weights]
    if changed or before["n_proxies"] != n_proxies:
        _log_outputs(tracker, history, result, _names(spark, lake, pool))
    row = {"search_id": sid, "method": method, "weights": [float(w) for w in weights],
           "prior": [float(p) for p in prior], "predicted_score": predicted, "best_observed_score": best_observed,
           "n_proxies": n_proxies, "pool_id": pool.pool_id, "cluster_run_id": pool.cluster_run_id,
           "explanation": result.explanation, "observed_score": result.observed,
           "max_weights": None if upper is None else [float(u) for u in upper],
           "mlflow_run_id": tracker.run_id,
           "config": json.dumps({"search": settings, "proxy": dataclasses.asdict(cfg.proxy),
                                 "target": dataclasses.asdict(cfg.target)}, sort_keys=True),
           "created_at": pd.Timestamp.now(tz="UTC").to_pydatetime()}
    # A re-run computes the same mixture and leaves the row (created_at kept) and the table's
    # version as they were; only a changed mixture replaces it.
    if changed:
        merge_upsert(spark, table, spark.createDataFrame([row], MIXTURES.schema),
                     MIXTURES.key, replace_when="t.weights <> s.weights")
    report = SearchReport(sid, method, row["weights"], row["prior"], predicted, best_observed, n_proxies,
                          tracker.run_id, result.chosen_from, result.warnings, result.explanation)
    tracker.describe(_description(report, pool))
    tracker.finish()
    return report


def _description(report: SearchReport, pool: pools.Pool) -> str:
    """The search run's description in MLflow: what it searched and what it returned, and why."""
    weights = ", ".join(f"{i}: {w:.4f}" for i, w in enumerate(report.weights))
    lines = [f"`{report.method}` mixture search over the {len(report.weights)} super-clusters of token pool "
             f"`{pool.pool_id}` ({report.n_proxies} proxies trained; the child runs are the proxies).", "",
             f"Final mixture (super-cluster: weight): {weights}.", "",
             f"Chosen from {report.chosen_from}: {report.explanation or '-'}."]
    lines += [f"\n**WARNING** {w}" for w in report.warnings]
    return "\n".join(lines)


def read_versions(spark: SparkSession, lake: Lakehouse) -> dict[str, int]:
    """The tables a search reads (through its token pool and lineage checks), at their versions."""
    return lake.versions(spark, (DOCUMENTS, DOC_FEATURES, DOC_CLUSTERS, CLUSTER_STATS, SUPER_CLUSTERS))


def _names(spark: SparkSession, lake: Lakehouse, pool: pools.Pool) -> list[str]:
    """'id: top terms' per super-cluster of the pool, for the figures' axes."""
    rows = spark.table(lake.ensure(spark, SUPER_CLUSTERS)).collect()
    named = {r["super_cluster_id"]: super_cluster_name(r.asDict(), 3) for r in rows}
    return [named.get(sc, str(sc)) for sc in pool.super_cluster_ids]


def _log_outputs(tracker: SearchRun, history: list[dict], result: strategy.Result, names: list[str]) -> None:
    from climb_spark.stages.search import plots

    weights = result.weights
    tracker.log_params({f"final_w_{i:02d}": round(float(w), 6) for i, w in enumerate(weights)})
    tracker.log_dict({"search_id": tracker.search_id, "weights": [float(w) for w in weights],
                      "prior": [float(p) for p in result.prior], "predicted_score": result.predicted,
                      "chosen_from": result.chosen_from, "why": result.explanation, "observed_score": result.observed,
                      "warnings": result.warnings, "names": names,
                      "predictor": result.diagnostics}, "final_mixture.json")
    if history:
        tracker.log_dict({"pairs": [{k: r[k] for k in ("iteration", "proxy_index", "weights", "score", "target_loss")}
                                    for r in history]}, "proxy_results.json")
        tracker.log_figure(plots.scores_by_iteration(history), "figures/score_by_iteration.png")
        tracker.log_figure(plots.weights_by_iteration(history, weights, result.prior, names), "figures/weights_by_iteration.png")
    if result.fit is not None:
        tracker.log_figure(plots.predicted_vs_actual(history, result.fit), "figures/predicted_vs_actual.png")
        tracker.log_predictor(result.fit, [r["weights"] for r in history], f"predictor-{result.method}")


def check(cfg: Config) -> None:
    check_search(cfg)
    tracking.check_reachable(cfg.mlflow)


STAGE = Stage("search", "mixtures over super-clusters, proxies trained on them, a predictor, the final mixture",
              reads=(SUPER_CLUSTERS, CLUSTER_STATS, CENTROIDS, DOC_CLUSTERS, DOC_FEATURES, DOCUMENTS),
              writes=(TOKEN_POOLS, PROXY_RESULTS, MIXTURES), run=run, check=check,
              settings=("search", "proxy", "target"))
