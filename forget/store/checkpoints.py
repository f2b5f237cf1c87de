"""The checkpoint files of a workspace: where they are, and deleting those the lineage no longer names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sisa.store import BlobStore, open_store

if TYPE_CHECKING:
    from forget.workspace.core import Workspace


def checkpoint_location(workspace: Workspace) -> str:
    """The store as workers see it: an absolute folder, or the configured fsspec URL."""
    location = workspace.config.checkpoints
    return location if "://" in location else str((workspace.root / location).resolve())


def checkpoint_store(workspace: Workspace) -> BlobStore:
    """The workspace's content-addressed checkpoint store (`sisa.store.BlobStore`): a folder or an fsspec URL.

    Raises `sisa.errors.SisaError` for a URL whose scheme no installed store handles.
    """
    return open_store(checkpoint_location(workspace))


def collect_garbage(workspace: Workspace) -> list[str]:
    """Delete every checkpoint file the current lineage does not point at (idempotent).

    After an erasure this removes whatever saw the erased records, and after a crash it removes
    a file that was stored but never recorded, and the temp file of a write it interrupted.
    Only safe under the job lock.
    """
    store = checkpoint_store(workspace)
    store.discard_temporaries()
    return purge_unreferenced(workspace, list(store.digests()))


def purge_unreferenced(workspace: Workspace, digests: list[str]) -> list[str]:
    """Delete the given checkpoint files unless the current lineage still points at them."""
    if not digests:
        return []
    keep = workspace.datastore.referenced_digests()
    store = checkpoint_store(workspace)
    purged = [digest for digest in dict.fromkeys(digests) if digest not in keep]
    for digest in purged:
        store.delete(digest)
    return purged
