"""Key files and their pins: which keys a workspace was created with, checked on every use.

A swapped pseudonymisation key would make every request find "no data held", and a swapped
signing key would sign heads no auditor can check, so each is pinned in the database and the
ledger at init and compared whenever it is loaded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from dataclasses import dataclass
from pathlib import Path

from forget.errors import WorkspaceError
from forget.subjects.identity import IdentityForm
from ledger.evidence import EntryKind

KEYS_DIR = "keys"
PSEUDONYM_KEY = "pseudonym.key"
SIGNING_KEY = "signing.pem"
PUBLIC_KEY = "signing.pub.pem"


class KeyMismatchError(WorkspaceError):
    """A key file, or the identity form, differs from what the workspace pinned at init."""


PIN_PSEUDONYM_KEY = "pseudonym_key"
PIN_SIGNING_KEY = "signing_key"
PIN_IDENTITY = "identity_form"
INITIALIZED = EntryKind.WORKSPACE_INITIALIZED.value
_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


@dataclass(frozen=True)
class Pins:
    """What the workspace was created with: the keys' fingerprints and the identity form.

    Kept in the database (and logged in the ledger's first entry); every load of a key is checked
    against them (`Workspace.check_keys`).
    """

    pseudonym_key: str
    """`Pseudonymiser.fingerprint()`: a keyed hash that names the key without revealing it."""
    signing_key: str
    """sha256 of the raw Ed25519 public key (the DSSE key id's hex part)."""
    identity: IdentityForm

    def rows(self) -> dict[str, str]:
        """The pins as the database's key-value rows."""
        return {
            PIN_PSEUDONYM_KEY: self.pseudonym_key,
            PIN_SIGNING_KEY: self.signing_key,
            PIN_IDENTITY: json.dumps(self.identity.to_dict(), sort_keys=True),
        }

    @classmethod
    def from_rows(cls, rows: dict[str, str]) -> Pins:
        """The pins in the database's rows.

        Raises `WorkspaceError` (exit 3) when a pin is missing or unreadable (a database created by an
        older forget, or edited).
        """
        try:
            return cls(
                rows[PIN_PSEUDONYM_KEY], rows[PIN_SIGNING_KEY], IdentityForm.from_dict(json.loads(rows[PIN_IDENTITY]))
            )
        except (KeyError, ValueError) as error:
            raise WorkspaceError(
                "the workspace database has no pinned keys (created by an older forget, or edited): run `forget init`"
                " for a new workspace"
            ) from error


def public_key_fingerprint(pem: bytes) -> str:
    """sha256 of an Ed25519 public key's raw bytes, from its PEM with the standard library only
    (so that `forget status` checks the key without loading `cryptography`).

    Raises `ValueError` for bytes that are not an Ed25519 public key in PEM.
    """
    lines = pem.decode("ascii", "replace").strip().splitlines()
    if len(lines) < 3 or lines[0] != "-----BEGIN PUBLIC KEY-----" or lines[-1] != "-----END PUBLIC KEY-----":
        raise ValueError("not a PEM public key")
    der = base64.b64decode("".join(lines[1:-1]), validate=True)
    if len(der) != 44 or not der.startswith(_ED25519_SPKI_PREFIX):
        raise ValueError("not an Ed25519 key")
    return hashlib.sha256(der[len(_ED25519_SPKI_PREFIX) :]).hexdigest()


def key_file_warnings(keys_dir: Path) -> list[str]:
    """Secret key files that group or others can read: a warning on every command, not a refusal
    (the operator may be mid-way through fixing it, and refusing would block erasures)."""
    found = []
    for name in (PSEUDONYM_KEY, SIGNING_KEY):
        try:
            mode = stat.S_IMODE((keys_dir / name).stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            found.append(f"{KEYS_DIR}/{name} is readable by other users (mode {mode:04o}): run chmod 600 on it")
    return found
