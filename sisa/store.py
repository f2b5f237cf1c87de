"""Content-addressed checkpoint stores: each blob is named by the sha256 of its bytes.

`BlobStore` is what the trainer and the application need of a store; `open_store(location)`
picks one: a folder (`CheckpointStore`) for a plain path, the store registered for the URL's
scheme, or `FsspecCheckpointStore` for any other URL. A new kind of store is a class with
`BlobStore`'s methods and one `register_store(scheme, opener)`; its `get` must check the bytes
against the digest (`checked`), since the digest is what the ledger vouches for.
Stores keep bytes and import no torch, so commands that only list or purge stay fast.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from sisa.errors import CheckpointError
from sisa.registry import Registry


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


def checked(digest: str, data: bytes) -> bytes:
    """The bytes, if they hash to the digest they were asked for."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise CheckpointDigestError(f"checkpoint {digest[:12]} is corrupt: its bytes hash to {actual[:12]}")
    return data


class BlobStore(Protocol):
    """A content-addressed store of checkpoint bytes, as the trainer and the application use it."""

    def put(self, data: bytes) -> str:
        """Store `data` durably (atomically: a crash leaves it whole or absent); returns its sha256."""
        ...

    def get(self, digest: str) -> bytes:
        """The bytes named `digest`; raises CheckpointError if absent, CheckpointDigestError if altered."""
        ...

    def delete(self, digest: str) -> None:
        """Remove the blob if present (idempotent)."""
        ...

    def __contains__(self, digest: object) -> bool: ...

    def digests(self) -> Iterator[str]:
        """Every stored digest, sorted; never a temporary of an unfinished write."""
        ...

    def discard_temporaries(self) -> int:
        """Delete the leftovers of writes a crash interrupted (only safe while nothing writes); how many."""
        ...


class CheckpointStore:
    """Files under `root/ab/abcdef...`; writes are atomic (temp file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        """Where the blob `digest` lives: `root/ab/abcdef...`, two hex digits of fan-out per folder.

        No check that the file exists, nor that `digest` is well formed (the store's own methods only
        pass digests they computed or were given by the ledger).
        """
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        """`BlobStore.put`: written with `write_atomically` unless a blob of that digest is already there.

        A blob is named by its content, so an existing file already holds these bytes (and `get`
        would catch one that does not). Raises `OSError` when the disk refuses the write.
        """
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists():
            return digest
        write_atomically(target, data)
        return digest

    def get(self, digest: str) -> bytes:
        """`BlobStore.get`: the file's bytes, checked against `digest` before they are returned.

        Raises `CheckpointError` when the file is missing, `CheckpointDigestError` when its bytes hash
        to something else; `OSError` when it cannot be read.
        """
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {digest[:12]} is missing from {self.root}") from None
        return checked(digest, data)

    def delete(self, digest: str) -> None:
        """`BlobStore.delete`: unlink the file; a missing one is not an error, so a purge can be run again."""
        self.path(digest).unlink(missing_ok=True)

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, str) and self.path(digest).exists()

    def digests(self) -> Iterator[str]:
        """`BlobStore.digests`: every stored digest, sorted; none when the folder does not exist yet.

        Temporary files of unfinished writes (`.tmp-*`) are skipped, so a listing never offers a blob
        that a crash left half written.
        """
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
        """`BlobStore.put` on object storage: PUT to a temporary key, then move it under its digest.

        Skipped when the digest is already stored. Raises whatever the fsspec backend raises for a
        refused write (`OSError` and its subclasses for the common ones: permissions, no bucket).
        """
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
        """`BlobStore.get` on object storage: the object's bytes, checked against `digest`.

        Raises `CheckpointError` when the object is missing, `CheckpointDigestError` when its bytes
        hash to something else, and the backend's own errors (`OSError`) when it cannot be read.
        """
        try:
            data: bytes = self.fs.cat_file(self._key(digest))
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {digest[:12]} is missing from {self.url}") from None
        return checked(digest, data)

    def delete(self, digest: str) -> None:
        """`BlobStore.delete`: remove the object if it exists, so a purge can be run again; backend errors propagate."""
        if self.fs.exists(self._key(digest)):
            self.fs.rm(self._key(digest))

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, str) and bool(self.fs.exists(self._key(digest)))

    def digests(self) -> Iterator[str]:
        """`BlobStore.digests`: every stored digest, sorted, listed with one glob.

        Keys that are not 64 characters or hold `.tmp-` (an interrupted PUT) are skipped; backend
        errors (`OSError`) propagate.
        """
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


class MemoryStore:
    """Blobs in a dict: for models that live only as long as a computation (`forget plan`), and tests."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    def put(self, data: bytes) -> str:
        """`BlobStore.put` in a dict: no I/O, so it cannot fail; returns the sha256 of `data`."""
        digest = hashlib.sha256(data).hexdigest()
        self._blobs[digest] = data
        return digest

    def get(self, digest: str) -> bytes:
        """`BlobStore.get` from the dict, checked against `digest` like every store's reads.

        Raises `CheckpointError` when the digest was never stored (or was deleted).
        """
        try:
            data = self._blobs[digest]
        except KeyError:
            raise CheckpointError(f"checkpoint {digest[:12]} is missing from memory") from None
        return checked(digest, data)

    def delete(self, digest: str) -> None:
        """`BlobStore.delete`: drop the blob if present; raises nothing."""
        self._blobs.pop(digest, None)

    def __contains__(self, digest: object) -> bool:
        return digest in self._blobs

    def digests(self) -> Iterator[str]:
        """`BlobStore.digests`: the stored digests, sorted; raises nothing."""
        yield from sorted(self._blobs)

    def discard_temporaries(self) -> int:
        """`BlobStore.discard_temporaries`: a dict has no half-written blobs, so always 0."""
        return 0


StoreOpener = Callable[[str], BlobStore]
"""Opens the store at a location (the whole URL, scheme included)."""

STORES: Registry[StoreOpener] = Registry(
    "checkpoint store", "sisa.stores", r"[a-z][a-z0-9+.-]*", "is not a URL scheme (lower-case letters, digits, + . -)"
)
"""URL scheme -> opener. Unregistered schemes go to fsspec, which has its own registry of protocols."""


def register_store(scheme: str, opener: StoreOpener) -> None:
    """Open `scheme://...` locations with `opener` (in this process; a Dask worker needs an entry point)."""
    STORES.register(scheme, opener)


def open_store(location: str) -> BlobStore:
    """A local folder for a plain path, else the store registered for the URL's scheme, else fsspec's."""
    scheme, separator, _ = location.partition("://")
    if not separator:
        return CheckpointStore(Path(location))
    opener = STORES.lookup(scheme)
    return opener(location) if opener is not None else FsspecCheckpointStore(location)
