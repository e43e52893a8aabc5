"""A local lakehouse's catalog bound to its own folders, and agreeing with them.

The embedded Derby catalog stores every table's location as an absolute URI. A lakehouse copied,
moved or restored to another folder keeps the old catalog, so its tables resolve to the original's
folders: an ingest on a copy committed into the original's `documents`. When a job opens a local
lakehouse, before anything reads or writes a table, the catalog is read directly (JDBC to the
embedded Derby in the driver's JVM, before Hive has opened it) and every location under another
lakehouse's warehouse is re-registered at the same place under this one's, where the copy's Delta
logs (which name their data files relative to the table) are complete. A table whose folder this
lakehouse lacks is refused, and nothing is changed.

Then (`check`) the catalog and the folders are compared, as every job starts: a table whose folder
is gone (deleted or moved by hand) loses its catalog entry, which names nothing any more; a folder
holding a table's data with no catalog entry is registered again; a table whose Delta log holds a
commit that is not JSON (cut short) is refused with one line naming the commit. Each says what it
did or what to do, in one line, before any table is read.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
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
        tables = _tables(conn)
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


@dataclass
class Repairs:
    dropped: list[str] = field(default_factory=list)  # catalog entries whose folder is gone
    registered: list[str] = field(default_factory=list)  # folders with data and no entry

    def lines(self, warehouse: Path) -> list[str]:
        out = [f"climb-spark: table {name}: its folder under {warehouse} is gone (deleted or moved by hand), so its "
               "catalog entry named nothing and was removed; the stage that writes it (`climb-spark stages`) writes "
               "it again, and a folder put back is registered again" for name in self.dropped]
        out += [f"climb-spark: table {name}: its folder held a Delta table the catalog did not name; registered it "
                "again" for name in self.registered]
        return out


_COMMIT = re.compile(r"^(\d{20})\.json$")


def catalog_tables(spark, root: Path) -> list[tuple[str, str, str]]:
    """(schema, table, location) of every table the local catalog names."""
    conn = spark.sparkContext._jvm.java.sql.DriverManager.getConnection(
        f"jdbc:derby:;databaseName={root / 'metastore_db'}")
    try:
        return _tables(conn)
    finally:
        conn.rollback()
        conn.close()


def _tables(conn) -> list[tuple[str, str, str]]:
    """(schema, table, where its data is). Spark keeps a data source table's own location in its
    `path` property; the Hive location of one created at a LOCATION is a placeholder
    (`...-__PLACEHOLDER__`) that names no folder."""
    located = _rows(conn, 'SELECT d."NAME", t."TBL_NAME", s."LOCATION", s."SERDE_ID" FROM "APP"."TBLS" t '
                          'JOIN "APP"."DBS" d ON t."DB_ID" = d."DB_ID" JOIN "APP"."SDS" s ON t."SD_ID" = s."SD_ID"')
    paths = dict(_rows(conn, 'SELECT "SERDE_ID", "PARAM_VALUE" FROM "APP"."SERDE_PARAMS" '
                             "WHERE \"PARAM_KEY\" = 'path'"))
    return [(db, name, paths.get(serde) or location) for db, name, location, serde in located]


def check(spark, root: Path, warehouse: Path) -> Repairs:
    """The catalog against the folders under `warehouse`: stale entries dropped, folders with data
    and no entry registered, a commit that is not JSON refused (PreconditionError)."""
    repairs = Repairs()
    if not (root / "metastore_db" / "service.properties").is_file():
        return repairs
    named: set[Path] = set()
    for db, name, location in catalog_tables(spark, root):
        path = local_path(location or "")
        if path is None or _under(path, warehouse) is None:
            continue  # a table of its own elsewhere: not this lakehouse's to judge
        named.add(path)
        if (path / "_delta_log").is_dir():
            cut_commit(f"{db}.{name}", path)
            continue
        # Dropped by name: Delta finds no table at the location, so the catalog entry alone goes.
        spark.sql(f"DROP TABLE IF EXISTS `{db}`.`{name}`")
        repairs.dropped.append(f"{db}.{name}")
    for log in sorted([*warehouse.glob("*/_delta_log"), *warehouse.glob("*.db/*/_delta_log")]):
        folder = log.parent
        if folder in named or not _holds_data(log):
            continue  # a folder with only a schema is a CREATE a job was killed in: ensure creates it again
        db = folder.parent.name.removesuffix(".db") if folder.parent != warehouse else "default"
        cut_commit(f"{db}.{folder.name}", folder)
        location = str(folder).replace("'", "\\'")
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS `{db}`")
        spark.sql(f"CREATE TABLE IF NOT EXISTS `{db}`.`{folder.name}` USING DELTA LOCATION '{location}'")
        repairs.registered.append(f"{db}.{folder.name}")
    return repairs


def _holds_data(log: Path) -> bool:
    commits = [c for c in log.iterdir() if _COMMIT.match(c.name)]
    return len(commits) > 1 or any('"add"' in line for c in commits for line in c.read_text("utf-8").splitlines())


def cut_commit(name: str, table: Path) -> None:
    """Refuse a table whose Delta log holds a commit a reader would parse (after the last
    checkpoint) that is not JSON: Spark fails on it with hundreds of lines of Java."""
    found = _cut(table)
    if found is None:
        return
    commit, number, latest = found
    fix = (f"`climb-spark repair` moves it aside (the table goes back to version {int(commit.stem) - 1}), then re-run "
           "the stage that writes the table" if latest else
           "restore the log from a backup: later commits build on it")
    raise PreconditionError(f"table {name}: its Delta commit {commit} is not JSON at line {number} (cut short or "
                            f"overwritten), so the table cannot be read: {fix}")


def _cut(table: Path) -> tuple[Path, int, bool] | None:
    """(the commit, its first line that is not JSON, whether it is the latest) of a table's log."""
    log = table / "_delta_log"
    checkpoint = -1
    try:
        checkpoint = int(json.loads((log / "_last_checkpoint").read_text("utf-8"))["version"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    commits = sorted((int(m.group(1)), c) for c in log.iterdir() if (m := _COMMIT.match(c.name)))
    for version, commit in commits:
        if version <= checkpoint:
            continue
        lines = commit.read_bytes().splitlines() or [b""]  # an empty commit is cut short too
        for number, line in enumerate(lines, 1):
            try:
                json.loads(line)
            except ValueError:
                return commit, number, version == commits[-1][0]
    return None


def repair(warehouse: Path, aside: Path) -> tuple[list[str], list[str]]:
    """`climb-spark repair`: each table whose latest commit is cut short goes back to the version
    before it, the commit's files (with their checksums) moved under `aside`, never deleted; the
    data files it added are then named by no commit and the next job removes them. (lines said,
    tables it cannot repair)."""
    said, left = [], []
    for log in sorted([*warehouse.glob("*/_delta_log"), *warehouse.glob("*.db/*/_delta_log")]):
        table = log.parent
        name = f"{table.parent.name.removesuffix('.db')}.{table.name}" if table.parent != warehouse else table.name
        found = _cut(table)
        if found is None:
            continue
        commit, _, latest = found
        if not latest:
            left.append(f"table {name}: its commit {commit.name} is cut short and later commits build on it: restore "
                        "the log from a backup")
            continue
        target = aside / name
        target.mkdir(parents=True, exist_ok=True)
        version = commit.stem
        for part in log.iterdir():  # the commit, its .crc, and Hadoop's hidden checksums of both
            if part.is_file() and part.name.lstrip(".").startswith(version + "."):
                part.rename(target / part.name)
        said.append(f"table {name}: its cut-short commit {version} moved to {target}; the table is back at version "
                    f"{int(version) - 1}: re-run the stage that writes it")
    return said, left
