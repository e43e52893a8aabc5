"""The stages in pipeline order, and the checks each needs before Spark starts."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pyspark.sql import SparkSession

from . import (annotate, cluster, compare, corpus, export, features, ingest, prune, search, tracking,
               train_quality)
from .config import Config, ConfigError, check_input_exists, is_local_path
from .quality import CRITERIA, model_path

# name -> run(spark, cfg) -> report with .summary(), in pipeline order; `climb-spark run` runs
# them all.
STAGES: dict[str, Callable[[SparkSession, Config], Any]] = {
    "ingest": ingest.run,
    "annotate": annotate.run,
    "train-quality": train_quality.run,
    "embed": features.run,
    "cluster": cluster.run,
    "prune": prune.run,
    "search": search.run,
    "compare": compare.run,
    "export": export.run,
}


def uses_default_corpus(cfg: Config) -> bool:
    return (is_local_path(cfg.ingest.input)
            and Path(cfg.ingest.input).resolve() == Path(cfg.corpus.output).resolve())


def preflight(cfg: Config, stages: list[str], build_corpus: bool) -> None:
    """Everything checkable without Spark, so a bad run fails before it writes anything."""
    if "ingest" in stages and not (build_corpus and uses_default_corpus(cfg)):
        check_input_exists("ingest.input", cfg.ingest.input)
    if "annotate" in stages and cfg.annotate.teacher == "llm" and not (cfg.annotate.base_url and cfg.annotate.model):
        raise ConfigError("annotate.base_url and annotate.model are required with annotate.teacher=llm")
    if {"search", "compare", "export"} & set(stages):
        search.validate(cfg)
    if {"train-quality", "search", "compare"} & set(stages):
        tracking.check_reachable(cfg.mlflow)
    if "embed" in stages and "train-quality" not in stages:
        missing = [c for c in CRITERIA if not model_path(cfg.quality.model_dir, c).is_file()]
        if missing:
            raise ConfigError(f"quality.model_dir: no fastText model for {', '.join(missing)} in "
                              f"{cfg.quality.model_dir}; run `climb-spark train-quality` first")


def prepare_inputs(cfg: Config, log: Callable[[str], None]) -> None:
    """The first run on the embedded default builds its corpus."""
    if uses_default_corpus(cfg) and not any(Path(cfg.corpus.output).glob("*.jsonl")):
        log(corpus.build(cfg.corpus).summary())
