"""Search strategies on response surfaces whose optimum is known.

Each repetition draws M super-clusters, a prior and a surface of one family, then runs every
method at the same proxy budget with noisy evaluations of the surface, and scores each final
mixture by the surface's true loss. Lower loss is better; the strategy maximizes -loss.

Families (`--surfaces`):
- law: the data-mixing law of Ye et al. (2024) per domain, L_i(r) = c_i + k_i exp(t_i . r), the
  target a Dirichlet(0.3) combination of the M domains; prior Dirichlet(1), M = 6-20.
- rugged: law plus 20 Gaussian bumps, so the surface has local optima.
- mix: what the paper optimizes, an average of 2-4 validation sets. M = 12-30 domains in 3-6
  related groups (strong transfer inside a group), a realistic sparse prior (a few domains hold
  most tokens), each validation set's own data-mixing law; the optimum lies inside the simplex.
- plateau: as mix, but each validation set follows a saturating power law in the data that
  transfers to it, L_j = c_j + k_j (eps_j + a_j . r)^-alpha_j, so the loss is flat near the optimum.
- broad: 2-4 validation sets, each drawn from many domains (Dirichlet(0.5) shares), every domain's
  loss a saturating power law as in plateau: the optimum is dense, and a sparse mixture starves
  part of the target.
- repeat: held out (not used while the search was designed): a data-constrained target. Each
  domain holds a fixed number of unique tokens; a mixture that asks for more repeats them, and
  repeated tokens are worth less (Muennighoff et al. 2023, R* = 15); validation sets as in mix.
Proxy noise: Gaussian, `--noise` times the spread (std) of the true loss over first-round
mixtures; 0.25 matches the proxies of conf/local.yaml (seed-to-seed std ~0.04 of target loss
against a spread of ~0.15-0.2 between mixtures).

    .venv/bin/python benchmarks/search.py --reps 20
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from climb_spark.config import SearchConfig  # noqa: E402
from climb_spark.stages.search import strategy  # noqa: E402
from climb_spark.stages.search import samplers  # noqa: E402

METHODS = ("climb", "climb-paper", "regmix", "random", "token-prop", "uniform")
BUDGETS = {"8/4/2": [8, 4, 2], "16/8/4": [16, 8, 4], "64/32/16": [64, 32, 16]}
FAMILIES = ("law", "rugged", "mix", "plateau", "broad", "repeat")


def make_problem(kind: str, rng: np.random.Generator):
    """(prior, loss function over (n, M) mixtures) of one repetition."""
    if kind in ("law", "rugged"):
        m = int(rng.integers(6, 21))
        prior = rng.dirichlet(np.ones(m))
        return prior, _classic(kind, m, rng)
    m = int(rng.integers(12, 31))
    prior = sparse_prior(m, rng)
    group = rng.integers(0, int(rng.integers(3, 7)), m)
    same = group[:, None] == group[None, :]
    targets = rng.choice(m, size=int(rng.integers(2, 5)), replace=False)
    share = rng.dirichlet(np.full(len(targets), 4.0))
    if kind == "mix":
        t = np.where(same, -rng.uniform(0.5, 2.0, (m, m)), rng.normal(0.0, 0.15, (m, m)))
        t[np.diag_indices(m)] = -rng.uniform(1.5, 4.0, m)
        c, k = rng.uniform(2.0, 4.0, m), rng.uniform(0.5, 2.0, m)

        def mix(r):
            r = np.atleast_2d(r)
            return (c[targets] + k[targets] * np.exp(r @ t[targets].T)) @ share

        return prior, mix
    a = np.where(same, rng.uniform(0.2, 0.8, (m, m)), rng.uniform(0.0, 0.05, (m, m)))
    a[np.diag_indices(m)] = 1.0
    c, k = rng.uniform(2.0, 4.0, m), rng.uniform(0.3, 1.0, m)
    alpha, eps = rng.uniform(0.3, 0.7, m), rng.uniform(0.02, 0.1, m)
    if kind == "plateau":
        def plateau(r):
            e = np.atleast_2d(r) @ a[targets].T
            return (c[targets] + k[targets] * (eps[targets] + e) ** -alpha[targets]) @ share

        return prior, plateau
    if kind == "broad":
        # Each validation set is itself drawn from many domains (a web or general-knowledge set), and
        # each domain's own loss saturates: the optimum is dense, a sparse mixture starves some of it.
        q = rng.dirichlet(np.full(m, 0.5), len(targets))
        a = np.where(same, rng.uniform(0.1, 0.4, (m, m)), 0.0)
        a[np.diag_indices(m)] = 1.0

        def broad(r):
            per_domain = c + k * (eps + np.atleast_2d(r) @ a.T) ** -alpha
            return per_domain @ q.T @ share

        return prior, broad
    if kind == "repeat":
        # Unique tokens per domain in units of the training budget: the whole corpus is 1-3 budgets.
        unique = prior * rng.uniform(1.0, 3.0)
        r_star = 15.0

        def repeat(r):
            r = np.atleast_2d(r)
            epochs = r / unique
            # Effective data of a domain (Muennighoff et al.): the first epoch counts whole, each
            # further one less, saturating at R* repetitions' worth.
            extra = np.maximum(epochs - 1.0, 0.0)
            effective = np.minimum(epochs, 1.0) + r_star * (1.0 - np.exp(-extra / r_star)) * (extra > 0)
            e = (effective * unique) @ a[targets].T
            return (c[targets] + k[targets] * (eps[targets] + e) ** -alpha[targets]) @ share

        return prior, repeat
    raise ValueError(f"unknown surface family {kind!r}")


def sparse_prior(m: int, rng: np.random.Generator) -> np.ndarray:
    """Token shares as real corpora have them: log-normal sizes, so the 3-4 largest of 12-30 domains
    hold most tokens and the smallest hold well under 1%."""
    sizes = np.exp(rng.normal(0.0, 1.5, m))
    return sizes / sizes.sum()


def _classic(kind: str, m: int, rng: np.random.Generator):
    s = rng.dirichlet(np.full(m, 0.3))
    k = rng.uniform(0.5, 2.0, m)
    t = rng.normal(0.0, 0.3, (m, m))
    t[np.diag_indices(m)] = -rng.uniform(1.0, 4.0, m)
    c = rng.uniform(2.0, 4.0)

    def law(r: np.ndarray) -> np.ndarray:
        return c + (np.exp(np.atleast_2d(r) @ t.T) * k) @ s

    if kind == "law":
        return law
    centres = rng.dirichlet(np.full(m, 0.5), 20)
    probe = law(rng.dirichlet(np.ones(m), 2000))
    height = rng.uniform(-1.0, 1.0, 20) * probe.std()

    def rugged(r: np.ndarray) -> np.ndarray:
        r = np.atleast_2d(r)
        d2 = ((r[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        return law(r) + np.exp(-d2 / (2 * 0.15 ** 2)) @ height

    return rugged


def optimum(f, m: int, rng: np.random.Generator) -> float:
    """The surface's minimum over the simplex: the best of dense random draws, polished by
    L-BFGS in softmax coordinates from the 8 best."""
    from scipy.optimize import minimize

    draws = np.vstack([rng.dirichlet(np.full(m, a), 20000) for a in (0.1, 0.3, 1.0, 3.0)] + [np.eye(m)])
    values = f(draws)
    best = float(values.min())
    for start in draws[np.argsort(values)[:8]]:
        z0 = np.log(np.maximum(start, 1e-9))
        res = minimize(lambda z: float(f(np.exp(z - z.max()) / np.exp(z - z.max()).sum())[0]), z0, method="L-BFGS-B")
        best = min(best, float(res.fun))
    return best


def repetition(args) -> dict:
    surface, budget_name, rep, noise, candidates, seed, methods, overrides = args
    # law and rugged keep the streams of their first measurements (BENCHMARKS.md).
    key = [seed, rep, len(surface), len(budget_name)] + ([] if surface in ("law", "rugged") else [FAMILIES.index(surface)])
    rng = np.random.default_rng(key)
    prior, f = make_problem(surface, rng)
    m = len(prior)
    cfg = SearchConfig(budget=BUDGETS[budget_name], candidates=candidates, seed=int(rng.integers(2**31)),
                       **overrides)
    spread = f(samplers.regmix_sample(prior, 256, np.random.default_rng(0), cfg)).std()
    best = optimum(f, m, rng)
    out = {"surface": surface, "budget": budget_name, "rep": rep, "m": m, "optimum": best, "spread": spread,
           "loss": {}, "seconds": {}, "proxies": {}}
    for method in methods:
        noise_rng = np.random.default_rng([seed, rep, 7])  # the same noise stream for every method

        def evaluate(w, iteration):
            return -(f(w) + noise_rng.normal(0.0, noise * spread, len(w)))

        started = time.perf_counter()
        result = strategy.run(prior, evaluate, cfg, method=method)
        out["seconds"][method] = time.perf_counter() - started
        out["loss"][method] = float(f(result.weights)[0])
        out["proxies"][method] = len(result.history)
        if method == "climb":
            out["climb_observed"] = result.chosen_from == "observed"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--noise", type=float, default=0.25)
    ap.add_argument("--candidates", type=int, default=20000,
                    help="predictor candidates per step (the recipe's 100k is ~5x slower, same ranking)")
    ap.add_argument("--surfaces", default=",".join(FAMILIES))
    ap.add_argument("--budgets", default=",".join(BUDGETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a search.* setting for every method (climb-paper keeps the recipe's), e.g. final=argmax")
    a = ap.parse_args()
    methods = a.methods.split(",")
    overrides = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in a.set)}
    jobs = [(s, b, r, a.noise, a.candidates, a.seed, methods, overrides) for s in a.surfaces.split(",")
            for b in a.budgets.split(",") for r in range(a.reps)]
    started = time.perf_counter()
    with ProcessPoolExecutor(a.workers) as pool:
        results = list(pool.map(repetition, jobs))
    print(f"{len(jobs)} repetitions, noise {a.noise} x spread, {a.candidates} candidates, "
          f"{time.perf_counter() - started:.0f}s\n")
    print(f"{'surface':8s} {'budget':9s} {'method':12s} {'true loss':>10s} {'regret':>16s} {'/spread':>7s} "
          f"{'climb wins':>11s} {'proxies':>8s} {'s/search':>9s}")
    for s in a.surfaces.split(","):
        for b in a.budgets.split(","):
            group = [r for r in results if r["surface"] == s and r["budget"] == b]
            climb = np.array([r["loss"]["climb"] for r in group]) if "climb" in methods else None
            spread = np.array([r["spread"] for r in group])
            for method in methods:
                loss = np.array([r["loss"][method] for r in group])
                regret = loss - np.array([r["optimum"] for r in group])
                wins = "" if method == "climb" or climb is None else \
                    f"{np.mean((climb < loss) + 0.5 * (climb == loss)):.0%}"
                secs = np.mean([r["seconds"][method] for r in group])
                proxies = np.mean([r["proxies"][method] for r in group])
                print(f"{s:8s} {b:9s} {method:12s} {loss.mean():10.4f} {regret.mean():8.4f} +- "
                      f"{regret.std(ddof=1) / np.sqrt(len(regret)):.4f} {np.mean(regret / spread):7.2f} "
                      f"{wins:>11s} {proxies:8.1f} {secs:9.2f}")
            if climb is not None:
                fell_back = np.mean([r["climb_observed"] for r in group])
                print(f"{'':8s} {b:9s} climb returned an observed mixture in {fell_back:.0%} of repetitions")


if __name__ == "__main__":
    main()
