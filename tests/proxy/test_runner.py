"""A command proxy: the mixture goes in, the score is read back, failures are explained."""
import sys

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
    with pytest.raises(RuntimeError, match="did not print a score"):
        run_command([sys.executable, str(bad)], SPEC, POOL, {0: 1.0})
    bad.write_text("import sys; sys.stderr.write('trainer crashed'); sys.exit(3)")
    with pytest.raises(RuntimeError, match="exited 3: trainer crashed"):
        run_command([sys.executable, str(bad)], SPEC, POOL, {0: 1.0})
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
        runner._record(spec, proxy_key(pool.pool_id, proxy, spec.seed, spec.weights),
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
