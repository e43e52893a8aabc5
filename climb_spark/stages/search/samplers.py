"""Mixture samplers of CLIMB-Search as plain numpy functions over the prior p (token shares).

A mixture is a weight vector over the M super-clusters, summing to 1. Every function takes a
numpy Generator, so a search is reproducible from its seed.
"""
from __future__ import annotations

import numpy as np

from climb_spark.config import SearchConfig


def regmix_sample(prior: np.ndarray, n: int, rng: np.random.Generator, cfg: SearchConfig) -> np.ndarray:
    """n distinct mixtures from RegMix's sampler (iteration 1 of CLIMB, and all of RegMix).

    Dirichlet draws around p^temperature at log-spaced strengths (small ones give sparse
    mixtures), rejected where a weight exceeds cap x p, small weights zeroed, the rest rounded to
    multiples of min_weight; oversampled, de-duplicated, then n picked uniformly.
    """
    prior = _check_prior(prior)
    base = prior ** cfg.temperature
    base /= base.sum()
    strengths = np.logspace(np.log10(cfg.strength_min), np.log10(cfg.strength_max), cfg.strengths)
    cap = np.minimum(cfg.cap * prior, 1.0)
    wanted = n * cfg.oversample
    found: list[np.ndarray] = []
    for _ in range(1000):
        alpha = base[None, :] * rng.choice(strengths, size=(wanted, 1))
        draws = dirichlet_rows(alpha, rng)
        draws = draws[np.all(draws <= cap + 1e-12, axis=1)]
        found.extend(_round(draws, cfg.min_weight))
        if len(found) >= wanted:
            break
    if not found:
        raise RuntimeError("search: the sampler's cap rejected every draw; raise search.cap")
    unique = dedupe(np.array(found[:wanted]))
    if len(unique) < n:
        raise RuntimeError(f"search: only {len(unique)} distinct mixtures for a batch of {n}; "
                           "lower the budget or search.min_weight")
    return unique[rng.choice(len(unique), size=n, replace=False)]


def dirichlet_rows(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Row-wise alphas (numpy's dirichlet takes one vector); tiny alphas underflow to all-zero rows.
    g = rng.standard_gamma(alpha)
    total = g.sum(axis=1, keepdims=True)
    ok = total[:, 0] > 0
    return g[ok] / total[ok]


def _round(w: np.ndarray, step: float) -> list[np.ndarray]:
    out = []
    for row in w:
        row = np.where(row < step, 0.0, row)
        if row.sum() <= 0:
            continue
        row = np.round(row / row.sum() / step) * step
        if row.sum() <= 0:
            continue
        out.append(row / row.sum())
    return out


def dedupe(w: np.ndarray, tol: float = 1e-5) -> np.ndarray:
    """Rows in first-seen order, one per cell of a tol-sized grid: the sampler's rows sit on a
    2e-4 grid, so rows in one cell are the same mixture."""
    if len(w) == 0:
        return w
    _, first = np.unique(np.round(w / tol).astype(np.int64), axis=0, return_index=True)
    return w[np.sort(first)]


def dirichlet_candidates(prior: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """The recipe's later-iteration candidates: Dirichlet(p), no temperature, no rounding."""
    prior = _check_prior(prior)
    return dirichlet_rows(np.broadcast_to(prior, (n, len(prior))), rng)


def spread_candidates(prior: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Candidates that cover the whole simplex, not only where Dirichlet(p) puts them: with a sparse
    prior (a few domains hold most tokens) Dirichlet(p) draws sit near its corners. A third each:
    Dirichlet(p); Dirichlet(s * p^0.5) at log-uniform strengths s in [1, 5M] (from sparse to near
    the tempered prior); Dirichlet(a) at log-uniform a in [0.2, 5] (from sparse to near uniform)."""
    prior = _check_prior(prior)
    m = len(prior)
    base = np.sqrt(prior) / np.sqrt(prior).sum()
    third = n // 3
    strengths = np.exp(rng.uniform(0.0, np.log(5 * m), (third, 1)))
    flat = np.exp(rng.uniform(np.log(0.2), np.log(5.0), (n - 2 * third, 1)))
    return np.vstack([dirichlet_candidates(prior, third, rng), dirichlet_rows(strengths * base, rng),
                      dirichlet_rows(np.broadcast_to(flat, (len(flat), m)), rng)])


def top_indices(predicted: np.ndarray, n: int, top_min: int) -> np.ndarray:
    """The recipe's next-batch pool: the indices of the top max(n^2, top_min) predicted, from which
    n are drawn uniformly without replacement."""
    return np.argsort(-np.where(np.isnan(predicted), -np.inf, predicted), kind="stable")[: max(n * n, top_min, n)]


def cap_rows(w: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Each row moved into {w <= upper} on the simplex: weight above a bound goes to the row's
    other domains in proportion to their weight (to the room they have left where those are full),
    so a row that is already feasible is unchanged and the support grows only when it must."""
    w = np.array(w, dtype=np.float64, copy=True)
    upper = np.asarray(upper, dtype=np.float64)
    for _ in range(len(upper) + 1):
        over = np.maximum(w - upper, 0.0).sum(axis=1)
        if over.max(initial=0.0) <= 1e-12:
            break
        w = np.minimum(w, upper)
        free = np.where(w < upper, w, 0.0)
        room = upper - w
        total, total_room = free.sum(axis=1, keepdims=True), room.sum(axis=1, keepdims=True)
        share = np.where(total > 1e-12, free / np.maximum(total, 1e-300), room / np.maximum(total_room, 1e-300))
        w = w + over[:, None] * share
    return w


def uniform_random(m: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Random best-of-N baseline: mixtures uniform over the simplex."""
    return rng.dirichlet(np.ones(m), size=n)


def _check_prior(prior: np.ndarray) -> np.ndarray:
    prior = np.asarray(prior, dtype=np.float64)
    if prior.ndim != 1 or len(prior) == 0 or np.any(prior < 0) or prior.sum() <= 0:
        raise ValueError(f"prior must be a non-empty vector of non-negative token shares, got {prior!r}")
    return prior / prior.sum()
