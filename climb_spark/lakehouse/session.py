"""The one place a SparkSession is configured: Delta, the local catalog, jars, profile confs."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from climb_spark.config import Config, is_local_path
from climb_spark.lakehouse.jars import list_jars

LOG4J = Path(__file__).parent / "resources" / "log4j2.properties"
DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def _local_root(cfg: Config) -> Path:
    """The lakehouse root as a local folder, where the local catalog keeps its metastore."""
    if not is_local_path(cfg.lakehouse.root):
        raise ValueError("spark.local_catalog needs a local lakehouse.root")
    return Path(cfg.lakehouse.root.removeprefix("file://")).resolve()


def spark_conf(cfg: Config) -> dict[str, str]:
    """Every Spark setting a profile implies, in the order they apply (profile confs last)."""
    conf: dict[str, str] = {"spark.app.name": cfg.spark.app_name}
    java_opts = [f"-Dlog4j.configurationFile={LOG4J}"]
    if cfg.spark.jars_dir:
        conf["spark.jars"] = ",".join(list_jars(cfg.spark.jars_dir))
    if cfg.spark.configure_delta:
        conf.update(DELTA_CONF)
    if cfg.spark.local_catalog:
        root_path = _local_root(cfg)
        conf.update({
            "spark.sql.catalogImplementation": "hive",
            "spark.sql.warehouse.dir": str(root_path / "warehouse"),
            # Embedded Derby keeps the table names between sessions; one JVM at a time may open it.
            "spark.hadoop.javax.jdo.option.ConnectionURL":
                f"jdbc:derby:;databaseName={root_path / 'metastore_db'};create=true",
        })
        java_opts.append(f"-Dderby.system.home={root_path}")
    conf["spark.driver.extraJavaOptions"] = " ".join(java_opts)
    conf.update(cfg.spark.conf)
    return conf


def build_session(cfg: Config) -> SparkSession:
    builder = SparkSession.builder
    # Under spark-submit the JVM already runs with the submitter's master; the profile's
    # master is for plain `python`/`climb-spark` runs only.
    if cfg.spark.master and "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = builder.master(cfg.spark.master)
        if cfg.spark.master.startswith("local"):
            # pyspark takes the workers' interpreter from this variable only; local workers must
            # run this interpreter (the venv), not whatever python3 is first on the PATH.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in spark_conf(cfg).items():
        builder = builder.config(key, value)
    if cfg.spark.local_catalog:
        _local_root(cfg).mkdir(parents=True, exist_ok=True)
        builder = builder.enableHiveSupport()
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.spark.log_level)
    return spark
