"""Files a failed write left in a table folder are removed; committed and time-travel files stay."""
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from climb_spark.lakehouse import orphans
from climb_spark.lakehouse.tables import DOCUMENTS, Lakehouse


def test_only_files_no_commit_names_are_removed(spark, cfg):
    lake = Lakehouse(cfg.lakehouse)
    spark.sql(f"CREATE SCHEMA {lake.schema_name}")
    spark.range(40).repartition(2).write.format("delta").saveAsTable(lake.name(DOCUMENTS))
    spark.range(10).write.format("delta").mode("overwrite").saveAsTable(lake.name(DOCUMENTS))  # v0's files: removes
    warehouse = Path(spark.conf.get("spark.sql.warehouse.dir").removeprefix("file:"))
    schema = lake.schema_name.strip("`")
    table = warehouse / f"{schema}.db" / DOCUMENTS.name
    committed = sorted(table.glob("part-*.parquet"))
    assert len(committed) >= 3 and orphans.committed_files(table / "_delta_log") >= {p.name for p in committed}
    # What a write that died before its commit leaves: data files and their checksums.
    for i, source in enumerate(committed[:2]):
        shutil.copy(source, table / f"part-0000{i}-dead-c000.snappy.parquet")
        (table / f".part-0000{i}-dead-c000.snappy.parquet.crc").write_bytes(b"crc")
    (table / "part-00005-cut-c000.snappy.parquet").write_bytes(b"PAR1 cut short")  # counted: unreadable
    # A task with no rows leaves a file a successful commit leaves out: removed, not reported.
    pq.write_table(pa.table({"id": pa.array([], pa.int64())}), table / "part-00006-empty-c000.snappy.parquet")
    (table / "notes.txt").write_text("not a data file")

    name = f"{schema}.{DOCUMENTS.name}"  # other tests' tables share the warehouse
    assert orphans.sweep(warehouse)[name] == (3, sum(p.stat().st_size for p in committed[:2]) + 14)
    assert sorted(table.glob("part-*.parquet")) == committed and not list(table.glob(".part-*-dead-*"))
    assert (table / "notes.txt").exists()
    assert spark.table(lake.name(DOCUMENTS)).count() == 10
    assert spark.read.format("delta").option("versionAsOf", 0).table(lake.name(DOCUMENTS)).count() == 40
    assert name not in orphans.sweep(warehouse)

    # A log whose first commits were cleaned up may not name every live file: the table is left alone.
    (table / "_delta_log" / f"{0:020d}.json").rename(table / "_delta_log" / "moved-away")
    shutil.copy(committed[0], table / "part-00009-dead-c000.snappy.parquet")
    assert orphans.committed_files(table / "_delta_log") is None and name not in orphans.sweep(warehouse)
    assert (table / "part-00009-dead-c000.snappy.parquet").exists()
