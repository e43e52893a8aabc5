"""DoReMi as a baseline method of the search stage: a reference proxy on the prior p and a Group
DRO proxy against it, trained one after the other in one Spark task (`lm.doremi`); its
weights averaged over the steps are the method's mixture. Two trainings of `proxy.steps` each,
and no target: DoReMi optimizes the worst-case excess loss over the super-clusters.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from pyspark.sql import SparkSession

from climb_spark.config import Config
from climb_spark.proxy import lm
from climb_spark.proxy.pools import Pool
from climb_spark.proxy.runner import read_pools, run_in_one_task, task_device
from climb_spark.stages.search import strategy

TRAININGS = 2  # the reference model and the DRO proxy


def train_in_task(pool: Pool, cfg: Config, prior: np.ndarray, threads: int) -> dict:
    """The body of the task (a plain function: the test suite calls it without Spark)."""
    reference = {sc: float(p) for sc, p in zip(pool.super_cluster_ids, prior) if p > 0}
    result = lm.doremi(read_pools(pool, cfg.proxy, reference), reference, pool.vocab_size, cfg.proxy,
                       cfg.proxy.seed, task_device(cfg.proxy), threads, cfg.search.doremi_step_size,
                       cfg.search.doremi_smoothing)
    out = dataclasses.asdict(result)
    out["weights"] = [result.weights.get(sc, 0.0) for sc in pool.super_cluster_ids]
    return out


def run(spark: SparkSession, cfg: Config, pool: Pool, prior: np.ndarray, sid: str, tracker, log,
        finished: list[float] | None) -> strategy.Result:
    """DoReMi's mixture; `finished` (the weights already in `mixtures`) is reused as it is."""
    result = strategy.Result("doremi", prior, np.asarray(finished or [], dtype=np.float64), None, None, [],
                             chosen_from="doremi", extra={"proxies": TRAININGS})
    if finished is not None:
        log(f"search {sid}: reusing the finished DoReMi weights")
        return result
    log(f"search {sid}: training the reference proxy on p, then the DRO proxy ({cfg.proxy.steps} steps each)")
    out = run_in_one_task(spark, lambda threads: train_in_task(pool, cfg, prior, threads), f"proxy {sid} doremi")
    log(f"search {sid}: DoReMi done in {out['seconds']:.1f}s")
    for step, weights in enumerate(out["weight_curve"]):
        tracker.log_metrics({f"doremi_w_{i:02d}": w for i, w in enumerate(weights)}, (step + 1) * cfg.proxy.log_every)
    for name in ("reference_curve", "proxy_curve"):
        for step, value in enumerate(out[name]):
            tracker.log_metrics({f"doremi_{name.replace('_curve', '')}_train_loss": value}, step)
    weights = np.asarray(out["weights"], dtype=np.float64)
    # As for every method: a weight below min_weight is dust, not documents in the export.
    weights = np.where(weights < cfg.search.min_weight, 0.0, weights)
    result.weights = weights / weights.sum()
    return result
