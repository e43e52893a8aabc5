"""Small Spark and Delta helpers shared by the stages."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession


@contextmanager
def session_conf(spark: SparkSession, conf: Mapping[str, str]) -> Iterator[None]:
    """Runtime SQL confs for the actions inside the block, restored afterwards."""
    previous = {key: spark.conf.get(key, None) for key in conf}
    for key, value in conf.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def merge_insert_only(spark: SparkSession, table: str, source: DataFrame, key: Sequence[str]) -> None:
    """Insert the rows whose key is not in `table` yet: re-running with the same rows is a no-op."""
    merge_upsert(spark, table, source, key, replace_when=None)


def merge_upsert(spark: SparkSession, table: str, source: DataFrame, key: Sequence[str],
                 replace_when: str | None) -> None:
    """Insert new keys; overwrite an existing row only where `replace_when` holds for it (t.*)."""
    cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in key)
    merge = DeltaTable.forName(spark, table).alias("t").merge(source.alias("s"), cond)
    if replace_when:
        merge = merge.whenMatchedUpdateAll(condition=replace_when)
    merge.whenNotMatchedInsertAll().execute()


def default_parallelism(spark: SparkSession) -> int:
    """Cores the session can run tasks on (Spark Connect has no SparkContext to ask)."""
    try:
        return int(spark.sparkContext.defaultParallelism)
    except Exception:
        return int(spark.conf.get("spark.sql.shuffle.partitions", "8"))


def table_version(spark: SparkSession, table: str) -> int:
    """The Delta table's latest commit version."""
    return int(DeltaTable.forName(spark, table).history(1).select("version").first()[0])


def replace_all(rows: DataFrame, table: str) -> None:
    """Atomically replace every row of an existing table (one Delta commit, schema kept)."""
    from pyspark.sql import functions as F

    rows.writeTo(table).overwrite(F.lit(True))


def replace_where(table: str, rows: DataFrame, condition: str) -> None:
    """Atomically replace the rows of `table` matching a SQL condition with `rows`."""
    from pyspark.sql import functions as F

    rows.writeTo(table).overwrite(F.expr(condition))


def task_gpu() -> str | None:
    """`cuda:N` for the GPU Spark assigned to the running task, if any (never in local mode)."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    gpus = ctx.resources().get("gpu") if ctx else None
    return f"cuda:{gpus.addresses[0]}" if gpus is not None and gpus.addresses else None


SHIPPED = "sparkfiles:"


def ship_dir(spark: SparkSession, path: str, name: str) -> str:
    """A driver-local folder as a task will find it: the path itself under a local master, else a
    reference to a copy shipped as an archive (executors need not see the driver's disk).
    `name` must change whenever the contents do: Spark never overwrites what it has shipped."""
    import os
    import tarfile
    import tempfile
    from pathlib import Path

    sc = spark.sparkContext
    if sc.master.startswith("local"):
        return str(Path(path).resolve())
    # Keyed by contents alone, so later applications reuse it rather than pile up copies.
    archive = Path(tempfile.gettempdir()) / f"climb-spark-{os.getuid()}" / f"{name}.tar"
    if not archive.exists():
        archive.parent.mkdir(parents=True, exist_ok=True)
        partial = archive.with_suffix(f".{os.getpid()}.partial")
        # Uncompressed: model files barely shrink, and executors unpack it once per application.
        with tarfile.open(partial, "w") as tar:
            for source in sorted(Path(path).iterdir()):
                if source.is_file():
                    tar.add(source, arcname=source.name)
        partial.rename(archive)
    sc.addArchive(str(archive))
    return SHIPPED + archive.name


def shipped_path(ref: str) -> str:
    """In a task: the local folder behind a `ship_dir` reference."""
    if not ref.startswith(SHIPPED):
        return ref
    from pyspark import SparkFiles

    return SparkFiles.get(ref.removeprefix(SHIPPED))
