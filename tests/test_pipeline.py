"""`climb-spark run` end to end in its own JVM on a slice of the real corpus, then a fresh
session reads the tables by name through the persistent local catalog."""
import json
import re
import subprocess
import sys
import textwrap

from .conftest import ROOT


def test_main_job_end_to_end_and_tables_readable_by_name(tmp_path):
    sets = {
        "spark.master": "local[2]",
        "spark.jars_dir": str(ROOT / ".cache" / "jars"),
        "spark.conf.spark.sql.shuffle.partitions": "2",
        "lakehouse.root": str(tmp_path / "lake"),
        "corpus.output": str(tmp_path / "corpus"),
        "corpus.max_docs": "150",
        "ingest.input": str(tmp_path / "corpus"),
        "quality.model_dir": str(tmp_path / "quality"),
        "cluster.k": "8",
        "quality.bucket": "262144",
        "mlflow.tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
        "mlflow.artifact_location": str(tmp_path / "mlartifacts"),
    }
    args = ["--conf", "conf/local.yaml"] + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    done = subprocess.run([sys.executable, "-m", "climb_spark", "run", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sample corpus: 150 documents" in done.stdout
    m = re.search(r"(\d+) input records from (\d+) files = ([\d,]+) documents \(([\d,]+) new\) "
                  r"\+ (\d+) duplicates \+ (\d+) rejects \[balanced\]", done.stdout)
    assert m, done.stdout
    records, _, docs, new, dups, rejects = (int(g.replace(",", "")) for g in m.groups())
    assert records == 150 and docs == new and docs + dups + rejects == 150

    query = textwrap.dedent("""
        import json, sys
        from climb_spark.config import load
        from climb_spark.session import build_session
        cfg = load(["conf/local.yaml"], sys.argv[1:])
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
    """)
    fresh = subprocess.run([sys.executable, "-c", query, *[f"{k}={v}" for k, v in sets.items()]],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    out = json.loads(fresh.stdout.split("RESULT", 1)[1])
    assert out["documents"] == docs and out["rejects"] == rejects
    assert out["sources"] >= 7
    assert out["tables"] == ["annotations", "centroids", "cluster_stats", "doc_clusters", "doc_features",
                             "documents", "duplicates", "rejects", "super_clusters"]
    assert out["clustered"] == docs and out["supers"] and out["pruned"] >= 0
    assert all(desc and n > 0 for _, n, desc in out["supers"])
    n, dim, mean_quality = out["features"]
    assert n == docs and dim == 384 and 0 < mean_quality < 5
    assert "train-quality: 4 fastText classifiers from" in done.stdout and "macro-F1" in done.stdout
    assert f"(heuristic-v1): {docs:,} sampled, {docs:,} needed labels, {docs:,} labelled, 0 errors" in done.stdout
    assert f"doc_features now {docs:,}" in done.stdout
    assert out["provider"] == "delta"
