"""Keyed pseudonymisation (HMAC-SHA-256) of subject and record identifiers.

A raw identifier is put in its canonical form (forget.subjects.identity) and hashed as soon as it is read,
and never stored. The key lives in its own file, apart from the database and the ledger, so a copy
of either links nothing to a person. Every place that hashes an id goes through `Pseudonymiser`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import NewType

from forget.errors import InputError, WorkspaceError
from forget.subjects.identity import CanonicalId, IdentityForm, IdError, canonical_text

SubjectKey = NewType("SubjectKey", str)
RecordKey = NewType("RecordKey", str)

KEY_BYTES = 32


class InvalidIdError(InputError):
    """An id with no canonical form (empty, a control character, a fractional number)."""


class Pseudonymiser:
    """The keyed hashes (HMAC-SHA-256, one domain each) of subject ids, record ids, rows and free text.

    Raises `WorkspaceError` (exit 3) for a key that is not 32 bytes.
    """

    def __init__(self, key: bytes, form: IdentityForm | None = None) -> None:
        if len(key) != KEY_BYTES:
            raise WorkspaceError(f"pseudonymisation key must be {KEY_BYTES} bytes, found {len(key)}")
        self._key = key
        self.form = form or IdentityForm()

    def _hash(self, domain: bytes, raw: bytes) -> str:
        return hmac.digest(self._key, domain + b"\x00" + raw, "sha256").hex()  # one C call, as hmac.new

    def canonical_subject(self, raw_id: str | int | float) -> CanonicalId:
        """The id in the workspace's identity form; raises `InvalidIdError` naming the problem, not the id."""
        try:
            return canonical_text(raw_id, self.form)
        except IdError as error:
            raise InvalidIdError(f"the subject id is malformed: {error}") from None

    def subject(self, raw_id: str | int | float) -> SubjectKey:
        """The subject's key: the id in the workspace's identity form, hashed.

        Raises `InvalidIdError` (an `InputError`, exit 2) for an id with no canonical form; the message
        never holds the id.
        """
        return SubjectKey(self._hash(b"subject", self.canonical_subject(raw_id).encode()))

    def record(self, raw_id: str | int | float) -> RecordKey:
        """A record id's key: canonical like a subject id, but its case always kept (it names a row).

        Raises `InvalidIdError` (exit 2) for an id with no canonical form.
        """
        try:
            canonical = canonical_text(raw_id, self.form, fold_case=False)
        except IdError as error:
            raise InvalidIdError(f"the record id is malformed: {error}") from None
        return RecordKey(self._hash(b"record", canonical.encode()))

    def record_from_content(self, subject_key: SubjectKey, content: bytes, occurrence: int) -> RecordKey:
        """For files without an id column: the subject, the row's encoded bytes, and which copy it is."""
        digest = hashlib.sha256(content).hexdigest()
        return RecordKey(self._hash(b"row", f"{subject_key}\x00{digest}\x00{occurrence}".encode()))

    def fingerprint(self) -> str:
        """Names the key without revealing it: pinned at init, so a swapped key file is caught."""
        return self._hash(b"fingerprint", b"forget pseudonymisation key")

    def text_digest(self, text: str) -> str:
        """A keyed digest of free text (a ticket note, a reason): the ledger commits to it, the
        erasable request row holds the text; unkeyed, a short text could be guessed from its hash."""
        return self._hash(b"text", text.encode())


def generate_key_file(path: Path) -> None:
    """Write a new random 32-byte key, as hex, to a file created with mode 0600.

    Raises `FileExistsError` rather than overwrite a key (a lost key orphans every record).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(KEY_BYTES) + "\n")


def load_key_file(path: Path, form: IdentityForm | None = None) -> Pseudonymiser:
    """The `Pseudonymiser` of the key file at `path`, for ids in `form`.

    Raises `WorkspaceError` (exit 3) when the file cannot be read or is not 32 bytes of hex.
    """
    try:
        text = path.read_text().strip()
    except OSError as error:
        raise WorkspaceError(f"cannot read pseudonymisation key {path}: {error.strerror}") from error
    try:
        return Pseudonymiser(bytes.fromhex(text), form)
    except ValueError as error:
        raise WorkspaceError(f"pseudonymisation key {path} is not {KEY_BYTES} bytes of hex") from error
