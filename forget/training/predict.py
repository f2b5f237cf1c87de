"""Predicting and evaluating with the ensemble of the shards' latest models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from forget.data.ingest import encode, encode_labels, read_table
from forget.data.schema import Schema
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
    labels: tuple[str, ...]
    """Class names, in the schema's order."""
    predicted: np.ndarray[Any, np.dtype[np.int64]]
    probabilities: np.ndarray[Any, np.dtype[np.float32]]
    """Per shard: (shards, rows, classes)."""


def _schema(workspace: Workspace) -> Schema:
    if workspace.config.schema is None:
        raise NotTrainedError("the workspace has no data yet: run `forget ingest FILE` first")
    return workspace.config.schema


def latest_digests(workspace: Workspace) -> list[str]:
    """Each shard's checkpoint after its last slice, as the ledger records it (else exit 1)."""
    last = workspace.config.slices - 1
    existing = current_checkpoints(workspace, [(s, last) for s in range(workspace.config.shards)])
    missing = [s for s in range(workspace.config.shards) if (s, last) not in existing]
    if missing:
        raise NotTrainedError(
            f"shard {missing[0]} is not trained to its last slice (an erasure may be retraining it):"
            " wait for `forget run` to finish, or run `forget train`"
        )
    return [existing[(s, last)] for s in range(workspace.config.shards)]


def shard_probabilities(
    workspace: Workspace, features: np.ndarray[Any, np.dtype[np.float32]], device: str = "auto"
) -> np.ndarray[Any, np.dtype[np.float32]]:
    schema = _schema(workspace)
    torch_device = resolve_device(device)
    config = training_config(workspace)
    store = checkpoint_store(workspace)
    out = []
    last = workspace.config.slices - 1
    for shard, digest in enumerate(latest_digests(workspace)):
        data = read_checkpoint(store, shard, last, digest)
        model = load_model(data, config, shard, schema.shape, len(schema.labels))
        out.append(predict_proba(model, features, torch_device))
    return np.stack(out)


def encode_file(workspace: Workspace, path: Path, need_labels: bool) -> tuple[np.ndarray[Any, Any], list[int] | None]:
    schema = _schema(workspace)
    table = read_table(path, [schema.label_column])
    missing = [f.name for f in schema.features if f.name not in table.column_names]
    if missing:
        raise InputError(f"{path} has no column {missing[0]!r}, which the schema needs")
    features = encode(table, schema, path).reshape(-1, *schema.shape)
    if schema.label_column not in table.column_names:
        if need_labels:
            raise InputError(f"{path} has no label column {schema.label_column!r} to evaluate against")
        return features, None
    return features, encode_labels(table, schema, path)


def predict_file(workspace: Workspace, path: Path, aggregation: Aggregation, device: str = "auto") -> Predictions:
    features, _ = encode_file(workspace, path, need_labels=False)
    probabilities = shard_probabilities(workspace, features, device)
    return Predictions(_schema(workspace).labels, aggregate(probabilities, aggregation), probabilities)
