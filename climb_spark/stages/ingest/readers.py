"""Raw files -> input records, each either a document candidate or a reject with a reason.

A file is planned into splits (byte ranges of a large uncompressed jsonl or line-per-document
text file, row groups of a parquet file, else the whole file) and each split is streamed: no file
is ever held whole, so neither its size nor its compression bounds a worker's memory. Plain Python
over streams so that every format is parsed the same way on a laptop, in a test and inside a
Spark task, and so that a broken record or file never fails the job.
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, BinaryIO, Callable, Iterator

from climb_spark.errors import StoreUnavailable

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
TEXT_SUFFIXES = (".txt", ".text", ".md")
PARQUET_SUFFIXES = (".parquet",)
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")


@dataclass(frozen=True)
class ReadOptions:
    text_field: str = "text"
    source_field: str = "source"
    text_unit: str = "file"
    reject_sample_chars: int = 1000
    max_doc_chars: int = 1_000_000
    long_docs: str = "reject"

    @property
    def max_record_bytes(self) -> int:
        """A record's bytes are read up to this and no further: a text of max_doc_chars characters
        fits even as JSON escapes (at most 6 bytes a character), with room for its other fields."""
        return 6 * self.max_doc_chars + (1 << 20)


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
        return None if self.reason else identity(self.text)[0]


def normalize_text(text: str) -> str:
    """The identity of a text: Unicode NFC, whitespace runs collapsed, ends stripped. str.split()
    and the regex \\s both split on exactly the characters str.isspace() names, so this is the
    regex collapse and strip at a quarter of the cost; the NFC check skips the copy of a text
    that is already normalized (nearly all)."""
    return " ".join(_nfc(text).split())


def _nfc(text: str) -> str:
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def doc_id(text: str) -> str:
    return identity(text)[0]


def identity(text: str) -> tuple[str, int]:
    """(doc_id, word count) of a text, splitting it once when it is already NFC."""
    nfc = _nfc(text)
    words = nfc.split()
    n_words = len(words) if nfc is text else len(text.split())
    return hashlib.sha256(" ".join(words).encode("utf-8")).hexdigest()[:32], n_words


def compression(path: str) -> str | None:
    name = path.lower()
    return next((suffix for suffix in COMPRESSIONS if name.endswith(suffix)), None)


def file_kind(path: str) -> str | None:
    name = PurePosixPath(path).name.lower()
    name = name.removesuffix(compression(name) or "")
    for kind, suffixes in (("jsonl", JSONL_SUFFIXES), ("text", TEXT_SUFFIXES), ("parquet", PARQUET_SUFFIXES)):
        if name.endswith(suffixes):
            return kind
    return None


@dataclass(frozen=True)
class Split:
    """A unit of reading: bytes [start, end) of a file, or parquet row group `start`."""

    path: str
    start: int = 0
    end: int = -1
    first_row: int = 0  # parquet: rows of the file before this row group

    @property
    def numbered_from_start(self) -> bool:
        """Line numbers restart in a byte range after the first: the stage adds the lines of the
        ranges before it."""
        return self.start == 0 or file_kind(self.path) == "parquet"


Opener = Callable[[str], BinaryIO]


def plan(path: str, length: int, opts: ReadOptions, split_bytes: int, opener: Opener) -> list[Split]:
    """The splits of one file. A record belongs to the split its first byte is in, as in Hadoop's
    line reader, so ranges can be cut anywhere."""
    kind = file_kind(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            with opener(path) as f:
                meta = pq.ParquetFile(f).metadata
            rows = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        except StoreUnavailable:
            raise
        except Exception:  # unreadable: one split, which reports why
            return [Split(path)]
        starts = [sum(rows[:i]) for i in range(len(rows))]
        return [Split(path, i, -1, first) for i, first in enumerate(starts)] or [Split(path)]
    splittable = compression(path) is None and (kind == "jsonl" or (kind == "text" and opts.text_unit == "line"))
    if not splittable or length <= split_bytes:
        return [Split(path, 0, length)]
    return [Split(path, s, min(s + split_bytes, length)) for s in range(0, length, split_bytes)]


@dataclass
class SplitLines:
    """What a split held, once it has been read: its lines (blank ones included) and the records
    the reader counted in it. A parquet row group's records are the rows its footer declares, not
    the rows a read got through, so a read that stops early cannot go unnoticed: the stage checks
    every record counted here is in documents, duplicates or rejects."""

    lines: int = 0
    records: int = 0


def read_split(split: Split, opts: ReadOptions, opener: Opener, counted: SplitLines | None = None) -> Iterator[Record]:
    """Every record of one split, in file order; `counted` gets the split's line and record counts."""
    counted = counted if counted is not None else SplitLines()
    footer = file_kind(split.path) == "parquet"  # its rows are counted from the footer, not as read
    for rec in _read_split(split, opts, opener, counted):
        counted.records += not footer
        yield rec


def _read_split(split: Split, opts: ReadOptions, opener: Opener, counted: SplitLines) -> Iterator[Record]:
    path = split.path
    kind = file_kind(path)
    try:
        f = opener(path)
    except OSError as err:  # the store itself not answering is StoreUnavailable, which fails the task
        counted.records = 1 if kind == "parquet" else counted.records
        yield _file_reject(path, f"unreadable file: {err}", b"", opts)
        return
    with f:
        if kind is None:
            yield _file_reject(path, f"unsupported file type: {PurePosixPath(path).name}",
                               f.read(opts.reject_sample_chars * 4), opts)
        elif kind == "parquet":
            yield from _read_parquet(path, f, split, opts, counted)
        else:
            stream, offset = _open_range(f, split)
            end = None if compression(path) or split.end < 0 else split.end
            reader = _read_jsonl if kind == "jsonl" else _read_text
            yield from reader(path, _lines(path, stream, opts, offset, end, counted), opts)


def read_file(path: str, content: bytes, opts: ReadOptions) -> Iterator[Record]:
    """Every record of a whole file held in memory (tests, small local use)."""
    return read_split(Split(path, 0, len(content)), opts, lambda _: io.BytesIO(content))


def _open_range(f: BinaryIO, split: Split) -> tuple[BinaryIO, int]:
    """The stream to read and the byte offset of its first owned record."""
    kind = compression(split.path)
    if kind == ".gz":
        return gzip.GzipFile(fileobj=f), 0
    if kind == ".bz2":
        return bz2.BZ2File(f), 0
    if kind == ".xz":
        return lzma.LZMAFile(f), 0
    if kind == ".zst":
        return io.BufferedReader(_ZstdReader(f), 1 << 20), 0
    if not isinstance(f, (io.BufferedReader, io.BufferedRandom, io.BytesIO)):
        # Lines are read with readline, which only these implement for sure: pyarrow's files (those
        # of an object store, HDFS) register as io.BufferedIOBase, yet their readline raises
        # io.UnsupportedOperation (an OSError, which would read as a corrupt file).
        f = io.BufferedReader(f, 1 << 20)
    if split.start == 0:
        return f, 0
    # The record that straddles `start` belongs to the split before: skip to the end of the line
    # that holds byte start-1 (nothing to skip when that byte is the newline itself).
    f.seek(split.start - 1)
    skipped = 0
    while True:
        chunk = f.readline(1 << 20)
        skipped += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return f, split.start - 1 + skipped


class _ZstdReader(io.RawIOBase):
    """A zstd stream of one or more frames; input that ends inside a frame raises EOFError, as
    gzip and bz2 do (zstandard's own stream reader returns what it has and stops)."""

    def __init__(self, f: BinaryIO):
        import zstandard

        self._f, self._new = f, zstandard.ZstdDecompressor().decompressobj
        self._d, self._out, self._at, self._started = self._new(), b"", 0, False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while self._at == len(self._out):
            self._out, self._at = b"", 0
            chunk = self._f.read(1 << 20)
            if not chunk:
                if self._started and not self._d.eof:
                    raise EOFError("zstd stream ends inside a frame")
                return 0
            while chunk:
                if self._d.eof:
                    self._d = self._new()
                self._started = True
                self._out += self._d.decompress(chunk)
                chunk = self._d.unused_data if self._d.eof else b""
        n = min(len(b), len(self._out) - self._at)
        b[:n] = self._out[self._at:self._at + n]
        self._at += n
        return n


_CORRUPT = (EOFError, OSError, zlib.error, lzma.LZMAError)
_FORMAT = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstd", None: "file"}


@dataclass(frozen=True)
class Oversize:
    """A line longer than a record may be, skipped without holding it."""

    line: int
    offset: int
    size: int
    max_doc_chars: int
    head: str

    def reject(self, path: str) -> Record:
        return Record(path, self.line, self.offset, raw=self.head,
                      reason=f"record of {self.size:,} bytes is longer than ingest.max_doc_chars="
                             f"{self.max_doc_chars:,} allows")


def _lines(path: str, stream, opts: ReadOptions, offset: int, end: int | None,
           counted: SplitLines) -> Iterator[tuple[int, int, bytes] | Oversize | Record]:
    """(line number, byte offset, bytes) per line that starts before `end`; a line longer than
    opts.max_record_bytes is a reject and is skipped unread; a trailing reject if the stream
    breaks. Numbers count from 1 in this stream."""
    limit = opts.max_record_bytes
    while end is None or offset < end:
        try:
            raw = stream.readline(limit + 1)
            if len(raw) > limit and not raw.endswith(b"\n"):
                size, head = len(raw), _sample(raw, opts)
                while raw and not raw.endswith(b"\n"):
                    raw = stream.readline(1 << 20)
                    size += len(raw)
                counted.lines += 1
                yield Oversize(counted.lines, offset, size, opts.max_doc_chars, head)
                offset += size
                continue
        except _CORRUPT + _zstd_errors() as err:
            yield Record(path, counted.lines + 1, offset,
                         reason=f"truncated or corrupt {_FORMAT[compression(path)]} after line {counted.lines}: {err}")
            return
        if not raw:
            return
        counted.lines += 1
        yield counted.lines, offset, raw
        offset += len(raw)


def _zstd_errors() -> tuple[type[Exception], ...]:
    try:
        import zstandard
    except ImportError:
        return ()
    return (zstandard.ZstdError,)


def _decode(raw: bytes) -> tuple[str | None, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as err:
        return None, f"invalid UTF-8 at byte {err.start}"


def _sample(raw: bytes | str, opts: ReadOptions) -> str:
    if isinstance(raw, bytes):
        raw = raw[: opts.reject_sample_chars * 4].decode("utf-8", errors="replace")
    return raw[: opts.reject_sample_chars]


def _read_jsonl(path: str, lines, opts: ReadOptions) -> Iterator[Record]:
    for item in lines:
        if isinstance(item, (Record, Oversize)):
            yield item.reject(path) if isinstance(item, Oversize) else item
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
            if ("\\ud" in line or "\\uD" in line) and _lone_surrogate(value):
                problem = "lone UTF-16 surrogate escape in JSON (not Unicode text)"
            else:
                yield _from_object(path, number, offset, value, opts, line)
                continue
        except json.JSONDecodeError as err:
            problem = f"malformed JSON: {err.msg} at column {err.colno}"
        except RecursionError:
            problem = "JSON nested deeper than the parser's recursion limit"
        except ValueError as err:  # valid JSON Python will not hold: an integer of over 4,300 digits
            problem = f"unreadable JSON: {err}"
        yield Record(path, number, offset, reason=problem, raw=_sample(line, opts))


def _lone_surrogate(value: Any) -> bool:
    """Whether json.loads made an unpaired surrogate of a \\uD800-\\uDFFF escape: a str that no
    UTF-8 writer (the doc_id's hash, Arrow, parquet) accepts. A pair is one character and fine."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


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
    rec.metadata = json.dumps(rest, sort_keys=True, ensure_ascii=False, default=_json_default) if rest else None
    return rec


def _text_problem(text: Any, field: str) -> str | None:
    if isinstance(text, (bytes, bytearray)):
        try:
            bytes(text).decode("utf-8")
        except UnicodeDecodeError as err:
            return f"text field {field!r} is binary and not UTF-8 (invalid byte at {err.start})"
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


def _read_text(path: str, lines, opts: ReadOptions) -> Iterator[Record]:
    if opts.text_unit == "line":
        for item in lines:
            if isinstance(item, (Record, Oversize)):
                yield item.reject(path) if isinstance(item, Oversize) else item
            elif item[2].strip():
                yield _text_record(path, *item, opts)
        return
    # file and paragraph units gather lines; a paragraph starts after a blank line. A text past
    # what max_doc_chars allows is held only up to that (enough to cut it, or to reject it).
    cap = 4 * opts.max_doc_chars + 4
    buf: list[bytes] = []
    held = size = 0
    start: tuple[int, int] | None = None
    for item in lines:
        if isinstance(item, Record):
            if buf:
                yield _text_record(path, *start, b"".join(buf), opts, size)
                buf = []
            yield item
            return
        number, offset, raw = (item.line, item.offset, b"") if isinstance(item, Oversize) else item
        if opts.text_unit == "paragraph" and not isinstance(item, Oversize) and not raw.strip():
            if buf or size:
                yield _text_record(path, *start, b"".join(buf), opts, size)
            buf, start, held, size = [], None, 0, 0
            continue
        if start is None:
            start = (number, offset)
        size += item.size if isinstance(item, Oversize) else len(raw)
        if held <= cap and not isinstance(item, Oversize):
            buf.append(raw)
            held += len(raw)
    if buf or size:
        yield _text_record(path, *start, b"".join(buf), opts, size)


def _text_record(path: str, number: int, offset: int, raw: bytes, opts: ReadOptions, size: int | None = None) -> Record:
    rec = Record(path, number, offset)
    if size is not None and size > len(raw):  # more than was held: cut, or reject by its size
        if opts.long_docs == "reject":
            rec.reason = f"text of {size:,} bytes is longer than ingest.max_doc_chars={opts.max_doc_chars:,}"
            rec.raw = _sample(raw, opts)
            return rec
        raw = _whole_characters(raw)
    text, problem = _decode(raw)
    problem = problem or _text_problem(text, "text")
    text, problem = (text, problem) if problem else _fit(text, opts)
    if problem:
        rec.reason, rec.raw = problem, _sample(raw, opts)
        return rec
    rec.text, rec.source = text.strip("\n"), _stem(path)
    return rec


def _whole_characters(raw: bytes) -> bytes:
    """A UTF-8 prefix without the partial character a cut may leave at its end."""
    for cut in range(4):
        try:
            (raw[: len(raw) - cut] if cut else raw).decode("utf-8")
            return raw[: len(raw) - cut] if cut else raw
        except UnicodeDecodeError:
            continue
    return raw


def _read_parquet(path: str, f: BinaryIO, split: Split, opts: ReadOptions, counted: SplitLines) -> Iterator[Record]:
    """The rows of one row group, each a record: a document candidate or a reject. The group's row
    count comes from the footer, and a read that fails part-way rejects every row it did not
    reach, each with the reason, so no row of the file is lost."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(f)
        names = pf.schema_arrow.names
    except StoreUnavailable:
        raise
    except Exception as err:  # pyarrow raises several types for a corrupt footer
        counted.records = 1
        yield _file_reject(path, f"unreadable parquet: {err}", b"", opts)
        return
    if opts.text_field not in names:
        if split.start == 0:  # the file is one reject, said once, not once per row group
            counted.records = 1
            yield _file_reject(path, f"no column {opts.text_field!r} in parquet (columns: {', '.join(names)})",
                               b"", opts)
        return
    groups = [split.start] if pf.metadata.num_row_groups else []
    counted.records = sum(pf.metadata.row_group(g).num_rows for g in groups)
    row, end = split.first_row, split.first_row + counted.records
    try:
        for batch in pf.iter_batches(batch_size=1024, row_groups=groups):
            for value in _parquet_rows(batch):
                row += 1
                if isinstance(value, _BadRow):
                    yield Record(path, row, None, reason=value.reason, raw=_sample(value.raw, opts))
                    continue
                raw = json.dumps(value, ensure_ascii=False, default=_json_default)
                yield _from_object(path, row, None, _text_as_str(value, opts.text_field), opts, raw)
    except StoreUnavailable:
        raise
    except Exception as err:
        reason = f"corrupt parquet after row {row}: {type(err).__name__}: {err}"[:500]
        for lost in range(row + 1, end + 1):
            yield Record(path, lost, None, reason=reason)
        row = end
    if row < end:  # the footer promised more rows than the data held
        for lost in range(row + 1, end + 1):
            yield Record(path, lost, None, reason=f"parquet row group {split.start} ends at row {row}, its footer "
                                                   f"says {end}")


def _text_as_str(value: dict, field: str) -> dict:
    """A binary text column (writers that store strings as BYTE_ARRAY without the UTF8 annotation)
    read as UTF-8, row by row; bytes that are not UTF-8 stay bytes and are rejected as such."""
    text = value.get(field)
    if isinstance(text, (bytes, bytearray)):
        try:
            return {**value, field: bytes(text).decode("utf-8")}
        except UnicodeDecodeError:
            pass
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


@dataclass(frozen=True)
class _BadRow:
    reason: str
    raw: str


def _parquet_rows(batch) -> list:
    """A batch's rows as dicts; a row holding a string that is not UTF-8 (writers do not all check)
    as a _BadRow, so it costs only itself, not the rows of its batch."""
    try:
        return batch.to_pylist()
    except UnicodeDecodeError:
        return [_parquet_row(batch.slice(i, 1)) for i in range(batch.num_rows)]


def _parquet_row(one) -> dict | _BadRow:
    import pyarrow as pa

    try:
        return one.to_pylist()[0]
    except UnicodeDecodeError as err:
        as_bytes = [c.cast(pa.binary()) if pa.types.is_string(c.type) else
                    c.cast(pa.large_binary()) if pa.types.is_large_string(c.type) else c for c in one.columns]
        try:
            row = pa.RecordBatch.from_arrays(as_bytes, names=one.schema.names).to_pylist()[0]
            raw = json.dumps({k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v for k, v in row.items()},
                             ensure_ascii=False, default=str)
        except Exception:  # a bad string nested in a struct or list: no sample
            raw = ""
        return _BadRow(f"invalid UTF-8 in a string column at byte {err.start}", raw)


def _file_reject(path: str, reason: str, content: bytes, opts: ReadOptions) -> Record:
    return Record(path, 0, 0, reason=reason, raw=_sample(content, opts) if content else None)


def _json_type(value: Any) -> str:
    """What a value is, in words; a parquet column gives types JSON has not (bytes, dates)."""
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null", bytes: "binary"}.get(type(value), type(value).__name__)


def _stem(path: str) -> str:
    name = PurePosixPath(path).name
    for suffix in (".gz",) + JSONL_SUFFIXES + TEXT_SUFFIXES + PARQUET_SUFFIXES:
        name = name.removesuffix(suffix)
    return name
