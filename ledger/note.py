"""Signed notes (c2sp.org/signed-note) with Ed25519, and tree heads as c2sp.org/tlog-checkpoint text.

A signed note is a text ending in a newline, a blank line, and signature lines
`— <key name> base64(key id || signature)`. The key id is the first four bytes of
SHA-256(key name || "\\n" || 0x01 || 32-byte Ed25519 public key), and the signature covers the
text's UTF-8 bytes, final newline included. This is the format of golang.org/x/mod/sumdb/note, so
Go tooling can check our tree heads and we can check notes signed there.

A checkpoint's text is three lines: the log's origin, the tree size in decimal, and the root hash
in standard base64. `Checkpoint.parse` is strict: one spelling per checkpoint, no extension lines.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger.errors import LedgerError, VerificationError

__all__ = [
    "ED25519_SIGNATURE_TYPE",
    "Checkpoint",
    "NoteError",
    "key_id",
    "parse_verifier_key",
    "sign_note",
    "split_note",
    "verifier_key",
    "verify_note",
]

ED25519_SIGNATURE_TYPE = 0x01
"""The signed-note signature type byte of Ed25519."""

MAX_SIGNATURES = 100
"""Notes with more signature lines than this are refused (the spec asks verifiers for at least 16)."""

_EM_DASH = "\u2014"
_SIGNATURE_PREFIX = _EM_DASH + " "
_KEY_ID_SIZE = 4
_ED25519_KEY_SIZE = 32
_HASH_SIZE = 32
_MAX_TREE_SIZE = 2**64 - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_KEY_ID_HEX = re.compile(r"[0-9a-fA-F]{8}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


class NoteError(LedgerError):
    """A checkpoint, a note to sign, a key name or a verifier key is malformed."""


def _has_bad_name(name: str) -> bool:
    return not name or "+" in name or any(c.isspace() or c < " " for c in name) or not _is_utf8(name)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_name(name: str) -> None:
    if _has_bad_name(name):
        raise NoteError(f"key name {name!r} must be non-empty, valid UTF-8, and hold no spaces or '+'")


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _decode_base64(text: str) -> bytes | None:
    """Return the bytes of strict standard base64 `text`, or None if it is not that."""
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return None


def typed_key_id(name: str, key_type: int, public_key: Ed25519PublicKey) -> bytes:
    """SHA-256(name || "\\n" || key type || public key)[:4]: the C2SP key id of any key type
    (0x01 a log's Ed25519 note key, 0x04 a witness's cosignature key). Checks no name."""
    material = name.encode("utf-8") + b"\n" + bytes([key_type]) + _raw(public_key)
    return hashlib.sha256(material).digest()[:_KEY_ID_SIZE]


def typed_verifier_key(name: str, key_type: int, public_key: Ed25519PublicKey) -> str:
    """`name+<key id, 8 hex>+base64(key type || public key)`. Checks no name."""
    material = bytes([key_type]) + _raw(public_key)
    key_hash = typed_key_id(name, key_type, public_key).hex()
    return f"{name}+{key_hash}+{base64.b64encode(material).decode('ascii')}"


def key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """Return the 4-byte key id: SHA-256(name || "\\n" || 0x01 || public key)[:4]."""
    _check_name(name)
    return typed_key_id(name, ED25519_SIGNATURE_TYPE, public_key)


def verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """Return the verifier key string `name+<key id, 8 hex>+base64(0x01 || public key)`."""
    _check_name(name)
    return typed_verifier_key(name, ED25519_SIGNATURE_TYPE, public_key)


def parse_verifier_key(vkey: str) -> tuple[str, Ed25519PublicKey]:
    """Parse a verifier key string into its name and Ed25519 public key; the key id must match."""
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise NoteError("verifier key must have the form name+keyid+key")
    name, id_hex, key64 = parts
    _check_name(name)
    if not _KEY_ID_HEX.fullmatch(id_hex):
        raise NoteError(f"verifier key id {id_hex!r} is not 8 hex digits")
    material = _decode_base64(key64)
    if not material:
        raise NoteError("verifier key material is not standard base64")
    if material[0] != ED25519_SIGNATURE_TYPE:
        raise NoteError(f"verifier key has signature type 0x{material[0]:02x}; only Ed25519 (0x01) is supported")
    if len(material) != 1 + _ED25519_KEY_SIZE:
        raise NoteError(f"verifier key holds {len(material) - 1} key bytes; an Ed25519 key has 32")
    public_key = Ed25519PublicKey.from_public_bytes(material[1:])
    expected = key_id(name, public_key).hex()
    if id_hex.lower() != expected:
        raise NoteError(f"verifier key id {id_hex} does not match its name and key, which give {expected}")
    return name, public_key


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    if _CONTROL.search(text):
        raise NoteError("note text must hold no control characters other than newline")
    if not _is_utf8(text):
        raise NoteError("note text must be valid UTF-8")


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """Return `text` signed by `name`'s key: text, a blank line, and one signature line.

    Raises `NoteError` unless `text` ends in a newline and holds no other control characters, and
    `name` is a valid key name.
    """
    _check_text(text)
    _check_name(name)
    signature = private_key.sign(text.encode("utf-8"))
    blob = key_id(name, private_key.public_key()) + signature
    return f"{text}\n{_SIGNATURE_PREFIX}{name} {base64.b64encode(blob).decode('ascii')}\n"


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """Split a signed note into its text and its signature lines as (key name, key id || signature).

    Checks the form only (UTF-8, no control characters, a blank line, well-formed signature lines,
    at most `MAX_SIGNATURES`); no signature is verified. Raises `VerificationError`, since a note
    that fails here cannot be trusted whatever it carries.
    """
    if not _is_utf8(note):
        raise VerificationError("note is not valid UTF-8")
    if _CONTROL.search(note):
        raise VerificationError("note holds a control character other than newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise VerificationError("note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise VerificationError("note does not end with a signature line and a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise VerificationError(f"note has {len(lines)} signatures, more than {MAX_SIGNATURES}")
    signatures: list[tuple[str, bytes]] = []
    for number, line in enumerate(lines, start=1):
        signer, _, blob64 = line.removeprefix(_SIGNATURE_PREFIX).partition(" ")
        blob = _decode_base64(blob64)
        if not line.startswith(_SIGNATURE_PREFIX) or _has_bad_name(signer) or blob is None or len(blob) < 5:
            raise VerificationError(f"note signature line {number} is malformed")
        signatures.append((signer, blob))
    return text, signatures


def verify_note(note: str, name: str, public_key: Ed25519PublicKey) -> str:
    """Return the text of `note` once a signature by (`name`, `public_key`) on it verifies.

    Signature lines by other keys are ignored, as the spec requires. Raises `VerificationError`
    if the note is malformed, has no signature by this key, or has one that does not verify, and
    `NoteError` if `name` itself is not a valid key name.
    """
    wanted = key_id(name, public_key)
    text, signatures = split_note(note)
    found = False
    for signer, blob in signatures:
        if signer != name or blob[:_KEY_ID_SIZE] != wanted:
            continue
        found = True
        try:
            public_key.verify(blob[_KEY_ID_SIZE:], text.encode("utf-8"))
        except InvalidSignature:
            raise VerificationError(f"note signature by {name} does not verify") from None
    if not found:
        raise VerificationError(f"note has no signature by {name} with key id {wanted.hex()}")
    return text


@dataclass(frozen=True)
class Checkpoint:
    """A tree head as the text of a c2sp.org/tlog-checkpoint: origin, size, root hash."""

    origin: str
    size: int
    root_hash: bytes

    def __post_init__(self) -> None:
        if not self.origin:
            raise NoteError("checkpoint origin is empty")
        if "\n" in self.origin or _CONTROL.search(self.origin) or not _is_utf8(self.origin):
            raise NoteError("checkpoint origin must be one line of UTF-8 text without control characters")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 0 <= self.size <= _MAX_TREE_SIZE:
            raise NoteError(f"checkpoint size {self.size!r} is not an integer in 0..2**64-1")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != _HASH_SIZE:
            raise NoteError(f"checkpoint root hash must be {_HASH_SIZE} bytes")

    def to_text(self) -> str:
        """Return the note text: origin, decimal size and base64 root hash, each ending in a newline."""
        root64 = base64.b64encode(self.root_hash).decode("ascii")
        return f"{self.origin}\n{self.size}\n{root64}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse the text that `to_text` writes, and only that; raise `NoteError` on anything else."""
        if not text.endswith("\n"):
            raise NoteError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError(f"checkpoint has {len(lines)} lines; it needs origin, size and root hash")
        if len(lines) > 3:
            raise NoteError("checkpoint has extension lines after the root hash, which are not supported")
        origin, size_line, root_line = lines
        if not _DECIMAL.fullmatch(size_line) or len(size_line) > 20:
            raise NoteError(f"checkpoint size {size_line!r} is not a decimal number without leading zeros")
        root_hash = _decode_base64(root_line)
        if root_hash is None or base64.b64encode(root_hash).decode("ascii") != root_line:
            raise NoteError(f"checkpoint root hash {root_line!r} is not canonical standard base64")
        if len(root_hash) != _HASH_SIZE:
            raise NoteError(f"checkpoint root hash is {len(root_hash)} bytes, not {_HASH_SIZE}")
        return cls(origin=origin, size=int(size_line), root_hash=root_hash)
