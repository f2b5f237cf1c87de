"""Predicting and evaluating with the ensemble of the shards' latest models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from forget.data.ingest import TableSource, encode, encode_labels, open_source
from forget.data.schema import Schema
from forget.erasure.quarantine import serving_shards
from forget.errors import InputError, NotTrainedError
from forget.store.checkpoints import checkpoint_store
from forget.training.train import training_config
from forget.training.trust import current_checkpoints, read_checkpoint
from forget.workspace.core import Workspace
from sisa.aggregation import Aggregation, aggregate, predict_proba
from sisa.device import resolve_device
from sisa.trainer import load_model


@dataclass(frozen=True)
class Predictions:
    """The ensemble's predicted class of each row (an index into `labels`) and every shard's probabilities."""

    labels: tuple[str, ...]
    """Class names, in the schema's order."""
    predicted: np.ndarray[Any, np.dtype[np.int64]]
    probabilities: np.ndarray[Any, np.dtype[np.float32]]
    """Per answering shard: (shards, rows, classes)."""
    shards: tuple[int, ...] = ()
    """The shards that answered: all but those quarantined by open erasure requests (forget.erasure.quarantine)."""


def _schema(workspace: Workspace) -> Schema:
    if workspace.config.schema is None:
        raise NotTrainedError("the workspace has no data yet: run `forget ingest FILE` first")
    return workspace.config.schema


def latest_digests(workspace: Workspace) -> list[str]:
    """Each shard's checkpoint after its last slice, as the ledger records it.

    Raises `NotTrainedError` (exit 3) while a shard is not trained to its last slice, and
    `CheckpointLineageError` (exit 1) for a checkpoints row the ledger does not back.
    """
    last = workspace.config.slices - 1
    existing = current_checkpoints(workspace, [(s, last) for s in range(workspace.config.shards)])
    missing = [s for s in range(workspace.config.shards) if (s, last) not in existing]
    if missing:
        raise NotTrainedError(
            f"shard {missing[0]} is not trained to its last slice (an erasure may be retraining it):"
            " wait for `forget run` to finish, or run `forget train`"
        )
    return [existing[(s, last)] for s in range(workspace.config.shards)]


def serving_digests(workspace: Workspace) -> dict[int, str]:
    """The last checkpoint of each shard that may answer: every shard but the quarantined ones.

    Raises `AllShardsQuarantinedError` (exit 3) when open requests quarantine every shard,
    `NotTrainedError` (exit 3) for a shard that may answer but is not trained to its last slice,
    and `CheckpointLineageError` (exit 1) for any shard's row the ledger does not back.
    """
    last = workspace.config.slices - 1
    # Every shard's row is checked against the ledger, the quarantined ones too and before the
    # quarantine is consulted: a tampered table is refused (exit 1) whether or not the shard it
    # names answers now, even when open requests leave no shard to answer.
    existing = current_checkpoints(workspace, [(s, last) for s in range(workspace.config.shards)])
    shards = serving_shards(workspace)
    missing = [s for s in shards if (s, last) not in existing]
    if missing:
        raise NotTrainedError(
            f"shard {missing[0]} is not trained to its last slice (an erasure may be retraining it):"
            " wait for `forget run` to finish, or run `forget train`"
        )
    return {s: existing[(s, last)] for s in shards}


def shard_probabilities(
    workspace: Workspace, features: np.ndarray[Any, np.dtype[np.float32]], device: str = "auto"
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Every shard's class probabilities for encoded `features`: shape (shards, rows, classes).

    Each checkpoint is checked against its ledger digest before it is loaded. Raises
    `NotTrainedError` (exit 3) before data is in or while a shard is not trained to its last
    slice, `CheckpointLineageError` (exit 1) for a checkpoint the ledger does not back or a file
    that is not its digest; a missing file or a device that is not there raises a
    `sisa.errors.SisaError` (`forget.errors.translated()` makes it a `WorkspaceError`).
    Shards quarantined by open erasure requests are left out (`serving_digests`).
    """
    return shard_answers(workspace, features, device).probabilities


@dataclass(frozen=True)
class ShardAnswers:
    """Which shards answered, with which checkpoints, and their probabilities (shards, rows, classes)."""

    shards: tuple[int, ...]
    digests: tuple[str, ...]
    """Each answering shard's last checkpoint, as the ledger records it."""
    probabilities: np.ndarray[Any, np.dtype[np.float32]]


def shard_answers(
    workspace: Workspace, features: np.ndarray[Any, np.dtype[np.float32]], device: str = "auto"
) -> ShardAnswers:
    """`shard_probabilities`, with the shards that answered and their checkpoints: every shard but
    those quarantined by open erasure requests. Raises what `shard_probabilities` raises."""
    schema = _schema(workspace)
    torch_device = resolve_device(device)
    config = training_config(workspace)
    store = checkpoint_store(workspace)
    out = []
    last = workspace.config.slices - 1
    digests = serving_digests(workspace)
    for shard, digest in digests.items():
        data = read_checkpoint(store, shard, last, digest)
        model = load_model(data, config, shard, schema.shape, len(schema.labels))
        out.append(predict_proba(model, features, torch_device))
    return ShardAnswers(tuple(digests), tuple(digests.values()), np.stack(out))


def encode_file(
    workspace: Workspace, path: TableSource, need_labels: bool
) -> tuple[np.ndarray[Any, Any], list[int] | None]:
    """The rows of a file or table (`forget.data.ingest.TableSource`) encoded by the workspace's schema,
    with their class indexes when the label column is there (extra columns are ignored).

    Raises `NotTrainedError` (exit 3) before data is in, `InputError` (exit 2) for rows the schema
    cannot encode, a missing feature column, or (with `need_labels`) a missing label column.
    """
    schema = _schema(workspace)
    table, name = open_source(path, [schema.label_column])
    missing = [f.name for f in schema.features if f.name not in table.column_names]
    if missing:
        raise InputError(f"{name} has no column {missing[0]!r}, which the schema needs")
    features = encode(table, schema, name).reshape(-1, *schema.shape)
    if schema.label_column not in table.column_names:
        if need_labels:
            raise InputError(f"{name} has no label column {schema.label_column!r} to evaluate against")
        return features, None
    return features, encode_labels(table, schema, name)


def predict_file(
    workspace: Workspace, path: TableSource, aggregation: Aggregation | None = None, device: str = "auto"
) -> Predictions:
    """Predict the rows of a file (str or Path), a pyarrow Table or a pandas DataFrame with the
    ensemble of the shards' latest models, combined by `aggregation` (default: the workspace's).

    Raises what `encode_file` and `shard_probabilities` raise: `InputError` (exit 2) for rows the
    schema cannot encode, `NotTrainedError` (exit 3) while a shard is not fully trained.
    """
    if aggregation is None:
        aggregation = Aggregation(workspace.config.training.aggregation)
    features, _ = encode_file(workspace, path, need_labels=False)
    answers = shard_answers(workspace, features, device)
    return Predictions(
        _schema(workspace).labels, aggregate(answers.probabilities, aggregation), answers.probabilities, answers.shards
    )
