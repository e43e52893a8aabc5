"""The driver JVM's class-data archive (JDK CDS): the classes a local job loads (Spark's, Hive's,
Derby's, the JDK's), parsed and verified once by `climb-spark resolve-jars` and then mapped
from one file by every later local start instead of loaded one by one (BENCHMARKS.md: ~2.5 s
less per command). Classes from spark.jars (Delta) come through Spark's own class loader, which
the JDK cannot archive; they load as before.

An archive that no longer matches (another JDK build, a reinstalled pyspark) is ignored by the
JVM, which then loads classes as it would without one; `resolve-jars` writes a fresh one."""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from climb_spark.config import Config
from climb_spark.errors import ConfigError


def java_options(archive: str | None, write: bool = False) -> list[str]:
    """The driver's JVM options that use (or, with `write`, dump at exit) the archive. The log
    options keep a stale archive's warning off every job's output."""
    if not archive:
        return []
    path = Path(archive).resolve()
    if write:
        return [f"-XX:ArchiveClassesAtExit={path}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
    if not path.is_file():
        return []
    return [f"-XX:SharedArchiveFile={path}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]


def write(profiles: list[str], overrides: list[str], archive: str) -> int:
    """Run a small local Delta job (a table created, merged into, read back and described in the
    local catalog) in a JVM of its own that dumps the classes it loaded when it exits; the
    archive replaces the old one only once whole. Its size in bytes."""
    final = Path(archive).resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(final.name + ".tmp")
    partial.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="climb-class-archive-") as tmp:
        sets = [*overrides, f"lakehouse.root={tmp}", f"spark.metastore_dir={tmp}", "spark.master=local[1]",
                f"spark.class_archive={partial}"]
        args = [a for p in profiles for a in ("--conf", p)] + [a for s in sets for a in ("--set", s)]
        done = subprocess.run([sys.executable, "-m", __name__, *args], capture_output=True, text=True)
    if done.returncode != 0 or not partial.is_file() or partial.stat().st_size == 0:
        partial.unlink(missing_ok=True)
        raise ConfigError(f"spark.class_archive: the JVM did not write {final} "
                          f"(exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    partial.replace(final)
    return final.stat().st_size


def _exercise(cfg: Config) -> None:
    from climb_spark.lakehouse.session import build_session

    spark = build_session(cfg, write_class_archive=True)
    spark.sql("CREATE SCHEMA IF NOT EXISTS archive_warmup")
    spark.range(100).selectExpr("id", "CAST(id AS string) AS s").write.format("delta").saveAsTable("archive_warmup.t")
    spark.sql("MERGE INTO archive_warmup.t t USING (SELECT id, 'x' AS s FROM range(50, 150)) u ON t.id = u.id "
              "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")
    spark.sql("SELECT s, count(*) FROM archive_warmup.t GROUP BY s ORDER BY s").collect()
    spark.sql("DESCRIBE HISTORY archive_warmup.t").collect()
    spark.range(10).mapInPandas(lambda it: it, "id long").collect()
    jvm = spark.sparkContext._gateway.proc
    spark.stop()
    jvm.stdin.close()  # how pyspark tells its JVM to exit; the archive is written on the way out
    jvm.wait(600)


if __name__ == "__main__":
    from climb_spark.config import load

    ap = argparse.ArgumentParser()
    ap.add_argument("--conf", action="append", default=[])
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    _exercise(load(args.conf, args.set))
