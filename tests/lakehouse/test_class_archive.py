"""The driver's class archive: written by a JVM of its own, then serving Spark's classes to a
JVM with the same class path; a stale one is ignored quietly."""
import os
import subprocess
from pathlib import Path

import pyspark

from climb_spark.lakehouse import class_archive
from climb_spark.lakehouse.session import spark_conf
from tests.conftest import JARS_DIR, PROFILES, ROOT, local_config

SPARK_SUBMIT = Path(pyspark.__file__).parent / "bin" / "spark-submit"


def java(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["java", *args], capture_output=True, text=True, timeout=120)


def test_the_options_use_an_archive_only_once_it_exists(tmp_path):
    path = tmp_path / "driver.jsa"
    assert class_archive.java_options(None) == [] and class_archive.java_options(str(path)) == []
    assert class_archive.java_options(str(path), write=True)[0] == f"-XX:ArchiveClassesAtExit={path}"
    path.write_bytes(b"x")
    cfg = local_config(tmp_path, **{"spark.class_archive": str(path)})
    assert f"-XX:SharedArchiveFile={path}" in spark_conf(cfg)["spark.driver.extraJavaOptions"].split()


def test_a_profiles_driver_java_options_come_after_climb_sparks_own(tmp_path):
    cfg = local_config(tmp_path, **{"spark.driver_java_options": ["-XX:TieredStopAtLevel=1", "-Xss4m"]})
    opts = spark_conf(cfg)["spark.driver.extraJavaOptions"].split()
    assert opts[-2:] == ["-XX:TieredStopAtLevel=1", "-Xss4m"] and opts[0].startswith("-Dlog4j.configurationFile=")


def test_a_written_archive_serves_sparks_classes_and_a_stale_one_is_ignored_quietly(tmp_path):
    archive = tmp_path / "driver.jsa"
    size = class_archive.write([str(ROOT / p) for p in PROFILES], [f"spark.jars_dir={JARS_DIR}"], str(archive))
    assert size == archive.stat().st_size > 10_000_000 and not list(tmp_path.glob("*.tmp"))

    # The JVM pyspark's launcher starts, class path and all, with the options a job would give it.
    env = {k: v for k, v in os.environ.items() if k != "SPARK_HOME"}
    env["SPARK_SUBMIT_OPTS"] = " ".join([*class_archive.java_options(str(archive)), "-Xlog:class+load=info"])
    loaded = subprocess.run([str(SPARK_SUBMIT), "--version"], env=env, capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    spark_classes = [line for line in loaded.stdout.splitlines() if "] org.apache.spark." in line]
    shared = [line for line in spark_classes if line.endswith("source: shared objects file (top)")]
    from_jars = [line for line in spark_classes if " source: file:" in line]
    assert len(shared) > 100 and not from_jars, from_jars[:5] or loaded.stdout[-2000:]

    archive.write_bytes(b"not an archive" * 1000)  # another JDK's, say
    stale = java(*class_archive.java_options(str(archive)), "-version")
    assert stale.returncode == 0 and "cds" not in stale.stderr and "archive" not in stale.stderr
