"""Benchmark: the ledger store at a million entries, on SQLite and optionally PostgreSQL.

Run it as a script, not a test:

    python benchmarks/bench_ledger.py                               # SQLite, 10^6 entries
    python benchmarks/bench_ledger.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    python benchmarks/bench_ledger.py --entries 100000 --no-sqlite --postgres URL
    python benchmarks/bench_ledger.py --entries 100000 --profile verify   # cProfile one phase

For each database the script

1. appends `--entries` entries through `Ledger.append`, `--batch` per transaction, with a payload
   the size of a real one (a sha256, a record count, a shard and slice), and signs a head after
   every 100 batches, as a busy workspace would (`appends_per_s`);
2. signs the head of the whole log, consistency check against the previous head included
   (`sign_head_ms`);
3. times `ledger.store.inclusion_proof` for `--proofs` seeded random indices against the full tree,
   each proof checked against the signed root afterwards (`proof_median_ms`, `proof_p95_ms`);
4. runs `Ledger.verify` over the whole log: every leaf and stored subtree hash recomputed, every
   signed head checked (`verify_s`).

The goals: at least 20,000 appends/s, an inclusion proof under 1 ms, verification of 10^6 entries
under 30 s. `--profile PHASE` (append, proof, verify, sign) runs that phase under cProfile and
prints the top functions by cumulative and by own time to stderr.

Progress goes to stderr; the last line of stdout is one JSON object with the results. A PostgreSQL
run creates a database of its own on the given server and drops it at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import platform
import pstats
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from scratch_database import scratch_database  # beside this script: its folder is sys.path[0]
from sqlalchemy.engine import Engine

from forget.store.datastore import create_engine, resolve_url
from forget.store.migrate import upgrade
from ledger import merkle, store
from ledger.log import Ledger

GOAL_APPENDS_PER_S = 20_000
GOAL_PROOF_MS = 1.0
GOAL_VERIFY_S = 30.0
GOAL_VERIFY_AT = 1_000_000
HEAD_EVERY_BATCHES = 100
ORIGIN = "bench.local/ledger"
T = TypeVar("T")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Phase:
    """Runs a phase, under cProfile when it is the one asked for."""

    def __init__(self, profile: str | None, top: int) -> None:
        self.profile = profile
        self.top = top

    def run(self, name: str, backend: str, call: Callable[[], T]) -> T:
        if self.profile != name:
            return call()
        profiler = cProfile.Profile()
        result = profiler.runcall(call)
        for order in ("cumulative", "tottime"):
            buffer = io.StringIO()
            pstats.Stats(profiler, stream=buffer).sort_stats(order).print_stats(self.top)
            log(f"cProfile of {name} on {backend}, by {order}:\n{buffer.getvalue()}")
        return result


def payload(i: int) -> dict[str, Any]:
    """About the size of a `lineage.slice` entry."""
    return {
        "manifest_root": hashlib.sha256(i.to_bytes(8, "big")).hexdigest(),
        "records": i % 997,
        "shard": i % 20,
        "slice": i % 10,
    }


def append_all(engine: Engine, ledger: Ledger, key: Ed25519PrivateKey, entries: int, batch: int) -> tuple[float, int]:
    """Append `entries` in batches, signing a head every HEAD_EVERY_BATCHES; returns (seconds, heads)."""
    heads = 0
    started = time.perf_counter()
    last_report = started
    for number, first in enumerate(range(0, entries, batch), start=1):
        items = [("bench.event", payload(i)) for i in range(first, min(first + batch, entries))]
        with engine.begin() as connection:
            ledger.append(connection, items)
        if number % HEAD_EVERY_BATCHES == 0 and first + batch < entries:  # the last head is timed apart
            with engine.begin() as connection:
                ledger.sign_head(connection, key)
            heads += 1
        now = time.perf_counter()
        if now - last_report > 10:
            done = min(first + batch, entries)
            log(f"  {done:,} appended, {done / (now - started):,.0f}/s")
            last_report = now
    return time.perf_counter() - started, heads


def time_proofs(engine: Engine, size: int, count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    indices = [rng.randrange(size) for _ in range(count)]
    times: list[float] = []
    proofs: list[list[bytes]] = []
    with engine.connect() as connection:
        store.inclusion_proof(connection, indices[0], size)  # warm SQLAlchemy's statement cache
        for index in indices:
            started = time.perf_counter()
            proofs.append(store.inclusion_proof(connection, index, size))
            times.append(time.perf_counter() - started)
        root = store.root(connection, size)
        for index, proof in zip(indices, proofs, strict=True):
            stored = store.read_entry(connection, index)
            assert stored is not None
            merkle.verify_inclusion(merkle.leaf_hash(stored.entry), index, size, proof, root)
    return times


def bench(
    backend: str, engine: Engine, entries: int, batch: int, proofs: int, seed: int, phase: Phase
) -> dict[str, Any]:
    upgrade(engine)
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"bench-ledger").digest())
    ledger = Ledger(ORIGIN, key.public_key())

    log(f"{backend}: appending {entries:,} entries in batches of {batch:,}")
    append_s, heads = phase.run("append", backend, lambda: append_all(engine, ledger, key, entries, batch))
    log(f"{backend}: {entries / append_s:,.0f} appends/s ({append_s:.1f} s, {heads} heads signed)")

    def sign() -> float:
        with engine.begin() as connection:
            started = time.perf_counter()
            head = ledger.sign_head(connection, key)
            elapsed = time.perf_counter() - started
        assert head is not None and head.size == entries
        return elapsed

    sign_s = phase.run("sign", backend, sign)
    log(f"{backend}: sign_head at {entries:,} in {sign_s * 1e3:.2f} ms")

    times = phase.run("proof", backend, lambda: time_proofs(engine, entries, proofs, seed))
    proof_ms = statistics.median(times) * 1e3
    p95_ms = sorted(times)[int(0.95 * (len(times) - 1))] * 1e3
    log(f"{backend}: inclusion proof median {proof_ms:.3f} ms, p95 {p95_ms:.3f} ms ({proofs} proofs)")

    def verify() -> tuple[float, Any]:
        with engine.connect() as connection:
            started = time.perf_counter()
            report = ledger.verify(connection)
            return time.perf_counter() - started, report

    log(f"{backend}: verifying the whole log")
    verify_s, report = phase.run("verify", backend, verify)
    assert report.entries == entries and report.heads == heads + 1
    log(f"{backend}: verified {report.entries:,} entries and {report.heads} heads in {verify_s:.1f} s")

    appends_per_s = entries / append_s
    result: dict[str, Any] = {
        "backend": backend,
        "entries": entries,
        "batch": batch,
        "signed_heads": report.heads,
        "append_s": round(append_s, 3),
        "appends_per_s": round(appends_per_s),
        "sign_head_ms": round(sign_s * 1e3, 3),
        "proofs": proofs,
        "proof_median_ms": round(proof_ms, 4),
        "proof_p95_ms": round(p95_ms, 4),
        "verify_s": round(verify_s, 3),
        "verify_per_entry_us": round(verify_s / entries * 1e6, 2),
        "goal_appends_met": appends_per_s >= GOAL_APPENDS_PER_S,
        "goal_proof_met": proof_ms < GOAL_PROOF_MS,
        # The verify goal is for 10^6 entries; at another size, scale linearly (verify is O(n)).
        "goal_verify_met": verify_s * GOAL_VERIFY_AT / entries < GOAL_VERIFY_S,
    }
    return result


@contextmanager
def sqlite_engine() -> Iterator[Engine]:
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as folder:
        engine = create_engine(resolve_url("sqlite:///ledger.db", Path(folder)), must_exist=False)
        try:
            yield engine
        finally:
            engine.dispose()


@contextmanager
def postgres_engine(server: str) -> Iterator[Engine]:
    with scratch_database(server, "forget_bench") as url:
        engine = create_engine(url, must_exist=False)
        try:
            yield engine
        finally:
            engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000, help="Ledger entries to append.")
    parser.add_argument("--batch", type=int, default=1_000, help="Entries per transaction.")
    parser.add_argument("--proofs", type=int, default=200, help="Inclusion proofs to time.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the proof indices.")
    parser.add_argument("--postgres", metavar="URL", help="Also run on this PostgreSQL server.")
    parser.add_argument("--no-sqlite", action="store_true", help="Skip the SQLite run.")
    parser.add_argument(
        "--profile", choices=["append", "sign", "proof", "verify"], help="Run this phase under cProfile."
    )
    parser.add_argument("--top", type=int, default=25, help="Functions to show per profile.")
    args = parser.parse_args(argv)
    if args.entries < 2 or args.batch < 1 or args.proofs < 1:
        parser.error("--entries must be at least 2, --batch and --proofs at least 1")

    phase = Phase(args.profile, args.top)
    results: list[dict[str, Any]] = []
    if not args.no_sqlite:
        with sqlite_engine() as engine:
            results.append(bench("sqlite", engine, args.entries, args.batch, args.proofs, args.seed, phase))
    if args.postgres:
        with postgres_engine(args.postgres) as engine:
            with engine.connect() as connection:
                version = connection.execute(sa.text("SHOW server_version")).scalar()
            result = bench("postgresql", engine, args.entries, args.batch, args.proofs, args.seed, phase)
            results.append({**result, "server_version": version})
    summary = {
        "benchmark": "ledger",
        "python": platform.python_version(),
        "sqlalchemy": sa.__version__,
        "sqlite": sqlite3.sqlite_version,
        "goals": {
            "appends_per_s": GOAL_APPENDS_PER_S,
            "proof_ms": GOAL_PROOF_MS,
            "verify_s_at_1e6": GOAL_VERIFY_S,
        },
        "results": results,
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
