from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sisa.aggregation import Aggregation, aggregate
from sisa.checkpoints import decode_checkpoint
from sisa.errors import CheckpointError, ModelSpecError
from sisa.models import build_model
from sisa.store import CheckpointStore
from sisa.trainer import ShardTask, SliceData, TrainingConfig, train_shard, visit_order

CPU = torch.device("cpu")


def make_slices(sizes: list[int], seed: int = 0, width: int = 4) -> tuple[SliceData, ...]:
    rng = np.random.default_rng(seed)
    out = []
    for size in sizes:
        labels = rng.integers(0, 2, size=size).astype(np.int64)
        features = (rng.normal(size=(size, width)) + labels[:, None]).astype(np.float32)
        out.append(SliceData(features, labels))
    return tuple(out)


def config(**overrides: object) -> TrainingConfig:
    base = {"model": "mlp", "slices": 3, "epochs": 4.0, "batch_size": 8, "lr": 1e-2, "seed": 5}
    base.update(overrides)
    return TrainingConfig(**base)  # type: ignore[arg-type]


def test_training_is_deterministic(tmp_path: Path) -> None:
    task = ShardTask(0, make_slices([10, 7, 9]), (4,), 2)
    first = train_shard(task, config(), CheckpointStore(tmp_path / "a"), CPU)
    second = train_shard(task, config(), CheckpointStore(tmp_path / "b"), CPU)
    assert first == second and len(first) == 3


def test_resuming_from_a_checkpoint_equals_training_through(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    slices = make_slices([10, 7, 9])
    full = train_shard(ShardTask(1, slices, (4,), 2), config(), store, CPU)
    resumed = train_shard(ShardTask(1, slices, (4,), 2, start_slice=2, resume_digest=full[1]), config(), store, CPU)
    assert resumed == full[2:]


def test_checkpoints_hold_model_optimizer_rng_and_meta(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    digests = train_shard(ShardTask(0, make_slices([5, 5, 5]), (4,), 2), config(), store, CPU)
    state = decode_checkpoint(store.get(digests[-1]))
    assert set(state) == {"model", "optimizer", "rng", "meta"}
    assert state["meta"]["slice"] == 2 and state["meta"]["records"] == 15 and state["meta"]["deterministic"]


def test_a_checkpoint_of_another_shard_or_config_is_refused(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    slices = make_slices([5, 5, 5])
    digests = train_shard(ShardTask(0, slices, (4,), 2), config(), store, CPU)
    with pytest.raises(CheckpointError, match="is for shard 0 slice 0"):
        train_shard(ShardTask(1, slices, (4,), 2, start_slice=1, resume_digest=digests[0]), config(), store, CPU)
    with pytest.raises(CheckpointError, match="under another config"):
        train_shard(ShardTask(0, slices, (4,), 2, start_slice=1, resume_digest=digests[0]), config(lr=0.5), store, CPU)


def test_a_corrupt_or_missing_checkpoint_is_detected(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    digest = store.put(b"some bytes")
    store.path(digest).write_bytes(b"other bytes")
    with pytest.raises(CheckpointError, match="is corrupt"):
        store.get(digest)
    with pytest.raises(CheckpointError, match="is missing"):
        store.get("0" * 64)
    with pytest.raises(CheckpointError, match="cannot be read"):
        decode_checkpoint(b"not a zip")


def test_empty_slices_and_fractional_passes() -> None:
    generator = torch.Generator().manual_seed(0)
    order = visit_order([4, 0, 6], [1.5, 2.0, 0.5], generator)
    counts = np.bincount(order.numpy(), minlength=10)
    assert counts[:4].sum() == 6 and counts[4:].sum() == 3 and order.numel() == 9


def test_shards_with_empty_slices_still_train(tmp_path: Path) -> None:
    digests = train_shard(ShardTask(0, make_slices([0, 3, 0]), (4,), 2), config(), CheckpointStore(tmp_path), CPU)
    assert len(set(digests)) == 3


def test_cnn_and_factory_models(tmp_path: Path) -> None:
    assert build_model("cnn", (1, 8, 8), 10)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ModelSpecError, match="cannot load model factory"):
        build_model("no_such_module:thing", (3,), 2)
    with pytest.raises(ModelSpecError, match=r"unknown model 'resnet': use mlp, cnn, linear, tanh-WIDTH\[xDEPTH\]"):
        build_model("resnet", (3,), 2)
    with pytest.raises(ModelSpecError, match="image shape"):
        build_model("cnn", (64,), 10)


def test_vote_breaks_ties_by_mean_probability() -> None:
    probabilities = np.array(
        [[[0.55, 0.45]], [[0.3, 0.7]]],  # one vote each; class 1 has the higher mean (0.575 vs 0.425)
        dtype=np.float32,
    )
    assert aggregate(probabilities, Aggregation.VOTE).tolist() == [1]
    three = np.array([[[0.9, 0.1]], [[0.4, 0.6]], [[0.45, 0.55]]], dtype=np.float32)
    assert aggregate(three, Aggregation.VOTE).tolist() == [1]
    assert aggregate(three, Aggregation.MEAN).tolist() == [0]


def factory(input_shape: tuple[int, ...], classes: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(input_shape)), classes))


def not_a_module(input_shape: tuple[int, ...], classes: int) -> object:
    return object()


def test_module_callable_factories() -> None:
    assert isinstance(build_model("tests.sisa.test_trainer:factory", (4,), 2), torch.nn.Module)
    with pytest.raises(ModelSpecError, match=r"not a torch\.nn\.Module"):
        build_model("tests.sisa.test_trainer:not_a_module", (4,), 2)
