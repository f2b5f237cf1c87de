#!/usr/bin/env bash
# Stop the server that postgres-up.sh started.
set -euo pipefail
dir=${1:?usage: postgres-down.sh DIR}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null
else "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null; fi
