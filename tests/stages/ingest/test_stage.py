"""The ingest stage through a real SparkSession and real Delta tables."""
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from climb_spark.corpus import build
from climb_spark.lakehouse.tables import DOCUMENTS, DUPLICATES, REJECTS, Lakehouse
from climb_spark.stages.ingest import stage as ingest


def write_inputs(folder):
    folder.mkdir(parents=True, exist_ok=True)
    docs = [{"text": f"Document {i} about {topic}.", "source": "unit", "topic": topic}
            for i, topic in enumerate(["rivers", "stars", "bread", "rivers"])]
    lines = [json.dumps(d) for d in docs]
    lines += ["{broken", json.dumps({"text": ""}), json.dumps({"text": "Document 0   about rivers."})]
    (folder / "a.jsonl").write_text("\n".join(lines) + "\n")  # 7 records, 1 duplicate, 2 rejects
    body = "".join(json.dumps({"text": f"Zipped note {i}."}) + "\n" for i in range(50)).encode()
    (folder / "b.jsonl.gz").write_bytes(gzip.compress(body)[:-30])  # truncated stream
    (folder / "c.txt").write_bytes(b"A plain text file.\nTwo lines long.\n")
    (folder / "d.txt").write_bytes(b"\xff\xfe not utf-8 \x00\x01")
    pq.write_table(pa.table({"text": ["From parquet.", None, "Document 1 about stars."],
                             "year": [2020, 2021, 2022]}), folder / "e.parquet")
    (folder / "f.csv").write_text("text\nnot supported\n")
    (folder / "empty.jsonl").write_text("")
    (folder / "_ignored.jsonl").write_text(json.dumps({"text": "Spark skips files starting with _"}) + "\n")


def tables(spark, cfg):
    lake = Lakehouse(cfg.lakehouse)
    return {spec.name: spark.table(lake.name(spec)) for spec in (DOCUMENTS, DUPLICATES, REJECTS)}


def test_every_record_is_accounted_for_with_reasons(spark, cfg):
    write_inputs(Path(cfg.ingest.input))
    report = ingest.run(spark, cfg)
    t = tables(spark, cfg)
    n_docs, n_dups, n_rej = t["documents"].count(), t["duplicates"].count(), t["rejects"].count()
    assert report.balanced
    assert (report.documents, report.duplicates, report.rejects) == (n_docs, n_dups, n_rej)
    assert report.input_records == n_docs + n_dups + n_rej
    # Spark lists neither _ignored.jsonl (hidden by its convention) nor the empty file (no records).
    assert report.files == 6

    texts = {r["text"] for r in t["documents"].collect()}
    assert "A plain text file.\nTwo lines long." in texts and "From parquet." in texts
    assert sum(t.startswith("Zipped note") for t in texts) >= 1
    assert "Spark skips files starting with _" not in texts
    # "Document 0   about rivers." normalizes to the first line's text; parquet repeats line 2's.
    dups = {(r["file"].rsplit("/", 1)[1], r["line"]) for r in t["duplicates"].collect()}
    assert dups == {("a.jsonl", 7), ("e.parquet", 3)}

    reasons = {(r["file"].rsplit("/", 1)[1], r["reason"].split(":")[0]) for r in t["rejects"].collect()}
    assert reasons == {
        ("a.jsonl", "malformed JSON"), ("a.jsonl", "empty or whitespace-only text"),
        ("b.jsonl.gz", "truncated or corrupt gzip after line N".replace("N", reasons_line(t))),
        ("d.txt", "invalid UTF-8 at byte 0"), ("e.parquet", "no text field 'text'"),
        ("f.csv", "unsupported file type"),
    }
    meta = t["documents"].where("text = 'From parquet.'").first()
    assert json.loads(meta["metadata"]) == {"year": 2020} and meta["source"] == "e"
    first = t["documents"].where("text LIKE 'Document 0 about%'").first()
    assert first["source"] == "unit" and first["n_words"] == 4 and first["n_chars"] == 24


def reasons_line(t):
    (row,) = t["rejects"].where("file LIKE '%b.jsonl.gz'").collect()
    return row["reason"].split("after line ")[1].split(":")[0]


def test_rerun_is_idempotent_and_new_files_add_only_new_documents(spark, cfg):


    folder = Path(cfg.ingest.input)
    write_inputs(folder)
    first = ingest.run(spark, cfg)
    before = {k: v.toPandas() for k, v in tables(spark, cfg).items()}

    again = ingest.run(spark, cfg)
    assert (again.documents, again.new_documents, again.duplicates, again.rejects) == (
        first.documents, 0, first.duplicates, first.rejects)
    for name, df in tables(spark, cfg).items():
        assertDataFrameEqual(df, spark.createDataFrame(before[name], schema=df.schema))

    (folder / "g.jsonl").write_text(
        json.dumps({"text": "A brand new document."}) + "\n" + json.dumps({"text": "From parquet."}) + "\n")
    third = ingest.run(spark, cfg)
    assert third.new_documents == 1
    assert third.duplicates == first.duplicates + 1
    t = tables(spark, cfg)
    assert t["documents"].count() == first.documents + 1
    # The older rows keep the run that first wrote them.
    assert t["documents"].where(f"ingest_run_id = '{third.run_id}'").count() == 1


def test_sample_corpus_ingests_with_domains(spark, cfg, tmp_path):


    from climb_spark.config import CorpusConfig

    build(CorpusConfig(output=cfg.ingest.input, max_docs=120, seed=3))
    report = ingest.run(spark, cfg)
    assert report.rejects == 0 and report.balanced
    docs = tables(spark, cfg)["documents"]
    domains = {r[0] for r in docs.selectExpr("get_json_object(metadata, '$.domain')").distinct().collect()}
    assert {"software-docstrings", "python-reference", "film-reviews", "dialog"} <= domains
    assert docs.count() == report.documents


def test_fuzzed_corpus_is_fully_accounted(spark, cfg):
    """Hostile input: every record still lands in exactly one table, with a reason if rejected."""
    import random

    folder = Path(cfg.ingest.input)
    folder.mkdir(parents=True)
    rnd = random.Random(7)
    big = "word " * 10_000_000  # one 50 MB line
    (folder / "big.jsonl").write_text(json.dumps({"text": big}) + "\n" + json.dumps({"text": "small"}) + "\n")
    (folder / "nul.jsonl").write_bytes(b'{"text": "x"}\x00\n' + json.dumps({"text": "a\u0000b"}).encode() + b"\n")
    (folder / "types.jsonl").write_text("\n".join(json.dumps(v) for v in [
        {"text": 5}, {"text": None}, {"text": ["a"]}, [1, 2], "a string", 42, {"text": {"nested": 1}},
        {"text": "fine", "source": 7}]) + "\n")
    (folder / "intl.jsonl").write_text("\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in [
        "数据混合的聚类方法", "تنقية البيانات على نطاق واسع", "Größenordnung und Qualität 🚀"]) + "\n")
    (folder / "pyjson.jsonl").write_text('{"text": "half \\ud83d"}\n{"text": "ok", "k": "\\udfff"}\n'
                                         + "[" * 100_000 + "]" * 100_000 + '\n{"n": 1' + "0" * 5000 + "}\n")
    (folder / "noise.jsonl").write_bytes(bytes(rnd.getrandbits(8) for _ in range(4000)))
    (folder / "blob.bin").write_bytes(bytes(rnd.getrandbits(8) for _ in range(1000)))
    (folder / "empty.jsonl.gz").write_bytes(gzip.compress(b""))
    (folder / "cut.jsonl.gz").write_bytes(gzip.compress(b'{"text": "one"}\n' * 1000)[:40])
    (folder / "blank.txt").write_text("   \n\n\t\n")

    report = ingest.run(spark, cfg)
    t = tables(spark, cfg)
    counts = {k: v.count() for k, v in t.items()}
    assert report.balanced
    assert report.input_records == counts["documents"] + counts["duplicates"] + counts["rejects"]
    docs = {r["text"][:20]: r for r in t["documents"].select("text", "source", "n_chars", "file").collect()}
    # The 50 MB line is rejected for its size (ingest.max_doc_chars) without being held whole.
    assert "word word word word " not in docs
    assert {t[:20] for t in ("small", "fine", "数据混合的聚类方法", "تنقية البيانات على نطاق واسع")} <= set(docs)
    reasons = {}
    for r in t["rejects"].collect():
        reasons.setdefault(r["file"].rsplit("/", 1)[1], set()).add(r["reason"].split(":")[0])
    assert reasons["nul.jsonl"] == {"malformed JSON", "NUL byte in text (binary content)"}
    assert {"text field 'text' is a number, not a string", "no text field 'text'",
            "JSON value is an array, not an object"} <= reasons["types.jsonl"]
    assert reasons["blob.bin"] == {"unsupported file type"}
    assert reasons["pyjson.jsonl"] == {"lone UTF-16 surrogate escape in JSON (not Unicode text)",
                                       "JSON nested deeper than the parser's recursion limit", "unreadable JSON"}
    assert reasons["blank.txt"] == {"empty or whitespace-only text"}
    assert reasons["big.jsonl"] == {"record of 50,000,013 bytes is longer than ingest.max_doc_chars=1,000,000 allows"}
    assert any(r.startswith("truncated or corrupt gzip") for r in reasons["cut.jsonl.gz"])
    assert reasons["noise.jsonl"] and not any(r["file"].endswith("noise.jsonl") for r in docs.values())
    # Every input line of every file is somewhere: count per file across the three tables.
    per_file = {}
    for name in ("documents", "duplicates", "rejects"):
        for r in t[name].groupBy("file").count().collect():
            key = r["file"].rsplit("/", 1)[1]
            per_file[key] = per_file.get(key, 0) + r["count"]
    assert per_file["types.jsonl"] == 8 and per_file["intl.jsonl"] == 3 and per_file["big.jsonl"] == 2
    assert per_file["pyjson.jsonl"] == 4


def test_a_symlink_loop_and_a_second_name_are_read_once(spark, cfg):
    folder = Path(cfg.ingest.input)
    write_inputs(folder / "real")
    (folder / "real" / "loop").symlink_to(folder)  # a link back up the tree
    (folder / "alias.jsonl").symlink_to(folder / "real" / "a.jsonl")  # the same file by another name
    report = ingest.run(spark, cfg)
    assert report.balanced and report.files == 6
    t = tables(spark, cfg)
    files = {r["file"] for name in t for r in t[name].select("file").distinct().collect()}
    assert not any("/loop/" in f for f in files)
    # a.jsonl is read under one of its two names (the first in listing order), not both.
    assert [f.rsplit("/", 1)[1] for f in files if f.endswith(("alias.jsonl", "/a.jsonl"))] == ["alias.jsonl"]
    assert t["duplicates"].count() == 2  # the two in write_inputs, none from phantom copies


def test_large_files_are_read_in_ranges_and_compressed_ones_streamed(spark, cfg):
    """A file larger than ingest.split_bytes is read by many tasks; every record keeps its whole-file
    line, so a run with other split sizes finds exactly the same rows."""
    import bz2

    import zstandard

    folder = Path(cfg.ingest.input)
    folder.mkdir(parents=True)
    lines = [json.dumps({"text": f"Ranged record {i} " + "pad " * (i % 9)}) for i in range(400)]
    lines[57], lines[58], lines[300] = "", "{broken", lines[10]  # a blank line, a reject, a duplicate
    (folder / "big.jsonl").write_text("\n".join(lines) + "\n")
    body = "".join(json.dumps({"text": f"Packed note {i}."}) + "\n" for i in range(120)).encode()
    (folder / "z.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(body))
    (folder / "b.jsonl.bz2").write_bytes(bz2.compress(body.replace(b"Packed", b"Bzipped")))
    pq.write_table(pa.table({"text": [f"Grouped row {i}." for i in range(50)]}), folder / "g.parquet",
                   row_group_size=20)

    small = cfg.replace({"ingest.split_bytes": 1500})
    report = ingest.run(spark, small)
    size = (folder / "big.jsonl").stat().st_size
    assert report.balanced and report.files == 4
    assert report.splits == -(-size // 1500) + 1 + 1 + 3
    assert report.input_records == 399 + 120 + 120 + 50 and report.rejects == 1 and report.duplicates == 1
    t = tables(spark, small)
    where = {r["text"]: r["line"] for r in t["documents"].where(F.col("file").endswith("big.jsonl")).collect()}
    assert len(where) == 397 and all(where[json.loads(lines[i])["text"]] == i + 1 for i in range(400)
                                     if i not in (57, 58, 300))
    assert [(r["line"], r["reason"].split(":")[0]) for r in t["rejects"].collect()] == [(59, "malformed JSON")]
    assert [r["line"] for r in t["duplicates"].collect()] == [301]
    rows = {r["text"]: r["line"] for r in t["documents"].where(F.col("file").endswith("g.parquet")).collect()}
    assert rows == {f"Grouped row {i}.": i + 1 for i in range(50)}

    before = {k: (v.collect(), v.schema) for k, v in tables(spark, small).items()}
    # Other splits, same positions; a glob is listed and planned by Spark's tasks, not the driver.
    again = ingest.run(spark, cfg.replace({"ingest.split_bytes": 1 << 30, "ingest.input": f"{folder}/*"}))
    assert again.balanced and again.new_documents == 0 and again.splits == 6
    for name, table in tables(spark, cfg).items():
        assertDataFrameEqual(table.drop("ingest_run_id", "ingested_at"),
                             spark.createDataFrame(*before[name]).drop("ingest_run_id", "ingested_at"))


def test_parquet_rows_of_any_text_type_or_a_broken_page_are_each_accounted(spark, cfg):
    """Issue 30: a parquet file whose `text` column is binary (2,000 rows in 2 row groups) kept one
    reject per row group and lost the other 1,998 rows while the summary said [balanced]. Now each
    row is a document, a duplicate or a reject with its reason, counted against the footer."""
    folder = Path(cfg.ingest.input)
    folder.mkdir(parents=True)
    texts = [f"Binary parquet document {i}.".encode() for i in range(2000)]
    texts[5] = b"not \xff utf-8"
    pq.write_table(pa.table({"text": pa.array(texts, pa.binary())}), folder / "binary.parquet", row_group_size=1000)
    pq.write_table(pa.table({"text": [f"Paged document number {i}." for i in range(6000)]}), folder / "paged.parquet",
                   row_group_size=3000, data_page_size=4096, use_dictionary=False, compression="snappy")
    content = bytearray((folder / "paged.parquet").read_bytes())
    chunk = pq.ParquetFile(folder / "paged.parquet").metadata.row_group(1).column(0)
    at = chunk.data_page_offset + int(chunk.total_compressed_size * 0.8)
    content[at:at + 64] = b"\xff" * 64
    (folder / "paged.parquet").write_bytes(bytes(content))

    report = ingest.run(spark, cfg)
    t = tables(spark, cfg)
    per_file = {name: {r["f"]: r["n"] for r in df.select(F.element_at(F.split("file", "/"), -1).alias("f"))
                       .groupBy("f").agg(F.count("*").alias("n")).collect()} for name, df in t.items()}
    assert per_file["documents"]["binary.parquet"] == 1999 and per_file["rejects"]["binary.parquet"] == 1
    paged_rejects = per_file["rejects"]["paged.parquet"]
    assert 0 < paged_rejects < 3000 and per_file["documents"]["paged.parquet"] == 6000 - paged_rejects
    assert report.expected_records == report.input_records == 8000 and report.balanced
    assert "[balanced]" in report.summary()
    reasons = {r["reason"].split(":")[0] for r in t["rejects"].collect()}
    assert reasons == {"text field 'text' is binary and not UTF-8 (invalid byte at 4)",
                       f"corrupt parquet after row {6000 - paged_rejects}"}


def test_records_a_reader_counted_but_no_table_would_hold_stop_the_ingest_before_it_writes(spark):
    """The per-file check itself, given what a reader that loses rows produces: its count of a
    file's records above the records that reached the classes."""
    import pytest

    from climb_spark.errors import AccountingError

    classified = spark.createDataFrame([("a.parquet", "new"), ("b.jsonl", "new"), ("b.jsonl", "duplicate")],
                                       "file string, _class string")
    rejects = spark.createDataFrame([("a.parquet",)], "file string")
    counted = spark.createDataFrame([("a.parquet", 2000), ("b.jsonl", 2)], "file string, records long")
    with pytest.raises(AccountingError, match=r"^ingest r1: 1 file do not balance, nothing was written \(a.parquet: "
                                              r"the reader counted 2,000 records, 2 are bound for documents"):
        ingest.check_balance(classified, rejects, counted, "r1")
    balanced = spark.createDataFrame([("a.parquet", 2), ("b.jsonl", 2)], "file string, records long")
    assert ingest.check_balance(classified, rejects, balanced, "r1") == 4
