"""A local job's fixed start-up: a fresh process opening the lakehouse (session, catalog, a Delta
table read), with the driver's class archive (`spark.class_archive`) against without it.

    .venv/bin/python benchmarks/jvm_start.py [--reps 5]

Needs the archive `climb-spark resolve-jars` writes (.cache/spark-driver.jsa). The two variants
alternate, so a busy moment of the machine costs both alike.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from climb_spark.config import load  # noqa: E402

OPEN = """
import sys
from climb_spark.config import load
from climb_spark.lakehouse.session import build_session
spark = build_session(load(["conf/local.yaml"], sys.argv[1:]))
spark.sql("CREATE SCHEMA IF NOT EXISTS climb")
if not spark.catalog.tableExists("climb.bench"):
    spark.range(1000).write.format("delta").saveAsTable("climb.bench")
assert spark.table("climb.bench").count() == 1000
spark.stop()
"""


def timed_open(lake: Path, archive: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", OPEN, f"lakehouse.root={lake}", "spark.master=local[2]",
                    f"spark.class_archive={archive}"], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    archive = load([ROOT / "conf" / "local.yaml"]).spark.class_archive
    if not archive or not (ROOT / archive).is_file():
        sys.exit(f"no class archive at {archive}: run `climb-spark resolve-jars` first")
    with tempfile.TemporaryDirectory(prefix="climb-bench-") as tmp:
        lake = Path(tmp) / "lake"
        timed_open(lake, "none.jsa")  # creates the table; not timed
        times: dict[str, list[float]] = {"without": [], "with": []}
        for _ in range(args.reps):
            times["without"].append(timed_open(lake, "none.jsa"))  # a missing file: no archive
            times["with"].append(timed_open(lake, archive))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:>8} class archive: median {med[k]:5.2f} s  ({', '.join(f'{t:.2f}' for t in v)})")
    print(f"process start to a Delta read: {med['without'] - med['with']:.2f} s less, "
          f"ratio {med['with'] / med['without']:.2f}x")


if __name__ == "__main__":
    main()
