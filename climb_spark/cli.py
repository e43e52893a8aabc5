"""`climb-spark COMMAND --conf PROFILE [--conf OVERLAY] [--set key=value]`."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from climb_spark.config import Config, is_local_path, load
from climb_spark.errors import ClimbError, ConfigError, disk_full
from climb_spark.lakehouse import object_store

DEFAULT_PROFILE = "conf/local.yaml"


def _parser(shown: Config | None = None) -> argparse.ArgumentParser:
    """`shown`: the config a stage's --help lists the settings of (the code's defaults if None)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--conf", action="append", metavar="PROFILE",
                        help=f"YAML profile; repeat to overlay (default {DEFAULT_PROFILE})")
    common.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key, e.g. --set embed.batch_size=256")
    parser = argparse.ArgumentParser(prog="climb-spark", description="CLIMB data-mixture curation on Spark")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from climb_spark.pipeline import STAGES, stage_help

    for name, spec in STAGES.items():
        stage = sub.add_parser(name, parents=[common], help=spec.about, description=stage_help(spec, shown),
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == "search":
            from climb_spark.config import METHODS

            stage.add_argument("--method", choices=METHODS, help="same as --set search.method=METHOD")
    sub.add_parser("run", parents=[common], help="build the default corpus if needed, then every stage")
    sub.add_parser("report", parents=[common],
                   help="write the run report (one self-contained HTML page) to report.output")
    graph = sub.add_parser("stages", parents=[common], help="print the stages and the tables each reads and writes")
    graph.add_argument("--format", choices=("text", "mermaid"), default="text")
    sub.add_parser("sample-corpus", parents=[common], help="build the embedded default corpus")
    sub.add_parser("resolve-jars", parents=[common], help="resolve the profile's JVM jars into spark.jars_dir and write the driver's class archive")
    submit = sub.add_parser("submit-command", parents=[common],
                            help="print the spark-submit command that runs JOB with these profiles")
    submit.add_argument("job", help="pipeline or a stage name")
    submit.add_argument("--master", help="default: the profile's spark.master")
    submit.add_argument("--deploy-mode", choices=("client", "cluster"))
    submit.add_argument("--py-files", action="append", default=[], metavar="WHEEL",
                        help="the climb-spark wheel (pip wheel --no-deps .) for the executors")
    submit.add_argument("--archive", help="a venv-pack archive, unpacked as ./environment everywhere")
    submit.add_argument("--python", help="the executors' Python when no --archive carries one")
    submit.add_argument("--jobs-dir", default="jobs", help="where the jobs/ scripts are (default: jobs)")
    upkeep = sub.add_parser("maintain", parents=[common],
                            help="OPTIMIZE and VACUUM every table, remove token pools and exports nothing refers to")
    upkeep.add_argument("--dry-run", action="store_true", help="print what it would do and change nothing")
    sub.add_parser("repair", parents=[common],
                   help="move aside a table's latest Delta commit that is cut short (a local lakehouse)")
    sql = sub.add_parser("sql", parents=[common], help="run one SQL statement against the lakehouse")
    sql.add_argument("statement")
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table",
                     help="table (default), csv with a header, or one JSON object per line")
    sql.add_argument("--limit", type=int, default=50, help="rows to print (default 50)")
    sql.add_argument("--write", action="store_true",
                     help="allow a statement that changes tables or the catalog (INSERT, DELETE, UPDATE, MERGE, DDL, "
                          "OPTIMIZE, ...); without it, sql only reads")
    show = sub.add_parser("config", parents=[common], help="print the resolved config: profiles, then --set")
    show.add_argument("--show", action="store_true", help="print it as YAML (the default and only action)")
    return parser


def _help_config(argv: list[str]) -> Config | None:
    """For `STAGE --help --conf PROFILE --set ...`: the config the run would use, so the help lists
    the values that would apply; None (the code's defaults) when it does not load."""
    if not {"-h", "--help"} & set(argv):
        return None
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--conf", action="append")
    pre.add_argument("--set", action="append", default=[])
    pre.add_argument("--method")
    known, _ = pre.parse_known_args(argv)
    try:
        return load(known.conf or [DEFAULT_PROFILE], known.set + ([f"search.method={known.method}"] if known.method else []))
    except ClimbError:
        return None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from climb_spark import __version__

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    return f"climb-spark {__version__} (pyspark {of('pyspark')}, delta-spark {of('delta-spark')})"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser(_help_config(sys.argv[1:] if argv is None else list(argv))).parse_args(argv)
    cfg = None
    try:
        overrides = args.set + ([f"search.method={args.method}"] if getattr(args, "method", None) else [])
        cfg = load(args.conf or [DEFAULT_PROFILE], overrides)
        return _dispatch(args, cfg)
    except ClimbError as err:
        # The one place a user-facing error becomes a line and an exit code; anything else is a bug
        # and keeps its traceback.
        print(f"climb-spark: {err.kind}: {err}", file=sys.stderr)
        return err.exit_code
    except Exception as err:
        down = object_store.stopped_answering(err, cfg.s3) if cfg is not None else None
        if down is not None:
            print(f"climb-spark: {down.kind}: {down}", file=sys.stderr)
            return down.exit_code
        full = disk_full(err)
        if full is None:
            raise
        print(f"climb-spark: {full.kind}: {full}. Tables keep their last committed version; free space and "
              "re-run.", file=sys.stderr)
        return full.exit_code


def _log(msg: str) -> None:
    print(msg, flush=True)


def _dispatch(args: argparse.Namespace, cfg: Config) -> int:
    from climb_spark import corpus, pipeline
    from climb_spark.lakehouse import jars

    if args.command == "stages":
        print(pipeline.describe(cfg, args.format))
        return 0
    if args.command == "config":
        import dataclasses

        import yaml

        print(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False), end="")
        return 0
    if args.command == "sample-corpus":
        _log(corpus.build(cfg.corpus, cfg.s3).summary())
        return 0
    if args.command == "resolve-jars":
        if not cfg.spark.jars_dir:
            raise ConfigError("spark.jars_dir: not set in this profile; nothing to resolve")
        kept = jars.resolve(cfg.spark.jar_poms, cfg.spark.jars_dir)
        _log(f"resolved {len(kept)} jars into {cfg.spark.jars_dir}")
        if cfg.spark.class_archive:
            from climb_spark.lakehouse import class_archive

            size = class_archive.write(args.conf or [DEFAULT_PROFILE], args.set, cfg.spark.class_archive)
            _log(f"wrote the driver's class archive {cfg.spark.class_archive} ({size / 1e6:,.0f} MB)")
        return 0

    if args.command == "submit-command":
        from climb_spark import submit

        print(submit.render(submit.command(cfg, submit.Submit(
            args.job, args.conf or [DEFAULT_PROFILE], args.set, args.master, args.deploy_mode,
            args.py_files, args.archive, args.python, args.jobs_dir))))
        return 0

    if args.command == "repair":
        return _repair(cfg)

    stages = pipeline.select(args.command)
    pipeline.check(cfg, stages)
    pipeline.prepare_inputs(cfg, stages, _log)

    from climb_spark.lakehouse.session import build_session, spark_conf

    spark_conf(cfg)  # surfaces missing jars as a config error before a JVM starts
    spark = build_session(cfg, read_only=args.command == "report" or (args.command == "sql" and not args.write))
    try:
        if args.command == "sql":
            from climb_spark import sql

            sql.run(spark, args.statement, args.format, args.limit, sys.stdout, write=args.write)
            return 0
        if args.command == "maintain":
            from climb_spark.lakehouse import maintain

            _log(maintain.run(spark, cfg, _log, dry_run=args.dry_run).summary())
            return 0
        if args.command == "report":
            from climb_spark import report as run_report

            run_report.write(spark, cfg, _log)
            return 0
        pipeline.check_tables(spark, cfg, stages)
        for stage in stages:
            name = stage.name
            started = time.monotonic()
            # Names the stage's jobs in the Spark UI and event log; the line lets a person (and the
            # fault tests) see where a long run is.
            spark.sparkContext.setJobDescription(f"climb-spark {name}")
            _log(f"{name}: started")
            report = stage.run(spark, cfg)
            _log(report.summary())
            _log(f"{name}: done in {time.monotonic() - started:.1f}s")
        if args.command == "run":
            from climb_spark import report as run_report

            run_report.write(spark, cfg, _log)
    finally:
        if cfg.spark.stop_session:
            spark.stop()
    return 0


def _repair(cfg: Config) -> int:
    """What a job refuses to open and cannot mend alone, mended without a JVM (the lakehouse held,
    as a job holds it): a cut-short latest commit moved aside under `{root}/repaired`."""
    from pathlib import Path

    from climb_spark.errors import PreconditionError
    from climb_spark.lakehouse import binding
    from climb_spark.lakehouse.session import hold_local_lakehouse, local_root, spark_conf

    if not cfg.spark.local_catalog or not is_local_path(cfg.lakehouse.root):
        raise ConfigError("repair: works on a local lakehouse (spark.local_catalog, a local lakehouse.root); a shared "
                          "metastore's tables, or tables on an object store, are not mended here")
    root = local_root(cfg)
    hold_local_lakehouse(root)
    warehouse = Path(spark_conf(cfg)["spark.sql.warehouse.dir"].removeprefix("file://").removeprefix("file:"))
    said, left = binding.repair(warehouse, root / "repaired")
    for line in said:
        _log(f"repair: {line}")
    if left:
        raise PreconditionError("; ".join(left))
    if not said:
        _log(f"repair: nothing to repair in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
