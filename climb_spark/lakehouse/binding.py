"""A local lakehouse's catalog bound to its own folder.

The embedded Derby catalog stores every table's location as an absolute URI. A lakehouse copied,
moved or restored to another folder keeps the old catalog, so its tables resolve to the original's
folders: an ingest on a copy committed into the original's `documents`. When a job opens a local
lakehouse, before anything reads or writes a table, the catalog is read directly (JDBC to the
embedded Derby in the driver's JVM, before Hive has opened it) and every location under another
lakehouse's warehouse is re-registered at the same place under this one's, where the copy's Delta
logs (which name their data files relative to the table) are complete. A table whose folder this
lakehouse lacks is refused, and nothing is changed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from climb_spark.errors import PreconditionError


@dataclass(frozen=True)
class Rebound:
    former: str  # the warehouse the catalog named, as a local path
    tables: tuple[str, ...]  # schema.table, re-registered here


def local_path(uri: str) -> Path | None:
    """The local path a `file:` URI (or a bare path) names; None for any other scheme."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        return None
    return Path(unquote(parsed.path))


def _under(path: Path, folder: Path) -> Path | None:
    try:
        return path.relative_to(folder)
    except ValueError:
        return None


def bind(spark, root: Path, warehouse: Path) -> Rebound | None:
    """Re-register the tables of a copied, moved or restored local lakehouse (its catalog under
    `root`) at their folders under `warehouse`; None when the catalog already names them there (or
    there is no catalog yet)."""
    metastore = root / "metastore_db"
    if not (metastore / "service.properties").is_file():
        return None
    jvm = spark.sparkContext._jvm
    conn = jvm.java.sql.DriverManager.getConnection(f"jdbc:derby:;databaseName={metastore}")
    try:
        conn.setAutoCommit(False)
        dbs = _rows(conn, 'SELECT "DB_ID", "NAME", "DB_LOCATION_URI" FROM "APP"."DBS"')
        default = next((loc for _, name, loc in dbs if name == "default"), None)
        former = local_path(default) if default else None
        if former is None or former == warehouse:
            return None
        tables = _rows(conn, 'SELECT d."NAME", t."TBL_NAME", s."LOCATION" FROM "APP"."TBLS" t '
                             'JOIN "APP"."DBS" d ON t."DB_ID" = d."DB_ID" JOIN "APP"."SDS" s ON t."SD_ID" = s."SD_ID"')
        moved, missing = [], []
        for db, name, location in tables:
            rel = _under(local_path(location or "") or Path("/"), former)
            if rel is None:
                continue  # a table registered at a location of its own: not the lakehouse's to move
            moved.append(f"{db}.{name}")
            if not (warehouse / rel / "_delta_log").is_dir():
                missing.append(f"{db}.{name} ({warehouse / rel})")
        if missing:
            raise PreconditionError(
                f"lakehouse {root}: its catalog names the tables of the lakehouse at {former.parent} (it was copied, "
                f"moved or restored from there), and this folder lacks {len(missing)} of them: "
                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; nothing was changed: copy the whole "
                f"lakehouse folder, or give this job a lakehouse.root of its own")
        def here(uri: str) -> str | None:
            """The location under this warehouse, written as Spark writes one (java.net.URI's quoting)."""
            rel = _under(local_path(uri or "") or Path("/"), former)
            return None if rel is None else str(jvm.java.io.File(str(warehouse / rel)).toURI().toString()).rstrip("/")

        for table, key, value in (("DBS", "DB_ID", "DB_LOCATION_URI"), ("SDS", "SD_ID", "LOCATION")):
            for row_id, uri in _rows(conn, f'SELECT "{key}", "{value}" FROM "APP"."{table}"'):
                _update(conn, table, key, value, row_id, here(uri))
        for serde, uri in _rows(conn, 'SELECT "SERDE_ID", "PARAM_VALUE" FROM "APP"."SERDE_PARAMS" '
                                      "WHERE \"PARAM_KEY\" = 'path'"):
            new = here(uri)
            if new is not None:
                stmt = conn.prepareStatement('UPDATE "APP"."SERDE_PARAMS" SET "PARAM_VALUE" = ? '
                                             "WHERE \"SERDE_ID\" = ? AND \"PARAM_KEY\" = 'path'")
                stmt.setString(1, new)
                stmt.setLong(2, int(serde))
                stmt.executeUpdate()
        conn.commit()
        return Rebound(str(former), tuple(moved))
    finally:
        conn.rollback()  # nothing, after the commit; everything, after a refusal or a failure
        conn.close()


def _rows(conn, sql: str) -> list[tuple]:
    result = conn.createStatement().executeQuery(sql)
    width = result.getMetaData().getColumnCount()
    out = []
    while result.next():
        out.append(tuple(result.getString(i) for i in range(1, width + 1)))
    return out


def _update(conn, table: str, key: str, column: str, row_id: str, value: str | None) -> None:
    if value is None:
        return
    stmt = conn.prepareStatement(f'UPDATE "APP"."{table}" SET "{column}" = ? WHERE "{key}" = ?')
    stmt.setString(1, value)
    stmt.setLong(2, int(row_id))
    stmt.executeUpdate()
