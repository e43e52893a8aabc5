"""The cluster stage through Spark on real embeddings: origins separate, a re-run is a no-op."""
from collections import Counter

from climb_spark.lakehouse.tables import CENTROIDS, DOC_CLUSTERS, DOCUMENTS, Lakehouse
from climb_spark.stages.cluster import stage as cluster


def majority_clusters(spark, cfg) -> dict[str, tuple[int, int]]:
    """source -> (its most common cluster, how many of its documents are in it), after checking that
    each source is mostly in one cluster."""
    lake = Lakehouse(cfg.lakehouse)
    rows = spark.sql(f"SELECT d.source, c.cluster_id FROM {lake.name(DOC_CLUSTERS)} c "
                     f"JOIN {lake.name(DOCUMENTS)} d USING (doc_id)").collect()
    by_source: dict[str, Counter] = {}
    for r in rows:
        by_source.setdefault(r.source, Counter())[r.cluster_id] += 1
    majority = {s: c.most_common(1)[0] for s, c in by_source.items()}
    for source, (cid, n) in majority.items():
        assert n / sum(by_source[source].values()) >= 0.6, (source, by_source[source])
    return majority


def test_origins_separate_and_a_rerun_changes_nothing(spark, cfg, doc_features):
    cfg = cfg.replace({"cluster.k": 5})
    report = cluster.run(spark, cfg)
    assert (report.k, report.assigned, report.metric) == (5, len(doc_features), "cosine") and report.inertia > 0
    assert report.counters()["assigned"] == len(doc_features)
    majority = majority_clusters(spark, cfg)
    assert len({cid for cid, _ in majority.values()}) >= 4  # different origins, different clusters

    lake = Lakehouse(cfg.lakehouse)
    tables = [lake.name(s) for s in (CENTROIDS, DOC_CLUSTERS)]
    before = [spark.table(t).toPandas() for t in tables]
    assert cluster.run(spark, cfg).skipped
    for t, old in zip(tables, before):
        new = spark.table(t).toPandas()
        key = new.columns[0]
        assert old.sort_values(key).reset_index(drop=True).to_json() == \
            new.sort_values(key).reset_index(drop=True).to_json(), t
