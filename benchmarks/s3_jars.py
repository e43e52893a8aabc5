"""The object-store profile's jars: hadoop-aws 3.5.0 with the AWS SDK modules it uses
(conf/jars/s3-pom.xml, what `resolve-jars` puts in .cache/jars-s3) against the SDK's shaded
`bundle` that hadoop-aws asks for: their size, and a fresh process opening a lakehouse on a real
S3 store (SeaweedFS on loopback, tests/object_store.py) and writing, merging into and reading a
Delta table there.

    .venv/bin/python benchmarks/s3_jars.py [--reps 3]

Resolves the bundle variant into a temporary folder first (686 MB from Maven Central). The two
variants alternate, so a busy moment of the machine costs both alike.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from climb_spark.lakehouse import jars  # noqa: E402
from tests.object_store import SeaweedFS  # noqa: E402

BUNDLE_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>bench</groupId><artifactId>bundle</artifactId><version>1</version><packaging>pom</packaging>
<dependencies><dependency><groupId>org.apache.hadoop</groupId><artifactId>hadoop-aws</artifactId>
<version>3.5.0</version></dependency></dependencies></project>"""

JOB = """
import sys, time
started = time.perf_counter()
from climb_spark.config import load
from climb_spark.lakehouse.session import build_session
spark = build_session(load(["conf/local.yaml", "conf/s3.yaml", "tests/short_jobs.yaml"], sys.argv[1:]))
print("SESSION", time.perf_counter() - started)
spark.sql("CREATE SCHEMA IF NOT EXISTS climb")
spark.range(1000).selectExpr("id", "CAST(id AS string) AS s").write.format("delta").mode("overwrite").saveAsTable("climb.t")
spark.sql("MERGE INTO climb.t t USING (SELECT id, 'x' AS s FROM range(500, 1500)) u ON t.id = u.id "
          "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")
assert spark.table("climb.t").count() == 1500
spark.stop()
"""


def timed(jars_dir: str, store: SeaweedFS, tmp: Path, tag: str) -> tuple[float, float]:
    sets = [f"{k}={v}" for k, v in store.settings().items()] + [
        f"spark.jars_dir={jars_dir}", f"lakehouse.root=s3a://bench/{tag}", f"spark.metastore_dir={tmp / tag}",
        "spark.master=local[2]"]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", JOB, *sets], cwd=ROOT, env=store.env(), capture_output=True,
                          text=True, check=True)
    total = time.perf_counter() - started
    return float(done.stdout.split("SESSION", 1)[1].split()[0]), total


def size(folder: str) -> float:
    return sum(p.stat().st_size for p in Path(folder).glob("*.jar")) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    modules = str(ROOT / ".cache" / "jars-s3")
    if not any(Path(modules).glob("hadoop-aws-*.jar")):
        sys.exit("no S3 jars: run `climb-spark resolve-jars --conf conf/local.yaml --conf conf/s3.yaml` first")
    with tempfile.TemporaryDirectory(prefix="climb-bench-") as tmp_:
        tmp = Path(tmp_)
        (tmp / "pom.xml").write_text(BUNDLE_POM)
        bundle = str(tmp / "jars-bundle")
        jars.resolve([str(ROOT / "conf" / "jars" / "pom.xml"), str(tmp / "pom.xml")], bundle)
        store = SeaweedFS(tmp / "seaweedfs").start()
        os.environ.update({k: v for k, v in store.env().items() if k.startswith("AWS_")})
        try:
            store.filesystem().create_dir("bench")
            times: dict[str, list[tuple[float, float]]] = {"modules": [], "bundle": []}
            for i in range(args.reps):
                times["modules"].append(timed(modules, store, tmp, f"modules-{i}"))
                times["bundle"].append(timed(bundle, store, tmp, f"bundle-{i}"))
        finally:
            store.stop()
        for name, folder in (("modules", modules), ("bundle", bundle)):
            session = statistics.median(t[0] for t in times[name])
            total = statistics.median(t[1] for t in times[name])
            print(f"{name:>8}: {size(folder):6.0f} MB of jars; session {session:5.2f} s, whole job {total:5.2f} s "
                  f"(median of {args.reps}: {', '.join(f'{t[1]:.1f}' for t in times[name])})")


if __name__ == "__main__":
    main()
