"""fastText under numpy 2: training without NaN, batch and single predictions that agree,
expected scores from the class probabilities, and a teacher-trained student that separates
promotional or garbled text from clean expository text."""
import hashlib
import json

import fasttext
import numpy as np
import pytest

from climb_spark import quality
from climb_spark.corpus import CorpusConfig, build
from climb_spark.teacher import rubric_scores

CLEAN = ("Photosynthesis is the process by which green plants convert light energy into chemical "
         "energy. It takes place in the chloroplasts, which contain chlorophyll. The light reactions "
         "split water and release oxygen, while the Calvin cycle fixes carbon dioxide into sugars. "
         "Because plants are primary producers, this process supports almost every food chain.")
PROMO = ("BUY NOW!!! Huge SALE on all shoes, free shipping and a bonus coupon! Click here: "
         "www.best-deals.example/shop to order today, limited offer, $9.99 only, cheap prices!!!")
GARBLED = "x7$ ;; ### qq zzk ~~ 0x0 @@ 123 456 ::: vvv vvv vvv ^^ %% &&"


def test_teacher_follows_the_rubric_direction():
    clean, promo, garbled = rubric_scores(CLEAN), rubric_scores(PROMO), rubric_scores(GARBLED)
    assert all(0 <= v <= 5 for s in (clean, promo, garbled) for v in s.values())
    assert clean["advertisement"] == 5 and promo["advertisement"] <= 1
    assert clean["quality"] >= 4 > garbled["quality"]
    assert clean["educational_value"] > promo["educational_value"]
    assert clean["informational_value"] > garbled["informational_value"]


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
    for c in quality.CRITERIA:
        quality.train(texts, [lab[c] for lab in labels], quality.model_path(str(tmp / "m"), c),
                      epoch=25, lr=0.5, word_ngrams=2, dim=50, seed=42, bucket=262144)
    return str(tmp / "m")


def test_fasttext_numpy2_trains_and_predicts_consistently(trained):
    assert np.__version__.startswith("2.")
    model = fasttext.load_model(str(quality.model_path(trained, "quality")))
    assert np.isfinite(model.get_input_matrix()).all() and np.isfinite(model.get_output_matrix()).all()
    texts = [quality.fasttext_text(t) for t in (CLEAN, PROMO, GARBLED)]
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
        quality.train(texts, labels, tmp_path / "m.bin", epoch=q.epoch, lr=q.lr, word_ngrams=q.word_ngrams,
                      dim=q.dim, seed=q.seed, bucket=q.bucket)
        digests.add(hashlib.sha256((tmp_path / "m.bin").read_bytes()).hexdigest())
    assert len(digests) == 1
    model = fasttext.load_model(str(tmp_path / "m.bin"))
    assert np.isfinite(model.get_input_matrix()).all()


def test_expected_score_is_probability_weighted(trained):
    model = fasttext.load_model(str(quality.model_path(trained, "quality")))
    labs, probs = model.predict(quality.fasttext_text(CLEAN), k=-1)
    manual = sum(int(lab.removeprefix("__label__")) * p for lab, p in zip(labs, probs)) / sum(probs)
    (score,) = quality.expected_scores(model, [CLEAN])
    assert score == pytest.approx(manual, abs=1e-4) and 0 <= score <= 5


def test_student_separates_promotional_and_garbled_from_expository(trained):
    models = quality.load_models(trained)
    clean_like = [CLEAN, CLEAN.replace("Photosynthesis", "Respiration").replace("light", "stored")]
    scores = quality.score_all(models, clean_like + [PROMO, GARBLED])
    assert scores["advertisement"][:2].min() > scores["advertisement"][2] + 1.5
    assert scores["quality"][:2].min() > scores["quality"][3] + 1.5
    assert scores["educational_value"][:2].min() > scores["educational_value"][3]
    assert len(quality.models_version(trained)) == 12
