"""A copied, moved or restored local lakehouse writes into its own tables, never the original's."""
import json
import shutil
import subprocess

from tests.conftest import climb, query


def _write_docs(folder, name, texts):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(json.dumps({"text": t, "source": "unit"}) + "\n" for t in texts))


def _logs(root):
    """Every commit of every table of a lakehouse, by table and file name: what a write would change."""
    return {f"{log.parent.name}/{c.name}": c.read_bytes()
            for log in sorted((root / "warehouse" / "climb.db").glob("*/_delta_log")) for c in log.glob("*.json")}


def _ingest(root):
    done = climb("ingest", {"lakehouse.root": str(root), "ingest.input": str(root / "in"), "spark.master": "local[1]"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _summary(done):
    return next(line for line in done.stdout.splitlines() if line.startswith("ingest "))


def test_a_copied_moved_or_restored_lakehouse_writes_into_its_own_tables(tmp_path):
    """Issue 30: `cp -a` of a lakehouse, then an ingest on the copy committed into the original's
    documents (its Derby catalog stores absolute locations). Each of copy, move and restore now
    re-registers its tables at its own folders first; the original's Delta logs stay byte for byte."""
    orig = tmp_path / "orig"
    _write_docs(orig / "in", "a.jsonl", [f"Original document number {i}." for i in range(20)] + ["Original document number 3."])
    _ingest(orig)
    original_logs = _logs(orig)
    assert set(original_logs) == {"documents/00000000000000000000.json", "documents/00000000000000000001.json",
                                  "duplicates/00000000000000000000.json", "duplicates/00000000000000000001.json",
                                  "rejects/00000000000000000000.json"}
    subprocess.run(["tar", "-C", str(tmp_path), "-czf", str(tmp_path / "backup.tgz"), "orig"], check=True)

    # A copy, with a file added to its corpus.
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(orig), str(copy)], check=True)
    _write_docs(copy / "in", "b.jsonl", ["Copied document one.", "Copied document two.", "Original document number 5."])
    done = _ingest(copy)
    assert f"this lakehouse was copied, moved or restored from {orig}" in done.stderr
    assert "3 re-registered" in done.stderr and "climb.documents" in done.stderr
    # Positions are absolute file names, so the copied files' records are duplicates of the rows
    # the copy holds from the original's files: the copy's documents table was read whole.
    assert "24 input records from 2 files (2 splits) = 2 documents (2 new) + 22 duplicates" in _summary(done)
    assert _logs(orig) == original_logs
    assert len([k for k in _logs(copy) if k.startswith("documents/")]) == 3

    # The copy moved elsewhere, the folder it came from gone.
    moved = tmp_path / "moved"
    shutil.move(str(copy), str(moved))
    _write_docs(moved / "in", "c.jsonl", ["Moved document."])
    done = _ingest(moved)
    assert f"copied, moved or restored from {copy}" in done.stderr
    assert "25 input records from 3 files (3 splits) = 1 documents (1 new) + 24 duplicates" in _summary(done)
    assert _logs(orig) == original_logs
    # Opened again, it is bound already: nothing to say, and the tables are its own.
    located = query({"lakehouse.root": str(moved)}, """
        out["where"] = [spark.sql(f"DESCRIBE DETAIL climb.{t}").first()["location"] for t in ("documents", "rejects")]
        out["docs"] = spark.table("climb.documents").count()
        spark.sql("CREATE TABLE climb.later (x int) USING DELTA")
        out["new"] = spark.sql("DESCRIBE DETAIL climb.later").first()["location"]
    """)
    assert located["where"] == [f"file:{moved}/warehouse/climb.db/documents", f"file:{moved}/warehouse/climb.db/rejects"]
    assert located["docs"] == 23 and located["new"] == f"file:{moved}/warehouse/climb.db/later"
    assert not (orig / "warehouse" / "climb.db" / "later").exists()

    # The original moves on; the backup taken before is restored beside it and ingests its own file.
    _write_docs(orig / "in", "d.jsonl", ["Original document, later."])
    _ingest(orig)
    original_logs = _logs(orig)
    (tmp_path / "restored").mkdir()
    subprocess.run(["tar", "-C", str(tmp_path / "restored"), "-xzf", str(tmp_path / "backup.tgz")], check=True)
    restored = tmp_path / "restored" / "orig"
    _write_docs(restored / "in", "e.jsonl", ["Restored document."])
    done = _ingest(restored)
    assert "22 input records from 2 files (2 splits) = 1 documents (1 new) + 21 duplicates" in _summary(done)
    assert _logs(orig) == original_logs


def test_a_copy_that_lacks_a_table_folder_is_refused_before_anything_changes(tmp_path):
    orig = tmp_path / "orig"
    _write_docs(orig / "in", "a.jsonl", ["One document.", "One document."])
    _ingest(orig)
    original_logs = _logs(orig)
    partial = tmp_path / "partial"
    subprocess.run(["cp", "-a", str(orig), str(partial)], check=True)
    shutil.rmtree(partial / "warehouse" / "climb.db" / "duplicates")
    _write_docs(partial / "in", "b.jsonl", ["Another document."])

    done = climb("ingest", {"lakehouse.root": str(partial), "ingest.input": str(partial / "in")})
    assert done.returncode == 3, done.stderr[-3000:]
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("climb-spark:")]
    assert line.startswith(f"climb-spark: precondition: lakehouse {partial}: its catalog names the tables of the "
                           f"lakehouse at {orig}") and f"climb.duplicates ({partial}/warehouse" in line
    assert "Traceback" not in done.stderr
    assert _logs(orig) == original_logs
    assert not list((partial / "warehouse" / "climb.db" / "documents" / "_delta_log").glob("*2.json"))
    again = climb("ingest", {"lakehouse.root": str(partial), "ingest.input": str(partial / "in")})
    assert again.returncode == 3 and line in again.stderr  # the catalog was left as it was
