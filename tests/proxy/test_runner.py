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
