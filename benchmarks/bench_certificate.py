"""Benchmark: verifying a certificate of one request of a 100-request batch, in a 10^6-entry log;
and the verifier's cost on a hostile 377 MB unsigned file.

Run it as a script, not a test (no workspace, no torch, no database: the log is synthetic, written
with the same evidence types as `forget run`):

    python benchmarks/bench_certificate.py                        # 10^6 entries, 100 requests
    python benchmarks/bench_certificate.py --entries 100000 --requests 100 --shards 20 --slices 10
    python benchmarks/bench_certificate.py --hostile-mb 377       # also the 377 MB unsigned file
    python benchmarks/bench_certificate.py --hostile-mb 377 --old-tree /tmp/old   # and the old verifier

1. A log of `--entries` entries ends with one batch: `--requests` requests over `--shards` shards
   of `--slices` slices (subject affinity: each request's records sit in one shard), their receipts,
   starts, per-request plans, new slice manifests, the run's purge, the retrained checkpoints of
   every rewound shard, the completions. The earlier entries are filler leaves.
2. It certifies the request whose shard was rewound furthest (the biggest certificate), and
   verifies it in a fresh process (`forget certificate verify`, the auditor's path) `--repeat` times:
   `verify_median_s`, `peak_rss_mib` (the process's maximum resident set) and `certificate_bytes`.
3. With `--hostile-mb`, it inflates that certificate's entry list to the given size without
   re-signing it, and runs `forget certificate verify` on it: with the default size cap, and with
   the cap lifted (`--max-bytes`), so the signature-first order is measured too. With `--old-tree`
   (a folder holding `ledger/` and `reports/` as they were before the change) the old verifier runs
   on the same file.

Progress goes to stderr; the last line of stdout is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from synthetic_batch import Item, Lineage, Times, log, synthetic_batch

from ledger import merkle
from ledger.evidence import ErasurePlanned, RequestCompleted, decode_entry
from ledger.log import Entry
from ledger.note import Checkpoint, sign_note, verifier_key
from reports.certificate import LoggedEntry, build_statement, derive_claims, sign_certificate

ORIGIN = "forget.local/bench"
TIME = "2026-11-22T09:00:00Z"
ROOT = Path(__file__).resolve().parents[1]


def batch(requests: int, shards: int, slices: int, rng: random.Random) -> tuple[list[Item], str]:
    """The batch's entries, in the order `forget run` writes them; and the request to certify."""
    ids = [f"req_{i:016x}" for i in range(requests)]
    times = Times("2026-11-01T08:00:00Z", "2026-12-01T08:00:00Z", TIME)
    made = synthetic_batch(ids, "run_" + "0" * 15 + "1", rng, Lineage(shards, slices), times, most_slices=3)
    return made.entries(), made.deepest()


class Tree:
    """Perfect-subtree hashes by level, so each RFC 9162 inclusion proof is a few lookups."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.levels = [leaves]
        while len(self.levels[-1]) > 1:
            level = self.levels[-1]
            self.levels.append([merkle.node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)])

    def subtree(self, start: int, end: int) -> bytes:
        width = end - start
        return self.levels[width.bit_length() - 1][start // width]


def certificate(entries: int, requests: int, shards: int, slices: int, key: Ed25519PrivateKey) -> bytes:
    rng = random.Random(2026)
    items, chosen = batch(requests, shards, slices, rng)
    filler = entries - len(items)
    if filler < 0:
        raise SystemExit(f"--entries must be at least {len(items)} for this batch")
    started = time.perf_counter()
    data = [b"filler %d" % i for i in range(filler)]
    data += [Entry(filler + i, kind, TIME, payload).encode() for i, (kind, payload) in enumerate(items)]
    leaves = [merkle.leaf_hash(d) for d in data]
    tree = Tree(leaves)
    size = len(leaves)
    root = merkle.root_hash_from(size, tree.subtree)
    note = sign_note(Checkpoint(ORIGIN, size, root).to_text(), ORIGIN, key)
    log(f"log of {size} entries and its tree in {time.perf_counter() - started:.1f} s")
    carried = []
    decoded = [decode_entry(data[filler + i]) for i in range(len(items))]
    completion = next(e for e in decoded if isinstance(e.payload, RequestCompleted) and e.payload.request_id == chosen)
    planned = next(e for e in decoded if isinstance(e.payload, ErasurePlanned) and e.payload.request_id == chosen)
    assert isinstance(completion.payload, RequestCompleted)
    shard = next(iter(completion.payload.checkpoints_after))
    for entry in decoded:
        payload = entry.payload
        own = getattr(payload, "request_id", None) == chosen
        shared = planned.index < entry.index < completion.index and (
            entry.kind == "erasure.checkpoints_purged" or getattr(payload, "shard", None) == shard
        )
        if own or shared:
            carried.append(entry)
    logged = [
        LoggedEntry(e.index, e.kind.value, data[e.index], leaves[e.index],
                    tuple(merkle.inclusion_proof_from(e.index, size, tree.subtree)))
        for e in carried
    ]  # fmt: skip
    claims = derive_claims(chosen, carried)
    statement = build_statement(claims=claims, origin=ORIGIN, checkpoint_note=note, entries=logged,
                                tool_version="0.1.0", issued_at=TIME)  # fmt: skip
    return sign_certificate(statement, key)


def measure(args: list[str], python_path: str | None = None, run_path: bool = False) -> dict[str, Any]:
    """Run a module (or, with `run_path`, a script) in a fresh Python process: wall time, exit, peak RSS.

    The measurement is written by an atexit handler: `python -m cli` leaves with `os._exit` after
    running the atexit handlers (cli.main.console), so code after the run would never execute; the
    exit status is the process's own."""
    run = "runpy.run_path(sys.argv[0], run_name='__main__')" if run_path else (
        "runpy.run_module(sys.argv[0], run_name='__main__')")  # fmt: skip
    script = (
        "import atexit, resource, sys, time, runpy\n"
        "start = time.perf_counter()\n"
        "sys.argv = sys.argv[1:]\n"
        "atexit.register(lambda: sys.stderr.write('\\nRESULT %f %d\\n' % (time.perf_counter() - start,"
        " resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))\n"
        f"{run}\n"
    )
    env = {**os.environ, "PYTHONPATH": python_path or str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, check=False)
    line = [x for x in done.stderr.splitlines() if x.startswith("RESULT ")][-1].split()
    first = [x for x in done.stderr.splitlines() if x.startswith("error:")] or [done.stdout.strip()[:120]]
    return {"seconds": round(float(line[1]), 3), "exit": done.returncode, "peak_rss_mib": round(int(line[2]) / 1024, 1),
            "said": first[0][:160]}  # fmt: skip


def inflate(data: bytes, size: int) -> bytes:
    """The same envelope with its statement's entry list repeated up to `size` bytes, not re-signed."""
    envelope = json.loads(data)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    entries = statement["predicate"]["log"]["entries"]
    per_copy = len(json.dumps(entries, separators=(",", ":"))) * 4 / 3  # base64 inside the envelope
    statement["predicate"]["log"]["entries"] = entries * max(1, round(size / per_copy))
    envelope["payload"] = base64.b64encode(json.dumps(statement, separators=(",", ":")).encode()).decode()
    return json.dumps(envelope).encode()


def old_verifier(old_tree: Path) -> str:
    """A script that runs the verifier in `old_tree` the way its CLI did (whole file, PEM key)."""
    return (
        "import sys\n"
        f"sys.path.insert(0, {str(old_tree)!r})\n"
        "from ledger.keys import load_public_key_bytes\n"
        "from reports.verify import verify_certificate\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "try:\n    verify_certificate(data, load_public_key_bytes(open(sys.argv[2], 'rb').read()))\n"
        "except Exception as error:\n    print('error:', type(error).__name__, str(error)[:100], file=sys.stderr)\n"
        "    sys.exit(1)\n"
    )


def main() -> None:
    """Build in a child process, measure from this one: a process forked from a big one inherits its
    peak RSS (Linux keeps ru_maxrss across fork and execve), so the measuring parent stays small."""
    if sys.argv[1:2] == ["--build-in"]:
        build(Path(sys.argv[2]), sys.argv[3:])
        return
    out = Path(tempfile.mkdtemp(prefix="bench-certificate-"))
    subprocess.run([sys.executable, __file__, "--build-in", str(out), *sys.argv[1:]], check=True)
    options = parse(sys.argv[1:])
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    verify = ["cli", "certificate", "verify", str(out / "certificate.json"), "--public-key", str(out / "operator.pub")]
    runs = [measure(verify) for _ in range(options.repeat)]
    assert all(r["exit"] == 0 for r in runs), runs
    results["verify_cli_median_s"] = round(statistics.median(r["seconds"] for r in runs), 3)
    results["verify_cli_peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
    baseline = measure(["cli", "--help"])
    results["cli_help_peak_rss_mib"] = baseline["peak_rss_mib"]
    log(json.dumps(results))
    hostile = out / "hostile.json"
    if hostile.exists():
        size = hostile.stat().st_size
        log(f"hostile file: {size / 1e6:.0f} MB, unsigned")
        args = ["cli", "certificate", "verify", str(hostile), "--public-key", str(out / "operator.pub")]
        results["hostile_bytes"] = size
        results["hostile_new_default_cap"] = measure(args)
        results["hostile_new_cap_lifted"] = measure([*args, "--max-bytes", str(size + 1)])
        if options.old_tree is not None:
            script = out / "old_verify.py"
            script.write_text(old_verifier(options.old_tree))
            old = measure([str(script), str(hostile), str(out / "key.pem")], str(options.old_tree), run_path=True)
            results["hostile_old"] = old
        hostile.unlink()
    print(json.dumps(results))


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--slices", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--hostile-mb", type=int, default=0)
    parser.add_argument("--old-tree", type=Path)
    return parser.parse_args(argv)


def build(out: Path, argv: list[str]) -> None:
    """Write the certificate, the keys, the hostile file, and the in-process timings into `out`."""
    options = parse(argv)
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    data = certificate(options.entries, options.requests, options.shards, options.slices, key)
    (out / "certificate.json").write_bytes(data)
    (out / "operator.pub").write_text(verifier_key(ORIGIN, key.public_key()) + "\n")
    from cryptography.hazmat.primitives import serialization

    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (out / "key.pem").write_bytes(pem)
    in_process = []
    from reports.verify import VerifierKey, verify_certificate

    pinned = VerifierKey(ORIGIN, key.public_key())
    for _ in range(options.repeat):
        started = time.perf_counter()
        result = verify_certificate(data, pinned)
        in_process.append(time.perf_counter() - started)
    results: dict[str, Any] = {
        "entries": options.entries,
        "requests": options.requests,
        "shards": options.shards,
        "slices": options.slices,
        "certificate_bytes": len(data),
        "entries_carried": result.entries,
        "verify_in_process_median_ms": round(statistics.median(in_process) * 1000, 2),
    }
    if options.hostile_mb:
        (out / "hostile.json").write_bytes(inflate(data, options.hostile_mb * 1_000_000))
    (out / "results.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main()
