"""What the ledger records about data and models: manifests per slice, checkpoints per slice.

Entries carry counts, keyed hashes and digests only; nothing in them identifies a person
without the workspace's pseudonymisation key.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import forget
from forget.workspace.core import Workspace
from ledger import merkle
from ledger.evidence import CheckpointRecorded, EntryKind, SliceManifest
from ledger.store import StoredHead

if TYPE_CHECKING:
    from forget.store.interface import Transaction

INGESTED = EntryKind.DATA_INGESTED.value
SLICE_MANIFEST = EntryKind.SLICE_MANIFEST.value
CHECKPOINT = EntryKind.CHECKPOINT.value


def manifest_root(record_keys: Iterable[str]) -> str:
    """Merkle root (RFC 9162) over the slice's sorted keyed record ids: the slice's exact membership."""
    return merkle.root_hash([merkle.leaf_hash(bytes.fromhex(key)) for key in sorted(record_keys)]).hex()


def slice_manifests(
    workspace: Workspace, tx: Transaction, slices: Iterable[tuple[int, int]]
) -> list[tuple[str, Mapping[str, Any]]]:
    """The manifest entries of these slices as `tx` sees them (after the change it is logging)."""
    found = workspace.datastore.slices_record_keys(tx, sorted(set(slices)))
    return [
        SliceManifest(shard, slice_, len(keys), manifest_root(keys)).entry() for (shard, slice_), keys in found.items()
    ]


def checkpoint_entry(
    shard: int, slice_: int, digest: str, meta: Mapping[str, Any], manifests: Sequence[str]
) -> tuple[str, Mapping[str, Any]]:
    """The `lineage.checkpoint` entry of a stored checkpoint: its digest, the slices' manifest roots it
    saw, and the training environment from the trainer's `meta` (records, config digest, torch version,
    device, threads, determinism).

    Raises `KeyError` for `meta` without those fields (a trainer's bug), and
    `ledger.evidence.EvidenceError` for a value the entry's schema refuses.
    """
    return CheckpointRecorded(
        shard=shard,
        slice=slice_,
        checkpoint_sha256=digest,
        records=int(meta["records"]),
        manifest_roots=tuple(manifests),
        config_sha256=str(meta["config"]),
        forget_version=forget.__version__,
        torch_version=str(meta["torch"]),
        python_version=platform.python_version(),
        device=str(meta["device"]),
        threads=int(meta["threads"]),
        deterministic=bool(meta["deterministic"]),
    ).entry()


def sign_head(workspace: Workspace) -> StoredHead | None:
    """Sign the ledger's current tree with the workspace key, anchor it, and have witnesses cosign it.

    Signing refuses (`VerificationError`) unless the log extends the last anchored head and its
    unsigned tail is what forget appended. The head commits to the database first and is copied
    to the anchor after: a crash in between leaves a head only the database holds, which the next
    call checks and copies (the reverse, a head only the anchor holds, is never a crash, and every
    check refuses it). Witnesses come last; one that is down never blocks signing.
    """
    key = workspace.signing_key()
    ledger = workspace.ledger
    with workspace.datastore.transaction() as tx:
        head = ledger.sign_head(tx, key)
    if ledger.anchor is None:
        return head
    with workspace.datastore.snapshot() as tx:
        ledger.anchor_pending(tx)
    if workspace.config.witnesses:
        from forget.audit.witness import collect_cosignatures

        collect_cosignatures(workspace)
    return head
