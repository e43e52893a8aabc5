"""Annotate and train-quality through Spark, Delta and a real MLflow store."""
import json
import re
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from climb_spark.config import CorpusConfig
from climb_spark.corpus import build
from climb_spark.errors import InputError, ServiceError
from climb_spark.lakehouse.delta import table_version
from climb_spark.lakehouse.tables import ANNOTATIONS, DOC_CLUSTERS, DOCUMENTS, Lakehouse
from climb_spark.rubric import CRITERIA
from climb_spark.stages.ingest import stage as ingest
from climb_spark.stages.quality import annotate, classifiers, train
from tests.chat_server import ChatServer, DeadEndpoint


def write_docs(folder: Path, texts):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "docs.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))


def test_heuristic_annotate_then_train_logs_to_mlflow(spark, cfg, tmp_path):
    cfg = cfg.replace({"quality.model_dir": str(tmp_path / "q"), "quality.holdout_fraction": 0.25,
                       "quality.quantize": True})
    # A full model left by an earlier run with quality.quantize=false: not kept, shipped or logged.
    stale = classifiers.model_path(cfg.quality.model_dir, "quality", False)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old full model")
    build(CorpusConfig(output=cfg.ingest.input, max_docs=200, seed=9))
    ingest.run(spark, cfg)
    first = annotate.run(spark, cfg)
    assert (first.teacher, first.sampled, first.pending, first.ok, first.errors) == ("heuristic-v1", 200, 200, 200, 0)
    table = Lakehouse(cfg.lakehouse).name(ANNOTATIONS)
    row = spark.sql(f"SELECT count(*) n, min(quality) lo, max(educational_value) hi, count(error) e FROM {table}").first()
    assert (row.n, row.e) == (200, 0) and 0 <= row.lo and row.hi <= 5
    again = annotate.run(spark, cfg)
    assert (again.pending, spark.table(table).count()) == (0, 200)

    report = train.run(spark, cfg)
    assert report.n_train + report.n_holdout == 200 and 20 < report.n_holdout < 80
    # Compact models only (quality.quantize, the default): the full ones never reach the disk;
    # the manifest names the set, and the folder holds nothing else.
    kept = sorted(p.name for p in Path(cfg.quality.model_dir).iterdir())
    assert kept == sorted([classifiers.MANIFEST] + [f"{c}.npz" for c in CRITERIA])
    assert json.loads((Path(cfg.quality.model_dir) / classifiers.MANIFEST).read_text())["version"] == report.version
    assert report.model_bytes < 4 * 2_000_000 and "MB, version" in report.summary()
    for c in CRITERIA:
        assert classifiers.model_path(cfg.quality.model_dir, c, True).is_file()
        assert 0 <= report.metrics[c]["accuracy"] <= 1 and report.metrics[c]["mae"] < 2.5
    # The held-out split is the teacher's judgement the student never saw; it should beat chance.
    assert report.metrics["advertisement"]["accuracy"] > 0.4
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    run = MlflowClient().get_run(report.mlflow_run_id)
    assert run.data.params["n_holdout"] == str(report.n_holdout)
    assert run.data.metrics["quality.macro_f1"] == report.metrics["quality"]["macro_f1"]
    assert run.data.tags["quality_model_version"] == report.version
    arts = {a.path for a in MlflowClient().list_artifacts(report.mlflow_run_id, "quality_models")}
    assert arts == {f"quality_models/{c}.npz" for c in CRITERIA}
    assert run.data.params["quantize"] == "True" and run.data.metrics["quality.model_mb"] < 2
    lake = Lakehouse(cfg.lakehouse)
    assert {d.dataset.name: json.loads(d.dataset.source)["delta_table_version"] for d in run.inputs.dataset_inputs} \
        == {"annotations": table_version(spark, lake.name(ANNOTATIONS)), "documents": table_version(spark, lake.name(DOCUMENTS))}
    sources = [json.loads(d.dataset.source) for d in run.inputs.dataset_inputs]
    # With their catalog: a two-part name is taken by MLflow for a Unity Catalog table and looked up.
    assert sorted(s["delta_table_name"] for s in sources) == [f"spark_catalog.{cfg.lakehouse.schema}.annotations",
                                                            f"spark_catalog.{cfg.lakehouse.schema}.documents"]
    assert not any("is_databricks_uc_table" in s for s in sources)
    assert run.data.tags["climb.role"] == "train-quality" and run.data.tags["mlflow.user"]

    # The same rows and settings with those files in place: nothing trained, no new run.
    mtimes = {p: p.stat().st_mtime_ns for p in Path(cfg.quality.model_dir).iterdir()}
    again = train.run(spark, cfg)
    assert again.skipped and (again.version, again.mlflow_run_id, again.metrics, again.n_holdout) == (
        report.version, report.mlflow_run_id, report.metrics, report.n_holdout)
    assert again.summary().startswith("train-quality: up to date: 4 fastText classifiers from ")
    assert {p: p.stat().st_mtime_ns for p in Path(cfg.quality.model_dir).iterdir()} == mtimes
    # (other tests share this MLflow store; the fingerprint picks this test's trainings)
    fingerprint = run.data.tags[train.FINGERPRINT_TAG]
    assert len(MlflowClient().search_runs([run.info.experiment_id],
                                          f"tags.`{train.FINGERPRINT_TAG}` = '{fingerprint}'")) == 1

    # Where every annotation is in the held-out slice there is nothing to train on: an error, not
    # a student trained on its own test set reporting accuracy 1.0.
    with pytest.raises(InputError, match=r"all 200 usable annotations fall in the held-out slice"):
        train.run(spark, cfg.replace({"quality.holdout_fraction": 0.9999,
                                      "quality.model_dir": str(tmp_path / "q2")}))
    assert not (tmp_path / "q2").exists()
    assert "macro-F1" in report.summary()


def test_llm_annotate_against_local_endpoint_retries_only_failures(spark, cfg):
    texts = [f"Document number {i} about the history of bridges." for i in range(12)]
    texts += ["GARBAGE answer expected here.", "RANGE answer expected here.", "BROKEN server for this one.",
              "RATELIMIT first, then fine.", "SLOW first, then fine."]
    write_docs(Path(cfg.ingest.input), texts)
    ingest.run(spark, cfg)
    with ChatServer(api_key="sk-local") as server:
        cfg = cfg.replace({"annotate.teacher": "llm", "annotate.base_url": server.base_url,
                           "annotate.model": "tiny-judge", "annotate.api_key_env": "CLIMB_TEST_KEY",
                           "annotate.timeout_s": 0.5, "annotate.max_retries": 2, "annotate.backoff_s": 0.01,
                           "annotate.concurrency": 4, "annotate.commit_every": 5})
        env = {"CLIMB_TEST_KEY": "sk-local"}
        first = annotate.run(spark, cfg, environ=env)
        assert (first.sampled, first.ok, first.errors) == (17, 14, 3)
        table = Lakehouse(cfg.lakehouse).name(ANNOTATIONS)
        errors = {r.text.split()[0]: r.error for r in spark.sql(
            f"SELECT d.text, a.error FROM {table} a JOIN {Lakehouse(cfg.lakehouse).name(DOCUMENTS)} d "
            "USING (doc_id) WHERE a.error IS NOT NULL").collect()}
        assert set(errors) == {"GARBAGE", "RANGE", "BROKEN"}
        assert errors["BROKEN"].startswith("gave up after 3 attempts: HTTP 500")
        assert spark.sql(f"SELECT count(*) FROM {table} WHERE teacher = 'tiny-judge' "
                         "AND prompt_version = 'climb-rubric-v1' AND attempts = 2").first()[0] == 2

        server.broken = False
        normal_before = server.count("bridges")
        second = annotate.run(spark, cfg, environ=env)
        assert (second.pending, second.ok, second.errors) == (3, 1, 2)
        assert server.count("bridges") == normal_before  # finished documents are not asked again
        assert spark.table(table).count() == 17
        assert spark.sql(f"SELECT count(*) FROM {table} WHERE error IS NULL").first()[0] == 15


def test_sample_is_stratified_by_cluster_when_clusters_exist(spark, cfg):
    write_docs(Path(cfg.ingest.input), [f"Text {i} of the corpus." for i in range(60)])
    ingest.run(spark, cfg)
    lake = Lakehouse(cfg.lakehouse)
    docs = spark.table(lake.name(DOCUMENTS)).select("doc_id").orderBy("doc_id").collect()
    assignments = [(r.doc_id, 0 if i < 50 else 1, 0.0, "fit") for i, r in enumerate(docs)]
    spark.createDataFrame(assignments, DOC_CLUSTERS.schema).write.format("delta").saveAsTable(lake.name(DOC_CLUSTERS))
    chosen = annotate.sample(spark, cfg.replace({"annotate.sample_docs": 10}))
    per_cluster = {r.cluster_id: r.n for r in chosen.join(spark.table(lake.name(DOC_CLUSTERS)), "doc_id")
                   .groupBy("cluster_id").count().withColumnRenamed("count", "n").collect()}
    assert per_cluster == {0: 5, 1: 5}
    assert sorted(r.doc_id for r in chosen.collect()) == sorted(
        r.doc_id for r in annotate.sample(spark, cfg.replace({"annotate.sample_docs": 10})).collect())


def test_llm_annotate_stops_at_a_dead_endpoint_keeps_what_it_did_and_shows_progress(spark, cfg, capsys):
    texts = [f"Document number {i} about the history of canals." for i in range(8)]
    texts += ["CUTSHORT answer, then fine.", "BADGZIP answer, then fine."]
    write_docs(Path(cfg.ingest.input), texts)
    ingest.run(spark, cfg)
    llm = {"annotate.teacher": "llm", "annotate.model": "tiny-judge", "annotate.api_key_env": "CLIMB_TEST_KEY",
           "annotate.timeout_s": 0.3, "annotate.max_retries": 1, "annotate.backoff_s": 0.01,
           "annotate.concurrency": 2, "annotate.commit_every": 4, "annotate.breaker_after": 2,
           "annotate.breaker_s": 0.5}
    env = {"CLIMB_TEST_KEY": "sk-local"}
    table = Lakehouse(cfg.lakehouse).name(ANNOTATIONS)
    with DeadEndpoint() as dead:
        with pytest.raises(ServiceError, match=r"annotate: stopped after 0 labels and \d+ errors: .* answered nothing"):
            annotate.run(spark, cfg.replace({**llm, "annotate.base_url": dead.base_url}), environ=env)
    # The documents it tried are error rows with the reason; the rest were never sent and have none.
    tried = spark.sql(f"SELECT error FROM {table}").collect()
    assert 0 < len(tried) < len(texts) and all("timeout after 0.3s" in r.error for r in tried)
    assert re.search(rf"annotate: {len(tried)} of 10 done \({len(tried)} errors, ", capsys.readouterr().out)

    # A live endpoint picks up where it stopped; cut-short and undecodable answers are retried.
    with ChatServer(api_key="sk-local") as server:
        again = annotate.run(spark, cfg.replace({**llm, "annotate.base_url": server.base_url}), environ=env)
    assert (again.pending, again.ok, again.errors) == (10, 10, 0)
    assert spark.sql(f"SELECT count(*) FROM {table} WHERE error IS NULL").first()[0] == 10
