"""A content-addressed checkpoint store: each file is named by the sha256 of its bytes.

It stores bytes and imports no torch, so commands that only list or purge stay fast.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sisa.errors import CheckpointError


def write_atomically(path: Path, data: bytes) -> None:
    """Temp file, fsync, rename, fsync the folder: a crash leaves the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The rename is durable only once the folder's entry is: fsync the folder too (POSIX).
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class CheckpointDigestError(CheckpointError):
    """A checkpoint file's bytes do not hash to the digest it was asked for: altered or damaged.

    The digest is the caller's to vouch for: the application takes it from the ledger, so a
    file swapped on disk is caught here whatever the mutable tables say.
    """


def _checked(digest: str, data: bytes) -> bytes:
    """The bytes, if they hash to the digest they were asked for."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise CheckpointDigestError(f"checkpoint {digest[:12]} is corrupt: its bytes hash to {actual[:12]}")
    return data


class CheckpointStore:
    """Files under `root/ab/abcdef...`; writes are atomic (temp file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists():
            return digest
        write_atomically(target, data)
        return digest

    def get(self, digest: str) -> bytes:
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {digest[:12]} is missing from {self.root}") from None
        return _checked(digest, data)

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, str) and self.path(digest).exists()

    def digests(self) -> Iterator[str]:
        if not self.root.exists():
            return
        for path in sorted(self.root.glob("??/*")):
            if not path.name.startswith("."):
                yield path.name

    def discard_temporaries(self) -> int:
        """Delete the temp files of writes a crash interrupted; only safe while nothing writes."""
        stray = list(self.root.glob("??/.tmp-*")) if self.root.exists() else []
        for path in stray:
            path.unlink(missing_ok=True)
        return len(stray)


class FsspecCheckpointStore:
    """The same content-addressed layout on any fsspec URL (s3://, gcs://, file://...).

    For clusters whose workers share no disk. An object store's PUT is atomic, and the digest
    check on every read catches a torn or altered object either way.
    """

    def __init__(self, url: str) -> None:
        try:
            import fsspec
        except ImportError as error:
            raise CheckpointError(f"checkpoint store {url} needs fsspec: pip install 'forget[dask]'") from error
        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)

    def _key(self, digest: str) -> str:
        return f"{self.root.rstrip('/')}/{digest[:2]}/{digest}"

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        key = self._key(digest)
        if self.fs.exists(key):
            return digest
        self.fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True)
        temporary = f"{key}.tmp-{os.getpid()}"
        self.fs.pipe_file(temporary, data)
        self.fs.mv(temporary, key)
        return digest

    def get(self, digest: str) -> bytes:
        try:
            data: bytes = self.fs.cat_file(self._key(digest))
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {digest[:12]} is missing from {self.url}") from None
        return _checked(digest, data)

    def delete(self, digest: str) -> None:
        if self.fs.exists(self._key(digest)):
            self.fs.rm(self._key(digest))

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, str) and bool(self.fs.exists(self._key(digest)))

    def digests(self) -> Iterator[str]:
        for key in sorted(self.fs.glob(f"{self.root.rstrip('/')}/??/*")):
            name = str(key).rsplit("/", 1)[-1]
            if len(name) == 64 and ".tmp-" not in name:
                yield name

    def discard_temporaries(self) -> int:
        """Delete the temp objects of writes a crash interrupted; only safe while nothing writes."""
        stray = [str(key) for key in self.fs.glob(f"{self.root.rstrip('/')}/??/*.tmp-*")]
        for key in stray:
            self.fs.rm(key)
        return len(stray)


BlobStore = CheckpointStore | FsspecCheckpointStore


def open_store(location: str) -> BlobStore:
    """A local folder, or an fsspec URL (anything with `://`)."""
    return FsspecCheckpointStore(location) if "://" in location else CheckpointStore(Path(location))
