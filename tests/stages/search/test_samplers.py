"""The RegMix sampler and the batches drawn from a predictor, as plain functions."""
import numpy as np
import pytest

from climb_spark.config import SearchConfig
from climb_spark.stages.search import samplers

PRIOR = np.array([0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.02])


def test_regmix_sampler_follows_the_recipe():
    cfg = SearchConfig()
    w = samplers.regmix_sample(PRIOR, 64, np.random.default_rng(0), cfg)
    assert w.shape == (64, 7)
    assert np.allclose(w.sum(axis=1), 1)
    assert np.all(w <= np.minimum(cfg.cap * PRIOR, 1) + 1e-9)  # the cap uses p before temperature
    assert np.all((w == 0) | (w >= cfg.min_weight * 0.99))  # small weights zeroed
    assert len(samplers.dedupe(w)) == 64  # a batch never repeats a mixture
    assert (w == 0).any(axis=1).mean() > 0.2  # small strengths give sparse mixtures on purpose
    again = samplers.regmix_sample(PRIOR, 64, np.random.default_rng(0), cfg)
    assert np.array_equal(w, again)
    # Temperature 0.5 flattens the prior: the rare clusters get more than their share on average.
    assert w[:, -1].mean() > PRIOR[-1]


def test_sampler_errors_are_explained():
    with pytest.raises(ValueError, match="prior"):
        samplers.regmix_sample(np.array([]), 4, np.random.default_rng(0), SearchConfig())
    with pytest.raises(RuntimeError, match="distinct mixtures"):
        samplers.regmix_sample(np.array([1.0]), 4, np.random.default_rng(0), SearchConfig())


def test_the_next_batch_pool_is_the_predicted_top():
    rng = np.random.default_rng(1)
    cands = samplers.dirichlet_candidates(PRIOR, 5000, rng)
    assert np.allclose(cands.sum(axis=1), 1) and np.allclose(cands.mean(axis=0), PRIOR, atol=0.02)
    predicted = cands[:, 3]  # pretend cluster 3 is what the target wants
    top = samplers.top_indices(predicted, 8, 128)
    assert len(top) == 128 and len(set(top)) == 128
    assert predicted[top].min() >= np.sort(predicted)[-128]
    assert len(samplers.top_indices(predicted, 20, 128)) == 400  # max(n^2, top_min)
