"""Tests for `ledger.note`: Go sumdb/note vectors, C2SP checkpoint text, tampering and malformed input."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import LedgerError, VerificationError
from ledger.merkle import EMPTY_ROOT
from ledger.note import (
    Checkpoint,
    NoteError,
    key_id,
    parse_verifier_key,
    sign_note,
    verifier_key,
    verify_note,
)

GO: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "assets" / "note" / "go_sumdb_note.json").read_text(encoding="utf-8")
)
TEXT: str = GO["text"]
PETER_SIG: str = GO["peter_signature_line"]
ENOCH_SIG: str = GO["enoch_signature_line"]
PETER_NOTE = TEXT + "\n" + PETER_SIG


def _go_signer_key(skey: str) -> tuple[str, Ed25519PrivateKey]:
    """Decode a Go signer key, PRIVATE+KEY+name+keyid+base64(0x01 || seed)."""
    private, key, name, _, key64 = skey.split("+", 4)
    assert (private, key) == ("PRIVATE", "KEY")
    material = base64.b64decode(key64)
    assert material[0] == 0x01
    return name, Ed25519PrivateKey.from_private_bytes(material[1:])


PETER_NAME, PETER_PRIVATE = _go_signer_key(GO["peter_signer_key"])
PETER_PUBLIC = PETER_PRIVATE.public_key()


# --- the Go vectors ---------------------------------------------------------------------------


def test_go_verifier_keys_parse_and_round_trip() -> None:
    for vkey in (GO["peter_verifier_key"], GO["enoch_verifier_key"]):
        name, public_key = parse_verifier_key(vkey)
        assert verifier_key(name, public_key) == vkey
    name, public_key = parse_verifier_key(GO["peter_verifier_key"])
    assert name == "PeterNeumann"
    assert key_id(name, public_key) == bytes.fromhex("c74f20a3")
    assert verifier_key(PETER_NAME, PETER_PUBLIC) == GO["peter_verifier_key"]


def test_key_id_is_the_specified_hash() -> None:
    raw = base64.b64decode(GO["peter_verifier_key"].split("+", 2)[2])
    assert key_id(PETER_NAME, PETER_PUBLIC) == hashlib.sha256(b"PeterNeumann\n" + raw).digest()[:4]


def test_signing_reproduces_the_go_note_byte_for_byte() -> None:
    # Ed25519 is deterministic (RFC 8032), so the published note is a known answer.
    assert sign_note(TEXT, PETER_NAME, PETER_PRIVATE) == PETER_NOTE


def test_go_note_verifies() -> None:
    _, public_key = parse_verifier_key(GO["peter_verifier_key"])
    assert verify_note(PETER_NOTE, "PeterNeumann", public_key) == TEXT


def test_each_key_finds_its_own_signature_among_others() -> None:
    both = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    for vkey in (GO["peter_verifier_key"], GO["enoch_verifier_key"]):
        name, public_key = parse_verifier_key(vkey)
        assert verify_note(both, name, public_key) == TEXT
    assert verify_note(TEXT + "\n" + ENOCH_SIG + PETER_SIG, PETER_NAME, PETER_PUBLIC) == TEXT


def test_go_note_has_no_signature_by_another_key() -> None:
    name, public_key = parse_verifier_key(GO["enoch_verifier_key"])
    with pytest.raises(VerificationError, match=r"^note has no signature by EnochRoot with key id af0cfe78$"):
        verify_note(PETER_NOTE, name, public_key)


def test_go_invalid_signature() -> None:
    # note_test.go TestOpen "Invalid signature": four characters spliced into the base64.
    tampered = TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(VerificationError, match=r"^note signature by PeterNeumann does not verify$"):
        verify_note(tampered, PETER_NAME, PETER_PUBLIC)


@pytest.mark.parametrize(
    ("note", "message"),
    [
        (TEXT, "no blank line before its signatures"),
        (TEXT + "\n", "does not end with a signature line"),
        (TEXT + "\n" + PETER_SIG[:-1], "does not end with a signature line"),
        ("\x01" + PETER_NOTE, "control character"),
        ("\udcff" + PETER_NOTE, "not valid UTF-8"),
        (TEXT + "\n" + "\u2014 Bad Name " + PETER_SIG.split(" ")[2], "signature line 1 is malformed"),
        (PETER_NOTE + "Unexpected line.\n", "signature line 2 is malformed"),
        (TEXT + "\n" + PETER_SIG.replace("\u2014", "-"), "signature line 1 is malformed"),
        (TEXT + "\n" + PETER_SIG.replace(" x08go", " x08go!"), "signature line 1 is malformed"),
        (TEXT + "\n\u2014 PeterNeumann AAAA\n", "signature line 1 is malformed"),
        (TEXT + "\n" + PETER_SIG * 101, "101 signatures, more than 100"),
    ],
    ids=[
        "text only",
        "no signatures",
        "no final newline",
        "control",
        "bad utf-8",
        "bad name",
        "extra line",
        "hyphen",
        "bad base64",
        "short blob",
        "too many",
    ],
)
def test_go_malformed_notes(note: str, message: str) -> None:
    # note_test.go TestOpen "Invalid encoded message syntax" and "too many signatures", and more.
    with pytest.raises(VerificationError, match=message):
        verify_note(note, PETER_NAME, PETER_PUBLIC)


def test_go_misnamed_and_mismatched_signatures() -> None:
    misnamed = TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "CarmenSandiego")
    wrong_id = TEXT + "\n" + PETER_SIG.replace("x08g", "xxxx")
    for note in (misnamed, wrong_id):
        with pytest.raises(VerificationError, match=r"^note has no signature by PeterNeumann"):
            verify_note(note, PETER_NAME, PETER_PUBLIC)


def test_many_signatures_up_to_the_limit_are_accepted() -> None:
    assert verify_note(TEXT + "\n" + PETER_SIG * 100, PETER_NAME, PETER_PUBLIC) == TEXT


def test_go_verifier_key_manglings_are_refused() -> None:
    # note_test.go TestNewVerifier: every proper substring and every single-character bump fails.
    vkey = GO["peter_verifier_key"]
    for start in range(len(vkey) + 1):
        for end in range(start + 1, len(vkey) + 1):
            if (start, end) != (0, len(vkey)):
                with pytest.raises(NoteError):
                    parse_verifier_key(vkey[start:end])
    for i in range(len(vkey)):
        with pytest.raises(NoteError):
            parse_verifier_key(vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1 :])


def test_go_bad_verifier_keys() -> None:
    wrong_length, unknown_type = GO["bad_verifier_keys"]
    with pytest.raises(NoteError, match=r"^verifier key holds 36 key bytes; an Ed25519 key has 32$"):
        parse_verifier_key(wrong_length)
    with pytest.raises(NoteError, match=r"^verifier key has signature type 0x65; only Ed25519 \(0x01\)"):
        parse_verifier_key(unknown_type)


@pytest.mark.parametrize(
    ("vkey", "message"),
    [
        ("PeterNeumann", r"^verifier key must have the form name\+keyid\+key$"),
        ("PeterNeumann+c74f20a3", r"^verifier key must have the form"),
        ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", r"^key name '' must be non-empty"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", r"^key name 'Peter Neumann'"),
        (
            "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            r"^verifier key id 'c74f20a' is not 8",
        ),
        (
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
            r"^verifier key material is not",
        ),
        ("PeterNeumann+c74f20a3+", r"^verifier key material is not standard base64$"),
        (
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            r"^verifier key id c74f20a4 does not match its name and key, which give c74f20a3$",
        ),
    ],
)
def test_malformed_verifier_keys(vkey: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        parse_verifier_key(vkey)


def test_verifier_key_id_may_be_upper_case_as_in_go() -> None:
    name, public_key = parse_verifier_key(GO["peter_verifier_key"].replace("c74f20a3", "C74F20A3"))
    assert verifier_key(name, public_key) == GO["peter_verifier_key"]


# --- signing and verifying our own notes ------------------------------------------------------

KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"forget test key").digest())
NAME = "forget.example/log"


def test_round_trip_and_tampering() -> None:
    text = Checkpoint(NAME, 8, EMPTY_ROOT).to_text()
    note = sign_note(text, NAME, KEY)
    assert note.startswith(text + "\n\u2014 " + NAME + " ")
    assert verify_note(note, NAME, KEY.public_key()) == text
    with pytest.raises(VerificationError, match=r"^note signature by forget\.example/log does not verify$"):
        verify_note(note.replace("\n8\n", "\n9\n"), NAME, KEY.public_key())
    other = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"another key").digest())
    with pytest.raises(VerificationError, match=r"^note has no signature by forget\.example/log with key id"):
        verify_note(note, NAME, other.public_key())
    with pytest.raises(VerificationError, match=r"^note has no signature by forget\.example/other"):
        verify_note(note, "forget.example/other", KEY.public_key())


def test_a_known_key_with_a_bad_signature_fails_even_beside_a_good_one() -> None:
    note = sign_note(TEXT, PETER_NAME, PETER_PRIVATE)
    forged = note + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(VerificationError, match="does not verify"):
        verify_note(forged, PETER_NAME, PETER_PUBLIC)


def test_text_with_blank_lines_and_unicode() -> None:
    text = "ed \u00e8 subito sera.\n\nsecond paragraph\n\n"
    note = sign_note(text, NAME, KEY)
    assert verify_note(note, NAME, KEY.public_key()) == text


@pytest.mark.parametrize(
    ("text", "name", "message"),
    [
        ("no newline", NAME, r"^note text must end with a newline$"),
        ("tab\there\n", NAME, r"^note text must hold no control characters other than newline$"),
        ("\udcff\n", NAME, r"^note text must be valid UTF-8$"),
        ("ok\n", "", r"^key name '' must be non-empty"),
        ("ok\n", "a b", r"^key name 'a b' must be non-empty"),
        ("ok\n", "a+b", r"^key name 'a\+b' must be non-empty"),
        ("ok\n", "a\u00a0b", r"must be non-empty, valid UTF-8, and hold no spaces or '\+'$"),
        ("ok\n", "a\u2003b", r"must be non-empty"),
    ],
)
def test_sign_note_refuses_malformed_input(text: str, name: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        sign_note(text, name, KEY)


printable_lines = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30).map(
    lambda s: s + "\n"
)


@settings(max_examples=40, deadline=None)
@given(lines=st.lists(printable_lines, min_size=1, max_size=4), data=st.data())
def test_any_text_round_trips_and_any_edit_is_caught(lines: list[str], data: st.DataObject) -> None:
    text = "".join(lines)
    note = sign_note(text, NAME, KEY)
    assert verify_note(note, NAME, KEY.public_key()) == text
    position = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
    replacement = data.draw(st.sampled_from(["x", "y", "\u00e9"]).filter(lambda c: c != text[position]))
    edited = text[:position] + replacement + text[position + 1 :]
    with pytest.raises(VerificationError):
        verify_note(edited + note[len(text) :], NAME, KEY.public_key())


# --- checkpoints ------------------------------------------------------------------------------


def test_c2sp_checkpoint_example_parses_and_round_trips() -> None:
    text = GO["checkpoint_example"]["text"]
    checkpoint = Checkpoint.parse(text)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert checkpoint.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint.to_text() == text
    # Its signature is by a key whose verifier key the spec does not publish: the note is only
    # well formed, and a verifier with any other key must say so, not crash.
    note = text + "\n" + GO["checkpoint_example"]["signature_line"]
    with pytest.raises(VerificationError, match=r"no signature by example\.com/behind-the-sofa"):
        verify_note(note, "example.com/behind-the-sofa", KEY.public_key())


def test_signed_checkpoint_round_trip() -> None:
    checkpoint = Checkpoint(NAME, 0, EMPTY_ROOT)
    note = sign_note(checkpoint.to_text(), NAME, KEY)
    assert Checkpoint.parse(verify_note(note, NAME, KEY.public_key())) == checkpoint
    big = Checkpoint(NAME, 2**64 - 1, bytes(range(32)))
    assert Checkpoint.parse(big.to_text()) == big


ROOT64 = base64.b64encode(EMPTY_ROOT).decode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"log\n1\n{ROOT64}", r"^checkpoint text must end with a newline$"),
        ("log\n1\n", r"^checkpoint has 2 lines; it needs origin, size and root hash$"),
        (f"log\n1\n{ROOT64}\nextension\n", r"^checkpoint has extension lines after the root hash"),
        (f"log\n1\n{ROOT64}\n\n", r"^checkpoint has extension lines"),
        (f"\n1\n{ROOT64}\n", r"^checkpoint origin is empty$"),
        (f"lo\rg\n1\n{ROOT64}\n", r"^checkpoint origin must be one line"),
        (f"log\n007\n{ROOT64}\n", r"^checkpoint size '007' is not a decimal number without leading zeros$"),
        (f"log\n+5\n{ROOT64}\n", r"^checkpoint size '\+5' is not a decimal"),
        (f"log\n-1\n{ROOT64}\n", r"^checkpoint size '-1' is not a decimal"),
        (f"log\n 5\n{ROOT64}\n", r"^checkpoint size ' 5' is not a decimal"),
        (f"log\n1_000\n{ROOT64}\n", r"^checkpoint size '1_000' is not a decimal"),
        (f"log\n\u0663\n{ROOT64}\n", r"is not a decimal"),
        (f"log\n\n{ROOT64}\n", r"^checkpoint size '' is not a decimal"),
        (f"log\n{'9' * 400}\n{ROOT64}\n", r"is not a decimal"),
        (
            f"log\n{2**64}\n{ROOT64}\n",
            r"^checkpoint size 18446744073709551616 is not an integer in 0\.\.2\*\*64-1$",
        ),
        ("log\n1\n!!!!\n", r"^checkpoint root hash '!!!!' is not canonical standard base64$"),
        (f"log\n1\n{ROOT64[:-1]}\n", r"is not canonical standard base64"),
        (f"log\n1\n{ROOT64[:-2]}9=\n", r"is not canonical standard base64"),
        (f"log\n1\n{ROOT64.replace('+', '-').replace('/', '_')}x\n", r"is not canonical standard base64"),
        ("log\n1\nAAAA\n", r"^checkpoint root hash is 3 bytes, not 32$"),
    ],
    ids=[
        "no newline",
        "two lines",
        "extension",
        "empty extension",
        "empty origin",
        "control in origin",
        "leading zero",
        "plus",
        "negative",
        "space",
        "underscore",
        "arabic digit",
        "empty size",
        "huge",
        "2**64",
        "not base64",
        "short base64",
        "non-canonical base64",
        "url-safe base64",
        "short hash",
    ],
)
def test_malformed_checkpoints(text: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        Checkpoint.parse(text)


@pytest.mark.parametrize(
    ("origin", "size", "root_hash", "message"),
    [
        ("", 0, EMPTY_ROOT, "origin is empty"),
        ("a\nb", 0, EMPTY_ROOT, "origin must be one line"),
        ("log", -1, EMPTY_ROOT, "size -1 is not an integer"),
        ("log", True, EMPTY_ROOT, "size True is not an integer"),
        ("log", 1, EMPTY_ROOT[:31], "root hash must be 32 bytes"),
    ],
)
def test_checkpoint_fields_are_checked(origin: str, size: int, root_hash: bytes, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        Checkpoint(origin, size, root_hash)


def test_checkpoint_is_frozen_and_errors_share_the_root() -> None:
    checkpoint = Checkpoint("log", 1, EMPTY_ROOT)
    with pytest.raises(AttributeError):
        checkpoint.size = 2  # type: ignore[misc]
    assert issubclass(NoteError, LedgerError) and issubclass(VerificationError, LedgerError)
    assert isinstance(KEY.public_key(), Ed25519PublicKey)
