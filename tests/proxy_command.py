"""A user's external proxy trainer, as `proxy.kind=command` runs it: the mixture arrives as JSON
(stdin, or the file given for {mixture_json}); the score is the last line printed. This one
scores how close the mixture is to a known optimum, so a search's progress can be checked."""
import argparse
import json
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--file")
ap.add_argument("--optimum", default="", help="sc:weight,...; default: all weight on the last super-cluster")
ap.add_argument("--sleep", type=float, default=0.0)
args = ap.parse_args()
mix = json.load(open(args.file)) if args.file else json.load(sys.stdin)
ids = mix["super_clusters"]
weights = [float(mix["weights"].get(str(i), 0.0)) for i in ids]
optimum = dict.fromkeys(ids, 0.0)
if args.optimum:
    optimum.update({int(k): float(v) for k, v in (p.split(":") for p in args.optimum.split(","))})
else:
    optimum[ids[-1]] = 1.0
loss = sum((w - optimum[i]) ** 2 for i, w in zip(ids, weights))
time.sleep(args.sleep)
print(f"trained on {len(ids)} pools")
print(json.dumps({"score": -loss, "target_loss": loss, "loss_curve": [2 * loss, 1.5 * loss, loss]}))
