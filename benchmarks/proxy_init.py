"""Which proxy ranks mixtures better per CPU second: from scratch, or continued from a shared base?

On a finished lakehouse's token pools (the README's `run` makes one), each of N first-round
mixtures is trained with S seeds (data order; a from-scratch proxy's initial weights too) by
both kinds of proxy. Per kind it prints:
- spread: the std across mixtures of the seed-mean target loss (what a search can see),
- noise: the mean std across seeds of one mixture (what it must see through),
- signal/noise = spread / noise, and the Spearman of each seed's ranking with the seed-mean one,
- CPU seconds per proxy, the base's cost once per pool spread over a 14-proxy search.

    .venv/bin/python benchmarks/proxy_init.py --conf conf/local.yaml
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from climb_spark import config  # noqa: E402
from climb_spark.proxy import lm  # noqa: E402
from climb_spark.proxy import pools as token_pools  # noqa: E402
from climb_spark.stages.search import predictor, samplers  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conf", default="conf/local.yaml")
    ap.add_argument("--mixtures", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--search-proxies", type=int, default=14, help="proxies the base's cost is spread over")
    a = ap.parse_args()
    cfg = config.load([a.conf])
    roots = sorted(glob.glob(f"{cfg.lakehouse.root}/token_pools/*/tokens"), key=lambda p: Path(p).stat().st_mtime)
    if not roots:
        sys.exit(f"no token pools under {cfg.lakehouse.root}/token_pools: run `climb-spark run` first")
    root = roots[-1]
    ids = sorted(int(p.rsplit("=", 1)[1]) for p in glob.glob(f"{root}/split=train/super_cluster_id=*"))
    proxy = cfg.proxy
    budget = proxy.steps * proxy.batch_size * (proxy.seq_len + 1)
    pools = {i: token_pools.read_tokens(f"{root}/split=train/super_cluster_id={i}", budget, cfg.s3) for i in ids}
    target = token_pools.read_tokens(f"{root}/split=target/super_cluster_id={token_pools.TARGET}", 0, cfg.s3)
    sizes = np.array([len(token_pools.read_tokens(f"{root}/split=train/super_cluster_id={i}", 0, cfg.s3)) for i in ids])
    prior = sizes / sizes.sum()
    vocab = int(max(max(int(p.max()) for p in pools.values()), int(target.max()))) + 1
    vocab = max(vocab, proxy.vocab_size)
    mixes = samplers.regmix_sample(prior, a.mixtures, np.random.default_rng(0), cfg.search)
    started = time.process_time()
    base = lm.base_checkpoint(pools, dict(zip(ids, prior)), vocab, proxy, proxy.seed)
    base_cpu = time.process_time() - started
    print(f"pool {root}: {len(ids)} super-clusters, {a.mixtures} mixtures x {a.seeds} seeds, "
          f"{proxy.steps} steps, base {proxy.base_steps or proxy.steps} steps in {base_cpu:.1f} CPU s")
    for kind in ("scratch", "base"):
        losses = np.zeros((a.mixtures, a.seeds))
        started = time.process_time()
        for i, w in enumerate(mixes):
            weights = {sc: float(v) for sc, v in zip(ids, w) if v > 0}
            for s in range(a.seeds):
                r = lm.train(pools, weights, target, vocab, dataclasses.replace(proxy, init=kind), 100 + s,
                             base=base if kind == "base" else None)
                losses[i, s] = r.target_loss
        cpu = (time.process_time() - started) / losses.size
        if kind == "base":
            cpu += base_cpu / a.search_proxies
        mean = losses.mean(axis=1)
        spread, noise = mean.std(ddof=1), losses.std(axis=1, ddof=1).mean()
        agree = np.mean([predictor.spearman(losses[:, s], mean) for s in range(a.seeds)])
        print(f"  {kind:8s} target loss {losses.mean():.3f}  spread {spread:.5f}  noise {noise:.5f}  "
              f"signal/noise {spread / noise:5.2f}  seed-vs-mean Spearman {agree:.2f}  "
              f"{cpu:.2f} CPU s/proxy  signal/noise per CPU s {spread / noise / cpu:.3f}")


if __name__ == "__main__":
    main()
