"""What every stage declares: its name, the tables (and files) it reads and writes, what it can
check before Spark starts, and how it runs. `pipeline` orders the stages and checks that each
one's inputs are written by an earlier stage or already exist."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Protocol, Union

if TYPE_CHECKING:  # declarations only: the pure modules that name their files import this
    from pyspark.sql import SparkSession

    from climb_spark.config import Config
    from climb_spark.lakehouse.tables import TableSpec


class Report(Protocol):
    def summary(self) -> str:
        """Lines for a person: what the stage did, what it skipped, what to look at."""

    def counters(self) -> Mapping[str, float]:
        """The numbers behind the summary, for a job's metrics and the tests."""


class Counted:
    """`counters()` for a report dataclass: its numeric fields."""

    def counters(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)  # type: ignore[arg-type]
                if isinstance(getattr(self, f.name), (int, float)) and not isinstance(getattr(self, f.name), bool)}


@dataclass(frozen=True)
class Files:
    """Something a stage writes outside the lakehouse (models, a corpus on disk)."""

    name: str
    location: Callable[[Config], str]
    exists: Callable[[Config], bool]


Data = Union["TableSpec", Files]


def _nothing_to_check(cfg: Config) -> None:
    return None


@dataclass(frozen=True)
class Stage:
    name: str
    about: str
    reads: tuple[Data, ...]
    writes: tuple[Data, ...]
    run: Callable[[SparkSession, Config], Report]
    # Everything verifiable without Spark; raises ConfigError naming the key.
    check: Callable[[Config], None] = _nothing_to_check
    # The config sections that change what it does (for `climb-spark NAME --help`).
    settings: tuple[str, ...] = ()
