"""What runs inside a Spark task: the task's GPU, its share of cores, files shipped to it, and
the one per-worker cache every UDF that holds a model or an index goes through."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Hashable, TypeVar

from pyspark.sql import SparkSession

T = TypeVar("T")

# With spark.python.worker.reuse one Python process serves many tasks: whatever a UDF loads
# here lives as long as the worker, keyed by everything that makes one load differ from another.
_LOADED: dict[tuple[str, Hashable], object] = {}


def worker_cached(kind: str, key: Hashable, load: Callable[[], T]) -> T:
    """`load()` once per Python worker for each (kind, key); later calls return the same object."""
    slot = (kind, key)
    if slot not in _LOADED:
        _LOADED[slot] = load()
    return _LOADED[slot]  # type: ignore[return-value]


def default_parallelism(spark: SparkSession) -> int:
    """Cores the session can run tasks on (Spark Connect has no SparkContext to ask)."""
    try:
        return int(spark.sparkContext.defaultParallelism)
    except Exception:
        return int(spark.conf.get("spark.sql.shuffle.partitions", "8"))


def task_gpu() -> str | None:
    """`cuda:N` for the GPU Spark assigned to the running task, if any (never in local mode)."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    gpus = ctx.resources().get("gpu") if ctx else None
    return f"cuda:{gpus.addresses[0]}" if gpus is not None and gpus.addresses else None


SHIPPED = "sparkfiles:"


def ship_dir(spark: SparkSession, path: str, name: str, check: Callable[[], None] | None = None) -> str:
    """A driver-local folder as a task will find it: the path itself under a local master, else a
    reference to a copy shipped as an archive (executors need not see the driver's disk).
    `name` must change whenever the contents do: Spark never overwrites what it has shipped.
    `check` raises if the folder is no longer what `name` says, run once it is packed."""
    import os
    import tempfile

    sc = spark.sparkContext
    if sc.master.startswith("local"):
        return str(Path(path).resolve())
    # Keyed by contents alone, so later applications reuse it rather than pile up copies.
    archive = Path(tempfile.gettempdir()) / f"climb-spark-{os.getuid()}" / f"{name}.tar"
    if not archive.exists():
        pack(path, archive, check)
    sc.addArchive(str(archive))
    return SHIPPED + archive.name


def pack(path: str, archive: Path, check: Callable[[], None] | None = None) -> None:
    """The folder's files into an uncompressed tar at `archive` (model files barely shrink, and
    executors unpack it once per application). The archive takes its name only after `check`
    passed on what was packed: a folder changed meanwhile is never cached under its old name."""
    import os
    import tarfile

    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_suffix(f".{os.getpid()}.partial")
    try:
        with tarfile.open(partial, "w") as tar:
            for source in sorted(Path(path).iterdir()):
                if source.is_file():
                    tar.add(source, arcname=source.name)
        if check is not None:
            check()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.rename(archive)


def shipped_path(ref: str) -> str:
    """In a task: the local folder behind a `ship_dir` reference."""
    if not ref.startswith(SHIPPED):
        return ref
    from pyspark import SparkFiles

    return SparkFiles.get(ref.removeprefix(SHIPPED))
