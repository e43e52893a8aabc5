"""Every table climb-spark writes: its name, schema and key, in one place."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from climb_spark.config import LakehouseConfig, S3Config, SparkConfig, is_local_path
from climb_spark.errors import PreconditionError
from climb_spark.lakehouse import files, object_store
from climb_spark.lakehouse.delta import table_version
from climb_spark.rubric import CRITERIA


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: T.StructType
    key: tuple[str, ...]
    comment: str


# Every weights array: element i is super-cluster i's share. Spark SQL's weights[i] counts from 0;
# element_at, and the arrays of 1-based dialects (DuckDB, Trino, Postgres), count from 1.
WEIGHTS = "element i is super_cluster_id i's share (0-based: weights[i] in Spark SQL, weights[i + 1] in 1-based SQL)"


DOCUMENTS = TableSpec(
    "documents",
    T.StructType([
        T.StructField("doc_id", T.StringType(), False, {"comment": "sha256/128 of the normalized text"}),
        T.StructField("text", T.StringType(), False,
                      {"comment": "the normalized text (Unicode NFC, whitespace runs collapsed)"}),
        T.StructField("source", T.StringType(), False,
                      {"comment": "the input record's source field, or its file's name"}),
        T.StructField("metadata", T.StringType(), True, {"comment": "the record's other fields, JSON"}),
        T.StructField("n_chars", T.IntegerType(), False, {"comment": "characters of text"}),
        T.StructField("n_words", T.IntegerType(), False, {"comment": "whitespace-separated words of text"}),
        T.StructField("file", T.StringType(), False, {"comment": "the input file (URI) of its first occurrence"}),
        T.StructField("line", T.LongType(), False, {"comment": "1-based line, paragraph start or row"}),
        T.StructField("offset", T.LongType(), True, {"comment": "byte offset in the (decompressed) file"}),
        T.StructField("ingest_run_id", T.StringType(), False, {"comment": "the ingest that added it"}),
        T.StructField("ingested_at", T.TimestampType(), False, {"comment": "when it was added (UTC)"}),
    ]),
    key=("doc_id",),
    comment="One row per distinct normalized text; first occurrence wins.",
)

REJECTS = TableSpec(
    "rejects",
    T.StructType([
        T.StructField("file", T.StringType(), False, {"comment": "the input file (URI)"}),
        T.StructField("line", T.LongType(), False, {"comment": "1-based line, paragraph start or row"}),
        T.StructField("offset", T.LongType(), True, {"comment": "byte offset in the (decompressed) file"}),
        T.StructField("reason", T.StringType(), False, {"comment": "why the record is not a document"}),
        T.StructField("raw", T.StringType(), True, {"comment": "the start of the offending record"}),
        T.StructField("ingest_run_id", T.StringType(), False, {"comment": "the ingest that read it"}),
        T.StructField("ingested_at", T.TimestampType(), False, {"comment": "when it was read (UTC)"}),
    ]),
    key=("file", "line"),
    comment="Input records that did not become documents, with the reason.",
)

DUPLICATES = TableSpec(
    "duplicates",
    T.StructType([
        T.StructField("file", T.StringType(), False, {"comment": "the input file (URI)"}),
        T.StructField("line", T.LongType(), False, {"comment": "1-based line, paragraph start or row"}),
        T.StructField("offset", T.LongType(), True, {"comment": "byte offset in the (decompressed) file"}),
        T.StructField("doc_id", T.StringType(), False, {"comment": "the document this record repeats"}),
        T.StructField("ingest_run_id", T.StringType(), False, {"comment": "the ingest that read it"}),
        T.StructField("ingested_at", T.TimestampType(), False, {"comment": "when it was read (UTC)"}),
    ]),
    key=("file", "line"),
    comment="Input records whose normalized text is already a document.",
)

DOC_FEATURES = TableSpec(
    "doc_features",
    T.StructType([
        T.StructField("doc_id", T.StringType(), False, {"comment": "documents.doc_id"}),
        T.StructField("embedding", T.ArrayType(T.FloatType(), False), False,
                      {"comment": "sentence embedding (384 floats for MiniLM)"}),
        T.StructField("quality", T.FloatType(), False, {"comment": "expected rubric score, 0-5"}),
        T.StructField("advertisement", T.FloatType(), False, {"comment": "0-5, higher = fewer ads"}),
        T.StructField("informational_value", T.FloatType(), False, {"comment": "expected rubric score, 0-5"}),
        T.StructField("educational_value", T.FloatType(), False, {"comment": "expected rubric score, 0-5"}),
        T.StructField("embedding_model", T.StringType(), False, {"comment": "name==version"}),
        T.StructField("quality_model", T.StringType(), False, {"comment": "hash of the fastText files"}),
        T.StructField("features_run_id", T.StringType(), False, {"comment": "the embed run that wrote it"}),
        T.StructField("computed_at", T.TimestampType(), False, {"comment": "when it was computed (UTC)"}),
    ]),
    key=("doc_id",),
    comment="Sentence embedding and fastText quality scores per document.",
)


class Lakehouse:
    """Resolves table specs to catalog identifiers and creates what is missing."""

    def __init__(self, cfg: LakehouseConfig):
        self.cfg = cfg
        self._current: set[str] = set()  # tables whose columns were checked by this object

    @property
    def schema_name(self) -> str:
        parts = [self.cfg.catalog, self.cfg.schema] if self.cfg.catalog else [self.cfg.schema]
        return ".".join(f"`{p}`" for p in parts)

    def name(self, spec: TableSpec) -> str:
        # Identifiers are validated in config; backticks keep reserved words usable.
        return f"{self.schema_name}.`{spec.name}`"

    def versions(self, spark: SparkSession, specs: tuple[TableSpec, ...]) -> dict[str, int]:
        """Each table's current Delta version, by its name with the catalog (what a run logs as
        its inputs: MLflow reads a two-part name as catalog.table and asks Databricks' Unity
        Catalog about it, a warning per table and a false `is_databricks_uc_table`)."""
        catalog = "" if self.cfg.catalog else f"`{spark.catalog.currentCatalog()}`."
        return {catalog + self.name(spec): table_version(spark, self.name(spec)) for spec in specs}

    def exists_on_disk(self, spark_cfg: SparkConfig, spec: TableSpec) -> bool | None:
        """Whether a table of the local catalog exists, read off its folder without a JVM; None
        where only the catalog can say (a metastore, Unity Catalog, Glue)."""
        if not spark_cfg.local_catalog or self.cfg.catalog or not is_local_path(self.cfg.root):
            return None
        root = Path(self.cfg.root.removeprefix("file://")).resolve()
        return (root / "warehouse" / f"{self.cfg.schema.lower()}.db" / spec.name / "_delta_log").is_dir()

    def exists(self, spark: SparkSession, spec: TableSpec) -> bool:
        return spark.catalog.tableExists(self.name(spec).replace("`", ""))

    def ensure(self, spark: SparkSession, spec: TableSpec) -> str:
        from pyspark.errors import AnalysisException

        spark.sql(f"CREATE SCHEMA IF NOT EXISTS {self.schema_name}")
        name = self.name(spec)
        create = f"CREATE TABLE IF NOT EXISTS {name} ({_ddl(spec.schema)}) USING DELTA COMMENT {_literal(spec.comment)}"
        try:
            spark.sql(create)
        except AnalysisException as err:
            if "DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION" not in str(err):
                raise
            clear_half_created(name, str(err), object_store.from_session(spark))
            spark.sql(create)
        if name not in self._current:
            add_new_columns(spark, name, spec)
            add_comments(spark, name, spec)
            self._current.add(name)
        return name

    def table(self, spark: SparkSession, spec: TableSpec) -> DataFrame:
        return spark.table(self.name(spec))


def add_new_columns(spark: SparkSession, name: str, spec: TableSpec) -> None:
    """A table made by an earlier version of climb-spark gains the (nullable) columns added to its
    spec since, so a lakehouse keeps working across upgrades; its rows read them as null."""
    have = {f.name.lower() for f in spark.table(name).schema.fields}
    missing = [f for f in spec.schema.fields if f.name.lower() not in have]
    if missing:
        spark.sql(f"ALTER TABLE {name} ADD COLUMNS ({_ddl(T.StructType(missing))})")


def add_comments(spark: SparkSession, name: str, spec: TableSpec) -> None:
    """The table's and its columns' comments as the spec has them, for every reader of the catalog
    or the Delta log (delta-rs, DuckDB): a table made by an earlier version lacked most of them."""
    if (spark.catalog.getTable(name.replace("`", "")).description or "") != spec.comment:
        spark.sql(f"COMMENT ON TABLE {name} IS {_literal(spec.comment)}")
    have = {f.name: f.metadata.get("comment") for f in spark.table(name).schema.fields}
    for f in spec.schema.fields:
        if "comment" in f.metadata and have.get(f.name) != f.metadata["comment"]:
            spark.sql(f"ALTER TABLE {name} ALTER COLUMN `{f.name}` COMMENT {_literal(f.metadata['comment'])}")


def clear_half_created(name: str, message: str, s3: S3Config) -> None:
    """A job killed inside CREATE TABLE leaves the table's first Delta commit (schema only) at its
    managed location but no catalog entry, and every later CREATE fails on the non-empty folder.
    Such a folder holds no data, so it is removed and the table created again; a folder with data
    is left alone and named."""
    import re

    from pyarrow import fs

    found = re.search(r"location \('([^']+)'\)", message)
    if not found:
        raise PreconditionError(f"table {name}: its location is not empty and not a Delta table ({message[:300]})")
    uri = found.group(1)
    filesystem, root = files.filesystem(uri, s3)
    commits = [e.path for e in filesystem.get_file_info(fs.FileSelector(f"{root}/_delta_log", allow_not_found=True))
               if e.base_name.endswith(".json") and e.base_name[:20].isdigit()]
    adds = 0
    for commit in commits:
        with filesystem.open_input_stream(commit) as f:
            adds += sum('"add"' in line for line in f.read().decode("utf-8").splitlines())
    if len(commits) > 1 or adds:
        raise PreconditionError(f"table {name}: {uri} holds data but the catalog has no such table; register it "
                                f"(CREATE TABLE {name} USING DELTA LOCATION '{uri}') or move it away")
    files.remove_dir(uri, s3)


def _literal(text: str) -> str:
    """A Spark SQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ddl(schema: T.StructType) -> str:

    cols = []
    for f in schema.fields:
        col = f"`{f.name}` {f.dataType.simpleString()}"
        if not f.nullable:
            col += " NOT NULL"
        if "comment" in f.metadata:
            col += f" COMMENT {_literal(f.metadata['comment'])}"
        cols.append(col)
    return ", ".join(cols)

ANNOTATIONS = TableSpec(
    "annotations",
    T.StructType([
        T.StructField("doc_id", T.StringType(), False, {"comment": "documents.doc_id"}),
        T.StructField("teacher", T.StringType(), False, {"comment": "heuristic-v1 or the LLM's model name"}),
        T.StructField("prompt_version", T.StringType(), False, {"comment": "the rubric prompt's version"}),
        T.StructField("quality", T.IntegerType(), True, {"comment": "teacher score 0-5, null on error"}),
        T.StructField("advertisement", T.IntegerType(), True,
                      {"comment": "teacher score 0-5 (higher = fewer ads), null on error"}),
        T.StructField("informational_value", T.IntegerType(), True, {"comment": "teacher score 0-5, null on error"}),
        T.StructField("educational_value", T.IntegerType(), True, {"comment": "teacher score 0-5, null on error"}),
        T.StructField("raw_response", T.StringType(), True, {"comment": "the teacher's answer as received"}),
        T.StructField("error", T.StringType(), True, {"comment": "null when the scores are usable"}),
        T.StructField("attempts", T.IntegerType(), False, {"comment": "requests made for this document"}),
        T.StructField("annotate_run_id", T.StringType(), False, {"comment": "the annotate run that wrote it"}),
        T.StructField("annotated_at", T.TimestampType(), False, {"comment": "when it was written (UTC)"}),
    ]),
    key=("doc_id", "teacher", "prompt_version"),
    comment="Teacher scores on the 0-5 rubric, the training data of the quality classifiers.",
)

DOC_CLUSTERS = TableSpec(
    "doc_clusters",
    T.StructType([
        T.StructField("doc_id", T.StringType(), False, {"comment": "documents.doc_id"}),
        T.StructField("cluster_id", T.IntegerType(), False,
                      {"comment": "centroids.cluster_id of the nearest centroid"}),
        T.StructField("distance", T.FloatType(), False, {"comment": "1 - cos (cosine) or Euclidean"}),
        T.StructField("cluster_run_id", T.StringType(), False,
                      {"comment": "the k-means fit (centroids.cluster_run_id)"}),
    ]),
    key=("doc_id",),
    comment="Nearest k-means centroid per document.",
)

CENTROIDS = TableSpec(
    "centroids",
    T.StructType([
        T.StructField("cluster_id", T.IntegerType(), False, {"comment": "0-based cluster number"}),
        T.StructField("vector", T.ArrayType(T.FloatType(), False), False,
                      {"comment": "the centroid, in the embedding space"}),
        T.StructField("cluster_run_id", T.StringType(), False,
                      {"comment": "hash of the cluster config and the doc_features version fitted on"}),
    ]),
    key=("cluster_id",),
    comment="k-means centroids.",
)

_SCORE_STATS = [
    field for c in CRITERIA
    for field in (T.StructField(f"{c}_mean", T.DoubleType(), True,
                                {"comment": f"mean {c} score of its documents, 0-5"}),
                  T.StructField(f"{c}_quantiles", T.ArrayType(T.DoubleType()), True,
                                {"comment": f"[p10, p50, p90] of its documents' {c} scores"}))
]

# The unit of `n_tokens` in the cluster tables, of the super-clusters' token shares (the search's
# prior) and of the export's budget: words and punctuation, independent of any proxy tokenizer.
TOKEN = r"\w+|[^\w\s]"


def token_count(text: str) -> Column:
    """`n_tokens` of a text column."""
    return F.size(F.regexp_extract_all(text, F.lit(TOKEN), 0))


CLUSTER_STATS = TableSpec(
    "cluster_stats",
    T.StructType([
        T.StructField("cluster_id", T.IntegerType(), False, {"comment": "centroids.cluster_id"}),
        T.StructField("n_docs", T.LongType(), False, {"comment": "documents in the cluster"}),
        T.StructField("n_tokens", T.LongType(), False, {"comment": "word and punctuation tokens"}),
        *_SCORE_STATS,
        T.StructField("mean_score", T.DoubleType(), True, {"comment": "mean of the four criteria means"}),
        T.StructField("tier", T.StringType(), False, {"comment": "high / medium / low by mean_score tercile"}),
        T.StructField("kept", T.BooleanType(), False, {"comment": "true when the prune rule kept the cluster"}),
        T.StructField("rule", T.StringType(), False, {"comment": "why kept or dropped"}),
        T.StructField("super_cluster_id", T.IntegerType(), True,
                      {"comment": "the super-cluster a kept cluster was merged into; NULL for a pruned cluster, "
                                  "which is in none"}),
        T.StructField("top_terms", T.ArrayType(T.StringType()), True, {"comment": "by TF-IDF across clusters"}),
        T.StructField("exemplars", T.ArrayType(T.StringType()), True, {"comment": "doc_ids nearest the centroid"}),
        T.StructField("cluster_run_id", T.StringType(), False,
                      {"comment": "the k-means fit (centroids.cluster_run_id)"}),
    ]),
    key=("cluster_id",),
    comment="One row per k-means cluster: size, quality, pruning decision, super-cluster.",
)

SUPER_CLUSTERS = TableSpec(
    "super_clusters",
    T.StructType([
        T.StructField("super_cluster_id", T.IntegerType(), False,
                      {"comment": "0-based; the index of its weight in every weights array"}),
        T.StructField("member_clusters", T.ArrayType(T.IntegerType()), False,
                      {"comment": "cluster_stats.cluster_id of its kept clusters"}),
        T.StructField("n_docs", T.LongType(), False, {"comment": "documents in its clusters"}),
        T.StructField("n_tokens", T.LongType(), False,
                      {"comment": "word and punctuation tokens, the export budget's unit"}),
        T.StructField("token_share", T.DoubleType(), False, {"comment": "the prior p of the mixture search"}),
        T.StructField("description", T.StringType(), False, {"comment": "size and most shared top terms"}),
        T.StructField("cluster_run_id", T.StringType(), False,
                      {"comment": "the k-means fit (centroids.cluster_run_id)"}),
    ]),
    key=("super_cluster_id",),
    comment="Kept clusters merged by Ward linkage of their centroids.",
)

TOKEN_POOLS = TableSpec(
    "token_pools",
    T.StructType([
        T.StructField("pool_id", T.StringType(), False,
                      {"comment": "hash of the super-clusters, the tokenizer and the target settings"}),
        T.StructField("split", T.StringType(), False, {"comment": "train (per super-cluster) or target"}),
        T.StructField("super_cluster_id", T.IntegerType(), False, {"comment": "-1 for the target"}),
        T.StructField("n_docs", T.LongType(), False, {"comment": "documents tokenized"}),
        T.StructField("n_tokens", T.LongType(), False, {"comment": "tokenizer tokens, EOS included"}),
        T.StructField("token_share", T.DoubleType(), True, {"comment": "the search's prior p"}),
        T.StructField("vocab_size", T.IntegerType(), False, {"comment": "the proxies' BPE vocabulary"}),
        T.StructField("path", T.StringType(), False, {"comment": "parquet shards the proxy tasks read"}),
        T.StructField("created_at", T.TimestampType(), False, {"comment": "when the pool was built (UTC)"}),
    ]),
    key=("pool_id", "split", "super_cluster_id"),
    comment="Tokenized training pools per super-cluster and the target set of the mixture search.",
)

PROXY_RESULTS = TableSpec(
    "proxy_results",
    T.StructType([
        T.StructField("search_id", T.StringType(), False,
                      {"comment": "mixtures.search_id, or comparisons.compare_id for compare's retrains"}),
        T.StructField("proxy_key", T.StringType(), False, {"comment": "hash of pool, proxy settings, seed, weights"}),
        T.StructField("method", T.StringType(), False, {"comment": "the search method (climb, regmix, ...)"}),
        T.StructField("iteration", T.IntegerType(), False, {"comment": "1-based; 0 for compare runs"}),
        T.StructField("proxy_index", T.IntegerType(), False, {"comment": "0-based index within its iteration"}),
        T.StructField("weights", T.ArrayType(T.DoubleType(), False), False, {"comment": WEIGHTS}),
        T.StructField("seed", T.IntegerType(), False, {"comment": "the proxy's seed (initial weights and data order)"}),
        T.StructField("score", T.DoubleType(), False, {"comment": "higher is better: -target loss or accuracy"}),
        T.StructField("target_loss", T.DoubleType(), True, {"comment": "mean loss per target token, lower is better"}),
        T.StructField("loss_curve", T.ArrayType(T.DoubleType(), False), True,
                      {"comment": "training loss every proxy.log_every steps"}),
        T.StructField("tokens_trained", T.LongType(), False,
                      {"comment": "proxy-tokenizer tokens the proxy trained on"}),
        T.StructField("seconds", T.DoubleType(), False, {"comment": "training time"}),
        T.StructField("mlflow_run_id", T.StringType(), True, {"comment": "the proxy's MLflow child run"}),
        T.StructField("pool_id", T.StringType(), False, {"comment": "token_pools.pool_id"}),
        T.StructField("finished_at", T.TimestampType(), False, {"comment": "when it finished (UTC)"}),
        T.StructField("role", T.StringType(), True,
                      {"comment": "search: a search's proxy; compare-proxy / compare-target: compare's retrains"}),
    ]),
    key=("search_id", "proxy_key"),
    comment="Every (mixture, proxy score) pair, one commit per search round; a resumed search reuses them.",
)

MIXTURES = TableSpec(
    "mixtures",
    T.StructType([
        T.StructField("search_id", T.StringType(), False,
                      {"comment": "method, pool and settings hashed: the same command finds it again"}),
        T.StructField("method", T.StringType(), False, {"comment": "the search method (climb, regmix, ...)"}),
        T.StructField("weights", T.ArrayType(T.DoubleType(), False), False, {"comment": WEIGHTS}),
        T.StructField("prior", T.ArrayType(T.DoubleType(), False), False, {"comment": "token shares p"}),
        T.StructField("predicted_score", T.DoubleType(), True,
                      {"comment": "the predictor's score for the final mixture; null when nothing was predicted"}),
        T.StructField("best_observed_score", T.DoubleType(), True, {"comment": "the best proxy score of the search"}),
        T.StructField("n_proxies", T.IntegerType(), False, {"comment": "distinct mixtures trained"}),
        T.StructField("pool_id", T.StringType(), False, {"comment": "token_pools.pool_id"}),
        T.StructField("cluster_run_id", T.StringType(), False,
                      {"comment": "the k-means fit its super-clusters come from"}),
        T.StructField("mlflow_run_id", T.StringType(), True, {"comment": "the search's MLflow run"}),
        T.StructField("config", T.StringType(), False, {"comment": "search, proxy and target settings, JSON"}),
        T.StructField("created_at", T.TimestampType(), False, {"comment": "when the mixture was written (UTC)"}),
        T.StructField("explanation", T.StringType(), True, {"comment": "why this mixture was chosen"}),
        T.StructField("observed_score", T.DoubleType(), True,
                      {"comment": "the final mixture's own proxy score, where it was trained"}),
        T.StructField("max_weights", T.ArrayType(T.DoubleType(), False), True,
                      {"comment": "data availability: each weight's bound (search.max_passes)"}),
    ]),
    key=("search_id",),
    comment="The final mixture of each search.",
)

COMPARISONS = TableSpec(
    "comparisons",
    T.StructType([
        T.StructField("compare_id", T.StringType(), False,
                      {"comment": "the methods' searches, seeds and models hashed"}),
        T.StructField("method", T.StringType(), False, {"comment": "the search method (climb, regmix, ...)"}),
        T.StructField("search_id", T.StringType(), False,
                      {"comment": "mixtures.search_id of the method's final mixture"}),
        T.StructField("weights", T.ArrayType(T.DoubleType(), False), False,
                      {"comment": WEIGHTS}),
        T.StructField("seeds", T.ArrayType(T.IntegerType(), False), False, {"comment": "the seeds retrained with"}),
        T.StructField("scores", T.ArrayType(T.DoubleType(), False), False, {"comment": "one per seed, in seeds order"}),
        T.StructField("mean_score", T.DoubleType(), False, {"comment": "mean of scores, higher is better"}),
        T.StructField("std_score", T.DoubleType(), False, {"comment": "sample standard deviation of scores"}),
        T.StructField("mean_target_loss", T.DoubleType(), True,
                      {"comment": "mean loss per target token, lower is better"}),
        T.StructField("std_target_loss", T.DoubleType(), True,
                      {"comment": "sample standard deviation of the target losses"}),
        T.StructField("mlflow_run_id", T.StringType(), True, {"comment": "the compare's MLflow run"}),
        T.StructField("created_at", T.TimestampType(), False, {"comment": "when the comparison was written (UTC)"}),
        T.StructField("scale", T.StringType(), True,
                      {"comment": "proxy: the search's own proxy; target: compare.target_model, a larger one"}),
        T.StructField("model", T.StringType(), True, {"comment": "the retrained model's size and tokens"}),
        T.StructField("rank", T.IntegerType(), True, {"comment": "1 = best mean score at this scale"}),
        T.StructField("margin", T.DoubleType(), True,
                      {"comment": "mean paired score difference to margin_against (the winner; the runner-up for "
                                  "the winner)"}),
        T.StructField("margin_against", T.StringType(), True, {"comment": "the method margin is measured against"}),
        T.StructField("margin_low", T.DoubleType(), True, {"comment": "paired t interval at compare.confidence"}),
        T.StructField("margin_high", T.DoubleType(), True, {"comment": "upper end of the paired t interval"}),
        T.StructField("significant", T.BooleanType(), True, {"comment": "the interval excludes 0"}),
    ]),
    key=("compare_id", "method", "scale"),
    comment="Each method's final mixture retrained over several seeds, with the proxy and with a larger model.",
)

TRAINING_MIX = TableSpec(
    "training_mix",
    T.StructType([
        T.StructField("export_id", T.StringType(), False,
                      {"comment": "the export (its folder and manifest under export.output)"}),
        T.StructField("doc_id", T.StringType(), False, {"comment": "documents.doc_id"}),
        T.StructField("copy", T.IntegerType(), False, {"comment": "0, or the repetition of a cluster that ran out"}),
        T.StructField("super_cluster_id", T.IntegerType(), False, {"comment": "super_clusters.super_cluster_id"}),
        T.StructField("source", T.StringType(), False, {"comment": "documents.source"}),
        T.StructField("n_tokens", T.LongType(), False, {"comment": "word and punctuation tokens"}),
        T.StructField("text", T.StringType(), False, {"comment": "documents.text"}),
    ]),
    key=("export_id", "doc_id", "copy"),
    comment="The exported training dataset: documents sampled per super-cluster by the chosen mixture.",
)
