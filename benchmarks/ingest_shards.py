"""Ingest of shards the size public corpora ship: one large uncompressed .jsonl and one .jsonl.zst.

    .venv/bin/python benchmarks/ingest_shards.py [--jsonl-gb 2.25] [--zst-gb 1.0] [--keep DIR]

Documents are real sample-corpus text (climb_spark.corpus) recombined so that every line is a
distinct document of a few KB, with a sprinkling of malformed lines; the zst shard mixes in
random words so that it compresses about as real text does. Prints the accounting, seconds,
docs/s and the peak memory of the Spark Python workers, and the docs/s of a plain
single-process parse (json, NFC, whitespace collapse, sha256) of the same lines on one core.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from climb_spark.config import CorpusConfig, load  # noqa: E402
from climb_spark.corpus import build  # noqa: E402
from climb_spark.lakehouse.session import build_session  # noqa: E402
from climb_spark.stages.ingest import stage as ingest  # noqa: E402
from climb_spark.stages.ingest.readers import doc_id  # noqa: E402


def paragraphs(folder: Path) -> list[str]:
    build(CorpusConfig(output=str(folder), max_docs=3000, seed=3))
    return [json.loads(line)["text"] for f in sorted(folder.glob("*.jsonl")) for line in f.open()]


def lines(pool: list[str], rnd: random.Random, noisy: bool):
    words = " ".join(pool).split()
    i = 0
    while True:
        i += 1
        if i % 10007 == 0:
            yield b'{"text": "a malformed line\n'
            continue
        parts = [f"Document {i}."] + rnd.sample(pool, 3)
        if noisy:
            parts.append(" ".join(rnd.choice(words) + str(rnd.randrange(100)) for _ in range(150)))
        yield (json.dumps({"text": "\n\n".join(parts), "source": "bench"}) + "\n").encode()


def write_jsonl(path: Path, gb: float, pool, rnd) -> int:
    target, n = int(gb * 1e9), 0
    with path.open("wb") as f:
        for line in lines(pool, rnd, noisy=False):
            if f.tell() + len(line) > target:
                break
            f.write(line)
            n += 1
    return n


def write_zst(path: Path, gb: float, pool, rnd) -> int:
    import zstandard

    target, n = int(gb * 1e9), 0
    with path.open("wb") as raw, zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False) as f:
        for line in lines(pool, rnd, noisy=True):
            f.write(line)
            n += 1
            if n % 2000 == 0:
                f.flush(zstandard.FLUSH_BLOCK)
                if raw.tell() >= target:
                    break
    return n


def plain_parse(path: Path, limit: int) -> float:
    """Docs/s of one process doing the parse itself (no Spark, no Delta) on the first lines."""
    started, n = time.perf_counter(), 0
    with path.open("rb") as f:
        for raw in f:
            try:
                doc_id(json.loads(raw)["text"])
            except ValueError:
                pass
            n += 1
            if n >= limit:
                break
    return n / (time.perf_counter() - started)


def worker_peak_rss(stop: threading.Event, peak: list[int]) -> None:
    """The largest RSS of any pyspark worker process seen while ingest runs (sampled)."""
    import psutil

    while not stop.wait(0.5):
        for proc in psutil.process_iter(["cmdline", "memory_info"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if "pyspark.daemon" in cmd and proc.info["memory_info"]:
                peak[0] = max(peak[0], proc.info["memory_info"].rss)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jsonl-gb", type=float, default=2.25)
    ap.add_argument("--zst-gb", type=float, default=1.0)
    ap.add_argument("--keep", default=None, help="a folder to build the shards in and keep")
    args = ap.parse_args()
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="climb-shards-"))
    shards = tmp / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    pool, rnd = paragraphs(tmp / "corpus"), random.Random(5)
    made = {}
    for name, gb, write in (("big.jsonl", args.jsonl_gb, write_jsonl), ("big.jsonl.zst", args.zst_gb, write_zst)):
        path = shards / name
        if gb > 0 and not path.exists():
            started = time.perf_counter()
            made[name] = write(path, gb, pool, rnd)
            print(f"wrote {name}: {path.stat().st_size / 1e9:.2f} GB, {made[name]:,} lines "
                  f"in {time.perf_counter() - started:.0f}s", flush=True)
        elif path.exists():
            print(f"reusing {name}: {path.stat().st_size / 1e9:.2f} GB")

    cfg = load([ROOT / "conf" / "local.yaml"], [f"lakehouse.root={tmp / 'lake'}", f"ingest.input={shards}"])
    spark = build_session(cfg)
    stop, peak = threading.Event(), [0]
    watcher = threading.Thread(target=worker_peak_rss, args=(stop, peak), daemon=True)
    watcher.start()
    started = time.perf_counter()
    report = ingest.run(spark, cfg)
    seconds = time.perf_counter() - started
    stop.set()
    print(report.summary())
    cores = int(spark.sparkContext.defaultParallelism)
    rate = report.input_records / seconds
    floor = plain_parse(shards / "big.jsonl", 200_000) if (shards / "big.jsonl").exists() else float("nan")
    print(f"ingest: {seconds:.0f}s, {rate:,.0f} records/s on {cores} cores ({rate / cores:,.0f} per core); "
          f"peak Python worker RSS {peak[0] / 2**30:.2f} GiB")
    print(f"plain single-process parse floor: {floor:,.0f} docs/s on one core; "
          f"ingest per core / floor = {rate / cores / floor:.2f}")
    print(f"input bytes: {sum(p.stat().st_size for p in shards.iterdir()) / 1e9:.2f} GB; lakehouse "
          f"{sum(f.stat().st_size for f in (tmp / 'lake').rglob('*') if f.is_file()) / 1e9:.2f} GB; "
          f"cpu count {os.cpu_count()}")
    spark.stop()


if __name__ == "__main__":
    main()
