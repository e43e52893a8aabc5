"""`climb-spark run` end to end in its own JVM on a slice of the real corpus (ingest through
search, compare and export), then fresh processes read the tables by name through the persistent
local catalog, resume a killed search and check the exported dataset."""
import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from climb_spark import pipeline as pipeline_
from climb_spark.lakehouse import tables
from climb_spark.stages.search import samplers
from tests.conftest import PROFILES, ROOT, cli_args, climb, query

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Kept after the run for a person to look at (CI keeps the folder as an artifact).
SCREENSHOTS = ROOT / "test-artifacts"


def test_every_stage_reads_what_an_earlier_stage_writes_and_every_table_has_a_writer():
    assert pipeline_.missing_inputs(pipeline_.PIPELINE, exists=lambda data: False) == []
    specs = {v.name for v in vars(tables).values() if isinstance(v, tables.TableSpec)}
    written = {d.name for s in pipeline_.PIPELINE for d in s.writes}
    assert specs <= written, specs - written
    assert list(pipeline_.STAGES) == [s.name for s in pipeline_.PIPELINE]  # names are unique


def test_a_stage_alone_names_the_stage_to_run_first():
    only = [pipeline_.STAGES["export"]]
    assert pipeline_.missing_inputs(only, exists=lambda data: data.name != "mixtures") == [
        "export reads mixtures, which does not exist yet: run `climb-spark search` first"]
    # Within one run, a table written by an earlier stage needs not exist yet.
    assert pipeline_.missing_inputs([pipeline_.STAGES["cluster"], pipeline_.STAGES["prune"]],
                                    exists=lambda data: data.name != "doc_clusters" and data.name != "centroids") == []


def test_cli_prints_the_stage_graph_and_refuses_a_stage_without_its_inputs(tmp_path):
    text = climb("stages", {})
    assert text.returncode == 0 and all(name in text.stdout for name in pipeline_.STAGES)
    assert "reads  documents, quality models in" in text.stdout
    mermaid = climb("stages", {}, "--format", "mermaid").stdout.splitlines()
    assert mermaid[0] == "flowchart LR" and "  mixtures[(mixtures)] --> export" in mermaid

    sets = {"spark.master": "local[1]", "lakehouse.root": str(tmp_path / "lake"),
            "mlflow.tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}
    done = climb("export", sets)
    assert done.returncode == 3, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        "climb-spark: precondition: export reads super_clusters, cluster_stats, centroids, doc_clusters, doc_features, "
        "documents and mixtures, which do not exist yet: run `climb-spark ingest` and the stages after it first"]
    assert not (tmp_path / "lake").exists()  # the check ran before anything was created


def test_main_job_end_to_end_and_tables_readable_by_name(pipeline):
    sets, stdout = pipeline
    assert "sample corpus: 150 documents" in stdout
    m = re.search(r"(\d+) input records from (\d+) files \(\d+ splits?\) = ([\d,]+) documents \(([\d,]+) new\) "
                  r"\+ (\d+) duplicates \+ (\d+) rejects \[balanced\]", stdout)
    assert m, stdout
    records, _, docs, new, dups, rejects = (int(g.replace(",", "")) for g in m.groups())
    assert records == 150 and docs == new and docs + dups + rejects == 150

    query = textwrap.dedent("""
        import json, sys
        from climb_spark.config import load
        from climb_spark.lakehouse.session import build_session
        cfg = load(PROFILES, sys.argv[1:])
        spark = build_session(cfg)
        out = {
            "documents": spark.sql("SELECT count(*) FROM climb.documents").first()[0],
            "sources": spark.sql("SELECT count(DISTINCT source) FROM climb.documents").first()[0],
            "rejects": spark.sql("SELECT count(*) FROM climb.rejects").first()[0],
            "features": spark.sql("SELECT count(*), min(size(embedding)), avg(quality) "
                                  "FROM climb.doc_features JOIN climb.documents USING (doc_id)").first(),
            "tables": sorted(r.tableName for r in spark.sql("SHOW TABLES IN climb").collect()),
            "provider": spark.sql("DESCRIBE DETAIL climb.documents").first()["format"],
            "supers": [tuple(r) for r in spark.sql(
                "SELECT super_cluster_id, n_docs, description FROM climb.super_clusters").collect()],
            "pruned": spark.sql("SELECT count(*) FROM climb.cluster_stats WHERE NOT kept").first()[0],
            "clustered": spark.sql("SELECT count(*) FROM climb.doc_clusters").first()[0],
        }
        print("RESULT" + json.dumps(out))
    """).replace("PROFILES", json.dumps(PROFILES))
    fresh = subprocess.run([sys.executable, "-c", query, *[f"{k}={v}" for k, v in sets.items()]],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    out = json.loads(fresh.stdout.split("RESULT", 1)[1])
    assert out["documents"] == docs and out["rejects"] == rejects
    assert out["sources"] >= 7
    assert out["tables"] == ["annotations", "centroids", "cluster_stats", "comparisons", "doc_clusters",
                             "doc_features", "documents", "duplicates", "mixtures", "proxy_results", "rejects",
                             "super_clusters", "token_pools", "training_mix"]
    assert out["clustered"] == docs and out["supers"] and out["pruned"] >= 0
    assert all(desc and n > 0 for _, n, desc in out["supers"])
    n, dim, mean_quality = out["features"]
    assert n == docs and dim == 384 and 0 < mean_quality < 5
    assert "train-quality: 4 fastText classifiers from" in stdout and "macro-F1" in stdout
    assert f"(heuristic-v1): {docs:,} sampled, {docs:,} needed labels, {docs:,} labelled, 0 errors" in stdout
    assert f"doc_features now {docs:,}" in stdout
    assert out["provider"] == "delta"


def test_search_compare_and_export_are_in_tables_and_mlflow(pipeline):
    sets, stdout = pipeline
    assert re.search(r"token pools \w+: \d+ super-clusters", stdout)
    assert re.search(r"search climb-\w+ iteration 3: proxy \d done, score -[\d.]+ in [\d.]+s \(\d/2, ETA", stdout)
    out = query(sets, """
        rows = spark.sql("SELECT method, search_id, weights, prior, n_proxies, mlflow_run_id, predicted_score "
                         "FROM climb.mixtures").collect()
        out["mixtures"] = {r.method: r.asDict() for r in rows}
        out["proxies"] = {r[0]: (r[1], r[2]) for r in spark.sql(
            "SELECT search_id, count(*), count(DISTINCT proxy_key) FROM climb.proxy_results GROUP BY 1").collect()}
        out["iterations"] = [tuple(r) for r in spark.sql(
            "SELECT iteration, count(*) FROM climb.proxy_results WHERE method = 'climb' AND search_id LIKE 'climb-%' "
            "GROUP BY 1 ORDER BY 1").collect()]
        out["compare"] = {f"{r.method}@{r.scale}": r.asDict() for r in spark.sql("SELECT * FROM climb.comparisons").collect()}
        out["roles"] = {r[0]: r[1] for r in spark.sql("SELECT role, count(*) FROM climb.proxy_results GROUP BY 1").collect()}
    """)
    mixtures = out["mixtures"]
    assert set(mixtures) == {"climb", "climb-paper", "regmix", "doremi", "random", "uniform", "token-prop"}
    assert mixtures["doremi"]["n_proxies"] == 2 and mixtures["doremi"]["weights"] != mixtures["climb"]["prior"]
    m = len(mixtures["climb"]["prior"])
    for method, row in mixtures.items():
        assert len(row["weights"]) == m and abs(sum(row["weights"]) - 1) < 1e-6, method
    assert mixtures["token-prop"]["weights"] == pytest.approx(mixtures["climb"]["prior"])
    # Uniform as far as the data allows: no super-cluster past search.max_passes (4) of its tokens.
    prior = np.array(mixtures["climb"]["prior"])
    assert mixtures["uniform"]["weights"] == pytest.approx(samplers.cap_rows(np.full((1, m), 1 / m), 4 * prior)[0])
    for method, row in mixtures.items():
        assert np.all(np.array(row["weights"]) <= 4 * prior + 1e-9), method
    assert out["iterations"] == [[1, 4], [2, 2], [3, 2]]  # the 4:2:1-style budget, scaled down
    for method in ("climb", "climb-paper", "regmix", "random"):
        assert mixtures[method]["n_proxies"] == 8
        assert out["proxies"][mixtures[method]["search_id"]] == [8, 8]  # every proxy once, none twice
    # Every method at the proxy's scale and at the larger target model's, ranked, each margin with
    # its paired interval (two seeds: wide, and said so).
    assert set(out["compare"]) == {f"{m}@{scale}" for m in mixtures for scale in ("proxy", "target")}
    for scale in ("proxy", "target"):
        rows = sorted((r for r in out["compare"].values() if r["scale"] == scale), key=lambda r: r["rank"])
        assert [r["rank"] for r in rows] == list(range(1, 8))
        assert [r["mean_score"] for r in rows] == sorted((r["mean_score"] for r in rows), reverse=True)
        best = rows[0]
        assert best["margin_against"] == rows[1]["method"] and best["margin"] >= 0
        assert all(r["margin_against"] == best["method"] and r["margin"] <= 0 for r in rows[1:])
        for r in rows:
            assert r["margin_low"] <= r["margin"] <= r["margin_high"]
            assert r["significant"] == (r["margin_low"] > 0 or r["margin_high"] < 0)
    target = out["compare"]["climb@target"]["model"]
    assert target.startswith("d_model 64, 1 layers, 40 steps") and out["compare"]["climb@proxy"]["model"].startswith("d_model 32")
    for row in out["compare"].values():
        assert row["seeds"] == [1, 2] and len(row["scores"]) == 2 and row["std_score"] >= 0
        assert row["mean_target_loss"] == pytest.approx(-row["mean_score"])
    # Compare's retrains are told apart from the searches' proxies (README's query by role).
    # (doremi's two trainings are its own, not proxies in the table)
    assert out["roles"]["search"] == sum(r["n_proxies"] for m, r in mixtures.items() if m != "doremi")
    assert out["roles"]["compare-proxy"] <= 14 and out["roles"]["compare-target"] <= 14
    assert "compare compare-" in stdout and "target scale (d_model 64" in stdout
    assert re.search(r"^  proxy scale: \S+ first, [+-][\d.]+ against \S+, 95% paired interval \[", stdout, re.M)
    assert re.search(r"^  proxy -> target rank agreement \(Spearman over \d distinct mixtures\): ", stdout, re.M)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=sets["mlflow.tracking_uri"])
    exp = client.get_experiment_by_name("climb-spark")
    parent = client.get_run(mixtures["climb"]["mlflow_run_id"])
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 8 and all("score" in c.data.metrics and "w_00" in c.data.params for c in children)
    assert len(client.get_metric_history(children[0].info.run_id, "train_loss")) == 4  # the loss curve
    figures = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert figures == {"figures/score_by_iteration.png", "figures/weights_by_iteration.png",
                       "figures/predicted_vs_actual.png"}
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"final_mixture.json", "proxy_results.json"}
    for metric in ("predictor_cv_mae", "predictor_cv_spearman", "predictor_can_rank"):
        assert [h.step for h in client.get_metric_history(parent.info.run_id, metric)] == [1, 2, 3], metric
    import mlflow

    mlflow.set_tracking_uri(sets["mlflow.tracking_uri"])
    final = mlflow.artifacts.load_dict(f"runs:/{parent.info.run_id}/final_mixture.json")
    assert [float(parent.data.params[f"final_w_{i:02d}"]) for i in range(m)] == pytest.approx(final["weights"], abs=1e-6)
    assert parent.data.tags["climb.final_from"] == final["chosen_from"] in ("predictor", "observed")
    assert (parent.data.tags["climb.warnings"] == "none") == (not final["warnings"])
    assert len(final["predictor"]) == 3  # the fit diagnostics of every iteration
    assert len(final["names"]) == m and all(re.fullmatch(r"\d+: \S.*", n) for n in final["names"])  # id: top terms
    compare_run = client.get_run(out["compare"]["climb@proxy"]["mlflow_run_id"])
    assert "figures/comparison.png" in {a.path for a in client.list_artifacts(compare_run.info.run_id, "figures")}
    # The verdict per scale and the proxy-to-target agreement are on the compare run too.
    assert {"climb.proxy_winner", "climb.target_winner", "climb.compare_verdict"} <= set(compare_run.data.tags)
    assert "proxy.climb.margin" in compare_run.data.metrics and "target.climb.mean_score" in compare_run.data.metrics
    # Why the final mixture is what it is: on the search run and in final_mixture.json.
    assert parent.data.tags["climb.final_reason"] == final["why"] and final["why"]
    models = mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format="list")
    (predictor,) = [mm for mm in models if mm.source_run_id == parent.info.run_id]
    # One pyfunc model per search, named by its method, that is the whole predictor: loaded back,
    # it gives the predicted score the search reported for its final mixture (the LightGBM half
    # alone was logged before: -6.481 where the report said -6.4015).
    assert predictor.name == "predictor-climb"
    by_run = {mm.source_run_id: mm for mm in models}
    checked = 0
    for method in ("climb", "climb-paper", "regmix"):
        row = mixtures[method]
        model = by_run[row["mlflow_run_id"]]
        assert model.name == f"predictor-{method}"
        if row["predicted_score"] is not None:
            x = pd.DataFrame([row["weights"]], columns=[f"w_{i:02d}" for i in range(m)])
            assert mlflow.pyfunc.load_model(model.model_uri).predict(x)[0] == pytest.approx(row["predicted_score"],
                                                                                           rel=1e-9)
            checked += 1
    assert checked >= 2  # the recipe's methods always report a prediction
    # params.`search.method` is the method each search ran (baselines logged the config's, climb).
    for method, row in mixtures.items():
        run = client.get_run(row["mlflow_run_id"])
        assert run.data.params["search.method"] == run.data.params["method"] == method
        assert run.data.tags["mlflow.note.content"].startswith(f"`{method}` mixture search over")
    found = client.search_runs([exp.experiment_id], "params.`search.method` = 'regmix' and tags.`climb.role` = 'search'")
    assert [r.info.run_id for r in found] == [mixtures["regmix"]["mlflow_run_id"]]
    # Child runs say what they trained; every run has a description.
    assert all(re.fullmatch(r"climb it[123]\.\d \[(\d+:\d\.\d\d ?)+( \+\d+)?\]", c.info.run_name) for c in children), \
        [c.info.run_name for c in children]
    assert all(c.data.tags["mlflow.note.content"].startswith("Proxy model: proxy ") for c in children)
    retrains = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{out['compare']['climb@proxy']['mlflow_run_id']}'")
    assert any(re.match(r"regmix target seed 2 \[", r.info.run_name) for r in retrains)
    for role in ("compare", "train-quality", "export"):
        [run] = client.search_runs([exp.experiment_id], f"tags.`climb.role` = '{role}'", max_results=1)
        assert len(run.data.tags["mlflow.note.content"]) > 80, role
    # The export's run: its manifest, and the training_mix rows it wrote as a dataset (context output).
    export_run = client.search_runs([exp.experiment_id], "tags.`climb.role` = 'export'", max_results=1)[0]
    written = [d for d in export_run.inputs.dataset_inputs
               if {t.key: t.value for t in d.tags} == {"mlflow.data.context": "output"}]
    assert [d.dataset.name for d in written] == [f"training_mix[{export_run.data.tags['climb.export_id']}]"]
    assert json.loads(written[0].dataset.source)["delta_table_name"] == "spark_catalog.climb.training_mix"
    assert "manifest.json" in {a.path for a in client.list_artifacts(export_run.info.run_id)}
    # MLflow conventions: the predictor's signature (a weight per super-cluster in, a score out),
    # context tags on runs made through the client API, the Delta tables read with their versions.
    info = mlflow.models.get_model_info(predictor.model_uri)
    assert [c.name for c in info.signature.inputs.inputs] == [f"w_{i:02d}" for i in range(m)]
    assert info.signature.outputs is not None
    for run in (parent, children[0], compare_run):
        assert run.data.tags["mlflow.user"] and run.data.tags["climb.version"] == "0.1.0"
        if (ROOT / ".git").exists():  # the code's commit, when it runs from a checkout
            assert re.fullmatch(r"[0-9a-f]{40}", run.data.tags["mlflow.source.git.commit"])
    assert (parent.data.tags["climb.role"], children[0].data.tags["climb.role"],
            compare_run.data.tags["climb.role"]) == ("search", "proxy", "compare")
    inputs = {d.dataset.name: d for d in parent.inputs.dataset_inputs}
    assert set(inputs) == {"documents", "doc_features", "doc_clusters", "cluster_stats", "super_clusters"}
    source = json.loads(inputs["documents"].dataset.source)
    assert source["delta_table_name"] == "spark_catalog.climb.documents" and source["delta_table_version"] >= 1
    assert "is_databricks_uc_table" not in source  # a local table, not looked up in Unity Catalog
    assert {t.key: t.value for t in inputs["documents"].tags} == {"mlflow.data.context": "search"}


def test_the_run_ends_with_a_report_that_matches_the_tables_and_report_writes_it_again(pipeline):
    from mlflow.tracking import MlflowClient

    from climb_spark import report

    sets, stdout = pipeline
    done = re.search(r"^report: (.+) \(attached to MLflow run (\w+) as report/report.html\)$", stdout, re.M)
    assert done, stdout[-3000:]
    path, run_id = done.groups()
    assert path == sets["lakehouse.root"] + "/report.html"
    page = Path(path).read_text(encoding="utf-8")
    docs = re.search(r"= ([\d,]+) documents \(", stdout).group(1)
    assert f"= <b>{docs}</b> documents" in page
    assert all(f"<h2>{heading}</h2>" in page for heading in report.SECTIONS.values())
    assert 'class="missing"' not in page  # every table exists after a full run
    assert page.count('src="data:image/png;base64,') >= 4  # mixture, comparison, the search's figures
    search_id, search_run = re.search(r"search (climb-\w+) \(climb\): \d+ proxies trained, MLflow run (\w+)", stdout).groups()
    assert run_id == search_run and search_id in page
    assert [a.path for a in MlflowClient(sets["mlflow.tracking_uri"]).list_artifacts(run_id, "report")] == \
        ["report/report.html"]

    again = climb("report", sets)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.strip().splitlines()[-1] == done.group(0)
    assert f"= <b>{docs}</b> documents" in Path(path).read_text(encoding="utf-8")


def test_export_token_shares_match_the_weights_within_sampling_error(pipeline):
    sets, stdout = pipeline
    manifest_path = re.search(r"export (export-\w+) from search climb-\w+: .* -> (.+)$", stdout, re.M)
    assert manifest_path, stdout[-2000:]
    manifest = json.loads((Path(manifest_path.group(2)) / "manifest.json").read_text())
    # A small corpus and a concentrated mixture can put one document above the share limit; whatever
    # is warned is in the manifest and on stdout alike, and nothing else is.
    assert all(re.fullmatch(r"document [0-9a-f]{32} is [0-9.]+% of the exported tokens \(above "
                            r"export.max_doc_share=0.05\); see ingest.max_doc_chars", w) for w in manifest["warnings"])
    assert sorted(manifest["warnings"]) == sorted(re.findall(r"^  +WARNING (document .*)$", stdout, re.M)), stdout[-3000:]
    # For the next tool: an absolute data path, and a folder holding the shards alone (no Hadoop
    # .crc checksums, no _SUCCESS), which the manifest lists.
    data = Path(manifest["data"])
    assert data.is_absolute() and sorted(f.name for f in data.iterdir()) == manifest["files"]
    assert manifest["files"] and all(re.fullmatch(r"part-\d+-.+\.json\.gz", f) for f in manifest["files"])
    # The token counts agree, in one unit: kept = the target's + what the export draws from, all of
    # it the budget by default (the proxies' pools count the same documents in BPE tokens).
    assert manifest["kept_tokens"] - manifest["held_out_tokens"] == manifest["available_tokens"] == \
        manifest["token_budget"] > 0 and manifest["held_out_tokens"] > 0
    assert f"tokens are words and punctuation: {manifest['kept_tokens']:,} in the kept clusters, " in stdout
    assert re.search(r"token pools \w+: \d+ super-clusters, [\d,]+ training tokens of the proxies' BPE tokenizer", stdout)
    budget = manifest["token_budget"] // 2
    # A share limit every document is above: the largest one is named in the manifest and on stdout.
    # The same search at another budget: export.token_budget is part of a search's id (its bounds
    # are taken at that budget), so the search is named.
    done = climb("export", {**sets, "export.token_budget": str(budget), "export.format": "parquet",
                            "export.max_doc_share": "0.0001", "export.search_id": manifest["search_id"]})
    assert done.returncode == 0, done.stderr[-3000:]
    export_id, path = re.search(r"export (export-\w+) from search climb-\w+: .* -> (.+)$", done.stdout, re.M).groups()
    manifest = json.loads((Path(path) / "manifest.json").read_text())
    assert manifest["token_budget"] == budget and manifest["sources"]["documents"] >= 0
    [warning] = manifest["warnings"]
    assert re.fullmatch(r"document [0-9a-f]{32} is [0-9.]+% of the exported tokens \(above "
                        r"export.max_doc_share=0.0001\); see ingest.max_doc_chars", warning), warning
    assert f"WARNING {warning}" in done.stdout
    out = query(sets, f"""
        from pyspark.sql import functions as F
        from climb_spark.curated import kept_documents, target_filter
        from climb_spark.lakehouse.tables import token_count
        docs = (kept_documents(spark, cfg).where(~target_filter(cfg))
                .withColumn("t", token_count("text")))
        out["sq"] = {{r[0]: r[1] for r in docs.groupBy("super_cluster_id").agg(F.sum(F.col("t") * F.col("t"))).collect()}}
        mix = spark.table("climb.training_mix").where(F.col("export_id") == "{export_id}")
        out["tokens"] = {{r[0]: r[1] for r in mix.groupBy("super_cluster_id").agg(F.sum("n_tokens")).collect()}}
        out["dup_keys"] = mix.groupBy("doc_id", "copy").count().where("count > 1").count()
        out["shards"] = spark.read.parquet("{manifest['data']}").count()
        out["rows"] = mix.count()
        out["target_docs"] = mix.join(kept_documents(spark, cfg).where(target_filter(cfg)),
                                      "doc_id").count()
    """)
    assert out["dup_keys"] == 0 and out["shards"] == out["rows"] == manifest["total_docs"]
    assert out["target_docs"] == 0  # the search's target text never leaks into the training set
    total = sum(out["tokens"].values())
    for c in manifest["super_clusters"]:
        got = out["tokens"].get(str(c["super_cluster_id"]), 0)
        passes = c["passes"]
        frac = passes - int(passes)
        # Each document is kept with probability frac (plus whole copies): Var = frac(1-frac) sum t^2.
        sigma = (frac * (1 - frac) * out["sq"].get(str(c["super_cluster_id"]), 0)) ** 0.5
        assert abs(got - c["target_tokens"]) <= 4 * sigma + 1, c
        if c["weight"] == 0:
            assert got == 0
        assert c["weight"] == 0 or c["weight"] >= 2e-4  # the final mixture has no dust weights
    assert abs(total - budget) <= 0.25 * budget


def test_a_re_export_killed_mid_write_leaves_the_previous_export_whole(pipeline):
    import pyarrow.dataset as ds

    sets = {**pipeline[0], "export.format": "parquet", "export.shards": "2"}
    done = climb("export", sets)
    assert done.returncode == 0, done.stderr[-3000:]
    path = Path(re.search(r"export export-\w+ from search climb-\w+: .* -> (.+)$", done.stdout, re.M).group(1))
    before = (path / "manifest.json").read_text()
    old = json.loads(before)
    proc = subprocess.Popen([sys.executable, "-m", "climb_spark", "export", *cli_args(sets)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # The exact point: the new attempt has begun writing its shards, the manifest is not replaced.
        while not [d for d in path.glob("data-*") if str(d) != old["data"] and any(d.iterdir())]:
            assert proc.poll() is None, "the export finished before its data folder appeared"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGSTOP)
        assert (path / "manifest.json").read_text() == before
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (path / "manifest.json").read_text() == before
    assert ds.dataset(old["data"], format="parquet").count_rows() == old["total_docs"]

    again = climb("export", sets)
    assert again.returncode == 0, again.stderr[-3000:]
    new = json.loads((path / "manifest.json").read_text())
    assert new["data"] != old["data"] and new["total_docs"] == old["total_docs"]
    # The previous attempt and the killed one's leftovers are gone once the new manifest is in place.
    assert [str(d) for d in path.glob("data*")] == [new["data"]]
    assert ds.dataset(new["data"], format="parquet").count_rows() == new["total_docs"]


def test_killed_search_resumes_without_retraining_finished_proxies(pipeline):
    sets, _ = pipeline
    command = {**sets, "proxy.kind": "command", "search.parallelism": "1", "search.budget": "[6]",
               "proxy.command": json.dumps([sys.executable, str(ROOT / "tests" / "proxy_command.py"),
                                            "--sleep", "1"])}
    proc = subprocess.Popen([sys.executable, "-m", "climb_spark", "search", "--method", "random", *cli_args(command)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    finished = 0
    try:
        for line in proc.stdout:
            finished += " done, score " in line
            if finished == 2:
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its JVM, mid-batch
        proc.wait()
    assert finished == 2
    again = climb("search", command, "--method", "random")
    assert again.returncode == 0, again.stderr[-3000:]
    reused, trained = map(int, re.search(r"reusing (\d+) finished proxies, training (\d+)", again.stdout).groups())
    assert reused >= 2 and reused + trained == 6
    sid = re.search(r"search (random-\w+) \(random\): 6 proxies trained", again.stdout).group(1)
    out = query(sets, f"""
        out["rows"] = spark.sql("SELECT count(*), count(DISTINCT proxy_key) FROM climb.proxy_results "
                                "WHERE search_id = '{sid}'").first()
        out["runs"] = spark.sql("SELECT count(DISTINCT mlflow_run_id) FROM climb.proxy_results "
                                "WHERE search_id = '{sid}'").first()[0]
    """)
    assert out["rows"] == [6, 6] and out["runs"] == 6


def test_a_proxy_that_prints_nan_stops_the_search_in_one_line_and_the_fixed_trainer_resumes(pipeline, tmp_path):
    """Issue 29: a command proxy that printed NaN ended the search in a traceback, and the NaN, kept,
    failed every run after the trainer was fixed. Now: one line naming the mixture and the trainer's
    last output, exit 5; fixed, the same command reuses the finished proxies and trains the rest."""
    sets, _ = pipeline
    trainer, broken = tmp_path / "trainer.py", tmp_path / "broken"
    trainer.write_text(textwrap.dedent(f"""
        import json, os, sys
        w = [float(v) for v in json.load(sys.stdin)["weights"].values()]
        if os.path.exists({str(broken)!r}) and max(w) > 0.5:
            print("step 20: loss nan")
            print("NaN")
        else:
            print(-sum(v * v for v in w))
    """))
    broken.touch()
    command = {**sets, "proxy.kind": "command", "search.parallelism": "1", "search.budget": "[6]",
               "search.seed": "7", "proxy.command": json.dumps([sys.executable, str(trainer)])}
    done = climb("search", command, "--method", "random")
    assert done.returncode == 5, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("climb-spark:")]
    assert re.match(r"climb-spark: proxy failed: search random-\w+ iteration 1: proxy \d \(mixture [\d:., ]+\) gave "
                    r"no score: proxy command \S+ printed 'NaN': its score is not a finite number; its last output: "
                    r"step 20: loss nan \| NaN; \d failed, \d of 6 finished and kept", line), line
    finished = done.stdout.count(" done, score ")
    broken.unlink()
    again = climb("search", command, "--method", "random")
    assert again.returncode == 0, again.stderr[-3000:]
    if finished:
        assert f"reusing {finished} finished proxies, training {6 - finished}" in again.stdout
    sid = re.search(r"search (random-\w+) \(random\): 6 proxies", again.stdout).group(1)
    out = query(sets, f"""
        out["rows"] = [r.score for r in spark.sql("SELECT score FROM climb.proxy_results "
                                                  "WHERE search_id = '{sid}'").collect()]
    """)
    assert len(out["rows"]) == 6 and all(math.isfinite(v) for v in out["rows"])


def test_proxies_from_a_shared_base_train_it_once_per_pool(pipeline):
    sets, _ = pipeline
    based = {**sets, "proxy.init": "base", "proxy.base_steps": "20", "search.budget": "[3]"}
    done = climb("search", based, "--method", "random")
    assert done.returncode == 0, done.stderr[-3000:]
    path = re.search(r"proxy base (.+?): training on the prior", done.stdout).group(1)
    assert path.startswith(str(Path(sets["lakehouse.root"]) / "token_pools")) and Path(path).stat().st_size > 0
    assert not list(Path(path).parent.glob("*.tmp"))  # written under a temporary name, then moved
    sid = re.search(r"search (random-\w+) \(random\): 3 proxies trained", done.stdout).group(1)
    # Other proxy steps, same base settings: the checkpoint is reused, the proxies are new.
    again = climb("search", {**based, "proxy.steps": "10"}, "--method", "random")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "training on the prior" not in again.stdout and re.search(r"random-\w+ iteration 1: proxy 3 done", again.stdout)
    out = query(sets, f"""
        out["n"] = spark.sql("SELECT count(*) FROM climb.proxy_results WHERE search_id = '{sid}'").first()[0]
    """)
    assert out["n"] == 3


def test_climb_beats_the_baselines_on_a_known_optimum(pipeline):
    """With a command proxy whose best mixture is known (all weight on the last super-cluster),
    CLIMB's iterations must get closer to it than uniform and token-proportional weights. No
    repetition limit: under one, capped uniform weights can be that optimum's feasible best."""
    sets, _ = pipeline
    command = {**sets, "proxy.kind": "command", "search.budget": "[8, 4, 4]", "compare.seeds": "[1]",
               "search.max_passes": "0",
               "compare.methods": "[climb, uniform, token-prop]",
               "proxy.command": json.dumps([sys.executable, str(ROOT / "tests" / "proxy_command.py")])}
    done = climb("compare", command)
    assert done.returncode == 0, done.stderr[-3000:]
    scores = {m: float(s) for m, s in re.findall(r"^    (\S+) +[\d.]+ \+- [\d.]+ +(-[\d.]+) \+-", done.stdout, re.M)}
    assert set(scores) == {"climb", "uniform", "token-prop"}
    assert scores["climb"] > max(scores["uniform"], scores["token-prop"])


SNAPSHOT = """
    import hashlib
    out["tables"] = {}
    for t in sorted(r.tableName for r in spark.sql("SHOW TABLES IN climb").collect()):
        rows = sorted(json.dumps(r.asDict(recursive=True), sort_keys=True, default=str)
                      for r in spark.table(f"climb.{t}").collect())
        out["tables"][t] = [len(rows), hashlib.sha256("\\n".join(rows).encode()).hexdigest()]
"""


def test_running_the_main_job_again_leaves_the_same_tables(pipeline):
    sets, _ = pipeline
    before = query(sets, SNAPSHOT)["tables"]
    again = climb("run", sets)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(0 new)" in again.stdout and "0 needed labels" in again.stdout
    assert "train-quality: up to date: 4 fastText classifiers" in again.stdout
    assert re.search(r"cluster \w+: up to date", again.stdout)
    assert "training 0" in again.stdout and " done, score " not in again.stdout  # no proxy retrained
    after = query(sets, SNAPSHOT)["tables"]
    assert after == before


def delta_versions(lake: Path, table: str) -> set[str]:
    return {f.name for f in (lake / "warehouse" / "climb.db" / table / "_delta_log").glob("*.json")}


def test_a_prune_killed_between_its_two_commits_is_refused_downstream_not_used(pipeline):
    sets, stdout = pipeline
    lake = Path(sets["lakehouse.root"])
    stats_before, supers_before = delta_versions(lake, "cluster_stats"), delta_versions(lake, "super_clusters")
    merged = int(re.search(r"merged into (\d+) super-clusters", stdout).group(1))
    # A different merge, so the two tables' memberships change.
    other = {**sets, "prune.target_super_clusters": "1" if merged > 1 else "2"}
    proc = subprocess.Popen([sys.executable, "-m", "climb_spark", "prune", *cli_args(other)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # The exact point: cluster_stats has its new commit, super_clusters not yet.
        while delta_versions(lake, "cluster_stats") == stats_before:
            assert proc.poll() is None, "prune finished before its first commit was seen"
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGSTOP)
        assert delta_versions(lake, "super_clusters") == supers_before, "killed too late: both commits were in"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for command in ("export", "search"):
        done = climb(command, sets)
        assert done.returncode == 3, (command, done.stdout[-2000:], done.stderr[-2000:])
        assert done.stderr.strip().splitlines()[-1] == (
            "climb-spark: precondition: cluster_stats and super_clusters disagree on which kept cluster is in "
            "which super-cluster (a prune that did not finish): re-run `climb-spark prune`")
    assert climb("prune", sets).returncode == 0  # the repair the message names
    assert climb("export", sets).returncode == 0


def test_a_clustering_newer_than_the_super_clusters_is_refused_until_prune_runs(pipeline):
    sets, _ = pipeline
    assert climb("cluster", {**sets, "cluster.seed": "7"}).returncode == 0  # re-clustered, prune not re-run
    done = climb("search", sets)
    assert done.returncode == 3, done.stderr[-2000:]
    # The settings differ from the new clustering's, so cluster is named first; with them, prune.
    assert "re-run `climb-spark cluster`, then prune" in done.stderr.strip().splitlines()[-1]
    done = climb("export", {**sets, "cluster.seed": "7"})
    assert done.returncode == 3 and "re-run `climb-spark prune`" in done.stderr.strip().splitlines()[-1]
    assert climb("cluster", sets).returncode == 0  # back to the clustering prune used: consistent again
    assert climb("export", sets).returncode == 0


@pytest.mark.parametrize("name, figures", [("explore_documents", 0), ("explore_clusters", 2), ("review_search", 2)])
def test_notebooks_run_top_to_bottom_on_the_pipeline_tables(pipeline, monkeypatch, name, figures):
    import nbformat
    from nbclient import NotebookClient

    sets, _ = pipeline
    monkeypatch.setenv("CLIMB_SET", json.dumps(sets))
    monkeypatch.setenv("CLIMB_ROOT", str(ROOT))
    book = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    NotebookClient(book, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    outputs = [o for cell in book.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= figures
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert tables and all("<table" in o["data"]["text/html"] for o in tables)


def test_mlflow_ui_and_the_run_report_render_in_chromium(pipeline):
    """`mlflow server` on the run's tracking store, read in headless Chromium as a person would:
    the search's parent run, its proxy child runs under it, and its figures rendered; then the run
    report page with its figures."""
    from urllib.parse import quote

    from mlflow.tracking import MlflowClient
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.standalone_cluster import BIN, free_port, stop, wait_for_http

    assert Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file(), \
        "Debian's chromium and chromium-driver are needed (install.sh installs them as root)"
    sets, stdout = pipeline
    run_id = re.search(r"search climb-\w+ \(climb\): 8 proxies trained, MLflow run (\w+)", stdout).group(1)
    client = MlflowClient(sets["mlflow.tracking_uri"])
    exp = client.get_experiment_by_name("climb-spark")
    parent = client.get_run(run_id)
    assert parent.info.run_name == "search-climb"
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 8
    port = free_port()
    server = subprocess.Popen([str(BIN / "mlflow"), "server", "--backend-store-uri", sets["mlflow.tracking_uri"],
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,2000"):
        options.add_argument(arg)
    browser = None
    try:
        browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        page = lambda: browser.find_element(By.TAG_NAME, "body").text  # noqa: E731
        base = f"http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}"
        wait_for_http(f"http://127.0.0.1:{port}/health", server)
        # Filtered to this search (the UI loads the newest 100 runs, and the tests' later searches,
        # compares and exports pushed this one past them).
        search = quote(f"tags.`climb.search_id` = '{parent.data.tags['climb.search_id']}'")
        browser.get(f"{base}/runs?searchFilter={search}")
        WebDriverWait(browser, 60).until(lambda b: b.find_elements(
            By.CSS_SELECTOR, f"[role='row'][row-id='{parent.info.run_id}']"))
        row = browser.find_element(By.CSS_SELECTOR, f"[role='row'][row-id='{parent.info.run_id}']")
        row.find_element(By.CSS_SELECTOR, "[col-id='attributes.`Run Name`'] button").click()  # expand
        WebDriverWait(browser, 60).until(lambda b: all(c.info.run_name in page() for c in children))
        SCREENSHOTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(SCREENSHOTS / "mlflow-search-runs.png"))

        browser.get(f"{base}/runs/{parent.info.run_id}/artifacts")
        WebDriverWait(browser, 60).until(lambda b: "figures" in page())
        browser.find_element(By.XPATH, "//*[text()='figures']").click()
        figures = ["score_by_iteration.png", "weights_by_iteration.png", "predicted_vs_actual.png"]
        WebDriverWait(browser, 60).until(lambda b: all(f in page() for f in figures))
        browser.find_element(By.XPATH, "//*[text()='score_by_iteration.png']").click()
        WebDriverWait(browser, 60).until(lambda b: b.execute_script(
            "return [...document.images].some(i => i.complete && i.naturalWidth > 300)"))
        browser.save_screenshot(str(SCREENSHOTS / "mlflow-search-figure.png"))

        # The run report, opened from disk as a reviewer would: every figure decodes, every
        # section is there, and the whole page is kept as a screenshot.
        from climb_spark import report

        browser.get(Path(sets["lakehouse.root"], "report.html").as_uri())
        WebDriverWait(browser, 60).until(lambda b: b.execute_script(
            "return document.images.length >= 4 && [...document.images].every(i => i.complete && i.naturalWidth > 100)"))
        assert all(heading in page() for heading in report.SECTIONS.values())
        # What a reviewer asks first, as the browser shows it: the target, the export with its units.
        assert "scores a mixture by training a proxy on it and evaluating the proxy on the target: a fixed " in page()
        assert re.search(r"Export export-\w+ of the climb mixture \(search climb-\w+\): [\d,]+ documents", page())
        assert "Tokens are words and punctuation: the kept clusters hold " in page()
        height = browser.execute_script("return document.documentElement.scrollHeight")
        assert height > 2000  # the tables and figures are laid out, not one collapsed line
        browser.set_window_size(1400, min(height, 16000))
        browser.save_screenshot(str(SCREENSHOTS / "run-report.png"))
    finally:
        if browser is not None:
            browser.quit()
        stop(server)
