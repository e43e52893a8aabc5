"""The object-store settings on both sides and the files layer against a real S3 server on
loopback (SeaweedFS, tests/object_store.py): what Python reads and writes there, without Spark."""
import gzip
import io
import json

import pytest
from pyarrow import fs as pafs

from climb_spark import corpus
from climb_spark.config import ConfigError, S3Config, load
from climb_spark.errors import ServiceError
from climb_spark.lakehouse import files, object_store
from climb_spark.lakehouse.session import spark_conf
from climb_spark.stages.ingest.readers import ReadOptions, Split, read_split
from climb_spark.stages.quality import classifiers
from tests.conftest import ROOT
from tests.object_store import KEY, SECRET, SeaweedFS


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs")).start()
    server.filesystem().create_dir("unit")
    yield server
    server.stop()


@pytest.fixture
def s3(store, monkeypatch) -> S3Config:
    # The keys reach pyarrow as they reach it on a cluster's nodes: from the environment.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    object_store.filesystem.cache_clear()
    return S3Config(endpoint=store.endpoint, region="us-east-1", path_style=True)


def test_one_set_of_settings_for_spark_and_for_pyarrow(tmp_path):
    cfg = load([ROOT / "conf" / "local.yaml", ROOT / "conf" / "s3.yaml"],
               [f"spark.metastore_dir={tmp_path / 'ms'}", "spark.jars_dir=null"])
    conf = spark_conf(cfg)
    assert {k: v for k, v in conf.items() if "fs.s3a" in k} == {
        "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:8333",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
        "spark.hadoop.fs.s3a.path.style.access": "true"}
    # The catalog: Derby on the driver's disk, the tables on the store.
    assert conf["spark.sql.warehouse.dir"] == "s3a://climb/lakehouse/warehouse"
    assert f"databaseName={tmp_path / 'ms' / 'metastore_db'};" in conf["spark.hadoop.javax.jdo.option.ConnectionURL"]
    # AWS itself (no endpoint): nothing set, so a platform's own S3 set-up stays as it is.
    assert object_store.hadoop_conf(S3Config()) == {}
    assert object_store.hadoop_conf(S3Config(credentials="anonymous")) == {
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.AnonymousAWSCredentialsProvider"}
    pa = object_store.filesystem(cfg.s3)
    assert (pa.region, type(pa).__name__) == ("us-east-1", "S3FileSystem")
    assert files.filesystem("s3a://climb/lakehouse/x.json", cfg.s3)[1] == "climb/lakehouse/x.json"


def test_files_round_trip_and_an_uncompressed_jsonl_read_by_line_and_by_range(s3, store):
    files.write_text("s3a://unit/a/b.txt", "hello", s3)
    assert files.read_bytes("s3://unit/a/b.txt", s3) == b"hello" and files.exists("s3a://unit/a/b.txt", s3)
    assert not files.exists("s3a://unit/a/missing.txt", s3)
    lines = [json.dumps({"text": f"record {i} " + "y" * i}) for i in range(300)]
    body = ("\n".join(lines) + "\n").encode()
    with store.filesystem().open_output_stream("unit/in/c.jsonl") as f:
        f.write(body)
    with store.filesystem().open_output_stream("unit/in/c.jsonl.gz", compression=None) as f:
        f.write(gzip.compress(body))
    opener = lambda uri: files.open_input(uri, s3)  # noqa: E731
    for name in ("c.jsonl", "c.jsonl.gz"):
        recs = list(read_split(Split(f"s3a://unit/in/{name}", 0, len(body)), ReadOptions(), opener))
        assert [r.reason for r in recs if r.reason] == [] and len(recs) == 300, recs[:1]
    # A byte range starting mid-record skips to the next line, as Hadoop's line reader does.
    cut = body.index(b"\n", 5000) - 3
    second = list(read_split(Split("s3a://unit/in/c.jsonl", cut, len(body)), ReadOptions(), opener))
    first = list(read_split(Split("s3a://unit/in/c.jsonl", 0, cut), ReadOptions(), opener))
    assert [r.text for r in first + second] == [json.loads(x)["text"] for x in lines]


def test_buckets_are_checked_before_a_job_starts(s3, store, monkeypatch):
    object_store.check_buckets({"lakehouse.root": "s3a://unit/lake", "export.output": "/local/x"}, s3)
    with pytest.raises(ConfigError, match=r"^export.output: bucket nosuch does not exist at http://127.0.0.1:\d+ "
                                          r"\(s3a://nosuch/x\); create it"):
        object_store.check_buckets({"lakehouse.root": "s3a://unit/lake", "export.output": "s3a://nosuch/x"}, s3)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    object_store.filesystem.cache_clear()
    with pytest.raises(ConfigError, match=r"^lakehouse.root: the object store at http://127.0.0.1:\d+ refused the "
                                          r"credentials for bucket unit \(.*ACCESS_DENIED.*\); they come from the "
                                          r"environment"):
        object_store.check_buckets({"lakehouse.root": "s3a://unit/lake"}, s3)
    nobody = S3Config(endpoint="http://127.0.0.1:9", region="us-east-1", path_style=True)
    with pytest.raises(ServiceError, match=r"^lakehouse.root: the object store at http://127.0.0.1:9 does not answer"):
        object_store.check_buckets({"lakehouse.root": "s3a://unit/lake"}, nobody)


def test_the_sample_corpus_is_built_on_the_store(s3):
    cfg = load([ROOT / "conf" / "local.yaml", ROOT / "conf" / "s3.yaml"],
               ["lakehouse.root=s3a://unit/lake", f"s3.endpoint={s3.endpoint}", "corpus.max_docs=40"])
    assert corpus.uses_default_corpus(cfg) and not corpus.exists(cfg)
    report = corpus.build(cfg.corpus, cfg.s3)
    assert corpus.exists(cfg) and sum(report.counts.values()) == 40
    stored = corpus._jsonl(cfg.corpus.output, cfg.s3)
    rows = [json.loads(line) for p in stored for line in files.read_bytes(f"s3a://{p}", s3).decode().splitlines()]
    assert len(rows) == 40 and {r["source"] for r in rows} == set(report.counts)


def test_quality_models_are_published_whole_by_version_and_fetched_once(s3, tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    model_dir = "s3a://unit/models/quality"
    assert classifiers.stored(model_dir, True, s3) is None

    def staged(tag: str):
        folder = tmp_path / f"staging-{tag}"
        folder.mkdir()
        for c in classifiers.CRITERIA:
            classifiers.model_path(str(folder), c, True).write_bytes(f"{tag}:{c}".encode() * 1000)
        return folder

    first = classifiers.publish(staged("one"), model_dir, True, s3)
    assert classifiers.stored(model_dir, True, s3) == (first, sum(len(f"one:{c}") * 1000 for c in classifiers.CRITERIA))
    local = classifiers.local_copy(model_dir, True, s3)
    assert classifiers.models_version(local, True) == first and local.endswith(f"quality-npz-{first}"), local
    second = classifiers.publish(staged("two"), model_dir, True, s3)
    # The manifest names the new folder; the old set is gone, the new one fetched under its own name.
    listing = sorted(files.filesystem(model_dir, s3)[0].get_file_info(
        pafs.FileSelector("unit/models/quality", recursive=True)), key=lambda i: i.path)
    assert [i.path for i in listing if i.type.name == "File"] == sorted(
        ["unit/models/quality/models.json", *(f"unit/models/quality/{second}/{c}.npz" for c in classifiers.CRITERIA)])
    assert classifiers.models_version(classifiers.local_copy(model_dir, True, s3), True) == second
    assert classifiers.stored(model_dir, False, s3) is None  # the full-size format was never published
    with pytest.raises(Exception, match="no bin quality models published"):
        classifiers.local_copy(model_dir, False, s3)


def test_a_store_that_stops_answering_is_one_line_from_either_side():
    s3 = S3Config(endpoint="http://127.0.0.1:8333")
    jvm = RuntimeError("An error occurred while calling o123.execute.\n: org.apache.hadoop.fs.s3a.AWSClientIOException: "
                       "getFileStatus on s3a://b/x: software.amazon.awssdk.core.exception.SdkClientException: Unable "
                       "to execute HTTP request: Connect to 127.0.0.1:8333 [/127.0.0.1] failed: Connection refused\n\tat "
                       "org.apache...")
    found = object_store.stopped_answering(jvm, s3)
    assert found.exit_code == 5 and str(found).startswith(
        "the object store at http://127.0.0.1:8333 stopped answering (org.apache.hadoop.fs.s3a.AWSClientIOException")
    task = RuntimeError("PythonException: climb_spark.errors.StoreUnavailable: the store stopped answering while "
                        "reading s3a://b/x.jsonl: AWS Error NETWORK_CONNECTION during GetObject operation: curlCode: 7")
    assert object_store.stopped_answering(task, s3) is not None
    assert object_store.stopped_answering(RuntimeError("Connection refused by the LLM endpoint"), s3) is None
    assert object_store.stopped_answering(io.UnsupportedOperation("nope"), s3) is None


def test_a_removed_folder_is_gone_from_every_listing(s3, store):
    """SeaweedFS goes on listing a folder whose objects were deleted when it held an empty folder
    (Delta's `_delta_log/_staged_commits/`); Hadoop's S3A then takes a table location for "not
    empty", and a listing for a folder (maintain, export)."""
    fs = store.filesystem()
    with fs.open_output_stream("unit/rm/t/_delta_log/00000000000000000000.json") as f:
        f.write(b"{}")
    fs.create_dir("unit/rm/t/_delta_log/_staged_commits")
    with fs.open_output_stream("unit/rm/keep/x") as f:
        f.write(b"x")
    files.remove_dir("s3a://unit/rm/t", s3)
    assert [i.base_name for i in fs.get_file_info(pafs.FileSelector("unit/rm"))] == ["keep"]
    files.remove_dir("s3a://unit/rm/t", s3)  # a folder that is not there: nothing to do
    files.remove_dir("s3a://unit/rm", s3)
    assert fs.get_file_info("unit/rm").type == pafs.FileType.NotFound
