"""Embed-and-label throughput: the Spark stage's worker function vs plain single-process calls.

    .venv/bin/python benchmarks/embed.py [--docs 1000] [--gpu] [--set key=value ...]

Same real documents (the sample corpus), same cores. Spark runs are timed after a warm-up
pass over the same data, so the per-worker model load is amortized as it is in a long job.
With --gpu, only the plain function is measured on the GPU (fp16).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from climb_spark.config import CorpusConfig, load  # noqa: E402
from climb_spark.corpus import build  # noqa: E402
from climb_spark.rubric import CRITERIA  # noqa: E402
from climb_spark.stages.embed import encoder  # noqa: E402
from climb_spark.stages.embed import stage as embed  # noqa: E402
from climb_spark.stages.quality import classifiers  # noqa: E402


def corpus_texts(folder: Path, n: int) -> list[str]:
    build(CorpusConfig(output=str(folder), max_docs=n, seed=1))
    return [json.loads(line)["text"] for f in sorted(folder.glob("*.jsonl")) for line in f.open()]


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--gpu-model", default=None, help="a second (larger) model folder for the GPU run")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a profile override, as the CLI takes it (an A/B of a worker setting)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="climb-bench-"))
    texts = corpus_texts(tmp / "corpus", args.docs)
    n = len(texts)
    cfg = load([ROOT / "conf" / "local.yaml"], [
        f"lakehouse.root={tmp / 'lake'}", f"quality.model_dir={tmp / 'quality'}",
        f"spark.jars_dir={ROOT / '.cache' / 'jars'}", "spark.master=local[2]", *args.set])
    ref = encoder.resolve_model(cfg.embed.model)
    print(f"{n} documents, mean {sum(map(len, texts)) / n:.0f} chars, model {ref.name}, "
          f"max_seq_length {cfg.embed.max_seq_length}, batch {cfg.embed.batch_size}")

    if args.gpu:
        for name in [cfg.embed.model] + ([args.gpu_model] if args.gpu_model else []):
            r = encoder.resolve_model(name)
            model = encoder.load_encoder(r, "cuda", cfg.embed.max_seq_length, fp16=True)
            encoder.encode(model, texts[:256], 256, True)
            secs = timed(lambda: encoder.encode(model, texts, 256, True))
            print(f"GPU fp16 plain encode {r.name}: {n / secs:,.0f} docs/s")
        return

    # Plain baseline: one process, torch's default threads over all cores.
    model = encoder.load_encoder(ref, "cpu", cfg.embed.max_seq_length)
    encoder.encode(model, texts[:64], cfg.embed.batch_size, True)
    plain_embed = n / timed(lambda: encoder.encode(model, texts, cfg.embed.batch_size, True))

    from climb_spark.lakehouse.session import build_session

    spark = build_session(cfg)
    spark.createDataFrame([(t,) for t in texts], "text string").selectExpr(
        "sha2(text, 256) AS doc_id", "text", "'bench' AS source", "CAST(NULL AS string) AS metadata",
        "length(text) AS n_chars", "size(split(text, ' ')) AS n_words", "'bench' AS file",
        "CAST(0 AS bigint) AS line", "CAST(0 AS bigint) AS offset", "'bench' AS ingest_run_id",
        "current_timestamp() AS ingested_at").write.format("delta").mode("overwrite").saveAsTable("bench_docs")
    docs = embed.by_length(spark.table("bench_docs").select("doc_id", "text"), n, 2).cache()
    docs.count()
    from climb_spark.stages.quality.heuristic_teacher import rubric_scores

    q = cfg.quality
    qdir, quantized = q.model_dir, q.quantize  # the configured (compact by default) models
    for c in CRITERIA:
        classifiers.train(texts, [rubric_scores(t)[c] for t in texts], classifiers.model_path(qdir, c, quantized),
                          epoch=5, lr=0.5, word_ngrams=2, dim=50, seed=1, quantize=quantized,
                          max_compact_drift=q.max_compact_drift)
    f = embed.embedder(cfg)
    version = classifiers.models_version(qdir, quantized)

    def spark_pass(frame, fn, schema) -> float:
        return timed(lambda: frame.mapInPandas(fn, schema=schema).write.format("noop").mode("overwrite").save())

    def embed_fn(it):
        return embed.embed_batches(it, f, version)

    spark_pass(docs, embed_fn, embed.COMPUTED)  # warm-up: each worker loads its models
    spark_embed = n / spark_pass(docs, embed_fn, embed.COMPUTED)

    models = classifiers.load_models(qdir, quantized)
    classifiers.score_all(models, texts[:10])
    plain_score = 20 * n / timed(lambda: classifiers.score_all(models, texts * 20))

    schema = "doc_id string, " + ", ".join(f"{c} float" for c in CRITERIA)
    # fastText is fast: score 20x the rows so Spark's per-job overhead is amortized as in a real run.
    big = (spark.table("bench_docs").select("doc_id", "text").crossJoin(spark.range(20)).drop("id")
           .repartition(8).cache())
    big.count()

    def score_fn(it):
        return embed.score(it, qdir, quantized, version)

    spark_pass(big, score_fn, schema)
    spark_score = 20 * n / spark_pass(big, score_fn, schema)
    spark.stop()

    print(f"embedding+scoring  plain encode {plain_embed:8.1f} docs/s | spark stage {spark_embed:8.1f} docs/s"
          f" | ratio {spark_embed / plain_embed:.2f}x")
    print(f"fastText scoring   plain predict {plain_score:8.0f} docs/s | spark tasks {spark_score:8.0f} docs/s"
          f" | ratio {spark_score / plain_score:.2f}x")


if __name__ == "__main__":
    main()
