"""Erasure certificates: an in-toto Statement v1, in a DSSE envelope signed with Ed25519.

The statement carries the claims (request, erasure) and the evidence they rest on: the ledger
entries themselves (their canonical bytes), an inclusion proof for each, and the signed
checkpoint those proofs lead to. The format is documented in docs/certificate.md.

The claims are a function of the evidence: `derive_claims` computes them from the entries, and it
is the one place that says which entries a claim needs. The issuer (forget.erasure.certify) calls it
to write the claims; the verifier (reports.verify) calls it on the entries a certificate carries
and requires the stated claims to be equal, field by field. Issuer and verifier cannot disagree.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.canonical import canonical_json
from ledger.evidence import (
    CheckpointRecorded,
    CheckpointsPurged,
    DecodedEntry,
    EntryKind,
    ErasurePlanned,
    EvidenceError,
    Outcome,
    PlannedRewind,
    RequestCompleted,
    RequestExtended,
    RequestQuarantined,
    RequestReceived,
    RequestStarted,
    SchemaRederived,
    SliceManifest,
    check_bool,
    check_hex64,
    check_id,
    check_identity_form,
    check_int,
    check_list,
    check_object,
    check_optional_hex64,
    check_str,
    check_time,
)
from reports.dsse import INTOTO_PAYLOAD_TYPE, sign_envelope
from reports.errors import CertificateError

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://forget.dev/attestations/erasure/v1"
PREDICATE_VERSION = 1
MAX_PROOF_LENGTH = 64
"""An RFC 9162 inclusion proof in a tree of at most 2**64 entries has at most 64 hashes."""
MAX_ENTRIES = 100_000
"""No certificate carries more ledger entries than this (a shard's slices, times its shards)."""


def _claim(check: Any, value: object, where: str) -> Any:
    """Run an evidence field check on a claim; its error becomes the certificate's."""
    try:
        return check(value, where)
    except EvidenceError as error:
        raise CertificateError(f"the statement is malformed: {error}") from None


def _object(value: object, where: str, required: Sequence[str]) -> dict[str, Any]:
    try:
        return check_object(value, where, required)
    except EvidenceError as error:
        raise CertificateError(f"the statement is malformed: {error}") from None


def _list(value: object, where: str, limit: int = MAX_ENTRIES) -> list[Any]:
    try:
        return check_list(value, where, limit)
    except EvidenceError as error:
        raise CertificateError(f"the statement is malformed: {error}") from None


def _base64(value: object, where: str) -> bytes:
    text = _claim(lambda v, w: check_str(v, w, limit=1 << 24), value, where)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        data = None
    if data is None or base64.b64encode(data).decode("ascii") != text:
        raise CertificateError(f"the statement is malformed: {where} is not canonical base64")
    return data


@dataclass(frozen=True)
class LoggedEntry:
    """A ledger entry as evidence: its canonical bytes and its inclusion proof."""

    index: int
    kind: str
    canonical: bytes
    leaf_hash: bytes
    inclusion_proof: tuple[bytes, ...]

    def to_dict(self) -> dict[str, Any]:
        """The item of the predicate's `log.entries`: bytes as canonical base64, hashes as lower-case hex."""
        return {
            "index": self.index,
            "kind": self.kind,
            "canonical": base64.b64encode(self.canonical).decode("ascii"),
            "leaf_hash": self.leaf_hash.hex(),
            "inclusion_proof": [h.hex() for h in self.inclusion_proof],
        }

    @classmethod
    def from_dict(cls, value: object, position: int) -> LoggedEntry:
        """Item `position` of `log.entries`, typed; raises `CertificateError` naming the field.

        Only the shape is checked here (a proof of at most `MAX_PROOF_LENGTH` hashes): the bytes are
        decoded and proven by reports.verify.
        """
        where = f"log.entries[{position}]"
        item = _object(value, where, ("index", "kind", "canonical", "leaf_hash", "inclusion_proof"))
        proof = _list(item["inclusion_proof"], f"{where}.inclusion_proof", MAX_PROOF_LENGTH)
        return cls(
            index=_claim(check_int, item["index"], f"{where}.index"),
            kind=_claim(lambda v, w: check_str(v, w, limit=64), item["kind"], f"{where}.kind"),
            canonical=_base64(item["canonical"], f"{where}.canonical"),
            leaf_hash=bytes.fromhex(_claim(check_hex64, item["leaf_hash"], f"{where}.leaf_hash")),
            inclusion_proof=tuple(
                bytes.fromhex(_claim(check_hex64, h, f"{where}.inclusion_proof[{i}]")) for i, h in enumerate(proof)
            ),
        )


# -- claims ---------------------------------------------------------------------------------------

QUARANTINE_FIELDS = ("quarantined_at", "quarantined_shards", "seconds_in_use_after_request")
"""Request claims that certificates issued before quarantine existed lack: absent reads as null."""
REQUEST_FIELDS = ("request_id", "subject_key", "outcome", "records_erased", "received_at", "deadline",
                   "completed_at", "deadline_met", "identity_form", *QUARANTINE_FIELDS)  # fmt: skip
SHARD_FIELDS = ("shard", "from_slice", "restored_checkpoint", "checkpoint_before", "checkpoint_after",
                 "retrained_checkpoints", "retained_manifest_roots")  # fmt: skip


@dataclass(frozen=True)
class RequestClaims:
    """What happened to the request: the subject's keyed hash, its times, the outcome."""

    request_id: str
    subject_key: str
    outcome: str
    records_erased: int
    received_at: str
    deadline: str
    completed_at: str
    deadline_met: bool
    identity_form: Mapping[str, str]
    """The canonical form the subject id was searched for in (NFC, trimmed, the case rule): what a
    "no data held" answer is only as true as (forget.subjects.identity)."""
    quarantined_at: str | None = None
    """When the shards holding the subject's records stopped answering predictions (logged with the
    receipt); None for a request filed before quarantine existed."""
    quarantined_shards: tuple[int, ...] | None = None
    """Those shards (empty: the workspace held no record of the subject when the request was filed)."""
    seconds_in_use_after_request: int | None = None
    """How long the subject's data could still shape a prediction after the request was received
    (`quarantine_claims` says how it is derived); None without a quarantine entry."""

    def to_dict(self) -> dict[str, Any]:
        """The predicate's `request`: every field, the quarantine ones null when the request predates quarantine."""
        value = {name: getattr(self, name) for name in REQUEST_FIELDS}
        shards = self.quarantined_shards
        return {**value, "identity_form": dict(self.identity_form),
                "quarantined_shards": list(shards) if shards is not None else None}  # fmt: skip

    @classmethod
    def from_dict(cls, value: object) -> RequestClaims:
        """The predicate's `request`, typed; the quarantine fields may be absent (older certificates) and read as None.

        Raises `CertificateError` naming the field.
        """
        required = tuple(name for name in REQUEST_FIELDS if name not in QUARANTINE_FIELDS)
        try:
            item = check_object(value, "request", required, QUARANTINE_FIELDS)
        except EvidenceError as error:
            raise CertificateError(f"the statement is malformed: {error}") from None
        quarantined_at = item.get("quarantined_at")
        shards = item.get("quarantined_shards")
        seconds = item.get("seconds_in_use_after_request")
        outcome = _claim(lambda v, w: check_str(v, w, limit=16), item["outcome"], "request.outcome")
        if outcome not in set(Outcome):
            raise CertificateError(f"the statement is malformed: request.outcome must be one of {', '.join(Outcome)}")
        return cls(
            request_id=_claim(check_id, item["request_id"], "request.request_id"),
            subject_key=_claim(check_hex64, item["subject_key"], "request.subject_key"),
            outcome=outcome,
            records_erased=_claim(check_int, item["records_erased"], "request.records_erased"),
            received_at=_claim(check_time, item["received_at"], "request.received_at"),
            deadline=_claim(check_time, item["deadline"], "request.deadline"),
            completed_at=_claim(check_time, item["completed_at"], "request.completed_at"),
            deadline_met=_claim(check_bool, item["deadline_met"], "request.deadline_met"),
            identity_form=_claim(check_identity_form, item["identity_form"], "request.identity_form"),
            quarantined_at=None if quarantined_at is None else _claim(check_time, quarantined_at,
                                                                      "request.quarantined_at"),
            quarantined_shards=None if shards is None else tuple(
                _claim(check_int, s, f"request.quarantined_shards[{i}]")
                for i, s in enumerate(_list(shards, "request.quarantined_shards"))
            ),
            seconds_in_use_after_request=None if seconds is None else _claim(
                check_int, seconds, "request.seconds_in_use_after_request"
            ),
        )  # fmt: skip


@dataclass(frozen=True)
class ShardClaims:
    """One rewound shard: where it was rewound to, and every checkpoint it was retrained into."""

    shard: int
    from_slice: int
    restored_checkpoint: str | None
    checkpoint_before: str | None
    checkpoint_after: str
    retrained_checkpoints: tuple[str, ...]
    retained_manifest_roots: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """One item of the predicate's `erasure.shards`, the digest tuples as lists."""
        value = {name: getattr(self, name) for name in SHARD_FIELDS}
        return {**value, "retrained_checkpoints": list(self.retrained_checkpoints),
                "retained_manifest_roots": list(self.retained_manifest_roots)}  # fmt: skip

    @classmethod
    def from_dict(cls, value: object, position: int) -> ShardClaims:
        """Item `position` of `erasure.shards`, every digest checked; raises `CertificateError` naming the field."""
        where = f"erasure.shards[{position}]"
        item = _object(value, where, SHARD_FIELDS)

        def digests(name: str) -> tuple[str, ...]:
            items = _list(item[name], f"{where}.{name}")
            return tuple(_claim(check_hex64, d, f"{where}.{name}[{i}]") for i, d in enumerate(items))

        return cls(
            shard=_claim(check_int, item["shard"], f"{where}.shard"),
            from_slice=_claim(check_int, item["from_slice"], f"{where}.from_slice"),
            restored_checkpoint=_claim(
                check_optional_hex64, item["restored_checkpoint"], f"{where}.restored_checkpoint"
            ),
            checkpoint_before=_claim(check_optional_hex64, item["checkpoint_before"], f"{where}.checkpoint_before"),
            checkpoint_after=_claim(check_hex64, item["checkpoint_after"], f"{where}.checkpoint_after"),
            retrained_checkpoints=digests("retrained_checkpoints"),
            retained_manifest_roots=digests("retained_manifest_roots"),
        )


@dataclass(frozen=True)
class ErasureClaims:
    """The run that erased the request's records, and each shard it rewound and retrained."""

    run_id: str
    shards: tuple[ShardClaims, ...]

    def to_dict(self) -> dict[str, Any]:
        """The predicate's `erasure`: the run, and each shard's claims in shard order."""
        return {"run_id": self.run_id, "shards": [s.to_dict() for s in self.shards]}

    @classmethod
    def from_dict(cls, value: object) -> ErasureClaims | None:
        """The predicate's `erasure`, typed, or None where it is null (no data was held).

        Raises `CertificateError` naming the field.
        """
        if value is None:
            return None
        item = _object(value, "erasure", ("run_id", "shards"))
        shards = _list(item["shards"], "erasure.shards")
        return cls(
            run_id=_claim(check_id, item["run_id"], "erasure.run_id"),
            shards=tuple(ShardClaims.from_dict(s, i) for i, s in enumerate(shards)),
        )


@dataclass(frozen=True)
class Claims:
    """What a certificate says about one request: its `request` claims, and its `erasure` (None: no data held).

    `derive_claims` computes them from the ledger entries; the verifier requires the stated ones to be
    equal to those, field by field.
    """

    request: RequestClaims
    erasure: ErasureClaims | None


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def _fail(entry: DecodedEntry, reason: str) -> CertificateError:
    return CertificateError(f"ledger entry {entry.index} ({entry.kind.value}) {reason}")


def _one(entries: Sequence[DecodedEntry], kind: EntryKind, what: str) -> DecodedEntry:
    found = [e for e in entries if e.kind is kind]
    if not found:
        raise CertificateError(f"the certificate does not carry the ledger entry that {what}")
    if len(found) > 1:
        raise _fail(found[1], f"repeats the entry that {what}")
    return found[0]


OwnEntry: TypeAlias = (
    RequestReceived | RequestQuarantined | RequestExtended | RequestStarted | RequestCompleted | ErasurePlanned
)
"""The entries that name their request: a certificate carries only its own request's."""


def derive_claims(request_id: str, entries: Sequence[DecodedEntry]) -> Claims:
    """The claims that these entries, and only these, prove about request `request_id`.

    Requires every entry a claim rests on, and refuses any entry no claim rests on (another
    request's, or another run's): a certificate is evidence about one request, and one person.
    Raises `CertificateError` naming the entry or the missing evidence.
    """
    indices = [e.index for e in entries]
    if indices != sorted(set(indices)):
        raise CertificateError("the certificate's ledger entries are not in strictly increasing log order")
    for entry in entries:
        payload = entry.payload
        if isinstance(payload, OwnEntry):
            if payload.request_id != request_id:
                raise _fail(entry, "is another request's: a certificate carries its own request's entries only")
        elif isinstance(payload, SchemaRederived):
            if not payload.changed:
                raise _fail(entry, "is an unchanged schema: no claim rests on it")
        elif not isinstance(payload, CheckpointsPurged | SliceManifest | CheckpointRecorded):
            raise _fail(entry, "is not evidence of any claim of an erasure certificate")

    received_entry = _one(entries, EntryKind.REQUEST_RECEIVED, "received the request")
    started_entry = _one(entries, EntryKind.REQUEST_STARTED, "started the request")
    completed_entry = _one(entries, EntryKind.REQUEST_COMPLETED, "completed the request")
    received, started, completed = received_entry.payload, started_entry.payload, completed_entry.payload
    assert isinstance(received, RequestReceived) and isinstance(started, RequestStarted)
    assert isinstance(completed, RequestCompleted)
    if not received_entry.index < started_entry.index < completed_entry.index:
        raise _fail(started_entry, "is not between the request's receipt and its completion")
    if started.run_id != completed.run_id:
        raise _fail(started_entry, "names another run than the request's completion")
    if (received.subject_key, received.received_at) != (completed.subject_key, completed.received_at):
        raise _fail(completed_entry, "differs from the request's receipt in subject_key or received_at")
    deadline = received.deadline
    for entry in entries:
        if isinstance(entry.payload, RequestExtended):
            if not received_entry.index < entry.index < completed_entry.index:
                raise _fail(entry, "is not between the request's receipt and its completion")
            deadline = entry.payload.deadline
    if completed.deadline != deadline:
        raise _fail(completed_entry, "states another deadline than the request's receipt and extensions")
    if completed.deadline_met != (_time(completed.completed_at) <= _time(deadline)):
        raise _fail(completed_entry, "says the deadline was met or missed against its own times")
    quarantined_at, quarantined_shards, seconds_in_use = quarantine_claims(entries, received_entry, completed)
    request = RequestClaims(
        request_id=completed.request_id,
        subject_key=completed.subject_key,
        outcome=completed.outcome.value,
        records_erased=completed.records_erased,
        received_at=completed.received_at,
        deadline=completed.deadline,
        completed_at=completed.completed_at,
        deadline_met=completed.deadline_met,
        identity_form=dict(received.identity_form),
        quarantined_at=quarantined_at,
        quarantined_shards=quarantined_shards,
        seconds_in_use_after_request=seconds_in_use,
    )
    erasure_kinds = (
        EntryKind.ERASURE_PLANNED,
        EntryKind.ERASURE_PURGED,
        EntryKind.SLICE_MANIFEST,
        EntryKind.CHECKPOINT,
    )
    if completed.outcome is Outcome.NO_DATA:
        extra = next((e for e in entries if e.kind in erasure_kinds), None)
        if extra is not None:
            raise _fail(extra, "is erasure evidence, but the request's completion says no data was held")
        if completed.records_erased != 0 or completed.checkpoints_after:
            raise _fail(completed_entry, "says no data was held, yet names erased records or retrained shards")
        return Claims(request, None)
    return Claims(request, _erasure_claims(entries, started_entry, completed_entry))


def quarantine_claims(
    entries: Sequence[DecodedEntry], received_entry: DecodedEntry, completed: RequestCompleted
) -> tuple[str | None, tuple[int, ...] | None, int | None]:
    """(quarantined_at, quarantined_shards, seconds_in_use_after_request) of the request.

    All None without a request.quarantined entry (a request filed before quarantine existed).
    The entry must be the one logged with the receipt: the next entry, at the same entry time,
    its quarantined_at that time to the second. The seconds run from the stated receipt to the
    end of the data's use, never below 0:
    - 0 when no shard held the subject's records (nothing quarantined, and no data erased);
    - up to quarantined_at when every shard the erasure retrained had been quarantined;
    - up to completed_at otherwise (a record ingested after the request was filed kept its
      shard answering until the retrained model replaced it): the bound the log supports.
    """
    found = [e for e in entries if e.kind is EntryKind.REQUEST_QUARANTINED]
    if not found:
        return None, None, None
    if len(found) > 1:
        raise _fail(found[1], "repeats the entry that quarantined the request's shards")
    entry = found[0]
    quarantine = entry.payload
    assert isinstance(quarantine, RequestQuarantined)
    if entry.index != received_entry.index + 1 or entry.time != received_entry.time:
        raise _fail(entry, "was not logged with the request's receipt (the next entry, at the same time)")
    if quarantine.quarantined_at != entry.time[:19] + "Z":
        raise _fail(entry, "states another quarantine time than its own entry time")
    if completed.outcome is Outcome.NO_DATA and not quarantine.shards:
        return quarantine.quarantined_at, quarantine.shards, 0
    covered = set(completed.checkpoints_after) <= set(quarantine.shards)
    end = quarantine.quarantined_at if covered else completed.completed_at
    seconds = int((_time(end) - _time(completed.received_at)).total_seconds())
    return quarantine.quarantined_at, quarantine.shards, max(0, seconds)


def _erasure_claims(
    entries: Sequence[DecodedEntry], started_entry: DecodedEntry, completed_entry: DecodedEntry
) -> ErasureClaims:
    completed = completed_entry.payload
    assert isinstance(completed, RequestCompleted)
    planned_entry = _one(entries, EntryKind.ERASURE_PLANNED, "planned the request's erasure")
    purged_entry = _one(entries, EntryKind.ERASURE_PURGED, "purged the erased records' checkpoints")
    planned, purged = planned_entry.payload, purged_entry.payload
    assert isinstance(planned, ErasurePlanned) and isinstance(purged, CheckpointsPurged)
    if not started_entry.index < planned_entry.index < purged_entry.index < completed_entry.index:
        raise _fail(purged_entry, "is not between the request's erasure plan and its completion")
    if planned.run_id != completed.run_id:
        raise _fail(planned_entry, "names another run than the request's completion")
    if purged.run_id != completed.run_id:
        raise _fail(purged_entry, "names another run than the request's completion")
    if planned.records != completed.records_erased:
        raise _fail(completed_entry, "states another number of erased records than the erasure plan")
    rewinds: Mapping[int, PlannedRewind] = {r.shard: r for r in planned.rewinds}
    if set(completed.checkpoints_after) != set(rewinds):
        raise _fail(completed_entry, "names other shards than the erasure plan rewound")
    window = [e for e in entries if planned_entry.index < e.index < completed_entry.index]
    restarted = _schema_restart(entries, purged_entry, completed_entry)
    for entry in entries:
        payload = entry.payload
        if isinstance(payload, SliceManifest | CheckpointRecorded):
            if payload.shard not in rewinds:
                raise _fail(entry, "is about a shard the request's erasure did not rewind")
            if not planned_entry.index < entry.index < completed_entry.index:
                raise _fail(entry, "was not logged between the request's erasure plan and its completion")
    purged_digests = set(purged.checkpoints)
    shards = []
    for number, rewind in sorted(rewinds.items()):
        shard = _shard_claims(
            rewind, window, purged_digests, completed.checkpoints_after[number], planned_entry, restarted
        )
        shards.append(shard)
    return ErasureClaims(completed.run_id, tuple(shards))


def _schema_restart(
    entries: Sequence[DecodedEntry], purged_entry: DecodedEntry, completed_entry: DecodedEntry
) -> SchemaRederived | None:
    """A schema change in the request's run: every shard restarted from slice 0 after the purge."""
    changed = [e for e in entries if isinstance(e.payload, SchemaRederived)]
    if not changed:
        return None
    if len(changed) > 1:
        raise _fail(changed[1], "is a second schema change in one run")
    entry = changed[0]
    payload = entry.payload
    assert isinstance(payload, SchemaRederived)
    completed = completed_entry.payload
    assert isinstance(completed, RequestCompleted)
    if payload.run_id != completed.run_id:
        raise _fail(entry, "names another run than the request's completion")
    if not purged_entry.index < entry.index < completed_entry.index:
        raise _fail(entry, "was not logged between the run's purge and the request's completion")
    return payload


def _shard_claims(
    rewind: PlannedRewind,
    window: Sequence[DecodedEntry],
    purged: set[str],
    checkpoint_after: str,
    planned_entry: DecodedEntry,
    restarted: SchemaRederived | None = None,
) -> ShardClaims:
    shard, first = rewind.shard, rewind.from_slice
    if (rewind.restored_checkpoint is None) != (first == 0):
        raise _fail(planned_entry, f"restores shard {shard} from a checkpoint that does not match its rewind slice")
    restored = rewind.restored_checkpoint
    if restarted is not None:
        if shard not in {r.shard for r in restarted.rewinds}:
            raise CertificateError(f"shard {shard}: the run's schema change did not restart it")
        first, restored = 0, None  # re-encoded records: the shard retrained from initialisation
    stale = set(rewind.stale_checkpoints)
    if rewind.checkpoint_before is not None and rewind.checkpoint_before not in stale:
        raise _fail(planned_entry, f"does not drop shard {shard}'s checkpoint from before the erasure")
    if restored is not None and restored in stale:
        raise _fail(planned_entry, f"drops the checkpoint shard {shard} restarts from")
    if not stale <= purged:
        raise CertificateError(f"shard {shard}: a checkpoint that saw an erased record was never logged as purged")
    # The last checkpoint logged for each slice is the current one (a crash or a later rewind in
    # the same window can log a slice again).
    latest: dict[int, CheckpointRecorded] = {}
    manifests: dict[int, SliceManifest] = {}
    for entry in window:
        payload = entry.payload
        if isinstance(payload, CheckpointRecorded) and payload.shard == shard:
            if payload.slice < first:
                raise _fail(entry, f"retrains shard {shard} below the slice it was rewound to")
            latest[payload.slice] = payload
        elif isinstance(payload, SliceManifest) and payload.shard == shard:
            manifests[payload.slice] = payload
    if not latest:
        raise CertificateError(f"shard {shard}: the certificate carries no checkpoint retrained after the erasure")
    last = max(latest)
    if sorted(latest) != list(range(first, last + 1)):
        missing = next(s for s in range(first, last + 1) if s not in latest)
        raise CertificateError(f"shard {shard}: the certificate carries no retrained checkpoint of slice {missing}")
    retrained = tuple(latest[s].checkpoint_sha256 for s in range(first, last + 1))
    if retrained[-1] != checkpoint_after:
        raise CertificateError(f"shard {shard}: the last retrained checkpoint is not the one the completion names")
    if purged & set(retrained):
        raise CertificateError(f"shard {shard}: a retrained checkpoint is logged as purged")
    roots = latest[last].manifest_roots
    # The erasure changed the membership of at least one slice it retrained (not necessarily the
    # first: a shard with no clean checkpoint below the erased slice restarts from slice 0).
    if not manifests:
        raise CertificateError(f"shard {shard}: the certificate carries no new manifest of a retrained slice")
    for slice_, manifest in manifests.items():
        if slice_ > last or roots[slice_] != manifest.manifest_root:
            raise CertificateError(f"shard {shard}: slice {slice_}'s logged manifest is not what it was retrained on")
    return ShardClaims(
        shard=shard,
        from_slice=first,
        restored_checkpoint=restored,
        checkpoint_before=rewind.checkpoint_before,
        checkpoint_after=checkpoint_after,
        retrained_checkpoints=retrained,
        retained_manifest_roots=roots,
    )


# -- the statement --------------------------------------------------------------------------------


def subjects_of(origin: str, completed: LoggedEntry, erasure: ErasureClaims | None) -> list[dict[str, Any]]:
    """The in-toto subjects: the entry that completed the request, and each retrained shard's model."""
    subjects = [
        {
            "name": f"ledger:{origin}#{completed.index}",
            "digest": {"sha256": hashlib.sha256(completed.canonical).hexdigest()},
        }
    ]
    for shard in erasure.shards if erasure is not None else ():
        subjects.append({"name": f"checkpoint:shard-{shard.shard}", "digest": {"sha256": shard.checkpoint_after}})
    return subjects


def build_statement(
    *,
    claims: Claims,
    origin: str,
    checkpoint_note: str,
    entries: Sequence[LoggedEntry],
    tool_version: str,
    issued_at: str,
) -> dict[str, Any]:
    """The statement; its subjects are the ledger entry that completed the request and the new models."""
    completed = next(e for e in entries if e.kind == EntryKind.REQUEST_COMPLETED)
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects_of(origin, completed, claims.erasure),
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "version": PREDICATE_VERSION,
            "issued_at": issued_at,
            "tool": {"name": "forget", "version": tool_version},
            "request": claims.request.to_dict(),
            "erasure": claims.erasure.to_dict() if claims.erasure is not None else None,
            "log": {
                "origin": origin,
                "checkpoint": checkpoint_note,
                "entries": [e.to_dict() for e in entries],
            },
        },
    }


@dataclass(frozen=True)
class Statement:
    """A statement read back strictly: every field present and typed, nothing unknown."""

    subjects: tuple[tuple[str, str], ...]
    claims: Claims
    issued_at: str
    tool: tuple[str, str]
    origin: str
    checkpoint_note: str
    entries: tuple[LoggedEntry, ...]


def _note(value: object) -> str:
    """The signed note's text is checked by ledger.note; here only its type and size."""
    if type(value) is not str or len(value) > 1 << 16:
        raise CertificateError("the statement is malformed: log.checkpoint is not a signed note")
    return value


def parse_statement(value: object) -> Statement:
    """The typed statement; raises `CertificateError` naming the first field that is wrong."""
    statement = _object(value, "the statement", ("_type", "subject", "predicateType", "predicate"))
    if statement["_type"] != STATEMENT_TYPE:
        raise CertificateError(f"the statement type is not {STATEMENT_TYPE}")
    if statement["predicateType"] != PREDICATE_TYPE:
        raise CertificateError(f"the predicate type is not {PREDICATE_TYPE}")
    subjects = []
    for i, item in enumerate(_list(statement["subject"], "subject", 10_000)):
        subject = _object(item, f"subject[{i}]", ("name", "digest"))
        digest = _object(subject["digest"], f"subject[{i}].digest", ("sha256",))
        name = _claim(lambda v, w: check_str(v, w, limit=512), subject["name"], f"subject[{i}].name")
        subjects.append((name, _claim(check_hex64, digest["sha256"], f"subject[{i}].digest.sha256")))
    predicate = _object(statement["predicate"], "predicate", ("version", "issued_at", "tool", "request", "erasure",
                                                              "log"))  # fmt: skip
    if type(predicate["version"]) is not int or predicate["version"] != PREDICATE_VERSION:
        raise CertificateError(f"the statement is malformed: predicate.version is not {PREDICATE_VERSION}")
    tool = _object(predicate["tool"], "predicate.tool", ("name", "version"))
    log = _object(predicate["log"], "predicate.log", ("origin", "checkpoint", "entries"))
    entries = _list(log["entries"], "log.entries")
    return Statement(
        subjects=tuple(subjects),
        claims=Claims(RequestClaims.from_dict(predicate["request"]), ErasureClaims.from_dict(predicate["erasure"])),
        issued_at=_claim(check_time, predicate["issued_at"], "predicate.issued_at"),
        tool=(
            _claim(lambda v, w: check_str(v, w, limit=64), tool["name"], "predicate.tool.name"),
            _claim(lambda v, w: check_str(v, w, limit=64), tool["version"], "predicate.tool.version"),
        ),
        origin=_claim(lambda v, w: check_str(v, w, limit=256), log["origin"], "log.origin"),
        checkpoint_note=_note(log["checkpoint"]),
        entries=tuple(LoggedEntry.from_dict(e, i) for i, e in enumerate(entries)),
    )


def sign_certificate(statement: Mapping[str, Any], private_key: Ed25519PrivateKey) -> bytes:
    """The envelope as indented JSON; the signed payload inside is the statement's RFC 8785 form."""
    envelope = sign_envelope(INTOTO_PAYLOAD_TYPE, canonical_json(statement), private_key)
    return (json.dumps(envelope, indent=2) + "\n").encode()
