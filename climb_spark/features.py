"""Embed-and-label stage: `documents` -> `doc_features` (embedding + four fastText scores).

One pass over the text: each Python worker loads the sentence-transformers model and the four
fastText models once (a per-process cache that survives across tasks with worker reuse) and
scores every Arrow batch it is given. Only documents not yet in `doc_features` are read, so a
re-run is a no-op and new documents are all that a later run computes.
"""
from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from typing import Iterator

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from . import embedding, quality
from .config import Config
from .sparkutil import default_parallelism, merge_insert_only, ship_dir, shipped_path, task_gpu
from .tables import DOC_FEATURES, DOCUMENTS, Lakehouse

_COMPUTED = [f for f in DOC_FEATURES.schema.fields if f.name in ("doc_id", "embedding", *quality.CRITERIA)]
COMPUTED = T.StructType([T.StructField(f.name, f.dataType, True) for f in _COMPUTED])


@dataclass(frozen=True)
class Featurizer:
    """What a worker needs to rebuild the models: plain values, cheap to pickle into each task."""

    model: embedding.ModelRef
    dim: int
    max_seq_length: int
    batch_size: int
    normalize: bool
    trust_remote_code: bool
    device: str
    fp16: bool
    quality_dir: str


# Per Python worker: with spark.python.worker.reuse the same process serves many tasks.
_ENCODERS: dict[Featurizer, object] = {}
_CLASSIFIERS: dict[str, dict] = {}


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


def _encoder(f: Featurizer):
    if f not in _ENCODERS:
        _ENCODERS[f] = embedding.load_encoder(f.model, _device(f.device), f.max_seq_length,
                                              f.trust_remote_code, f.fp16)
    return _ENCODERS[f]


def _classifiers(model_dir: str, version: str) -> dict:
    key = f"{model_dir}@{version}"
    if key not in _CLASSIFIERS:
        _CLASSIFIERS[key] = quality.load_models(shipped_path(model_dir))
    return _CLASSIFIERS[key]


def score(batches: Iterator[pd.DataFrame], model_dir: str, version: str) -> Iterator[pd.DataFrame]:
    """(doc_id, text) batches -> (doc_id, four scores): re-scoring without re-embedding."""
    classifiers = _classifiers(model_dir, version)
    for batch in batches:
        yield pd.DataFrame({"doc_id": batch["doc_id"], **quality.score_all(classifiers, batch["text"].tolist())})


def featurize(batches: Iterator[pd.DataFrame], f: Featurizer, version: str) -> Iterator[pd.DataFrame]:
    """(doc_id, text) batches -> (doc_id, embedding, four scores) batches."""
    encoder, classifiers = _encoder(f), _classifiers(f.quality_dir, version)
    for batch in batches:
        texts = batch["text"].tolist()
        ids = batch["doc_id"].tolist()
        vectors = embedding.encode(encoder, texts, f.batch_size, f.normalize)
        embedding.check_vectors(vectors, ids, f.dim)
        scores = quality.score_all(classifiers, texts)
        yield pd.DataFrame({"doc_id": ids, "embedding": list(vectors), **scores})


@dataclass
class FeaturesReport:
    run_id: str
    pending: int
    written: int
    total: int
    model: str
    quality_model: str
    dim: int
    seconds: float

    def summary(self) -> str:
        rate = self.pending / self.seconds if self.seconds else 0.0
        return (f"embed {self.run_id}: {self.pending:,} documents embedded and scored "
                f"({rate:,.1f} docs/s), {self.written:,} rows written, doc_features now {self.total:,}; "
                f"{self.model} dim {self.dim}, quality models {self.quality_model}")


def by_length(docs: DataFrame, n_docs: int, cores: int, docs_per_task: int = 256) -> DataFrame:
    """Tasks of similar-length texts (little padding in a model batch), longest first, so the
    tasks left running at the end are the short ones; small tasks, since models stay loaded."""
    parts = max(2 * cores, -(-n_docs // docs_per_task))
    return docs.repartitionByRange(parts, F.length("text").desc())


def featurizer(cfg: Config) -> Featurizer:
    ref = embedding.resolve_model(cfg.embed.model)
    # The dimension is read once on the driver so every worker's vectors can be checked against it.
    probe = embedding.load_encoder(ref, "cpu", cfg.embed.max_seq_length, cfg.embed.trust_remote_code)
    return Featurizer(ref, embedding.dimension(probe), cfg.embed.max_seq_length,
                      cfg.embed.batch_size, cfg.embed.normalize, cfg.embed.trust_remote_code,
                      cfg.embed.device, cfg.embed.fp16, cfg.quality.model_dir)


def run(spark: SparkSession, cfg: Config, run_id: str | None = None) -> FeaturesReport:
    run_id = run_id or uuid.uuid4().hex[:12]
    lake = Lakehouse(cfg.lakehouse)
    docs = lake.ensure(spark, DOCUMENTS)
    table = lake.ensure(spark, DOC_FEATURES)
    f = featurizer(cfg)
    qversion = quality.models_version(cfg.quality.model_dir)

    pending = (spark.table(docs).select("doc_id", "text")
               .join(spark.table(table).select("doc_id"), "doc_id", "left_anti"))
    n_pending = pending.count()
    started = time.monotonic()
    if n_pending:
        # Only when there is work: on a cluster this packs and ships the models.
        f = dataclasses.replace(f, quality_dir=ship_dir(spark, f.quality_dir, f"quality-{qversion}"))
        planned = (pending.repartition(cfg.embed.partitions) if cfg.embed.partitions
                   else by_length(pending, n_pending, default_parallelism(spark)))
        computed = planned.mapInPandas(lambda it: featurize(it, f, qversion), schema=COMPUTED)
        rows = computed.select(
            "doc_id", "embedding", *[F.col(c).cast("float").alias(c) for c in quality.CRITERIA],
            F.lit(f"{f.model.name}=={f.model.version}").alias("embedding_model"),
            F.lit(qversion).alias("quality_model"),
            F.lit(run_id).alias("features_run_id"), F.current_timestamp().alias("computed_at"))
        before = spark.table(table).count()
        merge_insert_only(spark, table, rows, DOC_FEATURES.key)
        total = spark.table(table).count()
    else:
        before = total = spark.table(table).count()
    return FeaturesReport(run_id, n_pending, total - before, total, f"{f.model.name}=={f.model.version}",
                          qversion, f.dim, time.monotonic() - started)
