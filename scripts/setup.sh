#!/usr/bin/env bash
# Creates .venv with everything drip_timm needs (idempotent). PyTorch first, pinned to the builds
# this project is tested with; then the package itself (editable) with its test extra.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
