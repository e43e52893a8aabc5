import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pyspark
import pytest

from climb_spark.config import Config, load

ROOT = Path(__file__).resolve().parents[1]
# CI's second pass runs the pipeline test on pyspark 4.0 (.ci/spark40), whose Delta jar differs.
PROFILES = (["conf/local.yaml"] + (["conf/spark40.yaml"] if pyspark.__version__.startswith("4.0.") else [])
            + ["tests/short_jobs.yaml"])
JARS_DIR = str(ROOT / load([ROOT / p for p in PROFILES]).spark.jars_dir)

# A scaled-down search: 4/2/2 proxies of a tiny GPT, two seeds per method in the comparison.
SEARCH = {
    "target.source": "pydoc-topics",
    "target.holdout_fraction": "0.5",
    "proxy.vocab_size": "320",
    "proxy.d_model": "32",
    "proxy.n_layers": "1",
    "proxy.n_heads": "2",
    "proxy.seq_len": "32",
    "proxy.batch_size": "8",
    "proxy.steps": "20",
    "proxy.log_every": "5",
    "search.budget": "[4, 2, 2]",
    "search.candidates": "20000",
    "compare.seeds": "[1, 2]",
}


def blobs(seed=0, n=300, d=16, k=3):
    """k well-separated Gaussian blobs: points and their blob labels."""
    rng = np.random.RandomState(seed)
    centers = rng.randn(k, d) * 4
    labels = np.repeat(np.arange(k), n // k)
    x = (centers[labels] + rng.randn(len(labels), d)).astype(np.float32)
    return x, labels


def cli_args(sets: dict) -> list[str]:
    return [a for p in PROFILES for a in ("--conf", p)] + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]


def climb(command: str, sets: dict, *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "climb_spark", command, *cli_args(sets), *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def query(sets: dict, code: str) -> dict:
    """Run `code` in a fresh process with `spark` and `cfg` bound; it sets `out`, returned here."""
    script = textwrap.dedent("""
        import json, sys
        from climb_spark.config import load
        from climb_spark.lakehouse.session import build_session
        cfg = load(PROFILES, sys.argv[1:])
        spark = build_session(cfg)
        out = {}
    """).replace("PROFILES", json.dumps(PROFILES)) + textwrap.dedent(code) + '\nprint("RESULT" + json.dumps(out, default=str))\n'
    done = subprocess.run([sys.executable, "-c", script, *[f"{k}={v}" for k, v in sets.items()]],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.split("RESULT", 1)[1])


def local_config(tmp: Path, **overrides) -> Config:
    """The embedded default profile, pointed at a temporary lakehouse."""
    cfg = load([ROOT / p for p in PROFILES])
    base = {
        "spark.master": "local[2]",
        "spark.jars_dir": JARS_DIR,
        "spark.conf.spark.sql.shuffle.partitions": "2",
        "spark.conf.spark.databricks.delta.snapshotPartitions": "2",
        "spark.conf.spark.driver.memory": "2g",
        "lakehouse.root": str(tmp / "lakehouse"),
        "corpus.output": str(tmp / "corpus"),
        "ingest.input": str(tmp / "corpus"),
        "mlflow.tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
        "mlflow.artifact_location": str(tmp / "mlartifacts"),
        "quality.model_dir": str(tmp / "quality"),
        # 50 MB instead of 400 MB per model file; test_quality proves the 2M default separately.
        "quality.bucket": 262144,
        # Full models train in seconds, compaction adds ~25 s per training: the compact default is
        # tested where it matters (test_annotate, test_classifiers, the README's run).
        "quality.quantize": False,
    }
    base.update(overrides)
    return cfg.replace(base)


@pytest.fixture(scope="session")
def spark_cfg(tmp_path_factory) -> Config:
    return local_config(tmp_path_factory.mktemp("spark"))


@pytest.fixture(scope="session")
def spark(spark_cfg):
    from climb_spark.lakehouse.session import build_session

    session = build_session(spark_cfg)
    yield session
    session.stop()


@pytest.fixture
def cfg(spark_cfg, tmp_path) -> Config:
    """The session's config with a schema of its own, so tests never see each other's tables."""
    return spark_cfg.replace({"lakehouse.schema": f"t_{uuid.uuid4().hex[:10]}",
                              "ingest.input": str(tmp_path / "input")})


# The README's main job scaled down (a slice of the corpus, the small search): the local run below
# and the same job on an object store (tests/test_object_store.py), which must account and rank alike.
MAIN_JOB = {
    "spark.master": "local[2]",
    "spark.conf.spark.sql.shuffle.partitions": "2",
    "corpus.max_docs": "150",
    "cluster.k": "8",
    "quality.bucket": "262144",
    **SEARCH,
}


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory):
    """`climb-spark run` on a local lakehouse, once per test session (tests/test_pipeline.py checks it;
    tests/test_object_store.py compares its own run against it)."""
    # A space in every path (the lakehouse root, the corpus, MLflow's store, the exports): a root
    # with one kept the driver JVM from starting (issue 29).
    tmp_path = tmp_path_factory.mktemp("pipe line")
    sets = {
        **MAIN_JOB,
        "spark.jars_dir": JARS_DIR,
        "lakehouse.root": str(tmp_path / "lake"),
        "corpus.output": str(tmp_path / "corpus"),
        "ingest.input": str(tmp_path / "corpus"),
        "quality.model_dir": str(tmp_path / "quality"),
        "mlflow.tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
        "mlflow.artifact_location": str(tmp_path / "mlartifacts"),
        "export.output": str(tmp_path / "export"),
    }
    done = climb("run", sets)
    assert done.returncode == 0, done.stderr[-3000:]
    # MLflow asked Databricks about every local table it was given as a run's input, once.
    assert "databricks SDK" not in done.stderr, done.stderr[-3000:]
    return sets, done.stdout
