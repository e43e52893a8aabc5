"""Train the four fastText quality classifiers from the teacher's `annotations`.

Held-out documents are a fixed hash slice of doc_id (`classifiers.holdout_fraction`), so the split
is the same on every run. Metrics per criterion are top-class accuracy, macro-F1 and the mean
absolute error of the expected score against the teacher's score. They go to stdout and to an
MLflow run, together with the model files. The models are written to `quality.model_dir`, where
the embed stage reads them: compact `<criterion>.npz` files by default (`quality.quantize`; the
full-size model exists only in memory), and the metrics are those of the files written. The four
are trained beside the published set and replace it as one (`classifiers.publish`): a run killed
at any point leaves the old set in use, never a mix of old and new.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from climb_spark import tracking
from climb_spark.config import Config
from climb_spark.errors import InputError, PreconditionError
from climb_spark.lakehouse.tables import ANNOTATIONS, DOCUMENTS, Lakehouse
from climb_spark.rubric import CRITERIA
from climb_spark.stages.contract import Counted, Stage
from climb_spark.stages.quality import classifiers
from climb_spark.stages.quality.annotate import teacher_key
from climb_spark.stages.quality.classifiers import QUALITY_MODELS


def is_holdout(doc_id: str, fraction: float) -> bool:
    return int(doc_id[:8], 16) % 10000 < fraction * 10000


def labels_for(scores: list[int], scheme: str, threshold: int) -> list[int]:
    return [int(s >= threshold) for s in scores] if scheme == "binary" else list(scores)


def macro_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    f1s = []
    for label in np.unique(np.concatenate([truth, pred])):
        tp = np.sum((pred == label) & (truth == label))
        fp = np.sum((pred == label) & (truth != label))
        fn = np.sum((pred != label) & (truth == label))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def evaluate(model, texts: list[str], truth: list[int], scores: list[int], scheme: str) -> dict[str, float]:
    labels, _ = model.predict([classifiers.fasttext_text(t) for t in texts], k=1)
    pred = np.array([int(lab[0].rsplit("__", 1)[1]) for lab in labels])
    expected = classifiers.expected_scores(model, texts)
    target = np.asarray(truth if scheme == "binary" else scores, dtype=np.float64)
    return {
        "accuracy": float(np.mean(pred == np.asarray(truth))),
        "macro_f1": macro_f1(np.asarray(truth), pred),
        "mae": float(np.mean(np.abs(expected - target))),
    }


@dataclass
class TrainReport(Counted):
    teacher: str
    n_train: int
    n_holdout: int
    model_dir: str
    version: str
    metrics: dict[str, dict[str, float]]
    mlflow_run_id: str
    # Criteria whose training diverged at quality.lr and was redone at a lower rate.
    lowered_lr: dict[str, float] = field(default_factory=dict)
    # Bytes of the four model files written.
    model_bytes: int = 0
    # The files on disk are those an earlier run trained from the same annotations and settings.
    skipped: bool = False

    def summary(self) -> str:
        head = "up to date: " if self.skipped else ""
        lines = [f"train-quality: {head}4 fastText classifiers from {self.n_train:,} {self.teacher} annotations, "
                 f"{self.n_holdout:,} held out -> {self.model_dir} ({self.model_bytes / 1e6:,.1f} MB, "
                 f"version {self.version}, MLflow run {self.mlflow_run_id})"]
        for c, m in self.metrics.items():
            lines.append(f"  {c:20s} accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}  "
                         f"MAE {m['mae']:.3f}")
        for c, lr in self.lowered_lr.items():
            lines.append(f"  WARNING {c}: fastText diverged (NaN) at quality.lr; trained at lr {lr:g}")
        return "\n".join(lines)


def run(spark: SparkSession, cfg: Config) -> TrainReport:
    import mlflow

    q = cfg.quality
    teacher, prompt = teacher_key(cfg)
    lake = Lakehouse(cfg.lakehouse)
    ann = spark.table(lake.ensure(spark, ANNOTATIONS)).where(
        (F.col("teacher") == teacher) & (F.col("prompt_version") == prompt) & F.col("error").isNull())
    rows = (ann.join(spark.table(lake.ensure(spark, DOCUMENTS)).select("doc_id", "text"), "doc_id")
            .select("doc_id", "text", *CRITERIA).orderBy("doc_id").collect())
    if not rows:
        raise PreconditionError(f"train-quality: no usable {teacher} annotations; run `climb-spark annotate` first")
    held = [r for r in rows if is_holdout(r["doc_id"], q.holdout_fraction)]
    train = [r for r in rows if not is_holdout(r["doc_id"], q.holdout_fraction)]
    if not train:  # training on the held-out rows would report their accuracy as if unseen
        raise InputError(f"train-quality: all {len(rows)} usable annotations fall in the held-out slice "
                         f"(quality.holdout_fraction={q.holdout_fraction:g}): annotate more documents "
                         "(annotate.sample_docs) or lower the fraction")

    experiment_id = tracking.experiment(cfg.mlflow)
    fingerprint = training_fingerprint(rows, cfg, teacher, prompt)
    done = _trained_before(cfg, experiment_id, fingerprint, teacher)
    if done is not None:
        return done
    metrics: dict[str, dict[str, float]] = {}
    lr_used: dict[str, float] = {}
    read = lake.versions(spark, (ANNOTATIONS, DOCUMENTS))
    with mlflow.start_run(experiment_id=experiment_id, run_name="train-quality",
                          tags={"climb.role": "train-quality", FINGERPRINT_TAG: fingerprint,
                                "mlflow.note.content": (
                                    f"The four fastText quality classifiers ({', '.join(CRITERIA)}) trained on "
                                    f"{len(train):,} documents the `{teacher}` teacher scored; metrics on "
                                    f"{len(held):,} held-out documents; the models are the artifacts under "
                                    "quality_models/.")}) as active:
        mlflow.MlflowClient().log_inputs(active.info.run_id, datasets=tracking.dataset_inputs(read, "training"))
        mlflow.log_params({"teacher": teacher, "prompt_version": prompt, "label_scheme": q.label_scheme,
                           "binary_threshold": q.binary_threshold, "epoch": q.epoch, "lr": q.lr,
                           "word_ngrams": q.word_ngrams, "dim": q.dim, "bucket": q.bucket, "seed": q.seed,
                           "quantize": q.quantize,
                           "max_compact_drift": q.max_compact_drift,
                           "n_train": len(train), "n_holdout": len(held)})
        # Trained beside the published set, which stays whole until all four are ready (publish);
        # on the driver's disk when the set is on an object store.
        staging = Path(tempfile.mkdtemp(prefix="climb-quality-")) if classifiers.is_remote(q.model_dir) \
            else Path(q.model_dir) / STAGING
        shutil.rmtree(staging, ignore_errors=True)  # what a killed run left
        paths = {c: classifiers.model_path(str(staging), c, q.quantize) for c in CRITERIA}
        for c, path in paths.items():
            trained = classifiers.train(
                [r["text"] for r in train], labels_for([r[c] for r in train], q.label_scheme, q.binary_threshold),
                path, epoch=q.epoch, lr=q.lr, word_ngrams=q.word_ngrams, dim=q.dim, seed=q.seed, bucket=q.bucket,
                quantize=q.quantize, max_compact_drift=q.max_compact_drift, probe=[r["text"] for r in held])
            lr_used[c] = trained.lr
            if trained.compact_drift is not None:
                mlflow.log_metrics({f"{c}.compact_drift": trained.compact_drift})
            mlflow.log_metrics({f"{c}.lr_used": lr_used[c], f"{c}.model_mb": path.stat().st_size / 1e6})
            if held:
                metrics[c] = evaluate(classifiers.load_model(path, q.quantize), [r["text"] for r in held],
                                      labels_for([r[c] for r in held], q.label_scheme, q.binary_threshold),
                                      [r[c] for r in held], q.label_scheme)
                mlflow.log_metrics({f"{c}.{k}": v for k, v in metrics[c].items()})
        model_bytes = sum(path.stat().st_size for path in paths.values())
        for path in paths.values():  # these four files only, whatever else is in the folder
            mlflow.log_artifact(str(path), artifact_path="quality_models")
        version = classifiers.publish(staging, q.model_dir, q.quantize, cfg.s3)
        mlflow.set_tag("quality_model_version", version)
    return TrainReport(teacher, len(train), len(held), q.model_dir, version, metrics, active.info.run_id,
                       {c: lr for c, lr in lr_used.items() if lr != q.lr}, model_bytes)


FINGERPRINT_TAG = "climb.training_fingerprint"
# A subfolder of quality.model_dir: not shipped with the models (ship_dir takes the folder's files).
STAGING = "_staging"


def training_fingerprint(rows, cfg: Config, teacher: str, prompt: str) -> str:
    """What the models are trained from: the labelled rows (a doc_id names its text) and every
    training setting."""
    settings = {k: v for k, v in dataclasses.asdict(cfg.quality).items() if k != "model_dir"}
    digest = hashlib.sha256(json.dumps([teacher, prompt, settings], sort_keys=True).encode())
    for r in rows:
        digest.update(json.dumps([r["doc_id"], *(r[c] for c in CRITERIA)]).encode())
    return digest.hexdigest()[:16]


def _trained_before(cfg: Config, experiment_id: str, fingerprint: str, teacher: str) -> TrainReport | None:
    """The finished run that trained the model files now in quality.model_dir from the same rows and
    settings, as a report; None when training is due (no such run, or the files were replaced)."""
    import mlflow

    q = cfg.quality
    found = classifiers.stored(q.model_dir, q.quantize, cfg.s3)
    if found is None or found[0] is None:  # missing, or a mix of two sets: training is due
        return None
    version, model_bytes = found
    # Both values are hex digests made here, so the filter holds no outside text.
    runs = mlflow.MlflowClient().search_runs(
        [experiment_id], f"tags.`{FINGERPRINT_TAG}` = '{fingerprint}' AND tags.quality_model_version = '{version}' "
                         "AND attributes.status = 'FINISHED'", max_results=1, order_by=["attributes.start_time DESC"])
    if not runs:
        return None
    run = runs[0]
    m, params = run.data.metrics, run.data.params
    metrics = {c: {k: m[f"{c}.{k}"] for k in ("accuracy", "macro_f1", "mae")} for c in CRITERIA if f"{c}.mae" in m}
    lowered = {c: m[f"{c}.lr_used"] for c in CRITERIA if m.get(f"{c}.lr_used", q.lr) != q.lr}
    return TrainReport(teacher, int(params["n_train"]), int(params["n_holdout"]), q.model_dir, version, metrics,
                       run.info.run_id, lowered, model_bytes, skipped=True)


STAGE = Stage("train-quality", "one fastText classifier per criterion from the annotations, logged to MLflow",
              reads=(ANNOTATIONS, DOCUMENTS), writes=(QUALITY_MODELS,), run=run,
              check=lambda cfg: tracking.check_reachable(cfg.mlflow),
              settings=("quality",))
