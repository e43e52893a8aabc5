"""Cluster stage: `doc_features` embeddings -> `centroids` and `doc_clusters`.

Centroids are fitted by the configured backend, then every document is assigned to its nearest
centroid by a pandas UDF holding a faiss index of them. The UDF's closure carries the centroids,
and pyspark broadcasts a large closure. A fit is named by a hash of the cluster config, the
embedding normalization and the Delta version of `doc_features` it was fitted on. Documents
embedded after the fit are assigned to its centroids and appended under the same id
(`cluster.refit`), so the super-clusters and a search over them stay valid; a fit again, when due,
replaces both tables whole, and the same inputs give the same rows (the faiss fit is seeded and
deterministic).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from climb_spark.config import Config
from climb_spark.errors import InputError, PreconditionError
from climb_spark.ids import cluster_fit_id, fitted_version
from climb_spark.lakehouse.delta import merge_insert_only, replace_all, table_version
from climb_spark.lakehouse.tables import CENTROIDS, DOC_CLUSTERS, DOC_FEATURES, DOCUMENTS, Lakehouse
from climb_spark.lakehouse.tasks import task_gpu, worker_cached
from climb_spark.stages.cluster import kmeans
from climb_spark.stages.contract import Counted, Stage


def assign_batches(batches: Iterator[pd.DataFrame], centroids: np.ndarray, metric: str, fit_id: str,
                   device: str) -> Iterator[pd.DataFrame]:
    gpu = task_gpu() if device != "cpu" else None
    index = worker_cached("centroid-index", (fit_id, device),
                          lambda: kmeans.build_index(centroids, metric, gpu or "cpu"))
    for batch in batches:
        x = np.stack(batch["embedding"].to_numpy()).astype(np.float32)
        ids, dist = kmeans.assign(index, x, metric)
        yield pd.DataFrame({"doc_id": batch["doc_id"], "cluster_id": ids, "distance": dist,
                            "cluster_run_id": fit_id})


@dataclass
class ClusterReport(Counted):
    fit_id: str
    backend: str
    k: int
    metric: str
    fitted_on: int
    assigned: int
    inertia: float
    seconds: float
    skipped: bool = False
    # Documents assigned to an earlier fit's centroids (cluster.refit), and how they sit there:
    # mean squared distance over the fitted documents', and new documents per fitted one.
    added: int = 0
    drift: float = 0.0
    share: float = 0.0

    def summary(self) -> str:
        if self.skipped:
            return f"cluster {self.fit_id}: up to date ({self.assigned:,} documents in {self.k} clusters)"
        if self.added:
            return (f"cluster {self.fit_id}: {self.added:,} new documents assigned to the {self.k} fitted centroids "
                    f"(drift {self.drift:.2f}x the fitted documents' mean squared distance, {self.share:.2f} new "
                    f"per fitted), {self.assigned:,} documents in all, {self.seconds:.1f}s")
        return (f"cluster {self.fit_id}: {self.backend} k-means, k={self.k}, {self.metric}, fitted on "
                f"{self.fitted_on:,} vectors, {self.assigned:,} documents assigned, inertia {self.inertia:,.2f}, "
                f"{self.seconds:.1f}s")


def fit(spark: SparkSession, cfg: Config, vectors: DataFrame, metric: str) -> tuple[np.ndarray, int]:
    """(centroids, vectors fitted on) with the configured backend."""
    c = cfg.cluster
    if c.backend == "faiss":
        size = c.sample_size or c.k * c.max_points_per_centroid
        x = to_matrix(vectors.orderBy(F.xxhash64("doc_id", F.lit(c.seed))).limit(size).select("embedding"))
        gpu = c.device == "cuda" or (c.device == "auto" and _faiss_gpus() > 0)
        return kmeans.fit_faiss(x, c.k, niter=c.niter, seed=c.seed, metric=metric, gpu=gpu,
                                max_points_per_centroid=c.max_points_per_centroid, init=c.init), len(x)
    from pyspark.ml.functions import array_to_vector

    data = vectors.select(array_to_vector("embedding").alias("features"))
    if c.backend == "mllib":
        from pyspark.ml.clustering import KMeans

        est = KMeans(k=c.k, seed=c.seed, maxIter=c.niter,
                     distanceMeasure="cosine" if metric == "cosine" else "euclidean")
    else:
        try:
            from spark_rapids_ml.clustering import KMeans as RapidsKMeans
        except ImportError as err:
            raise RuntimeError("cluster.backend=rapids needs spark-rapids-ml (and cuML) on the cluster") from err
        est = RapidsKMeans(k=c.k, seed=c.seed, maxIter=c.niter)  # Euclidean only; fine on unit vectors
    centroids = np.array(est.fit(data).clusterCenters(), dtype=np.float32)
    if metric == "cosine":
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return centroids, data.count()


def to_matrix(frame: DataFrame) -> np.ndarray:
    """An array<float> column to an (n, d) float32 matrix through Arrow, without Row objects."""
    column = frame.toArrow().column(0).combine_chunks()
    if len(column) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    return column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(column), -1)


def _faiss_gpus() -> int:
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def _squared(metric: str):
    """Squared L2 to the centroid: 2(1 - cos) between unit vectors, d^2 otherwise."""
    return F.col("distance") * 2 if metric == "cosine" else F.col("distance") ** 2


def run(spark: SparkSession, cfg: Config) -> ClusterReport:
    lake = Lakehouse(cfg.lakehouse)
    feats = lake.ensure(spark, DOC_FEATURES)
    cent_table, assign_table = lake.ensure(spark, CENTROIDS), lake.ensure(spark, DOC_CLUSTERS)
    metric = kmeans.metric_for(cfg.cluster.metric, cfg.embed.normalize)
    version = table_version(spark, feats)
    fid = cluster_fit_id(cfg, version)
    vectors = spark.table(feats).select("doc_id", "embedding")
    n_docs = vectors.count()
    current = _current_fit(spark, cfg, cent_table, version)
    if current is not None:
        held = spark.table(assign_table).where(F.col("cluster_run_id") == current)
        new = vectors.join(held.select("doc_id"), "doc_id", "left_anti")
        if new.isEmpty():
            return ClusterReport(current, cfg.cluster.backend, cfg.cluster.k, metric, 0, held.count(), 0.0, 0.0,
                                 skipped=True)
    _check_embedded(spark, lake, vectors)
    if n_docs < cfg.cluster.k:
        raise InputError(f"cluster.k={cfg.cluster.k} but doc_features holds only {n_docs} documents")

    started = time.monotonic()
    device = cfg.cluster.device
    if current is not None and cfg.cluster.refit != "always":
        done = _assign_new(spark, cfg, current, new, held, metric, cent_table, assign_table, started)
        if done is not None:
            return done

    centroids, fitted_on = fit(spark, cfg, vectors, metric)
    replace_all(spark.createDataFrame(
        [(i, [float(v) for v in row], fid) for i, row in enumerate(centroids)], CENTROIDS.schema), cent_table)
    assigned = vectors.mapInPandas(
        lambda it: assign_batches(it, centroids, metric, fid, device),
        schema="doc_id string, cluster_id int, distance float, cluster_run_id string")
    replace_all(assigned, assign_table)
    total = spark.table(assign_table).agg(F.count("*"), F.sum(_squared(metric))).first()
    return ClusterReport(fid, cfg.cluster.backend, cfg.cluster.k, metric, fitted_on, total[0],
                         float(total[1] or 0.0), time.monotonic() - started)


def _current_fit(spark: SparkSession, cfg: Config, cent_table: str, version: int) -> str | None:
    """The fit the tables hold, if it was made with the current settings (on any version)."""
    fits = spark.table(cent_table).groupBy("cluster_run_id").count().collect()
    if len(fits) != 1 or fits[0]["count"] != cfg.cluster.k:
        return None
    return fits[0]["cluster_run_id"] if fitted_version(cfg, fits[0]["cluster_run_id"], version) is not None else None


def _check_embedded(spark: SparkSession, lake: Lakehouse, vectors: DataFrame) -> None:
    missing = spark.table(lake.ensure(spark, DOCUMENTS)).join(vectors, "doc_id", "left_anti").count()
    if missing:
        raise PreconditionError(f"cluster: {missing:,} documents have no embedding yet (ingested after the last "
                                "embed): run `climb-spark embed` first")


def _assign_new(spark: SparkSession, cfg: Config, fit_id: str, new: DataFrame, held: DataFrame, metric: str,
                cent_table: str, assign_table: str, started: float) -> ClusterReport | None:
    """Append the new documents' assignments to the fitted centroids; None when cluster.refit=auto
    finds them drifted (the caller fits again)."""
    c = cfg.cluster
    rows = spark.table(cent_table).orderBy("cluster_id").select("vector")
    centroids = to_matrix(rows)
    assigned = new.mapInPandas(
        lambda it: assign_batches(it, centroids, metric, fit_id, c.device),
        schema="doc_id string, cluster_id int, distance float, cluster_run_id string").persist()
    try:
        fresh = assigned.agg(F.count("*"), F.avg(_squared(metric))).first()
        old = held.agg(F.count("*"), F.avg(_squared(metric))).first()
        drift = float(fresh[1] or 0.0) / max(float(old[1] or 0.0), 1e-12)
        share = fresh[0] / max(old[0], 1)
        if c.refit == "auto" and (drift > c.refit_drift or share > c.refit_share):
            why = (f"drift {drift:.2f} > cluster.refit_drift={c.refit_drift:g}" if drift > c.refit_drift
                   else f"{share:.2f} new per fitted document > cluster.refit_share={c.refit_share:g}")
            print(f"cluster {fit_id}: {fresh[0]:,} new documents, {why}: fitting again", flush=True)
            return None
        merge_insert_only(spark, assign_table, assigned, DOC_CLUSTERS.key)
    finally:
        assigned.unpersist()
    total = spark.table(assign_table).where(F.col("cluster_run_id") == fit_id).agg(
        F.count("*"), F.sum(_squared(metric))).first()
    return ClusterReport(fit_id, c.backend, c.k, metric, 0, total[0], float(total[1] or 0.0),
                         time.monotonic() - started, added=fresh[0], drift=drift, share=share)


STAGE = Stage("cluster", "k-means over the embeddings, every document assigned to its nearest centroid",
              reads=(DOC_FEATURES, DOCUMENTS), writes=(CENTROIDS, DOC_CLUSTERS), run=run,
              settings=("cluster",))
