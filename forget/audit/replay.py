"""`forget audit replay`: re-derive an erasure's models from scratch and compare with its certificate.

The certificate says which checkpoints the rewound shards ended with. Replaying trains those
shards from initialisation (not from any checkpoint) on the records the workspace holds now; if
the erasure was exact, every digest comes out equal. It also re-hashes the stored checkpoint
files, so a file altered on disk shows up even where the replayed digest matches the record.
A replay that does not reproduce raises `NotReproducedError`, which carries the report: there is
no verdict for a caller to forget to check.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forget.erasure.certify import certificate_path
from forget.errors import InputError, VerificationFailedError
from forget.store.checkpoints import checkpoint_store
from forget.training.train import ShardPlan, shard_task, training_config
from forget.training.trust import CheckpointLineageError, current_checkpoints, read_checkpoint
from forget.workspace.core import Workspace
from reports.verify import DEFAULT_MAX_BYTES, VerifierKey, verify_certificate
from reports.verify_summary import read_input
from sisa.errors import CheckpointError


@dataclass
class ReplayReport:
    """What a replay compared: the request's rewound shards, how many digests, and every mismatch."""

    request_id: str
    shards: list[int] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    compared: int = 0

    @property
    def reproduced(self) -> bool:
        """Whether every digest was reproduced (`replay` raises `NotReproducedError` when not)."""
        return not self.mismatches

    def lines(self) -> list[str]:
        """The report for people: one line when reproduced, else one line per mismatch."""
        if self.reproduced:
            return [f"reproduced: {self.request_id}: shards {self.shards}, {self.compared} checkpoint digests equal"]
        return [f"MISMATCH: {self.request_id}: {m}" for m in self.mismatches]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (`forget audit replay --json`)."""
        return {
            "request_id": self.request_id,
            "reproduced": self.reproduced,
            "shards": self.shards,
            "compared": self.compared,
            "mismatches": self.mismatches,
        }


class NotReproducedError(VerificationFailedError):
    """The replayed models differ from the certificate's, or a stored checkpoint is corrupt; `report` says where."""

    def __init__(self, report: ReplayReport) -> None:
        count = len(report.mismatches)
        super().__init__(
            f"{report.request_id} was not reproduced: {count} mismatch{'es' if count != 1 else ''}"
            f" (a changed or corrupt checkpoint, or an erasure that was not exact)"
        )
        self.report = report


def replay(workspace: Workspace, request_id: str, device: str = "cpu") -> ReplayReport:
    """Replay the request's erasure; raises `NotReproducedError` unless every digest is reproduced."""
    report = _replay(workspace, request_id, device)
    if not report.reproduced:
        raise NotReproducedError(report)
    return report


def _replay(workspace: Workspace, request_id: str, device: str) -> ReplayReport:
    from sisa.device import resolve_device
    from sisa.store import CheckpointStore
    from sisa.trainer import train_shard

    path = certificate_path(workspace, request_id)
    if not path.exists():
        raise InputError(f"no certificate for {request_id} in {path.parent}: run `forget run` or `certificate issue`")
    data = read_input(path, "certificate")
    key = VerifierKey(workspace.config.origin, workspace.ledger.public_key)  # this workspace's log, pinned
    certificate = verify_certificate(data, key, max_bytes=max(DEFAULT_MAX_BYTES, len(data)))
    erasure = certificate.predicate["erasure"]
    report = ReplayReport(request_id)
    if erasure is None:
        return report  # no data was held: nothing was retrained, nothing to replay
    current = current_checkpoints(workspace)  # a table row the ledger does not back stops the replay
    last = workspace.config.slices - 1
    stored = checkpoint_store(workspace)
    config = training_config(workspace)
    torch_device = resolve_device(device)
    for claim in erasure["shards"]:
        shard = int(claim["shard"])
        report.shards.append(shard)
        if current.get((shard, last)) != claim["checkpoint_after"]:
            report.mismatches.append(
                f"shard {shard} changed after the certificate (a later erasure or ingest): replay the latest request"
            )
            continue
        for slice_ in range(workspace.config.slices):
            try:
                read_checkpoint(stored, shard, slice_, current[(shard, slice_)])
            except (CheckpointError, CheckpointLineageError) as error:
                report.mismatches.append(str(error))
        task = shard_task(workspace, ShardPlan(shard, 0))
        with tempfile.TemporaryDirectory(prefix="forget-replay-") as scratch:
            replayed = train_shard(task, config, CheckpointStore(Path(scratch)), torch_device)
        expected = {int(claim["from_slice"]) + i: d for i, d in enumerate(claim["retrained_checkpoints"])}
        if claim["restored_checkpoint"] is not None:
            expected[int(claim["from_slice"]) - 1] = claim["restored_checkpoint"]
        for slice_, digest in sorted(expected.items()):
            report.compared += 1
            if replayed[slice_] != digest:
                report.mismatches.append(
                    f"shard {shard} slice {slice_}: replayed {replayed[slice_][:16]}, certified {digest[:16]}"
                )
    return report
