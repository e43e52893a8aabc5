"""The stages in pipeline order, the checks that run before any of them writes, and the graph of
tables between them (`climb-spark stages`)."""
from __future__ import annotations

from typing import Callable, Sequence

from pyspark.sql import SparkSession

from climb_spark import corpus
from climb_spark.config import Config
from climb_spark.errors import PreconditionError
from climb_spark.lakehouse import object_store
from climb_spark.lakehouse.session import check_catalog
from climb_spark.lakehouse.tables import Lakehouse, TableSpec
from climb_spark.stages.cluster import stage as cluster
from climb_spark.stages.contract import Data, Files, Stage
from climb_spark.stages.embed import stage as embed
from climb_spark.stages.export import stage as export
from climb_spark.stages.ingest import stage as ingest
from climb_spark.stages.prune import stage as prune
from climb_spark.stages.quality import annotate, train
from climb_spark.stages.search import compare
from climb_spark.stages.search import stage as search

PIPELINE: tuple[Stage, ...] = (ingest.STAGE, annotate.STAGE, train.STAGE, embed.STAGE, cluster.STAGE,
                               prune.STAGE, search.STAGE, compare.STAGE, export.STAGE)
# By name, in pipeline order: `climb-spark NAME` runs one, `climb-spark run` runs them all.
STAGES: dict[str, Stage] = {s.name: s for s in PIPELINE}


def select(command: str) -> list[Stage]:
    return list(PIPELINE) if command == "run" else [STAGES[command]] if command in STAGES else []


def writer_of(data: Data) -> Stage | None:
    return next((s for s in PIPELINE if data in s.writes), None)


def missing_inputs(stages: Sequence[Stage], exists: Callable[[Data], bool], cfg: Config | None = None) -> list[str]:
    """For each input no earlier stage of this run writes and `exists` does not find, what to run."""
    return [_todo(stage, data, cfg) for stage, data in _missing(stages, exists)]


def _missing(stages: Sequence[Stage], exists: Callable[[Data], bool]) -> list[tuple[Stage, Data]]:
    found, written = [], set()
    for stage in stages:
        for data in stage.reads:
            if data.name not in written and not exists(data):
                found.append((stage, data))
        written |= {d.name for d in stage.writes}
    return found


def _todo(stage: Stage, data: Data, cfg: Config | None) -> str:
    source = writer_of(data)
    todo = f"run `climb-spark {source.name}` first" if source else "nothing in the pipeline writes it"
    return f"{stage.name} reads {_where(data, cfg)}, which does not exist yet: {todo}"


def check(cfg: Config, stages: Sequence[Stage]) -> None:
    """Everything checkable without Spark, so a bad run fails before it writes anything (for a
    local catalog that includes the tables, so a stage run too early creates no metastore)."""
    check_catalog(cfg)  # a setting that is wrong goes before a store that is asked
    object_store.check_buckets(object_store.paths(cfg), cfg.s3)
    for stage in stages:
        stage.check(cfg)
    lake = Lakehouse(cfg.lakehouse)

    def exists(data: Data) -> bool:
        if isinstance(data, Files):
            return data.exists(cfg)
        known = lake.exists_on_disk(cfg.spark, data)
        return True if known is None else known

    _require(_missing(stages, exists), cfg)


def check_tables(spark: SparkSession, cfg: Config, stages: Sequence[Stage]) -> None:
    """The tables the stages read exist (or an earlier stage of this run writes them)."""
    lake = Lakehouse(cfg.lakehouse)
    _require(_missing(stages, lambda d: not isinstance(d, TableSpec) or lake.exists(spark, d)), cfg)


def _require(missing: list[tuple[Stage, Data]], cfg: Config) -> None:
    """One line: what is missing, and the one stage to run first (the earliest that writes any of it)."""
    if len(missing) == 1:
        raise PreconditionError(_todo(*missing[0], cfg))
    if missing:
        writers = [w for w in (writer_of(d) for _, d in missing) if w is not None]
        first = min(writers, key=PIPELINE.index) if writers else None
        names = list(dict.fromkeys(_where(d, cfg) for _, d in missing))
        todo = (f"run `climb-spark {first.name}` and the stages after it first" if first
                else "nothing in the pipeline writes them")
        raise PreconditionError(f"{missing[-1][0].name} reads {', '.join(names[:-1])} and {names[-1]}, which do not "
                                f"exist yet: {todo}")


def prepare_inputs(cfg: Config, stages: Sequence[Stage], log: Callable[[str], None]) -> None:
    """Ingest on the embedded default builds its corpus on first use."""
    if ingest.STAGE in stages and corpus.uses_default_corpus(cfg) and not corpus.exists(cfg):
        log(corpus.build(cfg.corpus, cfg.s3).summary())


def stage_help(stage: Stage, cfg: Config | None = None) -> str:
    """`climb-spark NAME --help`: what the stage does, reads and writes, and its settings: as `cfg`
    (the profiles and --set given with --help) resolves them, with the code's default where it
    differs; the defaults alone without a config."""
    import dataclasses

    defaults = Config()
    lines = [stage.about, "", f"reads:  {', '.join(d.name for d in stage.reads) or '-'}",
             f"writes: {', '.join(d.name for d in stage.writes)}", ""]
    lines.append("settings (default):" if cfg is None else
                 "settings as the given profiles resolve them (the default where it differs):")
    for section in stage.settings:
        given = dataclasses.asdict(getattr(cfg or defaults, section))
        for key, value in dataclasses.asdict(getattr(defaults, section)).items():
            if cfg is None:
                lines.append(f"  {section}.{key} ({value})")
            else:
                lines.append(f"  {section}.{key} = {given[key]}" + (f"  (default {value})" if given[key] != value else ""))
    return "\n".join(lines)


def _where(data: Data, cfg: Config | None) -> str:
    return f"{data.name} in {data.location(cfg)}" if isinstance(data, Files) and cfg is not None else data.name


def describe(cfg: Config | None = None, fmt: str = "text") -> str:
    """The stages and the tables between them: a table for the terminal or a Mermaid flowchart."""
    if fmt == "mermaid":
        lines = ["flowchart LR"]
        for s in PIPELINE:
            node = s.name.replace("-", "_")
            lines.append(f"  {node}[[{s.name}]]")
            lines += [f"  {d.name.replace(' ', '_')}[({d.name})] --> {node}" for d in s.reads]
            lines += [f"  {node} --> {d.name.replace(' ', '_')}[({d.name})]" for d in s.writes]
        return "\n".join(lines)
    rows = [(s.name, ", ".join(_where(d, cfg) for d in s.reads) or "-", ", ".join(_where(d, cfg) for d in s.writes),
             s.about)
            for s in PIPELINE]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {about}\n{'':<{width}}  reads  {reads}\n{'':<{width}}  writes {writes}"
                     for name, reads, writes, about in rows)
