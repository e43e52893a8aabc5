"""The curated set every mixture draws from: the documents of kept clusters by super-cluster,
and the search target's slice of them, which proxies score on and an export leaves out. Token
pools (for the search) and the export read it the same way."""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from climb_spark.config import Config
from climb_spark.errors import InputError, PreconditionError
from climb_spark.ids import fitted_version
from climb_spark.lakehouse.delta import table_version
from climb_spark.lakehouse.tables import (CENTROIDS, CLUSTER_STATS, DOC_CLUSTERS, DOC_FEATURES, DOCUMENTS,
                                          SUPER_CLUSTERS, Lakehouse)


def super_clusters(spark: SparkSession, cfg: Config) -> list[dict]:
    """The super_clusters rows in id order, after checking they agree with the tables below them."""
    lake = Lakehouse(cfg.lakehouse)
    rows = [r.asDict() for r in spark.table(lake.ensure(spark, SUPER_CLUSTERS)).orderBy("super_cluster_id").collect()]
    if not rows:
        if spark.table(lake.ensure(spark, CLUSTER_STATS)).isEmpty():
            raise PreconditionError("the super_clusters table is empty: run `climb-spark prune` first")
        raise InputError("prune kept no cluster, so there is nothing to search or export: see cluster_stats.rule, "
                         "then lower the prune thresholds and re-run `climb-spark prune`")
    check_lineage(spark, cfg, rows)
    return rows


def super_cluster_name(row: dict, n_terms: int) -> str:
    """'id: top terms' from the row's description (prune writes '..., N docs: t1, t2'), else its
    member clusters: how figures and the report name a super-cluster."""
    _, sep, words = (row.get("description") or "").partition(": ")
    terms = [t for t in words.split(", ") if t.strip()][:n_terms] if sep else []
    label = ", ".join(terms) if terms else "clusters " + ", ".join(map(str, row["member_clusters"]))
    return f"{row['super_cluster_id']}: {label}"


def check_lineage(spark: SparkSession, cfg: Config, supers: list[dict]) -> None:
    """Refuse tables produced from different upstream states. Each stage replaces its tables in
    one commit per table, so a stage killed between two commits, or an upstream stage re-run
    without the ones after it, leaves neighbours that disagree; reading them would silently drop
    or mislabel documents."""
    lake = Lakehouse(cfg.lakehouse)
    feats = lake.ensure(spark, DOC_FEATURES)
    features = table_version(spark, feats)
    fitted = {r[0] for r in spark.table(lake.ensure(spark, CENTROIDS)).select("cluster_run_id").distinct().collect()}
    if len(fitted) != 1 or fitted_version(cfg, next(iter(fitted)), features) is None:
        raise PreconditionError(f"the clustering {sorted(fitted)} was fitted with other cluster settings than the "
                                "current ones: re-run `climb-spark cluster`, then prune")
    (current,) = fitted
    assigned = spark.table(lake.ensure(spark, DOC_CLUSTERS)).where(F.col("cluster_run_id") == current)
    unassigned = spark.table(feats).select("doc_id").join(assigned.select("doc_id"), "doc_id", "left_anti").count()
    if unassigned:
        raise PreconditionError(f"{unassigned:,} documents of doc_features are not in the clustering {current} yet: "
                                "re-run `climb-spark cluster` (cluster.refit says whether it assigns or fits "
                                "again), then prune")
    pruned = {s["cluster_run_id"] for s in supers}
    if pruned != {current}:
        raise PreconditionError(f"super_clusters come from clustering {sorted(pruned)}, not the current {current}: "
                                "re-run `climb-spark prune`")
    counted = spark.table(lake.ensure(spark, CLUSTER_STATS)).agg(F.sum("n_docs")).first()[0] or 0
    held = assigned.count()
    if counted != held:
        raise PreconditionError(f"cluster_stats count {counted:,} documents, the clustering now holds "
                                f"{held:,} (documents assigned since the last prune): re-run `climb-spark prune`")
    stats = spark.table(lake.ensure(spark, CLUSTER_STATS)).where("kept").select(
        "cluster_id", "super_cluster_id", "cluster_run_id").collect()
    by_stats = {(r["cluster_id"], r["super_cluster_id"], r["cluster_run_id"]) for r in stats}
    by_supers = {(c, s["super_cluster_id"], s["cluster_run_id"]) for s in supers for c in s["member_clusters"]}
    if by_stats != by_supers:
        raise PreconditionError("cluster_stats and super_clusters disagree on which kept cluster is in which "
                                "super-cluster (a prune that did not finish): re-run `climb-spark prune`")


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
