"""`forget serve` and its API tokens: for the team that runs the service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.app import AsJson, emit_json, err, out, workspace
from cli.errors import reports_errors
from forget.choices import DeviceChoice

commands = typer.Typer()
token_app = typer.Typer(help="API tokens of `forget serve`: create (shown once), list, revoke.")
commands.add_typer(token_app, name="token")


@commands.command()
@reports_errors
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default 127.0.0.1); anything but loopback needs a token.")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default 8080; 0: any free port, printed on the first line).")
    ] = None,
    device: Annotated[
        DeviceChoice | None, typer.Option(help="auto (the default): CUDA when present, else the CPU.")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate chain, to serve HTTPS directly.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    request_rate: Annotated[
        float | None, typer.Option(help="POST /v1/requests per second per token, sustained (default 5).")
    ] = None,
    request_burst: Annotated[int | None, typer.Option(help="POST /v1/requests at once per token (default 50).")] = None,
    run_after_request: Annotated[
        bool | None,
        typer.Option(
            "--run-after-request/--no-run-after-request",
            help="Run due erasures in-process right after each accepted request, under `forget run`'s lock"
            " (default on).",
            show_default=False,
        ),
    ] = None,
    run_every: Annotated[
        float | None,
        typer.Option(
            help="Also run due erasures in-process every SECONDS (default 0: no schedule).", metavar="SECONDS"
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (requests, certificates, ledger head, predictions, metrics) until interrupted.

    Every option left out takes its value from forget.toml's \\[service] table, if it has the key.
    """
    from forget.service.server import serve as run_server
    from forget.service.settings import resolve
    from forget.store.tokens import token_store
    from forget.workspace.config import ServiceDefaults

    if port is not None and not 0 <= port <= 65535:
        raise typer.BadParameter("--port must be 0 to 65535")
    if (request_rate is not None and request_rate <= 0) or (request_burst is not None and request_burst < 1):
        raise typer.BadParameter("--request-rate must be above 0 and --request-burst at least 1")
    if run_every is not None and run_every < 0:
        raise typer.BadParameter("--run-every must be 0 (no schedule) or more seconds")
    ws = workspace(signing=True)
    given = ServiceDefaults(
        host=host,
        port=port,
        device=device.value if device is not None else None,
        tls_cert=str(tls_cert) if tls_cert is not None else None,
        tls_key=str(tls_key) if tls_key is not None else None,
        request_rate=request_rate,
        request_burst=request_burst,
        run_after_request=run_after_request,
        run_every=run_every,
    )
    listening, settings = resolve(given, ws.config.service, ws.root)
    run_server(
        ws, token_store(ws.datastore), listening.host, listening.port, settings, listening.tls_cert, listening.tls_key
    )


@token_app.command("create")
@reports_errors
def token_create(
    name: Annotated[str, typer.Option(help="A label for the caller, e.g. dpo-portal.")],
    scope: Annotated[
        list[str],
        typer.Option(help="requests:write, requests:read, predict, certificates:read or admin (repeatable)."),
    ],
    as_json: AsJson = False,
) -> None:
    """Create an API token; it is printed once and only its hash is stored."""
    from forget.service.tokens import create_token, parse_scopes
    from forget.store.tokens import token_store

    scopes = parse_scopes(scope)
    ws = workspace()
    token, record = create_token(token_store(ws.datastore), name, scopes, _now())
    if as_json:
        emit_json({"token": token, "token_id": record.token_id, "name": record.name, "scopes": sorted(scopes)})
        return
    out.print(token, markup=False)
    err.print(f"token {record.token_id} ({record.name}): store it now, it is not shown again")


@token_app.command("list")
@reports_errors
def token_list(as_json: AsJson = False) -> None:
    """The tokens: id, name, scopes, created, revoked (never the token)."""
    from forget.store.tokens import token_store

    records = token_store(workspace().datastore).all()
    if as_json:
        emit_json(
            [
                {
                    "token_id": r.token_id,
                    "name": r.name,
                    "scopes": sorted(r.scopes),
                    "created_at": r.created_at,
                    "revoked_at": r.revoked_at,
                }
                for r in records
            ]
        )
        return
    for r in records:
        state = f"revoked {r.revoked_at}" if r.revoked_at else "active"
        scopes = ",".join(sorted(r.scopes))
        out.print(f"{r.token_id}  {r.name:<20} {scopes:<40} {state}", markup=False)


@token_app.command("revoke")
@reports_errors
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (tok_...), from `forget token list`.")],
) -> None:
    """Revoke a token at once: the next call with it is 401."""
    from forget.errors import InputError
    from forget.store.tokens import token_store

    if not token_store(workspace().datastore).revoke(token_id, _now()):
        raise InputError("no active token with that id: see `forget token list`")
    out.print(f"revoked {token_id}", markup=False)


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
