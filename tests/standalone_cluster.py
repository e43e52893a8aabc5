"""A real Spark standalone cluster on loopback (master + workers from pyspark's own `spark-class`),
and the faults the reliability tests inject into it: killing a busy Python worker or a driver."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent


def spark_env() -> dict[str, str]:
    """pyspark's launch scripts, found through this interpreter (not whatever python3 is first)."""
    import pyspark

    return {**os.environ, "SPARK_HOME": str(Path(pyspark.__file__).parent), "SPARK_LOCAL_IP": "127.0.0.1",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before {url} answered")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f}s")


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """The process and everything it started (its own session), by process id."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 30.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # executors and Python daemons left in the group
    except ProcessLookupError:
        pass


class StandaloneCluster:
    def __init__(self, root: Path, workers: int = 2, cores: int = 1, memory: str = "2g"):
        self.root, self.n_workers, self.cores, self.memory = root, workers, cores, memory
        self.port, self.ui_port = free_port(), free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "w")
        env = {**spark_env(), "SPARK_NO_DAEMONIZE": "1"}
        proc = subprocess.Popen([str(BIN / "spark-class"), *args], stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=self.root, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start(self) -> "StandaloneCluster":
        self.root.mkdir(parents=True, exist_ok=True)
        self._spawn("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                    "--port", str(self.port), "--webui-port", str(self.ui_port))
        for i in range(self.n_workers):
            work = self.root / f"worker-{i}"
            work.mkdir(exist_ok=True)
            self._spawn(f"worker-{i}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                        "--cores", str(self.cores), "--memory", self.memory, "--work-dir", str(work),
                        "--webui-port", str(free_port()), self.url)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.alive_workers() == self.n_workers:
                return self
            if any(p.poll() is not None for p in self.procs):
                break
            time.sleep(1)
        logs = "\n".join((self.root / f"{n}.log").read_text()[-1500:] for n in ["master"])
        raise RuntimeError(f"standalone cluster did not come up with {self.n_workers} workers:\n{logs}")

    def alive_workers(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=2) as r:
                state = json.load(r)
        except OSError:
            return 0
        return sum(w.get("state") == "ALIVE" for w in state.get("workers", []))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)

    def python_workers(self) -> list[psutil.Process]:
        """The Python processes running tasks: those forked by an executor's pyspark.daemon."""
        found = []
        for proc in self.procs[1:]:
            try:
                for child in psutil.Process(proc.pid).children(recursive=True):
                    parent = child.parent()
                    if parent and "pyspark.daemon" in " ".join(parent.cmdline()) \
                            and "pyspark.daemon" in " ".join(child.cmdline()):
                        found.append(child)
            except psutil.NoSuchProcess:
                continue
        return found

    def busy_python_worker(self, timeout: float = 300.0, window: float = 0.5) -> psutil.Process:
        """A Python worker in the middle of a task: busy now, and of the busy ones the one with
        the least CPU time so far (the most recently started task, not one about to finish)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = {}
            for p in self.python_workers():
                try:
                    before[p] = sum(p.cpu_times()[:2])
                except psutil.NoSuchProcess:
                    pass
            time.sleep(window)
            busy = []
            for p, cpu in before.items():
                try:
                    now = sum(p.cpu_times()[:2])
                except psutil.NoSuchProcess:
                    continue
                if now - cpu > window * 0.4:
                    busy.append((now, p))
            if busy:
                return min(busy, key=lambda b: b[0])[1]
        raise TimeoutError("no busy Python worker appeared")


def spark_jobs(ui_port: int) -> list[dict]:
    """The running application's jobs from its driver's REST API ([] until it answers)."""
    base = f"http://127.0.0.1:{ui_port}/api/v1/applications"
    try:
        with urllib.request.urlopen(base, timeout=5) as r:
            apps = json.load(r)
        with urllib.request.urlopen(f"{base}/{apps[0]['id']}/jobs", timeout=5) as r:
            return json.load(r)
    except (OSError, IndexError, ValueError):
        return []


def failed_tasks(event_log_dir: Path) -> list[dict]:
    """(job description, job group, failure reason) of every task that did not succeed, read from
    the Spark event logs the runs wrote."""
    failures = []
    # Spark 4 writes each application's log as a folder of rolled files (eventlog_v2_<app>/events_N_*).
    for app in event_log_dir.iterdir():
        stage_job: dict[int, dict] = {}
        lines = [line for part in sorted(app.rglob("events_*"), key=lambda p: int(p.name.split("_")[1]))
                 for line in part.read_text().splitlines()]
        for line in lines:
            event = json.loads(line)
            kind = event.get("Event")
            if kind == "SparkListenerJobStart":
                props = event.get("Properties") or {}
                for stage in event["Stage IDs"]:
                    stage_job[stage] = {"description": props.get("spark.job.description", ""),
                                        "group": props.get("spark.jobGroup.id", "")}
            elif kind == "SparkListenerTaskEnd":
                reason = event.get("Task End Reason", {}).get("Reason")
                if reason != "Success":
                    failures.append({**stage_job.get(event["Stage ID"], {}), "reason": reason})
    return failures
