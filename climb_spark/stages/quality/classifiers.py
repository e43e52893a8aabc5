"""fastText quality classifiers: one per rubric criterion, scored as expected values on 0-5."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from climb_spark.config import S3Config, is_local_path
from climb_spark.errors import ClimbError, PreconditionError
from climb_spark.lakehouse import files
from climb_spark.memory import release_free_heap
from climb_spark.rubric import CRITERIA
from climb_spark.stages.contract import Files
from climb_spark.stages.quality.compact import CompactModel, share_hashing

CLASSES = np.arange(6, dtype=np.float64)
_WS = re.compile(r"\s+")


def model_path(model_dir: str, criterion: str, quantized: bool) -> Path:
    """The one place naming a model file: `<criterion>.npz` when quantized (compact.CompactModel,
    what train-quality writes by default, `quality.quantize`), else fastText's full `<criterion>.bin`."""
    return Path(model_dir) / f"{criterion}.{'npz' if quantized else 'bin'}"


QUALITY_MODELS = Files("quality models", lambda cfg: cfg.quality.model_dir,
                       lambda cfg: present(cfg.quality.model_dir, cfg.quality.quantize, cfg.s3))


def fasttext_text(text: str, max_chars: int = 20000) -> str:
    """fastText reads one line per example: the same normalization for training and scoring."""
    return _WS.sub(" ", text[:max_chars]).strip().lower()


def load_model(path: Path, quantized: bool):
    import fasttext

    return CompactModel.load(path) if quantized else fasttext.load_model(str(path))


def load_models(model_dir: str, quantized: bool, version: str | None = None) -> dict:
    """The four models; with `version`, only if the files still are that set once loaded. A job
    names its scores by the version it read at its start, and a task loading later (a new worker)
    would otherwise score with whatever train-quality has published since, under the old name."""
    models = {}
    for criterion in CRITERIA:
        path = model_path(model_dir, criterion, quantized)
        if not path.is_file():
            raise FileNotFoundError(f"no quality model for {criterion}: {path} (quality.quantize={quantized})")
        models[criterion] = load_model(path, quantized)
    if version is not None:
        check_unchanged(model_dir, quantized, version, "when a task loaded them")
    if quantized:
        share_hashing(list(models.values()))
    return models


# The start of the error raised when the models changed under a running job.
CHANGED = "the quality models changed while this job ran"


def check_unchanged(model_dir: str, quantized: bool, version: str, when: str) -> None:
    """Refuse the files in `model_dir` unless they are still the set `version` named."""
    found = files_version(model_dir, quantized)
    if found != version:
        raise PreconditionError(f"{CHANGED}: version {version} at the job's start, {found} {when}; "
                                "what was committed before stands, run the job again")


@contextmanager
def changed_models_named():
    """A task's error reaches the driver as Spark's, a Python traceback inside a Java one; a
    change of the models under a job is the user's to act on, so it becomes one line."""
    try:
        yield
    except ClimbError:
        raise
    except Exception as err:
        found = re.search(re.escape(CHANGED) + r"[^\n]*", str(err))
        if found is None:
            raise
        raise PreconditionError(found.group(0)) from None


# Names the set of four files train-quality published last, by their version.
MANIFEST = "models.json"


def models_version(model_dir: str, quantized: bool) -> str:
    """A short content hash of the four model files, recorded with every score. Where
    train-quality published the folder, the files must be the set its manifest names: a mix (a
    run killed while it moved its files in, a file copied over by hand) is refused, not scored
    with. A folder without a manifest (models brought from elsewhere) is taken as it is."""
    version = files_version(model_dir, quantized)
    manifest = Path(model_dir) / MANIFEST
    if manifest.is_file():
        published = json.loads(manifest.read_text())
        if published["format"] == _format(quantized) and published["version"] != version:
            raise PreconditionError(
                f"the quality models in {model_dir} are not the set train-quality published (files {version}, "
                f"{MANIFEST} {published['version']}): a train-quality run stopped while replacing them, or a "
                "file was changed; run `climb-spark train-quality` again")
    return version


def files_version(model_dir: str, quantized: bool) -> str:
    """A short content hash of the four model files."""
    digest = hashlib.sha256()
    for criterion in CRITERIA:
        digest.update(model_path(model_dir, criterion, quantized).read_bytes())
    return digest.hexdigest()[:12]


def publish(staging: Path, model_dir: str, quantized: bool, s3: S3Config = S3Config()) -> str:
    """Move the four files trained into `staging` over those in `model_dir` as one set, and name
    it in the manifest, written last and atomically: until then the old manifest names the old
    set, so a reader sees the old set, the new one, or a mix it refuses (models_version). Model
    files of other formats go: the folder is shipped whole to every executor. On an object store
    the set goes to a folder of its own (_publish_remote)."""
    if is_remote(model_dir):
        return _publish_remote(staging, model_dir, quantized, s3)
    version = models_version(str(staging), quantized)
    for criterion in CRITERIA:
        os.replace(model_path(str(staging), criterion, quantized), model_path(model_dir, criterion, quantized))
    partial = Path(model_dir) / f".{MANIFEST}.partial"
    partial.write_text(json.dumps({"format": _format(quantized), "version": version}))
    os.replace(partial, Path(model_dir) / MANIFEST)
    for criterion in CRITERIA:  # .ftz: fastText's compact format, written before the .npz one
        for stale in {model_path(model_dir, criterion, not quantized), Path(model_dir) / f"{criterion}.ftz"}:
            stale.unlink(missing_ok=True)
    shutil.rmtree(staging)
    return version


def _format(quantized: bool) -> str:
    return model_path("", "model", quantized).suffix.lstrip(".")  # (a bare ".npz" has no suffix)


# On an object store a rename is a copy, so the four files could not be swapped in place as one:
# each set goes to a folder named by its version, written once, and the manifest (one PUT, last)
# names the folder. A reader following the manifest finds the old set or the new one, whole.
def is_remote(model_dir: str) -> bool:
    return not is_local_path(model_dir)


def _published(model_dir: str, quantized: bool, s3: S3Config) -> str | None:
    """The version a remote folder's manifest names for this format, None if it names none."""
    uri = f"{model_dir.rstrip('/')}/{MANIFEST}"
    if not files.exists(uri, s3):
        return None
    published = json.loads(files.read_bytes(uri, s3).decode("utf-8"))
    return published["version"] if published.get("format") == _format(quantized) else None


def _remote_set(model_dir: str, version: str, quantized: bool) -> dict[str, str]:
    return {c: f"{model_dir.rstrip('/')}/{version}/{model_path('', c, quantized).name}" for c in CRITERIA}


def present(model_dir: str, quantized: bool, s3: S3Config) -> bool:
    """Whether the four models are there (read by nothing yet, so their bytes are not hashed)."""
    if is_remote(model_dir):
        return _published(model_dir, quantized, s3) is not None
    return all(model_path(model_dir, c, quantized).is_file() for c in CRITERIA)


def stored(model_dir: str, quantized: bool, s3: S3Config) -> tuple[str | None, int] | None:
    """(version, bytes) of the four models in model_dir, None where they are not all there. A
    local folder's version is read off its files (None if they are a mix, which models_version
    refuses); a remote one's is the manifest's."""
    if not is_remote(model_dir):
        paths = [model_path(model_dir, c, quantized) for c in CRITERIA]
        if not all(p.is_file() for p in paths):
            return None
        try:
            version = models_version(model_dir, quantized)
        except PreconditionError:
            version = None
        return version, sum(p.stat().st_size for p in paths)
    version = _published(model_dir, quantized, s3)
    if version is None:
        return None
    filesystem, _ = files.filesystem(model_dir, s3)
    infos = filesystem.get_file_info([files.filesystem(uri, s3)[1] for uri in _remote_set(model_dir, version,
                                                                                             quantized).values()])
    return (version, sum(i.size for i in infos)) if all(i.size is not None for i in infos) else None


def local_copy(model_dir: str, quantized: bool, s3: S3Config) -> str:
    """The models as a folder on the driver's disk, which tasks read (shipped to executors as
    any local folder is): model_dir itself when local; else the set the manifest names, fetched
    once per version into the temporary folder and checked against it."""
    if not is_remote(model_dir):
        return model_dir
    import tempfile

    from pyarrow import fs

    version = _published(model_dir, quantized, s3)
    if version is None:
        raise PreconditionError(f"no {_format(quantized)} quality models published in {model_dir} (no {MANIFEST}); "
                                "run `climb-spark train-quality` first")
    cache = Path(tempfile.gettempdir()) / f"climb-spark-{os.getuid()}" / f"quality-{_format(quantized)}-{version}"
    if cache.is_dir():
        return str(cache)
    partial = cache.with_name(f"{cache.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for criterion, uri in _remote_set(model_dir, version, quantized).items():
        filesystem, where = files.filesystem(uri, s3)
        fs.copy_files(where, str(model_path(str(partial), criterion, quantized)), source_filesystem=filesystem,
                      destination_filesystem=fs.LocalFileSystem())
    found = files_version(str(partial), quantized)
    if found != version:
        shutil.rmtree(partial)
        raise PreconditionError(f"the quality models in {model_dir}/{version} are not the set {MANIFEST} names "
                                f"(files {found}); run `climb-spark train-quality` again")
    partial.rename(cache)
    return str(cache)


def _publish_remote(staging: Path, model_dir: str, quantized: bool, s3: S3Config) -> str:
    from pyarrow import fs

    version = models_version(str(staging), quantized)
    filesystem, root = files.filesystem(model_dir, s3)
    for criterion, uri in _remote_set(model_dir, version, quantized).items():
        fs.copy_files(str(model_path(str(staging), criterion, quantized)), files.filesystem(uri, s3)[1],
                      source_filesystem=fs.LocalFileSystem(), destination_filesystem=filesystem)
    files.write_text(f"{model_dir.rstrip('/')}/{MANIFEST}",
                     json.dumps({"format": _format(quantized), "version": version}), s3)
    for info in filesystem.get_file_info(fs.FileSelector(root, allow_not_found=True)):
        if info.type == fs.FileType.Directory and info.base_name != version:
            files.remove_dir(f"{model_dir.rstrip('/')}/{info.base_name}", s3)  # earlier sets, a killed run's
    shutil.rmtree(staging)
    return version


def expected_scores(model, texts: Sequence[str]) -> np.ndarray:
    """Sum over classes of P(class) x class, per text (labels are `__label__0` .. `__label__5`); the
    model is fastText's or a CompactModel."""
    return _expected(model, [fasttext_text(t) for t in texts])


def _label_value(label: str) -> int:
    return int(label.rsplit("__", 1)[1])


def _expected(model, lines: list[str], ids: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    if isinstance(model, CompactModel):
        p = model.probabilities(lines, ids).astype(np.float64)
        values = np.array([_label_value(lab) for lab in model.labels], dtype=np.float64)
        return ((p * values).sum(axis=1) / np.maximum(p.sum(axis=1), 1e-12)).astype(np.float32)
    labels, probs = model.predict(lines, k=-1)
    out = np.empty(len(lines), dtype=np.float32)
    for i, (labs, ps) in enumerate(zip(labels, probs)):
        values = np.fromiter((_label_value(lab) for lab in labs), dtype=np.float64, count=len(labs))
        p = np.asarray(ps, dtype=np.float64)
        out[i] = float((values * p).sum() / max(p.sum(), 1e-12))
    return out


def score_all(models: Mapping[str, object], texts: Sequence[str]) -> dict[str, np.ndarray]:
    """The four criteria's expected scores: the texts normalized once, and tokenized and hashed
    once per Hashing the compact models share (load_models)."""
    lines = [fasttext_text(t) for t in texts]
    ids: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for m in models.values():
        if isinstance(m, CompactModel) and id(m.hashing) not in ids:
            ids[id(m.hashing)] = m.hashing.ids(lines)
    return {c: _expected(models[c], lines, ids.get(id(getattr(models[c], "hashing", None))))
            for c in CRITERIA}


@dataclass(frozen=True)
class Trained:
    lr: float  # the rate training converged at (lower than asked after a divergence)
    compact_drift: float | None  # compact vs full expected scores on the probe texts, MAE; None if full


def _probe(texts: Sequence[str], limit: int = 2000) -> list[str]:
    step = max(1, -(-len(texts) // limit))
    return list(texts[::step])


def train(texts: Sequence[str], labels: Sequence[int], path: Path, *, epoch: int, lr: float,
          word_ngrams: int, dim: int, seed: int, bucket: int = 2000000, retries: int = 3,
          quantize: bool = False, max_compact_drift: float = 0.05, probe: Sequence[str] = ()) -> Trained:
    """Train one classifier, single-threaded so that the same data gives the same model.

    fastText's SGD can diverge to NaN on small or skewed data (it did in CI, not reproducibly, at
    lr 0.5); it is retried at half the rate, as fastText's own advice says, and the caller records
    the rate actually used.

    With `quantize`, the model trained at full size is compacted in memory (compact.CompactModel:
    its non-zero rows, int8 per row) and only the compact file is written, after a check against
    the full model on `probe` (held-out texts; the training texts when none): one whose expected
    scores differ by more than `max_compact_drift` MAE is refused with InputError."""
    import tempfile

    import fasttext

    if word_ngrams > 1 and bucket < 1:
        raise ValueError("quality.bucket must be positive when word_ngrams > 1 (fastText divides by it)")

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as fh:
        for text, label in zip(texts, labels):
            fh.write(f"__label__{int(label)} {fasttext_text(text)}\n")
        train_file = fh.name
    nans = 0
    try:
        while True:
            try:
                release_free_heap()  # a matrix of zeros past fastText's own init, not old bytes
                model = fasttext.train_supervised(input=train_file, epoch=epoch, lr=lr, wordNgrams=word_ngrams,
                                                  dim=dim, bucket=bucket, minCount=1, thread=1, seed=seed,
                                                  verbose=0)
                break
            except RuntimeError as err:
                if "NaN" not in str(err) or nans == retries:
                    raise
                nans += 1
                lr /= 2
    finally:
        Path(train_file).unlink()
    if not quantize:
        model.save_model(str(path))
        return Trained(lr, None)
    probe = _probe(probe or texts)
    compact = CompactModel.from_fasttext(model)
    drift = float(np.abs(expected_scores(compact, probe) - expected_scores(model, probe)).mean())
    if drift > max_compact_drift:
        from climb_spark.errors import InputError

        raise InputError(f"train-quality: the compact model for {path.stem} scores {drift:.3f} MAE away from the "
                         f"full model (quality.max_compact_drift={max_compact_drift:g}); set "
                         "quality.quantize: false to keep the full models")
    compact.save(path)
    return Trained(lr, drift)
