import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from climb_spark.stages.ingest.readers import ReadOptions, doc_id, file_kind, normalize_text, read_file

OPTS = ReadOptions()


def read(path, content, **kw):
    return list(read_file(path, content, ReadOptions(**kw) if kw else OPTS))


def test_doc_id_collapses_whitespace_and_unicode_forms_only():
    assert doc_id("Caf\u00e9  au\n lait ") == doc_id("Cafe\u0301 au lait")
    assert doc_id("a b") != doc_id("A b")
    assert normalize_text("  x\t\ty \n") == "x y"
    assert len(doc_id("x")) == 32


def test_jsonl_every_line_is_a_record_or_a_reject_with_reason():
    lines = [
        json.dumps({"text": "A good document.", "source": "web", "url": "u1", "score": 3}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"body": "no text field"}),
        json.dumps({"text": None}),
        json.dumps({"text": 42}),
        json.dumps({"text": "   \n\t "}),
        json.dumps({"text": "bin\u0000ary"}),
        "",
        json.dumps({"text": "Second good one."}),
    ]
    content = ("\n".join(lines) + "\n").encode() + b'{"text": "bad \xff byte"}\n'
    recs = read("/d/web.jsonl", content)
    assert [r.line for r in recs] == [1, 2, 3, 4, 5, 6, 7, 8, 10, 11]  # the blank line 9 is no record
    good = [r for r in recs if r.reason is None]
    assert [r.text for r in good] == ["A good document.", "Second good one."]
    assert good[0].source == "web" and good[1].source == "web"  # file stem when the field is absent
    assert json.loads(good[0].metadata) == {"score": 3, "source": "web", "url": "u1"}
    assert good[1].metadata is None
    reasons = [r.reason for r in recs if r.reason]
    assert reasons == [
        "malformed JSON: Expecting property name enclosed in double quotes at column 2",
        "JSON value is an array, not an object",
        "no text field 'text'",
        "no text field 'text'",
        "text field 'text' is a number, not a string",
        "empty or whitespace-only text",
        "NUL byte in text (binary content)",
        "invalid UTF-8 at byte 14",
    ]
    assert recs[1].raw == "{not json"
    assert recs[1].offset == len(lines[0]) + 1


def test_configurable_text_and_source_fields():
    content = json.dumps({"content": "Hello there.", "origin": "forum"}).encode()
    (rec,) = read("x.jsonl", content, text_field="content", source_field="origin")
    assert rec.text == "Hello there." and rec.source == "forum"


def test_truncated_gzip_keeps_lines_before_the_break():
    body = "".join(json.dumps({"text": f"document number {i}"}) + "\n" for i in range(200)).encode()
    whole = gzip.compress(body)
    recs = read("a.jsonl.gz", whole)
    assert len(recs) == 200 and all(r.reason is None for r in recs)
    cut = read("a.jsonl.gz", whole[: len(whole) // 2])
    assert cut[-1].reason.startswith("truncated or corrupt gzip after line")
    assert all(r.reason is None for r in cut[:-1]) and 0 < len(cut) - 1 < 200
    assert cut[-1].line == len(cut)


def test_text_units():
    content = b"Title line\nstill para one\n\n\nPara two\n\nPara three\n"
    assert [r.text for r in read("t.txt", content)] == [content.decode().strip("\n")]
    paras = read("t.txt", content, text_unit="paragraph")
    assert [(r.line, r.text) for r in paras] == [(1, "Title line\nstill para one"), (5, "Para two"),
                                                 (7, "Para three")]
    assert [r.line for r in read("t.txt", content, text_unit="line")] == [1, 2, 5, 7]
    (bad,) = read("t.txt", b"caf\xe9\n")
    assert bad.reason == "invalid UTF-8 at byte 3"


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def test_parquet_rows_and_file_level_problems():
    content = _parquet(pa.table({"text": ["one doc", None, "  "], "lang": ["en", "en", "de"]}))
    recs = read("p.parquet", content)
    assert [(r.line, r.reason) for r in recs] == [(1, None), (2, "no text field 'text'"),
                                                  (3, "empty or whitespace-only text")]
    assert json.loads(recs[0].metadata) == {"lang": "en"}
    (nocol,) = read("p.parquet", _parquet(pa.table({"body": ["x"]})))
    assert nocol.reason == "no column 'text' in parquet (columns: body)"
    (corrupt,) = read("p.parquet", b"PAR1 this is not parquet")
    assert corrupt.reason.startswith("unreadable parquet")


@pytest.mark.parametrize("name, kind", [("a.jsonl", "jsonl"), ("a.JSON.gz", "jsonl"), ("a.txt.gz", "text"),
                                        ("a.parquet", "parquet"), ("a.csv", None), ("a.gz", None)])
def test_file_kinds(name, kind):
    assert file_kind(name) == kind


def test_unsupported_file_is_one_reject():
    (rec,) = read("/x/data.csv", b"a,b\n1,2\n")
    assert rec.reason == "unsupported file type: data.csv" and rec.raw.startswith("a,b")


def test_a_runaway_document_is_rejected_with_its_size_or_truncated():
    huge = "word " * 300
    line = json.dumps({"text": huge}).encode() + b"\n"
    (rec,) = read("a.jsonl", line, max_doc_chars=1000)
    assert rec.reason == "text of 1,500 characters is longer than ingest.max_doc_chars=1,000" and rec.text is None
    (cut,) = read("a.jsonl", line, max_doc_chars=1000, long_docs="truncate")
    assert cut.reason is None and len(cut.text) == 1000
    (text,) = read("a.txt", huge.encode(), max_doc_chars=1000)
    assert text.reason.startswith("text of 1,500 characters")
