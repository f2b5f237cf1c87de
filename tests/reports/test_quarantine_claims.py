"""The quarantine claim of a certificate: derived from the request.quarantined entry, re-derived by the verifier.

A request filed now is quarantined in the transaction that receives it; its certificate states
when (`quarantined_at`), which shards (`quarantined_shards`), and for how long the subject's data
were still in use after the request was received (`seconds_in_use_after_request`). Certificates
of requests filed before quarantine existed carry no such entry and state null, or (issued by an
older forget) no such fields at all: both still verify.
"""

from __future__ import annotations

from typing import Any

import pytest

from ledger.evidence import EvidenceError, RequestQuarantined, decode_entry
from ledger.log import Entry
from reports.certificate import derive_claims
from reports.errors import CertificateError
from reports.verify import verify_certificate
from tests.reports.synthetic import (
    NO_DATA_LOG,
    REQUEST,
    RUN,
    TIME,
    batch_log,
    certify,
    pinned,
    quarantined_log,
    resign,
)

RECEIVED_TO_FILED = 21 * 86400 + 3600
"""The synthetic request was received 2026-11-01 08:00 and filed (quarantined) 2026-11-22 09:00."""


def _request(statement: dict[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = statement["predicate"]["request"]
    return request


def test_a_quarantined_request_states_when_which_shards_and_how_long() -> None:
    made = certify(quarantined_log())
    claims = verify_certificate(made.envelope, pinned()).claims
    assert claims is not None
    assert claims.request.quarantined_at == TIME and claims.request.quarantined_shards == (1,)
    assert claims.request.seconds_in_use_after_request == RECEIVED_TO_FILED
    stated = _request(made.statement)
    assert stated["quarantined_shards"] == [1] and stated["seconds_in_use_after_request"] == RECEIVED_TO_FILED
    assert verify_certificate(made.envelope, pinned()).summary()["seconds_in_use_after_request"] == RECEIVED_TO_FILED


def test_a_retrained_shard_that_was_not_quarantined_counts_until_completion() -> None:
    """A record ingested after the request was filed kept its shard answering until it was retrained."""
    later = "2026-11-23T09:00:00Z"
    made = certify(quarantined_log(shards=(), completed_at=later))
    claims = verify_certificate(made.envelope, pinned()).claims
    assert claims is not None and claims.request.quarantined_shards == ()
    assert claims.request.seconds_in_use_after_request == RECEIVED_TO_FILED + 86400
    covered = verify_certificate(certify(quarantined_log(completed_at=later)).envelope, pinned()).claims
    assert covered is not None and covered.request.seconds_in_use_after_request == RECEIVED_TO_FILED


def test_no_data_held_means_nothing_was_in_use() -> None:
    log = [NO_DATA_LOG[0], RequestQuarantined(REQUEST, (), TIME).entry(), *NO_DATA_LOG[1:]]
    claims = verify_certificate(certify(log).envelope, pinned()).claims
    assert claims is not None
    assert claims.request.quarantined_shards == () and claims.request.seconds_in_use_after_request == 0


@pytest.mark.parametrize(
    "field, value",
    [
        ("seconds_in_use_after_request", 0),
        ("seconds_in_use_after_request", RECEIVED_TO_FILED - 1),
        ("quarantined_at", "2026-11-01T08:00:00Z"),
        ("quarantined_shards", []),
        ("quarantined_shards", [1, 3]),
        ("seconds_in_use_after_request", None),
    ],
)
def test_a_resigned_certificate_with_another_quarantine_claim_fails(field: str, value: object) -> None:
    statement = certify(quarantined_log()).statement
    _request(statement)[field] = value
    with pytest.raises(CertificateError, match=f"request.{field} differs from the logged entries"):
        verify_certificate(resign(statement), pinned())


def test_dropping_the_claims_of_a_quarantined_request_fails() -> None:
    statement = certify(quarantined_log()).statement
    for field in ("quarantined_at", "quarantined_shards", "seconds_in_use_after_request"):
        del _request(statement)[field]
    with pytest.raises(CertificateError, match=r"request\.quarantined_at differs from the logged entries"):
        verify_certificate(resign(statement), pinned())


def test_a_certificate_issued_before_quarantine_existed_still_verifies() -> None:
    """An older forget wrote no quarantine fields at all; its log has no quarantine entry."""
    statement = certify().statement
    assert _request(statement)["seconds_in_use_after_request"] is None
    for field in ("quarantined_at", "quarantined_shards", "seconds_in_use_after_request"):
        del _request(statement)[field]
    claims = verify_certificate(resign(statement), pinned()).claims
    assert claims is not None and claims.request.quarantined_at is None
    assert claims.request.seconds_in_use_after_request is None
    # Claiming a quarantine the log does not hold fails.
    _request(statement).update(quarantined_at=TIME, quarantined_shards=[1], seconds_in_use_after_request=0)
    with pytest.raises(CertificateError, match=r"request\.quarantined_at differs from the logged entries"):
        verify_certificate(resign(statement), pinned())


def _decoded(log: list[tuple[str, dict[str, Any]]], times: dict[int, str] | None = None) -> list[Any]:
    return [decode_entry(Entry(i, kind, (times or {}).get(i, TIME), p).encode()) for i, (kind, p) in enumerate(log)]


def _own(log: list[tuple[str, dict[str, Any]]]) -> list[int]:
    from tests.reports.synthetic import mine

    return mine(log)


def test_the_quarantine_must_come_with_the_receipt() -> None:
    log = quarantined_log()
    received = next(i for i, (k, p) in enumerate(log) if k == "request.received" and p["request_id"] == REQUEST)
    entries = _decoded(log)
    carried = [entries[i] for i in _own(log)]
    assert derive_claims(REQUEST, carried).request.quarantined_shards == (1,)
    # Logged later than the receipt (after the request started): refused.
    moved = [*log[: received + 1], *log[received + 2 :]]
    started = next(i for i, (k, p) in enumerate(moved) if k == "request.started" and p["request_id"] == REQUEST)
    moved.insert(started + 1, log[received + 1])
    entries = _decoded(moved)
    with pytest.raises(CertificateError, match=r"request.quarantined\) was not logged with the request's receipt"):
        derive_claims(REQUEST, [entries[i] for i in _own(moved)])
    # The next entry, but at another time: refused.
    entries = _decoded(log, {received + 1: "2026-11-22T09:00:01.5Z"})
    with pytest.raises(CertificateError, match="was not logged with the request's receipt"):
        derive_claims(REQUEST, [entries[i] for i in _own(log)])


def test_a_quarantine_time_that_is_not_the_entry_time_is_refused() -> None:
    log = quarantined_log()
    received = next(i for i, (k, p) in enumerate(log) if k == "request.received" and p["request_id"] == REQUEST)
    log[received + 1] = RequestQuarantined(REQUEST, (1,), "2026-11-01T08:00:00Z").entry()
    entries = _decoded(log)
    with pytest.raises(CertificateError, match="states another quarantine time than its own entry time"):
        derive_claims(REQUEST, [entries[i] for i in _own(log)])


def test_another_requests_quarantine_is_refused() -> None:
    log = quarantined_log()
    other = next(i for i, (k, p) in enumerate(log) if k == "request.quarantined" and p["request_id"] != REQUEST)
    entries = _decoded(log)
    with pytest.raises(CertificateError, match="is another request's"):
        derive_claims(REQUEST, [entries[i] for i in sorted({*_own(log), other})])


def test_two_quarantines_are_refused() -> None:
    log = quarantined_log()
    received = next(i for i, (k, p) in enumerate(log) if k == "request.received" and p["request_id"] == REQUEST)
    log.insert(received + 2, RequestQuarantined(REQUEST, (1,), TIME).entry())
    entries = _decoded(log)
    with pytest.raises(CertificateError, match="repeats the entry that quarantined the request's shards"):
        derive_claims(REQUEST, [entries[i] for i in _own(log)])


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"request_id": REQUEST, "shards": [3, 1], "quarantined_at": TIME}, "each shard once, in increasing order"),
        ({"request_id": REQUEST, "shards": [1, 1], "quarantined_at": TIME}, "each shard once, in increasing order"),
        ({"request_id": REQUEST, "shards": [True], "quarantined_at": TIME}, r"shards\[0\] must be an integer"),
        ({"request_id": REQUEST, "shards": "1", "quarantined_at": TIME}, "shards must be a list"),
        ({"request_id": REQUEST, "shards": [], "quarantined_at": "yesterday"}, "quarantined_at is malformed"),
        ({"request_id": REQUEST, "shards": []}, "has no quarantined_at"),
        ({"request_id": REQUEST, "shards": [], "quarantined_at": TIME, "x": 1}, "unknown field 'x'"),
    ],
)
def test_the_quarantine_entry_is_read_strictly(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(EvidenceError, match=message):
        RequestQuarantined.from_payload(payload)


def test_the_entry_round_trips() -> None:
    entry = RequestQuarantined(REQUEST, (0, 4), TIME)
    assert RequestQuarantined.from_payload(entry.to_payload()) == entry
    assert entry.entry() == ("request.quarantined", {"request_id": REQUEST, "shards": [0, 4], "quarantined_at": TIME})
    assert RUN != REQUEST and batch_log()  # the synthetic log without quarantine is the pre-quarantine format


def test_the_page_says_how_long_the_data_were_in_use() -> None:
    from forget.audit.certificate_view import certificate_view
    from reports.render import render_html

    page = render_html(certificate_view(certify(quarantined_log()).envelope, pinned()))
    assert (
        "at most 1818000 seconds (21 days) after the request was received: shard 1 stopped answering predictions"
        " on 22 November 2026, 09:00 UTC and stayed out until retrained without the data subject&#39;s records" in page
    )
    legacy = render_html(certificate_view(certify().envelope, pinned()))
    assert "not stated: the request was filed before forget logged quarantines" in legacy
    log = [NO_DATA_LOG[0], RequestQuarantined(REQUEST, (), TIME).entry(), *NO_DATA_LOG[1:]]
    nothing = render_html(certificate_view(certify(log).envelope, pinned()))
    assert "none: no shard held a record of the data subject when the request was filed" in nothing
    at_once = quarantined_log()  # received as it was filed
    for i, (kind, payload) in enumerate(at_once):
        if kind in ("request.received", "request.completed") and payload["request_id"] == REQUEST:
            at_once[i] = (kind, {**payload, "received_at": TIME, "deadline": "2026-12-22T09:00:00Z"})
    page = render_html(certificate_view(certify(at_once).envelope, pinned()))
    assert "none: shard 1 stopped answering predictions as the request was received (22 November 2026" in page
