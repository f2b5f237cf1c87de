"""Renderings of a verified certificate for people: HTML (jinja2) and PDF (weasyprint).

The first page answers what a DPO and an auditor ask first: who signed (organisation, key, log),
which ticket, what was erased, when and by when, in which identifier form it was searched for,
and how that is proven. The claims with every hash, the signed checkpoint, the ledger entries and
the raw statement follow in appendices.

A page is made from a `CertificateView`, and a view only from a certificate that verified
(`view_of` takes the `VerifiedCertificate` that `reports.verify.verify_certificate` returns):
there is no way to render a statement that was not checked. Pure functions of the view: no
clock, no environment, autoescaped, undefined names fail.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ledger.cosignature import cosignatures, parse_witness_key
from ledger.errors import LedgerError
from ledger.note import key_id as note_key_id
from ledger.note import split_note
from reports.dsse import key_id
from reports.errors import CertificateFormatError
from reports.verify import VerifiedCertificate, VerifierKey

__all__ = ["CertificateView", "Cosigned", "render_html", "render_pdf", "view_of"]

_environment = Environment(
    loader=PackageLoader("reports", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

TICKET_OFFLINE = "ticket reference not available offline (the certificate holds only its keyed digest)"
TICKET_NONE = "none: no ticket reference was filed with the request"
ORGANISATION_OFFLINE = "not stated: rendered outside the operator's workspace"
ORGANISATION_UNSET = "not stated: the operator's forget.toml names none ([workspace] organisation)"


@dataclass(frozen=True)
class Cosigned:
    """A witness cosignature on the certificate's checkpoint that verified against a given witness key."""

    witness: str
    time: str


@dataclass(frozen=True)
class CertificateView:
    """What a page shows: the verified statement, what verification established, and the
    operator's context (organisation, ticket), which is never part of the signed statement."""

    statement: Mapping[str, Any]
    key_fingerprint: str
    """`ed25519:` + sha256 of the raw public key: the DSSE key id, and the workspace's pinned key."""
    verifier_key: str
    """The note verifier key the certificate verified against (`forget keys public`'s last line)."""
    entries_proven: int
    tree_size: int
    root_hash: str
    identity: str
    """The sentence for the identity form the subject id was searched in (forget.subjects.identity)."""
    organisation: str | None = None
    organisation_missing: str = ORGANISATION_OFFLINE
    """Why no organisation is shown, when none is."""
    ticket: str | None = None
    """The DSAR ticket reference, when the workspace's request row holds one matching the certified digest."""
    ticket_status: str = TICKET_OFFLINE
    """Where the ticket comes from, or why there is none."""
    cosigned: tuple[Cosigned, ...] = ()
    unchecked_signers: tuple[str, ...] = ()
    """Names on the checkpoint's other signature lines, which no given key checked."""

    @property
    def predicate(self) -> Mapping[str, Any]:
        """The statement's predicate (request, erasure, log), which the template reads; present, as it verified."""
        predicate: Mapping[str, Any] = self.statement["predicate"]
        return predicate


def _signers(note: str, key: VerifierKey, witness_keys: Sequence[str]) -> tuple[tuple[Cosigned, ...], tuple[str, ...]]:
    """The witnesses whose cosignatures verified, and the other signature lines no key checked."""
    _, lines = split_note(note)
    keys = [parse_witness_key(vkey) for vkey in witness_keys]
    found = cosignatures(note, keys)
    checked = {(k.name, k.key_id) for k in keys} | {(key.origin, note_key_id(key.origin, key.public_key))}
    others = tuple(dict.fromkeys(name for name, blob in lines if (name, blob[:4]) not in checked))
    when = tuple(Cosigned(c.witness, _readable(datetime.fromtimestamp(c.timestamp, UTC))) for c in found)
    return when, others


def view_of(
    verified: VerifiedCertificate,
    key: VerifierKey,
    *,
    identity: str,
    witness_keys: Sequence[str] = (),
    organisation: str | None = None,
    ticket: str | None = None,
    ticket_status: str = TICKET_OFFLINE,
    organisation_missing: str = ORGANISATION_OFFLINE,
) -> CertificateView:
    """The view of a certificate that verified against `key` (and `witness_keys`, when given).

    `organisation_missing` says why no organisation is shown: rendered away from the operator's
    workspace (the default), or in it with none configured (`ORGANISATION_UNSET`).
    """
    try:
        cosigned, others = _signers(verified.predicate["log"]["checkpoint"], key, witness_keys)
    except LedgerError as error:
        raise CertificateFormatError(f"the certificate cannot be rendered: {error}") from error
    return CertificateView(
        statement=verified.statement,
        key_fingerprint=key_id(key.public_key),
        verifier_key=key.to_text(),
        entries_proven=verified.entries,
        tree_size=verified.checkpoint.size,
        root_hash=verified.checkpoint.root_hash.hex(),
        identity=identity,
        organisation=organisation,
        organisation_missing=organisation_missing,
        ticket=ticket,
        ticket_status=ticket_status,
        cosigned=cosigned,
        unchecked_signers=others,
    )


# --- what the template shows ---------------------------------------------------------------


def _moment(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _readable(when: str | datetime) -> str:
    """`2026-11-22T09:00:00Z` as `22 November 2026, 09:00 UTC`: how people read a date."""
    moment = _moment(when) if isinstance(when, str) else when
    return f"{moment.day} {moment:%B %Y, %H:%M} UTC"


def _span(seconds: float) -> str:
    days, hours = int(seconds // 86400), int(seconds % 86400 // 3600)
    if days:
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{hours} hour{'s' if hours != 1 else ''}" if hours else "less than an hour"


def _margin(request: Mapping[str, Any]) -> str:
    left = (_moment(request["deadline"]) - _moment(request["completed_at"])).total_seconds()
    if request["deadline_met"]:
        return f"met, {_span(left)} before the deadline"
    return f"MISSED by {_span(-left)}"


def _seconds(seconds: int) -> str:
    text = f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{text} ({_span(seconds)})" if seconds >= 3600 else text


def _quarantine(request: Mapping[str, Any]) -> str:
    """The sentence on how long the data were still in use after the request (docs/certificate.md)."""
    seconds = request.get("seconds_in_use_after_request")
    if seconds is None:
        return (
            "not stated: the request was filed before forget logged quarantines, so the log does not say"
            " when the models stopped using the data subject's records"
        )
    shards = request["quarantined_shards"]
    if not shards:
        if request["outcome"] != "erased":
            return "none: no shard held a record of the data subject when the request was filed"
        return (
            f"at most {_seconds(seconds)} after the request was received: no shard held a record of the data"
            " subject when the request was filed, and one that received a record later answered until retrained"
        )
    named = f"shard{'s' if len(shards) != 1 else ''} {', '.join(str(s) for s in shards)}"
    when = _readable(request["quarantined_at"])
    if seconds == 0:
        return (
            f"none: {named} stopped answering predictions as the request was received ({when}) and stayed out"
            " until retrained without the data subject's records"
        )
    return (
        f"at most {_seconds(seconds)} after the request was received: {named} stopped answering predictions"
        f" on {when} and stayed out until retrained without the data subject's records"
    )


def _entries(statement: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for item in statement["predicate"]["log"]["entries"]:
        entry = json.loads(base64.b64decode(item["canonical"]))
        rows.append(
            {
                "index": item["index"],
                "kind": item["kind"],
                "time": entry["time"],
                "leaf_hash": item["leaf_hash"],
                "proof_length": len(item["inclusion_proof"]),
                "payload": json.dumps(entry["payload"], sort_keys=True, indent=1),
                "fields": entry["payload"],
            }
        )
    return rows


def _erased(erasure: Mapping[str, Any] | None) -> list[str]:
    """One line per retrained shard, in words."""
    lines = []
    for shard in erasure["shards"] if erasure is not None else ():
        slices = len(shard["retained_manifest_roots"])
        retrained = len(shard["retrained_checkpoints"])
        start = (
            "retrained from initialisation"
            if shard["restored_checkpoint"] is None
            else f"rewound to its clean checkpoint before slice {shard['from_slice']}"
        )
        lines.append(f"shard {shard['shard']}: {start}; {retrained} of its {slices} slices retrained")
    return lines


def _raw_statement(statement: Mapping[str, Any]) -> str:
    """The statement as JSON, its entries shortened to a pointer (they are listed in full above)."""
    shown = json.loads(json.dumps(statement))
    entries = shown["predicate"]["log"]["entries"]
    shown["predicate"]["log"]["entries"] = f"[{len(entries)} entries: see appendix C]"
    return json.dumps(shown, indent=2, sort_keys=True, ensure_ascii=False)


def render_html(view: CertificateView, supplement: str | None = None) -> str:
    """A self-contained, printable page: the summary first, then the appendices.

    `supplement` is extra evidence the operator attaches (an evaluation report:
    `reports.evaluation.render_evaluation_section(report)`), shown last under "Supplementary
    evidence (not part of the signed statement)". A `markupsafe.Markup` value is inserted as HTML
    (its maker escapes what it holds); a plain `str` is escaped and shown as text.
    """
    if not isinstance(view, CertificateView):
        raise TypeError(
            "render_html takes a CertificateView (reports.render.view_of): only a verified certificate renders"
        )
    try:
        predicate = view.predicate
        request = predicate["request"]
        entries = _entries(view.statement)
        return _environment.get_template("certificate.html.j2").render(
            view=view,
            statement=view.statement,
            predicate=predicate,
            request=request,
            erasure=predicate["erasure"],
            log=predicate["log"],
            erased=_erased(predicate["erasure"]),
            margin=_margin(request),
            quarantine=_quarantine(request),
            received=_readable(request["received_at"]),
            completed=_readable(request["completed_at"]),
            deadline=_readable(request["deadline"]),
            issued=_readable(predicate["issued_at"]),
            entries=entries,
            extended=sum(e["fields"]["months"] for e in entries if e["kind"] == "request.extended"),
            organisation_missing=view.organisation_missing,
            raw_statement=_raw_statement(view.statement),
            supplement=supplement,
        )
    except (KeyError, IndexError, ValueError, TypeError, binascii.Error) as error:
        raise CertificateFormatError(f"the certificate cannot be rendered: missing or malformed {error}") from error


def render_pdf(view: CertificateView, supplement: str | None = None) -> bytes:
    """The same page as a PDF; weasyprint is an optional extra (pip install 'forget[pdf]')."""
    try:
        from weasyprint import HTML
    except ImportError as error:
        raise CertificateFormatError("PDF rendering needs weasyprint: pip install 'forget[pdf]'") from error
    pdf: bytes = HTML(string=render_html(view, supplement)).write_pdf()
    return pdf
