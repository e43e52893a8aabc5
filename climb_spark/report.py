"""The run report: one self-contained HTML page (inline CSS, figures as base64 PNG, no external
URL) read off the lakehouse tables and the MLflow store, for a reviewer who has neither open.

It only reads, so it is not a stage: a stage refuses to start without its inputs, while the report
renders whatever exists and says in one line which table is not there yet. Every text that comes
from the data (sources, reasons, terms, snippets, ids) is HTML-escaped.

`climb-spark report` writes it to `report.output` and attaches it to the chosen mixture's search
run in MLflow; `climb-spark run` writes it after its last stage.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import io
from dataclasses import dataclass, field

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from climb_spark import tracking
from climb_spark.config import METHODS, Config
from climb_spark.curated import super_cluster_name
from climb_spark.lakehouse import files
from climb_spark.lakehouse.tables import (CLUSTER_STATS, COMPARISONS, DOCUMENTS, DUPLICATES, MIXTURES, REJECTS,
                                          SUPER_CLUSTERS, TOKEN_POOLS, Lakehouse, TableSpec)
from climb_spark.rubric import CRITERIA

# Section ids and headings, in page order.
SECTIONS = {"ingest": "Ingest", "clusters": "Clusters", "super-clusters": "Super-clusters", "target": "Target",
            "mixture": "Mixture", "comparison": "Comparison", "export": "Export", "predictor": "Predictor",
            "mlflow": "MLflow runs"}

# What each predictor diagnostic the search logs measures; none of them is in-sample.
DIAGNOSTICS = {
    "predictor_cv_spearman": ("Spearman, held-out", "rank correlation of each pair's out-of-fold prediction (k-fold "
                              "CV) with its proxy score"),
    "predictor_cv_mae": ("MAE, held-out", "mean absolute error of the out-of-fold predictions"),
    "predictor_val_spearman": ("Spearman, 10% slice", "rank correlation on the recipe's 10% validation slice "
                               "(only a few pairs)"),
    "predictor_val_mae": ("MAE, 10% slice", "mean absolute error on the recipe's 10% validation slice"),
    "predictor_distinct_share": ("distinct predictions", "share of distinct predicted values over 2,000 candidate "
                                 "mixtures (near 0: the predictor cannot tell mixtures apart)"),
    "predictor_can_rank": ("trusted", "1 when the held-out Spearman reaches search.min_cv_spearman and the "
                           "predictions differ; otherwise the search says so"),
}
# The search's figures in MLflow, each with the sentence that says how to read it.
FIGURES = {
    "predicted_vs_actual": "Each trained mixture's predicted score against its proxy score. For climb the predictions "
                           "are out-of-fold (each pair predicted by models that did not see it); for the recipe's "
                           "LightGBM they are in-sample, which flatters it. Points near the diagonal are predicted well.",
    "score_by_iteration": "Every proxy's score by search iteration (higher is better), with each iteration's best: "
                          "a search that learns reaches higher in later iterations.",
    "weights_by_iteration": "The weight each mixture trained in the search gave each super-cluster, by iteration, "
                            "with the prior p and the final mixture.",
}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2329;margin:0;background:#f6f7f9}
main{max-width:1200px;margin:0 auto;padding:24px 32px 64px;background:#fff}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:36px 0 8px;padding-top:8px;border-top:2px solid #e3e6ea}
nav a{margin-right:14px}.meta{color:#5b6570;margin:0 0 12px}
table{border-collapse:collapse;margin:8px 0 12px;font-size:13px}
th,td{border:1px solid #dde1e6;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.pruned td{color:#8a939c;background:#fafafa}tr.chosen td{background:#fff4e5}
.kept{color:#17683b;font-weight:600}.dropped{color:#a52a2a;font-weight:600}
.why{min-width:340px}.snippet{max-width:360px;font-size:12px;color:#3d4650}.terms{max-width:220px}
p.missing{color:#8a5a00;background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px}
p.warn{color:#8b1a1a;background:#fdecec;border-left:4px solid #d33;padding:6px 10px}
img{max-width:100%;border:1px solid #e3e6ea;margin:6px 0}code{background:#f0f2f4;padding:1px 4px;border-radius:3px}
.figs{display:flex;flex-wrap:wrap;gap:12px}.figs figure{margin:0;flex:1 1 540px}
figure{margin:8px 0}figcaption{font-size:12px;color:#5b6570;max-width:900px}
"""


def e(value) -> str:
    """Text from the data, escaped for HTML."""
    return html.escape("" if value is None else str(value), quote=True)


@dataclass
class Page:
    html: str
    # The chosen mixture's search run (the page is attached to it in MLflow), if there is one.
    search_run_id: str | None = None
    # Section id -> whether it had data to show.
    shown: dict[str, bool] = field(default_factory=dict)
    path: str | None = None


def write(spark: SparkSession, cfg: Config, log=print) -> Page:
    """Render the page, write it to `report.output` (whole or not at all), attach it to the
    chosen search's MLflow run, and say where it is."""
    page = render(spark, cfg)
    files.write_text(cfg.report.output, page.html, cfg.s3)
    page.path = cfg.report.output
    where = ""
    if page.search_run_id:
        try:
            tracking.log_text(cfg.mlflow, page.search_run_id, page.html, "report/report.html")
            where = f" (attached to MLflow run {page.search_run_id} as report/report.html)"
        except Exception as err:  # the page is written; a store that refuses it must not fail the run
            where = f" (not attached to MLflow run {page.search_run_id}: {type(err).__name__}: {str(err)[:200]})"
    log(f"report: {page.path}{where}")
    return page


def render(spark: SparkSession, cfg: Config) -> Page:
    r = _Reader(spark, cfg)
    page = Page("")
    supers = _super_clusters(r)
    mixtures = _mixtures(r, cfg, supers)
    comparison = _comparison(r, mixtures.chosen["search_id"] if mixtures and mixtures.chosen else None)
    mlflow = _Mlflow(cfg)
    bodies = {
        "ingest": _ingest(r),
        "clusters": _clusters(r, cfg),
        "super-clusters": _super_section(r, supers),
        "target": _target_section(r, mixtures, mlflow),
        "mixture": _mixture_section(r, supers, mixtures, mlflow),
        "comparison": _comparison_section(r, comparison),
        "export": _export_section(cfg, supers, mixtures),
        "predictor": _predictor_section(mixtures, mlflow),
        "mlflow": _mlflow_section(cfg, mixtures, comparison, mlflow),
    }
    for key, (shown, _) in bodies.items():
        page.shown[key] = shown
    if mixtures and mixtures.chosen is not None:
        page.search_run_id = mixtures.chosen.get("mlflow_run_id")
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = " ".join(f'<a href="#{k}">{e(v)}</a>' for k, v in SECTIONS.items())
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>climb-spark run report</title>"
             f"<style>{CSS}</style></head><body><main>",
             "<h1>climb-spark run report</h1>",
             f'<p class="meta">Lakehouse <code>{e(cfg.lakehouse.root)}</code>, schema <code>'
             f'{e(r.lake.schema_name.replace("`", ""))}</code>; generated {e(now)}. The numbers come from the Delta '
             "tables each section names and, for the predictor and the runs, from MLflow.</p>",
             f"<nav>{nav}</nav>"]
    for key, (_, body) in bodies.items():
        parts.append(f'<section id="{key}"><h2>{e(SECTIONS[key])}</h2>{body}</section>')
    parts.append("</main></body></html>\n")
    page.html = "\n".join(parts)
    return page


class _Reader:
    """The tables, read only: a missing table is None, never created."""

    def __init__(self, spark: SparkSession, cfg: Config):
        self.spark, self.lake = spark, Lakehouse(cfg.lakehouse)
        self._exists: dict[str, bool] = {}

    def exists(self, spec: TableSpec) -> bool:
        if spec.name not in self._exists:
            self._exists[spec.name] = self.lake.exists(self.spark, spec)
        return self._exists[spec.name]

    def table(self, spec: TableSpec):
        return self.spark.table(self.lake.name(spec)) if self.exists(spec) else None

    def missing(self, spec: TableSpec) -> str:
        from climb_spark.pipeline import writer_of

        stage = writer_of(spec)
        run = f"; <code>climb-spark {e(stage.name)}</code> writes it" if stage else ""
        return f'<p class="missing">Not there yet: table <code>{e(spec.name)}</code> does not exist{run}.</p>'


def _empty(spec: TableSpec) -> str:
    return f'<p class="missing">Table <code>{e(spec.name)}</code> exists but has no rows yet.</p>'


def _num(value, digits: int | None = None) -> str:
    if value is None:
        return "-"
    if digits is None:
        return f"{int(value):,}"
    return f"{float(value):.{digits}f}"


def _table(header: list[str], rows: list[list[str]], classes: list[str] | None = None,
           numeric: set[int] = frozenset()) -> str:
    """Cells are HTML already (escape data with `e` before); `numeric` columns align right."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = "".join(f'<td class="n">{c}</td>' if j in numeric else f"<td>{c}</td>" for j, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _png(fig, alt: str) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")  # outside legends and long names kept
    plt.close(fig)
    return _img(buf.getvalue(), alt)


def _figure(img: str, caption: str) -> str:
    return f"<figure>{img}<figcaption>{e(caption)}</figcaption></figure>"


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{e(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


# -- ingest ---------------------------------------------------------------------------------------

def _ingest(r: _Reader) -> tuple[bool, str]:
    docs = r.table(DOCUMENTS)
    if docs is None:
        return False, r.missing(DOCUMENTS)
    by_source = docs.groupBy("source").agg(F.count("*").alias("n"), F.sum("n_words").alias("words")) \
        .orderBy(F.desc("n"), "source").collect()
    n_docs = sum(row["n"] for row in by_source)
    out = []
    dups = r.table(DUPLICATES)
    rejects = r.table(REJECTS)
    n_dups = dups.count() if dups is not None else None
    reasons = (rejects.groupBy("reason").count().orderBy(F.desc("count"), "reason").collect()
               if rejects is not None else None)
    n_rejects = sum(row["count"] for row in reasons) if reasons is not None else None
    if n_dups is not None and n_rejects is not None:
        out.append(f"<p><b>{n_docs + n_dups + n_rejects:,}</b> input records = <b>{n_docs:,}</b> documents + "
                   f"<b>{n_dups:,}</b> duplicates + <b>{n_rejects:,}</b> rejects.</p>")
    else:
        out.append(f"<p><b>{n_docs:,}</b> documents.</p>")
    out.append(_table(["source", "documents", "words"],
                      [[e(row["source"]), _num(row["n"]), _num(row["words"])] for row in by_source], numeric={1, 2}))
    if n_dups is None:
        out.append(r.missing(DUPLICATES))
    if reasons is None:
        out.append(r.missing(REJECTS))
    elif reasons:
        out.append("<p>Rejects by reason:</p>" + _table(["reason", "records"], [[e(row["reason"]), _num(row["count"])]
                                                                               for row in reasons], numeric={1}))
    else:
        out.append("<p>No input record was rejected.</p>")
    return True, "\n".join(out)


# -- clusters -------------------------------------------------------------------------------------

SHORT = {"quality": "quality", "advertisement": "advert. (high = few ads)", "informational_value": "inform.",
         "educational_value": "educ."}


def _clusters(r: _Reader, cfg: Config) -> tuple[bool, str]:
    stats = r.table(CLUSTER_STATS)
    if stats is None:
        return False, r.missing(CLUSTER_STATS)
    rows = sorted((row.asDict() for row in stats.collect()), key=lambda s: (-s["n_docs"], s["cluster_id"]))
    if not rows:
        return False, _empty(CLUSTER_STATS)
    kept = [s for s in rows if s["kept"]]
    shown = rows[:cfg.report.max_clusters]
    snippets = _snippets(r, [s["exemplars"][0] for s in shown if s["exemplars"]])
    out = [f"<p><b>{len(rows):,}</b> clusters: <b>{len(kept):,}</b> kept ({sum(s['n_docs'] for s in kept):,} of "
           f"{sum(s['n_docs'] for s in rows):,} documents, {sum(s['n_tokens'] for s in kept):,} of "
           f"{sum(s['n_tokens'] for s in rows):,} tokens), <b>{len(rows) - len(kept):,}</b> pruned. Tokens here, in the "
           "super-clusters and in the export are words and punctuation (the proxies' token pools count the same "
           "documents in their BPE tokenizer's tokens, more of them). Scores are the cluster means of the 0-5 rubric; "
           "the decision column gives the rule that kept or pruned it. Largest clusters first.</p>"]
    header = (["cluster", "docs", "tokens"] + [e(SHORT[c]) for c in CRITERIA]
              + ["mean", "tier", "decision (rule)", "super-cluster", "top terms", "exemplar (nearest the centroid)"])
    body, classes = [], []
    for s in shown:
        decision = ('<span class="kept">kept</span>' if s["kept"] else '<span class="dropped">pruned</span>')
        snippet = snippets.get(s["exemplars"][0]) if s["exemplars"] else None
        body.append([e(s["cluster_id"]), _num(s["n_docs"]), _num(s["n_tokens"])]
                    + [_num(s[f"{c}_mean"], 2) for c in CRITERIA]
                    + [_num(s["mean_score"], 2), e(s["tier"]), f"{decision}<br>{e(s['rule'])}",
                       e(s["super_cluster_id"]) if s["super_cluster_id"] is not None else "-",
                       f'<div class="terms">{e(", ".join((s["top_terms"] or [])[:8]))}</div>',
                       f'<div class="snippet">{e(snippet) if snippet else "-"}</div>'])
        classes.append("" if s["kept"] else "pruned")
    out.append(_table(header, body, classes, numeric=set(range(1, 3 + len(CRITERIA) + 1))))
    if len(rows) > len(shown):
        out.append(f"<p>{len(rows) - len(shown):,} smaller clusters not shown (report.max_clusters = "
                   f"{cfg.report.max_clusters}).</p>")
    return True, "\n".join(out)


def _snippets(r: _Reader, doc_ids: list[str], chars: int = 220) -> dict[str, str]:
    docs = r.table(DOCUMENTS)
    if docs is None or not doc_ids:
        return {}
    rows = docs.where(F.col("doc_id").isin(doc_ids)).select("doc_id", F.substring("text", 1, chars * 2).alias("t")) \
        .collect()
    out = {}
    for row in rows:
        text = " ".join(row["t"].split())
        out[row["doc_id"]] = text if len(text) <= chars else text[:chars].rsplit(" ", 1)[0] + " ..."
    return out


# -- super-clusters -------------------------------------------------------------------------------

def _super_clusters(r: _Reader) -> list[dict] | None:
    table = r.table(SUPER_CLUSTERS)
    if table is None:
        return None
    rows = [row.asDict() for row in table.orderBy("super_cluster_id").collect()]
    for s in rows:
        s["name"] = super_cluster_name(s, 4)
    return rows


def _super_section(r: _Reader, supers: list[dict] | None) -> tuple[bool, str]:
    if supers is None:
        return False, r.missing(SUPER_CLUSTERS)
    if not supers:
        return False, _empty(SUPER_CLUSTERS)
    body = [[e(s["name"]), e(", ".join(map(str, s["member_clusters"]))), _num(s["n_docs"]), _num(s["n_tokens"]),
             _num(s["token_share"], 3)] for s in supers]
    return True, (f"<p>{len(supers)} super-clusters: the kept clusters merged by Ward linkage of their centroids, "
                  "named by their most shared top terms. The token share is the search's prior p.</p>"
                  + _table(["super-cluster (top terms)", "member clusters", "docs", "tokens", "token share p"], body,
                           numeric={2, 3, 4}))


# -- mixtures -------------------------------------------------------------------------------------

@dataclass
class _Mixtures:
    chosen: dict | None
    others: list[dict]
    how: str  # how the chosen one was found


def _mixtures(r: _Reader, cfg: Config, supers: list[dict] | None) -> _Mixtures | None:
    table = r.table(MIXTURES)
    if table is None or not supers:
        return None
    fit = supers[0]["cluster_run_id"]
    rows = [row.asDict() for row in table.where(F.col("cluster_run_id") == fit).orderBy(F.desc("created_at")).collect()
            if len(row["weights"]) == len(supers)]
    if not rows:
        return _Mixtures(None, [], "")
    from climb_spark.ids import pool_id, search_id

    try:
        pool = pool_id(cfg, supers)
        ids = {m: search_id(cfg, pool, m) for m in METHODS}
    except OSError:  # a target file that is gone: fall back on the latest searches
        ids = {}
    wanted = cfg.export.search_id or ids.get(cfg.export.method)
    by_id = {m["search_id"]: m for m in rows}
    chosen, how = by_id.get(wanted), f"the search export uses (export.method = {cfg.export.method})"
    if chosen is None:
        chosen = next((m for m in rows if m["method"] == cfg.export.method), rows[0])
        how = (f"the latest {chosen['method']} search on these super-clusters (this config's own search has no "
               "mixture yet)")
    others = []
    for method in METHODS:
        if method == chosen["method"]:
            continue
        mine = by_id.get(ids.get(method)) or next((m for m in rows if m["method"] == method), None)
        if mine is not None:
            others.append(mine)
    return _Mixtures(chosen, others, how)


def _warnings(mlflow: "_Mlflow", run_id: str | None) -> list[str]:
    """A search's warnings, as its MLflow run's `climb.warnings` tag holds them."""
    run = mlflow.run(run_id)
    tag = run.data.tags.get("climb.warnings", "none") if run is not None else "none"
    return [] if tag == "none" else tag.split(" | ")


def _mixture_section(r: _Reader, supers: list[dict] | None, mixtures: _Mixtures | None,
                     mlflow: "_Mlflow") -> tuple[bool, str]:
    if supers is None:
        return False, r.missing(SUPER_CLUSTERS)
    if mixtures is None:
        return False, r.missing(MIXTURES) if not r.exists(MIXTURES) else _empty(SUPER_CLUSTERS)
    if mixtures.chosen is None:
        return False, ('<p class="missing">No search has a mixture over these super-clusters yet; '
                       "<code>climb-spark search</code> writes one.</p>")
    chosen, others = mixtures.chosen, mixtures.others
    every = [chosen] + others
    prior = [float(p) for p in chosen["prior"]]
    out = [f"<p>Chosen: <b>{e(chosen['method'])}</b>, search <code>{e(chosen['search_id'])}</code>, "
           f"{e(mixtures.how)}. Prior p = each super-cluster's token share; the others are the baselines' final "
           "mixtures on the same super-clusters.</p>"]
    if chosen.get("explanation"):
        out.append(f"<p>Why this mixture: {e(chosen['explanation'])}.</p>")
    warned = {m["search_id"]: _warnings(mlflow, m.get("mlflow_run_id")) for m in every}

    def predicted(m: dict) -> str:
        cannot = any("cannot rank" in w for w in warned[m["search_id"]])
        # Short, as the column does not wrap: the warnings below say it in full.
        return _num(m["predicted_score"], 4) + (" (cannot rank: see warnings)"
                                                if cannot and m["predicted_score"] is not None else "")

    out.append(_table(["method", "search id", "proxies trained", "predicted score", "its observed score",
                       "best observed score", "why", "created"],
                      [[e(m["method"]) + (" (chosen)" if m is chosen else ""), f"<code>{e(m['search_id'])}</code>",
                        _num(m["n_proxies"]), predicted(m), _num(m.get("observed_score"), 4),
                        _num(m["best_observed_score"], 4), f'<div class="why">{e(m.get("explanation") or "")}</div>',
                        e(str(m["created_at"])[:19])] for m in every],
                      ["chosen"] + [""] * len(others), numeric={2, 3, 4, 5}))
    said = [(m["method"], w) for m in every for w in warned[m["search_id"]]]
    if said:
        out.append("<p>The searches' warnings (also on their MLflow runs, tag <code>climb.warnings</code>):</p>"
                   + "".join(f'<p class="warn">{e(method)}: WARNING {e(w)}</p>' for method, w in said))
    elif mlflow.client is not None:
        out.append("<p>No search warned (no predictor that could not rank, no target overlap).</p>")
    header = ["super-cluster (top terms)", "prior p"] + [e(m["method"]) + (" (chosen)" if m is chosen else "")
                                                         for m in every]
    body = [[e(s["name"]), _num(prior[i], 3)] + [_num(m["weights"][i], 3) for m in every]
            for i, s in enumerate(supers)]
    out.append(_table(header, body, numeric=set(range(1, len(header)))))
    from climb_spark.stages.search import plots

    fig = plots.mixture_vs_prior([s["name"] for s in supers], prior,
                                 {f"{m['method']}{' (chosen)' if m is chosen else ''}": m["weights"] for m in every})
    out.append(_figure(_png(fig, "chosen mixture against the prior and the baselines"),
                       "The chosen mixture's weight for each super-cluster beside the prior p (its share of the kept "
                       "tokens) and the baselines' final mixtures."))
    return True, "\n".join(out)


# -- target ---------------------------------------------------------------------------------------

def _target_section(r: _Reader, mixtures: _Mixtures | None, mlflow: "_Mlflow") -> tuple[bool, str]:
    if mixtures is None or mixtures.chosen is None:
        return False, '<p class="missing">Not there yet: no search has a final mixture (see Mixture).</p>'
    import json

    chosen = mixtures.chosen
    target = json.loads(chosen["config"] or "{}").get("target", {})
    kind = target.get("kind", "holdout")
    if kind == "holdout":
        where = [f"source <code>{e(target['source'])}</code>" if target.get("source") else "",
                 f"super-cluster {e(target['super_cluster'])}" if target.get("super_cluster") is not None else ""]
        where = " and ".join(w for w in where if w)
        what = (f"a fixed {float(target.get('holdout_fraction', 0.1)):.0%} hash slice of the kept documents"
                + (f" of {where}" if where else "") + ", held out of every training pool and of the export")
        scored = "the negative mean loss per target token (higher is better)"
    elif kind == "file":
        what = (f"the texts of <code>{e(target.get('path'))}</code>; those the corpus also holds are left out of "
                "every training pool and of the export")
        scored = "the negative mean loss per target token (higher is better)"
    else:
        what = (f"the multiple-choice items of <code>{e(target.get('path'))}</code>, each choice scored by "
                "log-likelihood")
        scored = "the accuracy over the items (higher is better)"
    out = [f"<p>The search (<b>{e(chosen['method'])}</b>, as every method compared) scores a mixture by training a "
           f"proxy on it and evaluating the proxy on the target: {what}. The score is {scored}.</p>"]
    pools = r.table(TOKEN_POOLS)
    row = (pools.where((F.col("pool_id") == chosen["pool_id"]) & (F.col("split") == "target")).first()
           if pools is not None else None)
    if row is not None:
        out.append(f"<p>The target holds <b>{row['n_docs']:,}</b> documents, {row['n_tokens']:,} tokens of the "
                   f"proxies' tokenizer; each proxy is evaluated on the first "
                   f"{min(int(target.get('max_tokens', row['n_tokens'])), row['n_tokens']):,} of them "
                   f"(<code>target.max_tokens</code>; token pool <code>{e(chosen['pool_id'])}</code>).</p>")
    run = mlflow.run(chosen.get("mlflow_run_id"))
    overlap = run.data.tags.get("climb.target_overlap") if run is not None else None
    if overlap:
        out.append(f"<p>In the corpus: {e(overlap)}.</p>")
    return True, "\n".join(out)


# -- export ---------------------------------------------------------------------------------------

def _manifests(cfg: Config) -> list[dict]:
    """Every export's manifest under export.output, newest first."""
    import json

    from pyarrow import fs

    filesystem, root = files.filesystem(cfg.export.output, cfg.s3)
    found = []
    for info in filesystem.get_file_info(fs.FileSelector(root, allow_not_found=True)):
        where = f"{info.path}/manifest.json"
        if info.type != fs.FileType.Directory or filesystem.get_file_info(where).type != fs.FileType.File:
            continue
        with filesystem.open_input_stream(where) as f:
            try:
                found.append(json.loads(f.read().decode("utf-8")))
            except ValueError:
                continue
    return sorted(found, key=lambda m: str(m.get("created_at", "")), reverse=True)


def _export_section(cfg: Config, supers: list[dict] | None, mixtures: _Mixtures | None) -> tuple[bool, str]:
    # Exports of this schema's searches only: schemas of one lakehouse share export.output.
    ours = {m["search_id"] for m in ([mixtures.chosen] + mixtures.others if mixtures and mixtures.chosen else [])}
    manifests = [m for m in _manifests(cfg) if m.get("search_id") in ours]
    if not manifests:
        return False, ('<p class="missing">Not there yet: no export under <code>'
                       f'{e(cfg.export.output)}</code>; <code>climb-spark export</code> writes one.</p>')
    chosen = mixtures.chosen if mixtures else None
    mine = [m for m in manifests if chosen is not None and m.get("search_id") == chosen["search_id"]]
    m = (mine or manifests)[0]
    names = {s["super_cluster_id"]: s["name"] for s in supers or []}
    out = [f"<p>Export <code>{e(m['export_id'])}</code> of the <b>{e(m['method'])}</b> mixture (search <code>"
           f"{e(m['search_id'])}</code>){'' if mine or chosen is None else ', not the chosen search: the latest export'}"
           f": <b>{m['total_docs']:,}</b> documents, <b>{m['total_tokens']:,}</b> tokens in {len(m.get('files', []))} "
           f"{e(m['format'])} shards at <code>{e(m['data'])}</code> and the rows <code>export_id = "
           f"'{e(m['export_id'])}'</code> of <code>training_mix</code>, written {e(str(m['created_at'])[:19])}.</p>"]
    if "kept_tokens" in m:
        out.append(f"<p>Tokens are words and punctuation: the kept clusters hold {m['kept_tokens']:,}, of which "
                   f"{m['held_out_tokens']:,} are the search's target and never exported, so "
                   f"{m['available_tokens']:,} can be drawn. The budget is {m['token_budget']:,} "
                   f"({e(m['budget_from'])}): super-cluster i gets weight_i x budget tokens, each document taken "
                   "once with the probability that gives, and repeated only where a super-cluster has fewer tokens "
                   "than its share (passes above 1).</p>")
    body, classes = [], []
    for c in m["super_clusters"]:
        passes = c["passes"]
        body.append([e(names.get(c["super_cluster_id"], c["super_cluster_id"])), _num(c["weight"], 3),
                     _num(c["target_tokens"]), _num(c["available_tokens"]), _num(c["tokens"]), _num(c["docs"]),
                     _num(c["share"], 3),
                     f"<b>x{passes:.2f}: repeated, the cluster ran out</b>" if passes > 1 else f"x{passes:.2f}"])
        classes.append("chosen" if passes > 1 else "")
    out.append(_table(["super-cluster (top terms)", "weight", "tokens wanted", "tokens available", "tokens exported",
                       "documents", "share exported", "passes over its tokens"], body, classes,
                      numeric={1, 2, 3, 4, 5, 6}))
    out += [f'<p class="warn">WARNING {e(w)}</p>' for w in m.get("warnings", [])]
    return True, "\n".join(out)


# -- comparison -----------------------------------------------------------------------------------

def _comparison(r: _Reader, chosen_search: str | None) -> list[dict] | None:
    """The latest compare that retrained the chosen mixture (a later compare under other seeds is
    another run's), else the latest one."""
    table = r.table(COMPARISONS)
    if table is None:
        return None
    latest = (table.orderBy((F.col("search_id") == F.lit(chosen_search)).desc_nulls_last(), F.desc("created_at"),
                            "compare_id").select("compare_id").first())
    if latest is None:
        return []
    return [row.asDict() for row in table.where(F.col("compare_id") == latest["compare_id"]).collect()]


def _comparison_section(r: _Reader, rows: list[dict] | None) -> tuple[bool, str]:
    if rows is None:
        return False, r.missing(COMPARISONS)
    if not rows:
        return False, _empty(COMPARISONS)
    from climb_spark.stages.search import plots

    first = rows[0]
    out = [f"<p>Compare <code>{e(first['compare_id'])}</code>: each method's final mixture retrained over seeds "
           f"{e(', '.join(map(str, first['seeds'])))} with the search's own proxy, and again with a larger model (the "
           "target scale: does the mixture the proxies chose also win for a model closer to the one you will train?). "
           "Mean +- sample std over the seeds; the margin is the mean seed-by-seed score difference to the best "
           "method (for the best method: its lead over the runner-up), with its paired interval; * = the interval "
           "excludes 0.</p>"]
    for scale in ("proxy", "target"):
        mine = sorted([row for row in rows if (row.get("scale") or "proxy") == scale],
                      key=lambda row: row.get("rank") or -row["mean_score"])
        if not mine:
            continue
        lead = mine[0]
        verdict = ("" if lead.get("margin") is None else
                   f" Its lead over {e(lead['margin_against'])} is {lead['margin']:+.4f} (one seed: no interval)."
                   if lead.get("margin_low") is None else
                   f" Its lead over {e(lead['margin_against'])} is <b>{'significant' if lead['significant'] else 'not significant'}</b>"
                   f" ({lead['margin']:+.4f}, interval [{lead['margin_low']:+.4f}, {lead['margin_high']:+.4f}]).")
        out.append(f"<h3>{scale.capitalize()} scale: {e(lead.get('model') or '')}</h3>"
                   f"<p>First: <b>{e(lead['method'])}</b>.{verdict}</p>")
        out.append(_table(["rank", "method", "target loss (lower is better)", "score (higher is better)",
                           "margin", "paired interval", "per-seed scores", "search id"],
                          [[_num(row.get("rank")), e(row["method"]),
                            "-" if row["mean_target_loss"] is None else
                            f"{row['mean_target_loss']:.4f} +- {row['std_target_loss']:.4f}",
                            f"{row['mean_score']:.4f} +- {row['std_score']:.4f}",
                            "-" if row.get("margin") is None else
                            f"{row['margin']:+.4f} vs {e(row['margin_against'])}" + (" *" if row.get("significant") else ""),
                            "-" if row.get("margin_low") is None else f"[{row['margin_low']:+.4f}, {row['margin_high']:+.4f}]",
                            e(", ".join(f"{s:.4f}" for s in row["scores"])), f"<code>{e(row['search_id'])}</code>"]
                           for row in mine], numeric={0, 2, 3, 4}))
    out.append(_figure(_png(plots.comparison(rows), "each method's score against the best method's, per scale"),
                       "Each method's mean seed-by-seed score difference to the best method, per scale, with its "
                       "paired interval (the best method's bar is its lead over the runner-up). The axis is the "
                       "difference, so zero is on it: where an interval crosses zero, the seeds do not tell the two "
                       "methods apart."))
    return True, "\n".join(out)


# -- MLflow: the predictor's diagnostics and the runs ---------------------------------------------

class _Mlflow:
    """The tracking store, read lazily; `error` says why it could not be read."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.error: str | None = None
        self._client = None
        self._opened = False
        self.experiment_id: str | None = None

    @property
    def client(self):
        if not self._opened:
            self._opened = True
            try:
                self._client = tracking.reader(self.cfg.mlflow)
                if self._client is None:
                    self.error = f"no MLflow store at {self.cfg.mlflow.tracking_uri} yet"
                else:
                    found = self._client.get_experiment_by_name(self.cfg.mlflow.experiment)
                    self.experiment_id = found.experiment_id if found else None
            except Exception as err:  # an unreachable server must not cost the whole page
                self.error, self._client = f"MLflow could not be read: {type(err).__name__}: {err}"[:400], None
        return self._client

    def run(self, run_id: str | None):
        if not run_id or self.client is None:
            return None
        try:
            return self.client.get_run(run_id)
        except Exception as err:  # a run deleted from the store, a server gone
            self.error = f"MLflow run {run_id} could not be read: {type(err).__name__}: {err}"[:400]
            return None


def _predictor_section(mixtures: _Mixtures | None, mlflow: _Mlflow) -> tuple[bool, str]:
    if mixtures is None or mixtures.chosen is None:
        return False, '<p class="missing">Not there yet: no search has a final mixture (see Mixture).</p>'
    chosen = mixtures.chosen
    run = mlflow.run(chosen.get("mlflow_run_id"))
    if run is None:
        return False, f'<p class="missing">The search\'s MLflow run cannot be read: {e(mlflow.error or "no run id")}.</p>'
    client = mlflow.client
    keys = [k for k in DIAGNOSTICS if k in run.data.metrics]
    out = [f"<p>The <b>{e(chosen['method'])}</b> search's predictor, from its MLflow run <code>{e(run.info.run_id)}"
           f"</code>: final mixture chosen from <b>{e(run.data.tags.get('climb.final_from', '-'))}</b>.</p>"]
    warnings = run.data.tags.get("climb.warnings")
    if warnings and warnings != "none":
        out += [f'<p class="warn">WARNING {e(w)}</p>' for w in warnings.split(" | ")]
    if not keys:
        out.append(f"<p>The {e(chosen['method'])} method fits no predictor, so there are no diagnostics.</p>")
    else:
        history = {k: {m.step: m.value for m in client.get_metric_history(run.info.run_id, k)} for k in keys}
        pairs = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "predictor_n_pairs")}
        if not pairs:
            train = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "predictor_n_train")}
            val = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "predictor_n_val")}
            pairs = {s: train[s] + val.get(s, 0) for s in train}
        steps = sorted({s for h in history.values() for s in h})
        body = [[_num(s), _num(pairs.get(s))] + [_diagnostic(k, history[k].get(s)) for k in keys] for s in steps]
        out.append("<p>Per predictor fit (step = the iteration it was fitted after). Every correlation and error "
                   "here is <b>held-out</b> (never measured on the pairs the model was fitted on): "
                   + "; ".join(f"<i>{e(DIAGNOSTICS[k][0])}</i>: {e(DIAGNOSTICS[k][1])}" for k in keys) + ".</p>")
        out.append(_table(["step", "pairs"] + [e(DIAGNOSTICS[k][0]) for k in keys], body,
                          numeric=set(range(len(keys) + 2))))
    figures = _run_figures(client, run.info.run_id)
    if figures:
        out.append("<p>The search's figures, from its MLflow run:</p>" + '<div class="figs">' + "".join(
            _figure(_img(data, FIGURES[fig]), FIGURES[fig]) for fig, data in figures) + "</div>")
    return True, "\n".join(out)


def _diagnostic(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    if key == "predictor_can_rank":
        return "yes" if value else "no"
    if key == "predictor_distinct_share":
        return f"{value:.1%}"
    return f"{value:.3f}"


def _run_figures(client, run_id: str) -> list[tuple[str, bytes]]:
    import tempfile
    from pathlib import Path

    import os

    out = []
    quiet = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # three small files: no progress bars
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for fig in FIGURES:
                try:
                    local = client.download_artifacts(run_id, f"figures/{fig}.png", tmp)
                except Exception:  # a search without that figure (no predictor, one iteration)
                    continue
                out.append((fig, Path(local).read_bytes()))
    finally:
        if quiet is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = quiet
    return out


def _mlflow_section(cfg: Config, mixtures: _Mixtures | None, comparison: list[dict] | None,
                    mlflow: _Mlflow) -> tuple[bool, str]:
    uri = cfg.mlflow.tracking_uri
    out = [f"<p>Tracking URI <code>{e(uri)}</code>, experiment <code>{e(cfg.mlflow.experiment)}</code>"
           + (f" (id {e(mlflow.experiment_id)})" if mlflow.client is not None and mlflow.experiment_id else "") + ".</p>"]
    if mlflow.client is None:
        out.append(f'<p class="missing">{e(mlflow.error)}.</p>')
    elif not uri.startswith(("http://", "https://", "databricks")):
        out.append(f"<p>Open it with <code>mlflow ui --backend-store-uri {e(uri)}</code> and search for a run id.</p>")
    runs = []
    if mixtures is not None and mixtures.chosen is not None:
        for m in [mixtures.chosen] + mixtures.others:
            runs.append((f"search ({m['method']})" + (", chosen" if m is mixtures.chosen else ""), m["search_id"],
                         m.get("mlflow_run_id")))
    if comparison:
        runs.append(("compare", comparison[0]["compare_id"], comparison[0].get("mlflow_run_id")))
    if not runs:
        out.append('<p class="missing">Not there yet: no search or comparison has been run.</p>')
        return False, "\n".join(out)
    body = []
    for role, ident, run_id in runs:
        run = mlflow.run(run_id) if mlflow.client is not None else None
        url = tracking.run_url(cfg.mlflow, run.info.experiment_id, run_id) if run is not None else None
        cell = f'<a href="{e(url)}"><code>{e(run_id)}</code></a>' if url else f"<code>{e(run_id or '-')}</code>"
        body.append([e(role), f"<code>{e(ident)}</code>", cell,
                     e(run.info.run_name) if run is not None else "-", e(run.info.status) if run is not None else "-"])
    out.append(_table(["what", "search / compare id", "MLflow run id", "run name", "status"], body))
    return True, "\n".join(out)
