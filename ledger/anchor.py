"""The anchor: an append-only record, outside the database, of every signed head.

Whoever can write the database can rewrite the ledger's tables, triggers and all; they cannot
rewrite a file (or an object under retention) they cannot reach. The anchor keeps three kinds
of record, each one line of canonical JSON:

- `head`: a signed tree head (size, root, the signed note). Written after the head committed to
  the database: a crash in between leaves a head in the database that the next signing checks
  and copies here. A head here that the database lacks is never a crash: it means heads were
  deleted, or the database was restored from an older backup, and every check refuses it.
- `append`: the index and leaf hashes of each batch of entries, written before the batch commits.
  An entry in the database's unsigned tail without such a record was not written by forget, and
  is never signed.
- `cosignature`: a witness's cosignature line on a head.

Two backends. A local file (the default, beside the database): records are appended with
`O_APPEND`, under an exclusive `flock`, and fsync'd; a crash mid-write leaves a torn last line
without its newline, which readers ignore and the next append cuts off first (those bytes were
never acknowledged). An fsspec URL (object storage with retention or object lock): one object
per record, named by its content, written in one PUT; no object is ever rewritten.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.canonical import canonical_json
from ledger.errors import LedgerError, VerificationError

__all__ = [
    "ANCHOR_FORMAT",
    "Anchor",
    "AnchorContents",
    "AnchoredHead",
    "Appends",
    "FileAnchor",
    "FsspecAnchor",
    "append_record",
    "cosignature_record",
    "head_record",
    "open_anchor",
]

ANCHOR_FORMAT = 1
_TYPES = ("anchor", "head", "append", "cosignature")
_APPEND_PREFIX = b'{"first":'
_CHUNK = 4096


@dataclass(frozen=True)
class AnchoredHead:
    """A signed head as the anchor keeps it, outside the database: what `verify` checks the log against.

    `note` is the signed note as written; its signature is checked by `Ledger`, not here.
    """

    size: int
    root_hash: bytes
    time: str
    note: str


@dataclass(frozen=True)
class AnchorContents:
    """What an anchor holds, read and checked for form (signatures are the ledger's to check)."""

    heads: tuple[AnchoredHead, ...] = ()
    """One per size, in increasing size."""
    appends: Appends = field(default_factory=lambda: Appends((), ""))
    """The batches forget recorded appending; parsed only as far as a lookup needs (`recorded`)."""
    cosignatures: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    """Head size -> cosignature lines collected for it (unverified), in the order they came."""
    origin: str | None = None
    """The log named in the anchor's opening record, if it has one."""
    torn: bool = False
    """The last line was cut short by a crash (ignored; the next append removes it)."""

    @property
    def last(self) -> AnchoredHead | None:
        """The newest anchored head, the one signing must extend; None in an anchor with no head yet."""
        return self.heads[-1] if self.heads else None

    def head(self, size: int) -> AnchoredHead | None:
        """The anchored head of tree size `size`, or None: to compare a database head with its copy here.

        Two different heads of one size never get this far (`read` refuses a forked anchor).
        """
        return next((h for h in self.heads if h.size == size), None)

    def recorded(self, index: int, leaf: bytes) -> bool:
        """Whether forget recorded appending the entry of leaf hash `leaf` at `index`."""
        return self.appends.recorded(index, leaf)


class Appends:
    """The anchor's `append` records, kept as raw lines and parsed newest first, on demand.

    They are most of the anchor (about 70 bytes per ledger entry), and signing only ever asks about
    the few entries after the last head, so parsing them all on every command would cost time in
    proportion to the log for nothing. A record that does not parse fails when it is reached
    (`recorded`) or when every record is checked (`check`, from `Ledger.verify`).
    """

    def __init__(self, lines: Sequence[tuple[str, bytes]], where: str) -> None:
        self._lines = lines
        self._parsed: dict[int, tuple[int, tuple[str, ...]]] = {}
        self._where = where

    def __len__(self) -> int:
        return len(self._lines)

    def _record(self, position: int) -> tuple[int, tuple[str, ...]]:
        if position not in self._parsed:
            name, data = self._lines[position]
            try:
                record = json.loads(data)
                leaves = record["leaves"]
                if record.get("v") != ANCHOR_FORMAT or record.get("type") != "append" or not isinstance(leaves, list):
                    raise ValueError("not an append record of format 1")
                if not all(isinstance(leaf, str) for leaf in leaves):
                    raise ValueError("leaves are not a list of hashes")
                self._parsed[position] = (_count(record["first"]), tuple(leaves))
            except (ValueError, KeyError, TypeError) as error:
                raise VerificationError(
                    f"the anchor {self._where}: {name} is not a record forget wrote ({error})"
                ) from None
        return self._parsed[position]

    def recorded(self, index: int, leaf: bytes) -> bool:
        """Newest batches first: the entries asked about are the newest, so the scan stops early."""
        wanted = leaf.hex()
        for position in reversed(range(len(self._lines))):
            first, leaves = self._record(position)
            if first <= index < first + len(leaves) and leaves[index - first] == wanted:
                return True
        return False

    def check(self) -> None:
        """Parse every record (raises `VerificationError` naming the first that is not ours)."""
        for position in range(len(self._lines)):
            self._record(position)

    def indices(self) -> set[int]:
        """Every entry index some batch covers."""
        self.check()
        return {first + offset for first, leaves in self._parsed.values() for offset in range(len(leaves))}


def head_record(size: int, root_hash: bytes, time: str, note: str) -> dict[str, Any]:
    """The `head` record of a signed tree head, as the anchor stores it (one line once canonical JSON).

    Pure: the anchor's backend writes it (`Anchor.append`); raises nothing.
    """
    return {"v": ANCHOR_FORMAT, "type": "head", "size": size, "root": root_hash.hex(), "time": time, "note": note}


def append_record(first: int, leaves: Sequence[bytes]) -> dict[str, Any]:
    """The `append` record of a batch of entries starting at index `first`: their leaf hashes, in order.

    Written before the batch commits, so a database entry no record covers was not written by forget.
    Pure; raises nothing.
    """
    return {"v": ANCHOR_FORMAT, "type": "append", "first": first, "leaves": [leaf.hex() for leaf in leaves]}


def cosignature_record(size: int, line: str) -> dict[str, Any]:
    """The `cosignature` record of a witness's cosignature line on the head of size `size`.

    Kept so an auditor can show the witness's word without asking the witness again. Pure; raises nothing.
    """
    return {"v": ANCHOR_FORMAT, "type": "cosignature", "size": size, "line": line}


def opening_record(origin: str) -> dict[str, Any]:
    """The first record of an anchor: which log (`origin`) it belongs to.

    So that an anchor copied beside another workspace's log is refused rather than trusted. Pure.
    """
    return {"v": ANCHOR_FORMAT, "type": "anchor", "origin": origin}


def _encode(record: Mapping[str, Any]) -> bytes:
    return canonical_json(record) + b"\n"


def _hex32(value: Any) -> bytes:
    if not isinstance(value, str) or len(value) != 64 or value != value.lower():
        raise ValueError("not 64 lowercase hex digits")
    return bytes.fromhex(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("not a non-negative integer")
    return value


def _contents(records: Iterable[tuple[str, bytes]], torn: bool, where: str) -> AnchorContents:
    """Parse records given as (name for messages, bytes); refuse anything forget did not write."""
    heads: dict[int, AnchoredHead] = {}
    appends: list[tuple[str, bytes]] = []
    cosigned: dict[int, list[str]] = {}
    origin: str | None = None
    for name, data in records:
        if data.startswith(_APPEND_PREFIX):  # canonical JSON: keys sorted, "first" comes first
            appends.append((name, data))
            continue
        try:
            record = json.loads(data)
            if not isinstance(record, dict) or record.get("v") != ANCHOR_FORMAT or record.get("type") not in _TYPES:
                raise ValueError("not an anchor record of format 1")
            kind = record["type"]
            if kind == "anchor":
                if origin is not None and origin != record["origin"]:
                    raise ValueError("a second opening record names another log")
                origin = str(record["origin"])
            elif kind == "head":
                head = AnchoredHead(
                    _count(record["size"]), _hex32(record["root"]), str(record["time"]), str(record["note"])
                )
                seen = heads.get(head.size)
                if seen is not None and seen.root_hash != head.root_hash:
                    raise VerificationError(
                        f"the anchor {where} holds two different heads of size {head.size}: the log was forked"
                    )
                heads.setdefault(head.size, head)
            elif kind == "append":
                appends.append((name, data))
            else:
                line = record["line"]
                if not isinstance(line, str) or "\n" in line:
                    raise ValueError("a cosignature is one line")
                bucket = cosigned.setdefault(_count(record["size"]), [])
                if line not in bucket:
                    bucket.append(line)
        except (ValueError, KeyError, TypeError) as error:
            raise VerificationError(f"the anchor {where}: {name} is not a record forget wrote ({error})") from None
    return AnchorContents(
        heads=tuple(heads[size] for size in sorted(heads)),
        appends=Appends(appends, where),
        cosignatures={size: tuple(lines) for size, lines in cosigned.items()},
        origin=origin,
        torn=torn,
    )


class Anchor(ABC):
    """Where signed heads are kept outside the database; `location` names it in messages."""

    location: str

    @abstractmethod
    def create(self, origin: str) -> None:
        """Start an empty anchor for the log `origin`; refuses one that already exists."""

    @abstractmethod
    def read(self) -> AnchorContents:
        """Every record; raises `VerificationError` if the anchor is missing or holds a foreign record."""

    @abstractmethod
    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append records durably (fsync'd, or one atomic PUT each) before returning."""


class FileAnchor(Anchor):
    """A local file of JSON lines, appended under `flock` with O_APPEND and fsync."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        self._cache: tuple[tuple[int, int, int, int], AnchorContents] | None = None

    def create(self, origin: str) -> None:
        """`Anchor.create` for a local file: created exclusively (O_EXCL), the opening record fsync'd with its folder.

        Raises `LedgerError` if the file exists (an anchor is never restarted over an old one) or
        cannot be created.
        """
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except FileExistsError:
            raise LedgerError(f"the anchor {self.location} already exists") from None
        except OSError as error:
            raise LedgerError(f"cannot create the anchor {self.location}: {error.strerror}") from error
        try:
            _write_all(fd, _encode(opening_record(origin)))
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_directory(self.path.parent)

    def read(self) -> AnchorContents:
        """Parsed once per version of the file (device, inode, size, mtime): signing reads it twice."""
        try:
            status = os.stat(self.path)
            version = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
            if self._cache is not None and self._cache[0] == version:
                return self._cache[1]
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise VerificationError(
                f"the anchor {self.location} is missing: restore it from its copy (it holds every signed head);"
                " a workspace that never had one starts one with an empty file"
            ) from None
        except OSError as error:
            raise LedgerError(f"cannot read the anchor {self.location}: {error.strerror}") from error
        lines = data.split(b"\n")
        torn = lines[-1] != b""
        complete = lines[:-1]
        contents = _contents(((f"line {n}", line) for n, line in enumerate(complete, start=1)), torn, self.location)
        self._cache = (version, contents)
        return contents

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        """`Anchor.append` for a local file: one write under an exclusive `flock`, with O_APPEND, then fsync.

        A torn last line (a crash mid-write, never acknowledged) is cut off first. Raises
        `VerificationError` if the file is missing (nothing may be signed against a lost anchor),
        `LedgerError` if it cannot be opened, written, or its torn tail cut (an append-only attribute).
        """
        if not records:
            return
        data = b"".join(_encode(record) for record in records)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            raise VerificationError(f"the anchor {self.location} is missing: nothing was signed") from None
        except OSError as error:
            raise LedgerError(f"cannot open the anchor {self.location}: {error.strerror}") from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _cut_torn_tail(fd, self.location)
            _write_all(fd, data)
            os.fsync(fd)
        except OSError as error:
            raise LedgerError(f"cannot append to the anchor {self.location}: {error.strerror}") from error
        finally:
            os.close(fd)  # releases the lock


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cut_torn_tail(fd: int, location: str) -> None:
    """Truncate bytes after the last newline: a write a crash cut short, never acknowledged."""
    end = os.fstat(fd).st_size
    if end == 0 or os.pread(fd, 1, end - 1) == b"\n":
        return
    position = end
    while position > 0:
        start = max(0, position - _CHUNK)
        chunk = os.pread(fd, position - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            position = start + newline + 1
            break
        position = start
    try:
        os.ftruncate(fd, position)
    except OSError as error:  # an append-only file attribute (chattr +a) refuses truncation
        raise LedgerError(
            f"the anchor {location} ends in a torn line that cannot be cut off ({error.strerror}):"
            " remove the bytes after its last newline by hand"
        ) from error
    os.fsync(fd)


class FsspecAnchor(Anchor):
    """One object per record under an fsspec URL; each named by its content, written in one PUT.

    Meant for object storage with retention or object lock: no object is overwritten or deleted,
    and a PUT is atomic, so there is no torn record. `fsspec` is imported only here.
    """

    _OPENING = "anchor.json"

    def __init__(self, url: str) -> None:
        try:
            import fsspec
        except ImportError as error:
            raise LedgerError(f"the anchor {url} needs fsspec: pip install fsspec (and its s3fs, gcsfs...)") from error
        self.location = url
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = str(root).rstrip("/")

    def _name(self, record: Mapping[str, Any], data: bytes) -> str:
        if record["type"] == "anchor":
            return f"{self.root}/{self._OPENING}"
        key = record.get("size", record.get("first", 0))
        return f"{self.root}/{record['type']}-{key:020d}-{hashlib.sha256(data).hexdigest()[:16]}.json"

    def create(self, origin: str) -> None:
        """`Anchor.create` on object storage: the opening object, written in one PUT.

        Raises `LedgerError` if the anchor already exists; the backend's own errors (`OSError`) if the
        storage refuses the write.
        """
        record = opening_record(origin)
        name = self._name(record, b"")
        if self.fs.exists(name):
            raise LedgerError(f"the anchor {self.location} already exists")
        self.fs.makedirs(self.root, exist_ok=True)
        self.fs.pipe_file(name, _encode(record))

    def read(self) -> AnchorContents:
        """`Anchor.read` on object storage: every record object, in name order (kind, then size or index).

        Raises `VerificationError` if the opening object is missing or an object is not a record forget
        wrote; the backend's own errors (`OSError`) if the storage cannot be listed or read.
        """
        if not self.fs.exists(f"{self.root}/{self._OPENING}"):
            raise VerificationError(f"the anchor {self.location} is missing: restore it (it holds every signed head)")
        names = sorted(str(name) for name in self.fs.find(self.root) if str(name).endswith(".json"))
        records = []
        for name in names:
            data: bytes = self.fs.cat_file(name)
            records.append((name.rsplit("/", 1)[-1], data.rstrip(b"\n")))
        return _contents(records, False, self.location)

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        """`Anchor.append` on object storage: one object per record, named by its content, in one PUT each.

        A record already stored (a retry) is not written again, so nothing is ever overwritten under
        retention. Raises `VerificationError` if the anchor is missing; backend errors (`OSError`) propagate.
        """
        if not self.fs.exists(f"{self.root}/{self._OPENING}"):
            raise VerificationError(f"the anchor {self.location} is missing: nothing was signed")
        for record in records:
            data = _encode(record)
            name = self._name(record, data)
            if not self.fs.exists(name):
                self.fs.pipe_file(name, data)


def open_anchor(location: str, base: Path) -> Anchor:
    """A local file (relative to `base`, the workspace), or an fsspec URL (anything with `://`)."""
    if "://" in location:
        return FsspecAnchor(location)
    path = Path(location)
    return FileAnchor(path if path.is_absolute() else base / path)
