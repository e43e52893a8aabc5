"""k-means as plain functions: seeded faiss fits, k-means++ seeding, cosine assignment."""
import numpy as np
import pytest

from climb_spark.stages.cluster import kmeans
from tests.conftest import blobs


def test_faiss_fit_is_seeded_and_recovers_blobs():
    x, labels = blobs()
    a = kmeans.fit_faiss(x, 3, niter=20, seed=1, metric="l2")
    b = kmeans.fit_faiss(x, 3, niter=20, seed=1, metric="l2")
    assert np.array_equal(a, b)
    ids, dist = kmeans.assign(kmeans.build_index(a, "l2"), x, "l2")
    for blob in range(3):  # each blob lands in one cluster, and the clusters differ
        assert len(set(ids[labels == blob])) == 1
    assert len(set(ids)) == 3
    assert np.allclose(dist, np.linalg.norm(x - a[ids], axis=1), atol=1e-3)
    assert kmeans.inertia(x, a, ids) == pytest.approx(float((dist.astype(np.float64) ** 2).sum()), rel=1e-4)


def test_kmeans_plus_plus_seeds_one_centre_per_blob():
    # 8 tight, far-apart blobs of very different sizes: D^2 seeding covers each; a uniform
    # random pick of 8 points would mostly land in the big blobs.
    rng = np.random.RandomState(3)
    sizes = [400, 200, 100, 50, 20, 10, 5, 3]
    centers = rng.randn(8, 16) * 20
    labels = np.repeat(np.arange(8), sizes)
    x = (centers[labels] + rng.randn(len(labels), 16) * 0.1).astype(np.float32)
    for candidates in (1, 0):
        seeds = kmeans.kmeans_plus_plus(x, 8, seed=0, candidates=candidates)
        nearest = np.argmin(((seeds[:, None, :] - centers[None]) ** 2).sum(-1), axis=1)
        assert sorted(nearest) == list(range(8))
    assert np.array_equal(kmeans.kmeans_plus_plus(x, 8, 5), kmeans.kmeans_plus_plus(x, 8, 5))
    dup = np.ones((10, 4), dtype=np.float32)  # fewer distinct points than k still gives k centres
    assert kmeans.kmeans_plus_plus(dup, 3, 0).shape == (3, 4)


def test_cosine_assignment_uses_one_minus_cos():
    x, _ = blobs(d=8)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    c = kmeans.fit_faiss(x, 3, niter=10, seed=0, metric="cosine")
    assert np.allclose(np.linalg.norm(c, axis=1), 1, atol=1e-4)  # spherical centroids
    ids, dist = kmeans.assign(kmeans.build_index(c, "cosine"), x, "cosine")
    assert np.allclose(dist, 1 - np.sum(x * c[ids], axis=1), atol=1e-5)
    assert kmeans.metric_for("auto", True) == "cosine" and kmeans.metric_for("auto", False) == "l2"
    with pytest.raises(ValueError, match="more than the 5 vectors"):
        kmeans.fit_faiss(x[:5], 6, niter=1, seed=0, metric="cosine")
