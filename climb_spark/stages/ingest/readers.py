"""Raw file bytes -> input records, each either a document candidate or a reject with a reason.

Plain Python over bytes so that every format is parsed the same way on a laptop, in a test and
inside a Spark task, and so that a broken record or file never fails the job.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Iterator

_WS = re.compile(r"\s+")

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
TEXT_SUFFIXES = (".txt", ".text", ".md")
PARQUET_SUFFIXES = (".parquet",)


@dataclass(frozen=True)
class ReadOptions:
    text_field: str = "text"
    source_field: str = "source"
    text_unit: str = "file"
    reject_sample_chars: int = 1000
    max_doc_chars: int = 1_000_000
    long_docs: str = "reject"


@dataclass
class Record:
    file: str
    line: int
    offset: int | None
    text: str | None = None
    source: str | None = None
    metadata: str | None = None
    reason: str | None = None
    raw: str | None = None

    @property
    def doc_id(self) -> str | None:
        return None if self.reason else doc_id(self.text)


def normalize_text(text: str) -> str:
    """The identity of a text: Unicode NFC, whitespace runs collapsed, ends stripped."""
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip()


def doc_id(text: str) -> str:
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()[:32]


def n_words(text: str) -> int:
    return len(text.split())


def file_kind(path: str) -> str | None:
    name = PurePosixPath(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for kind, suffixes in (("jsonl", JSONL_SUFFIXES), ("text", TEXT_SUFFIXES), ("parquet", PARQUET_SUFFIXES)):
        if name.endswith(suffixes):
            return kind
    return None


def read_file(path: str, content: bytes, opts: ReadOptions) -> Iterator[Record]:
    """Every record of one file, in file order."""
    kind = file_kind(path)
    if kind is None:
        yield _file_reject(path, f"unsupported file type: {PurePosixPath(path).name}", content, opts)
        return
    if kind == "parquet":
        yield from _read_parquet(path, content, opts)
        return
    if path.lower().endswith(".gz"):
        stream: io.BufferedIOBase = gzip.GzipFile(fileobj=io.BytesIO(content))
    else:
        stream = io.BytesIO(content)
    reader = _read_jsonl if kind == "jsonl" else _read_text
    yield from reader(path, stream, opts)


def _lines(path: str, stream, opts: ReadOptions) -> Iterator[tuple[int, int, bytes] | Record]:
    """(line number, byte offset, bytes) per line; a trailing reject if the stream breaks."""
    offset, number = 0, 0
    while True:
        try:
            raw = stream.readline()
        except (EOFError, OSError, zlib.error) as err:
            yield Record(path, number + 1, offset, reason=f"truncated or corrupt gzip after line {number}: {err}")
            return
        if not raw:
            return
        number += 1
        yield number, offset, raw
        offset += len(raw)


def _decode(raw: bytes) -> tuple[str | None, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as err:
        return None, f"invalid UTF-8 at byte {err.start}"


def _sample(raw: bytes | str, opts: ReadOptions) -> str:
    if isinstance(raw, bytes):
        raw = raw[: opts.reject_sample_chars * 4].decode("utf-8", errors="replace")
    return raw[: opts.reject_sample_chars]


def _read_jsonl(path: str, stream, opts: ReadOptions) -> Iterator[Record]:
    for item in _lines(path, stream, opts):
        if isinstance(item, Record):
            yield item
            continue
        number, offset, raw = item
        raw = raw.rstrip(b"\r\n")
        if not raw.strip():
            continue  # blank lines separate nothing and carry nothing
        line, problem = _decode(raw)
        if problem:
            yield Record(path, number, offset, reason=problem, raw=_sample(raw, opts))
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            yield Record(path, number, offset, reason=f"malformed JSON: {err.msg} at column {err.colno}",
                         raw=_sample(line, opts))
            continue
        yield _from_object(path, number, offset, value, opts, line)


def _from_object(path: str, number: int, offset: int | None, value: Any, opts: ReadOptions,
                 raw: str) -> Record:
    rec = Record(path, number, offset)
    if not isinstance(value, dict):
        rec.reason, rec.raw = f"JSON value is {_json_type(value)}, not an object", _sample(raw, opts)
        return rec
    if opts.text_field not in value or value[opts.text_field] is None:
        rec.reason, rec.raw = f"no text field {opts.text_field!r}", _sample(raw, opts)
        return rec
    text = value[opts.text_field]
    problem = _text_problem(text, opts.text_field)
    text, problem = (text, problem) if problem else _fit(text, opts)
    if problem:
        rec.reason, rec.raw = problem, _sample(raw, opts)
        return rec
    rec.text = text
    source = value.get(opts.source_field)
    rec.source = str(source) if source not in (None, "") else _stem(path)
    rest = {k: v for k, v in value.items() if k != opts.text_field}
    rec.metadata = json.dumps(rest, sort_keys=True, ensure_ascii=False, default=str) if rest else None
    return rec


def _text_problem(text: Any, field: str) -> str | None:
    if not isinstance(text, str):
        return f"text field {field!r} is {_json_type(text)}, not a string"
    if not text.strip():
        return "empty or whitespace-only text"
    if "\x00" in text:
        return "NUL byte in text (binary content)"
    return None


def _fit(text: str, opts: ReadOptions) -> tuple[str, str | None]:
    """A text within ingest.max_doc_chars: cut to it, or a reject reason."""
    if len(text) <= opts.max_doc_chars:
        return text, None
    if opts.long_docs == "truncate":
        return text[: opts.max_doc_chars], None
    return text, f"text of {len(text):,} characters is longer than ingest.max_doc_chars={opts.max_doc_chars:,}"


def _read_text(path: str, stream, opts: ReadOptions) -> Iterator[Record]:
    if opts.text_unit == "line":
        for item in _lines(path, stream, opts):
            if isinstance(item, Record):
                yield item
            elif item[2].strip():
                yield _text_record(path, *item, opts)
        return
    # file and paragraph units gather lines; a paragraph starts after a blank line.
    buf: list[bytes] = []
    start: tuple[int, int] | None = None
    for item in _lines(path, stream, opts):
        if isinstance(item, Record):
            if buf:
                yield _text_record(path, *start, b"".join(buf), opts)
                buf = []
            yield item
            return
        number, offset, raw = item
        if opts.text_unit == "paragraph" and not raw.strip():
            if buf:
                yield _text_record(path, *start, b"".join(buf), opts)
            buf, start = [], None
            continue
        if start is None:
            start = (number, offset)
        buf.append(raw)
    if buf:
        yield _text_record(path, *start, b"".join(buf), opts)


def _text_record(path: str, number: int, offset: int, raw: bytes, opts: ReadOptions) -> Record:
    rec = Record(path, number, offset)
    text, problem = _decode(raw)
    problem = problem or _text_problem(text, "text")
    text, problem = (text, problem) if problem else _fit(text, opts)
    if problem:
        rec.reason, rec.raw = problem, _sample(raw, opts)
        return rec
    rec.text, rec.source = text.strip("\n"), _stem(path)
    return rec


def _read_parquet(path: str, content: bytes, opts: ReadOptions) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(io.BytesIO(content))
        names = pf.schema_arrow.names
    except Exception as err:  # pyarrow raises several types for a corrupt footer
        yield _file_reject(path, f"unreadable parquet: {err}", b"", opts)
        return
    if opts.text_field not in names:
        yield _file_reject(path, f"no column {opts.text_field!r} in parquet (columns: {', '.join(names)})",
                           b"", opts)
        return
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=4096):
            for value in batch.to_pylist():
                row += 1
                raw = json.dumps(value, ensure_ascii=False, default=str)
                yield _from_object(path, row, None, value, opts, raw)
    except Exception as err:
        yield Record(path, row + 1, None, reason=f"corrupt parquet after row {row}: {err}")


def _file_reject(path: str, reason: str, content: bytes, opts: ReadOptions) -> Record:
    return Record(path, 0, 0, reason=reason, raw=_sample(content, opts) if content else None)


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}[type(value)]


def _stem(path: str) -> str:
    name = PurePosixPath(path).name
    for suffix in (".gz",) + JSONL_SUFFIXES + TEXT_SUFFIXES + PARQUET_SUFFIXES:
        name = name.removesuffix(suffix)
    return name
