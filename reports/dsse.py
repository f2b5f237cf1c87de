"""DSSE envelopes (secure-systems-lab/dsse v1) signed with Ed25519, over `cryptography` alone."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from reports.errors import CertificateError, CertificateFormatError

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """The pre-authentication encoding: `DSSEv1 <len(type)> <type> <len(body)> <body>`."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()


def sign_envelope(payload_type: str, payload: bytes, private_key: Ed25519PrivateKey) -> dict[str, Any]:
    signature = private_key.sign(pae(payload_type, payload))
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": key_id(private_key.public_key()), "sig": base64.b64encode(signature).decode("ascii")}],
    }


def parse_envelope(data: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CertificateFormatError(f"not a certificate: the file is not JSON ({error})") from error
    if not isinstance(envelope, dict) or not {"payloadType", "payload", "signatures"} <= set(envelope):
        raise CertificateFormatError("not a certificate: no DSSE envelope (payloadType, payload, signatures)")
    return envelope


def envelope_payload(envelope: dict[str, Any]) -> bytes:
    payload_type = envelope["payloadType"]
    if payload_type != INTOTO_PAYLOAD_TYPE:
        raise CertificateError(f"envelope payload type is {payload_type!r}, not {INTOTO_PAYLOAD_TYPE!r}")
    try:
        return base64.b64decode(envelope["payload"], validate=True)
    except (ValueError, TypeError) as error:
        raise CertificateError("envelope payload is not valid base64") from error


def signature_for(envelope: dict[str, Any], public_key: Ed25519PublicKey) -> bytes:
    """The envelope's signature by this key (matched by key id), not yet checked."""
    wanted = key_id(public_key)
    signatures = envelope["signatures"] if isinstance(envelope["signatures"], list) else []
    for entry in signatures:
        if isinstance(entry, dict) and entry.get("keyid", wanted) == wanted:
            try:
                return base64.b64decode(entry.get("sig", ""), validate=True)
            except (ValueError, TypeError):
                raise CertificateError("envelope signature is not valid base64") from None
    raise CertificateError("the certificate was not signed by the given public key (no signature with its key id)")


def verify_envelope(envelope: dict[str, Any], public_key: Ed25519PublicKey) -> bytes:
    """The payload, once a signature by `public_key` over its PAE checks out; raises otherwise."""
    payload = envelope_payload(envelope)
    try:
        public_key.verify(signature_for(envelope, public_key), pae(envelope["payloadType"], payload))
    except InvalidSignature:
        raise CertificateError("envelope signature does not verify: the statement or signature was changed") from None
    return payload
