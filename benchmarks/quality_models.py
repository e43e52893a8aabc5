"""Compact vs full fastText quality models: file sizes, score agreement, worker memory.

    .venv/bin/python benchmarks/quality_models.py [--docs 3000] [--bucket N] [--rss-docs 2000]
        [--rss-batch-sizes 8,64] [--no-rss]

Real text (the sample corpus) labelled by the heuristic teacher; a fixed 20% of the documents is
held out. Per criterion, the full model and the compact one are trained by the project's own
`classifiers.train` with the QualityConfig defaults (the compact one from the same, deterministic,
single-threaded training, its non-zero rows kept at int8 per row), and both score the held-out texts.
Printed: file sizes, the MAE between the two models' expected scores, and each model's MAE
against the teacher's labels. Then the peak RSS (VmHWM) of a fresh process per variant that
does an embed worker's job on CPU with one torch thread: load MiniLM and the four models, embed and
score documents through `embed_batches`, the function the Spark stage runs in each Python worker,
with the environment the default profile gives Python workers (`spark.executorEnv.*` in
conf/local.yaml). Variants: the full models at the default batch size; the compact ones at each
batch size, with the worker giving its free heap back after each Arrow batch (the default,
`embed.release_free_heap`) and without.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from climb_spark.config import CorpusConfig, EmbedConfig, QualityConfig, load  # noqa: E402
from climb_spark.corpus import build  # noqa: E402
from climb_spark.rubric import CRITERIA  # noqa: E402
from climb_spark.stages.quality import classifiers  # noqa: E402


def corpus_texts(folder: Path, n: int) -> list[str]:
    build(CorpusConfig(output=str(folder), max_docs=n, seed=1))
    return [json.loads(line)["text"] for f in sorted(folder.glob("*.jsonl")) for line in f.open()]


def held_out(text: str) -> bool:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 5 == 0


def rss_worker(model_dir: str, quantized: bool, corpus: str, n_docs: int, version: str, batch_size: int,
               release: bool) -> None:
    """One embed worker's life on CPU, one torch thread as a Spark task with one core has; prints
    its peak RSS in MB, its RSS after the first and the last batch and its rate."""
    import pandas as pd
    import torch

    from climb_spark.config import EmbedConfig
    from climb_spark.stages.embed import encoder
    from climb_spark.stages.embed import stage as embed

    torch.set_num_threads(1)
    if not release:  # the stage's own name for it, so only embed_batches' calls are skipped
        embed.release_free_heap = lambda: None
    texts = [json.loads(line)["text"] for f in sorted(Path(corpus).glob("*.jsonl")) for line in f.open()]
    texts = (texts * -(-n_docs // len(texts)))[:n_docs]
    e = EmbedConfig()
    f = embed.Embedder(model=encoder.resolve_model(e.model), dim=384, max_seq_length=e.max_seq_length,
                       batch_size=batch_size, normalize=e.normalize, trust_remote_code=False, device="cpu",
                       fp16=False, quality_dir=model_dir, quality_quantized=quantized)
    # Arrow batches as Spark hands them to mapInPandas (~256 documents a task, see embed.by_length).
    batches = (pd.DataFrame({"doc_id": [str(i) for i in range(s, min(s + 256, len(texts)))],
                             "text": texts[s:s + 256]}) for s in range(0, len(texts), 256))
    after, rows, started = [], 0, time.perf_counter()
    for out in embed.embed_batches(batches, f, version):
        rows += len(out)
        after.append(int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20)
    rate = rows / (time.perf_counter() - started)
    # VmHWM, not getrusage's ru_maxrss: Linux carries that across fork and exec, so it held the
    # benchmark's own RSS at the fork (1.7 GB after the full models), not this worker's peak.
    peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024
    print(json.dumps({"rows": rows, "peak_rss_mb": peak, "after_batches_mb": [after[0], after[-1]],
                      "docs_s": rate}))


def peak_rss(model_dir: Path, quantized: bool, corpus: Path, n_docs: int, batch_size: int, release: bool) -> dict:
    # The models' version hash is the driver's work (embed.run): reading 1.6 GB of full models
    # here would count in the worker's peak.
    version = classifiers.models_version(str(model_dir), quantized)
    from climb_spark.lakehouse.session import spark_conf

    conf = spark_conf(load([ROOT / "conf" / "local.yaml"], [f"spark.jars_dir={ROOT / '.cache' / 'jars'}"]))
    worker_env = {k.removeprefix("spark.executorEnv."): v for k, v in conf.items() if k.startswith("spark.executorEnv.")}
    done = subprocess.run([sys.executable, __file__, "--rss-worker", str(model_dir), str(int(quantized)),
                           str(corpus), str(n_docs), version, str(batch_size), str(int(release))],
                          capture_output=True, text=True, check=True, env={**os.environ, **worker_env})
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "env": worker_env}


def main() -> None:
    q = QualityConfig()
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=3000)
    ap.add_argument("--bucket", type=int, default=q.bucket)
    ap.add_argument("--rss-docs", type=int, default=2000)
    ap.add_argument("--no-rss", action="store_true")
    ap.add_argument("--rss-batch-sizes", default=f"{EmbedConfig().batch_size},64")
    ap.add_argument("--rss-worker", nargs=7, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_worker:
        model_dir, quantized, corpus, n_docs, version, batch_size, release = args.rss_worker
        return rss_worker(model_dir, quantized == "1", corpus, int(n_docs), version, int(batch_size), release == "1")

    tmp = Path(tempfile.mkdtemp(prefix="climb-bench-quality-"))
    texts = corpus_texts(tmp / "corpus", args.docs)
    train = [t for t in texts if not held_out(t)]
    held = [t for t in texts if held_out(t)]
    from climb_spark.stages.quality.heuristic_teacher import rubric_scores

    train_labels = [rubric_scores(t) for t in train]
    held_labels = [rubric_scores(t) for t in held]
    print(f"{len(train)} training / {len(held)} held-out documents (sample corpus, heuristic teacher); "
          f"epoch {q.epoch} lr {q.lr} wordNgrams {q.word_ngrams} dim {q.dim} bucket {args.bucket:,}; "
          "compact: non-zero rows, int8 per row (stages/quality/compact.py)")
    full_dir, compact_dir = tmp / "full", tmp / "compact"
    common = dict(epoch=q.epoch, lr=q.lr, word_ngrams=q.word_ngrams, dim=q.dim, seed=q.seed, bucket=args.bucket)
    print(f"{'criterion':20s} {'full MB':>8s} {'compact MB':>10s} {'MAE full~compact':>16s} "
          f"{'p99 |diff|':>10s} {'MAE full~teacher':>16s} {'MAE compact~teacher':>19s}")
    sizes = {False: 0, True: 0}
    worst = 0.0
    for c in CRITERIA:
        labels = [lab[c] for lab in train_labels]
        truth = np.array([lab[c] for lab in held_labels], dtype=np.float64)
        scores, mb = {}, {}
        for quantized, folder in ((False, full_dir), (True, compact_dir)):
            path = classifiers.model_path(str(folder), c, quantized)
            lr = classifiers.train(train, labels, path, quantize=quantized, probe=held,
                                   max_compact_drift=q.max_compact_drift, **common).lr
            if lr != q.lr:
                print(f"  note: {c} {'compact' if quantized else 'full'} trained at lr {lr:g} (NaN at {q.lr:g})")
            scores[quantized] = classifiers.expected_scores(classifiers.load_model(path, quantized), held)
            mb[quantized] = path.stat().st_size / 1e6
            sizes[quantized] += path.stat().st_size
        diff = np.abs(scores[True] - scores[False])
        worst = max(worst, float(diff.mean()))
        print(f"{c:20s} {mb[False]:8.1f} {mb[True]:10.2f} {diff.mean():16.4f} {np.quantile(diff, 0.99):10.3f} "
              f"{np.abs(scores[False] - truth).mean():16.3f} {np.abs(scores[True] - truth).mean():19.3f}")
    print(f"{'total':20s} {sizes[False] / 1e6:8.1f} {sizes[True] / 1e6:10.2f}   "
          f"compact/full {sizes[True] / sizes[False]:.4f} ({sizes[False] / sizes[True]:,.0f}x smaller); "
          f"worst per-criterion MAE full~compact {worst:.4f}")

    # Scoring speed, one process, the four models over the held-out texts 10 times: fastText's
    # own predict on the full models against the compact ones' numpy scorer.
    texts = held * 10
    rates = {}
    for quantized, folder in ((False, full_dir), (True, compact_dir)):
        models = classifiers.load_models(str(folder), quantized)
        classifiers.score_all(models, held[:20])
        started = time.perf_counter()
        classifiers.score_all(models, texts)
        rates[quantized] = len(texts) / (time.perf_counter() - started)
    print(f"scoring, four models, one process: full (fastText predict) {rates[False]:,.0f} docs/s | "
          f"compact (numpy) {rates[True]:,.0f} docs/s | ratio {rates[True] / rates[False]:.2f}x")

    if not args.no_rss:
        # The default first, then each batch size with and without giving the free heap back.
        sizes = [int(b) for b in args.rss_batch_sizes.split(",")]
        print(f"embed worker on CPU, one torch thread (MiniLM + four models, {args.rss_docs} documents "
              "embedded and scored in Arrow batches of 256):")
        variants = [(False, sizes[0], True)] + [(True, b, r) for b in sizes for r in (True, False)]
        for quantized, batch, release in variants:
            rss = peak_rss(full_dir if not quantized else compact_dir, quantized, tmp / "corpus", args.rss_docs,
                           batch, release)
            print(f"  {'compact' if quantized else 'full':7s} models, batch {batch:3d}, free heap "
                  f"{'released' if release else 'kept    '} per Arrow batch: peak RSS {rss['peak_rss_mb']:,.0f} MB, "
                  f"after the first / last batch (before its release) {rss['after_batches_mb'][0]:,.0f} / "
                  f"{rss['after_batches_mb'][1]:,.0f} MB, "
                  f"{rss['docs_s']:.1f} docs/s; worker env {rss['env']}", flush=True)
    print(f"(files under {tmp})")


if __name__ == "__main__":
    main()
