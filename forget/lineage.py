"""What the ledger records about data and models: manifests per slice, checkpoints per slice.

Entries carry counts, keyed hashes and digests only; nothing in them identifies a person
without the workspace's pseudonymisation key.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection

import forget
from forget.workspace import Workspace
from ledger import merkle
from ledger.store import StoredHead

INGESTED = "data.ingested"
SLICE_MANIFEST = "lineage.slice"
CHECKPOINT = "lineage.checkpoint"


def manifest_root(record_keys: Iterable[str]) -> str:
    """Merkle root (RFC 9162) over the slice's sorted keyed record ids: the slice's exact membership."""
    return merkle.root_hash([merkle.leaf_hash(bytes.fromhex(key)) for key in sorted(record_keys)]).hex()


def slice_manifests(
    workspace: Workspace, connection: Connection, slices: Iterable[tuple[int, int]]
) -> list[tuple[str, Mapping[str, Any]]]:
    items: list[tuple[str, Mapping[str, Any]]] = []
    for shard, slice_ in sorted(set(slices)):
        keys = workspace.datastore.slice_record_keys(connection, shard, slice_)
        items.append(
            (
                SLICE_MANIFEST,
                {"shard": shard, "slice": slice_, "records": len(keys), "manifest_root": manifest_root(keys)},
            )
        )
    return items


def checkpoint_entry(
    shard: int, slice_: int, digest: str, meta: Mapping[str, Any], manifests: Sequence[str]
) -> tuple[str, Mapping[str, Any]]:
    return (
        CHECKPOINT,
        {
            "shard": shard,
            "slice": slice_,
            "checkpoint_sha256": digest,
            "records": int(meta["records"]),
            "manifest_roots": list(manifests),
            "config_sha256": str(meta["config"]),
            "forget_version": forget.__version__,
            "torch_version": str(meta["torch"]),
            "python_version": platform.python_version(),
            "device": str(meta["device"]),
            "threads": int(meta["threads"]),
            "deterministic": bool(meta["deterministic"]),
        },
    )


def sign_head(workspace: Workspace) -> StoredHead | None:
    """Sign the ledger's current tree with the workspace key (after a consistency check)."""
    key = workspace.signing_key()
    with workspace.datastore.engine.begin() as connection:
        return workspace.ledger.sign_head(connection, key)
