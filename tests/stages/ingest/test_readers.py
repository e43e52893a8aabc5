import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from climb_spark.stages.ingest.readers import (ReadOptions, Split, SplitLines, doc_id, file_kind, identity,
                                               normalize_text,
                                               plan, read_file, read_split)

OPTS = ReadOptions()


def read(path, content, **kw):
    return list(read_file(path, content, ReadOptions(**kw) if kw else OPTS))


def test_doc_id_collapses_whitespace_and_unicode_forms_only():
    assert doc_id("Caf\u00e9  au\n lait ") == doc_id("Cafe\u0301 au lait")
    assert doc_id("a b") != doc_id("A b")
    assert normalize_text("  x\t\ty \n") == "x y"
    assert len(doc_id("x")) == 32


def test_identity_is_the_regex_collapse_over_every_whitespace_and_unnormalized_text():
    """Ids written before the split-based collapse must not change: sha256 of the regex form."""
    import hashlib
    import random
    import re
    import sys
    import unicodedata

    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()] + ["\u200b", "\ufeff"]
    alphabet = spaces + list("abé") + ["e\u0301", "\u212b", "\uac00", "\U0001f600"]
    rnd = random.Random(5)
    for _ in range(3000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))
        old = re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip()
        assert normalize_text(text) == old
        assert identity(text) == (hashlib.sha256(old.encode()).hexdigest()[:32], len(text.split()))


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


def test_json_python_cannot_hold_or_write_is_a_reject_not_a_crash():
    """json.loads accepts a lone "\\ud800" (a str no UTF-8 writer takes) and raises other than
    JSONDecodeError on deep nesting and on huge integers: each is a reject of its own line."""
    lines = [r'{"text": "half \ud83d of an emoji"}', r'{"text": "fine", "title": "bad \uDC00"}',
             r'{"text": "whole \ud83d\ude00 emoji"}', r'{"text": "\\ud800 is a backslash and text"}',
             '{"text": "deep", "m": ' + "[" * 100_000 + "]" * 100_000 + "}",
             '{"text": "big", "n": 1' + "0" * 5000 + "}"]
    recs = read("/d/s.jsonl", ("\n".join(lines) + "\n").encode())
    assert [r.reason for r in recs] == ["lone UTF-16 surrogate escape in JSON (not Unicode text)"] * 2 + [None, None] + [
        "JSON nested deeper than the parser's recursion limit",
        "unreadable JSON: Exceeds the limit (4300 digits) for integer string conversion: value has 5001 digits;"
        " use sys.set_int_max_str_digits() to increase the limit"]
    assert recs[0].raw == lines[0] and recs[4].raw == lines[4][:1000]
    assert recs[2].text == "whole \U0001f600 emoji" and recs[3].text == "\\ud800 is a backslash and text"
    assert all(r.doc_id for r in recs[2:4])


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


def test_a_parquet_string_that_is_not_utf8_costs_its_row_only():
    """Parquet writers do not all validate UTF-8: the bad row is a reject, its batch's others are read."""
    raw = pa.array([b"before", b"bad \xff byte", b"after"], pa.binary())
    text = pa.Array.from_buffers(pa.string(), 3, raw.buffers())  # no validation, as such writers do
    recs = read("p.parquet", _parquet(pa.table({"text": text, "n": [1, 2, 3]})))
    assert [(r.line, r.text, r.reason) for r in recs] == [
        (1, "before", None), (2, None, "invalid UTF-8 in a string column at byte 4"), (3, "after", None)]
    assert json.loads(recs[1].raw) == {"text": "bad \ufffd byte", "n": 2}


def _counted_read(path, content):
    """Every split of a file read as the stage reads it: (records, the reader's own counts)."""
    out, counts = [], []
    for split in plan(path, len(content), OPTS, 1 << 20, lambda _: io.BytesIO(content)):
        counted = SplitLines()
        out += list(read_split(split, OPTS, lambda _: io.BytesIO(content), counted))
        counts.append(counted.records)
    return out, counts


def test_a_binary_text_column_is_read_as_utf8_row_by_row():
    """Issue 30: a parquet `text` column stored as binary lost all but one row of each row group
    ("corrupt parquet after row N: <class 'bytes'>") while the ingest printed [balanced]."""
    texts = [f"binary document {i}".encode() for i in range(2000)]
    texts[7], texts[1500] = b"caf\xe9 latin-1", b"\xff\xfe"
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": pa.array(texts, pa.binary()), "blob": pa.array([b"\x00"] * 2000)}), buf,
                   row_group_size=1000)
    recs, counts = _counted_read("b.parquet", buf.getvalue())
    assert counts == [1000, 1000] and [r.line for r in recs] == list(range(1, 2001))
    bad = [(r.line, r.reason) for r in recs if r.reason]
    assert bad == [(8, "text field 'text' is binary and not UTF-8 (invalid byte at 3)"),
                   (1501, "text field 'text' is binary and not UTF-8 (invalid byte at 0)")]
    assert recs[0].text == "binary document 0" and json.loads(recs[0].metadata) == {"blob": "\u0000"}


def test_a_row_group_that_fails_part_way_rejects_every_row_it_did_not_reach():
    """A data page corrupted in the second row group: the rows read before it are records, each row
    after it a reject with the reason (it used to be one reject and the rest of the group lost)."""
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": [f"document number {i} with some words" for i in range(6000)]}), buf,
                   row_group_size=3000, data_page_size=4096, use_dictionary=False, compression="snappy")
    content = bytearray(buf.getvalue())
    chunk = pq.ParquetFile(io.BytesIO(bytes(content))).metadata.row_group(1).column(0)
    at = chunk.data_page_offset + int(chunk.total_compressed_size * 0.8)  # a page near the group's end
    content[at:at + 64] = b"\xff" * 64
    recs, counts = _counted_read("c.parquet", bytes(content))
    assert counts == [3000, 3000] and [r.line for r in recs] == list(range(1, 6001))
    rejected = [r for r in recs if r.reason]
    first = rejected[0].line
    assert 3000 < first < 6000 and all(r.reason is None for r in recs[:first - 1])
    assert [r.line for r in rejected] == list(range(first, 6001))
    assert {r.reason for r in rejected} == {f"corrupt parquet after row {first - 1}: OSError: Corrupt snappy "
                                            "compressed data."}


@pytest.mark.parametrize("name, kind", [("a.jsonl", "jsonl"), ("a.JSON.gz", "jsonl"), ("a.txt.gz", "text"),
                                        ("a.jsonl.zst", "jsonl"), ("a.jsonl.bz2", "jsonl"), ("a.txt.xz", "text"),
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


def _ranges(path, content, split_bytes, **kw):
    """Read a file as the stage does: its splits, each from its own opener, line numbers shifted
    by the lines of the ranges before."""
    opts = ReadOptions(**kw)
    splits = plan(path, len(content), opts, split_bytes, lambda _: io.BytesIO(content))
    out, shift = [], 0
    for split in splits:
        counted = SplitLines()
        for rec in read_split(split, opts, lambda _: io.BytesIO(content), counted):
            rec.line += shift if not split.numbered_from_start else 0
            out.append(rec)
        shift += counted.lines
    return splits, out


@pytest.mark.parametrize("split_bytes", [1, 7, 23, 64, 10_000])
def test_byte_ranges_read_every_record_once_at_its_whole_file_position(split_bytes):
    lines = [json.dumps({"text": f"record {i} " + "x" * (i % 17)}) for i in range(40)]
    lines[5], lines[6], lines[20] = "", "{broken", "   "  # blank lines count, a reject keeps its place
    content = ("\r\n".join(lines[:10]) + "\n" + "\n".join(lines[10:]) + "\n").encode()
    whole = read("/d/a.jsonl", content)
    splits, ranged = _ranges("/d/a.jsonl", content, split_bytes)
    assert len(splits) == (1 if split_bytes >= len(content) else -(-len(content) // split_bytes))
    key = lambda r: (r.line, r.offset, r.text, r.reason)  # noqa: E731
    assert [key(r) for r in ranged] == [key(r) for r in whole]
    assert [r.line for r in whole if r.reason] == [7]


def test_a_range_cut_right_after_a_newline_owns_the_next_line():
    content = b'{"text": "a"}\n{"text": "b"}\n{"text": "c"}\n'
    cut = content.index(b"\n") + 1  # the second range starts exactly at line 2
    _, recs = _ranges("a.jsonl", content, cut)
    assert [(r.line, r.text) for r in recs] == [(1, "a"), (2, "b"), (3, "c")]


def test_text_lines_split_too_but_whole_file_units_do_not():
    content = "".join(f"line {i}\n" for i in range(50)).encode()
    splits, recs = _ranges("t.txt", content, 40, text_unit="line")
    assert len(splits) > 5 and [r.line for r in recs] == list(range(1, 51))
    assert len(plan("t.txt", len(content), ReadOptions(), 40, None)) == 1  # text_unit=file


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zst"])
def test_compressed_files_stream_and_a_cut_stream_is_a_reject(suffix):
    import bz2
    import lzma

    import zstandard

    body = "".join(json.dumps({"text": f"document number {i}"}) + "\n" for i in range(300)).encode()
    packed = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress,
              ".zst": zstandard.ZstdCompressor().compress}[suffix](body)
    path = f"a.jsonl{suffix}"
    assert len(plan(path, len(packed), ReadOptions(), 10, None)) == 1  # never cut into ranges
    recs = read(path, packed)
    assert [r.text for r in recs] == [f"document number {i}" for i in range(300)]
    cut = read(path, packed[: len(packed) // 2])
    name = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstd"}[suffix]
    assert cut[-1].reason.startswith(f"truncated or corrupt {name} after line {len(cut) - 1}")
    assert all(r.reason is None for r in cut[:-1]) and len(cut) - 1 < 300


def test_parquet_is_split_by_row_group_with_rows_numbered_over_the_file():
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(25)]}), buf, row_group_size=10)
    content = buf.getvalue()
    splits, recs = _ranges("p.parquet", content, 1)
    assert [(s.start, s.first_row) for s in splits] == [(0, 0), (1, 10), (2, 20)]
    assert [(r.line, r.text) for r in recs] == [(i + 1, f"row {i}") for i in range(25)]


def test_a_line_longer_than_any_record_is_skipped_unread():
    content = b'{"text": "' + b"w" * 2_000_000 + b'"}\n{"text": "after"}\n'
    first, after = read("a.jsonl", content, max_doc_chars=100)
    assert first.reason == "record of 2,000,013 bytes is longer than ingest.max_doc_chars=100 allows"
    assert first.raw.startswith('{"text": "www') and (after.line, after.text) == (2, "after")
    whole_text = ("w" * 3000 + "\n") * 5
    (big,) = read("t.txt", whole_text.encode(), max_doc_chars=100)
    assert big.reason.startswith("text of 15,005 bytes is longer")
    (cut,) = read("t.txt", whole_text.encode(), max_doc_chars=100, long_docs="truncate")
    assert cut.text == "w" * 100


def test_an_unreadable_file_is_a_reject():
    def gone(path):
        raise FileNotFoundError(2, "No such file or directory", path)

    (rec,) = read_split(Split("/x/gone.jsonl", 0, 10), ReadOptions(), gone)
    assert rec.reason.startswith("unreadable file: [Errno 2] No such file or directory")


@pytest.mark.parametrize("split_bytes", [9, 10_000])
def test_pyarrow_files_are_read_by_line_whole_and_in_ranges(tmp_path, split_bytes):
    """pyarrow's files (every object-store input) claim io.BufferedIOBase but have no readline: an
    uncompressed jsonl read through one must give the records Python's own file gives, not a
    `truncated or corrupt file` reject."""
    from pyarrow import fs

    content = b'{"text": "a"}\n\n{"text": "bb"}\n{broken\n{"text": "ccc"}\n'
    (tmp_path / "a.jsonl").write_bytes(content)
    native = fs.LocalFileSystem()
    with native.open_input_file(str(tmp_path / "a.jsonl")) as probe:
        assert isinstance(probe, io.BufferedIOBase)
        with pytest.raises(io.UnsupportedOperation):
            probe.readline()
    whole = read("a.jsonl", content)
    got = []
    for split in plan("a.jsonl", len(content), OPTS, split_bytes, lambda _: None):
        counted = SplitLines()
        got += [(r.offset, r.text, r.reason) for r in
                read_split(split, OPTS, lambda _: native.open_input_file(str(tmp_path / "a.jsonl")), counted)]
    assert got == [(r.offset, r.text, r.reason) for r in whole]
    assert [r.text for r in whole] == ["a", "bb", None, "ccc"]
