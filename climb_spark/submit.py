"""The `spark-submit` command line for a job and a profile: what the README, the EMR step and the
standalone-cluster test run, generated from the same settings a local run uses."""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Sequence

from climb_spark.config import Config
from climb_spark.errors import ConfigError
from climb_spark.lakehouse.jars import list_jars
from climb_spark.lakehouse.session import spark_conf
from climb_spark.pipeline import STAGES

JOBS = ("pipeline", *STAGES, "maintain")
# The profile's own settings that spark-submit takes as options, not as --conf.
_OPTIONS = {"spark.app.name", "spark.jars"}


@dataclass(frozen=True)
class Submit:
    job: str
    profiles: Sequence[str]
    overrides: Sequence[str] = ()
    # None: the profile's spark.master; a profile without one leaves it to the platform.
    master: str | None = None
    deploy_mode: str | None = None
    # The climb-spark wheel, put first on the executors' (and driver's) Python path.
    py_files: Sequence[str] = ()
    # A packed virtualenv (venv-pack) unpacked as ./environment in every container (YARN, EMR).
    archive: str | None = None
    # The executors' interpreter when no archive carries one.
    python: str | None = None
    jobs_dir: str = "jobs"


def job_script(jobs_dir: str, job: str) -> str:
    if job not in JOBS:
        raise ConfigError(f"job {job!r}: expected one of {', '.join(JOBS)}")
    # A string join: Path() would fold s3:// into s3:/.
    return f"{jobs_dir.rstrip('/')}/{job.replace('-', '_')}.py"


def command(cfg: Config, s: Submit) -> list[str]:
    argv = ["spark-submit"]
    master = s.master or cfg.spark.master
    if master:
        argv += ["--master", master]
    if s.deploy_mode:
        argv += ["--deploy-mode", s.deploy_mode]
    argv += ["--name", cfg.spark.app_name]
    if cfg.spark.jars_dir:
        argv += ["--jars", ",".join(list_jars(cfg.spark.jars_dir))]
    if s.py_files:
        argv += ["--py-files", ",".join(s.py_files)]
    conf = {k: v for k, v in spark_conf(cfg).items() if k not in _OPTIONS}
    if s.archive:
        argv += ["--archives", f"{s.archive}#environment"]
        conf["spark.pyspark.python"] = "./environment/bin/python"
    elif s.python:
        conf["spark.pyspark.python"] = s.python
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    argv.append(job_script(s.jobs_dir, s.job))
    for profile in s.profiles:
        argv += ["--conf", str(profile)]
    for item in s.overrides:
        argv += ["--set", item]
    return argv


def render(argv: Sequence[str]) -> str:
    """One option per line, quoted for a POSIX shell."""
    lines, i = [shlex.quote(argv[0])], 1
    while i < len(argv):
        takes_value = argv[i].startswith("--") and i + 1 < len(argv) and not argv[i + 1].startswith("--")
        part = argv[i:i + 2] if takes_value else argv[i:i + 1]
        lines.append(" ".join(shlex.quote(a) for a in part))
        i += len(part)
    return " \\\n  ".join(lines)
