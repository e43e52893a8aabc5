"""Annotate stage: a seeded sample of `documents` -> teacher scores in `annotations`.

The heuristic teacher is a pure function and runs in Spark tasks. The LLM teacher runs on the
driver with a bounded thread pool, because the endpoint rather than Spark sets the pace, and
because the API key then never leaves the driver. Results are committed every
`annotate.commit_every` documents. A re-run asks only for documents with no usable row yet
(missing, or errored before).
"""
from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Iterator, Mapping

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from climb_spark.config import Config
from climb_spark.errors import ConfigError, ServiceError
from climb_spark.lakehouse.delta import merge_upsert
from climb_spark.lakehouse.tables import ANNOTATIONS, DOC_CLUSTERS, DOCUMENTS, Lakehouse
from climb_spark.rubric import CRITERIA
from climb_spark.stages.contract import Counted, Stage
from climb_spark.stages.quality.heuristic_teacher import rubric_scores
from climb_spark.stages.quality.llm_teacher import PROMPT_VERSION, ChatTeacher

HEURISTIC_TEACHER = "heuristic-v1"
HEURISTIC_PROMPT = "rules-v1"


def teacher_key(cfg: Config) -> tuple[str, str]:
    """(teacher, prompt_version): the rows of `annotations` this config reads and writes."""
    if cfg.annotate.teacher == "heuristic":
        return HEURISTIC_TEACHER, HEURISTIC_PROMPT
    return cfg.annotate.model or "", PROMPT_VERSION


def sample(spark: SparkSession, cfg: Config) -> DataFrame:
    """`annotate.sample_docs` documents by a seeded hash order; per cluster when clusters exist."""
    lake = Lakehouse(cfg.lakehouse)
    docs = spark.table(lake.ensure(spark, DOCUMENTS)).select("doc_id", "text")
    order = F.xxhash64("doc_id", F.lit(cfg.annotate.seed))
    n = cfg.annotate.sample_docs
    if lake.exists(spark, DOC_CLUSTERS):
        assigned = docs.join(spark.table(lake.name(DOC_CLUSTERS)).select("doc_id", "cluster_id"), "doc_id")
        k = max(1, assigned.select("cluster_id").distinct().count())
        per_cluster = -(-n // k)
        ranked = assigned.withColumn("_r", F.row_number().over(Window.partitionBy("cluster_id").orderBy(order)))
        docs = ranked.where(F.col("_r") <= per_cluster).select("doc_id", "text")
    return docs.orderBy(order).limit(n)


def heuristic_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for batch in batches:
        scores = [rubric_scores(t) for t in batch["text"]]
        yield pd.DataFrame({"doc_id": batch["doc_id"], **{c: [s[c] for s in scores] for c in CRITERIA}})


@dataclass
class AnnotateReport(Counted):
    run_id: str
    teacher: str
    sampled: int
    pending: int
    ok: int
    errors: int
    seconds: float

    def summary(self) -> str:
        return (f"annotate {self.run_id} ({self.teacher}): {self.sampled:,} sampled, {self.pending:,} needed "
                f"labels, {self.ok:,} labelled, {self.errors:,} errors in {self.seconds:.1f}s")


def run(spark: SparkSession, cfg: Config, environ: Mapping[str, str] = os.environ) -> AnnotateReport:
    run_id = uuid.uuid4().hex[:12]
    teacher, prompt = teacher_key(cfg)
    table = Lakehouse(cfg.lakehouse).ensure(spark, ANNOTATIONS)
    usable = (spark.table(table)
              .where((F.col("teacher") == teacher) & (F.col("prompt_version") == prompt) & F.col("error").isNull())
              .select("doc_id"))
    chosen = sample(spark, cfg).cache()
    try:
        sampled = chosen.count()
        pending = chosen.join(usable, "doc_id", "left_anti")
        n_pending = pending.count()
        started = time.monotonic()
        stamp = dict(teacher=teacher, prompt_version=prompt, run_id=run_id)
        if cfg.annotate.teacher == "heuristic":
            labelled = pending.mapInPandas(
                heuristic_batches, schema="doc_id string, " + ", ".join(f"{c} int" for c in CRITERIA))
            _write(spark, table, labelled.select(
                "doc_id", *CRITERIA, F.lit(None).cast("string").alias("raw_response"),
                F.lit(None).cast("string").alias("error"), F.lit(1).alias("attempts")), **stamp)
            ok, errors = n_pending, 0
        else:
            ok, errors = _annotate_llm(spark, cfg, table, pending, environ, stamp, n_pending)
    finally:
        chosen.unpersist()
    return AnnotateReport(run_id, teacher, sampled, n_pending, ok, errors, time.monotonic() - started)


def _teacher(cfg: Config, environ: Mapping[str, str]) -> ChatTeacher:
    a = cfg.annotate
    if not a.base_url or not a.model:
        raise ConfigError("annotate.base_url and annotate.model are required with annotate.teacher=llm")
    key = environ.get(a.api_key_env) if a.api_key_env else None
    return ChatTeacher(a.base_url, a.model, key, timeout_s=a.timeout_s, max_retries=a.max_retries,
                       backoff_s=a.backoff_s, max_chars=a.max_chars, breaker_after=a.breaker_after,
                       breaker_s=a.breaker_s)


def _annotate_llm(spark: SparkSession, cfg: Config, table: str, pending: DataFrame,
                  environ: Mapping[str, str], stamp: dict, total: int) -> tuple[int, int]:
    teacher = _teacher(cfg, environ)
    ok = errors = 0
    started = last_line = time.monotonic()
    chunk: list[tuple[str, str]] = []

    def progress(done: int) -> None:
        nonlocal last_line
        rate = done / max(time.monotonic() - started, 1e-9)
        print(f"annotate: {ok + errors:,} of {total:,} done ({errors:,} errors, {rate:.2f} docs/s)", flush=True)
        last_line = time.monotonic()

    with ThreadPoolExecutor(max_workers=max(1, cfg.annotate.concurrency)) as pool:
        def flush() -> None:
            nonlocal ok, errors
            futures = {pool.submit(teacher.annotate, text): i for i, (_, text) in enumerate(chunk)}
            results: list = [None] * len(chunk)
            for future in as_completed(futures):
                results[futures[future]] = r = future.result()
                if r.attempts:  # a document never sent (the breaker opened) gets no row
                    ok, errors = ok + (r.error is None), errors + (r.error is not None)
                if time.monotonic() - last_line >= cfg.annotate.progress_s:
                    progress(ok + errors)
            rows = [(doc_id, *[(r.scores or {}).get(c) for c in CRITERIA], r.raw_response, r.error, r.attempts)
                    for (doc_id, _), r in zip(chunk, results) if r.attempts > 0]
            if rows:
                frame = spark.createDataFrame(rows, "doc_id string, " + ", ".join(f"{c} int" for c in CRITERIA)
                                              + ", raw_response string, error string, attempts int")
                _write(spark, table, frame, **stamp)
            progress(ok + errors)
            chunk.clear()
            if teacher.broken:
                raise ServiceError(f"annotate: stopped after {ok:,} labels and {errors:,} errors: {teacher.broken}. "
                                   "What was done is committed; a re-run goes on from there.")

        for row in pending.toLocalIterator():
            chunk.append((row["doc_id"], row["text"]))
            if len(chunk) >= cfg.annotate.commit_every:
                flush()
        if chunk:
            flush()
    return ok, errors


def _write(spark: SparkSession, table: str, rows: DataFrame, *, teacher: str, prompt_version: str,
           run_id: str) -> None:
    full = rows.select(
        "doc_id", F.lit(teacher).alias("teacher"), F.lit(prompt_version).alias("prompt_version"),
        *CRITERIA, "raw_response", "error", F.col("attempts").cast("int").alias("attempts"),
        F.lit(run_id).alias("annotate_run_id"), F.current_timestamp().alias("annotated_at"))
    # A usable row is final; an error row is replaced by the retry's result.
    merge_upsert(spark, table, full, ANNOTATIONS.key, replace_when="t.error IS NOT NULL")


def check(cfg: Config) -> None:
    if cfg.annotate.teacher == "llm" and not (cfg.annotate.base_url and cfg.annotate.model):
        raise ConfigError("annotate.base_url and annotate.model are required with annotate.teacher=llm")


STAGE = Stage("annotate", "a teacher scores a sample of documents on the 0-5 rubric",
              reads=(DOCUMENTS,), writes=(ANNOTATIONS,), run=run, check=check,
              settings=("annotate",))
