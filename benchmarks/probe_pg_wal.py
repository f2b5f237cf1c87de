"""What of an erased subject survives in PostgreSQL's files after `forget run`?

Starts a throwaway PostgreSQL server (scripts/postgres-up.sh), builds a workspace on it, erases
some subjects, and searches the server's data directory (heap files and pg_wal) for the erased
records' keyed ids and feature bytes: after the run, after VACUUM FULL (which forget runs), and
after a CHECKPOINT (`--no-recycle` sets wal_recycle = off first). Prints one JSON object. Needs root (the server runs as
the postgres user) and the dev extras.

    .venv/bin/python benchmarks/probe_pg_wal.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import write_rows, write_tabular_csv  # noqa: E402
from tests.helpers import cli  # noqa: E402

COLUMNS = ["--subject-column", "subject", "--label-column", "label", "--id-column", "record"]


def occurrences(data_dir: Path, needles: list[bytes]) -> dict[str, int]:
    """How many of the needles occur in pg_wal and in the rest of the data directory."""
    found = {"pg_wal": 0, "heap_and_other": 0}
    for path in data_dir.rglob("*"):
        if not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        where = "pg_wal" if "pg_wal" in path.parts else "heap_and_other"
        found[where] += sum(1 for needle in needles if needle in data)
    return found


def main() -> None:
    from forget.workspace.core import open_workspace

    work = Path(tempfile.mkdtemp(prefix="forget-wal-"))
    work.chmod(0o755)
    server = work / "server"
    url = subprocess.run(
        [str(ROOT / "scripts/postgres-up.sh"), str(server), "54391"], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        recycle = "--no-recycle" not in sys.argv
        with admin.connect() as connection:
            connection.execute(sa.text('CREATE DATABASE "walprobe"'))
            if not recycle:
                connection.execute(sa.text("ALTER SYSTEM SET wal_recycle = off"))
                connection.execute(sa.text("SELECT pg_reload_conf()"))
        db = str(sa.make_url(url).set(database="walprobe").render_as_string(hide_password=False))
        records = write_tabular_csv(work / "d.csv", rows=2000, subjects=400)
        write_rows(work / "d.csv", records)
        ws = work / "ws"
        cli("init", ws, "--shards", "4", "--slices", "4", "--epochs", "2", "--db", db)
        cli("-w", ws, "ingest", work / "d.csv", *COLUMNS)
        cli("-w", ws, "train", "--device", "cpu")
        erased = sorted({r["subject"] for r in records})[:20]
        workspace = open_workspace(ws)
        index = workspace.datastore.records_of_subjects([workspace.pseudonymiser.subject(s) for s in erased])
        keys = [k for ks in index.values() for k in ks]
        with workspace.datastore.engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT record_key, features FROM records WHERE record_key = ANY(:k)"), {"k": keys}
            ).all()
        needles = [row[0].encode() for row in rows] + [bytes(row[1]) for row in rows]
        data_dir = server / "data"
        before = occurrences(data_dir, needles)
        for subject in erased:
            cli("-w", ws, "request", "--subject-id", subject)
        cli("-w", ws, "run", "--device", "cpu")
        after_run = occurrences(data_dir, needles)
        with admin.connect() as connection:
            connection.execute(sa.text("CHECKPOINT"))
            connection.execute(sa.text("SELECT pg_switch_wal()"))
            connection.execute(sa.text("CHECKPOINT"))
        after_checkpoint = occurrences(data_dir, needles)
        with admin.connect() as connection:  # a second cycle: segments before the last redo point go
            connection.execute(sa.text("SELECT pg_switch_wal()"))
            connection.execute(sa.text("CHECKPOINT"))
        after_two_checkpoints = occurrences(data_dir, needles)
        wal_settings = {}
        with admin.connect() as connection:
            for name in ("wal_recycle", "wal_keep_size", "max_wal_size", "min_wal_size", "archive_mode", "wal_level"):
                wal_settings[name] = connection.execute(sa.text(f"SHOW {name}")).scalar()
        print(
            json.dumps(
                {
                    "erased_records": len(rows),
                    "needles": len(needles),
                    "before_erasure": before,
                    "after_forget_run": after_run,
                    "after_superuser_checkpoint_and_wal_switch": after_checkpoint,
                    "after_a_second_switch_and_checkpoint": after_two_checkpoints,
                    "settings": wal_settings,
                },
                indent=2,
            )
        )
        admin.dispose()
    finally:
        subprocess.run([str(ROOT / "scripts/postgres-down.sh"), str(server)], check=False)


if __name__ == "__main__":
    main()
