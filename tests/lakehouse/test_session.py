"""A job's session: a local lakehouse serves one job at a time and a second job is told who holds
it; the log4j file is found and applied; a job's temporary files stay under its lakehouse."""
import json
import os
import subprocess
import sys
import textwrap
import time

from tests.conftest import ROOT, cli_args, climb


def test_a_second_job_on_a_local_lakehouse_is_one_line_naming_the_holder(tmp_path):
    root = tmp_path / "lake"
    root.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from climb_spark.lakehouse.session import hold_local_lakehouse
        hold_local_lakehouse(Path({str(root)!r}))
        print("held", flush=True)
        time.sleep(60)
    """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        (tmp_path / "in").mkdir()
        done = climb("ingest", {"lakehouse.root": str(root), "ingest.input": str(tmp_path / "in")})
        assert done.returncode == 6, done.stderr[-2000:]
        lines = done.stderr.strip().splitlines()
        assert lines == [lines[0]] and lines[0].startswith(
            f"climb-spark: lakehouse busy: the local lakehouse {root} is in use by another job (pid {holder.pid}")
        assert not (root / "metastore_db").exists()  # refused before a JVM touched the catalog
    finally:
        holder.kill()
        holder.wait()
    # Once the holder is gone (killed, not cleanly stopped), the lakehouse is free again.
    again = climb("ingest", {"lakehouse.root": str(root), "ingest.input": str(tmp_path / "in"),
                             "spark.master": "local[1]"})
    assert again.returncode == 0, again.stderr[-2000:]


# What the JVM itself prints, outside log4j: the option the test gives it, and the vector module
# Spark's launcher always adds (`--add-modules=jdk.incubator.vector`).
JVM_NOTICES = ("Picked up JAVA_TOOL_OPTIONS: ", "WARNING: Using incubator modules: jdk.incubator.vector")


def test_the_log4j_file_is_found_through_the_package_and_applied(spark):
    from climb_spark.lakehouse.session import LOG4J

    assert LOG4J.is_file()
    context = spark._jvm.org.apache.logging.log4j.LogManager.getContext(False)
    assert context.getConfiguration().getConfigurationSource().getLocation() == str(LOG4J)


def test_a_job_prints_only_its_own_lines_and_keeps_its_files_under_the_lakehouse(tmp_path):
    """Issue 28: every command began with two log4j `Reconfiguration failed` errors and Spark's
    default WARN lines (the log4j path named a folder that had moved), and left an empty
    `/tmp/<uuid>_resources` folder (Hive's session folder) behind. The JVM's and Python's default
    temporary folder is a folder of the test's here, which must stay empty."""
    system_tmp, root = tmp_path / "system-tmp", tmp_path / "lake"
    system_tmp.mkdir()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text("\n".join(json.dumps({"text": f"document number {i}"}) for i in range(2)))
    env = {**os.environ, "JAVA_TOOL_OPTIONS": f"-Djava.io.tmpdir={system_tmp}", "TMPDIR": str(system_tmp)}
    args = cli_args({"lakehouse.root": str(root), "ingest.input": str(tmp_path / "in"), "spark.master": "local[1]"})

    def climb_env(*command):
        done = subprocess.run([sys.executable, "-m", "climb_spark", *command, *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert [line for line in done.stderr.splitlines() if not line.startswith(JVM_NOTICES)] == []
        return done

    assert climb_env("ingest").stdout.splitlines()[0] == "ingest: started"
    assert climb_env("sql", "SELECT count(*) AS n FROM climb.documents", "--format", "csv").stdout == "n\n2\n"
    deadline = time.monotonic() + 60  # the JVM removes its own folders as it exits, after Python
    while list(system_tmp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert list(system_tmp.iterdir()) == []
    # Hive's session folder of the last job only: each job clears the folder as it opens the lakehouse.
    [left] = (root / "tmp").iterdir()
    assert left.name.endswith("_resources")
