"""The verifier against hostile input, on a synthetic certificate (no workspace, no torch).

Each malformed certificate must end in `CertificateError` (exit 1: it does not verify) or
`CertificateFormatError` (exit 2: it is not a certificate at all) with a pinned one-line message,
through the library and through the CLI; never in another exception, never in exit 70.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from cli.main import app
from ledger.evidence import CheckpointRecorded, ErasurePlanned, RequestCompleted
from ledger.log import Entry
from reports.dsse import key_id
from reports.errors import CertificateError, CertificateFormatError
from reports.verify import VerifierKey, load_verifier_key, read_certificate, verify_certificate
from tests.reports.synthetic import (
    KEY,
    NO_DATA_LOG,
    ORIGIN,
    OTHER_REQUEST,
    OTHER_SUBJECT,
    REQUEST,
    SUBJECT,
    TIME,
    batch_log,
    certify,
    entry_of,
    pinned,
    resign,
    rewrite_entry,
    verifier_line,
)

OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
OTHER_KEY_ID = key_id(OTHER_KEY.public_key())
VALID = certify()
Build = Callable[[], bytes]


def envelope(mutate: Callable[[dict[str, Any]], None]) -> Build:
    """The valid envelope, changed and not re-signed."""

    def build() -> bytes:
        value = copy.deepcopy(VALID.envelope_json)
        mutate(value)
        return json.dumps(value).encode()

    return build


def text(data: bytes | Callable[[], bytes]) -> Build:
    return (lambda: data) if isinstance(data, bytes) else data


def signed_payload(payload: bytes, key: Ed25519PrivateKey = KEY, payload_type: str | None = None) -> Build:
    """Any payload bytes, properly signed: the checks after the signature must catch them."""
    from reports.dsse import INTOTO_PAYLOAD_TYPE, sign_envelope

    return lambda: json.dumps(sign_envelope(payload_type or INTOTO_PAYLOAD_TYPE, payload, key)).encode()


def signed(edit: Callable[[dict[str, Any]], None]) -> Build:
    """The statement, changed and re-signed with the operator's own key (as a forger holding it would)."""

    def build() -> bytes:
        statement = copy.deepcopy(VALID.statement)
        edit(statement)
        return resign(statement)

    return build


def predicate(edit: Callable[[dict[str, Any]], None]) -> Build:
    return signed(lambda s: edit(s["predicate"]))


def shard(edit: Callable[[dict[str, Any]], None]) -> Build:
    return predicate(lambda p: edit(p["erasure"]["shards"][0]))


def entries(edit: Callable[[list[dict[str, Any]]], None]) -> Build:
    return predicate(lambda p: edit(p["log"]["entries"]))


def drop(kind: str, request_id: str | None = REQUEST) -> Build:
    return entries(lambda items: items.remove(entry_of(VALID.statement, kind, request_id)))


def of_log(change: Callable[[list[tuple[str, dict[str, Any]]]], None], **options: Any) -> Build:
    """A certificate over a log whose own entries are wrong (an issuer lying in the log itself)."""

    def build() -> bytes:
        log = batch_log()
        change(log)
        return certify(log, claims_log=batch_log(), **options).envelope

    return build


def _signatures(*items: object) -> Callable[[dict[str, Any]], None]:
    return lambda e: e.update(signatures=[*items, *e["signatures"]] if items and items[-1] == "..." else list(items))


def _flip_sig(e: dict[str, Any]) -> None:
    sig = bytearray(base64.b64decode(e["signatures"][0]["sig"]))
    sig[0] ^= 1
    e["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()


def _swap_payload(e: dict[str, Any]) -> None:
    statement = json.loads(base64.b64decode(e["payload"]))
    statement["predicate"]["request"]["records_erased"] = 99
    e["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()


def _flip_hex(value: str) -> str:
    return ("0" if value[0] != "0" else "1") + value[1:]


def _set_entry(position: int, **values: Any) -> Build:
    return entries(lambda items: items[position].update(**values))


def _resign_entry_kind(items: list[dict[str, Any]]) -> None:
    items[0]["kind"] = "request.started"


def _completed_payload(**changes: Any) -> Callable[[list[tuple[str, dict[str, Any]]]], None]:
    def change(log: list[tuple[str, dict[str, Any]]]) -> None:
        i = next(i for i, (k, p) in enumerate(log) if k == "request.completed" and p["request_id"] == REQUEST)
        log[i] = ("request.completed", {**log[i][1], **changes})

    return change


def _bad_entry_bytes() -> bytes:
    """Entry 1 (the request's receipt) with a duplicate key in its logged bytes."""
    log = batch_log()
    data = Entry(1, log[1][0], TIME, log[1][1]).encode()
    return certify(log, raw={1: data[:-1] + b',"v":1}'}).envelope


def _spaced_entry_bytes() -> bytes:
    log = batch_log()
    value = json.loads(Entry(1, log[1][0], TIME, log[1][1]).encode())
    return certify(log, raw={1: json.dumps(value, sort_keys=True).encode()}).envelope


def _keep(items: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool]) -> None:
    items[:] = [item for item in items if keep(item)]


def _other_key_labelled_ours() -> bytes:
    value = json.loads(resign(VALID.statement, OTHER_KEY))
    value["signatures"][0]["keyid"] = key_id(KEY.public_key())
    return json.dumps(value).encode()


DEEP = b"[" * 200_000 + b"]" * 200_000
FORMAT, FAIL = CertificateFormatError, CertificateError

# name: (build, error type, message pinned with re.search)
CASES: dict[str, tuple[Build, type[Exception], str]] = {
    # -- not a certificate at all: exit 2 ----------------------------------------------------
    "empty file": (text(b""), FORMAT, r"^not a certificate: the JSON is malformed \(Expecting value"),
    "truncated": (text(VALID.envelope[: len(VALID.envelope) // 2]), FORMAT, r"^not a certificate: the JSON is malf"),
    "non-UTF-8": (text(b"\xff" + VALID.envelope), FORMAT, r"^not a certificate: the JSON is not valid UTF-8$"),
    "UTF-16": (text(VALID.envelope.decode().encode("utf-16")), FORMAT, r"the JSON is not valid UTF-8$"),
    "a list": (text(b"[]"), FORMAT, r"^not a certificate: no DSSE envelope"),
    "no signatures": (envelope(lambda e: e.pop("signatures")), FORMAT, r"no DSSE envelope \(payloadType"),
    "extra envelope field": (envelope(lambda e: e.update(x=1)), FORMAT, r"envelope has an unknown field 'x'$"),
    "duplicate envelope key": (
        text(lambda: VALID.envelope.replace(b'"payloadType"', b'"payload": "", "payloadType"', 1)),
        FORMAT, r"the JSON repeats the key 'payload'$"),
    "payloadType a number": (envelope(lambda e: e.update(payloadType=7)), FORMAT, r"payloadType is not a string$"),
    "payload null": (envelope(lambda e: e.update(payload=None)), FORMAT, r"payload is not a string$"),
    "payload not base64": (envelope(lambda e: e.update(payload="%%%")), FORMAT, r"payload is not canonical base64$"),
    "payload base64 with a newline": (envelope(lambda e: e.update(payload=e["payload"][:8] + "\n" + e["payload"][8:])),
                                      FORMAT, r"payload is not canonical base64$"),
    "signatures empty": (envelope(_signatures()), FORMAT, r"signatures are not a non-empty list$"),
    "signatures an object": (envelope(lambda e: e.update(signatures={})), FORMAT, r"not a non-empty list$"),
    "17 signatures": (envelope(lambda e: e.update(signatures=e["signatures"] * 17)), FORMAT,
                      r"has 17 signatures, more than 16$"),
    "signature a string": (envelope(_signatures("sig")), FORMAT, r"signature 1 is not \{keyid, sig\}$"),
    "signature with an extra field": (envelope(lambda e: e["signatures"][0].update(cert="x")), FORMAT,
                                      r"signature 1 is not \{keyid, sig\}$"),
    "keyid a number": (envelope(lambda e: e["signatures"][0].update(keyid=5)), FORMAT,
                       r"signature 1 has a keyid or sig that is not text$"),
    "NaN": (text(lambda: VALID.envelope.replace(b'"payloadType": ', b'"payloadType": NaN, "x": ', 1)), FORMAT,
            r"the JSON holds NaN, which is not a JSON number$"),
    "Infinity": (text(b'{"payload": -Infinity}'), FORMAT, r"the JSON holds -Infinity"),
    "a float": (text(b'{"payload": 1.5}'), FORMAT, r"the JSON holds the number '1.5': only integers are allowed$"),
    "a huge number": (text(b'{"payload": ' + b"9" * 5000 + b"}"), FORMAT, r"holds a number that cannot be read"),
    "deep nesting": (text(DEEP), FORMAT, r"^not a certificate: the JSON is nested too deeply$"),
    # -- the signature, checked before the payload is read: exit 1 ---------------------------
    "payload changed": (envelope(_swap_payload), FAIL, r"^envelope signature does not verify"),
    "signature byte": (envelope(_flip_sig), FAIL, r"^envelope signature does not verify"),
    "signature truncated": (envelope(lambda e: e["signatures"][0].update(sig="AAAA")), FAIL,
                            r"^envelope signature does not verify"),
    "signature not base64": (envelope(lambda e: e["signatures"][0].update(sig="@@")), FAIL,
                             r"^envelope signature does not verify"),
    "only another key's signature": (envelope(lambda e: e["signatures"][0].update(keyid=OTHER_KEY_ID)), FAIL,
                                     r"not signed by the given public key \(no signature with its key"),
    "signed by another key, labelled ours": (_other_key_labelled_ours, FAIL, r"^envelope signature does not verify"),
    "payload type": (signed_payload(b"{}", payload_type="application/json"), FAIL,
                     r"^envelope payload type is 'application/json', not 'application/vnd.in-toto\+json'$"),
    # -- a signed payload that is not a statement: exit 1 ------------------------------------
    "statement not JSON": (signed_payload(b"hello"), FAIL, r"^the signed statement is not JSON: the JSON is malformed"),
    "statement not UTF-8": (signed_payload(b'{"a": "\xff"}'), FAIL, r"not JSON: the JSON is not valid UTF-8"),
    "statement duplicate key": (signed_payload(b'{"_type":1,"_type":2}'), FAIL, r"repeats the key '_type'$"),
    "statement NaN": (signed_payload(b'{"a":NaN}'), FAIL, r"the JSON holds NaN"),
    "statement deep nesting": (signed_payload(DEEP), FAIL, r"the signed statement is not JSON: .*nested too deeply$"),
    "statement not canonical": (signed_payload(json.dumps(VALID.statement).encode()), FAIL,
                                r"^the signed statement is not in RFC 8785 canonical form$"),
    "integer beyond 2**53": (
        signed_payload(json.dumps({**VALID.statement, "x": 2**60}, sort_keys=True, separators=(",", ":")).encode()),
        FAIL, r"not in RFC 8785 canonical form$"),
    # -- a statement with wrong fields (re-signed with the operator's key): exit 1 ------------
    "statement a list": (signed_payload(b"[]"), FAIL, r"the statement must be an object, not a list$"),
    "_type": (signed(lambda s: s.update(_type="https://in-toto.io/Statement/v0.1")), FAIL,
              r"^the statement type is not https://in-toto.io/Statement/v1$"),
    "predicateType": (signed(lambda s: s.update(predicateType="x")), FAIL, r"^the predicate type is not https://forget"),
    "no predicate": (signed(lambda s: s.pop("predicate")), FAIL, r"malformed: the statement has no predicate$"),
    "extra predicate field": (predicate(lambda p: p.update(note="x")), FAIL, r"predicate has an unknown field 'note'$"),
    "version 2": (predicate(lambda p: p.update(version=2)), FAIL, r"predicate.version is not 1$"),
    "version true": (predicate(lambda p: p.update(version=True)), FAIL, r"predicate.version is not 1$"),
    "issued_at": (predicate(lambda p: p.update(issued_at="yesterday")), FAIL, r"predicate.issued_at is malformed"),
    "tool null": (predicate(lambda p: p.update(tool=None)), FAIL, r"predicate.tool must be an object, not null$"),
    "request null": (predicate(lambda p: p.update(request=None)), FAIL, r"request must be an object, not null$"),
    "records_erased a string": (predicate(lambda p: p["request"].update(records_erased="2")), FAIL,
                                r"request.records_erased must be an integer, not a string$"),
    "records_erased negative": (predicate(lambda p: p["request"].update(records_erased=-1)), FAIL,
                                r"request.records_erased must be between 0 and"),
    "records_erased a boolean": (predicate(lambda p: p["request"].update(records_erased=True)), FAIL,
                                 r"must be an integer, not a boolean$"),
    "deadline_met 1": (predicate(lambda p: p["request"].update(deadline_met=1)), FAIL,
                       r"request.deadline_met must be true or false, not an integer$"),
    "subject_key upper case": (predicate(lambda p: p["request"].update(subject_key=SUBJECT.upper())), FAIL,
                               r"request.subject_key must be 64 lower-case hex digits"),
    "received_at February 30": (predicate(lambda p: p["request"].update(received_at="2026-02-30T00:00:00Z")), FAIL,
                                r"request.received_at is not a real date and time"),
    "outcome unknown": (predicate(lambda p: p["request"].update(outcome="forgotten")), FAIL,
                        r"request.outcome must be one of erased, no_data$"),
    "erasure a list": (predicate(lambda p: p.update(erasure=[])), FAIL, r"erasure must be an object, not a list$"),
    "shards not a list": (predicate(lambda p: p["erasure"].update(shards={})), FAIL,
                          r"erasure.shards must be a list, not an object$"),
    "retrained upper-case hex": (shard(lambda s: s.update(retrained_checkpoints=[d.upper() for d in
                                                                                  s["retrained_checkpoints"]])),
                                 FAIL, r"retrained_checkpoints\[1\] must be 64 lower-case hex digits"),
    "restored a number": (shard(lambda s: s.update(restored_checkpoint=0)), FAIL,
                          r"restored_checkpoint must be a string, not an integer$"),
    "log.origin null": (predicate(lambda p: p["log"].update(origin=None)), FAIL, r"log.origin must be a string"),
    "log.checkpoint a number": (predicate(lambda p: p["log"].update(checkpoint=7)), FAIL,
                                r"log.checkpoint is not a signed note$"),
    "entries null": (predicate(lambda p: p["log"].update(entries=None)), FAIL, r"log.entries must be a list, not null"),
    "entry index a boolean": (_set_entry(0, index=True), FAIL, r"entries\[0\].index must be an integer, not a bool"),
    "entry index huge": (_set_entry(0, index=2**53 - 1), FAIL, r"^ledger entry 9007199254740991 is beyond the"),
    "proof hash upper case": (entries(lambda items: items[0].update(inclusion_proof=[h.upper() for h in
                                                                                     items[0]["inclusion_proof"]])),
                              FAIL, r"inclusion_proof\[0\] must be 64 lower-case hex digits"),
    "leaf hash upper case": (entries(lambda items: items[0].update(leaf_hash=items[0]["leaf_hash"].upper())), FAIL,
                             r"log.entries\[0\].leaf_hash must be 64 lower-case hex digits"),
    "proof of 65 hashes": (_set_entry(0, inclusion_proof=["00" * 32] * 65), FAIL, r"has 65 items, more than 64$"),
    "canonical not base64": (_set_entry(0, canonical="not base64!"), FAIL, r"canonical is not canonical base64$"),
    "subject digest a list": (signed(lambda s: s["subject"][0].update(digest=[])), FAIL,
                              r"subject\[0\].digest must be an object, not a list$"),
    # -- a well-formed statement whose evidence does not hold: exit 1 --------------------------
    "another origin": (predicate(lambda p: p["log"].update(origin="forget.local/shadow")), FAIL,
                       r"^the certificate is from log 'forget.local/shadow', the verifier key is for 'forget"),
    "checkpoint note": (predicate(lambda p: p["log"].update(checkpoint=p["log"]["checkpoint"].replace("\n", "\n1", 1))),
                        FAIL, r"^the signed checkpoint does not verify"),
    "leaf hash": (entries(lambda items: items[0].update(leaf_hash=_flip_hex(items[0]["leaf_hash"]))), FAIL,
                  r"^ledger entry 1: its leaf hash does not match its bytes$"),
    "proof byte": (entries(lambda items: items[0]["inclusion_proof"].__setitem__(0, _flip_hex(
                       items[0]["inclusion_proof"][0]))), FAIL, r"^ledger entry 1: the inclusion proof fails"),
    "entry bytes": (entries(lambda items: rewrite_entry(items[0], lambda p: p.update(deadline="2027-01-01T00:00:00Z"))),
                    FAIL, r"^ledger entry 1: the inclusion proof fails"),
    "index beyond the tree": (_set_entry(0, index=14), FAIL, r"ledger entry 14 is beyond the signed checkpoint's 14"),
    "kind label": (entries(_resign_entry_kind), FAIL, r"ledger entry 1: its index or kind differ from the logged"),
    "entries out of order": (entries(lambda items: items.reverse()), FAIL,
                             r"entries are not in strictly increasing log order$"),
    "entry twice": (entries(lambda items: items.insert(1, items[0])), FAIL, r"not in strictly increasing log order$"),
    "logged bytes with a duplicate key": (_bad_entry_bytes, FAIL, r"ledger entry 1 is malformed: the JSON repeats"),
    "logged bytes not canonical": (_spaced_entry_bytes, FAIL, r"^ledger entry 1 is not in RFC 8785 canonical form$"),
    "subject digest": (signed(lambda s: s["subject"][0]["digest"].update(sha256="0" * 64)), FAIL,
                       r"^the statement's subjects do not match its request and checkpoints$"),
    "subject dropped": (signed(lambda s: s["subject"].pop()), FAIL, r"subjects do not match"),
}  # fmt: skip

# Claims that the log does not back, re-signed with the operator's own key (issue 11, case 3).
CLAIMS: dict[str, tuple[Build, type[Exception], str]] = {
    "retrained_checkpoints": (shard(lambda s: s["retrained_checkpoints"].__setitem__(0, "0" * 64)), FAIL,
                              r"^the statement's shard 1 retrained_checkpoints differs from the logged entries$"),
    "retrained_checkpoints shortened": (shard(lambda s: s["retrained_checkpoints"].pop(0)), FAIL,
                                       r"shard 1 retrained_checkpoints differs"),
    "retained_manifest_roots": (shard(lambda s: s["retained_manifest_roots"].__setitem__(1, "0" * 64)), FAIL,
                                r"^the statement's shard 1 retained_manifest_roots differs from the logged entries$"),
    "run_id false": (predicate(lambda p: p["erasure"].update(run_id="run_00000000000000ff")), FAIL,
                     r"^the statement's erasure.run_id differs from the logged run$"),
    "run_id a boolean": (predicate(lambda p: p["erasure"].update(run_id=False)), FAIL,
                         r"erasure.run_id must be a string, not a boolean$"),
    "from_slice": (shard(lambda s: s.update(from_slice=0)), FAIL, r"shard 1 from_slice differs from the logged"),
    "restored_checkpoint": (shard(lambda s: s.update(restored_checkpoint=None)), FAIL,
                            r"shard 1 restored_checkpoint differs"),
    "checkpoint_before": (shard(lambda s: s.update(checkpoint_before="0" * 64)), FAIL, r"shard 1 checkpoint_before"),
    "checkpoint_after": (shard(lambda s: s.update(checkpoint_after="0" * 64)), FAIL, r"shard 1 checkpoint_after"),
    "a shard dropped": (predicate(lambda p: p["erasure"].update(shards=[])), FAIL,
                        r"^the statement's erasure names shards \[\], the log rewound shards \[1\]$"),
    "no erasure": (predicate(lambda p: p.update(erasure=None)), FAIL,
                   r"^the statement has no erasure, but the log says records were erased$"),
    "outcome": (predicate(lambda p: p["request"].update(outcome="no_data")), FAIL,
                r"^the statement's request.outcome differs from the logged entries$"),
    "records_erased": (predicate(lambda p: p["request"].update(records_erased=99)), FAIL, r"request.records_erased"),
    "deadline_met": (predicate(lambda p: p["request"].update(deadline_met=False)), FAIL, r"request.deadline_met"),
    "subject_key": (predicate(lambda p: p["request"].update(subject_key=OTHER_SUBJECT)), FAIL, r"request.subject_key"),
    "request_id of a batch mate": (predicate(lambda p: p["request"].update(request_id=OTHER_REQUEST)), FAIL,
                                   r"^ledger entry 1 \(request.received\) is another request's"),
    "lineage checkpoints dropped": (entries(lambda items: _keep(items, lambda i: i["kind"] != "lineage.checkpoint")),
                                    FAIL, r"^shard 1: the certificate carries no checkpoint retrained after the"),
    "first retrained checkpoint dropped": (drop("lineage.checkpoint", None), FAIL,
                                           r"^shard 1: the certificate carries no retrained checkpoint of slice 2$"),
    "purge dropped": (drop("erasure.checkpoints_purged", None), FAIL,
                      r"does not carry the ledger entry that purged the erased records' checkpoints$"),
    "plan dropped": (drop("erasure.planned"), FAIL, r"does not carry the ledger entry that planned the request's"),
    "start dropped": (drop("request.started"), FAIL, r"does not carry the ledger entry that started the request$"),
    "receipt dropped": (drop("request.received"), FAIL, r"does not carry the ledger entry that received the request$"),
    "completion dropped": (drop("request.completed"), FAIL, r"that completed the request$"),
    "manifest dropped": (drop("lineage.slice", None), FAIL, r"^shard 1: the certificate carries no new manifest of"),
    # the log itself says something inconsistent (an issuer with the key writes entries that lie)
    "log: deadline_met against its times": (of_log(_completed_payload(deadline_met=False)), FAIL,
                                            r"says the deadline was met or missed against its own times$"),
    "log: completion names another last checkpoint": (
        of_log(_completed_payload(checkpoints_after={"1": "0" * 64})), FAIL,
        r"^shard 1: the last retrained checkpoint is not the one the completion names$"),
    "log: completion counts other records": (of_log(_completed_payload(records_erased=3)), FAIL,
                                             r"states another number of erased records than the erasure plan$"),
    "log: completion in another run": (of_log(_completed_payload(run_id="run_00000000000000ff")), FAIL,
                                       r"\(request.started\) names another run than the request's completion$"),
}  # fmt: skip

ALL = {**CASES, **CLAIMS}


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 40 and len(CLAIMS) >= 20


@pytest.mark.parametrize("case", list(ALL))
def test_each_malformed_certificate_fails_with_its_own_error(case: str) -> None:
    build, error, message = ALL[case]
    data = build()
    with pytest.raises(error, match=message) as raised:
        verify_certificate(data, pinned())
    assert type(raised.value) is error and "\n" not in str(raised.value)


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "operator.pub"
    path.write_text(verifier_line() + "\n")
    return path


@pytest.mark.parametrize("case", list(ALL))
def test_through_the_cli_each_exits_1_or_2_never_70(case: str, key_file: Path, tmp_path: Path) -> None:
    build, error, _ = ALL[case]
    (tmp_path / "cert.json").write_bytes(build())
    result = CliRunner().invoke(
        app, ["certificate", "verify", str(tmp_path / "cert.json"), "--public-key", str(key_file)]
    )
    assert result.exit_code == (2 if error is FORMAT else 1), (result.exit_code, result.stderr, result.exception)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr


def test_the_synthetic_certificate_verifies() -> None:
    result = verify_certificate(VALID.envelope, pinned())
    assert result.entries == 8 and result.checkpoint.size == 14 and result.claims is not None
    assert verify_certificate(certify(NO_DATA_LOG).envelope, pinned()).summary()["outcome"] == "no_data"


def test_a_certificate_of_one_request_in_a_batch_says_nothing_of_the_others() -> None:
    whole = VALID.envelope.decode() + json.dumps(VALID.statement)
    for item in VALID.statement["predicate"]["log"]["entries"]:
        whole += base64.b64decode(item["canonical"]).decode()
    assert REQUEST in whole and SUBJECT in whole
    assert OTHER_REQUEST not in whole and OTHER_SUBJECT not in whole
    # and a certificate that carries a batch mate's entry is refused
    log = batch_log()
    with pytest.raises(FAIL, match=r"^ledger entry 5 \(erasure.planned\) is another request's"):
        verify_certificate(certify(log, carried=[1, 2, 4, 5, 6, 8, 9, 11, 12]).envelope, pinned())


def test_any_valid_signature_by_the_pinned_key_counts() -> None:
    value = VALID.envelope_json
    good = value["signatures"][0]
    bogus = {"keyid": good["keyid"], "sig": base64.b64encode(bytes(64)).decode()}
    other = json.loads(resign(VALID.statement, OTHER_KEY))["signatures"][0]
    for signatures in ([bogus, good], [other, good], [other, bogus, {"sig": good["sig"]}], [{"keyid": "", **good}]):
        verify_certificate(json.dumps({**value, "signatures": signatures}).encode(), pinned())
    with pytest.raises(FAIL, match="envelope signature does not verify"):
        verify_certificate(json.dumps({**value, "signatures": [bogus, other]}).encode(), pinned())


def test_the_same_key_for_another_log_is_refused() -> None:
    shadow = certify(origin="forget.local/shadow")
    verify_certificate(shadow.envelope, pinned("forget.local/shadow"))
    with pytest.raises(FAIL, match=r"^the certificate is from log 'forget.local/shadow', the verifier key is for"):
        verify_certificate(shadow.envelope, pinned())


def test_another_operators_key_is_refused() -> None:
    """The verifier key of another workspace (its own key and log): the signature is checked first."""
    with pytest.raises(FAIL, match=r"^the certificate was not signed by the given public key \(no signature with its"):
        verify_certificate(VALID.envelope, pinned("forget.local/other", OTHER_KEY))


def test_a_certificate_that_cannot_be_read_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FORMAT, match=r"^cannot read the certificate .*missing\.json: No such file or directory$"):
        read_certificate(tmp_path / "missing.json")


def test_a_bare_public_key_is_refused_since_it_pins_no_log() -> None:
    with pytest.raises(TypeError, match=r"^verify_certificate needs a VerifierKey\(origin, public_key\)"):
        verify_certificate(VALID.envelope, KEY.public_key())  # type: ignore[arg-type]


def test_a_large_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    with path.open("wb") as handle:
        handle.write(VALID.envelope)
        handle.truncate(64 * 1024 * 1024)
    started = time.perf_counter()
    with pytest.raises(FORMAT, match=r"^the certificate is larger than 1000 bytes, the most a certificate may have"):
        read_certificate(path, 1000)
    with pytest.raises(FORMAT, match=r"larger than 16777216 bytes"):
        read_certificate(path)
    with pytest.raises(FORMAT, match=r"larger than 1000 bytes"):
        verify_certificate(VALID.envelope, pinned(), max_bytes=1000)
    assert time.perf_counter() - started < 1
    result = CliRunner().invoke(
        app, ["certificate", "verify", str(path), "--public-key", str(path), "--max-bytes", "5"]
    )
    assert result.exit_code == 2


PEM = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
KEY_FILES: dict[str, tuple[bytes, str | None, str | None]] = {
    "keys public output": (PEM + verifier_line().encode() + b"\n", None, None),
    "verifier key line": (verifier_line().encode(), None, None),
    "verifier key and the same origin": (verifier_line().encode(), ORIGIN, None),
    "PEM with --origin": (PEM, ORIGIN, None),
    "PEM without --origin": (PEM, None, r"^the public key is a bare PEM key, which names no log: give the note"),
    "another --origin": (verifier_line().encode(), "forget.local/prod", r"^--origin 'forget.local/prod' is not the"),
    "PEM and line disagree": (PEM + verifier_line(key=OTHER_KEY).encode(), None, r"PEM key and its verifier key line"),
    "two lines": ((verifier_line() + "\n" + verifier_line()).encode(), None, r"holds more than one key$"),
    "key id wrong": (verifier_line().replace("+", "+0", 1)[:-1].encode(), None, r"^the verifier key is malformed"),
    "key id upper case": (
        verifier_line().replace(verifier_line().split("+", 2)[1], verifier_line().split("+", 2)[1].upper()).encode(),
        None,
        r"its key id must be lower-case hex$",
    ),
    "not text": (b"\xff\xfe", None, r"^the public key file is not text$"),
    "empty": (b"", None, r"holds neither a note verifier key nor a PEM public key$"),
    "a bad origin": (PEM, "bad name", r"^the log origin is not a valid key name"),
}


@pytest.mark.parametrize("case", list(KEY_FILES))
def test_verifier_key_files(case: str) -> None:
    data, origin, message = KEY_FILES[case]
    if message is None:
        key = load_verifier_key(data, origin)
        assert key.origin == ORIGIN and verify_certificate(VALID.envelope, key).checkpoint.origin == ORIGIN
    else:
        with pytest.raises(FORMAT, match=message):
            load_verifier_key(data, origin)


def test_verifier_key_round_trip() -> None:
    assert VerifierKey.parse(verifier_line()).to_text() == verifier_line()


def test_the_cli_takes_a_pem_with_an_origin(tmp_path: Path) -> None:
    (tmp_path / "cert.json").write_bytes(VALID.envelope)
    (tmp_path / "key.pem").write_bytes(PEM)
    args = ["certificate", "verify", str(tmp_path / "cert.json"), "--public-key", str(tmp_path / "key.pem")]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "bare PEM key, which names no log" in refused.stderr
    assert CliRunner().invoke(app, [*args, "--origin", ORIGIN]).exit_code == 0
    other = CliRunner().invoke(app, [*args, "--origin", "forget.local/prod"])
    assert other.exit_code == 1 and "the verifier key is for 'forget.local/prod'" in other.stderr


def test_render_verifies_first(tmp_path: Path, key_file: Path) -> None:
    (tmp_path / "cert.json").write_bytes(VALID.envelope)
    html = tmp_path / "c.html"
    args = ["certificate", "render", str(tmp_path / "cert.json"), "--public-key", str(key_file), "--html", str(html)]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert REQUEST in html.read_text()
    html.unlink()
    (tmp_path / "cert.json").write_bytes(CLAIMS["retrained_checkpoints"][0]())
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1 and "retrained_checkpoints differs" in refused.stderr and not html.exists()


LATER: dict[str, tuple[Callable[[dict[str, Any]], None], type[Exception], str]] = {
    "extra field": (lambda b: b.update(x=1), FORMAT, r"lacks note, consistency_from or consistency_proof$"),
    "proof upper case": (lambda b: b.update(consistency_proof=["AB" * 32]), FORMAT, r"64 lower-case hex digits"),
    "from a boolean": (lambda b: b.update(consistency_from=True), FORMAT, r"consistency_from must be an integer"),
    "from another size": (lambda b: b.update(consistency_from=3), FAIL, r"proof starts at size 3, the certificate's"),
    "proof wrong": (lambda b: b.update(consistency_proof=["00" * 32]), FAIL, r"^the log did not only grow"),
    "another log's head": (lambda b: b.update(note=_other_log_note()), FAIL,
                           r"^the later checkpoint does not verify: "),
}  # fmt: skip


def _other_log_note() -> str:
    """The head of another operator's log (its own key and origin), as its `ledger head` prints it."""
    from ledger import merkle
    from ledger.note import Checkpoint, sign_note

    leaves = [merkle.leaf_hash(b"another log")]
    origin = "forget.local/other"
    return sign_note(Checkpoint(origin, 1, merkle.root_hash(leaves)).to_text(), origin, OTHER_KEY)


@pytest.mark.parametrize("case", list(LATER))
def test_a_later_checkpoint(case: str) -> None:
    from ledger import merkle
    from ledger.note import Checkpoint, sign_note

    log = batch_log()
    leaves = [merkle.leaf_hash(Entry(i, k, TIME, p).encode()) for i, (k, p) in enumerate(log)]
    more = [*leaves, merkle.leaf_hash(b"later")]
    note = sign_note(Checkpoint(ORIGIN, len(more), merkle.root_hash(more)).to_text(), ORIGIN, KEY)
    bundle = {"note": note, "consistency_from": len(leaves),
              "consistency_proof": [h.hex() for h in merkle.consistency_proof(len(leaves), more)]}  # fmt: skip
    assert verify_certificate(VALID.envelope, pinned(), json.dumps(bundle).encode()).later_size == 15
    change, error, message = LATER[case]
    change(bundle)
    with pytest.raises(error, match=message):
        verify_certificate(VALID.envelope, pinned(), json.dumps(bundle).encode())


def test_the_evidence_types_refuse_what_they_cannot_carry() -> None:
    from ledger.evidence import EvidenceError, PlannedRewind

    with pytest.raises(EvidenceError, match=r"erasure.planned.rewinds must name each shard once, in increasing"):
        rewind = PlannedRewind(1, 0, None, None, ())
        ErasurePlanned(REQUEST, "run_00000000000000a1", 1, (rewind, rewind))
    with pytest.raises(EvidenceError, match=r"lineage.checkpoint.manifest_roots must hold one root per slice 0..1"):
        CheckpointRecorded(0, 1, "0" * 64, 1, ("0" * 64,), "0" * 64, "v", "t", "p", "cpu", 1, True)
    with pytest.raises(EvidenceError, match=r"request.completed.outcome must be one of erased, no_data"):
        RequestCompleted(REQUEST, "run_00000000000000a1", SUBJECT, "erased", 0, TIME, TIME, TIME, True)  # type: ignore[arg-type]
    from ledger.evidence import parse_payload

    for kind, payload in [*batch_log(), *NO_DATA_LOG]:  # every type, written and read back the same
        assert parse_payload(kind, payload).entry() == (kind, payload)
    payload = dict(batch_log()[12][1])
    with pytest.raises(EvidenceError, match=r"request.completed has an unknown field 'extra'"):
        RequestCompleted.from_payload({**payload, "extra": 1})
    with pytest.raises(EvidenceError, match=r"request.completed.checkpoints_after has a key that is not a shard"):
        RequestCompleted.from_payload({**payload, "checkpoints_after": {"01": "0" * 64}})
