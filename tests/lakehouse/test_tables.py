"""Table creation that survives a job killed inside CREATE TABLE."""
import pytest
from delta.tables import DeltaTable

from climb_spark.errors import PreconditionError
from climb_spark.lakehouse.tables import ANNOTATIONS, DOCUMENTS, Lakehouse


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
