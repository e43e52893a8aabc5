"""Embed-and-label stage: `documents` -> `doc_features` (embedding + four fastText scores).

One pass over the text: each Python worker loads the sentence-transformers model and the four
fastText models once (a per-process cache that survives across tasks with worker reuse) and
scores every Arrow batch it is given. Only documents not yet in `doc_features` are read, so a
re-run is a no-op and new documents are all that a later run computes.

The pending documents are computed and committed in chunks (`embed.chunk_docs`), contiguous ranges
of doc_id, one insert-only MERGE each: a driver lost mid-stage keeps every finished chunk, and the
re-run's left-anti join finds only the rest.
"""
from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from typing import Iterator

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from climb_spark.config import Config
from climb_spark.lakehouse.delta import merge_insert_only
from climb_spark.lakehouse.tables import DOC_FEATURES, DOCUMENTS, Lakehouse
from climb_spark.lakehouse.tasks import default_parallelism, ship_dir, shipped_path, task_gpu, worker_cached
from climb_spark.memory import release_free_heap
from climb_spark.rubric import CRITERIA
from climb_spark.stages.contract import Counted, Stage
from climb_spark.stages.embed import encoder
from climb_spark.stages.quality import classifiers
from climb_spark.stages.quality.classifiers import QUALITY_MODELS

_COMPUTED = [f for f in DOC_FEATURES.schema.fields if f.name in ("doc_id", "embedding", *CRITERIA)]
COMPUTED = T.StructType([T.StructField(f.name, f.dataType, True) for f in _COMPUTED])


@dataclass(frozen=True)
class Embedder:
    """What a worker needs to rebuild the models: plain values, cheap to pickle into each task."""

    model: encoder.ModelRef
    dim: int
    max_seq_length: int
    batch_size: int
    normalize: bool
    trust_remote_code: bool
    device: str
    fp16: bool
    quality_dir: str
    quality_quantized: bool  # the models are <criterion>.npz (quality.quantize), else .bin


def _device(preference: str) -> str:
    """The task's own GPU if Spark assigned one; otherwise CPU with the task's share of cores."""
    import torch
    from pyspark import TaskContext

    gpu = task_gpu()
    if preference != "cpu" and gpu:
        return gpu
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("embed.device=cuda but this task sees no GPU")
        return "cuda"
    # No oversubscription: a task's torch uses the cores Spark gave the task.
    ctx = TaskContext.get()
    torch.set_num_threads(max(1, ctx.cpus() if ctx else torch.get_num_threads()))
    return "cpu"


def _encoder(f: Embedder):
    return worker_cached("encoder", f, lambda: encoder.load_encoder(
        f.model, _device(f.device), f.max_seq_length, f.trust_remote_code, f.fp16))


def _classifiers(model_dir: str, quantized: bool, version: str) -> dict:
    return worker_cached("classifiers", (model_dir, quantized, version),
                         lambda: classifiers.load_models(shipped_path(model_dir), quantized, version))


def score(batches: Iterator[pd.DataFrame], model_dir: str, quantized: bool, version: str) -> Iterator[pd.DataFrame]:
    """(doc_id, text) batches -> (doc_id, four scores): re-scoring without re-embedding."""
    models = _classifiers(model_dir, quantized, version)
    for batch in batches:
        yield pd.DataFrame({"doc_id": batch["doc_id"], **classifiers.score_all(models, batch["text"].tolist())})


def embed_batches(batches: Iterator[pd.DataFrame], f: Embedder, version: str) -> Iterator[pd.DataFrame]:
    """(doc_id, text) batches -> (doc_id, embedding, four scores) batches."""
    model, models = _encoder(f), _classifiers(f.quality_dir, f.quality_quantized, version)
    for batch in batches:
        texts = batch["text"].tolist()
        ids = batch["doc_id"].tolist()
        vectors = encoder.encode(model, texts, f.batch_size, f.normalize)
        encoder.check_vectors(vectors, ids, f.dim)
        scores = classifiers.score_all(models, texts)
        yield pd.DataFrame({"doc_id": ids, "embedding": list(vectors), **scores})
        release_free_heap()


@dataclass
class EmbedReport(Counted):
    run_id: str
    pending: int
    written: int
    total: int
    model: str
    quality_model: str
    dim: int
    seconds: float
    chunks: int = 0

    def summary(self) -> str:
        rate = self.pending / self.seconds if self.seconds else 0.0
        return (f"embed {self.run_id}: {self.pending:,} documents embedded and scored "
                f"({rate:,.1f} docs/s) in {self.chunks:,} chunk{'' if self.chunks == 1 else 's'}, "
                f"{self.written:,} rows written, doc_features now {self.total:,}; "
                f"{self.model} dim {self.dim}, quality models {self.quality_model}")


# Chunk boundaries are cut between doc_id prefixes of this many hex digits: 65,536 buckets, counted
# on the narrow doc_id column alone, so even 10^9 pending documents give chunks within ~15k of
# their target size.
PREFIX = 4


def chunk_ranges(counts: list[tuple[str, int]], chunk_docs: int) -> list[tuple[str | None, str | None, int]]:
    """Contiguous doc_id ranges [lo, hi) of about `chunk_docs` pending documents each, in doc_id
    order, from (prefix, pending documents) counts: (lo, hi, documents) per chunk. The first range
    is open below and the last above, so together they cover every doc_id, also one ingested
    since the counts were taken. A range filter on doc_id (unlike a hash bucket) is pushed down to
    Parquet, so a `documents` table clustered by doc_id is read one slice per chunk, and each
    chunk's commit adds `doc_features` files of its own range."""
    counts = sorted((prefix, n) for prefix, n in counts if n)
    left = sum(n for _, n in counts)  # documents not in a finished range yet
    ranges: list[tuple[str | None, str | None, int]] = []
    lo, size = None, 0
    for prefix, n in counts:
        # Cut before this prefix once the chunk holds its share of what is left, split into as few
        # chunks of at most chunk_docs as it takes: sizes within one prefix's count of each other.
        if size and size * -(-left // chunk_docs) >= left:
            ranges.append((lo, prefix, size))
            lo, left, size = prefix, left - size, 0
        size += n
    if size:
        ranges.append((lo, None, size))
    return ranges


def in_range(column: str, lo: str | None, hi: str | None) -> Column:
    """`lo <= column < hi` as a Column (values as literals, never SQL text); open ends are None."""
    cond = F.lit(True)
    if lo is not None:
        cond = cond & (F.col(column) >= F.lit(lo))
    if hi is not None:
        cond = cond & (F.col(column) < F.lit(hi))
    return cond


def by_length(docs: DataFrame, n_docs: int, cores: int, docs_per_task: int = 256) -> DataFrame:
    """Tasks of similar-length texts (little padding in a model batch), longest first, so the
    tasks left running at the end are the short ones; small tasks, since models stay loaded."""
    parts = max(2 * cores, -(-n_docs // docs_per_task))
    return docs.repartitionByRange(parts, F.length("text").desc())


def embedder(cfg: Config) -> Embedder:
    ref = encoder.resolve_model(cfg.embed.model)
    # The dimension is read once on the driver so every worker's vectors can be checked against it.
    probe = encoder.load_encoder(ref, "cpu", cfg.embed.max_seq_length, cfg.embed.trust_remote_code)
    return Embedder(ref, encoder.dimension(probe), cfg.embed.max_seq_length,
                    cfg.embed.batch_size, cfg.embed.normalize, cfg.embed.trust_remote_code,
                    cfg.embed.device, cfg.embed.fp16, cfg.quality.model_dir, cfg.quality.quantize)


def _features(pending: DataFrame, n_docs: int, f: Embedder, qversion: str, run_id: str, cfg: Config,
              cores: int) -> DataFrame:
    """doc_features rows for (doc_id, text) rows: embedded and scored in length-balanced tasks."""
    planned = (pending.repartition(cfg.embed.partitions) if cfg.embed.partitions
               else by_length(pending, n_docs, cores))
    computed = planned.mapInPandas(lambda it: embed_batches(it, f, qversion), schema=COMPUTED)
    return computed.select(
        "doc_id", "embedding", *[F.col(c).cast("float").alias(c) for c in CRITERIA],
        F.lit(f"{f.model.name}=={f.model.version}").alias("embedding_model"),
        F.lit(qversion).alias("quality_model"),
        F.lit(run_id).alias("features_run_id"), F.current_timestamp().alias("computed_at"))


def run(spark: SparkSession, cfg: Config, run_id: str | None = None) -> EmbedReport:
    run_id = run_id or uuid.uuid4().hex[:12]
    lake = Lakehouse(cfg.lakehouse)
    docs = lake.ensure(spark, DOCUMENTS)
    table = lake.ensure(spark, DOC_FEATURES)
    # The models on the driver's disk (fetched once per version from an object store).
    f = dataclasses.replace(embedder(cfg), quality_dir=classifiers.local_copy(cfg.quality.model_dir,
                                                                             cfg.quality.quantize, cfg.s3))
    qversion = classifiers.models_version(f.quality_dir, cfg.quality.quantize)

    def pending(lo: str | None, hi: str | None, *columns: str) -> DataFrame:
        where = in_range("doc_id", lo, hi)
        return (spark.table(docs).where(where).select("doc_id", *columns)
                .join(spark.table(table).where(where).select("doc_id"), "doc_id", "left_anti"))

    # One narrow pass (doc_id only) counts the pending documents per prefix and sets the chunks.
    counts = (pending(None, None).groupBy(F.substring("doc_id", 1, PREFIX).alias("prefix")).count()
              .collect())
    chunks = chunk_ranges([(r["prefix"], r["count"]) for r in counts], cfg.embed.chunk_docs)
    n_pending = sum(n for _, _, n in chunks)
    started = time.monotonic()
    before = total = spark.table(table).count()
    if chunks:
        # Only when there is work: on a cluster this packs and ships the models.
        folder, quantized = f.quality_dir, f.quality_quantized
        f = dataclasses.replace(f, quality_dir=ship_dir(
            spark, folder, f"quality-{qversion}", check=lambda: classifiers.check_unchanged(
                folder, quantized, qversion, "when they were packed for the executors")))
        cores, done = default_parallelism(spark), 0
        with classifiers.changed_models_named():
            for i, (lo, hi, n) in enumerate(chunks, 1):
                # The chunk's own left-anti join: exactly its documents still missing, even if another
                # run committed some of them meanwhile (the insert-only MERGE skips those too).
                rows = _features(pending(lo, hi, "text"), n, f, qversion, run_id, cfg, cores)
                merge_insert_only(spark, table, rows, DOC_FEATURES.key)
                committed, total = total, spark.table(table).count()
                done += n
                rate = done / max(time.monotonic() - started, 1e-9)
                print(f"embed {run_id}: chunk {i} of {len(chunks)} committed, {total - committed:,} rows "
                      f"({done:,} of {n_pending:,} documents, {rate:,.1f} docs/s), doc_features now {total:,}",
                      flush=True)
    return EmbedReport(run_id, n_pending, total - before, total, f"{f.model.name}=={f.model.version}",
                       qversion, f.dim, time.monotonic() - started, len(chunks))


STAGE = Stage("embed", "sentence-transformers embeddings and the four fastText scores of every document",
              reads=(DOCUMENTS, QUALITY_MODELS), writes=(DOC_FEATURES,), run=run,
              settings=("embed",))
