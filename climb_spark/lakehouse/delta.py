"""Delta writes the stages share: idempotent merges, atomic replaces, versions."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession


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


def table_version(spark: SparkSession, table: str) -> int:
    """The Delta table's latest commit version."""
    return int(DeltaTable.forName(spark, table).history(1).select("version").first()[0])


def replace_all(rows: DataFrame, table: str) -> None:
    """Atomically replace every row of an existing table (one Delta commit, schema kept)."""
    from pyspark.sql import functions as F

    rows.writeTo(table).overwrite(F.lit(True))


def replace_where(table: str, rows: DataFrame, condition: Column) -> None:
    """Atomically replace the rows of `table` matching `condition` with `rows` (a Column, so no
    value is ever pasted into SQL text)."""
    rows.writeTo(table).overwrite(condition)
