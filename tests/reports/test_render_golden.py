"""A certificate built from a synthetic log with a fixed key and clock: verification and renderings.

The golden page is the offline rendering (no workspace): what an auditor gets. The operator's
rendering adds the organisation and the ticket; its branches are checked by their text.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from markupsafe import escape

from forget.audit.certificate_view import TICKET_FROM_WORKSPACE, certificate_view, identity_sentence
from ledger.cosignature import cosign, witness_verifier_key
from ledger.evidence import RequestExtended
from ledger.note import split_note
from reports.errors import CertificateError
from reports.render import ORGANISATION_OFFLINE, TICKET_NONE, TICKET_OFFLINE, CertificateView, render_html
from reports.verify import verify_certificate
from tests.reports.synthetic import NO_DATA_LOG, ORIGIN, REQUEST, certify, digest, pinned, resign, verifier_line

GOLDEN = Path(__file__).parent.parent / "assets" / "golden" / "certificate.html"


def synthetic_certificate() -> tuple[dict[str, Any], bytes]:
    """One request's certificate in a batch of two (tests/reports/synthetic.py), fixed key and clock."""
    made = certify()
    return made.statement, made.envelope


def synthetic_view() -> CertificateView:
    """The synthetic certificate's view as `certificate render` builds it outside a workspace."""
    return certificate_view(synthetic_certificate()[1], pinned())


def shown(text: str) -> str:
    """`text` as the autoescaping template writes it."""
    return str(escape(text))


def first_page(html: str) -> str:
    """What comes before the appendices: the page a DPO reads."""
    return html[: html.index('<section class="appendix">')]


def test_the_synthetic_certificate_verifies_and_is_byte_stable() -> None:
    statement, envelope = synthetic_certificate()
    result = verify_certificate(envelope, pinned())
    assert result.checkpoint.size == 14 and result.entries == 8
    assert synthetic_certificate()[1] == envelope
    assert json.loads(base64.b64decode(json.loads(envelope)["payload"])) == statement


def test_html_rendering_matches_the_golden_file() -> None:
    html = render_html(synthetic_view())
    if os.environ.get("FORGET_UPDATE_GOLDEN"):
        GOLDEN.write_text(html)
    assert html == GOLDEN.read_text(), "rendering changed: review it, then FORGET_UPDATE_GOLDEN=1 pytest"
    assert "forget-verify CERTIFICATE.json --public-key VERIFIER.key" in html and "<script" not in html
    assert "PUBLIC_KEY.pem" not in html


def test_the_first_page_says_who_what_when_and_how() -> None:
    view = synthetic_view()
    page = first_page(render_html(view))
    assert shown(f"organisation {ORGANISATION_OFFLINE}") in page
    assert view.key_fingerprint.startswith("ed25519:") and view.key_fingerprint in page
    assert ORIGIN in page and shown(TICKET_NONE) in page  # the synthetic request was filed without one
    assert "2 records</strong> of the data subject were erased on 22 November 2026, 09:00 UTC" in page
    assert "shard 1: rewound to its clean checkpoint before slice 2; 2 of its 4 slices retrained" in page
    assert "1 December 2026, 08:00 UTC" in page and "met, 8 days before the deadline" in page
    assert "Searched for the identifier in form NFC, trimmed, case-insensitive (Unicode case folding)." in page
    assert "8 ledger entries, each with an RFC 9162 inclusion proof" in page and "tree size 14" in page
    assert "no witness cosignatures" in page
    # Hashes and raw JSON wait for the appendices.
    assert view.statement["predicate"]["request"]["subject_key"] not in page and '"_type"' not in page


def test_the_operators_rendering_names_the_organisation_and_the_ticket() -> None:
    view = replace(
        synthetic_view(), organisation="Example <Ltd>", ticket="DSAR-2026-0042", ticket_status=TICKET_FROM_WORKSPACE
    )
    page = first_page(render_html(view))
    assert "<strong>Example &lt;Ltd&gt;</strong>" in page and "not part of the signed statement" in page
    assert "<strong>DSAR-2026-0042</strong>" in page and shown(TICKET_FROM_WORKSPACE) in page
    assert shown(ORGANISATION_OFFLINE) not in page and shown(TICKET_NONE) not in page


def test_no_data_and_a_missed_deadline_read_as_such() -> None:
    made = certify(NO_DATA_LOG)
    page = first_page(render_html(certificate_view(made.envelope, pinned())))
    assert "held <strong>no data</strong> of the data subject" in page and "nothing: no record" in page
    assert shown(TICKET_OFFLINE) in page  # the request was filed with a ticket: only its digest is certified
    late = [(k, {**p, "deadline": "2026-11-20T08:00:00Z"}) if "deadline" in p else (k, p) for k, p in NO_DATA_LOG]
    late = [(k, {**p, "deadline_met": False}) if k == "request.completed" else (k, p) for k, p in late]
    page = first_page(render_html(certificate_view(certify(late).envelope, pinned())))
    assert '<span class="late">MISSED by 2 days</span>' in page


def test_an_extended_deadline_says_so() -> None:
    extension = RequestExtended(REQUEST, 2, "2027-02-01T08:00:00Z", digest("9")).entry()
    completed = [(k, {**p, "deadline": "2027-02-01T08:00:00Z"}) if k == "request.completed" else (k, p)
                 for k, p in NO_DATA_LOG[1:]]  # fmt: skip
    page = first_page(
        render_html(certificate_view(certify([NO_DATA_LOG[0], extension, *completed]).envelope, pinned()))
    )
    assert "1 February 2027, 08:00 UTC (Art. 12(3), extended by 2 months)" in page
    assert "met, 70 days before the deadline" in page


def test_witness_cosignatures_are_named_verified_or_not() -> None:
    witness = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    vkey = witness_verifier_key("witness.test/w1", witness.public_key())
    made = certify()
    note = made.statement["predicate"]["log"]["checkpoint"]
    text, _ = split_note(note)
    made.statement["predicate"]["log"]["checkpoint"] = note + cosign(text, "witness.test/w1", witness, 1795000000)
    envelope = resign(made.statement)
    unchecked = first_page(render_html(certificate_view(envelope, pinned())))
    assert "carries cosignature lines by <code>witness.test/w1</code>, not checked here" in unchecked
    checked = first_page(render_html(certificate_view(envelope, pinned(), witness_keys=[vkey])))
    assert 'verified: <code>witness.test/w1</code> (<span class="when">18 November 2026, 11:06 UTC</span>)' in checked


def test_a_certificate_that_does_not_verify_has_no_view() -> None:
    statement, _ = synthetic_certificate()
    statement["predicate"]["request"]["records_erased"] = 3
    with pytest.raises(CertificateError, match=r"^the statement's request.records_erased differs"):
        certificate_view(resign(statement), pinned())


def test_identity_sentence_states_the_recorded_form_exactly() -> None:
    assert identity_sentence(
        {"normalization": "NFC", "whitespace": "trimmed", "case": "sensitive", "email": "domain"}
    ) == ("Searched for the identifier in form NFC, trimmed, case-sensitive, e-mail domains lower-cased.")
    assert identity_sentence({"normalization": "NFKC", "case": "odd"}) == (
        "Searched for the identifier in the recorded form: case odd, normalization NFKC."
    )


def test_html_escapes_what_it_shows() -> None:
    view = synthetic_view()
    assert "&lt;b&gt;x&lt;/b&gt;" in render_html(replace(view, ticket="<b>x</b>"))
    assert "<b>x</b>" not in render_html(replace(view, organisation="<b>x</b>"))


def test_pdf_has_the_certificate_text() -> None:
    pytest.importorskip("weasyprint")
    pypdf = pytest.importorskip("pypdf")
    import io

    from reports.render import render_pdf

    pdf = render_pdf(synthetic_view())
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    first = reader.pages[0].extract_text()
    text = " ".join(page.extract_text() for page in reader.pages)
    assert 2 <= len(reader.pages) <= 6
    assert "Erasure certificate" in first and "req_0123456789abcdef" in first and "Check it yourself" in first
    assert "Appendix A" not in first and "Appendix D" in text
    assert verifier_line() in text.replace("\n", "")
