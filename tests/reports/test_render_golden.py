"""A certificate built from a synthetic log with a fixed key and clock: verification and renderings."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import merkle
from ledger.log import Entry
from ledger.note import Checkpoint, sign_note
from reports.certificate import LoggedEntry, build_statement, sign_certificate
from reports.render import render_html
from reports.verify import verify_certificate

GOLDEN = Path(__file__).parent.parent / "assets" / "golden" / "certificate.html"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # Ed25519 signatures are deterministic
ORIGIN = "forget.local/golden"
TIME = "2026-11-22T09:00:00Z"


def synthetic_certificate() -> tuple[dict[str, Any], bytes]:
    request = {
        "request_id": "req_0123456789abcdef",
        "subject_key": "ab" * 32,
        "outcome": "erased",
        "records_erased": 2,
        "received_at": "2026-11-01T08:00:00Z",
        "deadline": "2026-12-01T08:00:00Z",
        "completed_at": TIME,
        "deadline_met": True,
    }
    rewind = {"shard": 1, "from_slice": 2, "restored_checkpoint": "11" * 32, "checkpoint_before": "22" * 32}
    payloads = [
        ("request.received", {"request_id": request["request_id"], "subject_key": request["subject_key"]}),
        ("erasure.planned", {"run_id": "run_1", "rewinds": [rewind], "records": 2}),
        ("lineage.checkpoint", {"shard": 1, "slice": 2, "checkpoint_sha256": "33" * 32, "manifest_roots": ["44" * 32]}),
        ("lineage.checkpoint", {"shard": 1, "slice": 3, "checkpoint_sha256": "55" * 32, "manifest_roots": ["66" * 32]}),
        ("request.completed", {**request, "run_id": "run_1", "checkpoints_after": {"1": "55" * 32}}),
    ]
    entries = [Entry(i, kind, TIME, payload).encode() for i, (kind, payload) in enumerate(payloads)]
    leaves = [merkle.leaf_hash(e) for e in entries]
    note = sign_note(Checkpoint(ORIGIN, len(entries), merkle.root_hash(leaves)).to_text(), ORIGIN, KEY)
    logged = [
        LoggedEntry(i, payloads[i][0], entries[i], leaves[i], tuple(merkle.inclusion_proof(i, leaves)))
        for i in range(len(entries))
    ]
    erasure = {
        "run_id": "run_1",
        "shards": [
            {
                **rewind,
                "checkpoint_after": "55" * 32,
                "retrained_checkpoints": ["33" * 32, "55" * 32],
                "retained_manifest_roots": ["66" * 32],
            }
        ],
    }
    statement = build_statement(
        request=request,
        erasure=erasure,
        origin=ORIGIN,
        checkpoint_note=note,
        entries=logged,
        tool_version="0.1.0",
        issued_at=TIME,
    )
    return statement, sign_certificate(statement, KEY)


def test_the_synthetic_certificate_verifies_and_is_byte_stable() -> None:
    statement, envelope = synthetic_certificate()
    result = verify_certificate(envelope, KEY.public_key())
    assert result.checkpoint.size == 5 and result.entries == 5
    assert synthetic_certificate()[1] == envelope
    assert json.loads(base64.b64decode(json.loads(envelope)["payload"])) == statement


def test_html_rendering_matches_the_golden_file() -> None:
    html = render_html(synthetic_certificate()[0])
    if os.environ.get("FORGET_UPDATE_GOLDEN"):
        GOLDEN.write_text(html)
    assert html == GOLDEN.read_text(), "rendering changed: review it, then FORGET_UPDATE_GOLDEN=1 pytest"
    assert "forget certificate verify" in html and "<script" not in html


def test_html_escapes_what_it_shows() -> None:
    statement, _ = synthetic_certificate()
    statement["predicate"]["request"]["request_id"] = "<b>x</b>"
    assert "&lt;b&gt;x&lt;/b&gt;" in render_html(statement)


def test_pdf_has_the_certificate_text() -> None:
    pytest.importorskip("weasyprint")
    pypdf = pytest.importorskip("pypdf")
    import io

    from reports.render import render_pdf

    pdf = render_pdf(synthetic_certificate()[0])
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    text = " ".join(page.extract_text() for page in reader.pages)
    assert 1 <= len(reader.pages) <= 6
    assert "Erasure certificate" in text and "req_0123456789abcdef" in text and "How to verify" in text
