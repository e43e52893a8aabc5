"""The one place a SparkSession is configured: Delta, the local catalog, jars, profile confs."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from pyspark.sql import SparkSession

from climb_spark.config import Config, is_local_path
from climb_spark.errors import BusyError, ConfigError
from climb_spark.lakehouse import binding, class_archive, object_store, orphans
from climb_spark.lakehouse.jars import list_jars

# Found through the package, as every resource file is: a path built from this module's folder
# named a file that moved with the stage packages, and every JVM fell back on Spark's WARN profile.
LOG4J = Path(str(resources.files("climb_spark") / "resources" / "log4j2.properties"))
DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def local_root(cfg: Config) -> Path:
    """The local folder where the local catalog keeps its metastore (and the lock that keeps it to
    one job): spark.metastore_dir, else the lakehouse root, which must then be local."""
    if cfg.spark.metastore_dir:
        return Path(cfg.spark.metastore_dir.removeprefix("file://")).resolve()
    if not is_local_path(cfg.lakehouse.root):
        raise ConfigError(f"lakehouse.root: {cfg.lakehouse.root} is not a local folder, and spark.local_catalog "
                          "(embedded Derby) keeps its metastore there; use a local root, set spark.metastore_dir "
                          "to a folder on the driver's disk, or set spark.local_catalog=false with a shared "
                          "metastore (Glue, Unity Catalog)")
    return Path(cfg.lakehouse.root.removeprefix("file://")).resolve()


def check_catalog(cfg: Config) -> None:
    """The local catalog has a local folder for its metastore (ConfigError, naming the key)."""
    if cfg.spark.local_catalog:
        local_root(cfg)


def _warehouse(cfg: Config) -> str:
    """Where the local catalog's tables live: {lakehouse.root}/warehouse, local or on a store."""
    root = cfg.lakehouse.root
    if is_local_path(root):
        return str(Path(root.removeprefix("file://")).resolve() / "warehouse")
    return f"{root.rstrip('/')}/warehouse"


def spark_conf(cfg: Config, write_class_archive: bool = False, tmp_dir: Path | None = None) -> dict[str, str]:
    """Every Spark setting a profile implies, in the order they apply (profile confs last);
    `tmp_dir`: the driver JVM's temporary folder."""
    conf: dict[str, str] = {"spark.app.name": cfg.spark.app_name}
    java_opts = [f"-Dlog4j.configurationFile={LOG4J}",
                 *class_archive.java_options(cfg.spark.class_archive, write_class_archive)]
    if tmp_dir is not None:
        java_opts.append(f"-Djava.io.tmpdir={tmp_dir}")
        # Spark's shuffle and spill scratch (which follows java.io.tmpdir) stays in the system's
        # temporary folder: it is removed as the JVM exits, and on the lakehouse's disk a full
        # disk hung the job's tasks instead of failing the table's write with "disk full".
        conf["spark.local.dir"] = tempfile.gettempdir()
    if cfg.spark.jars_dir:
        conf["spark.jars"] = ",".join(list_jars(cfg.spark.jars_dir))
    if cfg.spark.configure_delta:
        conf.update(DELTA_CONF)
    conf.update(object_store.hadoop_conf(cfg.s3))
    if cfg.spark.local_catalog:
        metastore = local_root(cfg)
        conf.update({
            "spark.sql.catalogImplementation": "hive",
            "spark.sql.warehouse.dir": _warehouse(cfg),
            # Embedded Derby keeps the table names between sessions; one JVM at a time may open it.
            "spark.hadoop.javax.jdo.option.ConnectionURL":
                f"jdbc:derby:;databaseName={metastore / 'metastore_db'};create=true",
        })
        java_opts.append(f"-Dderby.system.home={metastore}")
    conf["spark.driver.extraJavaOptions"] = " ".join(_quoted(o) for o in [*java_opts, *cfg.spark.driver_java_options])
    conf.update(cfg.spark.conf)
    return conf


def _quoted(option: str) -> str:
    """One JVM option as Spark's launcher splits extraJavaOptions (on whitespace, honouring double
    quotes and backslash escapes): a lakehouse root with a space kept the JVM from starting."""
    if not any(ch.isspace() or ch in "\"'\\" for ch in option):
        return option
    return '"' + option.replace("\\", "\\\\").replace('"', '\\"') + '"'


# This process's lock on each local lakehouse it opened, released when the process ends.
_HELD: dict[Path, object] = {}


def hold_local_lakehouse(root: Path, wait_s: float = 10.0) -> bool:
    """One job at a time on a local lakehouse: its catalog is embedded Derby, which serves one
    JVM, and a second job would otherwise fail deep inside Hive with thousands of lines. True when
    this call took the lock (False: this process held it already)."""
    import fcntl
    import time

    if root in _HELD:
        return False
    handle = open(root / ".climb-spark.lock", "a+")
    deadline = time.monotonic() + wait_s  # a job that was just killed may take a moment to exit
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.seek(0)
                holder = handle.read().strip() or "a process that did not say"
                handle.close()
                raise BusyError(f"the local lakehouse {root} is in use by another job ({holder}); its catalog "
                                "(embedded Derby) serves one job at a time: wait for it, or give this job "
                                "its own lakehouse.root") from None
            time.sleep(0.2)
    handle.truncate(0)
    handle.write(f"pid {os.getpid()}: {' '.join(os.path.basename(a) for a in sys.argv[:2])}, since "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    _HELD[root] = handle
    return True


def build_session(cfg: Config, write_class_archive: bool = False, read_only: bool = False) -> SparkSession:
    """The job's session. `read_only` (`sql`, `report`): a local lakehouse that holds no table yet
    is read through an in-memory catalog, so reading it creates no metastore."""
    if read_only and cfg.spark.local_catalog and _empty(local_root(cfg)):
        cfg = cfg.replace({"spark.local_catalog": False, "spark.conf.spark.sql.warehouse.dir":
                           _warehouse(cfg)})
    builder = SparkSession.builder
    # Under spark-submit the JVM already runs with the submitter's master; the profile's
    # master is for plain `python`/`climb-spark` runs only.
    if cfg.spark.master and "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = builder.master(cfg.spark.master)
        if cfg.spark.master.startswith("local"):
            # pyspark takes the workers' interpreter from this variable only; local workers must
            # run this interpreter (the venv), not whatever python3 is first on the PATH.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # A plain run's driver keeps its temporary files (Hive's session folder, which it never
    # removes, one per job in /tmp) under the local lakehouse, cleared as the next job opens it.
    tmp_dir = (local_root(cfg) / "tmp" if cfg.spark.local_catalog and "PYSPARK_GATEWAY_PORT" not in os.environ
               else None)
    conf = spark_conf(cfg, write_class_archive, tmp_dir)
    # Spark's progress bars redraw a terminal line; in a log file they interleave with the
    # stages' lines.
    conf.setdefault("spark.ui.showConsoleProgress", str(sys.stderr.isatty()).lower())
    for key, value in conf.items():
        builder = builder.config(key, value)
    opened = False
    if cfg.spark.local_catalog:
        local_root(cfg).mkdir(parents=True, exist_ok=True)
        opened = hold_local_lakehouse(local_root(cfg))
        if tmp_dir is not None and opened:
            shutil.rmtree(tmp_dir, ignore_errors=True)  # held: no other job's JVM uses it
            tmp_dir.mkdir()
        # The catalog made to agree with the table folders, and the sweep of a failed write's
        # uncommitted files, cover a local warehouse; on an object store a maintain VACUUM removes
        # such files (docs/platforms.md).
        warehouse = Path(conf["spark.sql.warehouse.dir"].removeprefix("file://").removeprefix("file:")) \
            if is_local_path(cfg.lakehouse.root) else None
        if opened and warehouse is not None:
            for table, (files, size) in orphans.sweep(warehouse).items():
                print(f"climb-spark: removed {files} data file{'s' * (files != 1)} ({size / 1e6:,.1f} MB) of {table} "
                      "that a failed write left uncommitted", file=sys.stderr, flush=True)
        builder = builder.enableHiveSupport()
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.spark.log_level)
    _quiet_pyspark_errors()
    if opened and warehouse is not None:
        try:
            _agree(spark, local_root(cfg), warehouse)
        except BaseException:
            spark.stop()
            raise
    return spark


def _empty(root: Path) -> bool:
    """No catalog and no table folder: nothing a reader could find."""
    return not (root / "metastore_db").exists() and not any((root / "warehouse").glob("*.db/*/_delta_log"))


def _quiet_pyspark_errors() -> None:
    """pyspark logs every SQL error it raises, as JSON with the whole Java stack, before the caller
    sees the exception: a missing table cost `climb-spark sql` 8.5 KB of stderr before its one line.
    The exception still carries the message, and an error nobody handles keeps its traceback."""
    import logging

    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)


def _agree(spark: SparkSession, root: Path, warehouse: Path) -> None:
    """The local catalog and the lakehouse's folders made to agree before anything reads a table:
    first its own tables (a copied lakehouse's catalog names the original's), then each table
    against its folder."""
    rebound = binding.bind(spark, root, warehouse)
    if rebound:
        print(f"climb-spark: this lakehouse was copied, moved or restored from {Path(rebound.former).parent}: its "
              f"catalog named the tables there; {len(rebound.tables)} re-registered at their folders under {root} "
              f"({', '.join(rebound.tables)})", file=sys.stderr, flush=True)
    for line in binding.check(spark, root, warehouse).lines(warehouse):
        print(line, file=sys.stderr, flush=True)
