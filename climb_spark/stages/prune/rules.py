"""Cluster pruning rules and the Ward merge into super-clusters, as plain functions."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from climb_spark.config import PruneConfig
from climb_spark.rubric import CRITERIA


def mean_score(means: Mapping[str, float]) -> float:
    return float(np.mean([means[c] for c in CRITERIA]))


def decide(means: Mapping[str, float], n_docs: int, cfg: PruneConfig) -> tuple[bool, str]:
    """(kept, the rule that decided it, with the numbers)."""
    if n_docs < cfg.min_docs:
        return False, f"min_docs: {n_docs} < {cfg.min_docs}"
    if cfg.rule == "paper":
        score = mean_score(means)
        if score < cfg.paper_threshold:
            return False, f"paper: mean score {score:.2f} < {cfg.paper_threshold:g}"
        return True, f"paper: mean score {score:.2f} >= {cfg.paper_threshold:g}"
    if means["advertisement"] < cfg.curator_ad_min:
        return False, f"curator: advertisement {means['advertisement']:.2f} < {cfg.curator_ad_min:g}"
    low = [c for c in CRITERIA if c != "advertisement" and means[c] < cfg.curator_other_min]
    if low:
        return False, f"curator: {low[0]} {means[low[0]]:.2f} < {cfg.curator_other_min:g}"
    return True, (f"curator: advertisement >= {cfg.curator_ad_min:g} and others >= {cfg.curator_other_min:g}")


def tiers(scores: Sequence[float]) -> list[str]:
    """high / medium / low by tercile of rank (ties broken by position)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    out = [""] * len(scores)
    for rank, i in enumerate(order):
        out[i] = "high" if rank < len(scores) / 3 else ("medium" if rank < 2 * len(scores) / 3 else "low")
    return out


def ward_merge(centroids: np.ndarray, threshold: float, target: int = 0) -> np.ndarray:
    """Super-cluster label per centroid, numbered 0.. in order of first member."""
    n = len(centroids)
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    if n == 1:
        return np.zeros(1, dtype=np.int32)
    from scipy.cluster.hierarchy import fcluster, linkage

    tree = linkage(np.asarray(centroids, dtype=np.float64), method="ward")
    raw = (fcluster(tree, t=min(target, n), criterion="maxclust") if target > 0
           else fcluster(tree, t=threshold, criterion="distance"))
    relabel: dict[int, int] = {}
    return np.array([relabel.setdefault(int(r), len(relabel)) for r in raw], dtype=np.int32)
