"""How `forget serve` runs: the device, the per-token limit on filing requests, and in-process runs."""

from __future__ import annotations

from dataclasses import dataclass


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
