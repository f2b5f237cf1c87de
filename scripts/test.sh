#!/usr/bin/env bash
# Set up (first run only), lint, type-check and run the tests.
# With FORGET_TEST_POSTGRES_URL set, every database test also runs against that PostgreSQL server.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# Everything, slow tests included (a bare `pytest` skips them: pyproject.toml's addopts).
exec .venv/bin/python -m pytest -q -m "slow or not slow" "$@"
