"""`forget.toml`: the workspace's settings, training config and feature schema."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import tomli_w

from forget.errors import WorkspaceError
from forget.schema import Schema
from sisa.placement import PlacementMode
from sisa.schedule import Schedule
from sisa.store import write_atomically

CONFIG_NAME = "forget.toml"
CONFIG_FORMAT = 1
DEFAULT_DATABASE = "sqlite:///forget.db"


@dataclass(frozen=True)
class TrainingSettings:
    model: str = "mlp"
    epochs: float = 10.0
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    schedule: Schedule = Schedule.BALANCED
    threads: int = 1


class ExecutorKind(StrEnum):
    LOCAL = "local"
    DASK = "dask"


@dataclass(frozen=True)
class ExecutorSettings:
    kind: ExecutorKind = ExecutorKind.LOCAL
    scheduler: str = ""
    """tcp://HOST:PORT of a Dask scheduler, for kind = "dask"."""
    gpu: bool = False
    """Each shard task asks for the worker resource GPU=1."""
    retries: int = 2


@dataclass(frozen=True)
class WorkspaceConfig:
    shards: int
    slices: int
    seed: int
    origin: str
    """The ledger's name: the origin line of its signed checkpoints, unique per workspace."""
    database: str = DEFAULT_DATABASE
    placement: PlacementMode = PlacementMode.SUBJECT
    training: TrainingSettings = field(default_factory=TrainingSettings)
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    checkpoints: str = "checkpoints"
    """The checkpoint store: a folder (relative to the workspace) or an fsspec URL such as s3://bucket/path."""
    schema: Schema | None = None

    def with_schema(self, schema: Schema) -> WorkspaceConfig:
        return replace(self, schema=schema)

    def to_toml(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": CONFIG_FORMAT,
            "workspace": {
                "shards": self.shards,
                "slices": self.slices,
                "seed": self.seed,
                "placement": self.placement.value,
                "database": self.database,
                "checkpoints": self.checkpoints,
            },
            "executor": {
                "kind": self.executor.kind.value,
                "scheduler": self.executor.scheduler,
                "gpu": self.executor.gpu,
                "retries": self.executor.retries,
            },
            "ledger": {"origin": self.origin},
            "training": {
                "model": self.training.model,
                "epochs": self.training.epochs,
                "batch_size": self.training.batch_size,
                "lr": self.training.lr,
                "optimizer": self.training.optimizer,
                "schedule": self.training.schedule.value,
                "threads": self.training.threads,
            },
        }
        if self.schema is not None:
            data["schema"] = self.schema.to_dict()
        return data

    @classmethod
    def from_toml(cls, data: dict[str, Any]) -> WorkspaceConfig:
        if data.get("format") != CONFIG_FORMAT:
            raise WorkspaceError(f"{CONFIG_NAME} has format {data.get('format')!r}; this forget reads {CONFIG_FORMAT}")
        try:
            ws = data["workspace"]
            tr = data.get("training", {})
            ex = data.get("executor", {})
            return cls(
                shards=int(ws["shards"]),
                slices=int(ws["slices"]),
                seed=int(ws["seed"]),
                origin=str(data["ledger"]["origin"]),
                database=str(ws.get("database", DEFAULT_DATABASE)),
                placement=PlacementMode(ws.get("placement", PlacementMode.SUBJECT.value)),
                training=TrainingSettings(
                    model=str(tr.get("model", "mlp")),
                    epochs=float(tr.get("epochs", 10.0)),
                    batch_size=int(tr.get("batch_size", 128)),
                    lr=float(tr.get("lr", 1e-3)),
                    optimizer=str(tr.get("optimizer", "adam")),
                    schedule=Schedule(tr.get("schedule", Schedule.BALANCED.value)),
                    threads=int(tr.get("threads", 1)),
                ),
                executor=ExecutorSettings(
                    kind=ExecutorKind(ex.get("kind", "local")),
                    scheduler=str(ex.get("scheduler", "")),
                    gpu=bool(ex.get("gpu", False)),
                    retries=int(ex.get("retries", 2)),
                ),
                checkpoints=str(ws.get("checkpoints", "checkpoints")),
                schema=Schema.from_dict(data["schema"]) if "schema" in data else None,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise WorkspaceError(f"{CONFIG_NAME} is malformed: {error}") from error


def read_config(path: Path) -> WorkspaceConfig:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise WorkspaceError(f"{path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise WorkspaceError(f"{path} is not valid TOML: {error}") from error
    return WorkspaceConfig.from_toml(data)


def write_config(path: Path, config: WorkspaceConfig) -> None:
    """Atomic: a crash leaves the old file or the new one, never half of each."""
    text = "# forget workspace. The [schema] section is the feature encoding: review it, never refit it.\n"
    text += tomli_w.dumps(config.to_toml())
    write_atomically(path, text.encode())
