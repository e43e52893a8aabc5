"""Every stage that is not model inference, at growing corpus sizes: does the time grow linearly?

    .venv/bin/python benchmarks/scale.py [--sizes 100000,300000,1000000] [--shard-docs 50000] [--k 256]
                                         [--keep DIR] [--set key=value ...]

For each size N: N distinct documents of real text (sentences of the embedded sample corpus,
climb_spark.corpus, resampled per source and shuffled into documents of 5-20 sentences) are
written as jsonl shards of `--shard-docs` records, then, on a fresh lakehouse of its own (one
child process, one Spark session per size, `conf/local.yaml` with lakehouse.root moved):

- ingest    `stages.ingest.stage.run` over the shards;
- features  (setup, not a stage: it stands in for embed, which is model inference) synthetic unit
            384-d embeddings around per-(source, topic) centres and precomputed 0-5 scores with a
            per-topic mean, appended to `doc_features` as embed would write them;
- cluster   `stages.cluster.stage.run`: faiss k-means fitted on the stage's own sample
            (k x 256 vectors), then every document assigned by the Spark UDF;
- prune     `stages.prune.stage.run`: statistics, top terms, exemplars, Ward merge;
- pools     `proxy.pools.ensure`: the search stage's token pools (BPE tokenizer trained on a
            sample, every kept document tokenized into parquet), no proxy training;
- export    `stages.export.stage.run` of a fixed mixture (half the prior, half uniform) written to
            `mixtures` under the search id export looks for: `training_mix` and gzip jsonl shards.

Prints seconds per stage and docs/s, then the growth of each stage's time from the smallest to the
largest size against the growth of N (time ratio / size ratio; <= ~1 is linear or better), and
ingest's docs/s per core against the plain single-process parse floor of
benchmarks/ingest_shards.py on the same shards, same cores, same run. The mean 1-minute load
average over each stage is printed too: this benchmark's own work is ~2 on a 2-core machine, and
anything above that is other processes competing for the cores.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from climb_spark.config import CorpusConfig, load  # noqa: E402
from climb_spark.corpus import build  # noqa: E402
from ingest_shards import plain_parse  # noqa: E402

STAGES = ("ingest", "cluster", "prune", "pools", "export")
DIM = 384
TOPICS_PER_SOURCE = 8
FLOOR_LINES = 200_000  # lines of the first shard the plain parse floor reads
SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


# ---------------------------------------------------------------------------------------------
# Input: distinct documents built from real sentences.

def sentence_pools(folder: Path) -> dict[str, list[str]]:
    """Sentences of the sample corpus by source (at least three words each)."""
    if not any(folder.glob("*.jsonl")):
        build(CorpusConfig(output=str(folder), max_docs=3000, seed=3))
    pools: dict[str, list[str]] = {}
    for f in sorted(folder.glob("*.jsonl")):
        for line in f.open(encoding="utf-8"):
            rec = json.loads(line)
            pools.setdefault(rec["source"], []).extend(
                s.strip() for s in SENTENCE.split(rec["text"]) if len(s.split()) >= 3)
    return {k: sorted(set(v)) for k, v in sorted(pools.items())}


def write_shards(folder: Path, n: int, shard_docs: int, pools: dict[str, list[str]], seed: int) -> None:
    """n documents in shards of shard_docs lines; each document is 5-20 sentences of one source,
    in paragraphs of up to 4, so two documents are (all but surely) never the same text."""
    done = folder / "_done"
    if done.exists():
        print(f"reusing {n:,} documents in {folder}", flush=True)
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started, rnd, sources = time.perf_counter(), random.Random(seed), list(pools)
    for shard, first in enumerate(range(0, n, shard_docs)):
        with (folder / f"part-{shard:05d}.jsonl").open("w", encoding="utf-8") as f:
            for i in range(first, min(n, first + shard_docs)):
                source = sources[i % len(sources)]
                picked = rnd.sample(pools[source], rnd.randint(5, 20))
                text = "\n\n".join(" ".join(picked[j:j + 4]) for j in range(0, len(picked), 4))
                f.write(json.dumps({"text": text, "source": source, "url": f"https://example.org/{source}/{i}"}) + "\n")
    done.write_text(str(n))
    size = sum(p.stat().st_size for p in folder.glob("*.jsonl"))
    print(f"wrote {n:,} documents in {shard + 1} shards, {size / 1e9:.2f} GB, in {time.perf_counter() - started:.0f}s",
          flush=True)


# ---------------------------------------------------------------------------------------------
# One size, in a child process with its own lakehouse and Spark session.

def feature_batches(batches, sources: dict[str, int], centres, topic_means):
    """(doc_id, source) -> doc_features' computed columns: a unit vector near the document's topic
    centre (topic = its source's block of centres, picked by a hash of the doc_id) and four 0-5
    scores around the topic's means."""
    import numpy as np
    import pandas as pd

    from climb_spark.rubric import CRITERIA

    for batch in batches:
        ids = batch["doc_id"].tolist()
        if not ids:
            continue
        h = np.array([int(d[:8], 16) for d in ids], dtype=np.int64)
        src = np.array([sources.get(s, 0) for s in batch["source"]], dtype=np.int64)
        topic = src * TOPICS_PER_SOURCE + h % TOPICS_PER_SOURCE
        rng = np.random.default_rng(int(ids[0][8:16], 16))
        x = centres[topic] + rng.normal(0.0, 0.04, (len(ids), DIM)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        scores = np.clip(topic_means[topic] + rng.normal(0.0, 0.6, (len(ids), len(CRITERIA))), 0, 5)
        yield pd.DataFrame({"doc_id": ids, "embedding": list(x.astype(np.float32)),
                            **{c: scores[:, j].astype(np.float32) for j, c in enumerate(CRITERIA)}})


def write_features(spark, cfg, sources: list[str]) -> int:
    import numpy as np
    from pyspark.sql import functions as F

    from climb_spark.lakehouse.tables import DOC_FEATURES, DOCUMENTS, Lakehouse
    from climb_spark.rubric import CRITERIA

    rng = np.random.default_rng(7)
    n_topics = len(sources) * TOPICS_PER_SOURCE
    centres = rng.normal(size=(n_topics, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    # Topic means of the four criteria between 0.8 and 4.2: at prune.paper_threshold 2.0 (the
    # local profile) a share of the clusters is dropped, as on real data.
    topic_means = rng.uniform(0.8, 4.2, size=(n_topics, 1)) + rng.normal(0, 0.3, size=(n_topics, len(CRITERIA)))
    index = {s: i for i, s in enumerate(sources)}
    lake = Lakehouse(cfg.lakehouse)
    computed = ", ".join(["doc_id string", "embedding array<float>"] + [f"{c} float" for c in CRITERIA])
    rows = (spark.table(lake.ensure(spark, DOCUMENTS)).select("doc_id", "source")
            .mapInPandas(lambda it: feature_batches(it, index, centres, topic_means), schema=computed)
            .select("doc_id", "embedding", *CRITERIA, F.lit("synthetic-unit-384").alias("embedding_model"),
                    F.lit("synthetic-scores").alias("quality_model"), F.lit("scale-bench").alias("features_run_id"),
                    F.current_timestamp().alias("computed_at")))
    rows.writeTo(lake.ensure(spark, DOC_FEATURES)).append()
    return spark.table(lake.name(DOC_FEATURES)).count()


def write_fixed_mixture(spark, cfg, pool) -> list[float]:
    """Half the prior, half uniform, in `mixtures` under the id export looks for by default."""
    import numpy as np
    import pandas as pd

    from climb_spark.ids import search_id
    from climb_spark.lakehouse.tables import MIXTURES, Lakehouse

    prior = np.asarray(pool.prior, dtype=np.float64)
    prior /= prior.sum()
    weights = 0.5 * prior + 0.5 / len(prior)
    row = {"search_id": search_id(cfg, pool.pool_id, cfg.export.method), "method": cfg.export.method,
           "weights": weights.tolist(), "prior": prior.tolist(), "predicted_score": None,
           "best_observed_score": None, "n_proxies": 0, "pool_id": pool.pool_id,
           "cluster_run_id": pool.cluster_run_id, "mlflow_run_id": None,
           "config": json.dumps({"benchmark": "scale", "weights": "0.5 prior + 0.5 uniform"}),
           "created_at": pd.Timestamp.now(tz="UTC").to_pydatetime()}
    spark.createDataFrame([row], MIXTURES.schema).writeTo(Lakehouse(cfg.lakehouse).ensure(spark, MIXTURES)).append()
    return weights.tolist()


class LoadSampler:
    """The 1-minute load average every 2 s, averaged over a stage afterwards."""

    def __init__(self):
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            self.samples.append((time.perf_counter(), os.getloadavg()[0]))
            if self.stop.wait(2.0):
                return

    def mean(self, start: float, end: float) -> float:
        inside = [v for t, v in self.samples if start <= t <= end] or [os.getloadavg()[0]]
        return sum(inside) / len(inside)


class TreeCpu:
    """CPU seconds (user + system) of this process and everything under it (the JVM, the Python
    workers), whatever else runs on the machine. Each process's own time is kept by pid as last
    seen, refreshed every second and at each reading, so a worker that exits keeps what it used
    (up to the last second before it exited); reaped children's times are not added, so nothing
    counts twice."""

    def __init__(self):
        import psutil

        self.me, self.seen, self.lock = psutil.Process(), {}, threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def _refresh(self) -> None:
        import psutil

        with self.lock:
            for proc in [self.me, *self.me.children(recursive=True)]:
                try:
                    t = proc.cpu_times()
                    self.seen[(proc.pid, proc.create_time())] = t.user + t.system
                except psutil.Error:
                    pass

    def _run(self):
        while True:
            self._refresh()
            time.sleep(1.0)

    def __call__(self) -> float:
        self._refresh()
        with self.lock:
            return sum(self.seen.values())


def one_size(args) -> None:
    from climb_spark.lakehouse.session import build_session
    from climb_spark.proxy import pools as token_pools
    from climb_spark.stages.cluster import stage as cluster
    from climb_spark.stages.export import stage as export
    from climb_spark.stages.ingest import stage as ingest
    from climb_spark.stages.prune import stage as prune

    n, work = args.one, Path(args.dir)
    shards, lake = work / f"shards_{n}", work / f"lake_{n}"
    shutil.rmtree(lake, ignore_errors=True)
    cfg = load([ROOT / "conf" / "local.yaml"],
               [f"lakehouse.root={lake}", f"ingest.input={shards}", f"spark.jars_dir={ROOT / '.cache' / 'jars'}",
                f"cluster.k={args.k}", *args.set])
    sources = list(sentence_pools(work / "corpus"))
    load_avg, tree_cpu_seconds = LoadSampler(), TreeCpu()
    out: dict = {"n": n, "seconds": {}, "load": {}, "cpu": {}}
    started = time.perf_counter()
    spark = build_session(cfg)
    out["session_s"] = time.perf_counter() - started
    out["cores"] = int(spark.sparkContext.defaultParallelism)

    def timed(name: str, fn):
        c0, t0 = tree_cpu_seconds(), time.perf_counter()
        result = fn()
        t1 = time.perf_counter()
        out["seconds"][name], out["load"][name] = t1 - t0, load_avg.mean(t0, t1)
        out["cpu"][name] = tree_cpu_seconds() - c0
        print(f"[{n:,}] {name}: {t1 - t0:.1f}s wall, {out['cpu'][name]:.1f} CPU s "
              f"(load {out['load'][name]:.1f})", flush=True)
        return result

    report = timed("ingest", lambda: ingest.run(spark, cfg))
    print(report.summary(), flush=True)
    out.update(documents=report.documents, input_records=report.input_records, splits=report.splits,
               files=report.files)
    first = sorted(shards.glob("*.jsonl"))[0]
    out["floor"] = timed("floor", lambda: plain_parse(first, min(n, FLOOR_LINES)))
    out["features_docs"] = timed("features", lambda: write_features(spark, cfg, sources))
    print(timed("cluster", lambda: cluster.run(spark, cfg)).summary(), flush=True)
    pruned = timed("prune", lambda: prune.run(spark, cfg))
    print(pruned.summary(), flush=True)
    out.update(kept_docs=pruned.kept_docs, clusters_kept=pruned.kept, super_clusters=pruned.super_clusters)
    pool = timed("pools", lambda: token_pools.ensure(spark, cfg, lambda line: print(line, flush=True)))
    out["weights"] = write_fixed_mixture(spark, cfg, pool)
    exported = timed("export", lambda: export.run(spark, cfg))
    print(exported.summary().splitlines()[0], flush=True)
    out.update(exported_docs=exported.manifest["total_docs"], exported_tokens=exported.manifest["total_tokens"])
    load_avg.stop.set()
    spark.stop()
    (work / f"result_{n}.json").write_text(json.dumps(out))


# ---------------------------------------------------------------------------------------------
# The driver: one child per size, then the tables.

def _total(r: dict, key: str) -> float:
    return sum(r[key][s] for s in STAGES)


def report(results: list[dict], target_n: int = 1_000_000, target_s: float = 900.0) -> None:
    cores = results[0]["cores"]
    print(f"\nper stage: wall seconds, CPU seconds of the whole process tree (JVM + Python workers), "
          f"mean 1-min load average (~{cores} is this benchmark alone on {cores} cores)")
    print(f"{'N':>10} " + " ".join(f"{s:>22}" for s in STAGES) + f" {'total':>16}")
    for r in results:
        cells = [f"{r['seconds'][s]:6.1f}s {r['cpu'][s]:6.1f}cpu {r['load'][s]:4.1f}L".rjust(22) for s in STAGES]
        print(f"{r['n']:>10,} " + " ".join(cells) + f" {_total(r, 'seconds'):6.1f}s {_total(r, 'cpu'):6.1f}cpu")
    print("docs/s (wall) and docs per CPU second:")
    for r in results:
        n = r["n"]
        cells = [f"{n / r['seconds'][s]:8,.0f} {n / r['cpu'][s]:8,.0f}/cpu".rjust(22) for s in STAGES]
        print(f"{n:>10,} " + " ".join(cells) + f" {n / _total(r, 'seconds'):6,.0f} {n / _total(r, 'cpu'):6,.0f}/cpu")
    for r in results:
        per_core = r["input_records"] / r["seconds"]["ingest"] / r["cores"]
        # The floor's lines (its rate x its wall time) over the CPU seconds it took.
        floor_cpu = r["floor"] * r["seconds"]["floor"] / max(r["cpu"]["floor"], 1e-9)
        print(f"{r['n']:>10,}: {r['documents']:,} documents from {r['files']} shards ({r['splits']} splits); "
              f"ingest {per_core:,.0f} docs/s per core on {r['cores']} cores (wall) vs the plain single-process "
              f"parse floor {r['floor']:,.0f} docs/s (wall) = {per_core / r['floor']:.2f}; per CPU second ingest "
              f"{r['input_records'] / r['cpu']['ingest']:,.0f} docs, the floor {floor_cpu:,.0f} = "
              f"{r['input_records'] / r['cpu']['ingest'] / floor_cpu:.2f}; kept {r['kept_docs']:,} docs in {r['clusters_kept']} clusters / "
              f"{r['super_clusters']} super-clusters; exported {r['exported_docs']:,} rows, "
              f"{r['exported_tokens']:,} tokens; features setup {r['seconds']['features']:.0f}s, "
              f"session start {r['session_s']:.0f}s")
    if len(results) > 1:
        lo, hi = results[0], results[-1]
        size = hi["n"] / lo["n"]
        print(f"\ngrowth {lo['n']:,} -> {hi['n']:,} (size x{size:.1f}): time ratio / size ratio, <= ~1 is linear")
        for s in (*STAGES, "total"):
            for key, unit in (("seconds", "s wall"), ("cpu", " CPU s")):
                a = _total(lo, key) if s == "total" else lo[key][s]
                b = _total(hi, key) if s == "total" else hi[key][s]
                print(f"  {s:>8} {unit:>6}: {a:8.1f} -> {b:8.1f}  x{b / a:5.2f}  ratio of ratios {b / a / size:.2f}"
                      f"{'  SUPERLINEAR?' if b / a / size > 1.15 else ''}")
    hi = results[-1]
    scale = target_n / hi["n"]
    wall, cpu = _total(hi, "seconds") * scale, _total(hi, "cpu") * scale
    basis = "measured" if scale == 1 else f"linear projection from {hi['n']:,}"
    print(f"\nat {target_n:,} documents ({basis}): "
          f"{wall:,.0f}s wall as loaded here, {cpu:,.0f} CPU s = {cpu / cores:,.0f}s on {cores} idle cores if "
          f"every stage kept them busy; target {target_s:,.0f}s")
    print("Timings are noisy: a shared 2-core machine (other processes' load shows above ~2L); wall seconds "
          "inflate with it, CPU seconds much less. Rerun before reading small differences.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,300000,1000000", help="comma-separated document counts")
    ap.add_argument("--shard-docs", type=int, default=50_000, help="documents per jsonl shard")
    ap.add_argument("--k", type=int, default=256, help="cluster.k (fitted on k x 256 sampled vectors)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--keep", default=None, help="a folder to work in and keep (shards are reused from it)")
    ap.add_argument("--set", action="append", default=[], help="config override key=value (repeatable)")
    ap.add_argument("--report-only", action="store_true",
                    help="print the tables from the result_N.json files a --keep folder already holds")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        one_size(args)
        return
    sizes = sorted(int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip())
    work = Path(args.keep or tempfile.mkdtemp(prefix="climb-scale-"))
    if args.report_only:
        report([json.loads((work / f"result_{n}.json").read_text()) for n in sizes
                if (work / f"result_{n}.json").exists()])
        return
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder {work}; cpu count {os.cpu_count()}; load average now {os.getloadavg()[0]:.1f}", flush=True)
    pools = sentence_pools(work / "corpus")
    print(f"{sum(map(len, pools.values())):,} sentences from {len(pools)} sources", flush=True)
    results = []
    try:
        for n in sizes:
            write_shards(work / f"shards_{n}", n, args.shard_docs, pools, args.seed + n)
            cmd = [sys.executable, __file__, "--one", str(n), "--dir", str(work), "--k", str(args.k)]
            cmd += [a for s in args.set for a in ("--set", s)]
            started = time.perf_counter()
            subprocess.run(cmd, check=True)
            print(f"[{n:,}] child process {time.perf_counter() - started:.0f}s", flush=True)
            results.append(json.loads((work / f"result_{n}.json").read_text()))
            if not args.keep:
                shutil.rmtree(work / f"lake_{n}", ignore_errors=True)
                shutil.rmtree(work / f"shards_{n}", ignore_errors=True)
        report(results)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
