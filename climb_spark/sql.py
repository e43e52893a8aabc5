"""`climb-spark sql`: one statement against the lakehouse, printed as a table, CSV or JSON lines.

It only reads unless told `--write`, as a SQL warehouse's read-only user would: a statement that
changes a table or the catalog is refused before it runs. Output is what other tools parse back:
JSON lines are Spark's own `to_json` of each row (arrays as arrays, maps and structs as objects,
NaN as "NaN"), and a CSV field holding an array, map or struct holds its JSON text on one line.
"""
from __future__ import annotations

import csv
from typing import TextIO

from pyspark.sql import SparkSession

from climb_spark.errors import SqlError

# Commands (Spark's `Command` plans) that only read: what a person asks a lakehouse about itself.
# Every other command changes something (DDL, DML, Delta's OPTIMIZE/VACUUM/RESTORE, the cache).
READ_COMMANDS = frozenset({
    "ShowTables", "ShowTablesExtended", "ShowViews", "ShowColumns", "ShowCreateTable", "ShowTableProperties",
    "ShowNamespaces", "ShowNamespacesCommand", "ShowFunctions", "ShowPartitions", "ShowCatalogsCommand",
    "ShowCurrentNamespaceCommand", "DescribeRelation", "DescribeColumn", "DescribeNamespace", "DescribeFunction",
    "DescribeDeltaDetailCommand", "ExplainCommand", "SetCommand",
})
# Plans that write without being a `Command`: INSERT, Delta's RESTORE and CLONE, procedures, and
# EXECUTE IMMEDIATE, whose text is only known when it runs.
WRITE_PLANS = frozenset({"InsertIntoStatement", "RestoreTableStatement", "CloneTableStatement", "Call",
                         "UnresolvedExecuteImmediate"})


def run(spark: SparkSession, statement: str, fmt: str, limit: int, out: TextIO, write: bool = False) -> None:
    from pyspark.errors import PySparkException

    try:
        if not write:
            changes = writes(spark, statement)
            if changes:
                raise SqlError(f"this statement changes the lakehouse ({changes}); `climb-spark sql` only reads "
                               "unless given --write")
        frame = spark.sql(statement)
        if not frame.columns:  # DDL returns no columns and nothing to show
            return
        if fmt == "table":
            frame.show(n=limit, truncate=80)
            return
        rows = _lines(frame.limit(limit), fmt)
    except PySparkException as err:
        # A statement's mistake is the user's to fix: its first line, not a JVM trace.
        raise SqlError(str(err).strip().splitlines()[0]) from None
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(frame.columns)
        writer.writerows(rows)
    else:
        out.writelines(line + "\n" for (line,) in rows)


def writes(spark: SparkSession, statement: str) -> str | None:
    """The plan node by which `statement` would change a table or the catalog, or None when it
    only reads. Decided on the parsed plan, before anything runs."""
    jvm = spark._jvm
    command = jvm.java.lang.Class.forName("org.apache.spark.sql.catalyst.plans.logical.Command")
    parsed = jvm.java.lang.Class.forName("org.apache.spark.sql.catalyst.plans.logical.ParsedStatement")
    todo = [spark._jsparkSession.sessionState().sqlParser().parsePlan(statement)]
    while todo:
        plan = todo.pop()
        name = plan.getClass().getSimpleName().rstrip("$")
        if name in WRITE_PLANS or parsed.isInstance(plan) or (command.isInstance(plan) and name not in READ_COMMANDS):
            return name
        children = plan.children()
        todo += [children.apply(i) for i in range(children.size())]
    return None


def _lines(frame, fmt: str) -> list[tuple]:
    """The rows as JSON lines, or as CSV fields: text as Spark casts it, nested values as JSON."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    cols = [F.col(f"`{c.replace('`', '``')}`") for c in frame.columns]
    if fmt == "json":
        return [tuple(r) for r in frame.select(F.to_json(F.struct(*cols), {"ignoreNullFields": "false"})).collect()]
    fields = []
    for col, field in zip(cols, frame.schema.fields):
        if isinstance(field.dataType, (T.ArrayType, T.MapType, T.StructType)):
            fields.append(F.to_json(col))
        elif isinstance(field.dataType, T.BinaryType):
            fields.append(F.base64(col))
        else:
            fields.append(col.cast("string"))
    return [tuple("" if v is None else v for v in r) for r in frame.select(*fields).collect()]
