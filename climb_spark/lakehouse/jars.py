"""JVM jars: resolved from Maven Central once, at install time, into a local folder."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from climb_spark.errors import ConfigError

_VERSION_SUFFIX = re.compile(r"-\d[^/]*\.jar$")


class JarError(RuntimeError):
    pass


def artifact_name(jar: str) -> str:
    """`delta-storage-4.4.0.jar` -> `delta-storage`."""
    return _VERSION_SUFFIX.sub("", Path(jar).name)


def pyspark_jars_dir() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def resolve(poms: Sequence[str], dest: str, mvn: str = "mvn") -> list[Path]:
    """Copy each pom's runtime closure into `dest`, less the artifacts pyspark already ships.

    Delta's closure repeats Spark's own libraries (Scala, Hadoop, Jackson, Parquet) at other
    versions; passing those too would shadow nothing useful and risk conflicts.
    """
    if not poms:
        raise ConfigError("spark.jar_poms: no pom to resolve")
    if shutil.which(mvn) is None:
        raise JarError("Maven (mvn) is not on PATH; it resolves the Delta jars once at install time")
    shipped = {artifact_name(p.name) for p in pyspark_jars_dir().glob("*.jar")}
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for pom in poms:
            if not Path(pom).is_file():
                raise ConfigError(f"spark.jar_poms: no such pom: {pom}")
            cmd = [mvn, "-q", "-B", "-f", pom, "dependency:copy-dependencies",
                   f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
                raise JarError(f"mvn could not resolve {pom}:\n" + "\n".join(tail))
        for old in out.glob("*.jar"):
            old.unlink()
        kept = []
        for jar in sorted(Path(tmp).glob("*.jar")):
            if artifact_name(jar.name) not in shipped:
                kept.append(Path(shutil.copy2(jar, out / jar.name)))
    return kept


def list_jars(jars_dir: str) -> list[str]:
    jars = sorted(str(p.resolve()) for p in Path(jars_dir).glob("*.jar"))
    if not jars:
        raise ConfigError(
            f"spark.jars_dir: no jars in {jars_dir}; run `climb-spark resolve-jars` (the install step does)"
        )
    return jars
