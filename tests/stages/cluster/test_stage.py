"""The cluster stage through Spark on real embeddings: origins separate, a re-run is a no-op, new
documents join the fitted clusters until they drift."""
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from climb_spark import curated
from climb_spark.errors import PreconditionError
from climb_spark.lakehouse.tables import CENTROIDS, DOC_CLUSTERS, DOC_FEATURES, DOCUMENTS, Lakehouse
from climb_spark.stages.cluster import stage as cluster
from climb_spark.stages.ingest.readers import doc_id
from climb_spark.stages.prune import stage as prune


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


def test_documents_ingested_after_the_last_embed_stop_the_cluster_naming_embed(spark, cfg, doc_features):
    lake = Lakehouse(cfg.lakehouse)
    late = doc_features.head(2).assign(text=["A late text.", "Another late text."], line=[900, 901])
    late = late.assign(doc_id=late.text.map(doc_id))
    spark.createDataFrame(late[DOCUMENTS.schema.fieldNames()], DOCUMENTS.schema).writeTo(lake.name(DOCUMENTS)).append()
    with pytest.raises(PreconditionError, match=r"^cluster: 2 documents have no embedding yet .*run `climb-spark embed`"):
        cluster.run(spark, cfg.replace({"cluster.k": 5}))
    assert spark.table(lake.name(CENTROIDS)).count() == spark.table(lake.name(DOC_CLUSTERS)).count() == 0


def _append(spark, cfg, docs: pd.DataFrame, features: pd.DataFrame) -> None:
    lake = Lakehouse(cfg.lakehouse)
    for spec, frame in ((DOCUMENTS, docs), (DOC_FEATURES, features)):
        spark.createDataFrame(frame[spec.schema.fieldNames()], spec.schema).writeTo(lake.name(spec)).append()


def test_new_documents_join_the_fitted_clusters_until_they_drift(spark, cfg, doc_features):
    cfg = cfg.replace({"cluster.k": 5, "prune.paper_threshold": 0.0})
    lake = Lakehouse(cfg.lakehouse)
    feats, docs = lake.name(DOC_FEATURES), lake.name(DOCUMENTS)
    # One document in five arrives after the fit.
    late_ids = list(doc_features.doc_id[::5])
    late = {t: spark.table(t).where(F.col("doc_id").isin(late_ids)).toPandas() for t in (docs, feats)}
    for t in (docs, feats):
        DeltaTable.forName(spark, t).delete(F.col("doc_id").isin(late_ids))
    first = cluster.run(spark, cfg)
    prune.run(spark, cfg)
    centroids = spark.table(lake.name(CENTROIDS)).orderBy("cluster_id").toPandas()
    fitted = spark.table(lake.name(DOC_CLUSTERS)).toPandas().set_index("doc_id").sort_index()

    _append(spark, cfg, late[docs], late[feats])
    with pytest.raises(PreconditionError, match="not in the clustering .* re-run `climb-spark cluster`"):
        curated.super_clusters(spark, cfg)
    second = cluster.run(spark, cfg)
    assert (second.fit_id, second.added, second.assigned, second.fitted_on) == \
        (first.fit_id, len(late_ids), len(doc_features), 0)
    assert 0 < second.drift < cfg.cluster.refit_drift and second.share == pytest.approx(len(late_ids) / len(fitted))
    assert "new documents assigned to the 5 fitted centroids" in second.summary()
    # The fit is untouched: same centroids, the earlier documents where they were.
    assert spark.table(lake.name(CENTROIDS)).orderBy("cluster_id").toPandas().equals(centroids)
    now = spark.table(lake.name(DOC_CLUSTERS)).toPandas().set_index("doc_id").sort_index()
    assert now.loc[fitted.index].equals(fitted) and len(now) == len(doc_features)
    assert cluster.run(spark, cfg).skipped
    with pytest.raises(PreconditionError, match="assigned since the last prune.*re-run `climb-spark prune`"):
        curated.super_clusters(spark, cfg)
    prune.run(spark, cfg)
    assert {s["cluster_run_id"] for s in curated.super_clusters(spark, cfg)} == {first.fit_id}

    # Documents unlike anything fitted (random directions): `never` still assigns them ...
    rng = np.random.default_rng(0)

    def strangers(start: int, n: int):
        vecs = rng.normal(size=(n, 384)).astype("float32")
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        texts = [f"stranger document {i} about nothing seen before" for i in range(start, start + n)]
        ids = [doc_id(t) for t in texts]
        new_docs = doc_features.head(n).assign(doc_id=ids, text=texts, source="stranger")
        new_feats = late[feats].head(n).assign(doc_id=ids, embedding=list(vecs), features_run_id="strangers")
        return new_docs, new_feats

    _append(spark, cfg, *strangers(0, 30))
    never = cluster.run(spark, cfg.replace({"cluster.refit": "never"}))
    assert never.fit_id == first.fit_id and never.added == 30 and never.drift > cfg.cluster.refit_drift
    # ... and `auto` fits again, after which the old super-clusters are refused.
    _append(spark, cfg, *strangers(30, 30))
    auto = cluster.run(spark, cfg)
    assert auto.fit_id != first.fit_id and auto.added == 0 and auto.assigned == len(doc_features) + 60
    assert auto.fitted_on > 0
    with pytest.raises(PreconditionError, match="super_clusters come from clustering"):
        curated.super_clusters(spark, cfg)
