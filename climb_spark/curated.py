"""The curated set every mixture draws from: the documents of kept clusters by super-cluster,
and the search target's slice of them, which proxies score on and an export leaves out. Token
pools (for the search) and the export read it the same way."""
from __future__ import annotations

import json
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from climb_spark.config import Config
from climb_spark.errors import ConfigError, InputError, PreconditionError
from climb_spark.ids import fitted_version
from climb_spark.lakehouse.delta import table_version
from climb_spark.lakehouse.tables import (CENTROIDS, CLUSTER_STATS, DOC_CLUSTERS, DOC_FEATURES, DOCUMENTS,
                                          SUPER_CLUSTERS, Lakehouse)
# The target's documents are named as ingest names a text: the same normalization and hash.
from climb_spark.stages.ingest.readers import doc_id


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


def read_target(spark: SparkSession, path: str) -> list:
    """The records of a `file` or `choices` target (a jsonl file), read once on the driver."""
    rows = []
    for i, line in enumerate(spark.sparkContext.textFile(path).collect()):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ConfigError(f"target.path: line {i + 1} of {path} is not JSON ({err.msg})") from None
    if not rows:
        raise ConfigError(f"target.path: {path} holds no records")
    return rows


def target_texts(records: list, kind: str) -> list[str]:
    """The texts a target's documents would have in the corpus: a `file` target's texts; a
    `choices` item's context, alone and followed by each choice (a benchmark question with its
    answers copied into the corpus)."""
    texts = []
    for rec in records:
        if not isinstance(rec, dict):
            continue
        if kind == "file" and isinstance(rec.get("text"), str):
            texts.append(rec["text"])
        elif kind == "choices" and isinstance(rec.get("context"), str):
            texts.append(rec["context"])
            texts += [f"{rec['context']} {c}" for c in rec.get("choices") or [] if isinstance(c, str)]
    return [t for t in texts if t.strip()]


def target_documents(spark: SparkSession, cfg: Config) -> DataFrame | None:
    """doc_id of every document of a `file` or `choices` target, as ingest computes it; None for a
    holdout, whose documents are a slice of the kept ones and so in no pool by construction."""
    if cfg.target.kind == "holdout":
        return None
    ids = sorted({doc_id(t) for t in target_texts(read_target(spark, cfg.target.path), cfg.target.kind)})
    return spark.createDataFrame([(i,) for i in ids], "doc_id string")


def without_target_documents(docs: DataFrame, target: DataFrame | None) -> DataFrame:
    """`docs` less the target's documents: what a proxy trains on and an export holds."""
    return docs if target is None else docs.join(F.broadcast(target), "doc_id", "left_anti")


@dataclass(frozen=True)
class TargetOverlap:
    """How much of a `file` or `choices` target is in the corpus: scoring proxies on documents they
    also train on rewards the mixture that holds them (a 40-document target in the corpus drew the
    whole final mixture onto its super-cluster)."""

    documents: int  # distinct target documents, by doc_id
    in_corpus: int  # of them in `documents`
    removed: int  # of them in kept clusters: left out of every pool and of the export

    @property
    def share(self) -> float:
        return self.in_corpus / self.documents if self.documents else 0.0

    def describe(self) -> str:
        return (f"{self.in_corpus:,} of the target's {self.documents:,} documents are in the corpus "
                f"({self.share:.1%}); {self.removed:,} of them were in kept clusters and are left out of every "
                "token pool and of the export")

    def warning(self, max_overlap: float) -> str | None:
        if self.share <= max_overlap:
            return None
        return (f"the target overlaps the training data: {self.describe()}, above target.max_overlap="
                f"{max_overlap:g}; a target drawn from the corpus measures how well a mixture repeats it")


def target_overlap(spark: SparkSession, cfg: Config) -> TargetOverlap | None:
    """The target's documents against the corpus and the kept clusters; None for a holdout."""
    target = target_documents(spark, cfg)
    if target is None:
        return None
    lake = Lakehouse(cfg.lakehouse)
    in_corpus = spark.table(lake.ensure(spark, DOCUMENTS)).join(F.broadcast(target), "doc_id", "left_semi").count()
    removed = kept_documents(spark, cfg).join(F.broadcast(target), "doc_id", "left_semi").count()
    return TargetOverlap(target.count(), in_corpus, removed)
