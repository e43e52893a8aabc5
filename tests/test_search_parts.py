"""The search's parts as plain functions: samplers, predictor, proxy LM, command proxy, export plan."""
import sys

import numpy as np
import pytest

from climb_spark import export, mixture, predictor, proxy_lm
from climb_spark.config import ProxyConfig, SearchConfig
from climb_spark.proxies import ProxySpec, run_command
from climb_spark.token_pools import Pool

from .conftest import ROOT

PRIOR = np.array([0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.02])


def test_regmix_sampler_follows_the_recipe():
    cfg = SearchConfig()
    w = mixture.regmix_sample(PRIOR, 64, np.random.default_rng(0), cfg)
    assert w.shape == (64, 7)
    assert np.allclose(w.sum(axis=1), 1)
    assert np.all(w <= np.minimum(cfg.cap * PRIOR, 1) + 1e-9)  # the cap uses p before temperature
    assert np.all((w == 0) | (w >= cfg.min_weight * 0.99))  # small weights zeroed
    assert len(mixture.dedupe(w)) == 64  # a batch never repeats a mixture
    assert (w == 0).any(axis=1).mean() > 0.2  # small strengths give sparse mixtures on purpose
    again = mixture.regmix_sample(PRIOR, 64, np.random.default_rng(0), cfg)
    assert np.array_equal(w, again)
    # Temperature 0.5 flattens the prior: the rare clusters get more than their share on average.
    assert w[:, -1].mean() > PRIOR[-1]


def test_sampler_errors_are_explained():
    with pytest.raises(ValueError, match="prior"):
        mixture.regmix_sample(np.array([]), 4, np.random.default_rng(0), SearchConfig())
    with pytest.raises(RuntimeError, match="distinct mixtures"):
        mixture.regmix_sample(np.array([1.0]), 4, np.random.default_rng(0), SearchConfig())


def test_next_batch_takes_from_the_predicted_top():
    rng = np.random.default_rng(1)
    cands = mixture.dirichlet_candidates(PRIOR, 5000, rng)
    assert np.allclose(cands.sum(axis=1), 1) and np.allclose(cands.mean(axis=0), PRIOR, atol=0.02)
    predicted = cands[:, 3]  # pretend cluster 3 is what the target wants
    batch = mixture.next_batch(cands, predicted, 8, 128, rng)
    assert len(batch) == 8 and len(mixture.dedupe(batch)) == 8
    assert batch[:, 3].min() >= np.sort(predicted)[-128]


def test_predictor_learns_a_known_response_and_reports_fit():
    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.ones(5), size=120)
    y = 2 * x[:, 0] - x[:, 1] + rng.normal(0, 0.01, 120)
    fit = predictor.fit(x, y, seed=42)
    assert fit.n_val == 12 and fit.n_train == 108
    assert fit.val_spearman is not None and fit.val_spearman > 0.7
    test = rng.dirichlet(np.ones(5), size=200)
    truth = 2 * test[:, 0] - test[:, 1]
    assert predictor.spearman(fit.predict(test), truth) > 0.8
    assert np.array_equal(predictor.fit(x, y, seed=42).predict(test), fit.predict(test))
    tiny = predictor.fit(x[:4], y[:4], seed=1)  # the first iterations of a scaled-down search
    assert tiny.val_spearman is None and np.isfinite(tiny.predict(test)).all()
    with pytest.raises(ValueError, match="at least 2"):
        predictor.fit(x[:1], y[:1], seed=1)


TINY = ProxyConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=2, seq_len=16, batch_size=8, steps=40,
                   lr=3e-3, warmup_steps=5, log_every=10)


def _pools():
    # Two "domains" with different token statistics; the target looks like domain 1.
    rng = np.random.default_rng(0)
    a = rng.integers(0, 32, 5000).astype(np.int32)
    b = np.tile(np.arange(32, 64, dtype=np.int32), 160)
    return {0: a, 1: b}, np.tile(np.arange(32, 64, dtype=np.int32), 20)


def test_proxy_is_deterministic_and_prefers_the_matching_domain():
    pools, target = _pools()
    on_b = proxy_lm.train(pools, {1: 1.0}, target, 64, TINY, seed=7)
    again = proxy_lm.train(pools, {1: 1.0}, target, 64, TINY, seed=7)
    on_a = proxy_lm.train(pools, {0: 1.0}, target, 64, TINY, seed=7)
    assert on_b.score == again.score and on_b.loss_curve == again.loss_curve
    assert on_b.score > on_a.score and on_b.score == -on_b.target_loss
    assert len(on_b.loss_curve) == 4 and on_b.loss_curve[-1] < on_b.loss_curve[0]
    assert on_b.tokens_trained == 40 * 8 * 16
    with pytest.raises(ValueError, match="positive weight"):
        proxy_lm.train(pools, {0: 0.0}, target, 64, TINY, seed=7)


def test_doremi_moves_weight_off_a_domain_with_no_excess_loss_and_is_reproducible():
    """Domain 0 is random tokens: the reference cannot learn it either, so the DRO proxy's excess
    loss there stays ~0 and DoReMi moves the weight to the learnable domain 1."""
    pools, _ = _pools()
    result = proxy_lm.doremi(pools, {0: 0.5, 1: 0.5}, 64, TINY, seed=3)
    assert sum(result.weights.values()) == pytest.approx(1.0)
    assert result.weights[1] > 0.6 > result.weights[0] >= 1e-3 / 2  # smoothed with uniform, never 0
    assert len(result.weight_curve) == TINY.steps // TINY.log_every and len(result.reference_curve) == 4
    assert result.tokens_trained == 2 * TINY.steps * TINY.batch_size * TINY.seq_len
    assert proxy_lm.doremi(pools, {0: 0.5, 1: 0.5}, 64, TINY, seed=3).weights == result.weights


def test_proxies_continue_from_a_shared_base_with_a_decaying_learning_rate():
    pools, target = _pools()
    base = proxy_lm.base_checkpoint(pools, {0: 0.5, 1: 0.5}, 64, TINY, seed=7)
    assert base == proxy_lm.base_checkpoint(pools, {0: 0.5, 1: 0.5}, 64, TINY, seed=7)  # reproducible
    from_base = proxy_lm.train(pools, {1: 1.0}, target, 64, TINY, seed=7, base=base)
    scratch = proxy_lm.train(pools, {1: 1.0}, target, 64, TINY, seed=7)
    # The base already knows both domains: its proxy starts far lower and ends at least as low.
    assert from_base.loss_curve[0] < scratch.loss_curve[0] - 0.5
    assert from_base.target_loss <= scratch.target_loss
    assert proxy_lm.train(pools, {1: 1.0}, target, 64, TINY, seed=7, base=base).score == from_base.score


def test_choice_scoring_picks_the_likelier_continuation():
    pools, _ = _pools()
    cfg = TINY.__class__(**{**TINY.__dict__, "steps": 80})
    ctx = np.arange(40, 48, dtype=np.int32)
    items = [(ctx, [np.array([48, 49], np.int32), np.array([3, 17], np.int32)], 0),
             (ctx, [np.array([5, 9], np.int32), np.array([48, 49], np.int32)], 1)]
    result = proxy_lm.train(pools, {1: 1.0}, np.zeros(0), 64, cfg, seed=3, choices=items)
    assert result.score == 1.0 and np.isnan(result.target_loss)


POOL = Pool("p1", "/nowhere", 64, (0, 1, 2), (0.5, 0.3, 0.2), "c1", "holdout")
SPEC = ProxySpec("s1", "climb", 1, 0, (0.2, 0.0, 0.8), 42)


def test_command_proxy_gets_the_mixture_and_its_score_is_read(tmp_path):
    script = ROOT / "tests" / "proxy_command.py"
    out = run_command([sys.executable, str(script), "--file", "{mixture_json}"], SPEC, POOL, {0: 0.2, 2: 0.8})
    assert out["score"] == pytest.approx(-(0.2 ** 2 + 0.2 ** 2))  # optimum: all on super-cluster 2
    assert out["loss_curve"] and out["target_loss"] == pytest.approx(-out["score"])
    bad = tmp_path / "bad.py"
    bad.write_text("import sys; print('no score here'); sys.exit(0)")
    with pytest.raises(RuntimeError, match="did not print a score"):
        run_command([sys.executable, str(bad)], SPEC, POOL, {0: 1.0})
    bad.write_text("import sys; sys.stderr.write('trainer crashed'); sys.exit(3)")
    with pytest.raises(RuntimeError, match="exited 3: trainer crashed"):
        run_command([sys.executable, str(bad)], SPEC, POOL, {0: 1.0})
    plain = tmp_path / "plain.py"
    plain.write_text("import json, sys; m = json.load(sys.stdin); print(m['weights']['2'])")
    assert run_command([sys.executable, str(plain)], SPEC, POOL, {0: 0.2, 2: 0.8})["score"] == 0.8


def test_export_plan_gives_expected_tokens_and_repeats_only_when_short():
    whole, frac = export.copies_plan(np.array([0.5, 0.3, 0.2, 0.0]), np.array([1000, 600, 100, 50]), 1000)
    expected = (whole + frac) * np.array([1000, 600, 100, 50])
    assert np.allclose(expected, [500, 300, 200, 0])
    assert whole.tolist() == [0, 0, 2, 0]  # only the 100-token cluster has to repeat
    with pytest.raises(RuntimeError, match=r"\[1\] have weight but no documents"):
        export.copies_plan(np.array([0.5, 0.5]), np.array([10, 0]), 100)
