"""The CLI as an operator meets it: version, resolved config, per-command help, SQL output, and
what it turns a fault into (one line, its own exit code, tables at their last commit)."""
import csv
import dataclasses
import io
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
from tests.lakehouse.test_session import JVM_NOTICES


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
    assert "writes: cluster_stats, super_clusters" in helped.stdout and "\n  prune.rule = paper\n" in helped.stdout
    # The values the profiles and --set resolve, not the code's defaults (it listed budget [64, 32, 16]).
    helped = climb("search", {"proxy.steps": "100"}, "--help", "--method", "regmix").stdout
    assert "\n  search.budget = [8, 4, 2]  (default [64, 32, 16])\n" in helped
    assert "\n  proxy.steps = 100  (default 300)\n" in helped and "\n  search.method = regmix  (default climb)\n" in helped
    assert "\n  search.seed = 42\n" in helped


def test_a_stage_run_too_early_on_a_new_lakehouse_creates_nothing(tmp_path):
    done = climb("prune", {"lakehouse.root": str(tmp_path / "lake")})
    assert done.returncode == 3
    # One short line naming the stage to start from (it listed each table with its own stage: 700
    # characters for export).
    assert done.stderr.strip().splitlines() == [
        "climb-spark: precondition: prune reads centroids, doc_clusters, doc_features and documents, which do not "
        "exist yet: run `climb-spark ingest` and the stages after it first"]
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
    # Arrays, maps and nulls as the reading tool parses them (they were numpy's text, wrapped
    # over lines inside one CSV field, and strings in JSON).
    nested = ("SELECT transform(sequence(1, 12), i -> i / 7d) AS w, map('k', 1) AS m, CAST(NULL AS string) AS n, "
              "array('a,b', 'c\"d') AS s")
    weights = [i / 7 for i in range(1, 13)]
    [row] = [json.loads(line) for line in climb("sql", sets, nested, "--format", "json").stdout.splitlines()]
    assert row == {"w": pytest.approx(weights), "m": {"k": 1}, "n": None, "s": ["a,b", 'c"d']}
    text = climb("sql", sets, nested, "--format", "csv").stdout
    header, fields = list(csv.reader(io.StringIO(text)))
    assert text.count("\n") == 2 and header == ["w", "m", "n", "s"]
    assert (json.loads(fields[0]), json.loads(fields[1]), fields[2], json.loads(fields[3])) == (
        pytest.approx(weights), {"k": 1}, "", ["a,b", 'c"d'])
    # Not a terminal: Spark's progress bars stay out of the log.
    progress = climb("sql", sets, "SET spark.ui.showConsoleProgress", "--format", "csv")
    assert progress.stdout.splitlines()[1] == "spark.ui.showConsoleProgress,false"
    # A missing table: the one line, no JSON log of the Java stack before it (8.5 KB of it).
    bad = climb("sql", sets, "SELECT * FROM climb.no_such_table")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    [line] = [ln for ln in bad.stderr.splitlines() if not ln.startswith(JVM_NOTICES)]
    assert line.startswith("climb-spark: sql error: [TABLE_OR_VIEW_NOT_FOUND]")
    # It only reads, unless told --write; reading an empty lakehouse creates no catalog.
    delete = climb("sql", sets, "DELETE FROM climb.documents WHERE true")
    assert delete.returncode == 2 and delete.stderr.strip().splitlines()[-1] == (
        "climb-spark: sql error: this statement changes the lakehouse (DeleteFromTable); `climb-spark sql` only "
        "reads unless given --write")
    reported = climb("report", {**sets, "mlflow.tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"})
    assert reported.returncode == 0 and (tmp_path / "lake" / "report.html").is_file(), reported.stderr[-2000:]
    assert not (tmp_path / "lake" / "metastore_db").exists()  # it was 3.9 MB of Derby
    made = climb("sql", sets, "CREATE TABLE default.t USING DELTA AS SELECT 1 AS a", "--write")
    assert made.returncode == 0, made.stderr[-2000:]
    insert = climb("sql", sets, "WITH v AS (SELECT 2 AS a) INSERT INTO default.t SELECT * FROM v")
    assert insert.returncode == 2 and "(InsertIntoStatement)" in insert.stderr
    assert climb("sql", sets, "SELECT sum(a) AS s FROM default.t", "--format", "csv").stdout == "s\n1\n"


READS = ["SELECT 1", "WITH a AS (SELECT 1) SELECT * FROM a", "VALUES (1)", "TABLE x", "SHOW TABLES IN climb",
         "SHOW DATABASES", "SHOW COLUMNS IN x", "SHOW CREATE TABLE x", "SHOW TBLPROPERTIES x", "DESCRIBE x",
         "DESCRIBE EXTENDED x", "DESCRIBE DETAIL x", "DESCRIBE HISTORY x", "EXPLAIN SELECT 1", "SET a.b",
         "SELECT * FROM x VERSION AS OF 1", "SHOW FUNCTIONS", "DESCRIBE FUNCTION abs"]
WRITES = ["DELETE FROM x WHERE true", "UPDATE x SET a = 1", "MERGE INTO x USING y ON x.a = y.a WHEN MATCHED THEN DELETE",
          "INSERT INTO x VALUES (1)", "INSERT OVERWRITE x SELECT 1", "WITH a AS (SELECT 1) INSERT INTO x SELECT * FROM a",
          "CREATE TABLE t (a int)", "CREATE TABLE t AS SELECT 1", "DROP TABLE x", "TRUNCATE TABLE x", "OPTIMIZE x",
          "VACUUM x", "ALTER TABLE x ADD COLUMNS (b int)", "COMMENT ON TABLE x IS 'y'", "RESTORE TABLE x TO VERSION AS OF 1",
          "CREATE TABLE a SHALLOW CLONE x", "CREATE DATABASE d", "CACHE TABLE x", "REFRESH TABLE x",
          "EXECUTE IMMEDIATE 'DROP TABLE x'", "CREATE TEMP VIEW v AS SELECT 1"]


def test_only_statements_that_read_run_without_write(spark):
    from climb_spark import sql

    assert [s for s in READS if sql.writes(spark, s)] == []
    assert [s for s in WRITES if not sql.writes(spark, s)] == []
