"""Benchmark: ingest throughput (rows/s) of Fertility-like rows, in process (issue 15, goal 50,000 rows/s at 10^6).

    python benchmarks/bench_ingest.py --rows 1000000 --shards 100 --slices 10
    python benchmarks/bench_ingest.py --rows 1000000 --database postgresql+psycopg://...

Prints wall and CPU seconds of `ingest_file` (file read to commit, ledger entries included),
rows/s, the load average, and the peak resident memory of the process; the last line of stdout
is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale_data import write

from forget.data.ingest import ColumnChoice, ingest_file
from forget.workspace.core import InitOptions, init_workspace


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--shards", type=int, default=100)
    parser.add_argument("--slices", type=int, default=10)
    parser.add_argument("--database", default=None, help="a PostgreSQL URL (default: SQLite in the workspace)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = write(Path(folder) / "data.parquet", args.rows)
        options = InitOptions(shards=args.shards, slices=args.slices, seed=1)
        if args.database:
            options = InitOptions(shards=args.shards, slices=args.slices, seed=1, database=args.database)
        workspace = init_workspace(Path(folder) / "ws", options)
        choice = ColumnChoice(subject="subject", label="morekids", record_id="record")
        load = os.getloadavg()[0]
        cpu, wall = time.process_time(), time.perf_counter()
        result = ingest_file(workspace, data, choice)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out = {
            "rows": result.rows,
            "subjects": result.subjects,
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
            "rows_per_s_wall": round(result.rows / wall),
            "rows_per_s_cpu": round(result.rows / cpu),
            "load_average": round(load, 2),
            "peak_rss_mib": round(peak),
            "database": "postgresql" if args.database else "sqlite",
        }
        print(json.dumps(out))


if __name__ == "__main__":
    main()
