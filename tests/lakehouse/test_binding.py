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


def _sql(root, statement):
    return climb("sql", {"lakehouse.root": str(root), "ingest.input": str(root / "in"), "spark.master": "local[1]"},
                 statement, "--format", "json")


def _said(done):
    """The lines climb-spark itself printed to stderr (Spark's start-up warnings aside)."""
    return [ln for ln in done.stderr.splitlines() if ln.startswith("climb-spark:")]


def _quiet(done):
    assert "Traceback" not in done.stderr and not [ln for ln in done.stderr.splitlines() if ln.startswith("\tat ")]


def test_tables_changed_behind_the_catalogs_back_are_repaired_or_named_in_one_line(tmp_path):
    """Issue 29: a table folder deleted by hand while the catalog names it ended every later command
    in a 35-line DELTA_TABLE_NOT_FOUND traceback; a commit cut short, in 332 lines of Java."""
    root = tmp_path / "lake"
    _write_docs(root / "in", "a.jsonl", ["First document.", "Second document.", "First document."])
    _ingest(root)
    db = root / "warehouse" / "climb.db"

    # A table folder deleted by hand: its entry goes, and the stage that writes it writes it again.
    shutil.rmtree(db / "duplicates")
    done = _ingest(root)
    _quiet(done)
    assert _said(done) == [f"climb-spark: table climb.duplicates: its folder under {root}/warehouse is gone (deleted or "
                           "moved by hand), so its catalog entry named nothing and was removed; the stage that writes "
                           "it (`climb-spark stages`) writes it again, and a folder put back is registered again"]
    assert "2 documents (0 new) + 1 duplicates" in _summary(done)
    assert json.loads(_sql(root, "SELECT count(*) AS n FROM climb.duplicates").stdout) == {"n": 1}

    # A table folder moved away and back: the entry dropped meanwhile, the folder registered again.
    shutil.move(str(db / "documents"), str(tmp_path / "documents-aside"))
    done = _sql(root, "SHOW TABLES IN climb")
    assert done.returncode == 0 and "climb.documents: its folder" in done.stderr
    assert "documents" not in done.stdout
    shutil.move(str(tmp_path / "documents-aside"), str(db / "documents"))
    done = _sql(root, "SELECT count(*) AS n FROM climb.documents")
    _quiet(done)
    assert done.returncode == 0 and json.loads(done.stdout) == {"n": 2}
    assert _said(done) == ["climb-spark: table climb.documents: its folder held a Delta table the catalog did not "
                           "name; registered it again"]

    # The latest commit of a table cut short: one line naming it and the way back, exit 3.
    commit = db / "documents" / "_delta_log" / "00000000000000000001.json"
    original = commit.read_bytes()
    commit.write_bytes(original[: len(original) // 2])
    done = _sql(root, "SELECT count(*) AS n FROM climb.documents")
    _quiet(done)
    assert done.returncode == 3
    assert _said(done) == [f"climb-spark: precondition: table climb.documents: its Delta commit {commit} is not JSON "
                           "at line 1 (cut short or overwritten), so the table cannot be read: `climb-spark repair` "
                           "moves it aside (the table goes back to version 0), then re-run the stage that writes the "
                           "table"]
    fixed = climb("repair", {"lakehouse.root": str(root)})
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert fixed.stdout.splitlines() == [f"repair: table climb.documents: its cut-short commit 00000000000000000001 moved "
                                         f"to {root}/repaired/climb.documents; the table is back at version 0: re-run "
                                         "the stage that writes it"]
    assert (root / "repaired" / "climb.documents" / commit.name).read_bytes() == original[: len(original) // 2]
    assert not list(commit.parent.glob("*00000000000000000001.*"))  # its checksums went with it
    done = _sql(root, "SELECT count(*) AS n FROM climb.documents")
    assert done.returncode == 0 and json.loads(done.stdout) == {"n": 0}
    assert "that a failed write left uncommitted" in done.stderr  # the cut commit's data files
    assert "2 documents (2 new)" in _summary(_ingest(root))
