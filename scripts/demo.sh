#!/usr/bin/env bash
# Set up (first run only) and run the end-to-end demo on bundled data.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/forget demo "$@"
