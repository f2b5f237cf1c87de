"""Running the service: the bind rules, TLS, and logs without subject ids."""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
from pathlib import Path

from forget.errors import InputError, MissingExtraError, WorkspaceError
from forget.service.settings import ServiceSettings
from forget.service.tokens import TokenStore
from forget.workspace.core import Workspace


def is_loopback(host: str) -> bool:
    """Whether `host` is `localhost` or a loopback address (IPv4 or IPv6); raises nothing."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, tokens: TokenStore) -> None:
    """Anything but loopback needs at least one token: an API that erases and predicts is never open.

    Raises `WorkspaceError` (exit 3) for a non-loopback host while no token is active.
    """
    if not is_loopback(host) and not tokens.any_active():
        raise WorkspaceError(
            f"refusing to listen on {host} with no API token: create one with `forget token create` first"
        )


def serve(
    workspace: Workspace,
    tokens: TokenStore,
    host: str,
    port: int,
    settings: ServiceSettings,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> None:
    """Serve until interrupted (SIGINT, SIGTERM: a running in-process round gets 30 s to finish).

    In-process rounds run in the erasure worker, a child process (forget.service.worker).

    Raises `MissingExtraError` without the serve extra, `WorkspaceError` for a public address with
    no token, `InputError` for half a TLS pair, a missing file or an address that cannot be bound.
    """
    try:
        import uvicorn

        from forget.service.app import create_app
        from forget.service.runner import RunsIn
    except ImportError as error:
        raise MissingExtraError(f"forget serve needs {error.name}: pip install 'forget[serve]'") from error

    check_bind(host, tokens)
    if (tls_cert is None) != (tls_key is None):
        raise InputError("--tls-cert and --tls-key go together (or tls_cert and tls_key in forget.toml's [service])")
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            raise InputError(f"{path} does not exist or is not a file")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    for name in ("forget.access", "forget.service"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    app = create_app(workspace, tokens, settings, RunsIn.PROCESS)
    # One torch thread per call: concurrent calls are the parallelism. With the default (a thread per
    # core) every one-row prediction fans out to all cores and the calls' threads fight over them:
    # 5.8 against 4.5 ms a call on 2 cores. Training sets its own count (`threads`) and restores this.
    import torch

    torch.set_num_threads(1)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: accepted sockets inherit the protocol number, and asyncio sets TCP_NODELAY
    # only on sockets whose proto is IPPROTO_TCP. Without it every answer on a kept-alive connection
    # waited 40 ms for the client's delayed ACK (Nagle), whatever the route.
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host.strip("[]"), port))
    except OSError as error:
        raise InputError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    # Listening before the address is printed: a client that connects at once waits in the backlog
    # until uvicorn accepts, rather than being refused (seen under load in the tests).
    listener.listen(2048)
    bound_port = listener.getsockname()[1]
    scheme = "https" if tls_cert else "http"
    # The first line on stdout, flushed: a supervisor or a test learns the port when --port 0 chose it.
    print(f"forget serve: listening on {scheme}://{host}:{bound_port}", flush=True)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,  # uvicorn's line holds the query string; ours logs the route template only
        log_level="warning",
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run(sockets=[listener])
