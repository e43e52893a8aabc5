"""k-means, pruning rules and the Ward merge as plain functions."""
import numpy as np
import pytest

from climb_spark import kmeans, pruning
from climb_spark.config import PruneConfig


def blobs(seed=0, n=300, d=16, k=3):
    rng = np.random.RandomState(seed)
    centers = rng.randn(k, d) * 4
    labels = np.repeat(np.arange(k), n // k)
    x = (centers[labels] + rng.randn(len(labels), d)).astype(np.float32)
    return x, labels


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


def test_prune_rules_name_the_reason():
    good = {"quality": 3.5, "advertisement": 4.5, "informational_value": 3.0, "educational_value": 2.5}
    spam = {"quality": 1.0, "advertisement": 0.5, "informational_value": 0.5, "educational_value": 0.2}
    paper = PruneConfig(rule="paper")
    assert pruning.decide(good, 50, paper) == (True, "paper: mean score 3.38 >= 3")
    assert pruning.decide(spam, 50, paper) == (False, "paper: mean score 0.55 < 3")
    curator = PruneConfig(rule="curator")
    assert pruning.decide(good, 50, curator)[0]
    assert pruning.decide(spam, 50, curator) == (False, "curator: advertisement 0.50 < 2")
    low_edu = dict(good, educational_value=0.5)
    assert pruning.decide(low_edu, 50, curator) == (False, "curator: educational_value 0.50 < 1")
    assert pruning.decide(good, 2, PruneConfig(min_docs=5)) == (False, "min_docs: 2 < 5")


def test_tiers_are_terciles():
    assert pruning.tiers([1.0, 5.0, 3.0, 2.0, 4.0, 0.0]) == ["low", "high", "medium", "medium", "high", "low"]


def test_ward_merge_by_distance_and_by_count():
    x, labels = blobs(k=3, n=30)
    centroids = np.concatenate([x[labels == b][:4] for b in range(3)])  # 4 points near each of 3 blobs
    by_distance = pruning.ward_merge(centroids, threshold=20.0)
    assert list(by_distance) == [0] * 4 + [1] * 4 + [2] * 4
    assert len(set(pruning.ward_merge(centroids, threshold=20.0, target=2))) == 2
    assert list(pruning.ward_merge(centroids[:1], threshold=1.5)) == [0]
