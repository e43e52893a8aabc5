"""Proxy training as Spark tasks: one Spark job per proxy, submitted from a driver thread pool,
so proxies run in parallel across the cluster's slots and each result is kept the moment it
finishes (a staged row and an MLflow child run). A search killed mid-batch loses only the proxies
that were still running.

Results reach `proxy_results` in one Delta commit per batch (a search round), not one per proxy:
each finished proxy is first written whole as a small JSON file under its pool
(`{pool}/proxy_results/{search_id}/{proxy_key}.json`), the batch's rows are committed together
with an insert-only MERGE, and only then are the staged files removed. A driver killed before the
commit leaves its finished proxies staged; the next run of the search commits them first and
reuses them.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from climb_spark.config import ProxyConfig, S3Config, TargetConfig
from climb_spark.errors import ProxyError
from climb_spark.ids import content_id, proxy_settings
from climb_spark.lakehouse import files
from climb_spark.lakehouse.delta import merge_upsert
from climb_spark.lakehouse.tables import PROXY_RESULTS
from climb_spark.lakehouse.tasks import default_parallelism, task_gpu, worker_cached
from climb_spark.proxy import lm
from climb_spark.proxy.pools import Pool, read_choices, read_tokens


@dataclass(frozen=True)
class ProxySpec:
    search_id: str
    method: str
    iteration: int
    index: int
    weights: tuple[float, ...]
    seed: int


def proxy_key(pool_key: str, proxy: ProxyConfig, seed: int, weights) -> str:
    """Names one proxy training: same pool (`Pool.key`: its id and the digest of its tokens, target
    included), settings, seed and mixture = same result."""
    key = {"pool": pool_key, "proxy": proxy_settings(proxy), "seed": seed,
           "weights": [round(float(w), 9) for w in weights]}
    return content_id(key, 16)


def train_in_task(spec: ProxySpec, pool: Pool, proxy: ProxyConfig, target: TargetConfig, threads: int) -> dict:
    """The body of one proxy task (a plain function: the test suite calls it without Spark)."""
    weights = {sc: float(w) for sc, w in zip(pool.super_cluster_ids, spec.weights) if w > 0}
    if proxy.kind == "command":
        return run_command(proxy.command, spec, pool, weights, proxy.timeout_s)
    pools = read_pools(pool, proxy, weights)
    device = task_device(proxy)
    base = read_base(base_path(pool, proxy), pool.s3) if proxy.init == "base" else None
    if pool.target_kind == "choices":
        result = lm.train(pools, weights, np.zeros(0), pool.vocab_size, proxy, spec.seed, device, threads,
                          choices=read_choices(pool.target_path, pool.s3), base=base)
    else:
        result = lm.train(pools, weights, read_tokens(pool.target_path, target.max_tokens, pool.s3),
                          pool.vocab_size, proxy, spec.seed, device, threads, base=base)
    return dataclasses.asdict(result)


def read_pools(pool: Pool, proxy: ProxyConfig, weights: dict[int, float]) -> dict[int, np.ndarray]:
    """At most one proxy's worth of tokens from each super-cluster with a positive weight."""
    budget = proxy.steps * proxy.batch_size * (proxy.seq_len + 1)
    return {sc: read_tokens(pool.train_path(sc), budget, pool.s3) for sc in weights}


def base_path(pool: Pool, proxy: ProxyConfig) -> str:
    """Where the pool keeps the base checkpoint of these proxy settings (`proxy.init=base`)."""
    settings = {k: v for k, v in dataclasses.asdict(proxy).items()
                if k not in ("init", "steps", "warmup_steps", "schedule", "log_every", "device", "command", "kind",
                             "timeout_s")}
    settings["steps"] = proxy.base_steps or proxy.steps
    settings.update(warmup_steps=proxy.warmup_steps, schedule=proxy.schedule)
    return f"{pool.root}/base/{content_id(settings, 12)}.pt"


def read_base(path: str, s3: S3Config) -> bytes:
    """The base checkpoint, read once per worker: its name hashes its settings and it is moved
    into place whole, so the file under a name never changes."""
    def load() -> bytes:
        return files.read_bytes(path, s3)

    return worker_cached("proxy-base", path, load)


def ensure_base(spark: SparkSession, pool: Pool, proxy: ProxyConfig, log: Callable[[str], None] = print) -> str:
    """The base checkpoint, trained once per pool and settings in a Spark task. It is written whole
    or not at all (files.write_bytes), so a killed job never leaves half a checkpoint."""
    import pyarrow.fs as pafs

    path = base_path(pool, proxy)
    fs, where = files.filesystem(path, pool.s3)
    if fs.get_file_info(where).type == pafs.FileType.File:
        return path
    log(f"proxy base {path}: training on the prior for {proxy.base_steps or proxy.steps} steps")
    prior = {sc: float(p) for sc, p in zip(pool.super_cluster_ids, pool.prior) if p > 0}

    def work(threads: int) -> dict:
        started = time.perf_counter()
        tokens = read_pools(pool, dataclasses.replace(proxy, steps=proxy.base_steps or proxy.steps), prior)
        state = lm.base_checkpoint(tokens, prior, pool.vocab_size, proxy, proxy.seed, task_device(proxy),
                                   threads)
        files.write_bytes(path, state, pool.s3)
        return {"seconds": time.perf_counter() - started}

    done = run_in_one_task(spark, work, f"proxy base {pool.pool_id}")
    log(f"proxy base {path}: done in {done['seconds']:.1f}s")
    return path


def task_device(proxy: ProxyConfig) -> str:
    if proxy.device == "cpu":
        return "cpu"
    return task_gpu() or ("cuda" if proxy.device == "cuda" else "cpu")


def run_in_one_task(spark: SparkSession, work: Callable[[int], dict], description: str) -> dict:
    """work(threads) in a Spark job of one task (on an executor, with its cores), as JSON back."""

    def task(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from pyspark import TaskContext

        for _ in batches:
            pass
        ctx = TaskContext.get()
        yield pd.DataFrame({"result": [json.dumps(work(int(ctx.cpus()) if ctx else 1))]})

    sc = getattr(spark, "sparkContext", None)
    if sc is not None:
        sc.setJobDescription(description)
    rows = spark.range(0, 1, 1, 1).mapInPandas(task, "result string").collect()
    return json.loads(rows[0]["result"])


def run_command(argv: list[str], spec: ProxySpec, pool: Pool, weights: dict[int, float],
                timeout_s: float = 3600.0) -> dict:
    """A user's trainer: the mixture as JSON on stdin and at {mixture_json}; its last stdout line
    is the score (a number, or JSON with "score" and optionally "target_loss", "loss_curve"). It
    runs in a process group of its own, killed whole when it is past `timeout_s` (and when it
    ends, so no child it left behind runs on). A run that gives no finite score comes back as
    {"failed": why, "output": its last lines}, never as a score."""
    payload = {"weights": {str(k): v for k, v in weights.items()}, "seed": spec.seed, "search_id": spec.search_id,
               "iteration": spec.iteration, "index": spec.index, "pool_id": pool.pool_id,
               "super_clusters": list(pool.super_cluster_ids),
               "pools": {str(sc): pool.train_path(sc) for sc in weights}, "target": pool.target_path,
               "vocab_size": pool.vocab_size}
    started = time.perf_counter()
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(payload, f)
        f.flush()
        proc = subprocess.Popen([a.replace("{mixture_json}", f.name) for a in argv], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                                start_new_session=True)
        timed_out = False
        try:
            stdout, stderr = proc.communicate(json.dumps(payload), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid)
            try:
                stdout, stderr = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:  # a child that left the group still holds the pipes
                stdout, stderr = "", ""
        finally:
            _kill_group(proc.pid)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    seconds = time.perf_counter() - started
    lines = [line for line in stdout.splitlines() if line.strip()]

    def failed(why: str) -> dict:
        tail = "\n".join((lines + stderr.strip().splitlines())[-5:])[-1000:]
        return {"failed": f"proxy command {argv[0]} {why}", "output": tail, "seconds": seconds}

    if timed_out:
        return failed(f"ran past proxy.timeout_s={timeout_s:g}s and was killed with its children")
    if proc.returncode != 0:
        return failed(f"exited {proc.returncode}")
    try:
        out = _number_or_json(lines[-1]) if lines else None
        out = out if isinstance(out, dict) else {"score": out}
        score = float(out["score"])
        loss = None if out.get("target_loss") is None else float(out["target_loss"])
        curve = [float(v) for v in out.get("loss_curve", [])]
        tokens = int(out.get("tokens", 0))
    except (ValueError, KeyError, TypeError, OverflowError):
        return failed(f"did not print a score as its last line (got {lines[-1][:200] if lines else 'nothing'!r})")
    if not math.isfinite(score):
        return failed(f"printed {lines[-1][:200]!r}: its score is not a finite number")
    return {"score": score, "target_loss": loss, "loss_curve": curve, "tokens_trained": tokens, "seconds": seconds}


def _number_or_json(line: str):
    try:
        return json.loads(line)
    except ValueError:
        return float(line)  # `nan` and `inf` as Python prints them: a number, not a finite one


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class ProxyRunner:
    """Trains the proxies of one search (or comparison), reusing every finished one."""

    def __init__(self, spark: SparkSession, pool: Pool, proxy: ProxyConfig, target: TargetConfig, table: str,
                 tracker, parallelism: int = 0, log: Callable[[str], None] = print, role: str = "search"):
        self.spark, self.pool, self.proxy, self.target, self.table = spark, pool, proxy, target, table
        self.tracker, self.log, self.role = tracker, log, role
        self.parallelism = parallelism or default_parallelism(spark)

    def finished(self, search_id: str) -> dict[str, dict]:
        """The search's committed rows, after committing what a killed run left staged. A score
        that is not a finite number is no result (a version before these checks kept a NaN): its
        proxy is trained again and its row replaced."""
        self.commit(search_id)
        rows = self.spark.table(self.table).where((F.col("search_id") == search_id) & _finite_score()).collect()
        return {r["proxy_key"]: r.asDict() for r in rows}

    def staging(self, search_id: str) -> str:
        return f"{self.pool.root}/proxy_results/{search_id}"

    def commit(self, search_id: str) -> int:
        """The staged rows of a search into `proxy_results` in one commit (a MERGE that inserts new
        keys and replaces only a row whose score is not a finite number, so rows a killed run
        committed but did not unstage are not added twice); then unstaged."""
        staged = read_staged(self.staging(search_id), self.pool.s3)
        if not staged:
            return 0
        rows = [dict(row, finished_at=pd.Timestamp(row["finished_at"]).to_pydatetime()) for _, row in staged
                if math.isfinite(row["score"])]
        if rows:
            merge_upsert(self.spark, self.table, self.spark.createDataFrame(rows, PROXY_RESULTS.schema),
                         PROXY_RESULTS.key, replace_when=f"NOT ({_FINITE_SQL.format('t.score')})")
        fs, _ = files.filesystem(self.staging(search_id), self.pool.s3)
        for path, _ in staged:
            fs.delete_file(path)
        return len(rows)

    def run(self, specs: list[ProxySpec], label: str = "") -> list[dict]:
        """One result row per spec, in spec order. A proxy that gives no finite score stops the
        batch (those not started are not started) once the running ones are done: it is recorded
        as failed (a line, an MLflow run), the finished ones are committed, and a ProxyError
        names its mixture and the trainer's last output."""
        keys = [proxy_key(self.pool.key, self.proxy, s.seed, s.weights) for s in specs]
        done = self.finished(specs[0].search_id) if specs else {}
        # One training per key: specs naming the same mixture and seed share its result.
        todo = list({k: (s, k) for s, k in zip(specs, keys) if k not in done}.values())
        reused = len(set(keys)) - len(todo)
        if reused:
            self.log(f"{label}: reusing {reused} finished proxies, training {len(todo)}")
        if todo and self.proxy.kind == "torch" and self.proxy.init == "base":
            ensure_base(self.spark, self.pool, self.proxy, self.log)
        started, times, failures = time.monotonic(), [], []
        try:
            with ThreadPoolExecutor(max_workers=self.parallelism) as pool:
                futures = {pool.submit(self._train, s, k): (s, k) for s, k in todo}
                for future in as_completed(futures):
                    if future.cancelled():
                        continue
                    spec, key = futures[future]
                    result = _usable(future.result())
                    if "failed" in result:
                        failures.append((spec, result))
                        self._record_failure(spec, key, result)
                        self.log(f"{label}: proxy {spec.index + 1} FAILED: {result['failed']}")
                        for other in futures:
                            other.cancel()  # not started yet: a broken trainer fails them all
                        continue
                    done[key] = self._record(spec, key, result)
                    times.append(result["seconds"])
                    left = len(todo) - len(times)
                    eta = (time.monotonic() - started) / len(times) * left
                    self.log(f"{label}: proxy {spec.index + 1} done, score {result['score']:.4f} in "
                             f"{result['seconds']:.1f}s ({len(times)}/{len(todo)}, ETA {eta:.0f}s)")
        except BaseException:
            # A failed proxy: the batch's finished ones are committed anyway. Should that fail too,
            # they stay staged for the next run, and the first error is the one raised.
            try:
                self.commit(specs[0].search_id)
            except Exception:
                pass
            raise
        if todo:
            self.commit(specs[0].search_id)
        if failures:
            spec, result = failures[0]
            mixture = ", ".join(f"{sc}:{w:.3f}" for sc, w in zip(self.pool.super_cluster_ids, spec.weights) if w > 0)
            output = " | ".join(line.strip() for line in result.get("output", "").splitlines() if line.strip())
            raise ProxyError(f"{label}: proxy {spec.index + 1} (mixture {mixture}) gave no score: {result['failed']}; "
                             f"its last output: {output[-500:] or 'nothing'}; {len(failures)} failed, "
                             f"{len(specs) - len(todo) + len(times)} of {len(specs)} finished and kept: fix the "
                             "trainer and run the same command again, it trains only the rest")
        return [done[k] for k in keys]

    def _train(self, spec: ProxySpec, key: str) -> dict:
        pool, proxy, target = self.pool, self.proxy, self.target
        return run_in_one_task(self.spark, lambda threads: train_in_task(spec, pool, proxy, target, threads),
                               f"proxy {spec.search_id} #{spec.iteration}.{spec.index}")

    def _record_failure(self, spec: ProxySpec, key: str, result: dict) -> None:
        if self.tracker:
            self.tracker.proxy_failed(spec, key, f"{result['failed']}; last output: {result.get('output', '')}",
                                     self.role)

    def _record(self, spec: ProxySpec, key: str, result: dict) -> dict:
        run_id = self.tracker.proxy_run(spec, key, result, self.role) if self.tracker else None
        row = {"search_id": spec.search_id, "proxy_key": key, "method": spec.method, "iteration": spec.iteration,
               "proxy_index": spec.index, "weights": [float(w) for w in spec.weights], "seed": spec.seed,
               "score": float(result["score"]), "target_loss": _finite(result.get("target_loss")),
               "loss_curve": [float(v) for v in result.get("loss_curve") or []],
               "tokens_trained": int(result.get("tokens_trained") or 0), "seconds": float(result["seconds"]),
               "mlflow_run_id": run_id, "pool_id": self.pool.pool_id,
               "finished_at": pd.Timestamp.now(tz="UTC").to_pydatetime(), "role": self.role}
        # Staged whole (a temporary name and a rename, or one PUT) before the progress line says
        # it is done; committed to the table with the rest of the batch.
        staged = dict(row, finished_at=row["finished_at"].isoformat())
        files.write_text(f"{self.staging(spec.search_id)}/{key}.json", json.dumps(staged), self.pool.s3)
        return row


def read_staged(folder: str, s3: S3Config) -> list[tuple[str, dict]]:
    """(path, row) of each staged result in a folder; a write a kill cut short (`.tmp`) is not one."""
    from pyarrow import fs as pafs

    filesystem, where = files.filesystem(folder, s3)
    out = []
    for info in filesystem.get_file_info(pafs.FileSelector(where, allow_not_found=True)):
        if info.type == pafs.FileType.File and info.base_name.endswith(".json"):
            with filesystem.open_input_stream(info.path) as f:
                out.append((info.path, json.loads(f.read().decode("utf-8"))))
    return out


_FINITE_SQL = "({0} IS NOT NULL AND NOT isnan({0}) AND abs({0}) != double('inf'))"


def _finite_score():
    return F.expr(_FINITE_SQL.format("score"))


def _usable(result: dict) -> dict:
    """A result whose score is not a finite number (a torch proxy that diverged) is a failure."""
    if "failed" in result or math.isfinite(result["score"]):
        return result
    return {"failed": f"the proxy's score is {result['score']} (its training diverged: lower proxy.lr)", "output": "", "seconds": result.get("seconds", 0.0)}


def _finite(value) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)
