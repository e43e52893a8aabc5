"""The search and export stages through Spark on real embeddings: what a target may and may not
share with the training data."""
import json
import sys
from pathlib import Path

import pyarrow.dataset as ds
from mlflow.tracking import MlflowClient
from pyspark.sql import functions as F

from climb_spark import curated
from climb_spark import report as run_report
from climb_spark.lakehouse.tables import TRAINING_MIX, Lakehouse
from climb_spark.stages.cluster import stage as cluster
from climb_spark.stages.export import stage as export
from climb_spark.stages.ingest.readers import doc_id
from climb_spark.stages.prune import stage as prune
from climb_spark.stages.search import stage as search
from tests.conftest import ROOT


def test_target_documents_in_the_corpus_are_left_out_of_every_pool_and_the_export_and_warned_about(
        spark, cfg, doc_features, tmp_path):
    """Issue 30: a `file` target of 40 documents that were also in the corpus drew the final mixture
    onto their super-cluster and all 40 into `training_mix`, with no warning."""
    cfg = cfg.replace({"cluster.k": 5, "prune.rule": "curator", "prune.merge_threshold": 1.0})
    cluster.run(spark, cfg)
    prune.run(spark, cfg)
    kept = curated.kept_documents(spark, cfg).orderBy("doc_id").collect()
    # Every other document of each super-cluster, so each keeps some to train on.
    leaked = [r for sc in {r["super_cluster_id"] for r in kept}
              for r in [d for d in kept if d["super_cluster_id"] == sc][::2]]
    n = len(leaked)
    assert n >= 10
    target = tmp_path / "target.jsonl"
    # Spaced and cased as another copy of the text would be: the same document to ingest's doc_id.
    target.write_text("".join(json.dumps({"text": "  " + r["text"].replace(" ", "   ") + "\n"}) + "\n" for r in leaked)
                      + "".join(json.dumps({"text": f"A target sentence of its own, number {i}."}) + "\n"
                                for i in range(10)))
    assert {doc_id("  " + r["text"].replace(" ", "   ")) for r in leaked} == {r["doc_id"] for r in leaked}
    cfg = cfg.replace({"target.kind": "file", "target.path": str(target), "proxy.kind": "command",
                       "proxy.command": [sys.executable, str(ROOT / "tests" / "proxy_command.py")],
                       "proxy.vocab_size": 320, "search.budget": [4], "export.method": "random",
                       "report.output": str(tmp_path / "report.html")})
    lines: list[str] = []
    found = search.run(spark, cfg, "random", log=lines.append)

    warning = (f"the target overlaps the training data: {n} of the target's {n + 10} documents are in the corpus "
               f"({n / (n + 10):.1%}); {n} of them were in kept clusters and are left out of every token pool and of "
               "the export, above target.max_overlap=0.01")
    assert found.warnings[0].startswith(warning)
    assert any(line.startswith(f"search {found.search_id}: WARNING {warning}") for line in lines)
    tags = MlflowClient(cfg.mlflow.tracking_uri).get_run(found.mlflow_run_id).data.tags
    assert tags["climb.warnings"].startswith(warning) and tags["climb.target_overlap"].startswith(f"{n} of the target's")

    pool_root = Path(cfg.lakehouse.root) / "token_pools"
    (pool,) = [p for p in pool_root.iterdir() if p.is_dir()]
    trained = set(ds.dataset(pool / "tokens" / "split=train", format="parquet").to_table(columns=["doc_id"])
                  .column("doc_id").to_pylist())
    assert len(trained) == len(kept) - n and not trained & {r["doc_id"] for r in leaked}

    done = export.run(spark, cfg)
    assert done.manifest["target"] == {"kind": "file", "documents": n + 10, "in_corpus": n, "removed": n}
    assert done.manifest["warnings"][0].startswith(warning) and f"WARNING {warning}" in done.summary()
    exported = spark.table(Lakehouse(cfg.lakehouse).name(TRAINING_MIX)).where(F.col("export_id") == done.export_id)
    assert exported.join(spark.createDataFrame([(r["doc_id"],) for r in leaked], "doc_id string"),
                         "doc_id").isEmpty()
    assert exported.select("doc_id").distinct().count() <= len(kept) - n

    page = run_report.render(spark, cfg)
    assert f"WARNING {run_report.e(warning)}" in page.html


def test_a_pool_is_rebuilt_with_the_same_tokens_and_scores_and_never_removed_under_staged_results(
        spark, cfg, doc_features, tmp_path):
    """Issue 30: `maintain` with a short retention removed a pool a killed search had staged results
    in, and the rebuilt pool gave the same proxy key another score. Staged results now keep their
    pool; a pool removed while nothing refers to it comes back with the same tokens (the digest its
    proxy keys carry) and the same proxy scores."""
    import time

    from climb_spark.lakehouse import maintain
    from climb_spark.lakehouse.tables import PROXY_RESULTS, TOKEN_POOLS
    from climb_spark.proxy import pools
    from climb_spark.proxy.runner import ProxyRunner, ProxySpec, proxy_key, read_staged, train_in_task
    from tests.conftest import SEARCH

    cfg = cfg.replace({"cluster.k": 5, "prune.rule": "curator", "prune.merge_threshold": 1.0,
                       **{k: int(v) for k, v in SEARCH.items() if k.startswith("proxy.")},
                       "maintain.retain_hours": 0, "maintain.allow_short_retention": True,
                       "maintain.tables": ["token_pools"]})
    cluster.run(spark, cfg)
    prune.run(spark, cfg)
    lake = Lakehouse(cfg.lakehouse)

    def tokens(pool):
        return sorted((r["doc_id"], tuple(r["tokens"])) for r in
                      ds.dataset(f"{pool.root}/tokens", format="parquet").to_table().to_pylist())

    first = pools.ensure(spark, cfg, log=lambda _: None)
    spec = ProxySpec("s1", "random", 1, 0, tuple([1 / len(first.prior)] * len(first.prior)), 42)
    before = train_in_task(spec, first, cfg.proxy, cfg.target, 1)
    held = tokens(first)
    newer = cfg.replace({"proxy.vocab_size": 330})
    newest = pools.ensure(spark, newer, log=lambda _: None)  # the newest pool, which maintain always keeps
    time.sleep(0.05)
    removed = maintain.run(spark, cfg, log=lambda _: None)
    # An earlier test's unreferenced pools in this shared lakehouse may go too; these two are the point.
    assert first.pool_id in removed.pools_removed and not Path(first.root).exists()
    assert newest.pool_id not in removed.pools_removed and Path(newest.root, "tokens").is_dir()

    built: list[str] = []
    again = pools.ensure(spark, cfg, log=built.append)
    assert built and built[0].startswith(f"token pools {first.pool_id}:")  # built again, not found
    assert tokens(again) == held and again.content == first.content
    assert proxy_key(again.key, cfg.proxy, 42, spec.weights) == proxy_key(first.key, cfg.proxy, 42, spec.weights)
    assert train_in_task(spec, again, cfg.proxy, cfg.target, 1)["score"] == before["score"]

    # A search killed after a proxy finished: its result staged under the pool, committed by no row.
    runner = ProxyRunner(spark, again, cfg.proxy, cfg.target, lake.ensure(spark, PROXY_RESULTS), None, 1,
                         lambda _: None)
    runner._record(spec, proxy_key(again.key, cfg.proxy, 42, spec.weights), before)
    pools.ensure(spark, cfg.replace({"proxy.vocab_size": 340}), log=lambda _: None)  # newer than it again
    time.sleep(0.05)
    kept = maintain.run(spark, cfg, log=lambda _: None)
    assert first.pool_id not in kept.pools_removed and Path(again.root, "tokens").is_dir()
    assert spark.table(lake.name(TOKEN_POOLS)).where(F.col("pool_id") == again.pool_id).count() > 0
    assert len(read_staged(runner.staging("s1"), runner.pool.s3)) == 1
    lines: list[str] = []
    resumed = ProxyRunner(spark, again, cfg.proxy, cfg.target, lake.ensure(spark, PROXY_RESULTS), None, 1,
                          lines.append).run([spec], "s1")
    assert lines == ["s1: reusing 1 finished proxies, training 0"] and resumed[0]["score"] == before["score"]
