"""Witness cosignatures (c2sp.org/tlog-cosignature, the Ed25519 `cosignature/v1` type).

A cosignature is one more signature line on a checkpoint note, by a witness that checked the
checkpoint is consistent with every earlier one it saw for that log. Byte for byte:

- key id = SHA-256(name || "\\n" || 0x04 || 32-byte Ed25519 public key)[:4]  (type 0x04, not 0x01);
- the signed message is "cosignature/v1\\n" "time <T>\\n" followed by the checkpoint's note text
  (its final newline included, its signature lines not), T a POSIX time in decimal;
- the line is `— <name> base64(key id || T as 8 bytes big-endian || 64-byte Ed25519 signature)`.

A verifier key is `name+<key id, 8 hex>+base64(0x04 || public key)`. The name is not signed, so
one witness key must never serve two names. Pure: imports the standard library, `cryptography`
and the ledger's own note code; verification raises, never returns a bool.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import VerificationError
from ledger.note import NoteError, split_note, typed_key_id, typed_verifier_key

__all__ = [
    "COSIGNATURE_TYPE",
    "Cosignature",
    "WitnessKey",
    "cosign",
    "cosignature_key_id",
    "cosignature_message",
    "cosignatures",
    "parse_witness_key",
    "verify_cosignatures",
    "witness_verifier_key",
]

COSIGNATURE_TYPE = 0x04
"""The signed-note signature type of timestamped Ed25519 checkpoint cosignatures."""

_HEADER = "cosignature/v1\n"
_KEY_ID_SIZE = 4
_TIMESTAMP_SIZE = 8
_SIGNATURE_SIZE = 64
_BLOB_SIZE = _KEY_ID_SIZE + _TIMESTAMP_SIZE + _SIGNATURE_SIZE
_MAX_TIMESTAMP = 2**63 - 1
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")
_EM_DASH = "\u2014"


def _check_name(name: str) -> None:
    if not name or "+" in name or any(c.isspace() or c < " " for c in name):
        raise NoteError(f"witness name {name!r} must be non-empty and hold no spaces or '+'")


def cosignature_key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """SHA-256(name || "\\n" || 0x04 || public key)[:4]."""
    _check_name(name)
    return typed_key_id(name, COSIGNATURE_TYPE, public_key)


def witness_verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """`name+<key id hex>+base64(0x04 || public key)`: what a log's users configure to trust a witness."""
    _check_name(name)
    return typed_verifier_key(name, COSIGNATURE_TYPE, public_key)


@dataclass(frozen=True)
class WitnessKey:
    """A witness's name and Ed25519 public key, as its verifier key gives them."""

    name: str
    public_key: Ed25519PublicKey

    @property
    def key_id(self) -> bytes:
        """The 4-byte key id that names this witness in its cosignature lines, to pick its line out of many.

        Raises `NoteError` if the name is not a valid witness name.
        """
        return cosignature_key_id(self.name, self.public_key)

    @property
    def vkey(self) -> str:
        """The verifier key text, `name+keyid+base64(0x04 || key)`: what a log's users configure to trust it.

        Raises `NoteError` if the name is not a valid witness name.
        """
        return witness_verifier_key(self.name, self.public_key)


def parse_witness_key(vkey: str) -> WitnessKey:
    """Parse `name+keyid+base64(0x04 || key)`; the key id must match. Raises `NoteError`."""
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3:
        raise NoteError("a witness verifier key has the form name+keyid+key")
    name, id_hex, key64 = parts
    _check_name(name)
    if not _KEY_ID_HEX.fullmatch(id_hex):
        raise NoteError(f"witness key id {id_hex!r} is not 8 lowercase hex digits")
    try:
        material = base64.b64decode(key64, validate=True)
    except binascii.Error:
        raise NoteError("witness key material is not standard base64") from None
    if not material or material[0] != COSIGNATURE_TYPE:
        kind = f"0x{material[0]:02x}" if material else "none"
        raise NoteError(f"witness key {name} has signature type {kind}; a cosignature/v1 key has 0x04")
    if len(material) != 1 + 32:
        raise NoteError(f"witness key {name} holds {len(material) - 1} key bytes; an Ed25519 key has 32")
    key = WitnessKey(name, Ed25519PublicKey.from_public_bytes(material[1:]))
    if key.key_id.hex() != id_hex:
        raise NoteError(f"witness key id {id_hex} does not match its name and key, which give {key.key_id.hex()}")
    return key


def cosignature_message(text: str, timestamp: int) -> bytes:
    """The bytes a cosignature signs: the header line, the time line, then the checkpoint text."""
    if isinstance(timestamp, bool) or not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise NoteError(f"cosignature time {timestamp!r} is not in 0..2**63-1")
    if not text.endswith("\n"):
        raise NoteError("a cosigned checkpoint's text must end with a newline")
    return f"{_HEADER}time {timestamp}\n{text}".encode()


def cosign(text: str, name: str, private_key: Ed25519PrivateKey, timestamp: int) -> str:
    """One cosignature line, newline included, by witness `name` on checkpoint `text` at `timestamp`."""
    if timestamp <= 0:
        raise NoteError("a witness's cosignature must carry a time after the epoch")
    signature = private_key.sign(cosignature_message(text, timestamp))
    blob = cosignature_key_id(name, private_key.public_key()) + struct.pack(">Q", timestamp) + signature
    return f"{_EM_DASH} {name} {base64.b64encode(blob).decode('ascii')}\n"


@dataclass(frozen=True)
class Cosignature:
    """A cosignature that verified: by whom, and the time it states."""

    witness: str
    timestamp: int


def cosignatures(note: str, keys: Sequence[WitnessKey]) -> list[Cosignature]:
    """The cosignatures on `note` by `keys` that verify, one per key, in the order of `keys`.

    Lines by other keys are ignored, as signed-note requires; a line whose name and key id match
    one of `keys` but whose signature, size or time is wrong fails the whole note
    (`VerificationError`), as the spec recommends.
    """
    text, lines = split_note(note)
    found: dict[bytes, Cosignature] = {}
    wanted = {(key.name, key.key_id): key for key in keys}
    for name, blob in lines:
        key = wanted.get((name, blob[:_KEY_ID_SIZE]))
        if key is None:
            continue
        if len(blob) != _BLOB_SIZE:
            raise VerificationError(f"the cosignature by {name} is {len(blob)} bytes, not {_BLOB_SIZE}")
        (timestamp,) = struct.unpack(">Q", blob[_KEY_ID_SIZE : _KEY_ID_SIZE + _TIMESTAMP_SIZE])
        if timestamp > _MAX_TIMESTAMP:
            raise VerificationError(f"the cosignature by {name} has a time beyond 2**63-1")
        try:
            key.public_key.verify(blob[_KEY_ID_SIZE + _TIMESTAMP_SIZE :], cosignature_message(text, timestamp))
        except InvalidSignature:
            raise VerificationError(f"the cosignature by {name} does not verify") from None
        found.setdefault(key.key_id, Cosignature(name, timestamp))
    return [found[key.key_id] for key in keys if key.key_id in found]


def verify_cosignatures(note_text: str, witness_verifier_keys: Sequence[str], threshold: int | None = None) -> None:
    """Require valid cosignatures on the checkpoint note `note_text` by `threshold` of the given witnesses.

    `witness_verifier_keys` are verifier key strings (`name+keyid+base64(0x04 || key)`);
    `threshold` defaults to all of them. Raises `NoteError` for a malformed key or an impossible
    threshold, and `VerificationError` when too few witnesses cosigned or a cosignature is bad.
    """
    keys = [parse_witness_key(vkey) for vkey in witness_verifier_keys]
    if len({key.key_id for key in keys}) != len(keys):
        raise NoteError("the same witness key was given twice")
    need = len(keys) if threshold is None else threshold
    if not keys or not 1 <= need <= len(keys):
        raise NoteError(f"a witness threshold of {need} is impossible with {len(keys)} witness keys")
    found = cosignatures(note_text, keys)
    if len(found) < need:
        named = {c.witness for c in found}
        missing = ", ".join(key.name for key in keys if key.name not in named)
        raise VerificationError(
            f"the checkpoint is cosigned by {len(found)} of the {len(keys)} witnesses given,"
            f" fewer than the {need} required (missing: {missing})"
        )
