"""A command proxy: the mixture goes in, the score is read back, failures are explained."""
import sys
import time

import numpy as np
import pandas as pd
import pytest

from climb_spark.proxy.pools import Pool
from climb_spark.proxy.runner import ProxySpec, run_command
from tests.conftest import ROOT

POOL = Pool("p1", "/nowhere", 64, (0, 1, 2), (0.5, 0.3, 0.2), "c1", "holdout")


SPEC = ProxySpec("s1", "climb", 1, 0, (0.2, 0.0, 0.8), 42)


def test_command_proxy_gets_the_mixture_and_its_score_is_read(tmp_path):
    script = ROOT / "tests" / "proxy_command.py"
    out = run_command([sys.executable, str(script), "--file", "{mixture_json}"], SPEC, POOL, {0: 0.2, 2: 0.8})
    assert out["score"] == pytest.approx(-(0.2 ** 2 + 0.2 ** 2))  # optimum: all on super-cluster 2
    assert out["loss_curve"] and out["target_loss"] == pytest.approx(-out["score"])
    bad = tmp_path / "bad.py"
    bad.write_text("import sys; print('no score here'); sys.exit(0)")
    out = run_command([sys.executable, str(bad)], SPEC, POOL, {0: 1.0})
    assert "score" not in out and "did not print a score as its last line (got 'no score here')" in out["failed"]
    bad.write_text("import sys; sys.stderr.write('trainer crashed'); sys.exit(3)")
    out = run_command([sys.executable, str(bad)], SPEC, POOL, {0: 1.0})
    assert out["failed"].endswith("exited 3") and out["output"] == "trainer crashed"
    for garbage in ("nan", "NaN", "inf", '{"score": NaN}', '{"score": "-Infinity"}', "1e999"):
        bad.write_text(f"print({garbage!r})")
        out = run_command([sys.executable, str(bad)], SPEC, POOL, {0: 1.0})
        assert "score" not in out and "is not a finite number" in out["failed"], garbage
    plain = tmp_path / "plain.py"
    plain.write_text("import json, sys; m = json.load(sys.stdin); print(m['weights']['2'])")
    assert run_command([sys.executable, str(plain)], SPEC, POOL, {0: 0.2, 2: 0.8})["score"] == 0.8


def test_a_batch_of_proxies_is_one_proxy_results_commit_and_staged_results_survive_a_kill(spark, cfg, tmp_path):
    """One Delta version per batch (a search round), not one per proxy; a proxy that finished before
    the driver died is staged, committed by the next run and not trained again."""
    from climb_spark.config import ProxyConfig, TargetConfig
    from climb_spark.lakehouse.delta import table_version
    from climb_spark.lakehouse.tables import PROXY_RESULTS, Lakehouse
    from climb_spark.proxy.runner import ProxyRunner, proxy_key, read_staged

    table = Lakehouse(cfg.lakehouse).ensure(spark, PROXY_RESULTS)
    pool = Pool("p1", str(tmp_path / "pool"), 64, (0, 1, 2), (0.5, 0.3, 0.2), "c1", "holdout")
    proxy = ProxyConfig(kind="command", command=[sys.executable, str(ROOT / "tests" / "proxy_command.py")])
    lines: list[str] = []
    runner = ProxyRunner(spark, pool, proxy, TargetConfig(), table, None, 2, lines.append)
    mixes = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.5, 0.5, 0.0), (0.0, 0.5, 0.5), (0.2, 0.3, 0.5)]
    specs = [ProxySpec("s1", "random", 1, i, w, 42) for i, w in enumerate(mixes)]
    created = table_version(spark, table)

    first = runner.run(specs[:3], "round 1")
    assert table_version(spark, table) == created + 1  # three proxies, one commit
    assert [r["score"] for r in first] == pytest.approx([-2.0, -2.0, 0.0])
    assert sum(" done, score " in line for line in lines) == 3
    assert read_staged(runner.staging("s1"), pool.s3) == []  # committed, then unstaged

    # The driver dies after two proxies of the next round finished: staged, not committed yet.
    for spec in specs[3:5]:
        runner._record(spec, proxy_key(pool.key, proxy, spec.seed, spec.weights),
                       run_command(proxy.command, spec, pool, {i: w for i, w in enumerate(spec.weights) if w > 0}))
    assert table_version(spark, table) == created + 1 and len(read_staged(runner.staging("s1"), pool.s3)) == 2

    lines.clear()
    again = ProxyRunner(spark, pool, proxy, TargetConfig(), table, None, 2, lines.append)
    rows = again.run(specs, "round 2")
    assert lines[0] == "round 2: reusing 5 finished proxies, training 1"
    # The staged pair in one commit, the new proxy in another: not one version per proxy.
    assert table_version(spark, table) == created + 3
    assert [r["proxy_index"] for r in rows] == list(range(6)) and read_staged(runner.staging("s1"), pool.s3) == []
    assert spark.table(table).where("search_id = 's1'").count() == 6
    assert spark.table(table).select("proxy_key").distinct().count() == 6


FLAKY = """
import json, subprocess, sys, time
mix = json.load(sys.stdin)
w = {int(k): v for k, v in mix["weights"].items()}
if w.get(1, 0) > 0.9:
    print("step 100 loss nan")
    print("NaN")
elif w.get(2, 0) > 0.9:
    child = subprocess.Popen(["sleep", "300"])
    open(sys.argv[1], "w").write(str(child.pid))
    print("training...", flush=True)
    time.sleep(300)
else:
    print(-sum((v - 0.5) ** 2 for v in w.values()))
"""


def test_a_proxy_that_gives_no_finite_score_is_a_failure_never_a_result_and_a_fixed_trainer_resumes(
        spark, cfg, tmp_path):
    """Issue 29: a command that printed NaN ended the search in a traceback, and the NaN, kept as a
    result, was reused after the command was fixed. Issue 30: a command that never returns hung the
    search. Each is now a failed proxy (a line, a FAILED MLflow run, no row, nothing staged), the
    search stops naming the mixture and the trainer's last output, the hung one is killed with its
    child, and the same runner with the fixed trainer trains only what is missing."""
    import os

    from mlflow.tracking import MlflowClient

    from climb_spark.config import ProxyConfig, TargetConfig
    from climb_spark.errors import ProxyError
    from climb_spark.lakehouse.tables import PROXY_RESULTS, Lakehouse
    from climb_spark.proxy.runner import ProxyRunner, proxy_key, read_staged
    from climb_spark.tracking import SearchRun

    trainer = tmp_path / "trainer.py"
    trainer.write_text(FLAKY)
    table = Lakehouse(cfg.lakehouse).ensure(spark, PROXY_RESULTS)
    pool = Pool("p2", str(tmp_path / "pool"), 64, (0, 1, 2), (0.5, 0.3, 0.2), "c1", "holdout")
    proxy = ProxyConfig(kind="command", command=[sys.executable, str(trainer), str(tmp_path / "child.pid")],
                        timeout_s=3)
    tracker = SearchRun(cfg.mlflow, "s-flaky", "search-random", {"method": "random"})
    lines: list[str] = []
    mixes = [(1.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
    specs = [ProxySpec("s-flaky", "random", 1, i, w, 42) for i, w in enumerate(mixes)]
    keys = [proxy_key(pool.key, proxy, 42, w) for w in mixes]
    # A NaN row as a version before these checks committed it: never reused, replaced once trained.
    spark.createDataFrame([{
        "search_id": "s-flaky", "proxy_key": keys[1], "method": "random", "iteration": 1, "proxy_index": 1,
        "weights": list(mixes[1]), "seed": 42, "score": float("nan"), "target_loss": None, "loss_curve": [],
        "tokens_trained": 0, "seconds": 1.0, "mlflow_run_id": None, "pool_id": "p2",
        "finished_at": pd.Timestamp.now(tz="UTC").to_pydatetime()}], PROXY_RESULTS.schema).writeTo(table).append()

    runner = ProxyRunner(spark, pool, proxy, TargetConfig(), table, tracker, 1, lines.append)
    with pytest.raises(ProxyError) as failed:
        runner.run(specs[:3], "search s-flaky iteration 1")
    message = str(failed.value)
    assert "\n" not in message and message.startswith(
        "search s-flaky iteration 1: proxy 3 (mixture 1:1.000) gave no score: proxy command "
        f"{sys.executable} printed 'NaN': its score is not a finite number; its last output: step 100 loss nan | NaN;")
    assert "1 failed, 2 of 3 finished and kept" in message
    assert "search s-flaky iteration 1: proxy 3 FAILED: " in "\n".join(lines)
    rows = {r["proxy_key"]: r["score"] for r in spark.table(table).where("search_id = 's-flaky'").collect()}
    # The NaN row of proxy 2 replaced by its training, not reused.
    assert rows == pytest.approx({keys[0]: -0.25, keys[1]: 0.0})
    assert read_staged(runner.staging("s-flaky"), runner.pool.s3) == []
    client = MlflowClient(cfg.mlflow.tracking_uri)
    (bad,) = client.search_runs([tracker.experiment_id], "tags.`climb.failed_proxy_key` = '" + keys[2] + "'")
    assert bad.info.status == "FAILED" and "is not a finite number" in bad.data.tags["climb.error"]

    # A trainer that never returns, with a child of its own: both gone after proxy.timeout_s.
    started = time.monotonic()
    with pytest.raises(ProxyError, match=r"proxy 4 \(mixture 2:1.000\) gave no score: proxy command .* ran past "
                                         r"proxy.timeout_s=3s and was killed with its children; its last output: "
                                         r"training\.\.\."):
        runner.run(specs[3:], "search s-flaky iteration 2")
    assert time.monotonic() - started < 60
    child = int((tmp_path / "child.pid").read_text())
    time.sleep(0.5)
    assert not os.path.exists(f"/proc/{child}") or "zombie" in open(f"/proc/{child}/status").read().lower()

    # The trainer fixed, the same proxies again: the finished one reused, the rest trained.
    trainer.write_text("import json, sys; w = json.load(sys.stdin)['weights']; "
                       "print(-sum((v - 0.5) ** 2 for v in w.values()))")
    lines.clear()
    rows = ProxyRunner(spark, pool, proxy, TargetConfig(), table, tracker, 2, lines.append).run(specs, "again")
    assert lines[0] == "again: reusing 2 finished proxies, training 2"
    assert [r["score"] for r in rows] == pytest.approx([-0.25, 0.0, -0.25, -0.25])
    final = spark.table(table).where("search_id = 's-flaky'").collect()
    assert sorted(r["proxy_key"] for r in final) == sorted(keys) and all(np.isfinite(r["score"]) for r in final)
