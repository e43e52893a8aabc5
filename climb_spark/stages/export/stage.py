"""Export stage: the chosen mixture materialized as a training dataset.

Each super-cluster i contributes weight_i x token_budget tokens. A document's number of copies
is floor(f_i) plus one more with probability frac(f_i), where f_i = wanted tokens / the
cluster's tokens, decided by a seeded hash of its doc_id: one distributed pass, no window over a
whole cluster, and copies (repetition) appear only where a cluster has fewer tokens than its
share asks for. Target documents of the search stay out. The rows go to the `training_mix`
Delta table (replaced per export id) and to shuffled jsonl or parquet shards with a manifest.
"""
from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from climb_spark import tracking
from climb_spark.config import Config, S3Config, check_search, is_local_path
from climb_spark.curated import (kept_documents, super_clusters, target_documents, target_filter, target_overlap,
                                  without_target_documents)
from climb_spark.errors import PreconditionError
from climb_spark.ids import content_id, pool_id, search_id
from climb_spark.lakehouse import files
from climb_spark.lakehouse.delta import replace_where, table_version
from climb_spark.lakehouse.tables import (CENTROIDS, CLUSTER_STATS, DOC_CLUSTERS, DOC_FEATURES, DOCUMENTS, MIXTURES,
                                          SUPER_CLUSTERS, TRAINING_MIX, Lakehouse, token_count)
from climb_spark.stages.contract import Counted, Files, Stage
from climb_spark.tracking import SearchRun

HASH_SCALE = 1 << 30


@dataclass
class ExportReport(Counted):
    export_id: str
    search_id: str
    path: str
    manifest: dict

    def summary(self) -> str:
        m = self.manifest
        lines = [f"export {self.export_id} from search {self.search_id}: {m['total_docs']:,} documents, "
                 f"{m['total_tokens']:,} tokens (budget {m['token_budget']:,}: {m['budget_from']}) -> {self.path}",
                 f"  tokens are words and punctuation: {m['kept_tokens']:,} in the kept clusters, "
                 f"{m['held_out_tokens']:,} of them the search's target (never exported), "
                 f"{m['available_tokens']:,} to draw from"]
        for c in m["super_clusters"]:
            if c["weight"] > 0:
                note = f"  repeated x{c['passes']:.2f}: the cluster ran out" if c["passes"] > 1 else ""
                lines.append(f"  super-cluster {c['super_cluster_id']:3d}: weight {c['weight']:.4f}, "
                             f"share {c['share']:.4f}, {c['docs']:,} docs{note}")
        lines += [f"  WARNING {w}" for w in m["warnings"]]
        return "\n".join(lines)


def copies_plan(weights: np.ndarray, tokens: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """(whole copies, extra-copy probability) per super-cluster so its expected tokens are
    weight x budget; a cluster with a positive weight and no tokens is an error."""
    weights, tokens = np.asarray(weights, dtype=np.float64), np.asarray(tokens, dtype=np.float64)
    short = np.flatnonzero((weights > 0) & (tokens <= 0))
    if len(short):
        raise PreconditionError(f"export: super-clusters {short.tolist()} have weight but no documents")
    passes = np.divide(weights * budget, tokens, out=np.zeros_like(weights), where=tokens > 0)
    whole = np.floor(passes)
    return whole.astype(np.int64), passes - whole


def run(spark: SparkSession, cfg: Config, log=print) -> ExportReport:
    e = cfg.export
    lake = Lakehouse(cfg.lakehouse)
    supers = super_clusters(spark, cfg)
    pool = pool_id(cfg, supers)
    super_ids = [int(s["super_cluster_id"]) for s in supers]
    # By default, the search this config runs with export.method (not merely the latest one).
    wanted = e.search_id or search_id(cfg, pool, e.method)
    chosen = spark.table(lake.ensure(spark, MIXTURES)).where(F.col("search_id") == wanted).first()
    if chosen is None:
        follows = ("" if cfg.search.token_budget or e.search_id else
                   "; the search's data-availability bounds follow export.token_budget, so another budget is "
                   "another search: set search.token_budget to the searched one, or export.search_id")
        raise PreconditionError(f"export: search {wanted} has no mixture yet; run `climb-spark search "
                                f"--method {e.method}` with the same settings first{follows}")
    weights = np.asarray(chosen["weights"], dtype=np.float64)
    # Never the search's target: a holdout's slice, or a file target's documents the corpus holds.
    docs = (without_target_documents(kept_documents(spark, cfg).where(~target_filter(cfg)),
                                     target_documents(spark, cfg))
            .withColumn("n_tokens", token_count("text").cast("long")))
    overlap = target_overlap(spark, cfg)
    totals = {r["super_cluster_id"]: (r["docs"], r["tokens"]) for r in
              docs.groupBy("super_cluster_id").agg(F.count("*").alias("docs"), F.sum("n_tokens").alias("tokens")).collect()}
    if len(weights) != len(super_ids):
        raise PreconditionError(f"export: the mixture has {len(weights)} weights for {len(super_ids)} "
                                "super-clusters; it belongs to an earlier clustering")
    tokens = np.array([totals.get(sc, (0, 0))[1] for sc in super_ids], dtype=np.float64)
    budget = e.token_budget or int(tokens.sum())
    kept_tokens = sum(int(s["n_tokens"]) for s in supers)
    whole, frac = copies_plan(weights, tokens, budget)
    key = [chosen["search_id"], weights.tolist(), budget, e.seed, pool]
    export_id = "export-" + content_id(key, 10)

    plan = spark.createDataFrame(
        [(int(sc), int(w), float(f)) for sc, w, f in zip(super_ids, whole, frac)],
        "super_cluster_id int, whole int, frac double")
    u = (F.pmod(F.xxhash64("doc_id", F.lit(e.seed)), F.lit(HASH_SCALE)) / HASH_SCALE)
    rows = (docs.join(F.broadcast(plan), "super_cluster_id")
            .withColumn("n_copies", F.col("whole") + (u < F.col("frac")).cast("int"))
            .where(F.col("n_copies") > 0)
            .select(F.lit(export_id).alias("export_id"), "doc_id",
                    F.explode(F.sequence(F.lit(0), F.col("n_copies") - 1)).alias("copy"),
                    "super_cluster_id", "source", "n_tokens", "text"))
    table = lake.ensure(spark, TRAINING_MIX)
    replace_where(table, rows.select(*TRAINING_MIX.schema.fieldNames()), F.col("export_id") == export_id)

    exported = spark.table(table).where(F.col("export_id") == export_id)
    got = {r["super_cluster_id"]: (r["docs"], r["tokens"]) for r in exported.groupBy("super_cluster_id")
           .agg(F.count("*").alias("docs"), F.sum("n_tokens").alias("tokens")).collect()}
    total_tokens = sum(t for _, t in got.values())
    # Absolute, so the manifest's paths resolve from any working directory.
    output = str(Path(e.output.removeprefix("file://")).resolve()) if is_local_path(e.output) else e.output
    out = f"{output.rstrip('/')}/{export_id}"
    # Each attempt writes its own folder and the manifest, replaced whole and last, names it: a
    # reader following the manifest sees the previous complete export or this one, never a mix.
    data = f"{out}/data-{uuid.uuid4().hex[:12]}"
    writer = (exported.withColumn("_order", F.xxhash64("doc_id", "copy", F.lit(e.seed)))
              .repartitionByRange(e.shards, "_order").sortWithinPartitions("_order").drop("_order", "export_id")
              .write.mode("overwrite"))
    (writer.option("compression", "gzip").json(data) if e.format == "jsonl" else writer.parquet(data))
    shards = keep_shards_only(data, cfg.s3)
    largest = exported.orderBy(F.desc("n_tokens")).select("doc_id", "n_tokens").first()

    manifest = {
        "export_id": export_id, "search_id": chosen["search_id"], "method": chosen["method"],
        "pool_id": pool, "token_budget": budget, "seed": e.seed, "format": e.format, "shards": e.shards,
        "data": data, "files": shards, "table": table, "total_docs": sum(d for d, _ in got.values()),
        "total_tokens": int(total_tokens), "token_unit": "words and punctuation (the tables' n_tokens)",
        "budget_from": "export.token_budget" if e.token_budget else "every kept token outside the target",
        "kept_tokens": kept_tokens, "held_out_tokens": kept_tokens - int(tokens.sum()),
        "available_tokens": int(tokens.sum()),
        "super_clusters": [{"super_cluster_id": int(sc), "weight": float(w), "target_tokens": float(w * budget),
                            "available_tokens": int(t), "passes": float(w * budget / t) if t else 0.0,
                            "docs": int(got.get(sc, (0, 0))[0]), "tokens": int(got.get(sc, (0, 0))[1]),
                            "share": got.get(sc, (0, 0))[1] / total_tokens if total_tokens else 0.0}
                           for sc, w, t in zip(super_ids, weights, tokens)],
        "sources": {spec.name: table_version(spark, lake.name(spec))
                    for spec in (DOCUMENTS, DOC_CLUSTERS, CLUSTER_STATS, SUPER_CLUSTERS, MIXTURES)},
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "target": {"kind": cfg.target.kind, **(dataclasses.asdict(overlap) if overlap else {})},
        "warnings": [w for w in [overlap and overlap.warning(cfg.target.max_overlap)] if w],
    }
    limit = cfg.search.max_passes
    over = [c for c in manifest["super_clusters"] if limit and c["passes"] > limit * (1 + 1e-6)]
    if over:
        manifest["warnings"].append(
            "super-clusters " + ", ".join(f"{c['super_cluster_id']} (x{c['passes']:.2f})" for c in over)
            + f" are repeated past search.max_passes={limit:g} at this token budget ({budget:,}); the search bounded "
            "its mixtures for search.token_budget, so export a smaller budget or search again with this one")
    if largest is not None and total_tokens and largest["n_tokens"] > e.max_doc_share * total_tokens:
        manifest["warnings"].append(
            f"document {largest['doc_id']} is {largest['n_tokens'] / total_tokens:.1%} of the exported tokens "
            f"(above export.max_doc_share={e.max_doc_share:g}); see ingest.max_doc_chars")
    files.write_text(f"{out}/manifest.json", json.dumps(manifest, indent=2), cfg.s3)
    remove_other_attempts(out, data, cfg.s3)
    _track(spark, cfg, lake, manifest, chosen)
    return ExportReport(export_id, chosen["search_id"], out, manifest)


def keep_shards_only(data: str, s3: S3Config) -> list[str]:
    """The shard files' names, once Hadoop's bookkeeping beside them (`_SUCCESS`, `.crc` checksums)
    is removed: a reader that globs the folder gets the shards alone."""
    from pyarrow import fs

    filesystem, root = files.filesystem(data, s3)
    shards = []
    for info in filesystem.get_file_info(fs.FileSelector(root)):
        if info.type == fs.FileType.Directory:
            # The committer's emptied `_temporary`, which an object store (SeaweedFS) may go on listing.
            files.remove_dir(f"{data.rstrip('/')}/{info.base_name}", s3)
        elif info.base_name.startswith(("_", ".")):
            filesystem.delete_file(info.path)
        else:
            shards.append(info.base_name)
    return sorted(shards)


def _track(spark: SparkSession, cfg: Config, lake: Lakehouse, manifest: dict, chosen) -> None:
    """The export's MLflow run: its settings, counts and manifest, the tables it read as inputs,
    and the `training_mix` rows it wrote as a dataset with context `output` (MLflow 3 records
    datasets as a run's inputs only; a training run that logs the same table and version links to
    it)."""
    export_id = manifest["export_id"]
    tracker = SearchRun(cfg.mlflow, export_id, "export", {
        **{f"export.{k}": v for k, v in dataclasses.asdict(cfg.export).items()},
        "search_id": chosen["search_id"], "method": chosen["method"], "token_budget": manifest["token_budget"]},
        role="export", inputs=lake.versions(spark, (DOCUMENTS, DOC_CLUSTERS, CLUSTER_STATS, SUPER_CLUSTERS, MIXTURES)))
    [(written, version)] = lake.versions(spark, (TRAINING_MIX,)).items()
    tracker.client.log_inputs(tracker.run_id, datasets=[tracking.delta_dataset(written, version, "output", export_id)])
    tracker.log_metrics({"total_docs": manifest["total_docs"], "total_tokens": manifest["total_tokens"],
                         "available_tokens": manifest["available_tokens"]}, 0)
    tracker.log_dict(manifest, "manifest.json")
    tracker.set_tags({"climb.export_id": export_id, "climb.search_run_id": chosen["mlflow_run_id"] or "-",
                      "climb.warnings": " | ".join(manifest["warnings"]) or "none"})
    repeated = [c for c in manifest["super_clusters"] if c["passes"] > 1]
    tracker.describe(
        f"The `{chosen['method']}` search's mixture (`{chosen['search_id']}`) exported as a training dataset: "
        f"{manifest['total_docs']:,} documents, {manifest['total_tokens']:,} tokens (words and punctuation) of a "
        f"{manifest['token_budget']:,} budget ({manifest['budget_from']}), rows `{export_id}` of `training_mix` and "
        f"{len(manifest['files'])} {manifest['format']} shards in {manifest['data']}."
        + ("" if not repeated else " Repeated where a super-cluster ran out: " + ", ".join(
            f"{c['super_cluster_id']} x{c['passes']:.2f}" for c in repeated) + ".")
        + "".join(f"\n\n**WARNING** {w}" for w in manifest["warnings"]))
    tracker.finish()


def remove_other_attempts(out: str, keep: str, s3: S3Config) -> None:
    """Earlier exports' data and what a killed attempt left, once the manifest names `keep`."""
    from pyarrow import fs

    filesystem, root = files.filesystem(out, s3)
    for info in filesystem.get_file_info(fs.FileSelector(root, allow_not_found=True)):
        if info.type == fs.FileType.Directory and info.base_name.startswith("data") and \
                info.base_name != keep.rsplit("/", 1)[1]:
            files.remove_dir(f"{out}/{info.base_name}", s3)


def check(cfg: Config) -> None:
    check_search(cfg)
    tracking.check_reachable(cfg.mlflow)


SHARDS = Files("training shards", lambda cfg: cfg.export.output, lambda cfg: True)

STAGE = Stage("export", "the chosen mixture materialized as a shuffled training dataset with a manifest",
              reads=(SUPER_CLUSTERS, CLUSTER_STATS, CENTROIDS, DOC_CLUSTERS, DOC_FEATURES, DOCUMENTS, MIXTURES),
              writes=(TRAINING_MIX, SHARDS), run=run, check=check,
              settings=("export",))
