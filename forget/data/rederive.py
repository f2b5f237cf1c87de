"""After an erasure, the schema is derived again from the retained records (DESIGN invariant 9).

`forget run` calls `rederive_after_erasure` once the erased records are gone and before it
retrains. The stored features decode exactly to what the rule of forget.data.schema reads (one-hot
slots, class indices, and numbers divided by a power of two), so the re-derived schema is the one
a fresh workspace would infer from the retained data, bit for bit, with no copy of raw values.

1. forget.toml's schema must be the one the records were encoded with: the digest of the latest
   `data.ingested` or `schema.rederived` entry. A schema a killed step left pending is installed
   (or dropped); anything else stops the run before it retrains (exit 3).
2. Unchanged (the usual case): a `schema.rederived` entry with its digest and `changed: false`.
3. Changed: the new schema is written to a pending file; then, in one transaction, every retained
   record is re-encoded (for files without an id column its content key, hence its place, follow
   the new bytes), every checkpoint is dropped, and `schema.rederived` (`changed: true`, what
   changed by column and count, the rewinds) is logged with every slice manifest; then forget.toml
   takes the new schema, the pending file goes, and the dropped checkpoint files are deleted.
   The run then retrains every shard: the schema is shared by all of them.

A killed step resumes on the next `forget run` (its requests are still running): step 1 installs
the committed schema, and the check then finds it unchanged.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import tomli_w

from forget.data.schema import (
    ColumnKind,
    ColumnValues,
    RuleCounts,
    Schema,
    decode_numbers,
    derive_from_counts,
    encode_numbers,
    record_content,
    schema_changes,
)
from forget.data.statistics import RECORDS_KEY, encoded_counts, keep_counts, kept_counts, rule_counts
from forget.errors import InputError, WorkspaceError
from forget.store.checkpoints import purge_unreferenced
from forget.store.interface import StoredRecord
from forget.subjects.pseudonym import RecordKey, SubjectKey
from forget.training.lineage import INGESTED, slice_manifests
from forget.workspace.core import Workspace
from ledger.evidence import EntryKind, PlannedRewind, SchemaRederived
from sisa.placement import place
from sisa.store import write_atomically

SCHEMA_REDERIVED = EntryKind.SCHEMA_REDERIVED.value
PENDING_NAME = ".schema-pending.toml"
"""The schema a change is installing, until forget.toml holds it (removed once it does)."""


class SchemaRuleError(WorkspaceError):
    """The retained data cannot support a schema under the rule (for example, one label class left)."""


@dataclass(frozen=True)
class SchemaCheck:
    """What `rederive_after_erasure` found: whether the rule gives another schema on the retained
    records, the two digests, how many records it read, and the changes by column (never a value).
    """

    changed: bool
    schema_sha256: str
    previous_sha256: str
    records: int
    changes: tuple[str, ...] = field(default_factory=tuple)
    """What changed, by column and count (never a value)."""

    def to_dict(self) -> dict[str, Any]:
        """The check as JSON-ready values."""
        return {
            "changed": self.changed,
            "schema_sha256": self.schema_sha256,
            "previous_sha256": self.previous_sha256,
            "records": self.records,
            "changes": list(self.changes),
        }


def schema_digest(schema: Schema) -> str:
    """sha256 of the schema's canonical JSON (RFC 8785): what the ledger records of a schema."""
    return schema.sha256


@dataclass(frozen=True)
class _Retained:
    record_keys: list[str]
    subject_keys: list[str]
    labels: np.ndarray[Any, np.dtype[np.int64]]
    features: np.ndarray[Any, np.dtype[np.float32]]


def _read_retained(workspace: Workspace, schema: Schema) -> _Retained:
    width = schema.width
    keys: list[str] = []
    subjects: list[str] = []
    labels: list[int] = []
    blobs: list[bytes] = []
    store = workspace.datastore
    with store.snapshot() as tx:
        for record in store.iter_records(tx):
            if len(record.features) != 4 * width:
                raise WorkspaceError(
                    f"a stored record holds {len(record.features) // 4} features where the schema in forget.toml"
                    f" has {width}: the schema is not the one the records were encoded with"
                )
            keys.append(record.record_key)
            subjects.append(record.subject_key)
            labels.append(record.label)
            blobs.append(record.features)
    features = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(keys), width)
    return _Retained(keys, subjects, np.asarray(labels, dtype=np.int64), features)


def _decode(schema: Schema, retained: _Retained) -> tuple[ColumnValues, dict[str, np.ndarray[Any, Any]]]:
    """What the rule reads, from the stored encoding; with each categorical column's slot per row."""
    numbers = {}
    texts: dict[str, list[str | None]] = {}
    slots: dict[str, np.ndarray[Any, Any]] = {}
    offset = 0
    for column in schema.features:
        block = retained.features[:, offset : offset + column.width]
        offset += column.width
        if column.kind is ColumnKind.NUMERIC:
            if not column.declared:
                numbers[column.name] = decode_numbers(column, block[:, 0])
            continue
        slot = block.argmax(axis=1) if len(block) else np.zeros(0, dtype=np.int64)
        if not (np.count_nonzero(block, axis=1) == 1).all() or not (block[np.arange(len(block)), slot] == 1.0).all():
            raise WorkspaceError(f"stored records are not one-hot in column {column.name!r}: the store does not match")
        slots[column.name] = slot
        if not column.declared:
            names: list[str | None] = [*column.categories, None]
            texts[column.name] = [names[s] for s in slot.tolist()]
    if retained.labels.size and (retained.labels.min() < 0 or retained.labels.max() >= len(schema.labels)):
        raise WorkspaceError("a stored record's class is not one of the schema's labels: the store does not match")
    other = schema.other_label
    label_names = [None if i == other else schema.labels[i] for i in range(len(schema.labels))]
    data = ColumnValues(
        subjects=retained.subject_keys,
        labels=[label_names[i] for i in retained.labels.tolist()],
        numbers=numbers,
        texts=texts,
    )
    return data, slots


def derive_retained_schema(workspace: Workspace) -> Schema:
    """The schema the rule makes of the records the workspace holds now (read in full)."""
    schema = _current(workspace)
    retained = _read_retained(workspace, schema)
    return _derive(workspace, schema, _decode(schema, retained)[0].counts())


def _derive(workspace: Workspace, schema: Schema, counts: RuleCounts) -> Schema:
    try:
        return derive_from_counts(schema, counts, workspace.config.min_subjects)
    except InputError as error:  # one class left, or an image shape the new width no longer fills
        raise SchemaRuleError(
            f"the retained records cannot keep a schema: {error}; the erasure itself is done, but the models"
            " cannot be retrained until this is resolved"
        ) from None


def _current(workspace: Workspace) -> Schema:
    schema = workspace.config.schema
    if schema is None:
        raise WorkspaceError("the workspace has no schema: nothing was ingested")
    return schema


def rederive_after_erasure(workspace: Workspace, run_id: str | None = None) -> SchemaCheck:
    """Re-derive the schema from the retained records and log it; re-encode everything if it changed.

    Call it after the erased records are deleted and before retraining (under the job lock): on a
    change every checkpoint is dropped, so the retraining that follows covers every shard. The
    rule reads the counts the data store keeps (forget.data.statistics), not the records; only a
    change, or a store without counts, reads every record (and a change is decided on them).

    Raises `WorkspaceError` (exit 3) before anything was ingested, or when forget.toml's schema is
    not the one the ledger logged; `SchemaRuleError` (exit 3) when the retained data supports no
    schema under the rule (one label class left).
    """
    if workspace.config.schema is None:
        raise WorkspaceError("the workspace has no schema: nothing was ingested")
    _sync_with_ledger(workspace)
    schema = _current(workspace)
    store = workspace.datastore
    with store.snapshot() as tx:
        counts = kept_counts(store, tx, schema)
    retained = None
    if counts is None:
        retained = _read_retained(workspace, schema)
        counts = encoded_counts(schema, retained.subject_keys, retained.labels, retained.features)
    new = _derive(workspace, schema, rule_counts(schema, counts))
    before, after = schema_digest(schema), schema_digest(new)
    if after == before:
        records = counts[RECORDS_KEY]
        with store.transaction() as tx:
            if retained is not None:
                keep_counts(store, tx, schema, counts)
            workspace.ledger.append(tx, [_entry(workspace, run_id, new, records, before, after).entry()])
        return SchemaCheck(False, after, before, records)
    # A change retrains every shard: decide it on the records themselves, never on the counts alone.
    if retained is None:
        retained = _read_retained(workspace, schema)
    data, slots = _decode(schema, retained)
    new = _derive(workspace, schema, data.counts())
    after = schema_digest(new)
    records = len(retained.record_keys)
    entry = _entry(workspace, run_id, new, records, before, after)
    if after == before:  # the kept counts were not the records': count them again
        with store.transaction() as tx:
            keep_counts(store, tx, schema, encoded_counts(schema, retained.subject_keys, retained.labels,
                                                          retained.features))  # fmt: skip
            workspace.ledger.append(tx, [entry.entry()])
        return SchemaCheck(False, after, before, records)
    changes = tuple(schema_changes(schema, new))
    _install(workspace, schema, new, retained, data, slots, replace(entry, changes=changes))
    return SchemaCheck(True, after, before, records, changes)


def _entry(
    workspace: Workspace, run_id: str | None, new: Schema, records: int, before: str, after: str
) -> SchemaRederived:
    return SchemaRederived(
        run_id=run_id,
        rule=new.to_dict()["rule"],
        min_subjects=workspace.config.min_subjects,
        records=records,
        previous_sha256=before,
        schema_sha256=after,
        changed=after != before,
    )


def _reencode(
    old: Schema, new: Schema, retained: _Retained, data: ColumnValues, slots: dict[str, np.ndarray[Any, Any]]
) -> tuple[np.ndarray[Any, np.dtype[np.float32]], list[int]]:
    count = len(retained.record_keys)
    blocks = []
    offset = 0
    for before, after in zip(old.features, new.features, strict=True):
        block = retained.features[:, offset : offset + before.width]
        offset += before.width
        if after == before:
            blocks.append(block)
        elif after.kind is ColumnKind.NUMERIC:
            blocks.append(encode_numbers(after, data.numbers[after.name])[:, None])
        else:
            index = {category: i for i, category in enumerate(after.categories)}
            names = [*before.categories, None]
            positions = [after.other_slot if names[s] is None else index.get(names[s], after.other_slot)
                         for s in slots[after.name].tolist()]  # fmt: skip
            onehot = np.zeros((count, after.width), dtype=np.float32)
            onehot[np.arange(count), positions] = 1.0
            blocks.append(onehot)
    features = np.ascontiguousarray(np.concatenate(blocks, axis=1) if blocks else retained.features, np.float32)
    classes = []
    for label in data.labels:
        class_index = new.class_of(label) if label is not None else new.other_label
        assert class_index is not None, "the rule gives (other) to a schema with a row in it"
        classes.append(class_index)
    return features, classes


def _install(
    workspace: Workspace,
    old: Schema,
    new: Schema,
    retained: _Retained,
    data: ColumnValues,
    slots: dict[str, np.ndarray[Any, Any]],
    payload: SchemaRederived,
) -> None:
    config = workspace.config
    store = workspace.datastore
    features, classes = _reencode(old, new, retained, data, slots)
    pseudo = workspace.pseudonymiser
    rows = []
    seen: Counter[tuple[str, bytes]] = Counter()
    for i, (key, subject) in enumerate(zip(retained.record_keys, retained.subject_keys, strict=True)):
        record_key = RecordKey(key)
        if new.id_column is None:
            content = record_content(features[i], classes[i])
            occurrence = seen[(subject, content)]
            seen[(subject, content)] += 1
            record_key = pseudo.record_from_content(SubjectKey(subject), content, occurrence)
        where = place(
            record_key,
            subject,
            seed=config.seed,
            shards=config.shards,
            slices=config.slices,
            mode=config.placement,
        )
        rows.append(StoredRecord(record_key, subject, where.shard, where.slice, classes[i], features[i].tobytes()))

    _write_pending(workspace, new)
    last = config.slices - 1
    stale: list[str] = []
    with store.transaction() as tx:
        before = store.checkpoint_map(tx)
        store.delete_records(tx, retained.record_keys)
        store.insert_records(tx, rows)
        labels = np.asarray(classes, dtype=np.int64)
        keep_counts(store, tx, new, encoded_counts(new, retained.subject_keys, labels, features))
        rewinds = []
        for shard in range(config.shards):
            dropped = store.drop_checkpoints(tx, shard, 0)
            stale.extend(dropped)
            rewinds.append(PlannedRewind(shard, 0, None, before.get((shard, last)), tuple(sorted(set(dropped)))))
        entry = replace(payload, rewinds=tuple(rewinds))
        every_slice = ((shard, slice_) for shard in range(config.shards) for slice_ in range(config.slices))
        workspace.ledger.append(tx, [entry.entry(), *slice_manifests(workspace, tx, every_slice)])
    workspace.save_config(config.with_schema(new))
    _pending_path(workspace).unlink(missing_ok=True)
    purge_unreferenced(workspace, stale)


# -- forget.toml against the ledger -----------------------------------------------------------


def _pending_path(workspace: Workspace) -> Any:
    return workspace.root / PENDING_NAME


def _write_pending(workspace: Workspace, schema: Schema) -> None:
    text = "# A schema forget run is installing; it is removed once forget.toml holds it.\n"
    write_atomically(_pending_path(workspace), (text + tomli_w.dumps({"schema": schema.to_dict()})).encode())


def _read_pending(workspace: Workspace) -> Schema | None:
    path = _pending_path(workspace)
    if not path.exists():
        return None
    try:
        return Schema.from_dict(tomllib.loads(path.read_text())["schema"])
    except (OSError, KeyError, tomllib.TOMLDecodeError, InputError):
        return None


def logged_schema_digest(workspace: Workspace) -> tuple[int, str] | None:
    """(index, sha256) of the schema the latest ingest or re-derivation logged, if any."""
    latest: tuple[int, str] | None = None
    with workspace.datastore.snapshot() as tx:
        for kind in (INGESTED, SCHEMA_REDERIVED):
            for entry in workspace.ledger.entries(tx, kind=kind):
                digest = entry.payload.get("schema_sha256")
                if isinstance(digest, str) and (latest is None or entry.index > latest[0]):
                    latest = (entry.index, digest)
    return latest


def _sync_with_ledger(workspace: Workspace) -> None:
    """forget.toml's schema must be the one the records were encoded with, as the ledger says."""
    logged = logged_schema_digest(workspace)
    schema = _current(workspace)
    pending = _read_pending(workspace)
    if logged is None or logged[1] == schema_digest(schema):
        _pending_path(workspace).unlink(missing_ok=True)  # a change that never committed
        return
    if pending is not None and schema_digest(pending) == logged[1]:
        workspace.save_config(workspace.config.with_schema(pending))  # committed, killed before forget.toml
        _pending_path(workspace).unlink(missing_ok=True)
        return
    raise WorkspaceError(
        f"forget.toml's [schema] (sha256 {schema_digest(schema)[:12]}) is not the schema the stored records were"
        f" encoded with (ledger entry {logged[0]}, sha256 {logged[1][:12]}): restore it; the schema is not edited"
        " by hand once data is in"
    )
