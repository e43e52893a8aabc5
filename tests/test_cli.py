"""What the CLI turns a fault into: one line, its own exit code, tables at their last commit."""
import json
import os
import random
import subprocess

import pytest

from tests.conftest import climb, query


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

    # With room again, the tables are as before the failed write (empty), and a re-run completes.
    subprocess.run(["mount", "-o", "remount,size=512m", str(small_disk)], check=True)
    counts = query(sets, """
        out.update({t: spark.table(f"climb.{t}").count() for t in ("documents", "rejects", "duplicates")})
    """)
    assert counts == {"documents": 0, "rejects": 0, "duplicates": 0}
    again = climb("ingest", sets)
    assert again.returncode == 0, again.stderr[-3000:]
    assert query(sets, 'out["n"] = spark.table("climb.documents").count()')["n"] == 20000
    assert os.path.ismount(small_disk)
