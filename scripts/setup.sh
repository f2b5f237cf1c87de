#!/usr/bin/env bash
# Create .venv and install forget with everything: the training stack (the `train` extra; a bare
# `pip install forget` is the offline verifier only) and the dev tools. Idempotent: a second run only checks.
# torch==2.13.0 goes first: on a CPU-only machine a bare `torch` would pull a multi-GB CUDA build.
# On a GPU machine, install the CUDA build of torch you want into .venv first; it is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.forget-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -c 'import torch' 2>/dev/null || .venv/bin/python -m pip install -q torch==2.13.0
  .venv/bin/python -m pip install -q -e '.[train,dev]'
  echo "$want" > "$stamp"
fi
