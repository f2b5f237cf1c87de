"""Slice-by-slice training of one shard, with a checkpoint after every slice.

Everything random derives from (seed, shard, slice): initialisation, the visit order of each
step, and torch's own generator (dropout in user models), whose state each checkpoint carries.
With deterministic algorithms on and a fixed thread count, training is a pure function of the
records and the config, which is what makes "rewind and retrain" equal "train without them".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from sisa.checkpoints import CHECKPOINT_FORMAT, decode_checkpoint, encode_checkpoint
from sisa.errors import CheckpointError, DivergedError
from sisa.models import build_model
from sisa.optim import EagerAdam, EagerSGD
from sisa.schedule import Schedule, slice_passes
from sisa.seeds import derive_seed
from sisa.store import BlobStore


class OptimizerKind(StrEnum):
    """The optimizer a shard trains with; part of the config digest, so a shard resumes with the one it began with.

    `adam` (the default) or `sgd`, both the eager variants of `sisa.optim`.
    """

    ADAM = "adam"
    SGD = "sgd"


@dataclass(frozen=True)
class TrainingConfig:
    """Everything besides its records that decides a shard's weights.

    Hashed into every checkpoint (`digest`), so a checkpoint trained under other settings is
    refused when a shard resumes from it. The seed is the root every shard's seeds derive from
    (`sisa.seeds`), so two runs of one config on the same records give the same bits.
    """

    model: str
    slices: int
    epochs: float
    batch_size: int
    lr: float
    seed: int
    optimizer: OptimizerKind = OptimizerKind.ADAM
    schedule: Schedule = Schedule.BALANCED
    threads: int = 1

    def digest(self) -> str:
        """sha256 of the canonical config; stored in every checkpoint so a mixed lineage is refused."""
        # Numbers are normalised so that `epochs = 30` and `epochs = 30.0` name the same config.
        values = {**asdict(self), "epochs": float(self.epochs), "lr": float(self.lr)}
        payload = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class SliceData:
    """One slice's records, ordered by record key: float32 features and int64 class indices."""

    features: np.ndarray[Any, np.dtype[np.float32]]
    labels: np.ndarray[Any, np.dtype[np.int64]]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class ShardTask:
    """Train `shard` from `start_slice` to its last slice, resuming from `resume_digest` if given."""

    shard: int
    slices: tuple[SliceData, ...]
    input_shape: tuple[int, ...]
    classes: int
    start_slice: int = 0
    resume_digest: str | None = None
    """The checkpoint to resume from, as the caller vouches for it (the application takes it from
    its ledger, never from a mutable table); the store refuses a file whose bytes differ."""


@dataclass(frozen=True)
class TrainedSlice:
    """A checkpoint durably stored: its digest and the metadata it carries."""

    shard: int
    slice: int
    digest: str
    meta: dict[str, Any]


@contextmanager
def deterministic_torch(threads: int) -> Iterator[None]:
    """Deterministic kernels and a fixed thread count for the duration, then the caller's settings."""
    previous_threads = torch.get_num_threads()
    previous_flag = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    _set_deterministic(True)
    try:
        yield
    finally:
        _set_deterministic(previous_flag)
        torch.set_num_threads(previous_threads)


def _set_deterministic(mode: bool) -> None:
    """`torch.use_deterministic_algorithms`, minus its import of torch._inductor (1-2 s per process).

    The public function sets this same flag and also configures the inductor compiler, which
    eager-mode training never uses; fall back to it where the private setter is gone.
    """
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:
        torch.use_deterministic_algorithms(mode)
    else:
        setter(mode)


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_cpu(item) for item in value]
    return value


def _make_optimizer(model: nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    """torch's Adam or SGD, bit for bit, without the `torch._dynamo` import (about 1 s a process)."""
    if config.optimizer is OptimizerKind.SGD:
        return EagerSGD(model.parameters(), lr=config.lr, momentum=0.9)
    return EagerAdam(model.parameters(), lr=config.lr)


def visit_order(sizes: Sequence[int], passes: Sequence[float], generator: torch.Generator) -> torch.Tensor:
    """Indices into the cumulative data: whole passes, plus a seeded subset for a fractional pass."""
    parts: list[torch.Tensor] = []
    offset = 0
    for size, count in zip(sizes, passes, strict=True):
        if size:
            base = torch.arange(offset, offset + size)
            whole = int(count)
            parts.extend([base] * whole)
            extra = round((count - whole) * size)
            if extra:
                parts.append(base[torch.randperm(size, generator=generator)[:extra]])
        offset += size
    if not parts:
        return torch.empty(0, dtype=torch.long)
    order = torch.cat(parts)
    return order[torch.randperm(order.numel(), generator=generator)]


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def new_model(config: TrainingConfig, shard: int, input_shape: Sequence[int], classes: int) -> nn.Module:
    """The shard's initial model; its weights depend only on (seed, shard)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, "init", shard))
        return build_model(config.model, input_shape, classes)


def train_shard(
    task: ShardTask,
    config: TrainingConfig,
    store: BlobStore,
    device: torch.device,
    on_slice: Callable[[TrainedSlice], None] | None = None,
) -> list[str]:
    """Train the task's slices in order; returns the checkpoint digest of each trained slice.

    `on_slice` is called after each checkpoint is durably stored, so a caller can record it
    before the next slice starts.
    """
    if len(task.slices) != config.slices:
        raise ValueError(f"shard {task.shard} has {len(task.slices)} slices, the config says {config.slices}")
    config_digest = config.digest()
    digests: list[str] = []
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with deterministic_torch(config.threads), torch.random.fork_rng(devices=fork_devices):
        model = new_model(config, task.shard, task.input_shape, task.classes).to(device)
        optimizer = _make_optimizer(model, config)
        torch.manual_seed(derive_seed(config.seed, "torch", task.shard))
        if task.start_slice > 0:
            if task.resume_digest is None:
                raise CheckpointError(f"shard {task.shard}: resuming at slice {task.start_slice} needs a checkpoint")
            try:
                # The store checks the bytes against the digest, which the caller took from its ledger.
                state = decode_checkpoint(store.get(task.resume_digest))
            except CheckpointError as error:
                raise type(error)(f"shard {task.shard} slice {task.start_slice - 1}: {error}") from error
            meta = state["meta"]
            if (meta["shard"], meta["slice"], meta["config"]) != (
                task.shard,
                task.start_slice - 1,
                config_digest,
            ):
                raise CheckpointError(
                    f"checkpoint {task.resume_digest[:12]} is for shard {meta['shard']} slice {meta['slice']}"
                    f" under another config, not shard {task.shard} slice {task.start_slice - 1}"
                )
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            _set_rng_state(state["rng"], device)

        # Step k visits slices 0..k, a prefix of the shard: concatenated once, not once per step.
        features = torch.from_numpy(np.concatenate([s.features for s in task.slices])).to(device)
        labels = torch.from_numpy(np.concatenate([s.labels for s in task.slices])).to(device)
        sizes = [len(s) for s in task.slices]
        for step in range(task.start_slice, config.slices):
            generator = torch.Generator().manual_seed(derive_seed(config.seed, "order", task.shard, step))
            passes = slice_passes(step, config.slices, config.epochs, config.schedule)
            order = visit_order(sizes[: step + 1], passes, generator).to(device)
            model.train()
            for start in range(0, order.numel(), config.batch_size):
                batch = order[start : start + config.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = functional.cross_entropy(model(features[batch]), labels[batch])
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
            # Once per slice, not per batch: a per-batch `.item()` would stall a GPU at every step.
            if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
                raise DivergedError(
                    f"shard {task.shard} slice {step}: training diverged (a weight became NaN or infinite);"
                    " nothing was stored for this slice: lower the learning rate or check the data for extreme values"
                )
            checkpoint = {
                "model": _to_cpu(model.state_dict()),
                "optimizer": _to_cpu(optimizer.state_dict()),
                "rng": _rng_state(device),
                "meta": {
                    "format": CHECKPOINT_FORMAT,
                    "shard": task.shard,
                    "slice": step,
                    "records": sum(sizes[: step + 1]),
                    "config": config_digest,
                    "device": device.type,
                    "threads": config.threads,
                    "deterministic": True,
                    "torch": str(torch.__version__),
                },
            }
            digest = store.put(encode_checkpoint(checkpoint))
            digests.append(digest)
            if on_slice is not None:
                on_slice(TrainedSlice(task.shard, step, digest, checkpoint["meta"]))
    return digests


def load_model(data: bytes, config: TrainingConfig, shard: int, input_shape: Sequence[int], classes: int) -> nn.Module:
    """A shard's model from checkpoint bytes, in eval mode, on the CPU."""
    state = decode_checkpoint(data)
    model = new_model(config, shard, input_shape, classes)
    model.load_state_dict(state["model"])
    model.eval()
    return model
