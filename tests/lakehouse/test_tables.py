"""Table creation that survives a job killed inside CREATE TABLE, and the comments every reader of
the catalog or the Delta log sees."""
import json
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import types as T

from climb_spark.errors import PreconditionError
from climb_spark.lakehouse import tables
from climb_spark.lakehouse.tables import ANNOTATIONS, CLUSTER_STATS, DOCUMENTS, MIXTURES, Lakehouse

SPECS = [v for v in vars(tables).values() if isinstance(v, tables.TableSpec)]


def managed_location(spark, lake, spec) -> str:
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {lake.schema_name}")
    rows = spark.sql(f"DESCRIBE SCHEMA EXTENDED {lake.schema_name}").collect()
    return next(r.info_value for r in rows if r.info_name == "Location") + "/" + spec.name


def test_a_table_half_created_by_a_killed_job_is_created_again(spark, cfg):
    lake = Lakehouse(cfg.lakehouse)
    # The state a kill between Delta's first commit and the catalog registration leaves: the
    # schema-only commit at the managed location, no table in the catalog.
    location = managed_location(spark, lake, DOCUMENTS)
    DeltaTable.createIfNotExists(spark).location(location).addColumns(DOCUMENTS.schema).execute()
    assert not lake.exists(spark, DOCUMENTS)
    name = lake.ensure(spark, DOCUMENTS)
    assert lake.exists(spark, DOCUMENTS) and spark.table(name).count() == 0
    assert lake.ensure(spark, DOCUMENTS) == name  # and again, as every stage calls it


def test_a_folder_with_data_and_no_catalog_entry_is_named_not_deleted(spark, cfg):
    lake = Lakehouse(cfg.lakehouse)
    location = managed_location(spark, lake, ANNOTATIONS)
    spark.range(3).write.format("delta").save(location)
    with pytest.raises(PreconditionError, match=r"holds data but the catalog has no such table; register it"):
        lake.ensure(spark, ANNOTATIONS)
    assert spark.read.format("delta").load(location).count() == 3


def test_every_table_and_column_has_a_comment():
    assert [(spec.name, f.name) for spec in SPECS for f in spec.schema.fields if not f.metadata.get("comment")] == []
    assert all(spec.comment for spec in SPECS)
    stats = {f.name: f.metadata["comment"] for f in CLUSTER_STATS.schema.fields}
    assert stats["quality_quantiles"] == "[p10, p50, p90] of its documents' quality scores"
    assert "NULL for a pruned cluster" in stats["super_cluster_id"]
    assert "weights[i + 1] in 1-based SQL" in {f.name: f.metadata["comment"] for f in MIXTURES.schema.fields}["weights"]


def _delta_metadata(location: str) -> dict:
    """The latest metaData action of a table's Delta log: what delta-rs and DuckDB read."""
    found = None
    for commit in sorted(Path(location.removeprefix("file:")).glob("_delta_log/*.json")):
        for line in commit.read_text().splitlines():
            found = json.loads(line).get("metaData", found)
    return found


def test_a_table_made_without_comments_gets_them_in_the_catalog_and_the_delta_log(spark, cfg):
    """Issue 28: tables read from DuckDB, delta-rs or the catalog had few comments (the quantile
    columns unlabelled 3-element lists); a table an older version made gets them as a job opens it."""
    lake = Lakehouse(cfg.lakehouse)
    location = managed_location(spark, lake, CLUSTER_STATS)
    bare = T.StructType([T.StructField(f.name, f.dataType, f.nullable) for f in CLUSTER_STATS.schema.fields])
    DeltaTable.create(spark).tableName(lake.name(CLUSTER_STATS).replace("`", "")).addColumns(bare).execute()
    name = lake.ensure(spark, CLUSTER_STATS)
    wanted = {f.name: f.metadata["comment"] for f in CLUSTER_STATS.schema.fields}
    catalog = {c.name: c.description for c in spark.catalog.listColumns(name.replace("`", ""))}
    assert catalog == wanted
    assert spark.catalog.getTable(name.replace("`", "")).description == CLUSTER_STATS.comment
    meta = _delta_metadata(location)
    assert meta["description"] == CLUSTER_STATS.comment
    assert {f["name"]: f["metadata"].get("comment") for f in json.loads(meta["schemaString"])["fields"]} == wanted
    version = DeltaTable.forName(spark, name.replace("`", "")).history(1).first()["version"]
    Lakehouse(cfg.lakehouse).ensure(spark, CLUSTER_STATS)  # as the next job: nothing left to change
    assert DeltaTable.forName(spark, name.replace("`", "")).history(1).first()["version"] == version
