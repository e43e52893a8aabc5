"""The CLI as an operator meets it: version, resolved config, per-command help, SQL output, and
what it turns a fault into (one line, its own exit code, tables at their last commit)."""
import dataclasses
import json
import os
import random
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from climb_spark.config import load
from climb_spark.lakehouse import orphans

from tests.conftest import PROFILES, climb, query


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs (needs root; skipped where mounting is not allowed)."""
    where = tmp_path / "disk"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_full_disk_is_one_line_exit_7_and_leaves_the_tables_at_their_last_commit(tmp_path, small_disk):
    rnd = random.Random(1)
    (tmp_path / "in").mkdir()
    with open(tmp_path / "in" / "a.jsonl", "w") as f:  # 40 MB that does not compress
        for _ in range(20000):
            f.write(json.dumps({"text": " ".join(rnd.randbytes(8).hex() for _ in range(120))}) + "\n")
    sets = {"lakehouse.root": str(small_disk / "lake"), "ingest.input": str(tmp_path / "in"),
            "spark.master": "local[2]"}
    done = climb("ingest", sets)
    assert done.returncode == 7, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("climb-spark: disk full: no space left on device (") and "Traceback" not in done.stderr

    # The failed write's data files are in the table's folder, named by no commit.
    documents = small_disk / "lake" / "warehouse" / "climb.db" / "documents"

    def uncommitted() -> list[Path]:
        named = orphans.committed_files(documents / "_delta_log")
        return [p for p in documents.rglob("part-*.parquet") if p.relative_to(documents).as_posix() not in named]

    assert uncommitted(), sorted(documents.rglob("*"))

    # With room again, the tables are as before the failed write (empty), and a re-run completes;
    # the next job on the lakehouse removed those files as it took the lakehouse.
    subprocess.run(["mount", "-o", "remount,size=512m", str(small_disk)], check=True)
    counts = query(sets, """
        out.update({t: spark.table(f"climb.{t}").count() for t in ("documents", "rejects", "duplicates")})
    """)
    assert counts == {"documents": 0, "rejects": 0, "duplicates": 0}
    assert uncommitted() == []
    again = climb("ingest", sets)
    assert again.returncode == 0, again.stderr[-3000:]
    assert query(sets, 'out["n"] = spark.table("climb.documents").count()')["n"] == 20000
    assert os.path.ismount(small_disk)


def test_version_resolved_config_and_stage_help():
    version = climb("--version", {})
    assert version.returncode == 0 and re.fullmatch(r"climb-spark \S+ \(pyspark 4\.\S+, delta-spark \S+\)\n",
                                                      version.stdout)
    shown = climb("config", {"cluster.k": "12"}, "--show")
    assert shown.returncode == 0, shown.stderr
    resolved = yaml.safe_load(shown.stdout)
    assert resolved["cluster"]["k"] == 12
    assert resolved == dataclasses.asdict(load(PROFILES, ["cluster.k=12"]))
    helped = climb("prune", {}, "--help")
    assert "reads:  centroids, doc_clusters, doc_features, documents" in helped.stdout
    assert "writes: cluster_stats, super_clusters" in helped.stdout and "prune.rule (paper)" in helped.stdout


def test_a_stage_run_too_early_on_a_new_lakehouse_creates_nothing(tmp_path):
    done = climb("prune", {"lakehouse.root": str(tmp_path / "lake")})
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [
        "climb-spark: precondition: prune reads centroids, which does not exist yet: run `climb-spark cluster` "
        "first; prune reads doc_clusters, which does not exist yet: run `climb-spark cluster` first; prune reads "
        "doc_features, which does not exist yet: run `climb-spark embed` first; prune reads documents, which does "
        "not exist yet: run `climb-spark ingest` first"]
    assert not (tmp_path / "lake").exists()  # no metastore, no table, no folder
    # (with the MLflow store and the models set apart from the remote root, which has its own errors)
    remote = climb("sql", {"lakehouse.root": "s3://bucket/lake", "spark.local_catalog": "true",
                           "mlflow.tracking_uri": "http://mlflow:5000", "quality.model_dir": str(tmp_path / "q")},
                   "SELECT 1")
    assert remote.returncode == 2 and remote.stderr.strip().splitlines() == [
        "climb-spark: config error: lakehouse.root: s3://bucket/lake is not a local folder, and "
        "spark.local_catalog (embedded Derby) keeps its metastore there; use a local root, set "
        "spark.metastore_dir to a folder on the driver's disk, or set spark.local_catalog=false with a shared "
        "metastore (Glue, Unity Catalog)"]


def test_sql_prints_csv_json_and_a_one_line_error(tmp_path):
    sets = {"lakehouse.root": str(tmp_path / "lake"), "spark.master": "local[1]"}
    statement = "SELECT 1 AS a, 'x' AS b, current_date() IS NOT NULL AS c"
    as_json = climb("sql", sets, statement, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr[-2000:]
    assert [json.loads(line) for line in as_json.stdout.splitlines()] == [{"a": 1, "b": "x", "c": True}]
    as_csv = climb("sql", sets, "SELECT id, id * 2 AS twice FROM range(3)", "--format", "csv")
    assert as_csv.stdout.splitlines() == ["id,twice", "0,0", "1,2", "2,4"]
    # Not a terminal: Spark's progress bars stay out of the log.
    progress = climb("sql", sets, "SET spark.ui.showConsoleProgress", "--format", "csv")
    assert progress.stdout.splitlines()[1] == "spark.ui.showConsoleProgress,false"
    bad = climb("sql", sets, "SELECT * FROM climb.no_such_table")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("climb-spark: sql error: [TABLE_OR_VIEW_NOT_FOUND]")
