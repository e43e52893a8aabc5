"""The run report on a real lakehouse: tables written through Spark and Delta as the stages would
leave them (with text that looks like HTML), a real MLflow store, and a schema with no tables."""
import datetime as dt
import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from climb_spark import report
from climb_spark.ids import pool_id, search_id
from climb_spark.lakehouse.tables import (CLUSTER_STATS, COMPARISONS, DOCUMENTS, DUPLICATES, MIXTURES, REJECTS,
                                          SUPER_CLUSTERS, TOKEN_POOLS, Lakehouse)
from climb_spark.rubric import CRITERIA
from climb_spark.stages.search import significance

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
EVIL = "<script>alert('x')</script>"


def _write(spark, cfg, spec, rows):
    records = [tuple(row.get(f) for f in spec.schema.fieldNames()) for row in rows]
    spark.createDataFrame(records, spec.schema).writeTo(Lakehouse(cfg.lakehouse).ensure(spark, spec)).append()


def _docs(n):
    return [{"doc_id": f"d{i:02d}", "text": f"Document {i} <b>bold</b> & {EVIL} " + "word " * 20,
             "source": EVIL if i == 0 else ("pydoc" if i % 2 else "news"), "metadata": None, "n_chars": 100,
             "n_words": 25, "file": "f.jsonl", "line": i + 1, "offset": 0, "ingest_run_id": "r", "ingested_at": NOW}
            for i in range(n)]


def _cluster(cid, n_docs, kept, sc, rule, terms, exemplar):
    row = {"cluster_id": cid, "n_docs": n_docs, "n_tokens": n_docs * 30, "mean_score": 2.5 if kept else 1.0,
           "tier": "high" if kept else "low", "kept": kept, "rule": rule, "super_cluster_id": sc,
           "top_terms": terms, "exemplars": [exemplar], "cluster_run_id": "fit1"}
    for c in CRITERIA:
        row[f"{c}_mean"], row[f"{c}_quantiles"] = (2.5 if kept else 1.0), [1.0, 2.0, 3.0]
    return row


@pytest.fixture
def lakehouse(spark, cfg):
    """Every table the report reads, as the stages leave them, and the searches' MLflow runs."""
    from mlflow.tracking import MlflowClient

    from climb_spark import tracking

    _write(spark, cfg, DOCUMENTS, _docs(7))
    _write(spark, cfg, DUPLICATES, [{"file": "f.jsonl", "line": 100 + i, "offset": 0, "doc_id": "d01",
                                     "ingest_run_id": "r", "ingested_at": NOW} for i in range(2)])
    _write(spark, cfg, REJECTS, [{"file": "f.jsonl", "line": 200 + i, "offset": 0, "reason": reason, "raw": "{",
                                  "ingest_run_id": "r", "ingested_at": NOW}
                                 for i, reason in enumerate(["malformed JSON", "malformed JSON", f"bad {EVIL}"])])
    _write(spark, cfg, CLUSTER_STATS, [
        _cluster(0, 3, True, 0, "curator: kept", ["python", "module", "import"], "d01"),
        _cluster(1, 2, True, 1, "curator: kept", ["film", "review"], "d02"),
        _cluster(2, 2, False, None, "curator: advertisement 1.00 < 2.0", ["buy", "<img src=x onerror=alert(1)>"],
                 "d00")])
    supers = [{"super_cluster_id": 0, "member_clusters": [0], "n_docs": 3, "n_tokens": 90, "token_share": 0.6,
               "description": "1 cluster(s), 3 docs: python, module, import", "cluster_run_id": "fit1"},
              {"super_cluster_id": 1, "member_clusters": [1], "n_docs": 2, "n_tokens": 60, "token_share": 0.4,
               "description": "1 cluster(s), 2 docs: ", "cluster_run_id": "fit1"}]
    _write(spark, cfg, SUPER_CLUSTERS, supers)

    tracking.experiment(cfg.mlflow)
    client = MlflowClient(cfg.mlflow.tracking_uri)
    exp = client.get_experiment_by_name(cfg.mlflow.experiment).experiment_id
    run_id = client.create_run(exp, run_name="search-climb", tags={"climb.final_from": "predictor",
                                                                    "climb.warnings": f"few pairs {EVIL}"}).info.run_id
    for step, (cv, pairs) in enumerate([(0.25, 4.0), (0.61, 6.0)], start=1):
        client.log_metric(run_id, "predictor_cv_spearman", cv, step=step)
        client.log_metric(run_id, "predictor_cv_mae", 0.01 * step, step=step)
        client.log_metric(run_id, "predictor_n_pairs", pairs, step=step)
    client.set_terminated(run_id)
    compare_run = client.create_run(exp, run_name="compare").info.run_id

    # A baseline whose predictor could not rank: its predicted score must not look like one.
    regmix_run = client.create_run(exp, run_name="search-regmix", tags={"climb.warnings": (
        "the predictor cannot rank mixtures (its cross-validated Spearman is 0.10 over 8 pairs, below the 0.3 it "
        "needs): regmix keeps its recipe's choice (top-mean of the predictor) all the same; read it as close to a "
        "random pick")}).info.run_id

    climb_id = search_id(cfg, pool_id(cfg, supers), "climb")
    target = {"kind": "holdout", "source": "pydoc", "super_cluster": None, "holdout_fraction": 0.2, "max_tokens": 400}
    mixture = {"prior": [0.6, 0.4], "pool_id": "p", "cluster_run_id": "fit1", "config": json.dumps({"target": target}),
               "n_proxies": 8}
    _write(spark, cfg, TOKEN_POOLS, [{"pool_id": "p", "split": "target", "super_cluster_id": -1, "n_docs": 3,
                                      "n_tokens": 450, "token_share": None, "vocab_size": 320, "path": "x",
                                      "created_at": NOW}])
    _write(spark, cfg, MIXTURES, [
        {**mixture, "search_id": climb_id, "method": "climb", "weights": [0.7, 0.3], "predicted_score": -3.21,
         "best_observed_score": -3.25, "mlflow_run_id": run_id, "created_at": NOW},
        {**mixture, "search_id": "regmix-1", "method": "regmix", "weights": [0.8, 0.2], "predicted_score": -3.3,
         "best_observed_score": -3.28, "mlflow_run_id": regmix_run, "created_at": NOW},
        # A later climb search with other settings: not the one this config exports.
        {**mixture, "search_id": "climb-other", "method": "climb", "weights": [0.1, 0.9], "predicted_score": None,
         "best_observed_score": None, "mlflow_run_id": None, "created_at": NOW + dt.timedelta(hours=1)},
        {**mixture, "search_id": "uniform-1", "method": "uniform", "weights": [0.5, 0.5], "predicted_score": None,
         "best_observed_score": -3.4, "mlflow_run_id": None, "created_at": NOW},
        # Another clustering's mixture: not comparable, left out.
        {**mixture, "search_id": "old", "method": "random", "weights": [1.0], "cluster_run_id": "fit0",
         "predicted_score": None, "best_observed_score": None, "mlflow_run_id": None, "created_at": NOW}])
    scales = {"proxy": {"climb": [-3.20, -3.22], "uniform": [-3.40, -3.42]},
              # At the larger model the order flips, by less than the seeds disagree.
              "target": {"climb": [-2.90, -2.70], "uniform": [-2.80, -2.75]}}
    rows = []
    for scale, scores in scales.items():
        found = significance.margins({m: np.array(v) for m, v in scores.items()}, 0.95)
        order = sorted(scores, key=lambda m: -sum(scores[m]))
        rows += [{"compare_id": "compare-1", "method": m, "search_id": sid, "weights": w, "seeds": [1, 2],
                  "scores": scores[m], "mean_score": sum(scores[m]) / 2, "std_score": 0.0141,
                  "mean_target_loss": -sum(scores[m]) / 2, "std_target_loss": 0.0141, "mlflow_run_id": compare_run,
                  "created_at": NOW, "scale": scale, "model": f"{scale} model", "rank": order.index(m) + 1,
                  "margin": found[m].margin, "margin_against": found[m].other, "margin_low": found[m].low,
                  "margin_high": found[m].high, "significant": found[m].significant}
                 for m, sid, w in [("climb", climb_id, [0.7, 0.3]), ("uniform", "uniform-1", [0.5, 0.5])]]
    # A later compare of another search (other seeds): not the chosen mixture's, so not shown.
    rows.append({**rows[0], "compare_id": "compare-later", "search_id": "climb-other",
                 "created_at": NOW + dt.timedelta(hours=2)})
    _write(spark, cfg, COMPARISONS, rows)
    return run_id, climb_id


def _text(page: str) -> str:
    """The page as a reader sees it: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", page, flags=re.S)))


def _export(folder, search):
    """An export's manifest as the export stage writes it: one super-cluster repeated to fill the budget."""
    manifest = {"export_id": "export-abc", "search_id": search, "method": "climb", "token_budget": 200,
                "format": "jsonl", "data": f"{folder}/export-abc/data-1", "files": ["part-0.json.gz", "part-1.json.gz"],
                "total_docs": 9, "total_tokens": 205, "budget_from": "export.token_budget", "kept_tokens": 150,
                "held_out_tokens": 30, "available_tokens": 120, "created_at": NOW.isoformat(),
                "super_clusters": [{"super_cluster_id": 0, "weight": 0.7, "target_tokens": 140.0, "available_tokens": 80,
                                    "passes": 1.75, "docs": 6, "tokens": 142, "share": 0.69},
                                   {"super_cluster_id": 1, "weight": 0.3, "target_tokens": 60.0, "available_tokens": 40,
                                    "passes": 1.5, "docs": 3, "tokens": 63, "share": 0.31}],
                "warnings": [f"a warning {EVIL}"]}
    (folder / "export-abc").mkdir(parents=True)
    (folder / "export-abc" / "manifest.json").write_text(json.dumps(manifest))


def test_the_report_shows_every_section_with_the_tables_numbers_and_escapes_the_data(spark, cfg, lakehouse, tmp_path):
    run_id, climb_id = lakehouse
    cfg = cfg.replace({"report.output": f"{cfg.lakehouse.root}/{cfg.lakehouse.schema}/report.html",
                       "export.output": str(tmp_path / "export")})
    _export(tmp_path / "export", climb_id)
    logged = []
    page = report.write(spark, cfg, logged.append)

    assert logged == [f"report: {cfg.report.output} (attached to MLflow run {run_id} as report/report.html)"]
    written = open(cfg.report.output, encoding="utf-8").read()
    assert written == page.html and page.search_run_id == run_id
    assert all(page.shown.values()), page.shown
    for key, heading in report.SECTIONS.items():
        assert f'<section id="{key}"><h2>{heading}</h2>' in written
    # Self-contained: no external resource, figures inline.
    assert not re.search(r"(src|href)=\"(https?:)?//", written)
    assert written.count('src="data:image/png;base64,') >= 2  # the mixture and the comparison charts
    # Data never becomes markup.
    assert "<script>" not in written and "<img src=x" not in written and "<b>bold" not in written
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in written

    text = " ".join(_text(written).split())
    assert "12 input records = 7 documents + 2 duplicates + 3 rejects." in text
    assert f"{EVIL} 1 25" in text  # the source with that name: 1 document, 25 words
    assert "malformed JSON 2" in text and f"bad {EVIL} 1" in text
    assert "3 clusters: 2 kept (5 of 7 documents, 150 of 210 tokens), 1 pruned." in text
    assert "pruned curator: advertisement 1.00 < 2.0" in text
    assert "buy, <img src=x onerror=alert(1)>" in text
    assert f"Document 0 <b>bold</b> & {EVIL} word" in text  # the pruned cluster's exemplar, escaped
    # Super-clusters named by their top terms, else by their member clusters.
    assert "0: python, module, import 0 3 90 0.600" in text and "1: clusters 1 1 2 60 0.400" in text
    # The chosen mixture is the search this config exports, not the latest climb search.
    assert f"Chosen: climb , search {climb_id} , the search export uses" in text
    assert "climb-other" not in text and "random" not in text.replace("a random pick", "")
    assert "0: python, module, import 0.600 0.700 0.800 0.500" in text
    # What the target is, in words and numbers.
    assert ("scores a mixture by training a proxy on it and evaluating the proxy on the target: a fixed 20% hash "
            "slice of the kept documents of source pydoc , held out of every training pool and of the export. The "
            "score is the negative mean loss per target token (higher is better).") in text
    assert "The target holds 3 documents, 450 tokens of the proxies' tokenizer; each proxy is evaluated on the first " \
           "400 of them" in text
    # Every search's warnings, and a prediction from a predictor that cannot rank said to be one.
    assert "-3.3000 (cannot rank: see warnings)" in text
    assert "regmix: WARNING the predictor cannot rank mixtures (its cross-validated Spearman is 0.10" in text
    # The export: the counts in one unit, the budget, and the repeats.
    assert ("Export export-abc of the climb mixture (search " + climb_id + " ): 9 documents, 205 tokens in 2 jsonl "
            "shards") in text
    assert ("the kept clusters hold 150, of which 30 are the search's target and never exported, so 120 can be drawn. "
            "The budget is 200 (export.token_budget)") in text
    assert "0: python, module, import 0.700 140 80 142 6 0.690 x1.75: repeated, the cluster ran out" in text
    assert f"WARNING a warning {EVIL}" in text
    # Figures captioned with sentences, not file names.
    assert "The chosen mixture's weight for each super-cluster beside the prior p" in text
    assert "where an interval crosses zero, the seeds do not tell the two methods apart." in text
    assert "1 climb 3.2100 +- 0.0141 -3.2100 +- 0.0141 +0.2000 vs uniform * [+0.2000, +0.2000]" in text  # best first
    assert text.index("climb 3.2100") < text.index("uniform 3.4100")
    assert "compare-1" in text and "compare-later" not in text
    # Each scale says who is first and whether the lead is significant, plainly.
    assert "Proxy scale: proxy model First: climb . Its lead over uniform is significant" in text
    assert "Target scale: target model First: uniform . Its lead over climb is not significant (+0.0250, interval [" in text
    # The predictor's diagnostics say they are held-out, per fit.
    assert "Spearman, held-out" in text and "held-out" in text
    assert "1 4 0.250 0.010" in text and "2 6 0.610 0.020" in text
    assert "chosen from predictor" in text and f"WARNING few pairs {EVIL}" in text
    assert cfg.mlflow.tracking_uri in text and run_id in text

    from mlflow.tracking import MlflowClient

    client = MlflowClient(cfg.mlflow.tracking_uri)
    assert client.download_artifacts(run_id, "report/report.html").endswith("report.html")


def test_a_missing_table_is_one_line_not_an_error(spark, cfg, tmp_path):
    store = tmp_path / "mlflow.db"
    cfg = cfg.replace({"mlflow.tracking_uri": f"sqlite:///{store}", "export.output": str(tmp_path / "export")})
    # Another schema's export in the export folder the lakehouse's schemas share: not this one's.
    other = Path(cfg.export.output) / "export-other"
    other.mkdir(parents=True)
    (other / "manifest.json").write_text(json.dumps({"export_id": "export-other", "search_id": "climb-elsewhere"}))
    page = report.render(spark, cfg)
    assert not any(page.shown.values()) and page.search_run_id is None
    assert "export-other" not in page.html
    text = " ".join(_text(page.html).split())
    assert f"no MLflow store at sqlite:///{store} yet." in text
    assert not store.exists()  # reading did not create a store
    assert "Not there yet: table documents does not exist; climb-spark ingest writes it." in text
    assert "Not there yet: table cluster_stats does not exist; climb-spark prune writes it." in text
    assert "Not there yet: table comparisons does not exist; climb-spark compare writes it." in text
    assert page.html.count('class="missing"') >= 6
    assert not Lakehouse(cfg.lakehouse).exists(spark, DOCUMENTS)  # the report created nothing

    _write(spark, cfg, DOCUMENTS, _docs(3))
    page = report.render(spark, cfg)
    assert page.shown["ingest"] and not page.shown["clusters"]
    text = " ".join(_text(page.html).split())
    assert "3 documents." in text and "Not there yet: table duplicates does not exist" in text


def test_a_one_seed_comparison_says_it_has_no_interval():
    """compare with one seed has margins but no interval: the report says so (it failed to format
    the missing interval) and claims no significance either way."""
    found = significance.margins({"climb": np.array([-3.2]), "uniform": np.array([-3.4])}, 0.95)
    rows = [{"compare_id": "compare-1", "method": m, "search_id": f"{m}-1", "weights": [0.5, 0.5], "seeds": [1],
             "scores": [s], "mean_score": s, "std_score": 0.0, "mean_target_loss": -s, "std_target_loss": 0.0,
             "mlflow_run_id": None, "created_at": NOW, "scale": "proxy", "model": "proxy model", "rank": i + 1,
             "margin": found[m].margin, "margin_against": found[m].other, "margin_low": None, "margin_high": None,
             "significant": None}
            for i, (m, s) in enumerate([("climb", -3.2), ("uniform", -3.4)])]
    shown, page = report._comparison_section(None, rows)
    text = " ".join(_text(page).split())
    assert shown and "First: climb . Its lead over uniform is +0.2000 (one seed: no interval)." in text
    assert "significant" not in text.replace("* = the interval excludes 0", "")
