"""Ingest stage: raw files -> `documents`, `duplicates`, `rejects`, every input record in one of them.

Files are read as bytes through Spark (so S3, DBFS and local paths behave alike) and parsed in
Python tasks by `readers.read_file`. Writes are insert-only MERGEs keyed on content (documents)
or on position (file, line), so a re-run, or a run after a crash, leaves the same rows.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from typing import Iterator

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from climb_spark.config import Config, check_input_exists, is_local_path
from climb_spark.corpus import uses_default_corpus
from climb_spark.lakehouse.delta import merge_insert_only, session_conf
from climb_spark.lakehouse.tables import DOCUMENTS, DUPLICATES, REJECTS, Lakehouse
from climb_spark.stages.contract import Counted, Stage
from climb_spark.stages.ingest.readers import ReadOptions, n_words, read_file

PARSED = T.StructType([
    T.StructField("file", T.StringType()),
    T.StructField("line", T.LongType()),
    T.StructField("offset", T.LongType()),
    T.StructField("doc_id", T.StringType()),
    T.StructField("text", T.StringType()),
    T.StructField("source", T.StringType()),
    T.StructField("metadata", T.StringType()),
    T.StructField("n_chars", T.IntegerType()),
    T.StructField("n_words", T.IntegerType()),
    T.StructField("reason", T.StringType()),
    T.StructField("raw", T.StringType()),
])

_OUT_ROWS = 5000


def parse_files(batches: Iterator[pd.DataFrame], opts: ReadOptions) -> Iterator[pd.DataFrame]:
    """(path, content) rows -> parsed records, in bounded output batches."""
    rows: list[dict] = []
    for batch in batches:
        for path, content in zip(batch["path"], batch["content"]):
            for rec in read_file(path, bytes(content), opts):
                ok = rec.reason is None
                rows.append({
                    "file": rec.file, "line": rec.line, "offset": rec.offset,
                    "doc_id": rec.doc_id, "text": rec.text, "source": rec.source,
                    "metadata": rec.metadata,
                    "n_chars": len(rec.text) if ok else None,
                    "n_words": n_words(rec.text) if ok else None,
                    "reason": rec.reason, "raw": rec.raw,
                })
                if len(rows) >= _OUT_ROWS:
                    yield _frame(rows)
                    rows = []
    if rows:
        yield _frame(rows)


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=PARSED.fieldNames())
    for col in ("line", "offset", "n_chars", "n_words"):
        df[col] = df[col].astype("Int64")
    return df


@dataclass
class IngestReport(Counted):
    run_id: str
    files: int
    input_records: int
    documents: int
    new_documents: int
    duplicates: int
    rejects: int
    reject_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.input_records == self.documents + self.duplicates + self.rejects

    def summary(self) -> str:
        lines = [
            f"ingest {self.run_id}: {self.input_records:,} input records from {self.files:,} files"
            f" = {self.documents:,} documents ({self.new_documents:,} new)"
            f" + {self.duplicates:,} duplicates + {self.rejects:,} rejects"
            f" [{'balanced' if self.balanced else 'UNBALANCED'}]"
        ]
        for reason, n in sorted(self.reject_reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  reject {n:>8,}  {reason}")
        return "\n".join(lines)


def run(spark: SparkSession, cfg: Config, run_id: str | None = None) -> IngestReport:
    run_id = run_id or uuid.uuid4().hex[:12]
    lake = Lakehouse(cfg.lakehouse)
    names = {spec.name: lake.ensure(spark, spec) for spec in (DOCUMENTS, DUPLICATES, REJECTS)}
    i = cfg.ingest
    opts = ReadOptions(i.text_field, i.source_field, i.text_unit, i.reject_sample_chars, i.max_doc_chars, i.long_docs)
    now = F.current_timestamp()

    # One file per Arrow batch bounds a Python worker's memory by the largest file.
    with session_conf(spark, {"spark.sql.execution.arrow.maxRecordsPerBatch": "1"}):
        local = local_files(cfg.ingest.input)
        reader = spark.read.format("binaryFile").option("recursiveFileLookup", "true")
        files = (reader.load(cfg.ingest.input) if local is None else reader.load(local) if local
                 else spark.createDataFrame([], "path string, content binary")).select("path", "content")
        parsed = files.mapInPandas(lambda it: parse_files(it, opts), schema=PARSED).persist()
        try:
            report = _write(spark, parsed, names, run_id, now, files.select("path").count())
        finally:
            parsed.unpersist()
    if not report.balanced:
        raise RuntimeError("ingest accounting does not add up:\n" + report.summary())
    return report


def local_files(path: str) -> list[str] | None:
    """Every file under a local folder once, in a stable order, for Spark to read: a symlinked
    folder is entered once (a link back up the tree would otherwise be followed until the OS
    gives up, every file read again at each level), and a file reached by two names is read
    under the first. Hidden names (., _) are skipped as Spark does. None for remote paths and
    globs, which Spark lists itself."""
    if not is_local_path(path) or any(ch in path for ch in "*?["):
        return None
    root = path.removeprefix("file://")
    if os.path.isfile(root):
        return [os.path.abspath(root)]
    seen_dirs, seen_files, out = set(), set(), []
    for folder, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen_dirs:
            dirs[:] = []
            continue
        seen_dirs.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in sorted(names):
            full = os.path.join(folder, name)
            if name.startswith((".", "_")) or not os.path.isfile(full):
                continue
            if os.path.realpath(full) not in seen_files:
                seen_files.add(os.path.realpath(full))
                out.append(os.path.abspath(full))
    return out


def _write(spark: SparkSession, parsed: DataFrame, names: dict[str, str], run_id: str,
           now, n_files: int) -> IngestReport:
    stamp = [F.lit(run_id).alias("ingest_run_id"), now.alias("ingested_at")]
    good = parsed.where(F.col("reason").isNull())
    rejects = parsed.where(F.col("reason").isNotNull())

    existing = spark.table(names["documents"]).select(
        "doc_id", F.col("file").alias("_e_file"), F.col("line").alias("_e_line"))
    first = Window.partitionBy("doc_id").orderBy("file", "line")
    classified = (
        good.join(existing, "doc_id", "left")
        .withColumn("_rank", F.row_number().over(first))
        .withColumn(
            "_class",
            # A text already in the table is a document only at its own position (a re-run).
            F.when(F.col("_e_file").isNotNull(),
                   F.when((F.col("_e_file") == F.col("file")) & (F.col("_e_line") == F.col("line")),
                          F.lit("present")).otherwise(F.lit("duplicate")))
            .when(F.col("_rank") == 1, F.lit("new"))
            .otherwise(F.lit("duplicate")),
        )
    ).persist()
    try:
        n_input = parsed.count()
        counts = {r["_class"]: r["n"] for r in classified.groupBy("_class").agg(F.count("*").alias("n")).collect()}
        # Reasons name lines and bytes; the summary groups them by kind.
        kind = F.regexp_replace("reason", "(?<![A-Za-z-])[0-9]+", "N").alias("kind")
        reasons = {r["kind"]: r["n"] for r in rejects.groupBy(kind).agg(F.count("*").alias("n")).collect()}

        doc_cols = [c for c in DOCUMENTS.schema.fieldNames() if c not in ("ingest_run_id", "ingested_at")]
        merge_insert_only(spark, names["documents"],
                          classified.where(F.col("_class") == "new").select(*doc_cols, *stamp), DOCUMENTS.key)
        merge_insert_only(spark, names["duplicates"],
                          classified.where(F.col("_class") == "duplicate")
                          .select("file", "line", "offset", "doc_id", *stamp), DUPLICATES.key)
        merge_insert_only(spark, names["rejects"],
                          rejects.select("file", "line", "offset", "reason", "raw", *stamp), REJECTS.key)
    finally:
        classified.unpersist()

    new, present = counts.get("new", 0), counts.get("present", 0)
    return IngestReport(
        run_id=run_id, files=n_files,
        input_records=n_input,
        documents=new + present, new_documents=new,
        duplicates=counts.get("duplicate", 0), rejects=sum(reasons.values()),
        reject_reasons=reasons,
    )


def check(cfg: Config) -> None:
    if not uses_default_corpus(cfg):  # the embedded default is built on first use
        check_input_exists("ingest.input", cfg.ingest.input)


STAGE = Stage("ingest", "raw jsonl / jsonl.gz / parquet / text into documents, with every bad record a reject",
              reads=(), writes=(DOCUMENTS, REJECTS, DUPLICATES), run=run, check=check,
              settings=("ingest",))
