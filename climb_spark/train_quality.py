"""Train the four fastText quality classifiers from teacher-labelled documents.

The teacher here is the rule-based `teacher.rubric_scores` (no LLM endpoint in the embedded
default); the sample is the first `quality.train_docs` documents by doc_id, so the same
documents and config give the same models.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import SparkSession

from . import quality
from .config import Config
from .tables import DOCUMENTS, Lakehouse
from .teacher import rubric_scores


@dataclass
class TrainReport:
    documents: int
    model_dir: str
    version: str
    label_means: dict[str, float]

    def summary(self) -> str:
        means = ", ".join(f"{k} {v:.2f}" for k, v in self.label_means.items())
        return (f"train-quality: 4 fastText classifiers from {self.documents:,} teacher-labelled documents "
                f"-> {self.model_dir} (version {self.version}); label means: {means}")


def run(spark: SparkSession, cfg: Config) -> TrainReport:
    q = cfg.quality
    docs = Lakehouse(cfg.lakehouse).ensure(spark, DOCUMENTS)
    texts = [r["text"] for r in spark.table(docs).select("doc_id", "text").orderBy("doc_id")
             .limit(q.train_docs).collect()]
    if not texts:
        raise RuntimeError(f"train-quality: {docs} is empty; run ingest first")
    labels = [rubric_scores(t) for t in texts]
    for criterion in quality.CRITERIA:
        quality.train(texts, [lab[criterion] for lab in labels], quality.model_path(q.model_dir, criterion),
                      epoch=q.epoch, lr=q.lr, word_ngrams=q.word_ngrams, dim=q.dim, seed=q.seed,
                      bucket=q.bucket)
    means = {c: sum(lab[c] for lab in labels) / len(labels) for c in quality.CRITERIA}
    return TrainReport(len(texts), q.model_dir, quality.models_version(q.model_dir), means)
