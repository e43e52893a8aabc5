"""The proxy LM as plain functions: determinism, DoReMi, base checkpoints, choice scoring."""
import numpy as np
import pytest

from climb_spark.config import ProxyConfig
from climb_spark.proxy import lm

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
    on_b = lm.train(pools, {1: 1.0}, target, 64, TINY, seed=7)
    again = lm.train(pools, {1: 1.0}, target, 64, TINY, seed=7)
    on_a = lm.train(pools, {0: 1.0}, target, 64, TINY, seed=7)
    assert on_b.score == again.score and on_b.loss_curve == again.loss_curve
    assert on_b.score > on_a.score and on_b.score == -on_b.target_loss
    assert len(on_b.loss_curve) == 4 and on_b.loss_curve[-1] < on_b.loss_curve[0]
    assert on_b.tokens_trained == 40 * 8 * 16
    with pytest.raises(ValueError, match="positive weight"):
        lm.train(pools, {0: 0.0}, target, 64, TINY, seed=7)


def test_doremi_moves_weight_off_a_domain_with_no_excess_loss_and_is_reproducible():
    """Domain 0 is random tokens: the reference cannot learn it either, so the DRO proxy's excess
    loss there stays ~0 and DoReMi moves the weight to the learnable domain 1."""
    pools, _ = _pools()
    result = lm.doremi(pools, {0: 0.5, 1: 0.5}, 64, TINY, seed=3)
    assert sum(result.weights.values()) == pytest.approx(1.0)
    assert result.weights[1] > 0.6 > result.weights[0] >= 1e-3 / 2  # smoothed with uniform, never 0
    assert len(result.weight_curve) == TINY.steps // TINY.log_every and len(result.reference_curve) == 4
    assert result.tokens_trained == 2 * TINY.steps * TINY.batch_size * TINY.seq_len
    assert lm.doremi(pools, {0: 0.5, 1: 0.5}, 64, TINY, seed=3).weights == result.weights


def test_proxies_continue_from_a_shared_base_with_a_decaying_learning_rate():
    pools, target = _pools()
    base = lm.base_checkpoint(pools, {0: 0.5, 1: 0.5}, 64, TINY, seed=7)
    assert base == lm.base_checkpoint(pools, {0: 0.5, 1: 0.5}, 64, TINY, seed=7)  # reproducible
    from_base = lm.train(pools, {1: 1.0}, target, 64, TINY, seed=7, base=base)
    scratch = lm.train(pools, {1: 1.0}, target, 64, TINY, seed=7)
    # The base already knows both domains: its proxy starts far lower and ends at least as low.
    assert from_base.loss_curve[0] < scratch.loss_curve[0] - 0.5
    assert from_base.target_loss <= scratch.target_loss
    assert lm.train(pools, {1: 1.0}, target, 64, TINY, seed=7, base=base).score == from_base.score


def test_choice_scoring_picks_the_likelier_continuation():
    pools, _ = _pools()
    cfg = TINY.__class__(**{**TINY.__dict__, "steps": 80})
    ctx = np.arange(40, 48, dtype=np.int32)
    items = [(ctx, [np.array([48, 49], np.int32), np.array([3, 17], np.int32)], 0),
             (ctx, [np.array([5, 9], np.int32), np.array([48, 49], np.int32)], 1)]
    result = lm.train(pools, {1: 1.0}, np.zeros(0), 64, cfg, seed=3, choices=items)
    assert result.score == 1.0 and np.isnan(result.target_loss)
