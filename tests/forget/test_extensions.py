"""Issue 14: a model family, an executor and a checkpoint store registered here train a workspace.

Each is one class or function and one registration in this module; `forget.toml` names them
(`[training] model`, `[executor] kind`, `[workspace] checkpoints`), and the application's own
calls (`train`, `executor_for`, `checkpoint_store`, `shard_probabilities`) find them by name.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from torch import nn

from forget.data.ingest import ColumnChoice, ingest_file
from forget.errors import InputError
from forget.store.checkpoints import checkpoint_store
from forget.training.predict import encode_file, shard_probabilities
from forget.training.train import executor_for, plan_training, train
from forget.workspace.config import TrainingSettings
from forget.workspace.core import InitOptions, Workspace, init_workspace, open_workspace
from sisa.executor import ExecutorOptions, LocalExecutor, OnSlice, ShardJob
from sisa.models import ModelFamily
from tests.conftest import write_tabular_csv
from tests.sisa.extensions import Buckets, registered

SHARDS, SLICES = 3, 2


def narrow(argument: str, input_shape: tuple[int, ...], classes: int) -> nn.Module:
    """`narrow-W`: one tanh layer of W units."""
    width = int(argument)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.Tanh(), nn.Linear(width, classes))


class ElsewhereExecutor:
    """Claims to train elsewhere (so the caller leaves the device to it), then trains here; records its jobs."""

    trains_here = False
    built: list[ElsewhereExecutor] = []  # noqa: RUF012 (a test's ledger of instances)

    def __init__(self, options: ExecutorOptions) -> None:
        self.options = options
        self.shards: list[int] = []
        ElsewhereExecutor.built.append(self)

    def run(self, jobs: Sequence[ShardJob], on_slice: OnSlice) -> dict[int, list[str]]:
        self.shards += [job.shard for job in jobs]
        return LocalExecutor().run(jobs, on_slice)


BUCKETS = Buckets()


@pytest.fixture
def extensions() -> Iterator[None]:
    family = ModelFamily(narrow, "narrow-WIDTH", r"[1-9][0-9]*")
    with registered(("narrow", family), ("elsewhere", ElsewhereExecutor), ("bucket", BUCKETS)):
        yield
    ElsewhereExecutor.built.clear()


def configured(tmp_path: Path) -> tuple[Workspace, Path]:
    data = tmp_path / "all.csv"
    write_tabular_csv(data, rows=90)
    settings = TrainingSettings(model="narrow-5", epochs=2.0, batch_size=16)
    workspace = init_workspace(tmp_path / "ws", InitOptions(shards=SHARDS, slices=SLICES, seed=3, training=settings))
    ingest_file(workspace, data, ColumnChoice(subject="subject", label="label"))
    config = workspace.config
    workspace.save_config(
        replace(config, checkpoints="bucket://models", executor=replace(config.executor, kind="elsewhere", retries=9))
    )
    return open_workspace(workspace.root), data


def test_a_workspace_trains_and_predicts_with_registered_extensions(tmp_path: Path, extensions: None) -> None:
    workspace, data = configured(tmp_path)
    trained = train(workspace, plan_training(workspace), device="cpu")

    [executor] = ElsewhereExecutor.built
    assert executor.options == ExecutorOptions(scheduler="", gpu=False, retries=9)
    assert sorted(executor.shards) == list(range(SHARDS)) and sorted(trained) == list(range(SHARDS))
    bucket = BUCKETS["bucket://models"]
    assert checkpoint_store(workspace) is bucket and not any((workspace.root / "checkpoints").rglob("*"))
    current = workspace.datastore.checkpoint_map()
    assert len(current) == SHARDS * SLICES and set(bucket.digests()) == set(current.values())

    features, _ = encode_file(workspace, data, need_labels=True)
    probabilities = shard_probabilities(workspace, features, "cpu")  # rebuilds `narrow-5`, reads the bucket
    assert probabilities.shape == (SHARDS, 90, len(workspace.config.schema.labels))  # type: ignore[union-attr]


def test_executor_names_and_settings_are_checked_where_the_workspace_chooses(tmp_path: Path, extensions: None) -> None:
    workspace, _ = configured(tmp_path)
    assert isinstance(executor_for(workspace), ElsewhereExecutor)
    assert isinstance(executor_for(workspace, "local"), LocalExecutor)
    with pytest.raises(InputError, match=r"^unknown executor 'ray': use local or dask or elsewhere$"):
        executor_for(workspace, "ray")
    with pytest.raises(
        InputError, match=r"^the dask executor needs --scheduler tcp://HOST:PORT \(or \[executor\] scheduler\)$"
    ):
        executor_for(workspace, "dask")
