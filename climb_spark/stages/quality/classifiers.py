"""fastText quality classifiers: one per rubric criterion, scored as expected values on 0-5."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from climb_spark.rubric import CRITERIA
from climb_spark.stages.contract import Files

CLASSES = np.arange(6, dtype=np.float64)
_WS = re.compile(r"\s+")


def model_path(model_dir: str, criterion: str, quantized: bool) -> Path:
    """The one place naming a model file: `<criterion>.ftz` when quantized (compact, what
    train-quality writes by default, `quality.quantize`), else the full `<criterion>.bin`."""
    return Path(model_dir) / f"{criterion}.{'ftz' if quantized else 'bin'}"


QUALITY_MODELS = Files("quality models", lambda cfg: cfg.quality.model_dir,
                       lambda cfg: all(model_path(cfg.quality.model_dir, c, cfg.quality.quantize).is_file()
                                       for c in CRITERIA))


def fasttext_text(text: str, max_chars: int = 20000) -> str:
    """fastText reads one line per example: the same normalization for training and scoring."""
    return _WS.sub(" ", text[:max_chars]).strip().lower()


def load_models(model_dir: str, quantized: bool) -> dict:
    import fasttext

    models = {}
    for criterion in CRITERIA:
        path = model_path(model_dir, criterion, quantized)
        if not path.is_file():
            raise FileNotFoundError(f"no fastText model for {criterion}: {path} (quality.quantize={quantized})")
        models[criterion] = fasttext.load_model(str(path))
    return models


def models_version(model_dir: str, quantized: bool) -> str:
    """A short content hash of the four model files, recorded with every score."""
    digest = hashlib.sha256()
    for criterion in CRITERIA:
        digest.update(model_path(model_dir, criterion, quantized).read_bytes())
    return digest.hexdigest()[:12]


def expected_scores(model, texts: Sequence[str]) -> np.ndarray:
    """Sum over classes of P(class) x class, per text (labels are `__label__0` .. `__label__5`)."""
    lines = [fasttext_text(t) for t in texts]
    labels, probs = model.predict(lines, k=-1)
    out = np.empty(len(lines), dtype=np.float32)
    for i, (labs, ps) in enumerate(zip(labels, probs)):
        values = np.fromiter((int(lab.rsplit("__", 1)[1]) for lab in labs), dtype=np.float64, count=len(labs))
        p = np.asarray(ps, dtype=np.float64)
        out[i] = float((values * p).sum() / max(p.sum(), 1e-12))
    return out


def score_all(models: Mapping[str, object], texts: Sequence[str]) -> dict[str, np.ndarray]:
    return {c: expected_scores(models[c], texts) for c in CRITERIA}


@dataclass(frozen=True)
class Trained:
    lr: float  # the rate training converged at (lower than asked after a divergence)
    compact_drift: float | None  # compact vs full expected scores on training texts, MAE; None if full
    dsub: int | None  # the product quantizer's sub-vector size the compact model was written with


def _probe(texts: Sequence[str], limit: int = 2000) -> list[str]:
    step = max(1, -(-len(texts) // limit))
    return list(texts[::step])


def train(texts: Sequence[str], labels: Sequence[int], path: Path, *, epoch: int, lr: float,
          word_ngrams: int, dim: int, seed: int, bucket: int = 2000000, retries: int = 3,
          quantize: bool = False, cutoff: int = 50000, dsub: int = 2, retrain: bool = True,
          max_compact_drift: float = 0.5, probe: Sequence[str] = ()) -> Trained:
    """Train one classifier, single-threaded so that the same data gives the same model.

    fastText's SGD can diverge to NaN on small or skewed data (it did in CI, not reproducibly, at
    lr 0.5); it is retried at half the rate, as fastText's own advice says, and the caller records
    the rate actually used.

    With `quantize`, the model trained at full size is compacted in memory before it is saved, so
    only the compact file is ever written: the input matrix (words and n-gram buckets) pruned to
    its `cutoff` rows of largest norm, fine-tuned again on the same data when `retrain`, then
    product-quantized (one byte per `dsub` dimensions, norms quantized apart: qnorm). The output
    matrix (classes x dim) stays exact. See QualityConfig for the measured cost. The compaction is
    checked against the full model on `probe` (held-out texts; the training texts when none); one
    that drifts more than
    `max_compact_drift` is redone (first as it was, then with dsub 1) and finally refused with
    InputError rather than written."""
    import tempfile

    import fasttext

    if word_ngrams > 1 and bucket < 1:
        raise ValueError("quality.bucket must be positive when word_ngrams > 1 (fastText divides by it)")

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as fh:
        for text, label in zip(texts, labels):
            fh.write(f"__label__{int(label)} {fasttext_text(text)}\n")
        train_file = fh.name
    probe = _probe(probe or texts)
    drifts: list[str] = []
    compactions = nans = 0
    try:
        while True:
            try:
                model = fasttext.train_supervised(input=train_file, epoch=epoch, lr=lr, wordNgrams=word_ngrams,
                                                  dim=dim, bucket=bucket, minCount=1, thread=1, seed=seed,
                                                  verbose=0)
                if not quantize:
                    drift = None
                    break
                reference = expected_scores(model, probe)
                # Single-threaded, fastText initializes only the first tenth of the input matrix
                # (its init works in tenths, one per thread); rows training never touched stay
                # zero. Asked to keep more rows than are non-zero, it quantizes those zeros with
                # the rest and the model breaks (MAE 0.6 against the full model on held-out text):
                # never keep more than the non-zero rows. The random rows of that first tenth
                # can still outrank lightly trained ones by norm (80 documents at 2M buckets:
                # drift 0.97, every time); the drift check below refuses such a model.
                trained_rows = int(np.count_nonzero(np.any(model.get_input_matrix() != 0, axis=1)))
                # Retraining runs the same SGD (at the rate that trained the model), so it can
                # diverge too: the whole attempt is redone at half the rate.
                model.quantize(input=train_file, qnorm=True, retrain=retrain, cutoff=min(cutoff, trained_rows),
                               dsub=dsub, thread=1, verbose=0)
            except RuntimeError as err:
                if "NaN" not in str(err) or nans == retries:
                    raise
                nans += 1
                lr /= 2
                continue
            drift = float(np.abs(expected_scores(model, probe) - reference).mean())
            if drift <= max_compact_drift:
                break
            drifts.append(f"{drift:.3f} at dsub {dsub}")
            compactions += 1
            if compactions == 3:
                from climb_spark.errors import InputError

                raise InputError(f"train-quality: the compact model for {path.stem} scores "
                                 f"{', then '.join(drifts)} MAE away from the full model"
                                 f" (quality.max_compact_drift={max_compact_drift:g}); set "
                                 "quality.quantize: false to keep the full models")
            if compactions == 2:
                dsub = 1
    finally:
        Path(train_file).unlink()
    model.save_model(str(path))
    return Trained(lr, drift, dsub if quantize else None)
