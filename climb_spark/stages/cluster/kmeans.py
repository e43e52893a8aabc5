"""k-means over embeddings as plain numpy functions: fit centroids, assign vectors to them.

Cosine geometry when the embeddings are unit-normalized (spherical k-means, inner-product
search, distance = 1 - cos); Euclidean otherwise. Inertia is always the sum of squared L2
distances to the assigned centroid, so that backends compare on one scale.
"""
from __future__ import annotations

import numpy as np


def metric_for(metric: str, normalized: bool) -> str:
    return ("cosine" if normalized else "l2") if metric == "auto" else metric


def kmeans_plus_plus(x: np.ndarray, k: int, seed: int, candidates: int = 0) -> np.ndarray:
    """k-means++ seeding (D^2 sampling; greedy with `candidates` tries per centre, 0 = 2 + log k)."""
    rng = np.random.default_rng(seed)
    n = len(x)
    tries = candidates or 2 + int(np.log(k))
    sq = np.einsum("ij,ij->i", x, x)
    centres = np.empty((k, x.shape[1]), dtype=np.float32)
    centres[0] = x[rng.integers(n)]
    closest = np.maximum(sq - 2 * x @ centres[0] + sq_norm(centres[0]), 0)
    for i in range(1, k):
        total = closest.sum()
        if total <= 0:  # fewer distinct points than k: any further centre is a duplicate
            centres[i:] = x[rng.integers(n, size=k - i)]
            break
        picks = np.searchsorted(np.cumsum(closest), rng.random(tries) * total).clip(max=n - 1)
        dists = np.maximum(sq[None, :] - 2 * x[picks] @ x.T + sq[picks, None], 0)
        np.minimum(dists, closest[None, :], out=dists)
        best = int(np.argmin(dists.sum(axis=1)))
        centres[i], closest = x[picks[best]], dists[best]
    return centres


def sq_norm(v: np.ndarray) -> float:
    return float(v @ v)


def fit_faiss(x: np.ndarray, k: int, *, niter: int, seed: int, metric: str, gpu: bool = False,
              max_points_per_centroid: int = 256, init: str = "kmeans++") -> np.ndarray:
    """Centroids (k x d, float32) trained with faiss on the rows of x, seeded by k-means++
    (as MLlib's k-means|| approximates) or faiss's random pick."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    if len(x) < k:
        raise ValueError(f"cluster.k={k} is more than the {len(x)} vectors to fit on")
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, spherical=metric == "cosine",
                      gpu=gpu, max_points_per_centroid=max_points_per_centroid, verbose=False)
    km.train(x, init_centroids=kmeans_plus_plus(x, k, seed) if init == "kmeans++" else None)
    return np.asarray(km.centroids, dtype=np.float32)


def build_index(centroids: np.ndarray, metric: str, device: str = "cpu"):
    import faiss

    c = np.ascontiguousarray(centroids, dtype=np.float32)
    index = faiss.IndexFlatIP(c.shape[1]) if metric == "cosine" else faiss.IndexFlatL2(c.shape[1])
    if device.startswith("cuda") and hasattr(faiss, "StandardGpuResources"):
        gpu_id = int(device.split(":")[1]) if ":" in device else 0
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), gpu_id, index)
    index.add(c)
    return index


def assign(index, x: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(nearest centroid id, distance) per row: 1 - cos for cosine, Euclidean for l2."""
    scores, ids = index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
    dist = 1.0 - scores[:, 0] if metric == "cosine" else np.sqrt(np.maximum(scores[:, 0], 0.0))
    return ids[:, 0].astype(np.int32), dist.astype(np.float32)


def inertia(x: np.ndarray, centroids: np.ndarray, ids: np.ndarray) -> float:
    diff = x.astype(np.float64) - centroids[ids].astype(np.float64)
    return float(np.einsum("ij,ij->", diff, diff))
