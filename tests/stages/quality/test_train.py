"""What train-quality keys its models on, without Spark."""
from pathlib import Path

from tests.conftest import local_config

from climb_spark.rubric import CRITERIA
from climb_spark.stages.quality.train import training_fingerprint


def test_the_fingerprint_follows_the_labelled_rows_and_every_training_setting(tmp_path: Path):
    cfg = local_config(tmp_path)
    rows = [{"doc_id": f"{i:032x}", **{c: i % 6 for c in CRITERIA}} for i in range(20)]
    same = training_fingerprint(rows, cfg, "heuristic-v1", "p1")
    assert training_fingerprint([dict(r) for r in rows], cfg, "heuristic-v1", "p1") == same
    # Where the models are written is not what they are.
    assert training_fingerprint(rows, cfg.replace({"quality.model_dir": str(tmp_path / "x")}), "heuristic-v1", "p1") == same
    relabelled = [dict(r) for r in rows]
    relabelled[7]["advertisement"] = 5 - relabelled[7]["advertisement"]
    others = [
        training_fingerprint(rows[:-1], cfg, "heuristic-v1", "p1"),
        training_fingerprint(relabelled, cfg, "heuristic-v1", "p1"),
        training_fingerprint(rows, cfg.replace({"quality.epoch": 5}), "heuristic-v1", "p1"),
        training_fingerprint(rows, cfg.replace({"quality.holdout_fraction": 0.2}), "heuristic-v1", "p1"),
        training_fingerprint(rows, cfg, "llm", "p1"),
        training_fingerprint(rows, cfg, "heuristic-v1", "p2"),
    ]
    assert len({same, *others}) == 7
