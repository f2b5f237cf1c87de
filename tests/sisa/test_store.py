"""The content-addressed checkpoint store: digests name files, a crashed write leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from sisa.errors import CheckpointError
from sisa.store import BlobStore, CheckpointStore, FsspecCheckpointStore


@pytest.fixture(params=["folder", "fsspec"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "folder":
        return CheckpointStore(tmp_path / "store")
    pytest.importorskip("fsspec")
    return FsspecCheckpointStore(f"file://{tmp_path / 'store'}")


def test_a_blob_is_named_by_its_sha256_and_read_back(store: BlobStore) -> None:
    digest = store.put(b"weights")
    assert digest == "9a129038d9a00aed0cf6a7ea059ca50a813449061ab87848cf1a13eafdf33b2c"
    assert store.get(digest) == b"weights"
    assert list(store.digests()) == [digest]


def test_the_temp_file_of_an_interrupted_write_is_discarded_and_never_listed(store: BlobStore, tmp_path: Path) -> None:
    digest = store.put(b"kept")
    folder = tmp_path / "store" / digest[:2]
    stray = folder / (".tmp-abc123" if isinstance(store, CheckpointStore) else f"{digest}.tmp-4242")
    stray.write_bytes(b"half a checkpoint")
    assert list(store.digests()) == [digest]
    assert store.discard_temporaries() == 1
    assert not stray.exists()
    assert store.get(digest) == b"kept"
    assert store.discard_temporaries() == 0


def test_a_file_whose_bytes_changed_is_refused(store: BlobStore, tmp_path: Path) -> None:
    digest = store.put(b"original")
    (tmp_path / "store" / digest[:2] / digest).write_bytes(b"altered")
    with pytest.raises(CheckpointError, match="corrupt"):
        store.get(digest)
