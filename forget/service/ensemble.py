"""The models a server keeps in memory, and the rules that keep them exact.

A shard's model answers only while the ledger still names it as that shard's last checkpoint,
and while no open erasure request quarantines it (forget.erasure.quarantine). Before every
prediction the server compares the log's size with the one it loaded at (one indexed query);
when the log grew, it re-reads the quarantined shards and the shards' checkpoints, drops every
model that is quarantined or that the lineage no longer names, and loads only the shards whose
checkpoint changed. So a model that saw a subject's records stops answering the moment the
subject's request commits, and a retrained one answers from the moment its request completes,
whichever process filed or ran it. Meanwhile the ensemble answers from the other shards; with
every shard quarantined it answers nothing (`AllShardsQuarantinedError`, 503).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from forget.audit.ledger_view import ledger_size
from forget.data.ingest import encode
from forget.data.schema import ColumnKind, Schema, canonical_numbers, first_out_of_range
from forget.erasure.quarantine import AllShardsQuarantinedError, quarantined_shards
from forget.errors import InputError, NotTrainedError
from forget.store.checkpoints import checkpoint_store
from forget.training.train import training_config
from forget.training.trust import current_checkpoints, read_checkpoint
from forget.workspace.config import read_config
from forget.workspace.core import Workspace


@dataclass(frozen=True)
class _Loaded:
    log_size: int
    digests: dict[int, str]
    models: dict[int, Any]
    quarantined: frozenset[int] = frozenset()
    schema: Schema | None = None
    """The schema the models were trained on: rows are encoded with it, never with an older one."""


@dataclass(frozen=True)
class EnsembleAnswer:
    labels: list[str]
    """The predicted class of each row."""
    shards: list[int]
    """The shards that answered: all but the quarantined ones and any without a last checkpoint."""


class ServedEnsemble:
    """The shards' models, loaded once and swapped shard by shard as the ledger changes (see above).

    Thread-safe: one thread reloads at a time while the others wait for it, so no call is
    answered by a model the ledger has just quarantined, and none is dropped.
    """

    def __init__(self, workspace: Workspace, device: str = "cpu") -> None:
        """Loads nothing yet (the first `refresh` does); raises `SisaError` for a device that is not there."""
        from sisa.device import resolve_device

        self.workspace = workspace
        self.device = resolve_device(device)
        self._loaded = _Loaded(-1, {}, {})
        self._lock = threading.Lock()
        self._config_stamp: tuple[int, int] | None = None

    def _log_size(self) -> int:
        return ledger_size(self.workspace)

    @property
    def quarantined(self) -> frozenset[int]:
        """The shards the last refresh left out as quarantined; raises nothing."""
        return self._loaded.quarantined

    def refresh(self) -> _Loaded:
        """The models that may answer now (reloading only the shards whose checkpoint changed).

        Raises `NotTrainedError` before data is in, `CheckpointLineageError` for a checkpoint the
        ledger does not back, and `UnreadableEntryError` for a ledger entry that is not JSON.
        """
        from sisa.trainer import load_model

        size = self._log_size()
        current = self._loaded
        if size == current.log_size:
            return current
        with self._lock:
            current = self._loaded
            if size == current.log_size:
                return current
            ws = self.workspace
            # Another process (a cron `forget run`) may have re-derived the schema: forget.toml is
            # written before any shard retrains on it, so the file read after the log grew is at
            # least as new as every checkpoint the ledger names now.
            stat = ws.config_path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._config_stamp:  # parsing a wide schema costs ~30 ms: only when it changed
                fresh = read_config(ws.config_path)
                if fresh != ws.config:
                    ws.config = fresh
                self._config_stamp = stamp
            schema = ws.config.schema
            if schema is None:
                raise NotTrainedError("the workspace has no data yet: run `forget ingest FILE` first")
            last = ws.config.slices - 1
            quarantined = quarantined_shards(ws)
            # Every shard's row is checked against the ledger, the quarantined ones too.
            named = current_checkpoints(ws, [(s, last) for s in range(ws.config.shards)])
            digests = {shard: digest for (shard, _), digest in named.items() if shard not in quarantined}
            kept = current.models if current.schema == schema else {}
            models = {s: m for s, m in kept.items() if current.digests.get(s) == digests.get(s)}
            store = checkpoint_store(ws)
            config = training_config(ws)
            for shard, digest in digests.items():
                if shard not in models:
                    data = read_checkpoint(store, shard, last, digest)
                    model = load_model(data, config, shard, schema.shape, len(schema.labels))
                    model.eval()
                    models[shard] = model.to(self.device)
            self._loaded = _Loaded(size, digests, models, quarantined, schema)
            return self._loaded

    def predict(self, rows: list[dict[str, Any]]) -> EnsembleAnswer:
        """The aggregated class of each row, from the shards that may answer now.

        Raises `InputError` for rows the schema cannot encode, `AllShardsQuarantinedError` when
        every shard is quarantined, `NotTrainedError` when no shard that may answer is trained.
        """
        from sisa.aggregation import Aggregation, aggregate

        loaded = self.refresh()
        if not loaded.models:
            if len(loaded.quarantined) >= self.workspace.config.shards:
                raise AllShardsQuarantinedError(
                    "every shard is quarantined by an open erasure request: no model may answer until they are"
                    " retrained"
                )
            raise NotTrainedError("no shard is trained to its last slice yet")
        schema = loaded.schema
        assert schema is not None
        names = [f.name for f in schema.features]
        missing = sorted({n for row in rows for n in names if n not in row})
        if missing:
            raise InputError(f"a row has no field {missing[0]!r}, which the schema needs")
        features = numeric_rows(rows, schema)
        if features is None:  # a category, or a value the fast path leaves to encode's checks and messages
            try:
                table = pa.Table.from_pylist([{n: row[n] for n in names} for row in rows])
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                raise InputError("the rows' values do not have one type per field") from None
            features = encode(table, schema, "the request")
        features = features.reshape(-1, *schema.shape)
        shards = sorted(loaded.models)
        probabilities = np.stack([_probabilities(loaded.models[s], features, self.device) for s in shards])
        chosen = aggregate(probabilities, Aggregation(self.workspace.config.training.aggregation))
        return EnsembleAnswer([schema.labels[int(i)] for i in chosen], shards)


PREDICT_BATCH = 4096
"""`sisa.aggregation.predict_proba`'s batch size: the same batches give the same bits (a test holds them equal)."""


def _probabilities(model: Any, features: np.ndarray[Any, Any], device: Any) -> np.ndarray[Any, Any]:
    """`sisa.aggregation.predict_proba` for a model already in eval mode on `device` (`refresh` put it there).

    The same batches and operations, so the same bits, without moving and re-flagging every module on
    every call (a third of a one-row prediction's time at 20 shards).
    """
    import torch

    chunks = []
    with torch.inference_mode():
        for start in range(0, features.shape[0], PREDICT_BATCH):
            x = torch.from_numpy(features[start : start + PREDICT_BATCH]).to(device)
            chunks.append(torch.softmax(model(x), dim=1).cpu().numpy())
    return np.concatenate(chunks).astype(np.float32)


EXACT_INTEGER = 2**53
"""Integers up to this magnitude are exact in float64 (Arrow's safe cast refuses the rest)."""


def numeric_rows(rows: list[dict[str, Any]], schema: Schema) -> np.ndarray[Any, np.dtype[np.float32]] | None:
    """`forget.data.ingest.encode` of a few rows of plain numbers, in one array operation; None otherwise.

    `encode` works column by column (an Arrow cast and three checks per column: 13 ms for one row of
    600 features), which suits a file of many rows, not a prediction of one. For a schema of numeric
    columns only and rows of finite `int`/`float` values within range, this computes the same
    float32 values with the same functions (canonical_numbers, then the scale; or the declared
    centre and scale), column-wise identical arithmetic, in one pass. Anything else (a category, a
    bool, None, a string, an integer beyond 2^53, a value that is not finite or out of range) gives
    None, and the caller takes `encode`'s path, which refuses it with its own message or encodes it.
    Every row must hold every feature (the caller checks). Raises nothing.
    """
    columns = schema.features
    if any(column.kind is not ColumnKind.NUMERIC for column in columns):
        return None
    names = [column.name for column in columns]
    values = [row[name] for row in rows for name in names]
    for value in values:
        kind = type(value)
        if kind is not float and not (kind is int and -EXACT_INTEGER <= value <= EXACT_INTEGER):
            return None
    matrix = np.asarray(values, dtype=np.float64).reshape(len(rows), len(names))
    if not np.isfinite(matrix).all():
        return None
    declared = np.asarray([column.declared for column in columns], dtype=bool)
    derived = ~declared
    if derived.any() and first_out_of_range(matrix[:, derived]) is not None:
        return None
    scale = np.asarray([column.scale for column in columns], dtype=np.float64)
    out = np.empty(matrix.shape, dtype=np.float32)
    out[:, derived] = (canonical_numbers(matrix[:, derived]) * (1.0 / scale[derived])).astype(np.float32)
    if declared.any():
        center = np.asarray([column.center for column in columns], dtype=np.float64)
        out[:, declared] = ((matrix[:, declared] - center[declared]) / scale[declared]).astype(np.float32)
    return out
