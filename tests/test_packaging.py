"""The package as pip builds it: every module and the resource files, with no setuptools warning
(issue 28: each install printed ~40 lines about `climb_spark.resources`)."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_the_modules_and_resources_and_builds_without_warnings(tmp_path):
    # A copy, so the build leaves nothing in the checkout; no build isolation, so nothing is downloaded.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "climb_spark", src / "climb_spark", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path / "out"), str(src)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "warning" not in (done.stdout + done.stderr).lower(), (done.stdout + done.stderr)[-3000:]
    [wheel] = (tmp_path / "out").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "climb_spark").rglob("*.py")}
    assert modules <= names and "climb_spark/resources/log4j2.properties" in names
    assert not any("__pycache__" in n for n in names)
