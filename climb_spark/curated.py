"""The curated set every mixture draws from: the documents of kept clusters by super-cluster,
and the search target's slice of them, which proxies score on and an export leaves out. Token
pools (for the search) and the export read it the same way."""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from climb_spark.config import Config
from climb_spark.errors import PreconditionError
from climb_spark.lakehouse.tables import CLUSTER_STATS, DOC_CLUSTERS, DOCUMENTS, SUPER_CLUSTERS, Lakehouse


def super_clusters(spark: SparkSession, cfg: Config) -> list[dict]:
    """The super_clusters rows in id order; an empty table means prune has not run."""
    lake = Lakehouse(cfg.lakehouse)
    rows = [r.asDict() for r in spark.table(lake.ensure(spark, SUPER_CLUSTERS)).orderBy("super_cluster_id").collect()]
    if not rows:
        raise PreconditionError("the super_clusters table is empty: run `climb-spark prune` first")
    return rows


def kept_documents(spark: SparkSession, cfg: Config) -> DataFrame:
    """doc_id, text, source, super_cluster_id of every document in a kept cluster."""
    lake = Lakehouse(cfg.lakehouse)
    stats = spark.table(lake.ensure(spark, CLUSTER_STATS)).where("kept").select(
        "cluster_id", "super_cluster_id", "cluster_run_id")
    if stats.isEmpty():
        raise PreconditionError("no kept clusters: run `climb-spark prune` first")
    return (spark.table(lake.ensure(spark, DOC_CLUSTERS)).join(stats, ["cluster_id", "cluster_run_id"])
            .join(spark.table(lake.ensure(spark, DOCUMENTS)).select("doc_id", "text", "source"), "doc_id")
            .select("doc_id", "text", "source", "super_cluster_id"))


def in_target_slice(doc_id: Column, fraction: float) -> Column:
    """A fixed hash slice of doc ids (hex digits 9-16, independent of the quality holdout's)."""
    return F.conv(F.substring(doc_id, 9, 8), 16, 10).cast("long") % 10000 < int(round(fraction * 10000))


def target_filter(cfg: Config) -> Column:
    """True for the documents that are the search's target (never trained on, never exported)."""
    t = cfg.target
    cond = in_target_slice(F.col("doc_id"), t.holdout_fraction) if t.kind == "holdout" else F.lit(False)
    if t.source is not None:
        cond = cond & (F.col("source") == t.source)
    if t.super_cluster is not None:
        cond = cond & (F.col("super_cluster_id") == t.super_cluster)
    return cond
