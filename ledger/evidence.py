"""The evidence schema: every kind of ledger entry, and the exact payload each kind carries.

A certificate's claims are checked against ledger entries, so the entries' payloads are a format.
It is defined here, once: the writers (forget.erasure.job, forget.erasure.rewind, forget.training.lineage,
forget.erasure.requests, forget.erasure.quarantine, forget.erasure.certify) build payloads with these
frozen types and `to_payload()`, and the verifier (reports.verify) reads them back with
`from_payload()`. A field added, renamed or retyped on one side fails on the other at once; a
claim cannot drift from its entry.

Reading is strict, because a verifier reads what an adversary wrote: every field present, no
unknown field, exact JSON types (a bool is not an integer, a float is not anything), integers
in 0..2**53-1, digests as 64 lower-case hex digits, times in one UTC spelling. JSON text is read
by `loads_strict`, which also refuses duplicate keys, NaN and the infinities, and non-UTF-8.

Pure like ledger.merkle: the standard library and this package's errors only, no I/O.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Self, TypeAlias

from ledger.errors import VerificationError

__all__ = [
    "ENTRY_FORMAT",
    "MAX_INTEGER",
    "PAYLOAD_TYPES",
    "CheckpointRecorded",
    "CheckpointsPurged",
    "DecodedEntry",
    "EntryKind",
    "ErasurePlanned",
    "ErasureRetrained",
    "EvidenceError",
    "Outcome",
    "Payload",
    "PlannedRewind",
    "RequestCertified",
    "RequestCompleted",
    "RequestExtended",
    "RequestQuarantined",
    "RequestReceived",
    "RequestStarted",
    "SchemaRederived",
    "SliceManifest",
    "check_bool",
    "check_hex64",
    "check_id",
    "check_identity_form",
    "check_int",
    "check_list",
    "check_object",
    "check_optional_hex64",
    "check_str",
    "check_time",
    "decode_entry",
    "loads_strict",
    "parse_payload",
]

ENTRY_FORMAT = 1
"""The `v` of an entry's bytes (ledger.log.Entry writes them; this module reads them)."""

MAX_INTEGER = 2**53 - 1
"""The largest integer a JSON number holds exactly (RFC 8785, I-JSON)."""
MAX_LIST = 100_000
"""No list in a payload is longer (a shard's slices, a batch's stale checkpoints)."""
MAX_TEXT = 256
"""No string in a payload is longer, except where a field says otherwise."""

_HEX64 = re.compile(r"[0-9a-f]{64}")
_ID = re.compile(r"[a-z]{1,16}_[0-9a-f]{8,64}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_ENTRY_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z")
_TEXT = re.compile(r"[\x20-\x7e]*")


class EvidenceError(VerificationError):
    """An entry or a payload is not what the evidence schema requires; the message names the field."""


class EntryKind(StrEnum):
    """Every kind of ledger entry. The value is the `kind` written in the entry's bytes."""

    WORKSPACE_INITIALIZED = "workspace.initialized"
    DATA_INGESTED = "data.ingested"
    SLICE_MANIFEST = "lineage.slice"
    CHECKPOINT = "lineage.checkpoint"
    REQUEST_RECEIVED = "request.received"
    REQUEST_EXTENDED = "request.extended"
    REQUEST_QUARANTINED = "request.quarantined"
    REQUEST_STARTED = "request.started"
    ERASURE_PLANNED = "erasure.planned"
    ERASURE_PURGED = "erasure.checkpoints_purged"
    ERASURE_RETRAINED = "erasure.retrained"
    SCHEMA_REDERIVED = "schema.rederived"
    REQUEST_COMPLETED = "request.completed"
    REQUEST_CERTIFIED = "request.certified"


class Outcome(StrEnum):
    """How a request ended (forget.erasure.requests.Outcome spells the same values)."""

    ERASED = "erased"
    NO_DATA = "no_data"


# -- strict JSON ------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise EvidenceError(f"the JSON repeats the key {_shown(key)}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise EvidenceError(f"the JSON holds {name}, which is not a JSON number")


def _no_float(text: str) -> Any:
    raise EvidenceError(f"the JSON holds the number {_shown(text)}: only integers are allowed")


def loads_strict(data: bytes) -> Any:
    """Parse UTF-8 JSON, refusing duplicate keys, NaN, infinities, fractions and exponents.

    Python's `json` keeps the last of two equal keys and reads `NaN`; two parsers could then see
    two different statements in one signed payload. Raises `EvidenceError` with a one-line reason.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise EvidenceError("the JSON is not valid UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_no_float)
    except RecursionError:
        raise EvidenceError("the JSON is nested too deeply") from None
    except json.JSONDecodeError as error:
        raise EvidenceError(f"the JSON is malformed ({error.msg} at character {error.pos})") from None
    except ValueError as error:  # an integer of more than 4300 digits
        raise EvidenceError(f"the JSON holds a number that cannot be read ({str(error)[:60]})") from None


# -- field checks -------------------------------------------------------------------------------


def _shown(value: object) -> str:
    """An attacker's string, quoted and cut short, for an error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _type_name(value: object) -> str:
    return "null" if value is None else {bool: "a boolean", int: "an integer", str: "a string", list: "a list",
                                         dict: "an object"}.get(type(value), type(value).__name__)  # fmt: skip


def check_int(value: object, where: str, minimum: int = 0, maximum: int = MAX_INTEGER) -> int:
    """`value` as an integer in `minimum..maximum` (a boolean is not one); raises `EvidenceError` naming `where`."""
    if type(value) is not int:
        raise EvidenceError(f"{where} must be an integer, not {_type_name(value)}")
    if not minimum <= value <= maximum:
        raise EvidenceError(f"{where} must be between {minimum} and {maximum}")
    return value


def check_bool(value: object, where: str) -> bool:
    """`value` as true or false, never 0 or 1; raises `EvidenceError` naming `where`."""
    if type(value) is not bool:
        raise EvidenceError(f"{where} must be true or false, not {_type_name(value)}")
    return value


def check_str(value: object, where: str, pattern: re.Pattern[str] = _TEXT, limit: int = MAX_TEXT) -> str:
    """`value` as a string of at most `limit` characters that `pattern` matches whole (by default printable
    ASCII only); raises `EvidenceError` naming `where`, the value quoted and cut short.
    """
    if type(value) is not str:
        raise EvidenceError(f"{where} must be a string, not {_type_name(value)}")
    if len(value) > limit or not pattern.fullmatch(value):
        raise EvidenceError(f"{where} is malformed: {_shown(value)}")
    return value


def check_hex64(value: object, where: str) -> str:
    """A SHA-256 digest: exactly 64 lower-case hex digits (one spelling per digest)."""
    if type(value) is not str:
        raise EvidenceError(f"{where} must be a string, not {_type_name(value)}")
    if not _HEX64.fullmatch(value):
        raise EvidenceError(f"{where} must be 64 lower-case hex digits: {_shown(value)}")
    return value


def check_optional_hex64(value: object, where: str) -> str | None:
    """None, or a digest as `check_hex64` requires it (a checkpoint a shard may not have); raises `EvidenceError`."""
    return None if value is None else check_hex64(value, where)


def check_id(value: object, where: str) -> str:
    """A request or run id: `req_<hex>`, `run_<hex>`, `erase_<hex>`."""
    return check_str(value, where, _ID, 80)


def check_time(value: object, where: str) -> str:
    """A UTC time as `YYYY-MM-DDTHH:MM:SSZ`, and a real date (no February 30)."""
    text = check_str(value, where, _TIME, 20)
    try:
        datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise EvidenceError(f"{where} is not a real date and time: {_shown(text)}") from None
    return text


def check_list(value: object, where: str, limit: int = MAX_LIST) -> list[Any]:
    """`value` as a list of at most `limit` items, so a hostile payload cannot make a reader walk millions.

    The items are the caller's to check. Raises `EvidenceError` naming `where`.
    """
    if type(value) is not list:
        raise EvidenceError(f"{where} must be a list, not {_type_name(value)}")
    if len(value) > limit:
        raise EvidenceError(f"{where} has {len(value)} items, more than {limit}")
    return value


def check_object(value: object, where: str, required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, Any]:
    """A JSON object with exactly these keys (the optional ones may be absent)."""
    if type(value) is not dict:
        raise EvidenceError(f"{where} must be an object, not {_type_name(value)}")
    for name in required:
        if name not in value:
            raise EvidenceError(f"{where} has no {name}")
    unknown = sorted(set(value) - set(required) - set(optional))
    if unknown:
        raise EvidenceError(f"{where} has an unknown field {_shown(unknown[0])}")
    return value


def _hex_tuple(value: object, where: str) -> tuple[str, ...]:
    return tuple(check_hex64(item, f"{where}[{i}]") for i, item in enumerate(check_list(value, where)))


def _string_map(value: object, where: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise EvidenceError(f"{where} must be an object, not {_type_name(value)}")
    return value


def _shard_key(text: str, where: str) -> int:
    """Shard numbers as JSON object keys: decimal, no sign, no leading zero."""
    if not re.fullmatch(r"0|[1-9][0-9]{0,8}", text):
        raise EvidenceError(f"{where} has a key that is not a shard number: {_shown(text)}")
    return int(text)


def check_identity_form(form: object, where: str) -> dict[str, str]:
    """The canonical form a subject id was put in before hashing: a small map of strings."""
    if type(form) is not dict:
        raise EvidenceError(f"{where} must be an object, not {_type_name(form)}")
    if len(form) > 16:
        raise EvidenceError(f"{where} has more than 16 fields")
    for key, value in form.items():
        check_str(key, f"{where} key", limit=64)
        check_str(value, f"{where}.{key}", limit=64)
    return form


# -- payloads -----------------------------------------------------------------------------------


class _Entry(ABC):
    """What every payload type has: its kind, and the (kind, payload) pair `Ledger.append` takes."""

    KIND: ClassVar[EntryKind]

    @abstractmethod
    def to_payload(self) -> dict[str, Any]:
        """The payload as the entry's bytes carry it (RFC 8785 canonicalises it)."""

    def entry(self) -> tuple[str, dict[str, Any]]:
        return self.KIND.value, self.to_payload()


def _check_all(owner: object, checks: Mapping[str, Any]) -> None:
    """Run each field's check on the value the dataclass holds (writers and readers alike)."""
    for name, check in checks.items():
        check(getattr(owner, name), f"{owner.KIND.value}.{name}")  # type: ignore[attr-defined]


@dataclass(frozen=True)
class RequestReceived(_Entry):
    """A request was filed: the subject's keyed hash, the Art. 12(3) deadline, the identity form."""

    KIND: ClassVar[EntryKind] = EntryKind.REQUEST_RECEIVED
    request_id: str
    subject_key: str
    received_at: str
    deadline: str
    identity_form: Mapping[str, str]
    """How the subject id was canonicalised before hashing (forget.subjects.identity.IdentityForm.to_dict)."""
    note_digest: str | None
    """Keyed digest of the DSAR ticket note; the note itself lives in the erasable request row."""

    def __post_init__(self) -> None:
        check_identity_form(self.identity_form, f"{self.KIND.value}.identity_form")
        _check_all(self, {"request_id": check_id, "subject_key": check_hex64, "received_at": check_time,
                          "deadline": check_time, "note_digest": check_optional_hex64})  # fmt: skip

    def to_payload(self) -> dict[str, Any]:
        """The six fields as logged; `note_digest` is null when the request was filed without a note."""
        return {"request_id": self.request_id, "subject_key": self.subject_key, "received_at": self.received_at,
                "deadline": self.deadline, "identity_form": dict(self.identity_form),
                "note_digest": self.note_digest}  # fmt: skip

    @classmethod
    def from_payload(cls, payload: object) -> Self:
        """Read back strictly: exactly the six fields, each checked; raises `EvidenceError` naming the first bad one."""
        fields = check_object(payload, cls.KIND.value, ("request_id", "subject_key", "received_at", "deadline",
                                                         "identity_form", "note_digest"))  # fmt: skip
        return cls(**fields)


@dataclass(frozen=True)
class RequestQuarantined(_Entry):
    """The shards holding the subject's records stopped answering predictions: logged with the receipt.

    Written in the same transaction (and with the same entry time) as request.received, by every
    way a request is filed. The shards stay out of every ensemble while the request is open, that
    is until they are retrained without the subject. `shards` is empty when the workspace held no
    record of the subject: nothing had to stop. Ledgers written before quarantine existed have no
    such entry; their certificates state no quarantine.
    """

    KIND: ClassVar[EntryKind] = EntryKind.REQUEST_QUARANTINED
    request_id: str
    shards: tuple[int, ...]
    """The shards that held a record of the subject, in increasing order, each once."""
    quarantined_at: str
    """The moment the quarantine committed (the entry's own time, to the second)."""

    def __post_init__(self) -> None:
        where = self.KIND.value
        _check_all(self, {"request_id": check_id, "quarantined_at": check_time})
        if type(self.shards) is not tuple:
            raise EvidenceError(f"{where}.shards must be a list")
        for i, shard in enumerate(self.shards):
            check_int(shard, f"{where}.shards[{i}]")
        if list(self.shards) != sorted(set(self.shards)):
            raise EvidenceError(f"{where}.shards must name each shard once, in increasing order")

    def to_payload(self) -> dict[str, Any]:
        """The three fields as logged; `shards` is an empty list when nothing had to stop."""
        return {"request_id": self.request_id, "shards": list(self.shards), "quarantined_at": self.quarantined_at}

    @classmethod
    def from_payload(cls, payload: object) -> Self:
        """Read back strictly: `shards` lists each shard once, increasing; raises `EvidenceError` naming the field."""
        where = cls.KIND.value
        fields = check_object(payload, where, ("request_id", "shards", "quarantined_at"))
        shards = tuple(check_list(fields["shards"], f"{where}.shards"))
        return cls(**{**fields, "shards": shards})


@dataclass(frozen=True)
class RequestExtended(_Entry):
    """Art. 12(3): the deadline moved by `months`; the reason's keyed digest (the text is erasable)."""

    KIND: ClassVar[EntryKind] = EntryKind.REQUEST_EXTENDED
    request_id: str
    months: int
    deadline: str
    reason_digest: str

    def __post_init__(self) -> None:
        _check_all(self, {"request_id": check_id, "deadline": check_time, "reason_digest": check_hex64})
        check_int(self.months, f"{self.KIND.value}.months", 1, 2)

    def to_payload(self) -> dict[str, Any]:
        """The four fields as logged: the new deadline and the reason's keyed digest, never the reason."""
        return {"request_id": self.request_id, "months": self.months, "deadline": self.deadline,
                "reason_digest": self.reason_digest}  # fmt: skip

    @classmethod
    def from_payload(cls, payload: object) -> Self:
        """Read back strictly: `months` is 1 or 2 (Art. 12(3)'s most); raises `EvidenceError` naming the field."""
        return cls(**check_object(payload, cls.KIND.value, ("request_id", "months", "deadline", "reason_digest")))


@dataclass(frozen=True)
class RequestStarted(_Entry):
    """The request joined run `run_id`; it keeps that run id until it completes, crashes included."""

    KIND: ClassVar[EntryKind] = EntryKind.REQUEST_STARTED
    request_id: str
    run_id: str

    def __post_init__(self) -> None:
        _check_all(self, {"request_id": check_id, "run_id": check_id})

    def to_payload(self) -> dict[str, Any]:
        """The request and the run it joined, as logged."""
        return {"request_id": self.request_id, "run_id": self.run_id}

    @classmethod
    def from_payload(cls, payload: object) -> Self:
        """Read back strictly: exactly two ids; raises `EvidenceError` naming the field."""
        return cls(**check_object(payload, cls.KIND.value, ("request_id", "run_id")))


@dataclass(frozen=True)
class PlannedRewind:
    """One shard rewound to `from_slice`: what training resumed from, what was dropped."""

    shard: int
    from_slice: int
    restored_checkpoint: str | None
    """The clean checkpoint of slice `from_slice - 1`; None when the shard retrains from initialisation."""
    checkpoint_before: str | None
    """The shard's final checkpoint before the erasure (dropped, then purged)."""
    stale_checkpoints: tuple[str, ...]
    """Every checkpoint of the shard from `from_slice` on: each saw an erased record or one after it."""

    def __post_init__(self) -> None:
        where = f"{EntryKind.ERASURE_PLANNED.value}.rewinds"
        check_int(self.shard, f"{where}.shard")
        check_int(self.from_slice, f"{where}.from_slice")
        check_optional_hex64(self.restored_checkpoint, f"{where}.restored_checkpoint")
        check_optional_hex64(self.checkpoint_before, f"{where}.checkpoint_before")
        if type(self.stale_checkpoints) is not tuple:
            raise EvidenceError(f"{where}.stale_checkpoints must be a list")
        _hex_tuple(list(self.stale_checkpoints), f"{where}.stale_checkpoints")

    def to_payload(self) -> dict[str, Any]:
        """One item of `erasure.planned`'s `rewinds` (a rewind is no entry of its own); absent checkpoints as null."""
        return {
            "shard": self.shard,
            "from_slice": self.from_slice,
            "restored_checkpoint": self.restored_checkpoint,
            "checkpoint_before": self.checkpoint_before,
            "stale_checkpoints": list(self.stale_checkpoints),
        }

    @classmethod
    def from_payload(cls, payload: object) -> Self:
        """One item of `rewinds` read back strictly; raises `EvidenceError` naming the field (`...rewinds[].x`)."""
        where = f"{EntryKind.ERASURE_PLANNED.value}.rewinds[]"
        fields = check_object(payload, where, ("shard", "from_slice", "restored_checkpoint", "checkpoint_before",
                                               "stale_checkpoints"))  # fmt: skip
        stale = _hex_tuple(fields["stale_checkpoints"], f"{where}.stale_checkpoints")
        return cls(**{**fields, "stale_checkpoints": stale})


@dataclass(frozen=True)
class ErasurePlanned(_Entry):
    """One request's part of a run, logged with the deletion of its records (intent with effect).

    One entry per request: a certificate carries its own request's plan, never its batch mates'.
    Two requests of a batch that share a shard each carry the same rewind of that shard.
    """

    KIND: ClassVar[EntryKind] = EntryKind.ERASURE_PLANNED
    request_id: str | None
    """None only in ledgers written before every erasure went through a request (an older `erase()`)."""
    run_id: str
    records: int
    rewinds: tuple[PlannedRewind, ...]

    def __post_init__(self) -> None:
        where = self.KIND.value
        if self.request_id is not None:
            check_id(self.request_id, f"{where}.request_id")
        check_id(self.run_id, f"{where}.run_id")
        check_int(self.records, f"{where}.records", 1)
        if type(self.rewinds) is not tuple or not self.rewinds:
            raise EvidenceError(f"{where}.rewinds must be a non-empty list")
        for rewind in self.rewinds:
            if not isinstance(rewind, PlannedRewind):
                raise EvidenceError(f"{where}.rewinds holds something that is not a rewind")
        shards = [r.shard for r in self.rewinds]
        if shards != sorted(set(shards)):
            raise EvidenceError(f"{where}.rewinds must name each shard once, in increasing order")

    def to_payload(self) -> dict[str, Any]:
        """The four fields as logged, the rewinds in shard order as `PlannedRewind.to_payload` writes them."""
        return {"request_id": self.request_id, "run_id": self.run_id, "records": self.records,
                "rewinds": [r.to_payload() for r in self.rewinds]}  # fmt: skip

    @classmethod
    def from_payload(cls, payload: object) -> Self:
        """Read back strictly: at least one record, and a non-empty list of rewinds, each shard once, increasing.

        Raises `EvidenceError` naming the field.
        """
        fields = check_object(payload, cls.KIND.value, ("request_id", "run_id", "records", "rewinds"))
        rewinds = tuple(
            PlannedRewind.from_payload(r) for r in check_list(fields["rewinds"], f"{cls.KIND.value}.rewinds")
        )
        return cls(**{**fields, "rewinds": rewinds})


@dataclass(frozen=True)
class CheckpointsPurged(_Entry):
    """After the deletion: these checkpoint files are gone from the store (checked, then logged)."""

    KIND: ClassVar[EntryKind] = EntryKind.ERASURE_PURGED
    run_id: str
    checkpoints: tuple[str, ...]

    def __post_init__(self) -> None:
        check_id(self.run_id, f"{self.KIND.value}.run_id")
        if type(self.checkpoints) is not tuple:
            raise EvidenceError(f"{self.KIND.value}.checkpoints must be a list")
        _hex_tuple(list(self.checkpoints), f"{self.KIND.value}.checkpoints")
        if list(self.checkpoints) != sorted(set(self.checkpoints)):
            raise EvidenceError(f"{self.KIND.value}.checkpoints must be sorted, each once")

    def to_payload(self) -> dict[str, Any]:
        """The run and the purged checkpoints' digests, sorted, as logged."""
        return {"run_id": self.run_id, "checkpoints": list(self.checkpoints)}

    @classmethod
    def from_payload(cls, payload: object) -> Self:
        """Read back strictly: digests sorted, each once; raises `EvidenceError` naming the field."""
        fields = check_object(payload, cls.KIND.value, ("run_id", "checkpoints"))
        return cls(fields["run_id"], _hex_tuple(fields["checkpoints"], f"{cls.KIND.value}.checkpoints"))


@dataclass(frozen=True)
class SliceManifest(_Entry):
    """A slice's exact membership: the RFC 9162 root over its sorted keyed record ids."""

    KIND: ClassVar[EntryKind] = EntryKind.SLICE_MANIFEST
    shard: int
    slice: int
    records: int
    manifest_root: str

    def __post_init__(self) -> None:
        _check_all(self, {"shard": check_int, "slice": check_int, "records": check_int,
                          "manifest_root": check_hex64})  # fmt: skip

    def to_payload(self) -> dict[str, Any]:
        """The four fields as logged: the slice's place, its record count and its manifest root."""
        return {"shard": self.shard, "slice": self.slice, "records": self.records,
                "manifest_root": self.manifest_root}  # fmt: skip

    @classmethod
    def from_payload(cls, payload: object) -> Self:
        """Read back strictly: three integers and a digest; raises `EvidenceError` naming the field."""
        return cls(**check_object(payload, cls.KIND.value, ("shard", "slice", "records", "manifest_root")))


@dataclass(frozen=True)
class CheckpointRecorded(_Entry):
    """A slice's checkpoint became current: its digest, the data it saw, and how it was made."""

    KIND: ClassVar[EntryKind] = EntryKind.CHECKPOINT
    shard: int
    slice: int
    checkpoint_sha256: str
    records: int
    manifest_roots: tuple[str, ...]
    """The manifest roots of slices 0..slice: every record this model has seen."""
    config_sha256: str
    forget_version: str
    torch_version: str
    python_version: str
    device: str
    threads: int
    deterministic: bool

    def __post_init__(self) -> None:
        where = self.KIND.value
        _check_all(self, {"shard": check_int, "slice": check_int, "checkpoint_sha256": check_hex64,
                          "records": check_int, "config_sha256": check_hex64, "forget_version": check_str,
                          "torch_version": check_str, "python_version": check_str, "device": check_str,
                          "threads": check_int, "deterministic": check_bool})  # fmt: skip
        if type(self.manifest_roots) is not tuple:
            raise EvidenceError(f"{where}.manifest_roots must be a list")
        _hex_tuple(list(self.manifest_roots), f"{where}.manifest_roots")
        if len(self.manifest_roots) != self.slice + 1:
            raise EvidenceError(f"{where}.manifest_roots must hold one root per slice 0..{self.slice}")

    def to_payload(self) -> dict[str, Any]:
        """The twelve fields as logged: the digest, the manifest roots of slices 0..slice, and how it was trained."""
        return {"shard": self.shard, "slice": self.slice, "checkpoint_sha256": self.checkpoint_sha256,
                "records": self.records, "manifest_roots": list(self.manifest_roots),
                "config_sha256": self.config_sha256, "forget_version": self.forget_version,
                "torch_version": self.torch_version, "python_version": self.python_version, "device": self.device,
                "threads": self.threads, "deterministic": self.deterministic}  # fmt: skip

    @classmethod
    def from_payload(cls, payload: object) -> Self:
        """Read back strictly: one manifest root per slice 0..`slice`; raises `EvidenceError` naming the field."""
        fields = check_object(payload, cls.KIND.value, ("shard", "slice", "checkpoint_sha256", "records",
                                                         "manifest_roots", "config_sha256", "forget_version",
                                                         "torch_version", "python_version", "device", "threads",
                                                         "deterministic"))  # fmt: skip
        roots = _hex_tuple(fields["manifest_roots"], f"{cls.KIND.value}.manifest_roots")
        return cls(**{**fields, "manifest_roots": roots})


@dataclass(frozen=True)
class ErasureRetrained(_Entry):
    """Written only by an older `erase()` (no longer in forget); kept so that older ledgers still decode."""

    KIND: ClassVar[EntryKind] = EntryKind.ERASURE_RETRAINED
    run_id: str
    shards: Mapping[int, tuple[str, ...]]

    def __post_init__(self) -> None:
        check_id(self.run_id, f"{self.KIND.value}.run_id")
        for shard, digests in self.shards.items():
            check_int(shard, f"{self.KIND.value}.shards key")
            _hex_tuple(list(digests), f"{self.KIND.value}.shards.{shard}")

    def to_payload(self) -> dict[str, Any]:
        """The payload as older ledgers hold it: per shard (a decimal key, in order), its retrained digests."""
        return {"run_id": self.run_id, "shards": {str(s): list(d) for s, d in sorted(self.shards.items())}}

    @classmethod
    def from_payload(cls, payload: object) -> Self:
        """Read back strictly: shard keys decimal, no sign or leading zero; raises `EvidenceError` naming one."""
        where = cls.KIND.value
        fields = check_object(payload, where, ("run_id", "shards"))
        shards = _string_map(fields["shards"], f"{where}.shards")
        parsed = {_shard_key(k, f"{where}.shards"): _hex_tuple(v, f"{where}.shards.{k}") for k, v in shards.items()}
        return cls(fields["run_id"], parsed)


@dataclass(frozen=True)
class SchemaRederived(_Entry):
    """`forget run` re-derived the feature schema from the retained records (DESIGN invariant 9).

    Unchanged (the usual case): the digests agree. Changed: every record was re-encoded and every
    shard's checkpoints dropped (`rewinds`, all from slice 0), so every shard retrains from scratch;
    `changes` says what moved, by column and count, never by value.
    """

    KIND: ClassVar[EntryKind] = EntryKind.SCHEMA_REDERIVED
    run_id: str | None
    rule: str
    min_subjects: int
    records: int
    previous_sha256: str
    schema_sha256: str
    changed: bool
    changes: tuple[str, ...] = ()
    rewinds: tuple[PlannedRewind, ...] = ()

    def __post_init__(self) -> None:
        where = self.KIND.value
        if self.run_id is not None:
            check_id(self.run_id, f"{where}.run_id")
        check_str(self.rule, f"{where}.rule")
        check_int(self.min_subjects, f"{where}.min_subjects")
        check_int(self.records, f"{where}.records")
        check_hex64(self.previous_sha256, f"{where}.previous_sha256")
        check_hex64(self.schema_sha256, f"{where}.schema_sha256")
        check_bool(self.changed, f"{where}.changed")
        for i, change in enumerate(self.changes):
            check_str(change, f"{where}.changes[{i}]")
        if self.changed != (self.previous_sha256 != self.schema_sha256):
            raise EvidenceError(f"{where}.changed must say whether the two digests differ")
        if not self.changed and (self.changes or self.rewinds):
            raise EvidenceError(f"{where} names changes or rewinds of an unchanged schema")
        if any(r.from_slice != 0 or r.restored_checkpoint is not None for r in self.rewinds):
            raise EvidenceError(f"{where}.rewinds must restart every shard from slice 0")

    def to_payload(self) -> dict[str, Any]:
        """The payload as logged; `changes` and `rewinds` appear only when the schema changed."""
        payload: dict[str, Any] = {
            "run_id": self.run_id,
            "rule": self.rule,
            "min_subjects": self.min_subjects,
            "records": self.records,
            "previous_sha256": self.previous_sha256,
            "schema_sha256": self.schema_sha256,
            "changed": self.changed,
        }
        if self.changed:
            payload["changes"] = list(self.changes)
            payload["rewinds"] = [r.to_payload() for r in self.rewinds]
        return payload

    @classmethod
    def from_payload(cls, payload: object) -> Self:
        """Read back strictly: a changed schema must carry `changes` and `rewinds` (each from slice 0), an unchanged one
        must not carry the keys at all (one encoding per entry). Raises `EvidenceError` naming the field.
        """
        where = cls.KIND.value
        common = ("run_id", "rule", "min_subjects", "records", "previous_sha256", "schema_sha256", "changed")
        fields = check_object(payload, where, common, ("changes", "rewinds"))
        if fields["changed"] is True and not {"changes", "rewinds"} <= set(fields):
            raise EvidenceError(f"{where} of a changed schema needs its changes and rewinds")
        if fields["changed"] is not True and {"changes", "rewinds"} & set(fields):
            # One encoding per entry: to_payload never writes them for an unchanged schema.
            raise EvidenceError(f"{where} of an unchanged schema names no changes or rewinds")
        changes = tuple(check_list(fields.get("changes", []), f"{where}.changes"))
        rewinds = tuple(PlannedRewind.from_payload(item) for item in check_list(fields.get("rewinds", []), where))
        return cls(**{name: fields[name] for name in common}, changes=changes, rewinds=rewinds)


@dataclass(frozen=True)
class RequestCompleted(_Entry):
    """The request's outcome, its times, and per shard the final checkpoint after retraining."""

    KIND: ClassVar[EntryKind] = EntryKind.REQUEST_COMPLETED
    request_id: str
    run_id: str
    subject_key: str
    outcome: Outcome
    records_erased: int
    received_at: str
    deadline: str
    completed_at: str
    deadline_met: bool
    checkpoints_after: Mapping[int, str] = field(default_factory=dict)
    """Per retrained shard, its last slice's checkpoint; empty when no data was held."""

    def __post_init__(self) -> None:
        where = self.KIND.value
        _check_all(self, {"request_id": check_id, "run_id": check_id, "subject_key": check_hex64,
                          "records_erased": check_int, "received_at": check_time, "deadline": check_time,
                          "completed_at": check_time, "deadline_met": check_bool})  # fmt: skip
        if type(self.outcome) is not Outcome:
            raise EvidenceError(f"{where}.outcome must be one of {', '.join(Outcome)}")
        for shard, digest in self.checkpoints_after.items():
            check_int(shard, f"{where}.checkpoints_after key")
            check_hex64(digest, f"{where}.checkpoints_after.{shard}")

    def to_payload(self) -> dict[str, Any]:
        """The payload as logged: `outcome` as its value, `checkpoints_after` keyed by decimal shard, in order."""
        return {"request_id": self.request_id, "run_id": self.run_id, "subject_key": self.subject_key,
                "outcome": self.outcome.value, "records_erased": self.records_erased,
                "received_at": self.received_at, "deadline": self.deadline, "completed_at": self.completed_at,
                "deadline_met": self.deadline_met,
                "checkpoints_after": {str(s): d for s, d in sorted(self.checkpoints_after.items())}}  # fmt: skip

    @classmethod
    def from_payload(cls, payload: object) -> Self:
        """Read back strictly: `outcome` one of `Outcome`, at most `MAX_LIST` shards each with a digest.

        Raises `EvidenceError` naming the field.
        """
        where = cls.KIND.value
        fields = check_object(payload, where, ("request_id", "run_id", "subject_key", "outcome", "records_erased",
                                               "received_at", "deadline", "completed_at", "deadline_met",
                                               "checkpoints_after"))  # fmt: skip
        outcome = fields["outcome"]
        if type(outcome) is not str or outcome not in set(Outcome):
            raise EvidenceError(f"{where}.outcome must be one of {', '.join(Outcome)}")
        after = _string_map(fields["checkpoints_after"], f"{where}.checkpoints_after")
        if len(after) > MAX_LIST:
            raise EvidenceError(f"{where}.checkpoints_after has more than {MAX_LIST} shards")
        parsed = {_shard_key(k, f"{where}.checkpoints_after"): v for k, v in after.items()}
        return cls(**{**fields, "outcome": Outcome(outcome), "checkpoints_after": parsed})


@dataclass(frozen=True)
class RequestCertified(_Entry):
    """The certificate issued for the request: its file's sha256."""

    KIND: ClassVar[EntryKind] = EntryKind.REQUEST_CERTIFIED
    request_id: str
    certificate_sha256: str

    def __post_init__(self) -> None:
        _check_all(self, {"request_id": check_id, "certificate_sha256": check_hex64})

    def to_payload(self) -> dict[str, Any]:
        """The request and its certificate file's sha256, as logged."""
        return {"request_id": self.request_id, "certificate_sha256": self.certificate_sha256}

    @classmethod
    def from_payload(cls, payload: object) -> Self:
        """Read back strictly: exactly the two fields; raises `EvidenceError` naming the field."""
        return cls(**check_object(payload, cls.KIND.value, ("request_id", "certificate_sha256")))


Payload: TypeAlias = (
    RequestReceived
    | RequestQuarantined
    | RequestExtended
    | RequestStarted
    | ErasurePlanned
    | CheckpointsPurged
    | SliceManifest
    | CheckpointRecorded
    | ErasureRetrained
    | SchemaRederived
    | RequestCompleted
    | RequestCertified
)

PAYLOAD_TYPES: Mapping[EntryKind, type[Payload]] = {
    t.KIND: t
    for t in (RequestReceived, RequestQuarantined, RequestExtended, RequestStarted, ErasurePlanned, CheckpointsPurged,
              SliceManifest, CheckpointRecorded, ErasureRetrained, SchemaRederived, RequestCompleted, RequestCertified)
}  # fmt: skip
"""The kinds with a typed payload (`workspace.initialized` and `data.ingested` have none yet: no
certificate claim rests on them)."""


def parse_payload(kind: str, payload: object) -> Payload:
    """The typed payload of an entry of `kind`; raises `EvidenceError` for an unknown kind or a bad payload."""
    try:
        entry_kind = EntryKind(kind)
    except ValueError:
        raise EvidenceError(f"{_shown(kind)} is not a kind of ledger entry") from None
    payload_type = PAYLOAD_TYPES.get(entry_kind)
    if payload_type is None:
        raise EvidenceError(f"{entry_kind.value} entries carry no typed payload")
    return payload_type.from_payload(payload)


@dataclass(frozen=True)
class DecodedEntry:
    """An entry read back from its exact bytes: `{v, index, kind, time, payload}` (RFC 8785)."""

    index: int
    kind: EntryKind
    time: str
    payload: Payload


def decode_entry(data: bytes) -> DecodedEntry:
    """Read an entry's bytes strictly (format 1, exact keys, a known kind, a typed payload)."""
    value = check_object(loads_strict(data), "the entry", ("v", "index", "kind", "time", "payload"))
    if type(value["v"]) is not int or value["v"] != ENTRY_FORMAT:
        raise EvidenceError(f"the entry is not of format {ENTRY_FORMAT}")
    index = check_int(value["index"], "the entry's index")
    time = check_str(value["time"], "the entry's time", _ENTRY_TIME, 40)
    payload = parse_payload(check_str(value["kind"], "the entry's kind", limit=64), value["payload"])
    return DecodedEntry(index, payload.KIND, time, payload)
