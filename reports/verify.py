"""Offline verification of a certificate with the certificate and the operator's verifier key alone.

Imports neither torch nor a database driver. Every check raises `CertificateError` (the
verification failed: exit 1) or `CertificateFormatError` (the input is not a certificate or a key
at all: exit 2), naming what failed; a certificate that returns from `verify_certificate` is valid.

The order is chosen for hostile input. The size is capped before anything is parsed; the DSSE
signature is checked over the raw payload bytes before the payload is parsed, so an unsigned file
costs one hash, not a parse of everything in it; only then are the statement's fields, the signed
checkpoint (whose origin must be the verifier key's name), every inclusion proof, and every claim
against the entries it rests on (`reports.certificate.derive_claims`) checked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import merkle
from ledger.canonical import CanonicalizationError, canonical_json
from ledger.cosignature import verify_cosignatures
from ledger.errors import VerificationError
from ledger.evidence import DecodedEntry, EntryKind, EvidenceError, check_hex64, check_int, decode_entry, loads_strict
from ledger.note import Checkpoint, NoteError, key_id, parse_verifier_key, verifier_key, verify_note
from reports.certificate import (
    MAX_PROOF_LENGTH,
    REQUEST_FIELDS,
    SHARD_FIELDS,
    Claims,
    Statement,
    derive_claims,
    parse_statement,
    subjects_of,
)
from reports.dsse import read_envelope, verify_envelope
from reports.errors import CertificateError, CertificateFormatError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "VerifiedCertificate",
    "VerifierKey",
    "load_verifier_key",
    "read_certificate",
    "verify_certificate",
    "verify_witness_cosignatures",
]

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
"""The largest certificate read (16 MiB). A certificate of one request in a batch of 100, in a log
of 10^6 entries, is about 60 KiB (benchmarks/bench_certificate.py); a subject whose records sit in
every one of 100 shards of 100 slices needs a few MiB. Raise it with `--max-bytes`."""

_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----\r?\n[A-Za-z0-9+/=\r\n]*?-----END PUBLIC KEY-----\r?\n?")


@dataclass(frozen=True)
class VerifierKey:
    """The key an auditor trusts, and the one log it trusts it for.

    The text form is a C2SP note verifier key, `<origin>+<key id, 8 hex>+<base64(0x01 || key)>`,
    the last line of `forget keys public`. The same Ed25519 key can sign several logs (a shadow
    workspace made with `init --keys-from`); the name pins which one a certificate must come from.
    """

    origin: str
    public_key: Ed25519PublicKey

    def __post_init__(self) -> None:
        try:
            key_id(self.origin, self.public_key)  # checks the name is a valid note key name
        except NoteError as error:
            raise CertificateFormatError(f"the log origin is not a valid key name: {error}") from None

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """The key in its text form (surrounding whitespace ignored).

        Raises `CertificateFormatError` for a malformed key, a key id in upper case or not matching the
        name and key, a key that is not Ed25519, or a name that is not a valid note key name.
        """
        parts = text.strip().split("+", 2)
        if len(parts) == 3 and parts[1] != parts[1].lower():
            raise CertificateFormatError("the verifier key is malformed: its key id must be lower-case hex")
        try:
            name, public_key = parse_verifier_key(text.strip())
        except NoteError as error:
            raise CertificateFormatError(f"the verifier key is malformed: {error}") from None
        except ValueError:
            raise CertificateFormatError("the verifier key does not hold an Ed25519 public key") from None
        return cls(name, public_key)

    def to_text(self) -> str:
        """The text form `parse` reads: what `forget keys public` prints last, and what a rendering shows."""
        return verifier_key(self.origin, self.public_key)


def _pem_key(block: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(block.encode("ascii"))
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateFormatError("the key file's PEM block is not a readable public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise CertificateFormatError(f"the key file holds a {type(key).__name__}, not an Ed25519 public key")
    return key


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_verifier_key(data: bytes, origin: str | None = None) -> VerifierKey:
    """The verifier key in a key file: what `forget keys public` prints (PEM, then the verifier key
    line), the verifier key line alone, or a bare PEM key together with `origin`.

    A bare PEM key names no log, so it is refused without `origin`: pinning the log must be the
    auditor's explicit act, never read from the certificate under test. `origin` beside a verifier
    key line must equal its name.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CertificateFormatError("the public key file is not text") from None
    pems = _PEM_BLOCK.findall(text)
    rest = [line.strip() for line in _PEM_BLOCK.sub("\n", text).splitlines() if line.strip()]
    if len(pems) > 1 or len(rest) > 1:
        raise CertificateFormatError("the public key file holds more than one key")
    pem = _pem_key(pems[0]) if pems else None
    if rest:
        key = VerifierKey.parse(rest[0])
        if pem is not None and _raw(pem) != _raw(key.public_key):
            raise CertificateFormatError("the key file's PEM key and its verifier key line are different keys")
        if origin is not None and origin != key.origin:
            raise CertificateFormatError(f"--origin {origin[:80]!r} is not the verifier key's name {key.origin!r}")
        return key
    if pem is None:
        raise CertificateFormatError("the public key file holds neither a note verifier key nor a PEM public key")
    if origin is None:
        raise CertificateFormatError(
            "the public key is a bare PEM key, which names no log: give the note verifier key"
            " (the last line of `forget keys public`), or name the log with --origin"
        )
    return VerifierKey(origin, pem)


def read_certificate(path: Path, max_bytes: int = DEFAULT_MAX_BYTES, what: str = "certificate") -> bytes:
    """At most `max_bytes` of the file: a larger one is refused before it is read whole."""
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as error:
        raise CertificateFormatError(f"cannot read the {what} {path}: {error.strerror}") from error
    _check_size(len(data), max_bytes, what)
    return data


def _check_size(size: int, max_bytes: int, what: str) -> None:
    if size > max_bytes:
        raise CertificateFormatError(
            f"the {what} is larger than {max_bytes} bytes, the most a {what} may have (see --max-bytes)"
        )


@dataclass(frozen=True)
class VerifiedCertificate:
    """What `verify_certificate` returns, and only for a certificate that verified: `reports.render` renders
    nothing else.

    `entries` is how many ledger entries were proven, `later_size` the size of the later checkpoint
    when one was checked, `claims` what the log proves about the request.
    """

    statement: dict[str, Any]
    """The statement as signed (its JSON), for renderings."""
    checkpoint: Checkpoint
    entries: int
    later_size: int | None = None
    claims: Claims | None = None

    def summary(self) -> dict[str, Any]:
        """The facts a `--json` verification prints beside `"valid": true`: the request's outcome, the log's head."""
        request = self.predicate["request"]
        return {
            "request_id": request["request_id"],
            "outcome": request["outcome"],
            "records_erased": request["records_erased"],
            "deadline_met": request["deadline_met"],
            "seconds_in_use_after_request": request.get("seconds_in_use_after_request"),
            "origin": self.checkpoint.origin,
            "tree_size": self.checkpoint.size,
            "root_hash": self.checkpoint.root_hash.hex(),
            "entries_proven": self.entries,
            "later_tree_size": self.later_size,
        }

    @property
    def predicate(self) -> dict[str, Any]:
        """The signed statement's predicate (request, erasure, log, tool)."""
        predicate: dict[str, Any] = self.statement["predicate"]
        return predicate


def _checkpoint(note: str, key: VerifierKey, what: str) -> Checkpoint:
    try:
        checkpoint = Checkpoint.parse(verify_note(note, key.origin, key.public_key))
    except VerificationError as error:
        raise CertificateError(f"{what} does not verify: {error}") from error
    except NoteError as error:
        raise CertificateError(f"{what} is malformed: {error}") from error
    if checkpoint.origin != key.origin:
        raise CertificateError(f"{what} is for log {checkpoint.origin[:80]!r}, not {key.origin!r}")
    return checkpoint


def _canonical(value: object, data: bytes) -> bool:
    try:
        return canonical_json(value) == data
    except CanonicalizationError:
        return False


def _entries(statement: Statement, checkpoint: Checkpoint) -> list[DecodedEntry]:
    """Each entry's leaf hash, inclusion proof and bytes; returns them decoded, in order."""
    decoded = []
    for item in statement.entries:
        index = item.index
        leaf = merkle.leaf_hash(item.canonical)
        if leaf != item.leaf_hash:
            raise CertificateError(f"ledger entry {index}: its leaf hash does not match its bytes")
        if index >= checkpoint.size:
            raise CertificateError(f"ledger entry {index} is beyond the signed checkpoint's {checkpoint.size} entries")
        try:
            merkle.verify_inclusion(leaf, index, checkpoint.size, item.inclusion_proof, checkpoint.root_hash)
        except (VerificationError, ValueError) as error:
            raise CertificateError(f"ledger entry {index}: the inclusion proof fails: {error}") from error
        try:
            entry = decode_entry(item.canonical)
            canonical = _canonical(loads_strict(item.canonical), item.canonical)
        except EvidenceError as error:
            raise CertificateError(f"ledger entry {index} is malformed: {error}") from None
        if not canonical:
            raise CertificateError(f"ledger entry {index} is not in RFC 8785 canonical form")
        if entry.index != index or entry.kind.value != item.kind:
            raise CertificateError(f"ledger entry {index}: its index or kind differ from the logged bytes")
        decoded.append(entry)
    return decoded


def _compare(stated: Claims, logged: Claims) -> None:
    """The statement's claims must be what the log proves, field by field."""
    for name in REQUEST_FIELDS:
        if getattr(stated.request, name) != getattr(logged.request, name):
            raise CertificateError(f"the statement's request.{name} differs from the logged entries")
    if logged.erasure is None:
        if stated.erasure is not None:
            raise CertificateError("the statement claims an erasure, but the log says no data was held")
        return
    if stated.erasure is None:
        raise CertificateError("the statement has no erasure, but the log says records were erased")
    if stated.erasure.run_id != logged.erasure.run_id:
        raise CertificateError("the statement's erasure.run_id differs from the logged run")
    stated_shards = [s.shard for s in stated.erasure.shards]
    logged_shards = [s.shard for s in logged.erasure.shards]
    if stated_shards != logged_shards:
        raise CertificateError(
            f"the statement's erasure names shards {stated_shards[:20]}, the log rewound shards {logged_shards[:20]}"
        )
    for claim, proven in zip(stated.erasure.shards, logged.erasure.shards, strict=True):
        for name in SHARD_FIELDS:
            if getattr(claim, name) != getattr(proven, name):
                raise CertificateError(f"the statement's shard {claim.shard} {name} differs from the logged entries")


def _later(data: bytes, key: VerifierKey, checkpoint: Checkpoint, max_bytes: int) -> int:
    """A bundle from `forget ledger head --consistency-from SIZE`: a later head that extends this one."""
    _check_size(len(data), max_bytes, "later checkpoint")
    try:
        bundle = loads_strict(data)
    except EvidenceError as error:
        raise CertificateFormatError(
            f"the later checkpoint is not a JSON bundle from `forget ledger head`: {error}"
        ) from None
    if type(bundle) is not dict or set(bundle) != {"note", "consistency_from", "consistency_proof"}:
        raise CertificateFormatError("the later checkpoint lacks note, consistency_from or consistency_proof")
    note, start, hashes = bundle["note"], bundle["consistency_from"], bundle["consistency_proof"]
    if type(note) is not str or type(hashes) is not list or len(hashes) > MAX_PROOF_LENGTH:
        raise CertificateFormatError("the later checkpoint's note or consistency proof is malformed")
    try:
        check_int(start, "consistency_from", 1)
        proof = [bytes.fromhex(check_hex64(h, "a consistency proof hash")) for h in hashes]
    except EvidenceError as error:
        raise CertificateFormatError(f"the later checkpoint is malformed: {error}") from None
    later = _checkpoint(note, key, "the later checkpoint")
    if start != checkpoint.size:
        raise CertificateError(
            f"the later checkpoint's proof starts at size {start}, the certificate's log has size {checkpoint.size}"
        )
    try:
        merkle.verify_consistency(checkpoint.size, later.size, checkpoint.root_hash, later.root_hash, proof)
    except (VerificationError, ValueError) as error:
        raise CertificateError(f"the log did not only grow since the certificate: {error}") from error
    return later.size


def verify_certificate(
    data: bytes,
    key: VerifierKey,
    later_checkpoint: bytes | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    witness_keys: Sequence[str] = (),
    witness_threshold: int | None = None,
) -> VerifiedCertificate:
    """Verify a certificate offline; raises `CertificateError` or `CertificateFormatError`, else it is valid.

    `key` is the auditor's `VerifierKey`: the public key and the one log (origin) it is trusted
    for. A bare public key is refused (`TypeError`): it pins no log, and a certificate of a shadow
    workspace signed with the same key would verify as the real one's.
    `later_checkpoint` is a bundle from `forget ledger head --consistency-from SIZE`.
    """
    if not isinstance(key, VerifierKey):
        raise TypeError("verify_certificate needs a VerifierKey(origin, public_key): a bare key pins no log")
    _check_size(len(data), max_bytes, "certificate")
    envelope = read_envelope(data)
    payload = verify_envelope(envelope, key.public_key)
    try:
        value = loads_strict(payload)
    except EvidenceError as error:
        raise CertificateError(f"the signed statement is not JSON: {error}") from None
    if not _canonical(value, payload):
        raise CertificateError("the signed statement is not in RFC 8785 canonical form")
    statement = parse_statement(value)
    pinned = key
    if statement.origin != pinned.origin:
        raise CertificateError(
            f"the certificate is from log {statement.origin[:80]!r}, the verifier key is for {pinned.origin!r}"
        )
    checkpoint = _checkpoint(statement.checkpoint_note, pinned, "the signed checkpoint")
    entries = _entries(statement, checkpoint)
    logged = derive_claims(statement.claims.request.request_id, entries)
    _compare(statement.claims, logged)
    completed = next(
        item
        for item, entry in zip(statement.entries, entries, strict=True)
        if entry.kind is EntryKind.REQUEST_COMPLETED
    )
    expected = [(s["name"], s["digest"]["sha256"]) for s in subjects_of(pinned.origin, completed, logged.erasure)]
    if list(statement.subjects) != expected:
        raise CertificateError("the statement's subjects do not match its request and checkpoints")
    later_size = _later(later_checkpoint, pinned, checkpoint, max_bytes) if later_checkpoint is not None else None
    if witness_keys:
        verify_witness_cosignatures(statement.checkpoint_note, witness_keys, witness_threshold)
    return VerifiedCertificate(value, checkpoint, len(entries), later_size, logged)


# --- witnesses (c2sp.org/tlog-cosignature): apart from the checks above -------------------------


def verify_witness_cosignatures(note: str, witness_keys: Sequence[str], threshold: int | None = None) -> None:
    """Require cosignatures on the certificate's checkpoint by `threshold` (default: all) of the witnesses.

    `witness_keys` are witness verifier keys (`name+keyid+base64(0x04 || key)`, what `forget witness
    init` prints). A witness cosigns a checkpoint only if it extends every one it cosigned before, so
    with enough witnesses an operator cannot show this auditor a history it hides from another.
    """
    try:
        verify_cosignatures(note, witness_keys, threshold)
    except NoteError as error:
        raise CertificateFormatError(f"the witness keys: {error}") from None
    except VerificationError as error:
        raise CertificateError(f"witnesses: {error}") from None
