"""Pruning rules, tiers and the Ward merge as plain functions."""
import numpy as np

from climb_spark.config import PruneConfig
from climb_spark.stages.prune import rules
from tests.conftest import blobs


def test_prune_rules_name_the_reason():
    good = {"quality": 3.5, "advertisement": 4.5, "informational_value": 3.0, "educational_value": 2.5}
    spam = {"quality": 1.0, "advertisement": 0.5, "informational_value": 0.5, "educational_value": 0.2}
    paper = PruneConfig(rule="paper")
    assert rules.decide(good, 50, paper) == (True, "paper: mean score 3.38 >= 3")
    assert rules.decide(spam, 50, paper) == (False, "paper: mean score 0.55 < 3")
    curator = PruneConfig(rule="curator")
    assert rules.decide(good, 50, curator)[0]
    assert rules.decide(spam, 50, curator) == (False, "curator: advertisement 0.50 < 2")
    low_edu = dict(good, educational_value=0.5)
    assert rules.decide(low_edu, 50, curator) == (False, "curator: educational_value 0.50 < 1")
    assert rules.decide(good, 2, PruneConfig(min_docs=5)) == (False, "min_docs: 2 < 5")


def test_tiers_are_terciles():
    assert rules.tiers([1.0, 5.0, 3.0, 2.0, 4.0, 0.0]) == ["low", "high", "medium", "medium", "high", "low"]


def test_ward_merge_by_distance_and_by_count():
    x, labels = blobs(k=3, n=30)
    centroids = np.concatenate([x[labels == b][:4] for b in range(3)])  # 4 points near each of 3 blobs
    by_distance = rules.ward_merge(centroids, threshold=20.0)
    assert list(by_distance) == [0] * 4 + [1] * 4 + [2] * 4
    assert len(set(rules.ward_merge(centroids, threshold=20.0, target=2))) == 2
    assert list(rules.ward_merge(centroids[:1], threshold=1.5)) == [0]
