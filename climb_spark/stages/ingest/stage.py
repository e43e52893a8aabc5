"""Ingest stage: raw files -> `documents`, `duplicates`, `rejects`, every input record in one of them.

Files are listed (by Spark for remote paths), planned into splits (byte ranges of large
uncompressed files, parquet row groups) and streamed in Python tasks by `readers.read_split`,
so no file is held whole and one large file is read by many tasks. Lines of a byte range are
numbered within it and then shifted by the lines of the ranges before it, so positions are
those of the whole file. Writes are insert-only MERGEs keyed on content (documents) or on
position (file, line), so a re-run, or a run after a crash, leaves the same rows.
"""
from __future__ import annotations

import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from climb_spark.config import Config, S3Config, check_input_exists, is_local_path
from climb_spark.corpus import uses_default_corpus
from climb_spark.errors import AccountingError
from climb_spark.lakehouse import files as lake_files
from climb_spark.lakehouse import object_store
from climb_spark.lakehouse.delta import merge_insert_only, session_conf
from climb_spark.lakehouse.tables import DOCUMENTS, DUPLICATES, REJECTS, Lakehouse
from climb_spark.stages.contract import Counted, Stage
from climb_spark.stages.ingest.readers import ReadOptions, Split, SplitLines, identity, plan, read_split

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
    # Byte ranges after a file's first: where the range starts, and on the split's count row how
    # many lines it held; line numbers are shifted by the ranges before.
    T.StructField("range_start", T.LongType()),
    T.StructField("range_lines", T.LongType()),
    # One extra row per split (no record): the records its reader counted, which the accounting
    # must find in documents, duplicates and rejects.
    T.StructField("split_records", T.LongType()),
])
SPLITS = T.StructType([
    T.StructField("path", T.StringType()),
    T.StructField("start", T.LongType()),
    T.StructField("end", T.LongType()),
    T.StructField("first_row", T.LongType()),
    T.StructField("ranged", T.BooleanType()),
])

_ARROW = to_arrow_schema(PARSED)

# An output batch holds at most this many records or characters, whichever comes first.
_OUT_ROWS = 5000
_OUT_CHARS = 32 << 20


def plan_files(batches: Iterator[pd.DataFrame], opts: ReadOptions, split_bytes: int,
               s3: S3Config) -> Iterator[pd.DataFrame]:
    """(path, length) rows -> the splits of each file (parquet footers are read here, in tasks)."""
    for batch in batches:
        rows = [row for path, length in zip(batch["path"], batch["length"])
                for row in _split_rows(path, int(length), opts, split_bytes, s3)]
        yield pd.DataFrame(rows, columns=SPLITS.fieldNames())


def _split_rows(path: str, length: int, opts: ReadOptions, split_bytes: int, s3: S3Config) -> list[tuple]:
    splits = plan(path, length, opts, split_bytes, lambda uri: lake_files.open_input(uri, s3))
    return [(sp.path, sp.start, sp.end, sp.first_row, len(splits) > 1 and sp.end >= 0) for sp in splits]


def parse_splits(batches: Iterator[pa.RecordBatch], opts: ReadOptions, s3: S3Config) -> Iterator[pa.RecordBatch]:
    """Split rows -> parsed records, in bounded Arrow batches built column by column (no per-record
    dicts or pandas frames: at ~1 KB a document those cost as much as the parse)."""
    names = PARSED.fieldNames()
    cols: dict[str, list] = {name: [] for name in names}
    file_, line, offset, doc, text, source, meta, n_chars, words, reason, raw, range_start, range_lines, \
        split_records = (cols[name].append for name in names)
    rows = chars = 0
    opener = lambda uri: lake_files.open_input(uri, s3)  # noqa: E731
    for batch in batches:
        for path, start, end, first_row, ranged in zip(*batch.select(SPLITS.fieldNames()).to_pydict().values()):
            split, counted = Split(path, start, end, first_row), SplitLines()
            at = start if ranged else None
            for rec in read_split(split, opts, opener, counted):
                file_(rec.file), line(rec.line), offset(rec.offset), source(rec.source), meta(rec.metadata)
                reason(rec.reason), raw(rec.raw), range_start(at), range_lines(None), split_records(None)
                if rec.reason is None:
                    ident, n = identity(rec.text)
                    doc(ident), text(rec.text), n_chars(len(rec.text)), words(n)
                    chars += len(rec.text)
                else:
                    doc(None), text(None), n_chars(None), words(None)
                    chars += len(rec.raw or "")
                rows += 1
                if rows >= _OUT_ROWS or chars >= _OUT_CHARS:
                    yield _batch(cols)
                    rows = chars = 0
            count = {"file": path, "range_start": at, "range_lines": counted.lines if ranged else None,
                     "split_records": counted.records}
            for name in names:
                cols[name].append(count.get(name))
    if cols["file"]:
        yield _batch(cols)


def _batch(cols: dict[str, list]) -> pa.RecordBatch:
    out = pa.RecordBatch.from_arrays([pa.array(values, _ARROW.field(name).type) for name, values in cols.items()],
                                     schema=_ARROW)
    for values in cols.values():
        values.clear()
    return out


def whole_file_lines(parsed: DataFrame) -> DataFrame:
    """Records with line numbers of the whole file: a byte range's numbers shifted by the lines
    of the ranges before it in the same file."""
    counts = parsed.where(F.col("range_lines").isNotNull())
    before = Window.partitionBy("file").orderBy("range_start").rowsBetween(Window.unboundedPreceding, -1)
    shifts = counts.select("file", "range_start",
                           F.coalesce(F.sum("range_lines").over(before), F.lit(0)).alias("_shift"))
    records = parsed.where(F.col("split_records").isNull())
    return (records.join(F.broadcast(shifts), ["file", "range_start"], "left")
            .withColumn("line", F.col("line") + F.coalesce(F.col("_shift"), F.lit(0)))
            .select(*[c for c in PARSED.fieldNames() if not c.startswith(("range_", "split_"))]))


def reader_counts(parsed: DataFrame) -> DataFrame:
    """file, records: what the readers counted in each file (parquet: the rows its footer declares)."""
    return (parsed.where(F.col("split_records").isNotNull()).groupBy("file")
            .agg(F.sum("split_records").alias("records")))


@dataclass
class IngestReport(Counted):
    run_id: str
    files: int
    splits: int
    input_records: int
    expected_records: int  # what the readers counted, file by file
    documents: int
    new_documents: int
    duplicates: int
    rejects: int
    reject_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.expected_records == self.input_records == self.documents + self.duplicates + self.rejects

    def summary(self) -> str:
        lines = [
            f"ingest {self.run_id}: {self.input_records:,} input records from {self.files:,} files"
            f" ({self.splits:,} split{'' if self.splits == 1 else 's'})"
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
    i, opts = cfg.ingest, read_options(cfg)
    now = F.current_timestamp()

    # One split per Arrow batch: a worker holds one split's output batch at a time.
    with session_conf(spark, {"spark.sql.execution.arrow.maxRecordsPerBatch": "1"}):
        splits, n_files, n_splits = plan_splits(spark, i.input, opts, i.split_bytes, cfg.s3)
        # Cached before the line shift: the shift reads the ranges' line counts and their records
        # from the same parse.
        raw = splits.mapInArrow(lambda it: parse_splits(it, opts, cfg.s3), schema=PARSED).persist()
        try:
            report = _write(spark, whole_file_lines(raw), reader_counts(raw), names, run_id, now, n_files,
                            n_splits)
        finally:
            raw.unpersist()
    if not report.balanced:  # _write checked it per file before writing; this is the same sum
        raise AccountingError(f"ingest {run_id}: the accounting does not add up: " + report.summary().splitlines()[0])
    return report


def read_options(cfg: Config) -> ReadOptions:
    i = cfg.ingest
    return ReadOptions(i.text_field, i.source_field, i.text_unit, i.reject_sample_chars, i.max_doc_chars, i.long_docs)


def plan_splits(spark: SparkSession, path: str, opts: ReadOptions, split_bytes: int,
                s3: S3Config) -> tuple[DataFrame, int, int]:
    """The splits of every non-empty input file (named as Spark names them, `file:/...`) packed
    into tasks of about `split_bytes` (a large file is many tasks, many small files share one),
    the number of files and the number of splits."""
    local = local_files(path)
    if local is None:  # remote or a glob: Spark lists it and tasks read the parquet footers
        listed = (spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(path)
                  .select("path", "length").where(F.col("length") > 0))
        size = {r["path"]: r["length"] for r in listed.collect()}
        planned = [tuple(r) for r in listed.mapInPandas(lambda it: plan_files(it, opts, split_bytes, s3),
                                                         schema=SPLITS).collect()]
    else:  # planned here: a Spark job (and a Python worker's start) would cost more than the plan
        size = {u: n for u, n in ((lake_files.local_uri(f), os.path.getsize(f)) for f in local) if n > 0}
        planned = [row for uri, length in size.items() for row in _split_rows(uri, length, opts, split_bytes, s3)]
    planned.sort(key=lambda r: (r[0], r[1]))
    per_file = Counter(r[0] for r in planned)
    tasks, load = [], []
    for r in planned:
        file, start, end = r[:3]
        bytes_ = end - start if end >= 0 else size[file] // per_file[file]
        if not load or load[-1] + bytes_ > split_bytes:
            load.append(0)
        load[-1] += bytes_
        tasks.append((*r, len(load) - 1))
    frame = spark.createDataFrame(tasks, T.StructType([*SPLITS.fields, T.StructField("task", T.IntegerType())]))
    return frame.repartitionByRange(max(1, len(load)), "task").drop("task"), len(size), len(planned)


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


# Positions of at most this many records are broadcast to pick the wide rows to write; past it,
# the pick is a shuffle join.
_BROADCAST_KEYS = 2_000_000


def _write(spark: SparkSession, parsed: DataFrame, counted: DataFrame, names: dict[str, str], run_id: str,
           now, n_files: int, n_splits: int) -> IngestReport:
    stamp = [F.lit(run_id).alias("ingest_run_id"), now.alias("ingested_at")]
    good = parsed.where(F.col("reason").isNull())
    rejects = parsed.where(F.col("reason").isNotNull())

    # Records are classified on their positions and ids alone, so the text is never shuffled to
    # find duplicates: only the positions of the smaller class pick the rows to write.
    existing = spark.table(names["documents"]).select(
        "doc_id", F.col("file").alias("_e_file"), F.col("line").alias("_e_line"))
    first = Window.partitionBy("doc_id").orderBy("file", "line")
    classified = (
        good.select("doc_id", "file", "line", "offset").join(existing, "doc_id", "left")
        .withColumn("_rank", F.row_number().over(first))
        .withColumn(
            "_class",
            # A text already in the table is a document only at its own position (a re-run).
            F.when(F.col("_e_file").isNotNull(),
                   F.when((F.col("_e_file") == F.col("file")) & (F.col("_e_line") == F.col("line")),
                          F.lit("present")).otherwise(F.lit("duplicate")))
            .when(F.col("_rank") == 1, F.lit("new"))
            .otherwise(F.lit("duplicate")),
        ).select("doc_id", "file", "line", "offset", "_class")
    ).persist()
    try:
        n_input = parsed.count()
        counts = {r["_class"]: r["n"] for r in classified.groupBy("_class").agg(F.count("*").alias("n")).collect()}
        # Reasons name lines and bytes; the summary groups them by kind.
        kind = F.regexp_replace("reason", "(?<![A-Za-z-])[0-9]+", "N").alias("kind")
        reasons = {r["kind"]: r["n"] for r in rejects.groupBy(kind).agg(F.count("*").alias("n")).collect()}
        expected = check_balance(classified, rejects, counted, run_id)

        new, n_good = counts.get("new", 0), sum(counts.values())
        if new:
            doc_cols = [c for c in DOCUMENTS.schema.fieldNames() if c not in ("ingest_run_id", "ingested_at")]
            merge_insert_only(spark, names["documents"], _pick(good, classified, new, n_good)
                              .select(*doc_cols, *stamp), DOCUMENTS.key)
        if counts.get("duplicate", 0):
            merge_insert_only(spark, names["duplicates"],
                              classified.where(F.col("_class") == "duplicate")
                              .select("file", "line", "offset", "doc_id", *stamp), DUPLICATES.key)
        if reasons:
            merge_insert_only(spark, names["rejects"],
                              rejects.select("file", "line", "offset", "reason", "raw", *stamp), REJECTS.key)
    finally:
        classified.unpersist()

    present = counts.get("present", 0)
    return IngestReport(
        run_id=run_id, files=n_files, splits=n_splits,
        input_records=n_input, expected_records=expected,
        documents=new + present, new_documents=new,
        duplicates=counts.get("duplicate", 0), rejects=sum(reasons.values()),
        reject_reasons=reasons,
    )


def check_balance(classified: DataFrame, rejects: DataFrame, counted: DataFrame, run_id: str) -> int:
    """Every record a reader counted in a file is, by count, in exactly one of the classes bound
    for documents, duplicates and rejects; checked file by file before anything is written, so a
    reader that loses rows (a failed parquet read used to reject one row and drop the rest) stops
    the stage instead of printing a balanced total. The records counted."""
    found = (classified.select("file").unionByName(rejects.select("file")).groupBy("file")
             .agg(F.count("*").alias("found")))
    sums = (counted.join(found, "file", "full_outer")
            .select("file", F.coalesce("records", F.lit(0)).alias("records"),
                    F.coalesce("found", F.lit(0)).alias("found")))
    off = sums.where(F.col("records") != F.col("found"))
    worst = off.orderBy("file").limit(3).collect()
    if worst:
        n = off.count()
        detail = "; ".join(f"{r['file']}: the reader counted {r['records']:,} records, {r['found']:,} are bound for "
                           "documents, duplicates or rejects" for r in worst)
        raise AccountingError(f"ingest {run_id}: {n:,} file{'s' * (n != 1)} do not balance, nothing was written "
                              f"({detail}{'; ...' if n > len(worst) else ''}): a bug in the reader of this format, "
                              "please report it with the file")
    return int(counted.agg(F.sum("records")).first()[0] or 0)


def _pick(good: DataFrame, classified: DataFrame, new: int, n_good: int) -> DataFrame:
    """The wide rows of the new documents, selected by the positions of whichever class is
    smaller: the new ones (a re-run adding a few files) or the others (a first ingest)."""
    is_new = F.col("_class") == "new"
    keys, how, n_keys = ((classified.where(is_new), "left_semi", new) if new <= n_good - new
                         else (classified.where(~is_new), "left_anti", n_good - new))
    keys = keys.select("file", "line")
    return good.join(F.broadcast(keys) if n_keys <= _BROADCAST_KEYS else keys, ["file", "line"], how)


def check(cfg: Config) -> None:
    if uses_default_corpus(cfg):  # the embedded default is built on first use
        return
    if object_store.is_s3(cfg.ingest.input) and not any(ch in cfg.ingest.input for ch in "*?["):
        object_store.check_exists("ingest.input", cfg.ingest.input, cfg.s3)
    else:
        check_input_exists("ingest.input", cfg.ingest.input)


STAGE = Stage("ingest", "raw jsonl / text (plain, gz, zst, bz2, xz) and parquet into documents, every bad record a reject",
              reads=(), writes=(DOCUMENTS, REJECTS, DUPLICATES), run=run, check=check,
              settings=("ingest",))
