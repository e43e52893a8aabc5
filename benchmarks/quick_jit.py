"""The quick JIT (C1 only) for short jobs, against the JVM's default tiered JIT, in the same run.

    .venv/bin/python benchmarks/quick_jit.py [--reps 3] [--long-docs 100000]

Short job: a fresh `climb-spark ingest` process re-reading 150 documents already in the
lakehouse (a no-op: every stage's re-run, and most test processes, look like this), timed from
process start to exit. Long job: a fresh ingest of `--long-docs` distinct documents into an empty
lakehouse, where compiled code, not warm-up, should dominate. The variants alternate, so a busy
moment of the machine costs both alike. The quick variant adds the test suite's own profile,
tests/short_jobs.yaml, so what is measured here is what the tests run with.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("data mixture cluster quality model token proxy search corpus shard delta table spark "
         "embedding score prune merge export weight budget sample").split()


def write_docs(folder: Path, n: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(seed)
    with (folder / "part-0.jsonl").open("w") as f:
        for i in range(n):
            text = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(60, 200)))
            f.write(json.dumps({"text": f"{i} {text}", "source": f"s{i % 7}"}) + "\n")


def ingest(lake: Path, docs: Path, profiles: list[str]) -> float:
    sets = [f"lakehouse.root={lake}", f"ingest.input={docs}", "spark.master=local[2]"]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "climb_spark", "ingest", *[a for p in profiles for a in ("--conf", p)],
                    *[a for s in sets for a in ("--set", s)]], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--long-docs", type=int, default=100_000)
    args = ap.parse_args()
    variants = {"default": ["conf/local.yaml"], "quick": ["conf/local.yaml", "tests/short_jobs.yaml"]}
    with tempfile.TemporaryDirectory(prefix="climb-jit-") as tmp:
        work = Path(tmp)
        write_docs(work / "short", 150, 1)
        write_docs(work / "long", args.long_docs, 2)
        ingest(work / "lake_short", work / "short", variants["default"])  # the documents the re-runs find; not timed
        short: dict[str, list[float]] = {k: [] for k in variants}
        long: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.reps):
            for name, profiles in variants.items():
                short[name].append(ingest(work / "lake_short", work / "short", profiles))
        for _ in range(max(1, args.reps - 1)):
            for name, profiles in variants.items():
                shutil.rmtree(work / "lake_long", ignore_errors=True)
                long[name].append(ingest(work / "lake_long", work / "long", profiles))
    for title, times in (("short job (no-op ingest of 150 docs)", short),
                         (f"long job (ingest of {args.long_docs:,} docs)", long)):
        med = {k: statistics.median(v) for k, v in times.items()}
        runs = "; ".join(f"{k} {', '.join(f'{t:.1f}' for t in v)}" for k, v in times.items())
        print(f"{title}: default {med['default']:.1f} s, quick {med['quick']:.1f} s, "
              f"ratio {med['quick'] / med['default']:.2f}x  ({runs})")


if __name__ == "__main__":
    main()
