"""How `forget serve` runs: where it listens, the device, the per-token limit, and in-process runs.

Each setting comes from, in order: the command-line option, forget.toml's `[service]` table
(forget.workspace.config.ServiceDefaults), and the built-in default below. `resolve` applies that
order in one place, so the command and the documentation cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forget.workspace.config import ServiceDefaults

BUILT_IN = ServiceDefaults(
    host="127.0.0.1",
    port=8080,
    device="auto",
    request_rate=5.0,
    request_burst=50,
    run_after_request=True,
    run_every=0.0,
)
"""The defaults when neither an option nor forget.toml says otherwise (no TLS: a proxy terminates it)."""


@dataclass
class ServiceSettings:
    device: str = "cpu"
    """Where predictions and in-process retraining run."""
    request_rate: float = 5.0
    """`POST /v1/requests` per token: sustained calls per second."""
    request_burst: int = 50
    run_every: float | None = None
    """Seconds between in-process erasure runs (forget.service.runner); None: no schedule."""
    run_after_request: bool = False
    """An in-process erasure run right after each accepted request."""

    @property
    def runs_in_process(self) -> bool:
        """Whether the service runs due erasures itself (otherwise only a cron `forget run` does); raises nothing."""
        return self.run_every is not None or self.run_after_request


@dataclass(frozen=True)
class Listening:
    """Where `forget serve` listens, and with which TLS pair (none: plain HTTP behind a proxy)."""

    host: str
    port: int
    tls_cert: Path | None
    tls_key: Path | None


def resolve(given: ServiceDefaults, configured: ServiceDefaults, root: Path) -> tuple[Listening, ServiceSettings]:
    """The settings `forget serve` runs with: each option `given` on the command line (None: not given),
    else its `[service]` key in forget.toml (`configured`), else `BUILT_IN`. Raises nothing.

    A TLS path from the command line is taken as given (relative to the current folder); one from
    forget.toml relative to the workspace's folder `root`, since cron and systemd start elsewhere.
    """

    def pick(name: str) -> Any:
        return next(
            (v for v in (getattr(given, name), getattr(configured, name), getattr(BUILT_IN, name)) if v is not None),
            None,
        )

    def tls(name: str) -> Path | None:
        option, key = getattr(given, name), getattr(configured, name)
        return Path(option) if option is not None else root / key if key is not None else None

    settings = ServiceSettings(
        device=str(pick("device")),
        request_rate=float(pick("request_rate")),
        request_burst=int(pick("request_burst")),
        run_every=float(pick("run_every")) or None,
        run_after_request=bool(pick("run_after_request")),
    )
    return Listening(str(pick("host")), int(pick("port")), tls("tls_cert"), tls("tls_key")), settings
