"""Compare stage: each method's final mixture retrained with the same proxy over several seeds.

Runs (or reuses) the search of every method in `compare.methods`, then trains one proxy per
(method, seed) as Spark tasks, at the proxy's scale and again with a larger model
(`compare.target_model`), and writes mean +- std of the score and the target loss, each method's
paired margin with its interval, and whether the proxy's ranking held at the larger scale, to the
`comparisons` table, an MLflow run and stdout.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from climb_spark.config import Config, ProxyConfig
from climb_spark.ids import content_id, proxy_settings
from climb_spark.lakehouse.delta import replace_where
from climb_spark.lakehouse.tables import (CENTROIDS, CLUSTER_STATS, COMPARISONS, DOC_CLUSTERS, DOC_FEATURES, DOCUMENTS,
                                          MIXTURES, PROXY_RESULTS, SUPER_CLUSTERS, TOKEN_POOLS, Lakehouse)
from climb_spark.proxy import pools
from climb_spark.proxy.runner import ProxyRunner, ProxySpec
from climb_spark.stages.contract import Counted, Stage
from climb_spark.stages.search import plots, significance
from climb_spark.stages.search import stage as search
from climb_spark.tracking import SearchRun


@dataclass
class CompareReport(Counted):
    compare_id: str
    rows: list[dict]
    mlflow_run_id: str
    statements: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        lines = [f"compare {self.compare_id} (MLflow run {self.mlflow_run_id})"]
        for scale in SCALES:
            rows = [r for r in self.rows if r["scale"] == scale]
            if not rows:
                continue
            lines += [f"  {scale} scale ({rows[0]['model']}), {len(rows[0]['seeds'])} seeds per method:",
                      f"    {'method':12s} {'target loss':>20s} {'score':>20s} {'margin (paired interval)':>36s}"]
            for r in sorted(rows, key=lambda r: r["rank"]):
                loss = ("-" if r["mean_target_loss"] is None
                        else f"{r['mean_target_loss']:.4f} +- {r['std_target_loss']:.4f}")
                margin = "" if r["margin"] is None else (
                    f"{r['margin']:+.4f} vs {r['margin_against']}" + ("" if r["margin_low"] is None else
                                                                      f" [{r['margin_low']:+.4f}, {r['margin_high']:+.4f}]")
                    + (" *" if r["significant"] else ""))
                lines.append(f"    {r['method']:12s} {loss:>20s} {r['mean_score']:>10.4f} +- {r['std_score']:.4f} {margin:>36s}")
        lines += [f"  {s}" for s in self.statements]
        return "\n".join(lines)


SCALES = ("proxy", "target")


def target_proxy(cfg: Config) -> ProxyConfig:
    """The larger model of compare.target_model: each setting it leaves null follows the proxy's
    (twice its width, twice its steps)."""
    t, p = cfg.compare.target_model, cfg.proxy
    d_model = t.d_model or 2 * p.d_model
    return dataclasses.replace(p, d_model=d_model, n_layers=t.n_layers or p.n_layers, n_heads=t.n_heads or p.n_heads,
                               steps=t.steps or 2 * p.steps, batch_size=t.batch_size or p.batch_size,
                               lr=t.lr or p.lr, warmup_steps=min(p.warmup_steps * 2, (t.steps or 2 * p.steps) // 2))


def _model(p: ProxyConfig) -> str:
    return f"d_model {p.d_model}, {p.n_layers} layers, {p.steps} steps x {p.batch_size} x {p.seq_len} tokens"


def run(spark: SparkSession, cfg: Config, log=print) -> CompareReport:
    lake = Lakehouse(cfg.lakehouse)
    pool = pools.ensure(spark, cfg, log)
    finals = {}
    for method in cfg.compare.methods:
        report = search.run(spark, cfg, method, log, pool)
        log(report.summary())
        finals[method] = report
    models = {"proxy": cfg.proxy}
    if cfg.compare.target_model.enabled and cfg.proxy.kind == "torch":
        models["target"] = target_proxy(cfg)
    key = {"searches": {m: (r.search_id, r.weights) for m, r in finals.items()}, "seeds": cfg.compare.seeds,
           "models": {scale: proxy_settings(p) for scale, p in models.items()},
           "confidence": cfg.compare.confidence}
    cid = "compare-" + content_id(key, 10)
    tracker = SearchRun(cfg.mlflow, cid, "compare", {"methods": ",".join(cfg.compare.methods),
                                                     "seeds": ",".join(map(str, cfg.compare.seeds)),
                                                     "pool_id": pool.pool_id, "confidence": cfg.compare.confidence,
                                                     **{f"{scale}_model": _model(p) for scale, p in models.items()}},
                        role="compare", inputs=search.read_versions(spark, lake))
    table = lake.ensure(spark, PROXY_RESULTS)
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    rows, means, statements = [], {}, []
    for scale, proxy in models.items():
        runner = ProxyRunner(spark, pool, proxy, cfg.target, table, tracker, cfg.search.parallelism, log,
                             role=f"compare-{scale}")
        specs = [ProxySpec(cid, method, 0, i * len(cfg.compare.seeds) + j, tuple(finals[method].weights), seed)
                 for i, method in enumerate(cfg.compare.methods) for j, seed in enumerate(cfg.compare.seeds)]
        results = runner.run(specs, f"compare {cid} ({scale} scale)")
        scores = {m: np.array([r["score"] for s, r in zip(specs, results) if s.method == m])
                  for m in cfg.compare.methods}
        found = significance.margins(scores, cfg.compare.confidence)
        order = sorted(scores, key=lambda m: -float(scores[m].mean()))
        means[scale] = {m: float(scores[m].mean()) for m in order}
        statements.append(significance.winner_statement(scale, scores, found, cfg.compare.confidence))
        for method in cfg.compare.methods:
            mine = [r for s, r in zip(specs, results) if s.method == method]
            losses = np.array([r["target_loss"] for r in mine if r["target_loss"] is not None], dtype=np.float64)
            margin = found.get(method)
            rows.append({"compare_id": cid, "method": method, "scale": scale, "model": _model(proxy),
                         "search_id": finals[method].search_id,
                         "weights": list(finals[method].weights), "seeds": list(cfg.compare.seeds),
                         "scores": scores[method].tolist(), "mean_score": float(scores[method].mean()),
                         "std_score": _std(scores[method]),
                         "mean_target_loss": float(losses.mean()) if len(losses) else None,
                         "std_target_loss": _std(losses) if len(losses) else None,
                         "rank": order.index(method) + 1,
                         "margin": margin.margin if margin else None,
                         "margin_against": margin.other if margin else None,
                         "margin_low": margin.low if margin else None, "margin_high": margin.high if margin else None,
                         # One seed has no interval: whether it is significant is unknown, not "no".
                         "significant": margin.significant if margin and margin.low is not None else None,
                         "mlflow_run_id": tracker.run_id, "created_at": now})
            tracker.log_metrics({f"{scale}.{method}.mean_score": rows[-1]["mean_score"],
                                 f"{scale}.{method}.std_score": rows[-1]["std_score"],
                                 **({f"{scale}.{method}.margin": margin.margin} if margin else {})}, 0)
    if "target" in means:
        # Over distinct mixtures: methods that returned the same one are one point, not two.
        distinct = {tuple(np.round(finals[m].weights, 4)): m for m in cfg.compare.methods}.values()
        agreement = significance.rank_agreement({m: means["proxy"][m] for m in distinct},
                                                {m: means["target"][m] for m in distinct})
        statements.append(f"proxy -> target rank agreement (Spearman over {len(distinct)} distinct mixtures): "
                          + ("undefined" if agreement is None else f"{agreement:.2f}"))
        if agreement is not None:
            tracker.log_metrics({"proxy_target_spearman": agreement}, 0)
    tracker.set_tags({f"climb.{scale}_winner": next(iter(m)) for scale, m in means.items()}
                     | {"climb.compare_verdict": " | ".join(statements)[:5000]})
    summary = pd.DataFrame([{k: r[k] for k in ("scale", "method", "mean_score", "std_score", "mean_target_loss",
                                               "std_target_loss", "margin", "margin_low", "margin_high",
                                               "significant", "search_id")} for r in rows])
    tracker.client.log_table(tracker.run_id, summary, "comparison.json")
    tracker.log_figure(plots.comparison(rows), "figures/comparison.png")
    tracker.describe(f"Each method's final mixture ({', '.join(cfg.compare.methods)}) retrained over seeds "
                     f"{', '.join(map(str, cfg.compare.seeds))} at " + " and ".join(
                         f"the {scale} scale ({_model(p)})" for scale, p in models.items())
                     + "; the child runs are the retrains.\n\n" + "\n\n".join(statements))
    tracker.finish()
    out = lake.ensure(spark, COMPARISONS)
    # The id covers everything the scores depend on, and every proxy is reused on a re-run: rows
    # already there are the same rows, so they stay (with their created_at).
    if spark.table(out).where(F.col("compare_id") == cid).count() != len(rows):
        replace_where(out, spark.createDataFrame(rows, COMPARISONS.schema), F.col("compare_id") == cid)
    return CompareReport(cid, rows, tracker.run_id, statements)


def _std(values: np.ndarray) -> float:
    """Sample standard deviation (0 for a single seed)."""
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


STAGE = Stage("compare", "each method's final mixture re-trained on fresh seeds, side by side",
              reads=(SUPER_CLUSTERS, CLUSTER_STATS, CENTROIDS, DOC_CLUSTERS, DOC_FEATURES, DOCUMENTS),
              writes=(TOKEN_POOLS, PROXY_RESULTS, MIXTURES, COMPARISONS), run=run, check=search.check,
              settings=("compare", "search", "proxy", "target"))
