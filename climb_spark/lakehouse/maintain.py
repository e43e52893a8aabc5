"""`climb-spark maintain`: upkeep of a lakehouse that stages keep appending to.

- Token pools (`{lakehouse.root}/token_pools/{pool_id}/`) and exports (`{export.output}/{export_id}/`)
  that nothing refers to any more are removed, with their rows in `token_pools` and
  `training_mix`. Kept: every pool a `mixtures` or `proxy_results` row names, every pool holding
  proxy results a killed search staged (`{pool}/proxy_results/`), and the newest pool;
  every export whose manifest names a search of `mixtures` with the weights that row holds now,
  and the newest export; and anything younger than `maintain.retain_hours`, which a running job
  may still be writing.
- Every Delta table of the lakehouse is compacted (OPTIMIZE), then VACUUMed with
  `maintain.retain_hours` (168, Delta's own floor, unless `maintain.allow_short_retention`).

The table rows go first (so no search picks up a pool whose files are going), then the folders,
then the compaction and the VACUUM, which so also reclaims the rows just deleted once they are
old enough. `dry_run` reads the same and changes nothing.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from climb_spark.config import MIN_RETAIN_HOURS, Config, S3Config
from climb_spark.errors import ConfigError
from climb_spark.lakehouse import files, tables
from climb_spark.lakehouse.delta import session_conf
from climb_spark.lakehouse.tables import MIXTURES, PROXY_RESULTS, TOKEN_POOLS, TRAINING_MIX, Lakehouse, TableSpec
from climb_spark.lakehouse.tasks import default_parallelism
from climb_spark.stages.contract import Counted

POOL_NAME = re.compile(r"^[0-9a-f]{12}$")  # ids.pool_id
EXPORT_NAME = re.compile(r"^export-[0-9a-f]{10}$")  # the export stage's ids
ALL_TABLES: tuple[TableSpec, ...] = tuple(v for v in vars(tables).values() if isinstance(v, TableSpec))


@dataclass
class TableUpkeep:
    name: str
    files_before: int
    files_after: int
    vacuumed_files: int
    bytes_freed: int


@dataclass
class MaintainReport(Counted):
    dry_run: bool
    retain_hours: int
    tables: list[TableUpkeep] = field(default_factory=list)
    pools_removed: list[str] = field(default_factory=list)
    exports_removed: list[str] = field(default_factory=list)
    pools_kept: int = 0
    exports_kept: int = 0
    files_bytes_freed: int = 0  # pools and exports

    @property
    def bytes_freed(self) -> int:
        return self.files_bytes_freed + sum(t.bytes_freed for t in self.tables)

    def counters(self) -> dict[str, float]:
        return {**super().counters(), "bytes_freed": self.bytes_freed,
                "files_before": sum(t.files_before for t in self.tables),
                "files_after": sum(t.files_after for t in self.tables),
                "pools_removed": len(self.pools_removed), "exports_removed": len(self.exports_removed)}

    def summary(self) -> str:
        be = "would be " if self.dry_run else ""
        head = (f"maintain{' (dry run: nothing changed)' if self.dry_run else ''}: {len(self.tables)} tables, "
                f"{sum(t.files_before for t in self.tables):,} -> {sum(t.files_after for t in self.tables):,} data "
                f"files{' after OPTIMIZE' if self.dry_run else ''}, {_size(self.bytes_freed)} {be}freed "
                f"(retain {self.retain_hours}h); "
                f"{'would remove' if self.dry_run else 'removed'} "
                f"{len(self.pools_removed)} token pools ({self.pools_kept} kept), {len(self.exports_removed)} exports "
                f"({self.exports_kept} kept)")
        width = max((len(t.name) for t in self.tables), default=0)
        lines = [head]
        for t in self.tables:
            lines.append(f"  {t.name:<{width}}  files {t.files_before:,} -> {t.files_after:,}, {t.vacuumed_files:,} "
                         f"files ({_size(t.bytes_freed)}) {be}vacuumed")
        lines += [f"  token pool {p} {be}removed" for p in self.pools_removed]
        lines += [f"  export {e} {be}removed" for e in self.exports_removed]
        return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def run(spark: SparkSession, cfg: Config, log=print, dry_run: bool = False) -> MaintainReport:
    m = cfg.maintain
    unknown = sorted(set(m.tables) - {spec.name for spec in ALL_TABLES})
    if unknown:
        raise ConfigError(f"maintain.tables: no such table {', '.join(unknown)} (known: "
                          f"{', '.join(sorted(spec.name for spec in ALL_TABLES))})")
    lake = Lakehouse(cfg.lakehouse)
    report = MaintainReport(dry_run, m.retain_hours)
    existing = [spec for spec in ALL_TABLES if lake.exists(spark, spec)]
    cutoff = time.time() - m.retain_hours * 3600
    _remove_pools(spark, cfg, lake, existing, cutoff, report, log)
    _remove_exports(spark, cfg, lake, existing, cutoff, report, log)
    # Delta refuses a VACUUM below its retention unless the check is off; the config refuses it
    # earlier unless maintain.allow_short_retention says so.
    conf = {"spark.databricks.delta.retentionDurationCheck.enabled": "false"} \
        if m.retain_hours < MIN_RETAIN_HOURS else {}
    # VACUUM lists a table's folders in a Spark job of this many tasks, 10,000 by default: sized
    # for tables partitioned into thousands of folders. These tables are not partitioned, and 20
    # jobs of 10,000 empty tasks took 40 s per table on two cores (a few seconds with this).
    listing = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
    if listing not in cfg.spark.conf:
        conf[listing] = str(max(8, 2 * default_parallelism(spark)))
    with session_conf(spark, conf):
        for spec in [s for s in existing if not m.tables or s.name in m.tables]:
            started = time.monotonic()
            report.tables.append(_upkeep(spark, lake.name(spec), spec.name, m.retain_hours, dry_run, cfg.s3))
            if not dry_run:  # progress through a long compaction; the summary has the numbers
                log(f"maintain: {spec.name} compacted and vacuumed ({time.monotonic() - started:.1f}s)")
    return report


def _upkeep(spark: SparkSession, name: str, short: str, retain_hours: int, dry_run: bool,
            s3: S3Config) -> TableUpkeep:
    from delta.tables import DeltaTable

    detail = spark.sql(f"DESCRIBE DETAIL {name}").first()
    before = int(detail["numFiles"])
    location = detail["location"]
    if dry_run:
        doomed = [r[0] for r in spark.sql(f"VACUUM {name} RETAIN {int(retain_hours)} HOURS DRY RUN").collect()]
        sizes = _data_files(location, s3)
        paths = {files.filesystem(p, s3)[1] for p in doomed}
        live = [sizes.get(files.filesystem(p, s3)[1], 0) for p in spark.table(name).inputFiles()]
        conf = "spark.databricks.delta.optimize.{}FileSize"
        after = files_after_optimize(live, int(spark.conf.get(conf.format("min"), str(1 << 30))),
                                     int(spark.conf.get(conf.format("max"), str(1 << 30))))
        return TableUpkeep(short, before, after, _count(paths), sum(s for p, s in sizes.items() if p in paths))
    table = DeltaTable.forName(spark, name)
    table.optimize().executeCompaction()
    after = int(spark.sql(f"DESCRIBE DETAIL {name}").first()["numFiles"])
    on_disk = _data_files(location, s3)
    table.vacuum(float(retain_hours))
    left = _data_files(location, s3)
    gone = [p for p in on_disk if p not in left]
    return TableUpkeep(short, before, after, _count(gone), sum(on_disk[p] for p in gone))


def files_after_optimize(sizes: list[int], min_size: int, max_size: int) -> int:
    """The data files an unpartitioned table has after Delta's OPTIMIZE, for a dry run: files
    under `min_size` are packed, smallest first, into bins of at most `max_size` bytes; a bin of
    two or more becomes one file, a bin of one is left as it is."""
    small = sorted(s for s in sizes if s < min_size)
    bins, current, total = [], 0, 0
    for size in small:
        if current and total + size > max_size:
            bins.append(current)
            current, total = 0, 0
        current, total = current + 1, total + size
    if current:
        bins.append(current)
    return len(sizes) - sum(n for n in bins if n > 1) + sum(1 for n in bins if n > 1)


def _count(paths) -> int:
    """Data files among paths (not their hidden `.crc` checksums)."""
    return sum(not p.rsplit("/", 1)[-1].startswith((".", "_")) for p in paths)


def _data_files(location: str, s3: S3Config) -> dict[str, int]:
    """Size of every file under a table's folder but its log, by path."""
    from pyarrow import fs as pafs

    filesystem, root = files.filesystem(location, s3)
    listing = filesystem.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return {i.path: i.size for i in listing if i.type == pafs.FileType.File
            and not i.path[len(root):].lstrip("/").startswith("_delta_log")}


def _folders(uri: str, pattern: re.Pattern, s3: S3Config):
    """(filesystem, {name: (path, newest mtime, bytes)}) of the folders under `uri` whose name matches
    (an object store's folders have no time of their own: their newest object's counts)."""
    from pyarrow import fs as pafs

    filesystem, root = files.filesystem(uri, s3)
    out = {}
    for info in filesystem.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        if info.type != pafs.FileType.Directory or not pattern.match(info.base_name):
            continue
        inside = filesystem.get_file_info(pafs.FileSelector(info.path, recursive=True))
        stamps = [i.mtime.timestamp() for i in [info, *inside] if i.mtime is not None]
        out[info.base_name] = (info.path, max(stamps, default=0.0),
                               sum(i.size or 0 for i in inside if i.type == pafs.FileType.File))
    return filesystem, out


def _column(spark: SparkSession, lake: Lakehouse, spec: TableSpec, existing, column: str) -> set:
    if spec not in existing:
        return set()
    return {r[0] for r in spark.table(lake.name(spec)).select(column).distinct().collect()}


def _remove_pools(spark, cfg: Config, lake: Lakehouse, existing, cutoff: float, report: MaintainReport, log) -> None:
    filesystem, folders = _folders(f"{cfg.lakehouse.root.rstrip('/')}/token_pools", POOL_NAME, cfg.s3)
    listed: dict[str, float] = {}
    if TOKEN_POOLS in existing:
        listed = {r["pool_id"]: r["created"].timestamp() for r in spark.table(lake.name(TOKEN_POOLS))
                  .groupBy("pool_id").agg(F.max("created_at").alias("created")).collect()}
    keep = _column(spark, lake, MIXTURES, existing, "pool_id") | _column(spark, lake, PROXY_RESULTS, existing, "pool_id")
    # Finished proxies a killed search staged and has not committed yet: the next run commits them.
    keep |= {pid for pid, (path, _, _) in folders.items() if _staged(filesystem, f"{path}/proxy_results")}
    newest = max(listed, key=listed.get, default=None)
    keep |= {newest} if newest else set()
    doomed = []
    for pid in sorted(set(folders) | set(listed)):
        age = max(folders.get(pid, ("", 0.0, 0))[1], listed.get(pid, 0.0))
        if pid not in keep and age < cutoff:
            doomed.append(pid)
    report.pools_kept = len(set(folders) | set(listed)) - len(doomed)
    report.pools_removed = doomed
    report.files_bytes_freed += sum(folders[p][2] for p in doomed if p in folders)
    if report.dry_run or not doomed:
        return
    if TOKEN_POOLS in existing and set(doomed) & set(listed):
        from delta.tables import DeltaTable

        DeltaTable.forName(spark, lake.name(TOKEN_POOLS)).delete(F.col("pool_id").isin(doomed))
    for pid in doomed:
        if pid in folders:
            files.remove_dir(f"{cfg.lakehouse.root.rstrip('/')}/token_pools/{pid}", cfg.s3)
            log(f"maintain: removed token pool {pid}")


def _staged(filesystem, folder: str) -> bool:
    from pyarrow import fs as pafs

    return any(i.type == pafs.FileType.File and i.base_name.endswith(".json")
               for i in filesystem.get_file_info(pafs.FileSelector(folder, recursive=True, allow_not_found=True)))


def _remove_exports(spark, cfg: Config, lake: Lakehouse, existing, cutoff: float, report: MaintainReport,
                    log) -> None:
    filesystem, folders = _folders(cfg.export.output, EXPORT_NAME, cfg.s3)
    mixtures = {}
    if MIXTURES in existing:
        mixtures = {r["search_id"]: [float(w) for w in r["weights"]]
                    for r in spark.table(lake.name(MIXTURES)).select("search_id", "weights").collect()}
    manifests = {name: _manifest(filesystem, f"{path}/manifest.json") for name, (path, _, _) in folders.items()}
    keep = {name for name, m in manifests.items()
            if m and mixtures.get(m.get("search_id")) == [float(c["weight"]) for c in m.get("super_clusters", [])]}
    dated = {name: str(m.get("created_at", "")) for name, m in manifests.items() if m}
    if dated:
        keep.add(max(dated, key=dated.get))
    doomed = sorted(name for name, (_, mtime, _) in folders.items() if name not in keep and mtime < cutoff)
    report.exports_kept = len(folders) - len(doomed)
    report.exports_removed = doomed
    report.files_bytes_freed += sum(folders[e][2] for e in doomed)
    if report.dry_run or not doomed:
        return
    if TRAINING_MIX in existing:
        from delta.tables import DeltaTable

        DeltaTable.forName(spark, lake.name(TRAINING_MIX)).delete(F.col("export_id").isin(doomed))
    for name in doomed:
        files.remove_dir(f"{cfg.export.output.rstrip('/')}/{name}", cfg.s3)
        log(f"maintain: removed export {name}")


def _manifest(filesystem, where: str) -> dict | None:
    from pyarrow import fs as pafs

    if filesystem.get_file_info(where).type != pafs.FileType.File:
        return None
    with filesystem.open_input_stream(where) as f:
        try:
            found = json.loads(f.read().decode("utf-8"))
        except ValueError:
            return None
    return found if isinstance(found, dict) else None
