#!/usr/bin/env bash
# Build the CIP Bento from the repository: the cip-platform wheel, then `bentoml build`.
# Usage: deploy/build-bento.sh [extra `bentoml build` options]   (run from anywhere)
# Then: bentoml containerize cip:latest -t cip:latest   (needs a Docker engine)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
UV=${UV:-.venv/bin/uv}
version=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
wheel="dist/cip_platform-${version}-py3-none-any.whl"
grep -q "$wheel" bentofile.yaml || {
    echo "bentofile.yaml does not list $wheel (update python.wheels to the project version)" >&2
    exit 2
}
rm -f dist/cip_platform-*.whl
"$UV" build --quiet --wheel --out-dir dist .
exec "$(dirname "$PY")/bentoml" build "$@" .
