"""Paired margins between methods and the proxy-to-target agreement, without Spark."""
import numpy as np
import pytest

from climb_spark.stages.search import significance


def test_a_paired_interval_cancels_the_seeds_luck_that_both_methods_share():
    # Seed luck of +-0.5 shared by both, a steady 0.05 lead: unpaired, the lead drowns in the
    # seeds' spread; paired, it is clear.
    luck = np.array([0.5, -0.4, 0.1, -0.2, 0.3])
    a, b = -6.0 + luck + 0.05, -6.0 + luck + np.array([0.0, 0.01, -0.01, 0.0, 0.005])
    m = significance.paired_margin("climb", a, "random", b, 0.95)
    assert m.margin == pytest.approx(0.049) and m.low > 0 and m.significant and m.p_value < 0.01
    assert m.describe(0.95).startswith("+0.0490 against random, 95% paired interval [+0.")
    assert m.describe(0.95).endswith("over 5 seeds: significant")


def test_a_lead_smaller_than_the_seeds_disagreement_is_not_significant():
    a, b = np.array([-6.30, -6.20, -6.35]), np.array([-6.32, -6.25, -6.31])
    m = significance.paired_margin("climb", a, "random", b, 0.95)
    assert m.low < 0 < m.high and not m.significant
    assert "not significant" in m.describe(0.95)
    # One seed: a margin, but no interval, and never called significant.
    one = significance.paired_margin("climb", a[:1], "random", b[:1], 0.95)
    assert one.low is None and not one.significant and "one seed: no interval" in one.describe(0.95)
    # The same mixture twice: a zero margin, not significant.
    assert not significance.paired_margin("climb", a, "climb-paper", a.copy(), 0.95).significant


def test_margins_measure_everyone_against_the_winner_and_the_winner_against_the_runner_up():
    scores = {"uniform": np.array([-6.7, -6.6, -6.7]), "climb": np.array([-6.3, -6.2, -6.3]),
              "random": np.array([-6.4, -6.3, -6.35])}
    found = significance.margins(scores, 0.95)
    assert found["climb"].other == "random" and found["climb"].margin == pytest.approx(0.0833, abs=1e-3)
    assert found["random"].other == found["uniform"].other == "climb"
    assert found["uniform"].margin < found["random"].margin < 0
    text = significance.winner_statement("proxy", scores, found, 0.95)
    assert text.startswith("proxy scale: climb first, +0.0833 against random, 95% paired interval")
    assert text.endswith("over 3 seeds: significant; significantly better than every other method")
    scores["random"] = np.array([-6.25, -6.3, -6.2])  # now the lead over random is noise
    text = significance.winner_statement("proxy", scores, significance.margins(scores, 0.95), 0.95)
    assert ": not significant; significantly better than uniform" in text


def test_rank_agreement_between_scales():
    proxy = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    assert significance.rank_agreement(proxy, {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}) == pytest.approx(1.0)
    assert significance.rank_agreement(proxy, {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}) == pytest.approx(-1.0)
    assert significance.rank_agreement({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0}) is None  # too few
