"""How sure a comparison is: paired intervals on the margin between methods, and whether the
proxy's ranking of mixtures holds for a larger model. Plain numpy/scipy, no Spark.

Every method's mixture is retrained with the same seeds, so the margin between two methods is
taken seed by seed (a paired comparison): the seed's own luck, shared by both, cancels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Margin:
    method: str
    other: str  # the method it is measured against: the winner, or for the winner the runner-up
    margin: float  # mean over seeds of score(method) - score(other)
    low: float | None  # the paired t interval at `confidence`; None with one seed
    high: float | None
    p_value: float | None
    n_seeds: int

    @property
    def significant(self) -> bool:
        return self.low is not None and (self.low > 0 or self.high < 0)

    def describe(self, confidence: float) -> str:
        if self.low is None:
            return f"{self.margin:+.4f} against {self.other} (one seed: no interval)"
        verdict = "significant" if self.significant else "not significant"
        return (f"{self.margin:+.4f} against {self.other}, {confidence:.0%} paired interval "
                f"[{self.low:+.4f}, {self.high:+.4f}] over {self.n_seeds} seeds: {verdict}")


def paired_margin(method: str, a: np.ndarray, other: str, b: np.ndarray, confidence: float) -> Margin:
    """score(a) - score(b) seed by seed, with a Student t interval on its mean."""
    from scipy import stats

    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = len(d)
    if n < 2:
        return Margin(method, other, float(d.mean()), None, None, None, n)
    sd = float(d.std(ddof=1))
    if sd == 0.0:  # the same difference on every seed (identical mixtures: 0)
        return Margin(method, other, float(d.mean()), float(d.mean()), float(d.mean()),
                      1.0 if d.mean() == 0 else 0.0, n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / np.sqrt(n)
    p = float(2 * stats.t.sf(abs(d.mean()) / (sd / np.sqrt(n)), n - 1))
    return Margin(method, other, float(d.mean()), float(d.mean() - half), float(d.mean() + half), p, n)


def margins(scores: dict[str, np.ndarray], confidence: float) -> dict[str, Margin]:
    """Each method against the best one by mean score; the best one against the runner-up (so
    its margin is the lead it has, with its interval)."""
    order = sorted(scores, key=lambda m: -float(np.mean(scores[m])))
    best = order[0]
    out = {m: paired_margin(m, scores[m], best, scores[best], confidence) for m in order[1:]}
    if len(order) > 1:
        out[best] = paired_margin(best, scores[best], order[1], scores[order[1]], confidence)
    return out


def winner_statement(scale: str, scores: dict[str, np.ndarray], found: dict[str, Margin], confidence: float) -> str:
    """One sentence: who is first at this scale, by how much over each other method's best
    rival, and whether that lead is significant."""
    order = sorted(scores, key=lambda m: -float(np.mean(scores[m])))
    if len(order) < 2:
        return f"{scale} scale: only {order[0]} was compared"
    lead = found[order[0]]
    beaten = [m for m in order[1:] if found[m].significant]
    tail = (f"; significantly better than {', '.join(beaten)}" if beaten and len(beaten) < len(order) - 1
            else "; significantly better than every other method" if beaten else "")
    return f"{scale} scale: {order[0]} first, {lead.describe(confidence)}{tail}"


def rank_agreement(proxy: dict[str, float], target: dict[str, float]) -> float | None:
    """Spearman correlation of the methods' mean scores at proxy and at target scale (the caller
    passes one method per distinct mixture). None below 3 mixtures or for a constant side."""
    from climb_spark.stages.search.predictor import spearman

    methods = [m for m in proxy if m in target]
    return spearman(np.array([proxy[m] for m in methods]), np.array([target[m] for m in methods]))
