"""Data files that a failed or killed write left in a local lakehouse's tables.

A Delta write puts its parquet files in the table's folder first and commits them last, so a write
that dies (a full disk, a kill) leaves files no commit names. Readers never see them, but they hold
the disk that ran out, and Delta's VACUUM leaves them for `delta.deletedFileRetentionDuration`
(7 days). The next job on the lakehouse removes them as it takes the lakehouse's lock: with the
lock held, no other job can be between writing its files and committing them.

Only what is certain is removed: `part-*.parquet` files (and their `.crc`) of a table whose log
still holds every commit from version 0, that no add or remove action of any commit names. A table
whose early commits were cleaned up (after 30 days) is left to `climb-spark maintain`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

_COMMIT = re.compile(r"^(\d{20})\.json$")


def sweep(warehouse: Path) -> dict[str, tuple[int, int]]:
    """Remove the uncommitted data files of every table under `warehouse`; per table that had any,
    (files, bytes) removed."""
    removed: dict[str, tuple[int, int]] = {}
    for log in sorted([*warehouse.glob("*/_delta_log"), *warehouse.glob("*.db/*/_delta_log")]):
        table = log.parent
        named = committed_files(log)
        if named is None:
            continue
        files = n_bytes = 0
        for data in table.rglob("part-*.parquet"):
            rel = data.relative_to(table).as_posix()
            if rel in named or rel.startswith(("_", ".")):
                continue
            size, empty = data.stat().st_size, _has_no_rows(data)
            data.unlink(missing_ok=True)
            (data.parent / f".{data.name}.crc").unlink(missing_ok=True)
            # A task with no rows writes a file Delta then leaves out of a successful commit; only
            # files with rows are a failed write's leftovers worth a line.
            if not empty:
                n_bytes += size
                files += 1
        if files:
            name = f"{table.parent.name.removesuffix('.db')}.{table.name}" if table.parent != warehouse else table.name
            removed[name] = (files, n_bytes)
    return removed


def _has_no_rows(data: Path) -> bool:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(data).metadata.num_rows == 0
    except Exception:  # unreadable: a write cut short, which is reported
        return False


def committed_files(log: Path) -> set[str] | None:
    """Paths, relative to the table, of every file an add or remove action of the log names; None
    when the log no longer starts at version 0 (or cannot be read), so the set may be incomplete."""
    versions = sorted(int(m.group(1)) for p in log.iterdir() if (m := _COMMIT.match(p.name)))
    if not versions or versions != list(range(len(versions))):
        return None
    table = log.parent.resolve()
    named: set[str] = set()
    try:
        for version in versions:
            for line in (log / f"{version:020d}.json").read_text(encoding="utf-8").splitlines():
                action = json.loads(line) if line.strip() else {}
                for kind in ("add", "remove"):
                    if kind in action:
                        named.add(_relative(action[kind]["path"], table))
    except (OSError, ValueError, KeyError):
        return None
    return named


def _relative(path: str, table: Path) -> str:
    """An action's path (URL-encoded, relative to the table or an absolute URI) as a path relative
    to the table; a path outside the table is returned whole and so never matches a file here."""
    if "://" in path or path.startswith("file:"):
        path = unquote(urlparse(path).path)
        try:
            return Path(path).resolve().relative_to(table).as_posix()
        except ValueError:
            return path
    return unquote(path)
