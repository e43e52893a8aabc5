"""Can ingest reach 0.5x the plain parse floor per core? Its parts and their lower bounds, one run.

    .venv/bin/python benchmarks/ingest_bounds.py [--docs 1000000] [--shard-docs 50000] [--keep DIR]

The input is the scale benchmark's (benchmarks/scale.py): N distinct documents of real sample-corpus
sentences in jsonl shards of `--shard-docs` lines. In one Spark session (`conf/local.yaml`, a fresh
lakehouse) it times, after a warm-up read of the shards:

- catalog     the first three tables of a fresh lakehouse (metastore and Delta start, fixed);
- ingest      `stages.ingest.stage.run`, as a user runs it (tables already created);
- py-parse    the ingest's own Python parse (`parse_splits` in `mapInArrow`), output discarded:
              no ingest that parses in Python can take less;
- jvm-parse   Spark's own JSON reader and sha2 of the whitespace-collapsed text (no NFC, so not the
              same ids for every text), output discarded: a parse with no Python at all;
- write       the raw lines, unparsed, into a new Delta table: the cost of writing the bytes once.

and prints each against the issue's budget: N / (0.5 x floor x cores), where the floor is a
plain single process's docs/s (json, NFC, whitespace collapse, sha256: `ingest_shards.plain_parse`)
on the first shard, same machine, same run (the best of four: a floor is the best case). Run it
on a quiet machine: every part saturates the cores, so another process's load inflates them all.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from climb_spark.config import load  # noqa: E402
from ingest_shards import plain_parse  # noqa: E402
from scale import sentence_pools, write_shards  # noqa: E402

FLOOR_LINES = 200_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--shard-docs", type=int, default=50_000)
    ap.add_argument("--keep", default=None, help="a folder to work in and keep (shards are reused from it)")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="ingest-bounds-"))
    shards = work / f"shards_{args.docs}"
    write_shards(shards, args.docs, args.shard_docs, sentence_pools(work / "corpus"), seed=11)
    lake = work / "lake"
    shutil.rmtree(lake, ignore_errors=True)
    cfg = load([ROOT / "conf" / "local.yaml"], [f"lakehouse.root={lake}", f"ingest.input={shards}",
                                                f"spark.jars_dir={ROOT / '.cache' / 'jars'}"])
    try:
        run(cfg, shards, lake, args.docs)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(cfg, shards: Path, lake: Path, n: int) -> None:
    from pyspark.sql import functions as F

    from climb_spark.lakehouse.delta import session_conf
    from climb_spark.lakehouse.session import build_session
    from climb_spark.lakehouse.tables import DOCUMENTS, DUPLICATES, REJECTS, Lakehouse
    from climb_spark.stages.ingest import stage as ingest

    # The floor is the best of four runs, two before Spark starts and two after it stops.
    first, lines = sorted(shards.glob("*.jsonl"))[0], min(n, FLOOR_LINES)
    floors = [plain_parse(first, lines) for _ in range(2)]
    spark = build_session(cfg)
    cores = int(spark.sparkContext.defaultParallelism)
    src = str(shards)
    seconds: dict[str, float] = {}

    def timed(name: str, fn) -> None:
        started = time.perf_counter()
        fn()
        seconds[name] = time.perf_counter() - started
        print(f"{name:>10}: {seconds[name]:6.1f}s", flush=True)

    def discard(df) -> None:
        df.write.format("noop").mode("overwrite").save()

    discard(spark.read.text(src))  # warm-up: the JVM's first scan, the page cache
    lakehouse = Lakehouse(cfg.lakehouse)
    timed("catalog", lambda: [lakehouse.ensure(spark, spec) for spec in (DOCUMENTS, DUPLICATES, REJECTS)])
    timed("ingest", lambda: print(ingest.run(spark, cfg).summary().splitlines()[0], flush=True))

    i, opts = cfg.ingest, ingest.read_options(cfg)
    with session_conf(spark, {"spark.sql.execution.arrow.maxRecordsPerBatch": "1"}):
        splits = ingest.plan_splits(spark, i.input, opts, i.split_bytes, cfg.s3)[0]
        timed("py-parse", lambda: discard(splits.mapInArrow(lambda it: ingest.parse_splits(it, opts, cfg.s3),
                                                            schema=ingest.PARSED)))
    collapsed = F.trim(F.regexp_replace("text", "[\\t\\n\\x0B\\f\\r\\x1C-\\x1F ]+", " "))
    timed("jvm-parse", lambda: discard(spark.read.schema("text string, source string, url string").json(src)
                                       .select("*", F.substring(F.sha2(collapsed, 256), 1, 32).alias("doc_id"))))
    timed("write", lambda: spark.read.text(src).write.format("delta").save(str(lake / "raw_lines")))
    spark.stop()

    floor = max(floors + [plain_parse(first, lines) for _ in range(2)])
    budget = n / (0.5 * floor * cores)
    print(f"\n{n:,} documents, {cores} cores; plain parse floor {floor:,.0f} docs/s on one core; "
          f"the budget of 0.5x the floor per core: {budget:.1f}s")
    for name, s in seconds.items():
        print(f"  {name:>10} {s:6.1f}s = {s / budget:4.2f}x the budget")
    per_core = n / seconds["ingest"] / cores
    print(f"ingest: {per_core:,.0f} docs/s per core = {per_core / floor:.2f}x the floor "
          f"({n / (seconds['catalog'] + seconds['ingest']) / cores / floor:.2f}x with the catalog start)")
    least = min(seconds["py-parse"], seconds["jvm-parse"]) + seconds["write"]
    print(f"the cheaper parse alone + writing the bytes once: {least:.1f}s = {least / budget:.2f}x the budget")


if __name__ == "__main__":
    main()
