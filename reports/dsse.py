"""DSSE envelopes (secure-systems-lab/dsse v1) signed with Ed25519, over `cryptography` alone.

Reading is strict and cheap before it is trusting: `read_envelope` reads the JSON (no duplicate
keys, exact fields, canonical base64), and `verify_envelope` checks the signature over the raw
payload bytes before anyone parses the payload. Any signature by the pinned key among several
is accepted; signatures by other keys (a countersigner, a bogus one) are ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.evidence import EvidenceError, loads_strict
from reports.errors import CertificateError, CertificateFormatError

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
MAX_SIGNATURES = 16
"""An envelope with more signatures than this is refused before any is checked."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """The pre-authentication encoding: `DSSEv1 <len(type)> <type> <len(body)> <body>`."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def key_id(public_key: Ed25519PublicKey) -> str:
    """`ed25519:` and the sha256 of the raw public key: the hint a signature carries to say who made it.

    Only a hint: verification tries the pinned key on every signature whatever its keyid, so a
    wrong id costs a check, never a false accept. Raises nothing.
    """
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()


def sign_envelope(payload_type: str, payload: bytes, private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """A DSSE envelope of `payload`, signed over its pre-authentication encoding (`pae`) with one signature.

    Signing the PAE, not the payload alone, binds the payload type, so a signed statement cannot be
    replayed as another kind of document. Raises nothing (Ed25519 signing does not fail).
    """
    signature = private_key.sign(pae(payload_type, payload))
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": key_id(private_key.public_key()), "sig": base64.b64encode(signature).decode("ascii")}],
    }


@dataclass(frozen=True)
class Signature:
    """One signature of an envelope as read: its key id hint and its bytes, neither trusted yet.

    Kept even when malformed (`sig` None) so that one bad signature among several does not reject
    an envelope another signature makes valid.
    """

    keyid: str | None
    sig: bytes | None
    """None when the base64 is malformed: such a signature verifies nothing, but does not stop another."""


@dataclass(frozen=True)
class Envelope:
    """A parsed envelope: its payload is still unverified bytes."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]


def _canonical_base64(text: str) -> bytes | None:
    """Strict standard base64 with one spelling per byte string (no stray bits, no whitespace).

    Only the last group can be spelt two ways (its unused bits); it alone is encoded again, so a
    large payload is not copied once more.
    """
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(text) != 4 * ((len(data) + 2) // 3):
        return None
    tail = len(data) % 3 or 3
    if data and base64.b64encode(data[-tail:]).decode("ascii") != text[-4:]:
        return None
    return data


def parse_envelope(data: bytes) -> dict[str, Any]:
    """The envelope as JSON, once `read_envelope` accepts it (for readers of its raw fields)."""
    read_envelope(data)
    value: dict[str, Any] = loads_strict(data)
    return value


def read_envelope(data: bytes) -> Envelope:
    """The envelope's parts; raises `CertificateFormatError` for anything that is not one."""
    try:
        value = loads_strict(data)
    except EvidenceError as error:
        raise CertificateFormatError(f"not a certificate: {error}") from None
    if type(value) is not dict or not {"payloadType", "payload", "signatures"} <= set(value):
        raise CertificateFormatError("not a certificate: no DSSE envelope (payloadType, payload, signatures)")
    extra = sorted(set(value) - {"payloadType", "payload", "signatures"})
    if extra:
        raise CertificateFormatError(f"the DSSE envelope has an unknown field {extra[0][:40]!r}")
    payload_type, payload64, signatures = value["payloadType"], value["payload"], value["signatures"]
    if type(payload_type) is not str:
        raise CertificateFormatError("the DSSE envelope's payloadType is not a string")
    if type(payload64) is not str:
        raise CertificateFormatError("the DSSE envelope's payload is not a string")
    payload = _canonical_base64(payload64)
    if payload is None:
        raise CertificateFormatError("the DSSE envelope's payload is not canonical base64")
    if type(signatures) is not list or not signatures:
        raise CertificateFormatError("the DSSE envelope's signatures are not a non-empty list")
    if len(signatures) > MAX_SIGNATURES:
        raise CertificateFormatError(f"the DSSE envelope has {len(signatures)} signatures, more than {MAX_SIGNATURES}")
    parsed = []
    for number, entry in enumerate(signatures, start=1):
        if type(entry) is not dict or "sig" not in entry or not set(entry) <= {"keyid", "sig"}:
            raise CertificateFormatError(f"the DSSE envelope's signature {number} is not {{keyid, sig}}")
        keyid, sig64 = entry.get("keyid"), entry["sig"]
        if (keyid is not None and type(keyid) is not str) or type(sig64) is not str:
            raise CertificateFormatError(f"the DSSE envelope's signature {number} has a keyid or sig that is not text")
        parsed.append(Signature(keyid, _canonical_base64(sig64)))
    return Envelope(payload_type, payload, tuple(parsed))


def verify_envelope(envelope: Envelope, public_key: Ed25519PublicKey) -> bytes:
    """The payload, once a signature by `public_key` over its PAE checks out; raises otherwise.

    Every signature whose key id is this key's (or that names no key id) is tried; the first that
    verifies wins. So a bogus signature put before a valid one cannot fail a valid certificate.
    """
    if envelope.payload_type != INTOTO_PAYLOAD_TYPE:
        raise CertificateError(f"envelope payload type is {envelope.payload_type[:60]!r}, not {INTOTO_PAYLOAD_TYPE!r}")
    wanted = key_id(public_key)
    signed = pae(envelope.payload_type, envelope.payload)
    candidates = [s for s in envelope.signatures if s.keyid in (None, "", wanted)]
    for signature in candidates:
        if signature.sig is None or len(signature.sig) != 64:
            continue
        try:
            public_key.verify(signature.sig, signed)
        except InvalidSignature:
            continue
        return envelope.payload
    if not candidates:
        raise CertificateError("the certificate was not signed by the given public key (no signature with its key id)")
    raise CertificateError("envelope signature does not verify: the statement or signature was changed")
