"""fastText under numpy 2: training without NaN, batch and single predictions that agree,
expected scores from the class probabilities, a teacher-trained student that separates
promotional or garbled text from clean expository text, and compact models that score as the
full ones."""
import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import fasttext
import numpy as np
import pytest

from climb_spark.corpus import CorpusConfig, build
from climb_spark.errors import PreconditionError
from climb_spark.rubric import CRITERIA
from climb_spark.stages.quality import classifiers, compact
from climb_spark.stages.quality.heuristic_teacher import rubric_scores
from tests.stages.quality.test_heuristic_teacher import CLEAN, GARBLED, PROMO


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Students trained on real sample-corpus text labelled by the teacher (the default recipe)."""
    tmp = tmp_path_factory.mktemp("quality")
    build(CorpusConfig(output=str(tmp / "corpus"), max_docs=1200, seed=11))
    texts = [json.loads(line)["text"] for f in sorted((tmp / "corpus").glob("*.jsonl")) for line in f.open()]
    # Real promotional and garbled text does not ship in any package: a few templated examples
    # teach the low end of the scale, as a teacher's low scores would.
    texts += [PROMO.replace("shoes", item) for item in ("phones", "sofas", "watches", "bikes", "tickets")] * 8
    texts += [GARBLED.replace("qq", tok) for tok in ("aa", "bb", "cc", "dd", "ee")] * 8
    labels = [rubric_scores(t) for t in texts]
    for c in CRITERIA:
        classifiers.train(texts, [lab[c] for lab in labels], classifiers.model_path(str(tmp / "m"), c, False),
                          epoch=25, lr=0.5, word_ngrams=2, dim=50, seed=42, bucket=262144)
    return str(tmp / "m")


def test_fasttext_numpy2_trains_and_predicts_consistently(trained):
    assert np.__version__.startswith("2.")
    model = fasttext.load_model(str(classifiers.model_path(trained, "quality", False)))
    assert np.isfinite(model.get_input_matrix()).all() and np.isfinite(model.get_output_matrix()).all()
    texts = [classifiers.fasttext_text(t) for t in (CLEAN, PROMO, GARBLED)]
    batch_labels, batch_probs = model.predict(texts, k=-1)
    for text, labs, probs in zip(texts, batch_labels, batch_probs):
        single_labs, single_probs = model.predict(text, k=-1)  # single-string predict works too
        assert list(single_labs) == list(labs) and np.allclose(single_probs, probs, atol=1e-6)
        assert abs(float(np.sum(probs)) - 1) < 1e-3 and np.all(np.asarray(probs) >= 0)


def test_training_is_deterministic_and_finite(tmp_path):
    """fastText-numpy2 with the configured defaults: the same data gives the same bytes, every run."""
    from climb_spark.config import QualityConfig

    q = QualityConfig()
    build(CorpusConfig(output=str(tmp_path / "c"), max_docs=400, seed=2))
    texts = [json.loads(line)["text"] for f in sorted((tmp_path / "c").glob("*.jsonl")) for line in f.open()]
    labels = [rubric_scores(t)["quality"] for t in texts]
    digests = set()
    for _ in range(3):
        classifiers.train(texts, labels, tmp_path / "m.bin", epoch=q.epoch, lr=q.lr, word_ngrams=q.word_ngrams,
                          dim=q.dim, seed=q.seed, bucket=q.bucket)
        digests.add(hashlib.sha256((tmp_path / "m.bin").read_bytes()).hexdigest())
    assert len(digests) == 1
    model = fasttext.load_model(str(tmp_path / "m.bin"))
    assert np.isfinite(model.get_input_matrix()).all()


def test_expected_score_is_probability_weighted(trained):
    model = fasttext.load_model(str(classifiers.model_path(trained, "quality", False)))
    labs, probs = model.predict(classifiers.fasttext_text(CLEAN), k=-1)
    manual = sum(int(lab.removeprefix("__label__")) * p for lab, p in zip(labs, probs)) / sum(probs)
    (score,) = classifiers.expected_scores(model, [CLEAN])
    assert score == pytest.approx(manual, abs=1e-4) and 0 <= score <= 5


def test_student_separates_promotional_and_garbled_from_expository(trained):
    models = classifiers.load_models(trained, False)
    clean_like = [CLEAN, CLEAN.replace("Photosynthesis", "Respiration").replace("light", "stored")]
    scores = classifiers.score_all(models, clean_like + [PROMO, GARBLED])
    assert scores["advertisement"][:2].min() > scores["advertisement"][2] + 1.5
    assert scores["quality"][:2].min() > scores["quality"][3] + 1.5
    assert scores["educational_value"][:2].min() > scores["educational_value"][3]
    assert len(classifiers.models_version(trained, False)) == 12


def test_a_diverging_rate_is_halved_until_training_is_finite(tmp_path):
    build(CorpusConfig(output=str(tmp_path / "c"), max_docs=60, seed=5))
    texts = [json.loads(line)["text"] for f in sorted((tmp_path / "c").glob("*.jsonl")) for line in f.open()]
    labels = [rubric_scores(t)["quality"] for t in texts]
    kwargs = dict(epoch=25, word_ngrams=2, dim=50, seed=42, bucket=262144)
    with pytest.raises(RuntimeError, match="NaN"):  # lr 200 diverges, and so does 100 after one retry
        classifiers.train(texts, labels, tmp_path / "m.bin", lr=200.0, retries=1, **kwargs)
    used = classifiers.train(texts, labels, tmp_path / "m.bin", lr=200.0, retries=8, **kwargs).lr
    assert used < 200.0
    assert np.isfinite(fasttext.load_model(str(tmp_path / "m.bin")).get_input_matrix()).all()


def _fnv1a(token: str) -> int:
    h = 2166136261
    for b in token.encode("utf-8"):
        h = ((h ^ (b if b < 128 else b | 0xFFFFFF00)) * 16777619) & 0xFFFFFFFF
    return h


def test_word_hashes_are_fasttexts_for_short_long_and_non_ascii_tokens():
    tokens = ["the", "</s>", "é", "naïve", "日本語", "x" * 32, "y" * 33, "ü" * 40, ""]
    assert compact.fnv1a(tokens).tolist() == [_fnv1a(t) for t in tokens]


def test_compact_model_is_small_and_scores_as_the_full_model_on_held_out_text(tmp_path):
    """The default compaction at the test bucket count: the rows training left non-zero, int8 per
    row, scored by the numpy re-implementation of fastText's predict; on documents the model never
    saw it agrees with the full model to rounding (goal 0.05 MAE; fastText's own `.ftz` measured
    0.15 here, 0.07-0.09 in benchmarks/quality_models.py)."""
    from climb_spark.config import QualityConfig

    q = QualityConfig()
    build(CorpusConfig(output=str(tmp_path / "c"), max_docs=400, seed=3))
    texts = [json.loads(line)["text"] for f in sorted((tmp_path / "c").glob("*.jsonl")) for line in f.open()]
    held = [t for i, t in enumerate(texts) if i % 5 == 0] + ["", "__label__5", "Ünïcode wörds and a sentence."]
    train = [t for i, t in enumerate(texts) if i % 5]
    labels = [rubric_scores(t)["quality"] for t in train]
    kwargs = dict(epoch=q.epoch, lr=q.lr, word_ngrams=q.word_ngrams, dim=q.dim, seed=q.seed, bucket=262144)
    full, small = (classifiers.model_path(str(tmp_path / "m"), "quality", quantized) for quantized in (False, True))
    assert (full.name, small.name) == ("quality.bin", "quality.npz")
    assert classifiers.train(train, labels, full, quantize=False, **kwargs).compact_drift is None
    trained = classifiers.train(train, labels, small, quantize=True, probe=held,
                                max_compact_drift=q.max_compact_drift, **kwargs)
    assert small.stat().st_size * 4 < full.stat().st_size
    models = {full: fasttext.load_model(str(full)), small: classifiers.load_model(small, True)}
    scores = {p: classifiers.expected_scores(m, held) for p, m in models.items()}
    diff = np.abs(scores[small] - scores[full])
    # what train measured on the probe is what the written file scores
    assert diff.mean() == pytest.approx(trained.compact_drift, abs=1e-6)
    assert diff.mean() < 0.01 and diff.max() < 0.1
    # Same labels, most probable first, as fastText's predict gives them.
    top_full, _ = models[full].predict([classifiers.fasttext_text(t) for t in held], k=1)
    top_small, _ = models[small].predict([classifiers.fasttext_text(t) for t in held], k=1)
    assert np.mean([a == b for a, b in zip(top_full, top_small)]) > 0.95


def test_a_compaction_that_drifts_from_the_full_model_is_refused(tmp_path):
    from climb_spark.errors import InputError

    build(CorpusConfig(output=str(tmp_path / "c"), max_docs=80, seed=4))
    texts = [json.loads(line)["text"] for f in sorted((tmp_path / "c").glob("*.jsonl")) for line in f.open()]
    labels = [rubric_scores(t)["quality"] for t in texts]
    kwargs = dict(epoch=5, lr=0.5, word_ngrams=2, dim=16, seed=1, bucket=262144, quantize=True)
    with pytest.raises(InputError, match=r"scores .* MAE away from the full model .*quality.quantize: false"):
        classifiers.train(texts, labels, tmp_path / "m.npz", max_compact_drift=1e-12, **kwargs)
    assert not (tmp_path / "m.npz").exists()
    trained = classifiers.train(texts, labels, tmp_path / "m.npz", **kwargs)
    assert (tmp_path / "m.npz").is_file() and 0 < trained.compact_drift < 0.05


def test_a_published_set_replaces_the_old_one_whole_and_a_mix_is_refused(tmp_path):
    folder = str(tmp_path / "models")

    def staged(tag: str):
        staging = tmp_path / "models" / "_staging"
        for c in CRITERIA:
            path = classifiers.model_path(str(staging), c, True)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"{tag} {c}".encode())
        return staging

    # Models of earlier runs in other formats, not part of any compact set.
    for c in CRITERIA:
        classifiers.model_path(folder, c, False).parent.mkdir(parents=True, exist_ok=True)
        classifiers.model_path(folder, c, False).write_bytes(b"full")
        (tmp_path / "models" / f"{c}.ftz").write_bytes(b"fastText's own compact format")
    old = classifiers.publish(staged("old"), folder, True)
    assert classifiers.models_version(folder, True) == old
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == sorted(
        [classifiers.MANIFEST] + [f"{c}.npz" for c in CRITERIA])
    new = classifiers.publish(staged("new"), folder, True)
    assert new != old and classifiers.models_version(folder, True) == new

    # One file of the old set back in place, as a run killed between its moves leaves it.
    classifiers.model_path(folder, CRITERIA[-1], True).write_bytes(f"old {CRITERIA[-1]}".encode())
    with pytest.raises(PreconditionError, match=r"not the set train-quality published .* run `climb-spark train-quality` again"):
        classifiers.models_version(folder, True)
    # Models brought from elsewhere, with no manifest, are taken as they are.
    (tmp_path / "models" / classifiers.MANIFEST).unlink()
    assert classifiers.models_version(folder, True) not in (old, new)


def test_training_is_not_swayed_by_old_bytes_in_the_heap(tmp_path):
    """fastText leaves most of its input matrix as malloc returns it: a freed heap block full of
    NaN bytes, where a small matrix is then carved from, diverged to NaN (at lr 0.5 and 0.25) and
    gave another model. The free heap is handed back first, so the matrix reads as zeros."""
    build(CorpusConfig(output=str(tmp_path / "c"), max_docs=80, seed=4))
    texts = [json.loads(line)["text"] for f in sorted((tmp_path / "c").glob("*.jsonl")) for line in f.open()]
    labels = [rubric_scores(t)["quality"] for t in texts]
    # bucket x dim x 4 bytes = 16.8 MB: under glibc's mmap threshold once it has risen, so from the heap.
    kwargs = dict(epoch=5, lr=0.5, word_ngrams=2, dim=16, seed=1, bucket=262144)
    models = []
    for i in range(2):
        block = np.empty(20 << 20, np.uint8)
        del block  # a mapped block freed: glibc raises its mmap threshold past 20 MB
        block = np.full(20 << 20, 0xFF, np.uint8)  # now from the heap, every float in it a NaN
        del block
        assert classifiers.train(texts, labels, tmp_path / f"m{i}.bin", **kwargs).lr == 0.5
        models.append(hashlib.sha256((tmp_path / f"m{i}.bin").read_bytes()).hexdigest())
    assert models[0] == models[1]


def changed_under_a_job(trained, tmp_path) -> tuple[str, str]:
    """A copy of the trained set, the version a job read at its start, then the first file of
    a new set moved in, as train-quality publishing meanwhile leaves the folder."""
    folder = str(tmp_path / "published")
    shutil.copytree(trained, folder)
    started = classifiers.models_version(folder, False)
    assert classifiers.load_models(folder, False, started).keys() == set(CRITERIA)  # unchanged: loaded
    shutil.copy(classifiers.model_path(trained, "quality", False), classifiers.model_path(folder, CRITERIA[1], False))
    return folder, started


def test_models_changed_under_a_job_are_refused_by_the_task_that_loads_them(trained, tmp_path):
    folder, started = changed_under_a_job(trained, tmp_path)
    with pytest.raises(PreconditionError, match=rf"^{classifiers.CHANGED}: version {started} at the job's start, "
                                                r"\w{12} when a task loaded them; .* run the job again$"):
        classifiers.load_models(folder, False, started)
    assert classifiers.load_models(folder, False).keys() == set(CRITERIA)  # no version asked: what is there


def test_a_task_finding_the_models_changed_fails_its_spark_job_with_one_line(spark, trained, tmp_path):
    from climb_spark.stages.embed import stage as embed

    folder, started = changed_under_a_job(trained, tmp_path)
    docs = spark.createDataFrame([("d1", CLEAN), ("d2", PROMO)], "doc_id string, text string").repartition(2)
    scored = docs.mapInPandas(lambda it: embed.score(it, folder, False, started),
                              schema=", ".join(["doc_id string"] + [f"{c} double" for c in CRITERIA]))
    with pytest.raises(PreconditionError) as refused, classifiers.changed_models_named():
        scored.collect()
    message = str(refused.value)
    assert message.startswith(f"{classifiers.CHANGED}: version {started} ") and "\n" not in message
    with pytest.raises(ZeroDivisionError), classifiers.changed_models_named():  # anything else: as it was
        1 / 0


def test_models_changed_before_they_are_packed_for_executors_are_never_cached(trained, tmp_path):
    """On a cluster the set is packed once into an archive named by its version and reused by
    later jobs: one packed after a publish must not take the old version's name."""
    from climb_spark.lakehouse.tasks import pack

    folder, started = changed_under_a_job(trained, tmp_path)
    archive = tmp_path / "shipped" / f"quality-{started}.tar"
    with pytest.raises(PreconditionError, match=rf"^{classifiers.CHANGED}: .* when they were packed"):
        pack(folder, archive, lambda: classifiers.check_unchanged(folder, False, started, "when they were packed"))
    assert list(archive.parent.iterdir()) == []  # neither the archive nor its partial
    now = classifiers.models_version(folder, False)
    pack(folder, archive.with_name(f"quality-{now}.tar"),
         lambda: classifiers.check_unchanged(folder, False, now, "when they were packed"))
    with tarfile.open(archive.with_name(f"quality-{now}.tar")) as tar:
        assert sorted(tar.getnames()) == sorted(p.name for p in Path(folder).iterdir())
