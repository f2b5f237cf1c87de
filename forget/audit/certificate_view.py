"""What a certificate's rendering shows beyond the signed statement, and where each piece comes from.

`certificate_view` verifies first (a certificate that does not verify raises, and nothing is
rendered), then adds:
- the identity form, in words, from the `request.received` entry the certificate carries;
- where rendered in the certificate's own workspace (same log origin): the organisation named in
  forget.toml, and the DSAR ticket reference from the request's row, shown only when its keyed
  digest equals the one the certificate carries (the row is erasable and unsigned; the digest is
  signed). Elsewhere the page says the ticket is not available offline.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from forget.subjects.identity import IdentityForm
from ledger.evidence import EvidenceError, RequestReceived, decode_entry
from reports.errors import CertificateFormatError
from reports.render import (
    ORGANISATION_OFFLINE,
    ORGANISATION_UNSET,
    TICKET_NONE,
    TICKET_OFFLINE,
    CertificateView,
    view_of,
)
from reports.verify import DEFAULT_MAX_BYTES, VerifiedCertificate, VerifierKey, verify_certificate

if TYPE_CHECKING:
    from forget.workspace.core import Workspace

TICKET_FROM_WORKSPACE = "from the request's record in the workspace; its keyed digest matches the certificate"
TICKET_MISMATCH = "not shown: the workspace's request record holds no ticket reference matching the certified digest"


def identity_sentence(form: Mapping[str, str]) -> str:
    """The identity form as a sentence ("Searched for the identifier in form NFC, trimmed, ...").

    `IdentityForm.describe()` words a form this version knows; any other recorded form is shown
    field by field, so the page never describes a form other than the one logged.
    """
    try:
        known = IdentityForm.from_dict(dict(form))
    except ValueError:
        known = None
    if known is not None and known.to_dict() == dict(form):
        return f"Searched for the identifier in form {known.describe()}."
    fields = ", ".join(f"{name} {value}" for name, value in sorted(form.items()))
    return f"Searched for the identifier in the recorded form: {fields}."


def received_entry(verified: VerifiedCertificate) -> RequestReceived:
    """The certificate's `request.received` entry (verification required exactly one).

    Raises `CertificateFormatError` (exit 2) when it is missing or malformed.
    """
    for item in verified.predicate["log"]["entries"]:
        if item["kind"] == "request.received":
            try:
                payload = decode_entry(base64.b64decode(item["canonical"])).payload
            except (EvidenceError, ValueError) as error:
                raise CertificateFormatError(f"the certificate's request.received entry: {error}") from error
            if isinstance(payload, RequestReceived):
                return payload
    raise CertificateFormatError("the certificate carries no request.received entry")


def _operator(
    workspace: Workspace | None, verified: VerifiedCertificate, received: RequestReceived
) -> tuple[str | None, str | None, str]:
    """Organisation, ticket and the ticket's provenance: from the workspace only if it is the certificate's."""
    if received.note_digest is None:
        ticket, status = None, TICKET_NONE
    else:
        ticket, status = None, TICKET_OFFLINE
    if workspace is None or workspace.config.origin != verified.checkpoint.origin:
        return None, ticket, status
    if received.note_digest is not None:
        row = workspace.datastore.get_request(received.request_id)
        note = row.note if row is not None else None
        if note is not None and workspace.pseudonymiser.text_digest(note) == received.note_digest:
            ticket, status = note, TICKET_FROM_WORKSPACE
        else:
            status = TICKET_MISMATCH
    return workspace.config.organisation, ticket, status


def certificate_view(
    data: bytes,
    key: VerifierKey,
    *,
    workspace: Workspace | None = None,
    witness_keys: Sequence[str] = (),
    witness_threshold: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> CertificateView:
    """Verify `data` against `key` (and the witnesses), then gather what its rendering shows.

    Raises the verifier's errors: a certificate that does not verify is never rendered.
    `workspace` is where it is rendered, if anywhere; it contributes only if it is the
    certificate's own (the same log origin).
    """
    verified = verify_certificate(
        data, key, max_bytes=max_bytes, witness_keys=witness_keys, witness_threshold=witness_threshold
    )
    received = received_entry(verified)
    organisation, ticket, status = _operator(workspace, verified, received)
    own = workspace is not None and workspace.config.origin == verified.checkpoint.origin
    return view_of(
        verified,
        key,
        identity=identity_sentence(received.identity_form),
        witness_keys=witness_keys,
        organisation=organisation,
        ticket=ticket,
        ticket_status=status,
        organisation_missing=ORGANISATION_UNSET if own else ORGANISATION_OFFLINE,
    )
