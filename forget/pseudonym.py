"""Keyed pseudonymisation (HMAC-SHA-256) of subject and record identifiers.

A raw identifier is hashed as soon as it is read and never stored. The key lives in its own
file, apart from the database and the ledger, so a copy of either links nothing to a person.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import NewType

from forget.errors import WorkspaceError

SubjectKey = NewType("SubjectKey", str)
RecordKey = NewType("RecordKey", str)

KEY_BYTES = 32


class Pseudonymiser:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise WorkspaceError(f"pseudonymisation key must be {KEY_BYTES} bytes, found {len(key)}")
        self._key = key

    def _hash(self, domain: bytes, raw: bytes) -> str:
        return hmac.new(self._key, domain + b"\x00" + raw, hashlib.sha256).hexdigest()

    def subject(self, raw_id: str) -> SubjectKey:
        return SubjectKey(self._hash(b"subject", raw_id.encode()))

    def record(self, raw_id: str) -> RecordKey:
        return RecordKey(self._hash(b"record", raw_id.encode()))

    def record_from_content(self, subject_id: str, content: bytes, occurrence: int) -> RecordKey:
        """For files without an id column: the subject, the row's encoded bytes, and which copy it is."""
        digest = hashlib.sha256(content).hexdigest()
        return RecordKey(self._hash(b"row", f"{subject_id}\x00{digest}\x00{occurrence}".encode()))


def generate_key_file(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(KEY_BYTES) + "\n")


def load_key_file(path: Path) -> Pseudonymiser:
    try:
        text = path.read_text().strip()
    except OSError as error:
        raise WorkspaceError(f"cannot read pseudonymisation key {path}: {error.strerror}") from error
    try:
        return Pseudonymiser(bytes.fromhex(text))
    except ValueError as error:
        raise WorkspaceError(f"pseudonymisation key {path} is not {KEY_BYTES} bytes of hex") from error
