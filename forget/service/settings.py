"""How `forget serve` runs: the device, and the per-token limit on filing requests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServiceSettings:
    device: str = "cpu"
    request_rate: float = 5.0
    """`POST /v1/requests` per token: sustained calls per second."""
    request_burst: int = 50
