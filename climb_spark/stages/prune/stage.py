"""Prune-and-merge stage: clusters -> `cluster_stats` (sizes, quality, decision, terms, exemplars)
and `super_clusters` (Ward merge of the kept centroids, token share = the search's prior).

Aggregation runs in Spark. The decisions are plain functions over one row per cluster, on the
driver. Both tables are replaced whole with rows that depend only on their inputs, so the stage
can be re-run at will.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F

from climb_spark.config import Config
from climb_spark.errors import InputError, PreconditionError
from climb_spark.lakehouse.delta import replace_all
from climb_spark.lakehouse.tables import (CENTROIDS, CLUSTER_STATS, DOC_CLUSTERS, DOC_FEATURES, DOCUMENTS,
                                          SUPER_CLUSTERS, Lakehouse, token_count)
from climb_spark.rubric import CRITERIA
from climb_spark.stages.contract import Counted, Stage
from climb_spark.stages.prune import rules

TERM = r"[a-z][a-z']{2,}"


@dataclass
class PruneReport(Counted):
    clusters: int
    kept: int
    kept_docs: int
    total_docs: int
    super_clusters: int
    rule: str

    def summary(self) -> str:
        return (f"prune ({self.rule}): kept {self.kept} of {self.clusters} clusters "
                f"({self.kept_docs:,} of {self.total_docs:,} documents), merged into "
                f"{self.super_clusters} super-clusters")


def _top_terms(spark: SparkSession, docs, n_terms: int) -> dict[int, list[str]]:
    """Per cluster, the terms with the highest TF-IDF, treating each cluster as one document."""
    from pyspark.ml.feature import StopWordsRemover

    stop = StopWordsRemover.loadDefaultStopWords("english")
    terms = (docs.select("cluster_id", F.explode(F.regexp_extract_all(F.lower("text"), F.lit(TERM), 0)).alias("term"))
             .where(~F.col("term").isin(stop)))
    tf = terms.groupBy("cluster_id", "term").count()
    n_clusters = docs.select("cluster_id").distinct().count()
    df = tf.groupBy("term").agg(F.count("*").alias("df"))
    total = tf.groupBy("cluster_id").agg(F.sum("count").alias("total"))
    scored = (tf.join(df, "term").join(total, "cluster_id")
              .withColumn("tfidf", F.col("count") / F.col("total") * F.log(F.lit(n_clusters + 1) / F.col("df")))
              .withColumn("rank", F.row_number().over(
                  Window.partitionBy("cluster_id").orderBy(F.desc("tfidf"), "term")))
              .where(F.col("rank") <= n_terms))
    out: dict[int, list[tuple[int, str]]] = {}
    for r in scored.select("cluster_id", "rank", "term").collect():
        out.setdefault(r["cluster_id"], []).append((r["rank"], r["term"]))
    return {k: [t for _, t in sorted(v)] for k, v in out.items()}


def run(spark: SparkSession, cfg: Config) -> PruneReport:
    lake = Lakehouse(cfg.lakehouse)
    p = cfg.prune
    cent = spark.table(lake.ensure(spark, CENTROIDS)).orderBy("cluster_id").collect()
    if not cent:
        raise PreconditionError("prune: the centroids table is empty; run `climb-spark cluster` first")
    fid = cent[0]["cluster_run_id"]
    centroids = np.array([r["vector"] for r in cent], dtype=np.float32)

    docs = (spark.table(lake.ensure(spark, DOC_CLUSTERS)).where(F.col("cluster_run_id") == fid)
            .join(spark.table(lake.ensure(spark, DOC_FEATURES)).select("doc_id", *CRITERIA), "doc_id")
            .join(spark.table(lake.ensure(spark, DOCUMENTS)).select("doc_id", "text"), "doc_id")
            .withColumn("n_tokens", token_count("text"))).cache()
    try:
        aggs = [F.count("*").alias("n_docs"), F.sum("n_tokens").alias("n_tokens")]
        for c in CRITERIA:
            aggs += [F.avg(c).alias(f"{c}_mean"),
                     F.percentile_approx(F.col(c).cast("double"), [0.1, 0.5, 0.9], 10000).alias(f"{c}_quantiles")]
        stats = docs.groupBy("cluster_id").agg(*aggs).orderBy("cluster_id").toPandas()
        terms = _top_terms(spark, docs, p.top_terms)
        near = Window.partitionBy("cluster_id").orderBy("distance", "doc_id")
        exemplars = {r["cluster_id"]: list(r["ids"]) for r in docs.withColumn("r", F.row_number().over(near))
                     .where(F.col("r") <= p.exemplars)
                     .groupBy("cluster_id").agg(F.array_sort(F.collect_list(F.struct("r", "doc_id"))).alias("s"))
                     .select("cluster_id", F.col("s.doc_id").alias("ids")).collect()}
    finally:
        docs.unpersist()

    means = [{c: float(row[f"{c}_mean"]) for c in CRITERIA} for _, row in stats.iterrows()]
    decisions = [rules.decide(m, int(n), p) for m, n in zip(means, stats["n_docs"])]
    stats["mean_score"] = [rules.mean_score(m) for m in means]
    stats["tier"] = rules.tiers(stats["mean_score"].tolist())
    stats["kept"] = [k for k, _ in decisions]
    stats["rule"] = [r for _, r in decisions]
    kept_ids = stats.loc[stats["kept"], "cluster_id"].astype(int).tolist()
    labels = rules.ward_merge(centroids[kept_ids], p.merge_threshold, p.target_super_clusters)
    super_of = dict(zip(kept_ids, labels.tolist()))
    stats["super_cluster_id"] = pd.Series([super_of.get(int(c)) for c in stats["cluster_id"]], dtype=object)
    stats["top_terms"] = [terms.get(int(c), []) for c in stats["cluster_id"]]
    stats["exemplars"] = [exemplars.get(int(c), []) for c in stats["cluster_id"]]
    stats["cluster_run_id"] = fid
    # super_clusters is written last: readers check that it agrees with cluster_stats
    # (curated.check_lineage), so a prune killed between the two commits is refused, not used.
    _write(spark, lake.ensure(spark, CLUSTER_STATS), stats, CLUSTER_STATS)
    supers = _super_clusters(stats[stats["kept"]], fid)
    _write(spark, lake.ensure(spark, SUPER_CLUSTERS), supers, SUPER_CLUSTERS)
    if not kept_ids:
        best = stats.sort_values("mean_score").iloc[-1]
        raise InputError(f"prune kept 0 of {len(stats)} clusters under prune.rule={p.rule}; the best one: "
                         f"{best['rule']} (cluster_stats.rule gives each cluster's reason)")
    return PruneReport(len(stats), len(kept_ids), int(stats.loc[stats["kept"], "n_docs"].sum()),
                       int(stats["n_docs"].sum()), len(supers), p.rule)


def _super_clusters(kept: pd.DataFrame, fid: str) -> pd.DataFrame:
    rows = []
    total_tokens = max(int(kept["n_tokens"].sum()), 1)
    for sid, group in kept.groupby("super_cluster_id", sort=True):
        members = sorted(int(c) for c in group["cluster_id"])
        # Terms shared by more members first, then by the largest member's ranking.
        biggest = group.sort_values(["n_docs", "cluster_id"], ascending=[False, True])
        counts = Counter(t for ts in group["top_terms"] for t in ts)
        order = {t: i for i, ts in enumerate(biggest["top_terms"]) for t in ts[::-1]}
        words = sorted(counts, key=lambda t: (-counts[t], order.get(t, 0), t))[:6]
        n_docs, n_tokens = int(group["n_docs"].sum()), int(group["n_tokens"].sum())
        rows.append({"super_cluster_id": int(sid), "member_clusters": members, "n_docs": n_docs,
                     "n_tokens": n_tokens, "token_share": n_tokens / total_tokens,
                     "description": f"{len(members)} cluster(s), {n_docs:,} docs: {', '.join(words)}",
                     "cluster_run_id": fid})
    return pd.DataFrame(rows, columns=SUPER_CLUSTERS.schema.fieldNames())


def _write(spark: SparkSession, table: str, frame: pd.DataFrame, spec) -> None:
    records = [{k: _plain(v) for k, v in row.items()} for row in frame[spec.schema.fieldNames()].to_dict("records")]
    replace_all(spark.createDataFrame(records, spec.schema), table)


def _plain(value):
    """numpy scalars and arrays -> Python values Spark's schema verification accepts."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


STAGE = Stage("prune", "cluster statistics, low-quality clusters dropped, survivors merged into super-clusters",
              reads=(CENTROIDS, DOC_CLUSTERS, DOC_FEATURES, DOCUMENTS), writes=(CLUSTER_STATS, SUPER_CLUSTERS),
              run=run,
              settings=("prune",))
