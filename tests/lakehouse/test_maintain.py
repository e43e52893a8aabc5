"""`climb-spark maintain` on a small real lakehouse: small files compacted with the rows unchanged,
old files vacuumed, the pool and export nothing refers to removed and the referenced ones kept,
and a dry run that changes nothing."""
import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest

from climb_spark.config import ConfigError
from climb_spark.lakehouse import maintain
from climb_spark.lakehouse.tables import DOCUMENTS, MIXTURES, TOKEN_POOLS, TRAINING_MIX, Lakehouse
from tests.conftest import climb

NOW = pd.Timestamp.now(tz="UTC")
KEPT_POOL, OLD_POOL, NEW_POOL = "aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"
KEPT_EXPORT, OLD_EXPORT = "export-aaaaaaaaaa", "export-bbbbbbbbbb"


def _documents(n: int, start: int) -> pd.DataFrame:
    return pd.DataFrame({"doc_id": [f"d{i:04d}" for i in range(start, start + n)],
                         "text": [f"text {i}" for i in range(start, start + n)], "source": "s", "metadata": None,
                         "n_chars": 6, "n_words": 2, "file": "f", "line": range(start, start + n), "offset": None,
                         "ingest_run_id": "r", "ingested_at": NOW})


@pytest.fixture
def lakehouse(spark, cfg, tmp_path):
    """A documents table written in five appends (five small files), a mixture naming one pool and
    weights, three pools (referenced, unreferenced and older, unreferenced but newest) and two
    exports (one whose manifest matches the mixture, one of a search that is gone)."""
    cfg = cfg.replace({"lakehouse.root": str(tmp_path / "lake"), "export.output": str(tmp_path / "export"),
                       "maintain.retain_hours": 0, "maintain.allow_short_retention": True,
                       "maintain.tables": ["documents"]})  # each table's VACUUM is seconds of Spark jobs
    lake = Lakehouse(cfg.lakehouse)
    docs = lake.ensure(spark, DOCUMENTS)
    for i in range(5):
        spark.createDataFrame(_documents(20, 20 * i), DOCUMENTS.schema).coalesce(1).writeTo(docs).append()
    spark.createDataFrame([{
        "search_id": "climb-1", "method": "climb", "weights": [0.25, 0.75], "prior": [0.5, 0.5],
        "predicted_score": None, "best_observed_score": None, "n_proxies": 4, "pool_id": KEPT_POOL,
        "cluster_run_id": "c", "mlflow_run_id": None, "config": "{}", "created_at": NOW.to_pydatetime()}],
        MIXTURES.schema).writeTo(lake.ensure(spark, MIXTURES)).append()
    pools = []
    for age, pid in ((3, KEPT_POOL), (2, OLD_POOL), (1, NEW_POOL)):
        path = tmp_path / "lake" / "token_pools" / pid / "tokens" / "split=train" / "super_cluster_id=0"
        path.mkdir(parents=True)
        (path / "part-0.parquet").write_bytes(b"x" * 1000)
        pools.append({"pool_id": pid, "split": "train", "super_cluster_id": 0, "n_docs": 1, "n_tokens": 1,
                      "token_share": 1.0, "vocab_size": 64, "path": str(path),
                      "created_at": (NOW - pd.Timedelta(hours=age)).to_pydatetime()})
    spark.createDataFrame(pools, TOKEN_POOLS.schema).writeTo(lake.ensure(spark, TOKEN_POOLS)).append()
    mix = []
    for age, (name, search, weights) in enumerate(((KEPT_EXPORT, "climb-1", [0.25, 0.75]),
                                                  (OLD_EXPORT, "climb-gone", [0.5, 0.5]))):
        folder = tmp_path / "export" / name
        (folder / "data-1").mkdir(parents=True)
        (folder / "data-1" / "part-0.json.gz").write_bytes(b"y" * 500)
        (folder / "manifest.json").write_text(json.dumps({
            "export_id": name, "search_id": search, "data": str(folder / "data-1"),
            "created_at": (NOW - pd.Timedelta(hours=age)).isoformat(),
            "super_clusters": [{"super_cluster_id": i, "weight": w} for i, w in enumerate(weights)]}))
        mix.append({"export_id": name, "doc_id": "d0000", "copy": 0, "super_cluster_id": 0, "source": "s",
                    "n_tokens": 2, "text": "text 0"})
    spark.createDataFrame(mix, TRAINING_MIX.schema).writeTo(lake.ensure(spark, TRAINING_MIX)).append()
    time.sleep(0.05)  # every file strictly older than the run's cutoff (retain_hours=0)
    return cfg, lake


def _state(spark, cfg, lake, tmp_path):
    versions = {s.name: spark.sql(f"DESCRIBE HISTORY {lake.name(s)}").count()
                for s in (DOCUMENTS, MIXTURES, TOKEN_POOLS, TRAINING_MIX)}
    on_disk = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    return versions, on_disk


def test_maintain_compacts_vacuums_and_removes_only_unreferenced_pools_and_exports(spark, lakehouse, tmp_path):
    cfg, lake = lakehouse
    docs = lake.name(DOCUMENTS)
    rows = sorted(tuple(r) for r in spark.table(docs).collect())
    before = _state(spark, cfg, lake, tmp_path)

    said = []
    dry = maintain.run(spark, cfg, log=said.append, dry_run=True)
    assert _state(spark, cfg, lake, tmp_path) == before  # no commit, no file touched
    assert dry.pools_removed == [OLD_POOL] and dry.exports_removed == [OLD_EXPORT]
    assert "dry run: nothing changed" in dry.summary() and "would remove 1 token pools" in dry.summary()
    # What OPTIMIZE would leave, not `5 -> ?`, and each table said once (it printed every line twice).
    assert {t.name: (t.files_before, t.files_after) for t in dry.tables}["documents"] == (5, 1)
    assert "?" not in dry.summary() and said == []

    done = maintain.run(spark, cfg, log=print)
    by_name = {t.name: t for t in done.tables}
    assert by_name["documents"].files_before == 5 and by_name["documents"].files_after == 1
    assert by_name["documents"].vacuumed_files == 5 and by_name["documents"].bytes_freed > 0
    assert spark.sql(f"DESCRIBE DETAIL {docs}").first()["numFiles"] == 1
    assert sorted(tuple(r) for r in spark.table(docs).collect()) == rows
    data_files = [p for p in Path(spark.sql(f"DESCRIBE DETAIL {docs}").first()["location"].removeprefix("file:"))
                  .rglob("*.parquet") if "_delta_log" not in p.parts]
    assert len(data_files) == 1

    assert done.pools_removed == [OLD_POOL] and done.exports_removed == [OLD_EXPORT]
    assert sorted(os.listdir(tmp_path / "lake" / "token_pools")) == [KEPT_POOL, NEW_POOL]
    assert sorted(os.listdir(tmp_path / "export")) == [KEPT_EXPORT]
    assert {r[0] for r in spark.table(lake.name(TOKEN_POOLS)).select("pool_id").collect()} == {KEPT_POOL, NEW_POOL}
    assert [r[0] for r in spark.table(lake.name(TRAINING_MIX)).select("export_id").collect()] == [KEPT_EXPORT]
    summary = done.summary()
    assert summary.splitlines()[0].startswith("maintain: 1 tables, 5 -> 1 data files, ")
    assert dry.summary().splitlines()[0].startswith("maintain (dry run: nothing changed): 1 tables, 5 -> 1 data files "
                                                    "after OPTIMIZE, ")
    assert f"token pool {OLD_POOL} removed" in summary and f"export {OLD_EXPORT} removed" in summary

    # Within the retention window nothing is removed, whatever refers to it.
    young = cfg.replace({"maintain.retain_hours": 1, "maintain.tables": ["mixtures"]})
    assert maintain.run(spark, young, log=print, dry_run=True).pools_removed == []
    with pytest.raises(ConfigError, match="^maintain.tables: no such table document "):
        maintain.run(spark, cfg.replace({"maintain.tables": ["document"]}))


def test_a_retention_below_delta_floor_needs_the_explicit_override(cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"^maintain.retain_hours: below 168"):
        cfg.replace({"maintain.retain_hours": 24})
    assert cfg.replace({"maintain.retain_hours": 24, "maintain.allow_short_retention": True}).maintain.retain_hours == 24
    done = climb("maintain", {"lakehouse.root": str(tmp_path / "lake"), "maintain.retain_hours": "1"}, "--dry-run")
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith(
        "climb-spark: config error: maintain.retain_hours: below 168")


def test_cli_dry_run_on_an_empty_lakehouse(tmp_path):
    done = climb("maintain", {"lakehouse.root": str(tmp_path / "lake"), "spark.master": "local[1]"}, "--dry-run")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "maintain (dry run: nothing changed): 0 tables" in done.stdout


def test_a_dry_run_counts_the_files_optimize_leaves():
    mb = 1 << 20
    assert maintain.files_after_optimize([], 1024 * mb, 1024 * mb) == 0
    assert maintain.files_after_optimize([mb], 1024 * mb, 1024 * mb) == 1  # one small file: left alone
    assert maintain.files_after_optimize([mb] * 5, 1024 * mb, 1024 * mb) == 1
    # Large files stay; small ones are packed smallest first into bins of at most max_size.
    assert maintain.files_after_optimize([2000 * mb, 600 * mb, 500 * mb, 10 * mb, 10 * mb], 1024 * mb, 1024 * mb) == 3
    assert maintain.files_after_optimize([600 * mb, 600 * mb], 1024 * mb, 1024 * mb) == 2
