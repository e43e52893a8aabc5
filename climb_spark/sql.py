"""`climb-spark sql`: one statement against the lakehouse, printed as a table, CSV or JSON lines."""
from __future__ import annotations

import json
from typing import TextIO

from pyspark.sql import SparkSession

from climb_spark.errors import SqlError


def run(spark: SparkSession, statement: str, fmt: str, limit: int, out: TextIO) -> None:
    from pyspark.errors import PySparkException

    try:
        frame = spark.sql(statement)
        if fmt == "table":
            if frame.columns:  # DDL returns no columns and nothing to show
                frame.show(n=limit, truncate=80)
            return
        rows = frame.limit(limit).toPandas()
    except PySparkException as err:
        # A statement's mistake is the user's to fix: its first line, not a JVM trace.
        raise SqlError(str(err).strip().splitlines()[0]) from None
    if fmt == "csv":
        rows.to_csv(out, index=False)
    else:
        for record in rows.to_dict("records"):
            out.write(json.dumps(record, default=str) + "\n")
