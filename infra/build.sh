#!/usr/bin/env bash
# Builds the deployable artifacts with `sam build`: no Docker, no local Python 3.13 (the layer's
# wheels are fetched for CPython 3.13 manylinux x86_64 by infra/Makefile).
#
#   infra/build.sh [BUILD_DIR]      default BUILD_DIR: .aws-sam/build at the repository root
#
# Then: sam deploy --guided --template-file BUILD_DIR/template.yaml
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${1:-$ROOT/.aws-sam/build}"
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$PWD/$BUILD_DIR" ;; esac

if [[ -z "${SAM:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/sam" ]]; then SAM="$ROOT/.venv/bin/sam"; else SAM="sam"; fi
fi
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON="python3"; fi
fi
export PYTHON
export SAM_CLI_TELEMETRY=0

mkdir -p "$(dirname "$BUILD_DIR")"
cd "$ROOT"
"$SAM" build --template-file "$ROOT/infra/template.yaml" --build-dir "$BUILD_DIR" --parallel
