"""The prune stage through Spark on real embeddings: junk is pruned, survivors merge, a re-run is
a no-op."""
import pytest

from climb_spark import curated
from climb_spark.errors import InputError
from climb_spark.lakehouse.tables import CLUSTER_STATS, SUPER_CLUSTERS, Lakehouse
from climb_spark.stages.cluster import stage as cluster
from climb_spark.stages.prune import stage as prune
from tests.stages.cluster.test_stage import majority_clusters


def test_junk_is_pruned_and_survivors_merge(spark, cfg, doc_features):
    cfg = cfg.replace({"cluster.k": 5, "prune.rule": "curator", "prune.merge_threshold": 1.0})
    cluster.run(spark, cfg)
    majority = majority_clusters(spark, cfg)

    pruned = prune.run(spark, cfg)
    lake = Lakehouse(cfg.lakehouse)
    names = {s.name: lake.name(s) for s in (CLUSTER_STATS, SUPER_CLUSTERS)}
    stats = {r.cluster_id: r for r in spark.table(names["cluster_stats"]).collect()}
    junk = stats[majority["spam"][0]]
    assert not junk.kept and junk.rule.startswith("curator: advertisement")
    assert junk.super_cluster_id is None
    assert {"buy", "shipping", "discount"} & set(junk.top_terms)
    kept = [s for s in stats.values() if s.kept]
    assert kept and all(s.super_cluster_id is not None for s in kept) and pruned.kept == len(kept)
    assert all(len(s.exemplars) == 3 and len(s.quality_quantiles) == 3 for s in stats.values())
    assert {s.tier for s in stats.values()} == {"high", "medium", "low"}

    supers = spark.table(names["super_clusters"]).collect()
    assert abs(sum(s.token_share for s in supers) - 1) < 1e-9
    assert sorted(c for s in supers for c in s.member_clusters) == sorted(s.cluster_id for s in kept)
    assert all(s.description for s in supers)

    before = {n: spark.table(t).toPandas() for n, t in names.items()}
    prune.run(spark, cfg)
    for n, t in names.items():
        after = spark.table(t).toPandas()
        key = after.columns[0]
        assert before[n].sort_values(key).reset_index(drop=True).to_json() == \
            after.sort_values(key).reset_index(drop=True).to_json(), n


def test_a_prune_that_keeps_nothing_says_why_and_so_does_the_search(spark, cfg, doc_features):
    cfg = cfg.replace({"cluster.k": 5, "prune.rule": "paper", "prune.paper_threshold": 5})
    cluster.run(spark, cfg)
    with pytest.raises(InputError, match=r"prune kept 0 of 5 clusters under prune.rule=paper; the best one: "
                                         r"paper: mean score \d\.\d\d < 5 \(cluster_stats.rule"):
        prune.run(spark, cfg)
    lake = Lakehouse(cfg.lakehouse)
    assert spark.table(lake.name(CLUSTER_STATS)).where("kept").count() == 0
    with pytest.raises(InputError, match="prune kept no cluster, so there is nothing to search or export"):
        curated.super_clusters(spark, cfg)
