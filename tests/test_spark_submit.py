"""The main job under `spark-submit` on a real standalone cluster (a master and two one-core
workers on loopback), shipped as a wheel, with the faults a cluster has: the driver killed
mid-embed and re-submitted, then a Python worker killed mid-embed and mid-proxy. Spark retries
the lost tasks, and the results must equal what a clean, in-process computation gives."""
import re
import shlex
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import PROFILES, ROOT, SEARCH, query
from tests.standalone_cluster import StandaloneCluster, failed_tasks, free_port, spark_env, spark_jobs, stop


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = StandaloneCluster(tmp_path_factory.mktemp("standalone"))
    try:
        yield c.start()
    finally:
        c.stop()


def submit_argv(sets: dict, master: str, wheel: str) -> list[str]:
    """The command `climb-spark submit-command` prints, as a shell would split it."""
    sets_args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    done = subprocess.run([sys.executable, "-m", "climb_spark", "submit-command", "pipeline",
                           *[a for p in PROFILES for a in ("--conf", str(ROOT / p))], "--master", master,
                           "--py-files", wheel,
                           "--python", sys.executable, "--jobs-dir", str(ROOT / "jobs"), *sets_args],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return shlex.split(done.stdout.replace("\\\n", " "))


class Driver:
    """A spark-submit in its own process group, its stdout read line by line on a thread, and
    `actions` fired once on the first line containing their marker."""

    def __init__(self, argv: list[str], cwd, actions: dict):
        self.lines: list[str] = []
        self.fired: list[str] = []
        self.firing: list[threading.Thread] = []
        self.proc = subprocess.Popen(argv, cwd=cwd, env=spark_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.actions = dict(actions)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            for marker in [m for m in self.actions if m in line]:
                # On a thread of its own, so the driver's output keeps being read meanwhile.
                self.firing.append(threading.Thread(target=self._fire, args=(marker, self.actions.pop(marker)),
                                                    daemon=True))
                self.firing[-1].start()

    def _fire(self, marker, action):
        try:
            action(self)
            self.fired.append(marker)
        except Exception as err:  # reported by the test's assertion on `fired`
            self.lines.append(f"[test] {marker!r} action failed: {err!r}\n")

    def wait(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout)
        finally:
            stop(self.proc)
        for thread in [self.reader, *self.firing]:
            thread.join(10)
        return rc

    @property
    def output(self) -> str:
        return "".join(self.lines)


def test_pipeline_on_a_standalone_cluster_survives_driver_and_worker_loss(cluster, tmp_path):
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(dist), str(ROOT)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    wheel = str(next(dist.glob("climb_spark-*.whl")))
    driver_dir = tmp_path / "driver"
    driver_dir.mkdir()
    events = tmp_path / "events"
    events.mkdir()
    ui_port = free_port()
    sets = {
        "spark.jars_dir": str(ROOT / ".cache" / "jars"),
        "spark.conf.spark.sql.shuffle.partitions": "2",
        "spark.conf.spark.driver.memory": "2g",
        "spark.conf.spark.executor.memory": "1g",
        "spark.conf.spark.eventLog.enabled": "true",
        "spark.conf.spark.eventLog.dir": events.as_uri(),
        "spark.conf.spark.eventLog.compress": "false",
        "spark.conf.spark.ui.enabled": "true",
        "spark.conf.spark.ui.port": str(ui_port),
        "lakehouse.root": str(tmp_path / "lake"),
        "corpus.output": str(tmp_path / "corpus"),
        "corpus.max_docs": "120",
        "ingest.input": str(tmp_path / "corpus"),
        # Relative to the driver's working directory, which no executor shares: the fastText
        # models must reach the executors through SparkFiles.
        "quality.model_dir": "quality",
        "quality.bucket": "262144",
        # Full models: compaction adds half a minute and is tested where it matters (test_classifiers).
        "quality.quantize": "false",
        "cluster.k": "6",
        "mlflow.tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
        "mlflow.artifact_location": str(tmp_path / "mlartifacts"),
        "export.output": str(tmp_path / "export"),
        **SEARCH,
        # Proxies long enough to be killed mid-training.
        "proxy.steps": "1000",
        "compare.methods": "[uniform, token-prop]",
        "compare.seeds": "[1]",
    }
    argv = submit_argv(sets, cluster.url, wheel)
    assert argv[argv.index("--py-files") + 1] == wheel and "--jars" in argv

    # 1. The driver dies mid-embed: nothing of the stage is committed.
    first = Driver(argv, driver_dir, {"embed: started": lambda d: (cluster.busy_python_worker(), stop(d.proc, 0))})
    first.wait(900)
    assert first.fired == ["embed: started"] and "embed: done" not in first.output, first.output[-3000:]

    # 2. The same command again, losing a Python worker mid-embed and mid-proxy-batch.
    killed = []

    def kill_worker(driver):
        proc = cluster.busy_python_worker()
        killed.append(proc.pid)
        proc.kill()
        driver.lines.append(f"[test] killed Python worker {proc.pid}\n")

    def kill_until_a_proxy_task_fails(driver):
        # A proxy can finish between finding its worker busy and the kill; Spark's REST API says
        # whether a proxy task failed, so the test kills again until one has.
        for _ in range(20):
            kill_worker(driver)
            time.sleep(2)
            if any(job["numFailedTasks"] and job.get("description", "").startswith("proxy ")
                   for job in spark_jobs(ui_port)):
                return
        raise AssertionError("no kill failed a proxy task")

    second = Driver(argv, driver_dir, {"embed: started": kill_worker, "token pools ": kill_until_a_proxy_task_fails})
    rc = second.wait(1500)
    assert rc == 0, second.output[-5000:]
    assert len(killed) >= 2
    failures = failed_tasks(events)
    assert any(f["description"].startswith("climb-spark embed") for f in failures), failures
    assert any(f["description"].startswith("proxy climb-") for f in failures), (failures, second.output[-4000:])
    assert "export: done" in second.output
    # The killed driver had committed nothing of embed: the re-run embedded every document.
    assert re.search(r"embed \w+: 120 documents embedded and scored .* 120 rows written", second.output)

    # 3. The tables equal a clean computation: every document embedded and scored once, with the
    # vectors and scores the plain functions give; every proxy once, with the score it gives.
    lake = {**sets, "spark.master": "local[2]", "quality.model_dir": str(driver_dir / "quality")}
    out = query(lake, """
        import numpy as np
        from pyspark.sql import functions as F
        from climb_spark.stages.embed import encoder
        from climb_spark.rubric import CRITERIA
        from climb_spark.stages.quality import classifiers
        from climb_spark.proxy import pools
        from climb_spark.proxy.runner import ProxySpec, train_in_task
        docs = spark.sql("SELECT count(*) n, count(DISTINCT doc_id) d FROM climb.documents").first()
        out["documents"] = [docs.n, docs.d]
        rows = spark.sql("SELECT d.text, f.* FROM climb.documents d "
                         "JOIN climb.doc_features f USING (doc_id)").toPandas()
        out["features"] = [spark.table("climb.doc_features").count(), int(rows.doc_id.nunique())]
        model = encoder.load_encoder(encoder.resolve_model(cfg.embed.model), "cpu",
                                         cfg.embed.max_seq_length, False)
        vectors = encoder.encode(model, rows.text.tolist(), cfg.embed.batch_size, cfg.embed.normalize)
        out["embedding_diff"] = float(np.abs(np.stack(rows.embedding) - vectors).max())
        scores = classifiers.score_all(classifiers.load_models(cfg.quality.model_dir, cfg.quality.quantize),
                                     rows.text.tolist())
        out["score_diff"] = max(float(np.abs(rows[c].to_numpy() - scores[c]).max()) for c in CRITERIA)
        pool = pools.ensure(spark, cfg)
        results = spark.table("climb.proxy_results").where(F.col("method") == "climb").collect()
        out["proxies"] = [len(results), len({r.proxy_key for r in results})]
        out["proxy_diff"] = max(abs(train_in_task(
            ProxySpec(r.search_id, r.method, r.iteration, r.proxy_index, tuple(r.weights), r.seed),
            pool, cfg.proxy, cfg.target, 1)["score"] - r.score) for r in results)
    """)
    n_docs = out["documents"][0]
    assert out["documents"] == [n_docs, n_docs] and n_docs > 100
    assert out["features"] == [n_docs, n_docs]
    assert out["embedding_diff"] < 1e-4 and out["score_diff"] < 1e-5
    assert out["proxies"] == [8, 8]
    assert out["proxy_diff"] < 1e-6
