"""A local lakehouse serves one job at a time, and a second job is told who holds it."""
import subprocess
import sys
import textwrap

from tests.conftest import ROOT, climb


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
