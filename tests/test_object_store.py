"""The README's main job where its users' data lives: every table, corpus file, token pool, quality
model, export, report and MLflow artifact on a real S3-compatible store (SeaweedFS on loopback,
tests/object_store.py), MLflow as a tracking server, the catalog's metastore on the driver's disk;
compared with the local run of the same corpus (tests/conftest.py `pipeline`). Then the store's
faults: wrong credentials, a missing bucket, the store stopped mid-ingest and mid-export."""
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import zstandard
import pyarrow.dataset as pads

from climb_spark.config import load
from tests.conftest import MAIN_JOB, ROOT
from tests.object_store import MlflowServer, SeaweedFS, objects

PROFILES = ["conf/local.yaml", "conf/s3.yaml", "tests/short_jobs.yaml"]
ACCOUNTING = re.compile(r"ingest \w+: ([\d,]+) input records from (\d+) files \((\d+) splits?\) = ([\d,]+) documents "
                        r"\(([\d,]+) new\) \+ ([\d,]+) duplicates \+ ([\d,]+) rejects \[balanced\]")
TABLES = ["annotations", "centroids", "cluster_stats", "comparisons", "doc_clusters", "doc_features", "documents",
          "duplicates", "mixtures", "proxy_results", "rejects", "super_clusters", "token_pools", "training_mix"]


def climb(command: str, sets: dict, env: dict, *extra: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    return subprocess.run(_argv(command, sets, *extra), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _argv(command: str, sets: dict, *extra: str) -> list[str]:
    return ([sys.executable, "-m", "climb_spark", command] + [a for p in PROFILES for a in ("--conf", p)]
            + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")] + list(extra))


def query(sets: dict, env: dict, code: str) -> dict:
    """`code` in a fresh process (a new session on the same metastore) with `spark` and `cfg`."""
    script = textwrap.dedent(f"""
        import json, sys
        from climb_spark.config import load
        from climb_spark.lakehouse.session import build_session
        cfg = load({PROFILES!r}, sys.argv[1:])
        spark = build_session(cfg)
        out = {{}}
    """) + textwrap.dedent(code) + '\nprint("RESULT" + json.dumps(out, default=str))\n'
    done = subprocess.run([sys.executable, "-c", script, *[f"{k}={v}" for k, v in sets.items()]], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.split("RESULT", 1)[1])


def last_line(done: subprocess.CompletedProcess) -> str:
    return done.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs")).start()
    for bucket in ("climb", "mlflow"):
        server.filesystem().create_dir(bucket)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tracking(store, tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"), store, "s3://mlflow/artifacts").start()
    yield server
    server.stop()


def upload_corpus(store: SeaweedFS, local: Path, prefix: str, names: list[str] | None = None) -> list[str]:
    """The local run's corpus files, one in three as they are, the others gzip or zstd compressed."""
    fs, out = store.filesystem(), []
    for i, path in enumerate(sorted(local.glob("*.jsonl"))):
        if names is not None and path.name not in names:
            continue
        data, name = path.read_bytes(), path.name
        if i % 3 == 1:
            data, name = gzip.compress(data), name + ".gz"
        elif i % 3 == 2:
            data, name = zstandard.ZstdCompressor().compress(data), name + ".zst"
        with fs.open_output_stream(f"{prefix}/{name}", compression=None) as f:
            f.write(data)
        out.append(name)
    return out


@pytest.fixture(scope="module")
def s3_run(store, tracking, pipeline, tmp_path_factory):
    local_sets, _ = pipeline
    tmp = tmp_path_factory.mktemp("s3-run")
    uploaded = upload_corpus(store, Path(local_sets["corpus.output"]), "climb/main/corpus")
    assert {n.rsplit(".", 1)[-1] for n in uploaded} == {"jsonl", "gz", "zst"}
    sets = {**MAIN_JOB, **store.settings(), "lakehouse.root": "s3a://climb/main/lake",
            "spark.metastore_dir": str(tmp / "metastore"), "ingest.input": "s3a://climb/main/corpus",
            "mlflow.tracking_uri": tracking.uri}
    done = climb("run", sets, store.env())
    assert done.returncode == 0, done.stderr[-5000:]
    return sets, done.stdout, done.stderr, tmp


def test_the_main_job_on_the_store_accounts_and_ranks_as_the_local_run(s3_run, pipeline):
    _, local = pipeline
    sets, stdout, _, _ = s3_run
    assert ACCOUNTING.search(stdout).groups() == ACCOUNTING.search(local).groups(), (stdout[-3000:], local[-3000:])
    # Each scale's methods, best first, as the comparison prints them.
    order = [re.findall(r"^ +([\w-]+) +[\d.]+ \+- [\d.]+ +-?[\d.]+ \+- [\d.]+", out.split("\ncompare compare-")[-1],
                        re.M) for out in (stdout, local)]
    assert len(order[0]) >= 7 and order[0] == order[1], order


def test_every_table_pool_model_export_and_report_is_on_the_store(s3_run, store):
    sets, stdout, _, tmp = s3_run
    out = query(sets, store.env(), """
        out["tables"] = {r.tableName: spark.sql(f"DESCRIBE DETAIL climb.{r.tableName}").first()["location"]
                         for r in spark.sql("SHOW TABLES IN climb").collect()}
        out["documents"] = spark.table("climb.documents").count()
        out["files"] = sorted(r[0] for r in spark.sql("SELECT DISTINCT file FROM climb.documents").collect())
        out["pools"] = [r[0] for r in spark.sql("SELECT DISTINCT path FROM climb.token_pools").collect()]
        out["models"] = [r[0] for r in spark.sql("SELECT DISTINCT quality_model FROM climb.doc_features").collect()]
    """)
    assert sorted(out["tables"]) == TABLES
    assert all(loc == f"s3a://climb/main/lake/warehouse/climb.db/{t}" for t, loc in out["tables"].items()), out
    docs = int(ACCOUNTING.search(stdout).group(4).replace(",", ""))
    assert out["documents"] == docs and all(f.startswith("s3a://climb/main/corpus/") for f in out["files"])
    assert {f.rsplit(".", 1)[-1] for f in out["files"]} == {"jsonl", "gz", "zst"}
    fs = store.filesystem()
    assert out["pools"] and all(p.startswith("s3a://climb/main/lake/token_pools/") for p in out["pools"])
    assert all(any(k.endswith(".parquet") for k in objects(fs, p.removeprefix("s3a://"))) for p in out["pools"])
    # The quality models: the set the manifest names, in its own folder, which embed scored with.
    published = json.loads(fs.open_input_stream("climb/main/lake/models/quality/models.json").read())
    assert published == {"format": "npz", "version": out["models"][0]}
    assert sorted(objects(fs, f"climb/main/lake/models/quality/{published['version']}")) == sorted(
        f"climb/main/lake/models/quality/{published['version']}/{c}.npz"
        for c in ("advertisement", "educational_value", "informational_value", "quality"))
    export_id, path = re.search(r"export (export-\w+) from search climb-\w+: .* -> (\S+)", stdout).groups()
    assert path == f"s3a://climb/main/lake/export/{export_id}"
    manifest = json.loads(fs.open_input_stream(f"climb/main/lake/export/{export_id}/manifest.json").read())
    shards = [k for k in objects(fs, manifest["data"].removeprefix("s3a://")) if k.endswith(".json.gz")]
    assert manifest["data"].startswith(path + "/data-") and len(shards) == 8
    rows = sum(len(gzip.decompress(fs.open_input_stream(k, compression=None).read()).splitlines()) for k in shards)
    assert rows == manifest["total_docs"] > 0
    report = fs.open_input_stream("climb/main/lake/report.html").read().decode()
    assert f"= <b>{docs:,}</b> documents" in report
    # On the driver's disk: the metastore and the job's Hive session folder, nothing else.
    assert {p.name for p in (tmp / "metastore").iterdir()} <= {"metastore_db", "derby.log", ".climb-spark.lock", "tmp"}


def test_mlflow_is_a_server_and_its_artifacts_are_on_the_store(s3_run, tracking, store):
    import mlflow
    from mlflow.tracking import MlflowClient

    _, stdout, _, _ = s3_run
    client = MlflowClient(tracking.uri)
    exp = client.get_experiment_by_name("climb-spark")
    assert exp.artifact_location.startswith("mlflow-artifacts:")  # proxied: the server writes the store
    run_id = re.search(r"^report: s3a://climb/main/lake/report.html \(attached to MLflow run (\w+) as "
                       r"report/report.html\)$", stdout, re.M).group(1)
    roles = {r.data.tags.get("climb.role") for r in client.search_runs([exp.experiment_id], max_results=1000)}
    assert roles == {"search", "proxy", "compare", "train-quality", "export"}
    stored = objects(store.filesystem(), "mlflow/artifacts")
    mine = {k for k in stored if f"/{run_id}/artifacts/" in k}
    assert {k.split(f"/{run_id}/artifacts/", 1)[1] for k in mine} >= {
        "report/report.html", "final_mixture.json", "proxy_results.json", "figures/score_by_iteration.png"}
    (train,) = client.search_runs([exp.experiment_id], "tags.`climb.role` = 'train-quality'")
    assert any(f"/{train.info.run_id}/artifacts/quality_models/" in k for k in stored)
    mlflow.set_tracking_uri(tracking.uri)
    (predictor,) = [m for m in mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format="list")
                    if m.source_run_id == run_id]
    assert any(f"/models/{predictor.model_id}/artifacts/MLmodel" in k for k in stored)
    assert mlflow.models.get_model_info(predictor.model_uri).signature is not None


def test_maintain_and_a_half_created_table_on_the_store(s3_run, store):
    sets, stdout, _, _ = s3_run
    upkeep = {**sets, "maintain.tables": "[documents, doc_features]", "maintain.retain_hours": "0",
              "maintain.allow_short_retention": "true"}
    dry = climb("maintain", upkeep, store.env(), "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "maintain (dry run: nothing changed): 2 tables" in dry.stdout
    before = objects(store.filesystem(), "climb/main/lake/warehouse/climb.db/documents")
    done = climb("maintain", upkeep, store.env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"^  documents +files \d+ -> 1, \d+ files", done.stdout, re.M), done.stdout
    after = objects(store.filesystem(), "climb/main/lake/warehouse/climb.db/documents")
    assert len([k for k in after if "_delta_log" not in k]) <= len([k for k in before if "_delta_log" not in k])
    docs = int(ACCOUNTING.search(stdout).group(4).replace(",", ""))
    out = query(sets, store.env(), """
        from delta.tables import DeltaTable
        from climb_spark.config import LakehouseConfig
        from climb_spark.lakehouse.tables import DOCUMENTS, Lakehouse
        from tests.lakehouse.test_tables import managed_location
        out["n"] = spark.table("climb.documents").count()
        # What a job killed inside CREATE TABLE leaves, on the store: cleared and created again.
        lake = Lakehouse(LakehouseConfig(root=cfg.lakehouse.root, schema="half"))
        location = managed_location(spark, lake, DOCUMENTS)
        DeltaTable.createIfNotExists(spark).location(location).addColumns(DOCUMENTS.schema).execute()
        out["location"] = location
        out["created"] = spark.table(lake.ensure(spark, DOCUMENTS)).count()
    """)
    assert out["n"] == docs
    assert out["location"] == "s3a://climb/main/lake/warehouse/half.db/documents" and out["created"] == 0


def test_wrong_credentials_and_a_missing_bucket_are_one_line_before_anything_is_written(s3_run, store, tmp_path):
    sets = {**s3_run[0], "spark.metastore_dir": str(tmp_path / "metastore")}
    wrong = climb("ingest", sets, store.env(secret="not-the-secret"))
    assert wrong.returncode == 2, wrong.stderr[-3000:]
    assert re.fullmatch(r"climb-spark: config error: lakehouse.root: the object store at http://127.0.0.1:\d+ refused "
                        r"the credentials for bucket climb \(.*\); they come from the environment \(AWS_ACCESS_KEY_ID, "
                        r"AWS_SECRET_ACCESS_KEY\), the AWS profile or the instance role", last_line(wrong))
    missing = climb("ingest", {**sets, "lakehouse.root": "s3a://no-such-bucket/lake"}, store.env())
    assert missing.returncode == 2, missing.stderr[-3000:]
    assert re.fullmatch(r"climb-spark: config error: lakehouse.root: bucket no-such-bucket does not exist at "
                        r"http://127.0.0.1:\d+ \(s3a://no-such-bucket/lake\); create it or point the setting at one "
                        r"that does", last_line(missing))
    assert len(wrong.stderr.strip().splitlines()) == len(missing.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "metastore").exists()  # refused before a session, a catalog or a table


# S3A retries a store that refuses connections for ~2.5 minutes with Hadoop's defaults (7 rounds of
# 5 SDK attempts) before the job fails; the fault tests fail it sooner.
GIVE_UP_SOONER = {"spark.conf.spark.hadoop.fs.s3a.attempts.maximum": "1",
                  "spark.conf.spark.hadoop.fs.s3a.retry.limit": "1"}


def stop_the_store_when(store: SeaweedFS, proc: subprocess.Popen, appeared, timeout: float = 600) -> str:
    """Freeze the job the moment `appeared()` names an object (a staged data file), stop the store,
    let the job go on against a store that is gone; the object's key."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = appeared()
        if found:
            os.killpg(proc.pid, signal.SIGSTOP)
            store.stop(hard=True)
            os.killpg(proc.pid, signal.SIGCONT)
            return found
        assert proc.poll() is None, "the job finished before the point the fault is injected at"
        time.sleep(0.02)
    raise TimeoutError("the job never reached the point the fault is injected at")


def test_the_store_stopped_mid_ingest_leaves_the_tables_readable_and_the_rerun_completes(s3_run, store, pipeline,
                                                                                       tmp_path, monkeypatch):
    from climb_spark.errors import StoreUnavailable
    from climb_spark.lakehouse import files

    corpus = Path(pipeline[0]["corpus.output"])
    names = sorted(p.name for p in corpus.glob("*.jsonl"))
    upload_corpus(store, corpus, "climb/ingest/in", names[: len(names) // 2])
    sets = {**s3_run[0], "lakehouse.root": "s3a://climb/ingest/lake", "ingest.input": "s3a://climb/ingest/in",
            "spark.metastore_dir": str(tmp_path / "metastore")}
    first = climb("ingest", sets, store.env())
    assert first.returncode == 0, first.stderr[-3000:]
    old = int(ACCOUNTING.search(first.stdout).group(4).replace(",", ""))
    upload_corpus(store, corpus, "climb/ingest/in", names[len(names) // 2:])
    table = "climb/ingest/lake/warehouse/climb.db/documents"
    committed = set(objects(store.filesystem(), table))
    # A reader that has started on an object before the store goes.
    s3 = load([ROOT / p for p in PROFILES], [f"{k}={v}" for k, v in sets.items()]).s3
    big = "s3a://climb/ingest/big.jsonl"
    with store.filesystem().open_output_stream(big.removeprefix("s3a://")) as f:
        f.write(b'{"text": "x"}\n' * 300_000)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, store.env()[key])
    reader = files.open_input(big, s3)
    reader.readline()

    proc = subprocess.Popen(_argv("ingest", {**sets, **GIVE_UP_SOONER}), cwd=ROOT, env=store.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        staged = stop_the_store_when(store, proc, lambda: next(
            (k for k in objects(store.filesystem(), table) if k not in committed and k.endswith(".parquet")), None))
        stdout, stderr = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # The reader does not take the store's absence for a damaged file (which would be a reject).
    with pytest.raises(StoreUnavailable, match="AWS Error NETWORK_CONNECTION"):
        reader.read()
    assert proc.returncode == 5, stderr[-5000:]
    assert re.fullmatch(r"climb-spark: service unavailable: the object store at http://127.0.0.1:\d+ stopped answering "
                        r"\(.+\); every table keeps its last committed version: run the job again once it answers",
                        stderr.strip().splitlines()[-1]), stderr[-3000:]
    assert "documents (" not in stdout and staged.startswith(table)

    store.start()
    before = query(sets, store.env(), 'out["n"] = spark.table("climb.documents").count()')
    assert before["n"] == old  # the documents' last committed version, whole
    again = climb("ingest", sets, store.env())
    assert again.returncode == 0, again.stderr[-3000:]
    total = ACCOUNTING.search(pipeline[1]).groups()
    assert ACCOUNTING.search(again.stdout).group(4) == total[3]  # every document of the corpus, once


def test_the_store_stopped_mid_export_keeps_the_previous_export_whole_and_the_rerun_completes(s3_run, store):
    sets, stdout, _, _ = s3_run
    export_id = re.search(r"export (export-\w+) from search", stdout).group(1)
    folder = f"climb/main/lake/export/{export_id}"
    fs = store.filesystem()
    before = json.loads(fs.open_input_stream(f"{folder}/manifest.json").read())
    old_data = before["data"].removeprefix("s3a://")
    resharded = {**sets, "export.format": "parquet", "export.shards": "2"}
    proc = subprocess.Popen(_argv("export", {**resharded, **GIVE_UP_SOONER}), cwd=ROOT, env=store.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        staged = stop_the_store_when(store, proc, lambda: next(
            (k for k in objects(store.filesystem(), folder) if not k.startswith(old_data) and "/data-" in k), None))
        stdout, stderr = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 5, stderr[-5000:]
    assert "stopped answering" in stderr.strip().splitlines()[-1], stderr[-3000:]
    assert not staged.startswith(old_data)

    store.start()
    fs = store.filesystem()
    # The manifest still names the previous export, which is whole.
    assert json.loads(fs.open_input_stream(f"{folder}/manifest.json").read()) == before
    shards = [k for k in objects(fs, old_data) if k.endswith(".json.gz")]
    assert sum(len(gzip.decompress(fs.open_input_stream(k, compression=None).read()).splitlines()) for k in shards) == \
        before["total_docs"]
    again = climb("export", resharded, store.env())
    assert again.returncode == 0, again.stderr[-3000:]
    after = json.loads(fs.open_input_stream(f"{folder}/manifest.json").read())
    assert after["data"] != before["data"] and after["format"] == "parquet"
    left = objects(fs, folder)
    assert {k.split("/")[5] for k in left if "/data-" in k} == {after["data"].rsplit("/", 1)[1]}  # others removed
    shards = pads.dataset(after["data"].removeprefix("s3a://"), filesystem=fs, format="parquet")
    assert shards.count_rows() == after["total_docs"] == before["total_docs"]
