import uuid
from pathlib import Path

import pytest

from climb_spark.config import Config, load

ROOT = Path(__file__).resolve().parents[1]


def local_config(tmp: Path, **overrides) -> Config:
    """The embedded default profile, pointed at a temporary lakehouse."""
    cfg = load([ROOT / "conf" / "local.yaml"])
    base = {
        "spark.master": "local[2]",
        "spark.jars_dir": str(ROOT / ".cache" / "jars"),
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
    }
    base.update(overrides)
    return cfg.replace(base)


@pytest.fixture(scope="session")
def spark_cfg(tmp_path_factory) -> Config:
    return local_config(tmp_path_factory.mktemp("spark"))


@pytest.fixture(scope="session")
def spark(spark_cfg):
    from climb_spark.session import build_session

    session = build_session(spark_cfg)
    yield session
    session.stop()


@pytest.fixture
def cfg(spark_cfg, tmp_path) -> Config:
    """The session's config with a schema of its own, so tests never see each other's tables."""
    return spark_cfg.replace({"lakehouse.schema": f"t_{uuid.uuid4().hex[:10]}",
                              "ingest.input": str(tmp_path / "input")})
