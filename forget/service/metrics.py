"""`GET /metrics` in the Prometheus text format (prometheus_client).

The request gauges are read from the database at scrape time, not counted in memory: a cron
`forget run` or a second replica changes them too, and a scrape must show the workspace's
state, not this process's history.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from forget.audit.ledger_view import ledger_size
from forget.erasure.quarantine import quarantined_shards
from forget.erasure.requests import ErasureRequest, RequestState
from forget.workspace.core import Workspace


class _WorkspaceCollector(Collector):
    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ws = self.workspace
        now = datetime.now(UTC)
        requests = [ErasureRequest.from_row(row) for row in ws.datastore.find_requests()]
        waiting = [r for r in requests if r.state in (RequestState.PENDING, RequestState.RUNNING)]
        yield GaugeMetricFamily("forget_requests_pending", "Erasure requests not yet completed.", len(waiting))
        overdue = sum(r.overdue(now) for r in waiting)
        yield GaugeMetricFamily("forget_requests_overdue", "Pending requests past their deadline.", overdue)
        oldest = max(((now - r.received_at).total_seconds() for r in waiting), default=0.0)
        yield GaugeMetricFamily(
            "forget_oldest_pending_request_age_seconds", "Age of the oldest pending request (0 if none).", oldest
        )
        completed = [r.completed_at for r in requests if r.completed_at is not None]
        last = max(completed).timestamp() if completed else 0.0
        yield GaugeMetricFamily(
            "forget_last_completed_request_timestamp_seconds",
            "When the last erasure request was completed (Unix time; 0 if never).",
            last,
        )
        trained = ws.datastore.checkpoint_map()
        final = ws.config.slices - 1
        retraining = sum((shard, final) not in trained for shard in range(ws.config.shards))
        yield GaugeMetricFamily("forget_shards_retraining", "Shards without a model for their last slice.", retraining)
        yield GaugeMetricFamily(
            "forget_shards_quarantined",
            "Shards left out of every prediction until open erasure requests retrain them.",
            len(quarantined_shards(ws)),
        )
        yield GaugeMetricFamily("forget_ledger_entries", "Entries in the ledger.", ledger_size(ws))


class ServiceMetrics:
    """The service's registry: the workspace's gauges (read at scrape time), calls, and in-process runs.

    The rounds run in the erasure worker (forget.service.worker), a process of its own: their
    results, durations and the last success are what the worker reports back to the server, and
    the shards being retrained are read from the database, which the worker writes.
    """

    def __init__(self, workspace: Workspace) -> None:
        """Registers the collectors in a registry of its own; raises nothing."""
        self.registry = CollectorRegistry()
        self.registry.register(_WorkspaceCollector(workspace))
        self.calls = Histogram(
            "forget_http_request_duration_seconds",
            "HTTP calls by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.erasures = Histogram(
            "forget_erasure_duration_seconds",
            "From the start of an in-process erasure run to its certificates.",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
            registry=self.registry,
        )
        self.runs = Counter(
            "forget_inprocess_runs",
            "In-process erasure rounds by result: completed, idle, locked (a cron job held the workspace), failed.",
            ["result"],
            registry=self.registry,
        )
        self.last_success = Gauge(
            "forget_inprocess_last_success_timestamp_seconds",
            "When this server's last in-process round completed requests (Unix time; 0 if never).",
            registry=self.registry,
        )
        self.worker_restarts = Counter(
            "forget_erasure_worker_restarts",
            "Erasure worker processes started again after one died (killed, out of memory).",
            registry=self.registry,
        )

    def observe_call(self, route: str, status: int, seconds: float) -> None:
        """Count one HTTP call by its route template and status; raises nothing."""
        self.calls.labels(route, str(status)).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text and its content type; a database failure while collecting propagates."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
