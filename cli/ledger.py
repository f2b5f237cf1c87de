"""The auditor's and operator's view of the ledger: heads, entries, proofs, keys, witnesses."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.app import AsJson, emit_json, err, out, workspace
from cli.errors import ExitCode, reports_errors

commands = typer.Typer()


ledger_app = typer.Typer(help="The signed, append-only ledger: head, entries, proofs, export, verify.")
keys_app = typer.Typer(help="The workspace's public key, for auditors.")
commands.add_typer(ledger_app, name="ledger")
commands.add_typer(keys_app, name="keys")


@ledger_app.command("head")
@reports_errors
def ledger_head(
    consistency_from: Annotated[
        int | None,
        typer.Option(help="Emit JSON with a consistency proof from this size (for certificate verify --checkpoint)."),
    ] = None,
) -> None:
    """Print the latest signed tree head (a C2SP tlog-checkpoint signed note)."""
    from forget.audit.ledger_view import consistency_bundle, latest_note

    if consistency_from is None:
        sys.stdout.write(latest_note(workspace()))
    else:
        emit_json(consistency_bundle(workspace(), consistency_from))


@ledger_app.command("show")
@reports_errors
def ledger_show(
    kind: Annotated[str | None, typer.Option(help="Only entries of this kind.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines, one entry per line.")] = False,
) -> None:
    """List the ledger's entries."""
    from forget.audit.ledger_view import entries

    for entry in entries(workspace(), kind):
        if as_json:
            sys.stdout.write(json.dumps(entry.to_dict(), sort_keys=True) + "\n")
        else:
            payload = json.dumps(dict(entry.payload), sort_keys=True)
            out.print(f"{entry.index:>6}  {entry.time}  {entry.kind:<28} {payload}", markup=False)


@ledger_app.command("prove")
@reports_errors
def ledger_prove(
    index: Annotated[int, typer.Argument(help="Entry index.")],
    size: Annotated[int | None, typer.Option(help="Tree size (default: the latest signed head).")] = None,
) -> None:
    """Inclusion proof of one entry (RFC 9162), as JSON, checked before it is printed."""
    from forget.audit.ledger_view import prove

    emit_json(prove(workspace(), index, size).to_dict())


@ledger_app.command("export")
@reports_errors
def ledger_export(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="File (default stdout).")] = None,
) -> None:
    """Every entry as JSON Lines with its canonical bytes: enough to recompute every leaf and the root."""
    from forget.audit.ledger_view import export

    ws = workspace()
    if output is None:
        export(ws, sys.stdout)
        return
    with output.open("w") as handle:
        count = export(ws, handle)
    err.print(f"exported {count} entries to {output}")


@ledger_app.command("verify")
@reports_errors
def ledger_verify(
    head: Annotated[
        Path | None, typer.Option(help="A head saved earlier (`forget ledger head`): also catches truncation.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Recompute the whole tree from the stored entries and check every signed head; exit 1 on any change."""
    from forget.audit.ledger_view import verify
    from forget.audit.verify import read_head

    kept = read_head(head) if head is not None else None
    report = verify(workspace(), kept)
    if as_json:
        emit_json({"entries": report.entries, "signed_heads": report.heads, "root_hash": report.root_hash.hex(),
                   "anchored_heads": report.anchored, "unanchored_heads": report.unanchored})  # fmt: skip
    else:
        heads = f"{report.heads} signed heads ({report.anchored} anchored)"
        out.print(f"ledger verified: {report.entries} entries, {heads}, root {report.root_hash.hex()}")


@keys_app.command("public")
@reports_errors
def keys_public() -> None:
    """The signing key's public half: PEM, then the note verifier key line."""
    from forget.audit.ledger_view import public_keys

    pem, vkey = public_keys(workspace())
    sys.stdout.write(pem + vkey + "\n")


@ledger_app.command("cosign")
@reports_errors
def ledger_cosign(as_json: AsJson = False) -> None:
    """Ask the witnesses in forget.toml to cosign the heads they have not; exit 1 if one refuses (a fork)."""
    from forget.audit.witness import collect_pending

    outcomes = collect_pending(workspace())
    if as_json:
        emit_json([o.to_dict() for o in outcomes])
    elif not outcomes:
        out.print("no witnesses in forget.toml ([[ledger.witnesses]])", markup=False)
    for o in [] if as_json else outcomes:
        cosigned = ", ".join(map(str, o.cosigned)) or "none"
        state = f"{len(o.uncosigned)} heads uncosigned" if o.uncosigned else "every head cosigned"
        problem = f"; {o.problem}" if o.problem else ""
        out.print(f"{o.witness}: cosigned now {cosigned}; {state}{problem}", markup=False)
    if any(o.refused for o in outcomes):
        raise typer.Exit(int(ExitCode.VERIFICATION_FAILED))
    if any(o.problem for o in outcomes):
        raise typer.Exit(int(ExitCode.WORKSPACE))


witness_app = typer.Typer(help="Run a C2SP witness that cosigns other logs' checkpoints (c2sp.org/tlog-witness).")
commands.add_typer(witness_app, name="witness")


@witness_app.command("init")
@reports_errors
def witness_init(
    state_dir: Annotated[Path, typer.Option("--state", help="Folder for the witness's key and state.")],
    name: Annotated[str, typer.Option(help="The witness's name, e.g. witness.example.org/w1.")],
) -> None:
    """Create a witness: a new Ed25519 key (mode 0600) and empty state; prints its verifier key."""
    from forget.audit.witness import init_witness

    sys.stdout.write(init_witness(state_dir, name) + "\n")


@witness_app.command("add-log")
@reports_errors
def witness_add_log(
    state_dir: Annotated[Path, typer.Option("--state", help="The witness's folder.")],
    key: Annotated[str, typer.Option(help="The log's note verifier key (last line of `forget keys public`).")],
    origin: Annotated[str | None, typer.Option(help="The log's origin (default: the key's name).")] = None,
) -> None:
    """Let the witness cosign a log's checkpoints, signed by this key (restart a running witness)."""
    from forget.audit.witness import add_witnessed_log

    out.print(f"witnessing {add_witnessed_log(state_dir, key, origin)}", markup=False)


@witness_app.command("serve")
@reports_errors
def witness_serve(
    state_dir: Annotated[Path, typer.Option("--state", help="The witness's folder.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one).")] = 7380,
    allow_remote: Annotated[
        bool, typer.Option(help="Listen on a non-loopback address (put a TLS reverse proxy in front).")
    ] = False,
) -> None:
    """Serve POST /add-checkpoint until interrupted; cosigns only checkpoints consistent with the last one."""
    from forget.audit.witness import serve_witness

    def ready(url: str, vkey: str) -> None:
        out.print(f"witness {vkey.split('+', 1)[0]} listening on {url}", markup=False)
        out.print(f"verifier key: {vkey}", markup=False)
        sys.stdout.flush()

    serve_witness(state_dir, host, port, allow_remote, ready)
