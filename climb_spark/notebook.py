"""The notebooks' entry point: the same profiles and overrides as the jobs, taken from the
notebook's environment, so a notebook runs unchanged on the default lakehouse and in CI."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

from climb_spark.config import Config, load


def open_lakehouse(environ: Mapping[str, str] = os.environ, start: bool = True):
    """(cfg, spark) from CLIMB_CONF (profiles, comma-separated; default conf/local.yaml) and
    CLIMB_SET (a JSON object of overrides). Relative paths resolve against CLIMB_ROOT, default
    the repository root above notebooks/; spark is None when start is False."""
    root = Path(environ.get("CLIMB_ROOT") or (Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()))
    os.chdir(root)
    profiles = environ.get("CLIMB_CONF", "conf/local.yaml").split(",")
    overrides = [f"{k}={v}" for k, v in json.loads(environ.get("CLIMB_SET", "{}")).items()]
    cfg: Config = load(profiles, overrides)
    if not start:
        return cfg, None
    from climb_spark.lakehouse.session import build_session

    return cfg, build_session(cfg)
