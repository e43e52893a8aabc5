"""Compare stage: each method's final mixture retrained with the same proxy over several seeds.

Runs (or reuses) the search of every method in `compare.methods`, then trains one proxy per
(method, seed) as Spark tasks and writes mean +- std of the score and the target loss to the
`comparisons` table, an MLflow run and stdout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from climb_spark.config import Config
from climb_spark.ids import content_id, proxy_settings
from climb_spark.lakehouse.delta import replace_where
from climb_spark.lakehouse.tables import (CENTROIDS, CLUSTER_STATS, COMPARISONS, DOC_CLUSTERS, DOC_FEATURES, DOCUMENTS,
                                          MIXTURES, PROXY_RESULTS, SUPER_CLUSTERS, TOKEN_POOLS, Lakehouse)
from climb_spark.proxy import pools
from climb_spark.proxy.runner import ProxyRunner, ProxySpec
from climb_spark.stages.contract import Counted, Stage
from climb_spark.stages.search import plots
from climb_spark.stages.search import stage as search
from climb_spark.tracking import SearchRun


@dataclass
class CompareReport(Counted):
    compare_id: str
    rows: list[dict]
    mlflow_run_id: str

    def summary(self) -> str:
        lines = [f"compare {self.compare_id} (MLflow run {self.mlflow_run_id}), "
                 f"{len(self.rows[0]['seeds']) if self.rows else 0} seeds per method:",
                 f"  {'method':12s} {'target loss':>20s} {'score':>20s}"]
        for r in sorted(self.rows, key=lambda r: -r["mean_score"]):
            loss = ("-" if r["mean_target_loss"] is None
                    else f"{r['mean_target_loss']:.4f} +- {r['std_target_loss']:.4f}")
            lines.append(f"  {r['method']:12s} {loss:>20s} {r['mean_score']:>10.4f} +- {r['std_score']:.4f}")
        return "\n".join(lines)


def run(spark: SparkSession, cfg: Config, log=print) -> CompareReport:
    lake = Lakehouse(cfg.lakehouse)
    pool = pools.ensure(spark, cfg, log)
    finals = {}
    for method in cfg.compare.methods:
        report = search.run(spark, cfg, method, log, pool)
        log(report.summary())
        finals[method] = report
    key = {"searches": {m: (r.search_id, r.weights) for m, r in finals.items()}, "seeds": cfg.compare.seeds,
           "proxy": proxy_settings(cfg.proxy)}
    cid = "compare-" + content_id(key, 10)
    tracker = SearchRun(cfg.mlflow, cid, "compare", {"methods": ",".join(cfg.compare.methods),
                                                     "seeds": ",".join(map(str, cfg.compare.seeds)),
                                                     "pool_id": pool.pool_id},
                        role="compare", inputs=search.read_versions(spark, lake))
    runner = ProxyRunner(spark, pool, cfg.proxy, cfg.target, lake.ensure(spark, PROXY_RESULTS), tracker,
                         cfg.search.parallelism, log)
    specs = [ProxySpec(cid, method, 0, i * len(cfg.compare.seeds) + j, tuple(finals[method].weights), seed)
             for i, method in enumerate(cfg.compare.methods) for j, seed in enumerate(cfg.compare.seeds)]
    results = runner.run(specs, f"compare {cid}")
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    rows = []
    for method in cfg.compare.methods:
        mine = [r for s, r in zip(specs, results) if s.method == method]
        scores = np.array([r["score"] for r in mine])
        losses = np.array([r["target_loss"] for r in mine if r["target_loss"] is not None], dtype=np.float64)
        rows.append({"compare_id": cid, "method": method, "search_id": finals[method].search_id,
                     "weights": list(finals[method].weights), "seeds": list(cfg.compare.seeds),
                     "scores": scores.tolist(), "mean_score": float(scores.mean()), "std_score": _std(scores),
                     "mean_target_loss": float(losses.mean()) if len(losses) else None,
                     "std_target_loss": _std(losses) if len(losses) else None,
                     "mlflow_run_id": tracker.run_id, "created_at": now})
        tracker.log_metrics({f"{method}.mean_score": rows[-1]["mean_score"],
                             f"{method}.std_score": rows[-1]["std_score"]}, 0)
    summary = pd.DataFrame([{k: r[k] for k in ("method", "mean_score", "std_score", "mean_target_loss",
                                               "std_target_loss", "search_id")} for r in rows])
    tracker.client.log_table(tracker.run_id, summary, "comparison.json")
    tracker.log_figure(plots.comparison(rows), "figures/comparison.png")
    tracker.finish()
    table = lake.ensure(spark, COMPARISONS)
    # The id covers everything the scores depend on, and every proxy is reused on a re-run: rows
    # already there are the same rows, so they stay (with their created_at).
    if spark.table(table).where(F.col("compare_id") == cid).count() != len(rows):
        replace_where(table, spark.createDataFrame(rows, COMPARISONS.schema), F.col("compare_id") == cid)
    return CompareReport(cid, rows, tracker.run_id)


def _std(values: np.ndarray) -> float:
    """Sample standard deviation (0 for a single seed)."""
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


STAGE = Stage("compare", "each method's final mixture re-trained on fresh seeds, side by side",
              reads=(SUPER_CLUSTERS, CLUSTER_STATS, CENTROIDS, DOC_CLUSTERS, DOC_FEATURES, DOCUMENTS),
              writes=(TOKEN_POOLS, PROXY_RESULTS, MIXTURES, COMPARISONS), run=run, check=search.check,
              settings=("compare", "search", "proxy", "target"))
