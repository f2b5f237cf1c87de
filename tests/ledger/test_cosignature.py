"""Tests for `ledger.cosignature`: the C2SP cosignature/v1 bytes, witness keys, thresholds.

The byte format is checked against the spec's own example line (key id, timestamp, length) and
against a vector computed here step by step from c2sp.org/tlog-cosignature with hashlib and
`cryptography` alone, independently of the module.
"""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger.cosignature import (
    Cosignature,
    cosign,
    cosignature_key_id,
    cosignature_message,
    cosignatures,
    parse_witness_key,
    verify_cosignatures,
    witness_verifier_key,
)
from ledger.errors import VerificationError
from ledger.note import NoteError, sign_note, verifier_key, verify_note

# The example of c2sp.org/tlog-cosignature ("a checkpoint that contains a cosignature").
SPEC_TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_LINE = (
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZ"
    "qhf5nNo0xUe+mbIUBkBIfZ+qnA=="
)
SPEC_TIME = 1679315147  # "time 1679315147" in the spec's signed-message example

LOG_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"forget test log").digest())
ORIGIN = "example.com/behind-the-sofa"
W1 = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"forget test witness 1").digest())
W2 = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"forget test witness 2").digest())
W1_NAME, W2_NAME = "witness.example.com/w1", "witness.example.com/w2"
T = 1700000000
PINNED_LINE = (
    "— witness.example.com/w1 l4vavgAAAABlU/EAFJd7N/9QMC+rdZt0dKdFALe8xYQuiBp2VtkasVu/1449V13sV9djR57byOoruFM1gNGf6g"
    "qEwxIK9PFDuPhrCg==\n"
)


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _note() -> str:
    return sign_note(SPEC_TEXT, ORIGIN, LOG_KEY)


def test_the_spec_example_line_has_the_timestamped_layout() -> None:
    name, _, blob64 = SPEC_LINE.removeprefix("— ").partition(" ")
    blob = base64.b64decode(blob64)
    assert name == "witness.example.com/w1"
    assert len(blob) == 4 + 8 + 64
    assert struct.unpack(">Q", blob[4:12]) == (SPEC_TIME,)
    assert cosignature_message(SPEC_TEXT, SPEC_TIME) == (
        b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
        b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )


def test_cosign_matches_a_vector_derived_from_the_spec_by_hand() -> None:
    raw = _raw(W1)
    key_id = hashlib.sha256(W1_NAME.encode() + b"\n" + b"\x04" + raw).digest()[:4]
    message = b"cosignature/v1\n" + f"time {T}\n".encode() + SPEC_TEXT.encode()
    signature = W1.sign(message)  # Ed25519 is deterministic: one signature per key and message
    expected = "— " + W1_NAME + " " + base64.b64encode(key_id + T.to_bytes(8, "big") + signature).decode() + "\n"
    assert cosign(SPEC_TEXT, W1_NAME, W1, T) == expected
    assert cosignature_key_id(W1_NAME, W1.public_key()) == key_id
    # The key id differs from the same key's ordinary note-signature id (type 0x01).
    assert key_id != hashlib.sha256(W1_NAME.encode() + b"\n" + b"\x01" + raw).digest()[:4]
    material = base64.b64encode(b"\x04" + raw).decode()
    assert witness_verifier_key(W1_NAME, W1.public_key()) == f"{W1_NAME}+{key_id.hex()}+{material}"
    # Pinned, so that a change of the byte layout cannot pass unnoticed.
    assert expected == PINNED_LINE


def test_a_cosigned_note_is_still_a_valid_signed_note_and_its_cosignatures_verify() -> None:
    note = _note() + cosign(SPEC_TEXT, W1_NAME, W1, T) + cosign(SPEC_TEXT, W2_NAME, W2, T + 5)
    assert verify_note(note, ORIGIN, LOG_KEY.public_key()) == SPEC_TEXT  # the log's signature, ignoring witnesses
    keys = [parse_witness_key(witness_verifier_key(n, k.public_key())) for n, k in ((W2_NAME, W2), (W1_NAME, W1))]
    assert cosignatures(note, keys) == [Cosignature(W2_NAME, T + 5), Cosignature(W1_NAME, T)]
    vkeys = [k.vkey for k in keys]
    verify_cosignatures(note, vkeys)
    verify_cosignatures(note, vkeys, threshold=1)


def test_too_few_cosignatures_fail_and_name_the_missing_witness() -> None:
    note = _note() + cosign(SPEC_TEXT, W1_NAME, W1, T)
    vkeys = [witness_verifier_key(W1_NAME, W1.public_key()), witness_verifier_key(W2_NAME, W2.public_key())]
    verify_cosignatures(note, vkeys, threshold=1)
    with pytest.raises(
        VerificationError,
        match=r"^the checkpoint is cosigned by 1 of the 2 witnesses given, fewer than the 2 required"
        r" \(missing: witness.example.com/w2\)$",
    ):
        verify_cosignatures(note, vkeys)
    # The log's own signature line is not a cosignature, even by a key of the same name.
    log_as_witness = witness_verifier_key(ORIGIN, LOG_KEY.public_key())
    with pytest.raises(VerificationError, match="cosigned by 0 of the 1"):
        verify_cosignatures(_note(), [log_as_witness])


def test_a_bad_cosignature_by_a_known_witness_fails_the_note() -> None:
    line = cosign(SPEC_TEXT, W1_NAME, W1, T)
    name, _, blob64 = line[2:-1].partition(" ")
    blob = bytearray(base64.b64decode(blob64))
    vkey = witness_verifier_key(W1_NAME, W1.public_key())
    blob[11] ^= 1  # another time than the one signed
    forged = f"— {name} {base64.b64encode(bytes(blob)).decode()}\n"
    with pytest.raises(VerificationError, match=r"^the cosignature by witness.example.com/w1 does not verify$"):
        verify_cosignatures(_note() + forged, [vkey])
    # A cosignature of another checkpoint does not verify on this one.
    other = cosign("example.com/behind-the-sofa\n1\n" + "A" * 43 + "=\n", W1_NAME, W1, T)
    with pytest.raises(VerificationError, match="does not verify"):
        verify_cosignatures(_note() + other, [vkey])
    short = f"— {name} {base64.b64encode(bytes(blob[:40])).decode()}\n"
    with pytest.raises(VerificationError, match=r"is 40 bytes, not 76$"):
        verify_cosignatures(_note() + short, [vkey])
    # A line by an unknown witness that shares the name (another key) is ignored, not failed.
    stranger = cosign(SPEC_TEXT, W1_NAME, W2, T)
    verify_cosignatures(_note() + stranger + line, [vkey])


def test_witness_keys_are_parsed_strictly() -> None:
    good = witness_verifier_key(W1_NAME, W1.public_key())
    assert parse_witness_key(good + "\n").name == W1_NAME
    note_key = verifier_key(W1_NAME, W1.public_key())  # type 0x01: a log key, not a witness key
    with pytest.raises(NoteError, match=r"has signature type 0x01; a cosignature/v1 key has 0x04"):
        parse_witness_key(note_key)
    name, _, key64 = good.split("+", 2)
    with pytest.raises(NoteError, match="does not match its name and key"):
        parse_witness_key(f"{name}+{'0' * 8}+{key64}")
    with pytest.raises(NoteError, match="the form name\\+keyid\\+key"):
        parse_witness_key("nonsense")
    with pytest.raises(NoteError, match="impossible with 1 witness keys"):
        verify_cosignatures(_note(), [good], threshold=2)
    with pytest.raises(NoteError, match="impossible with 0 witness keys"):
        verify_cosignatures(_note(), [])
    with pytest.raises(NoteError, match="given twice"):
        verify_cosignatures(_note(), [good, good])
    with pytest.raises(NoteError, match="after the epoch"):
        cosign(SPEC_TEXT, W1_NAME, W1, 0)
