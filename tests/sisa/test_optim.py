"""`sisa.optim`'s optimizers are torch's, bit for bit, and never import torch._dynamo.

Checkpoints hold optimizer state and their digests sit in the ledger, so a workspace trained with
`torch.optim.Adam` must resume under `EagerAdam` (and the reverse) to the same bytes.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional

from sisa import trainer
from sisa.checkpoints import decode_checkpoint, encode_checkpoint
from sisa.optim import EagerAdam, EagerSGD
from sisa.store import CheckpointStore
from sisa.trainer import OptimizerKind, ShardTask, TrainingConfig, train_shard
from tests.sisa.test_trainer import make_slices

Factory = Callable[[Any], torch.optim.Optimizer]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread, as training uses (sisa.trainer.deterministic_torch): on tensors this small
    a second thread only waits, and on a busy machine it made these tests five times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


PAIRS: dict[str, tuple[Factory, Factory]] = {
    "adam": (lambda p: torch.optim.Adam(p, lr=1e-3), lambda p: EagerAdam(p, lr=1e-3)),
    "adam-options": (
        lambda p: torch.optim.Adam(p, lr=3e-3, betas=(0.8, 0.99), weight_decay=0.01, amsgrad=True),
        lambda p: EagerAdam(p, lr=3e-3, betas=(0.8, 0.99), weight_decay=0.01, amsgrad=True),
    ),
    "sgd-momentum": (lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9), lambda p: EagerSGD(p, lr=1e-2, momentum=0.9)),
}


def model() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 5))


def batches(count: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(16, 20, generator=generator), torch.randint(0, 5, (16,), generator=generator))
        for _ in range(count)
    ]


def train(net: nn.Module, optimizer: torch.optim.Optimizer, data: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    for x, y in data:
        optimizer.zero_grad(set_to_none=True)
        functional.cross_entropy(net(x), y).backward()  # type: ignore[no-untyped-call]
        optimizer.step()


def saved(net: nn.Module, optimizer: torch.optim.Optimizer) -> bytes:
    """The bytes a checkpoint would hold: model and optimizer state through torch.save."""
    return encode_checkpoint({"model": net.state_dict(), "optimizer": optimizer.state_dict()})


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_updates_and_state_are_torchs_bit_for_bit(name: str) -> None:
    reference, eager = PAIRS[name]
    data = batches(300, seed=1)
    a, b = model(), model()
    optimizer_a, optimizer_b = reference(a.parameters()), eager(b.parameters())
    train(a, optimizer_a, data)
    train(b, optimizer_b, data)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert saved(a, optimizer_a) == saved(b, optimizer_b)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_each_resumes_from_the_others_state_to_the_same_bytes(name: str) -> None:
    reference, eager = PAIRS[name]
    first, second = batches(120, seed=2), batches(120, seed=3)
    through = model()
    optimizer = reference(through.parameters())
    train(through, optimizer, first)
    halfway = saved(through, optimizer)
    train(through, optimizer, second)
    expected = saved(through, optimizer)
    outcomes = []
    for resume_with, then_with in ((eager, reference), (reference, eager), (eager, eager)):
        net = model()
        state = decode_checkpoint_plain(halfway)
        net.load_state_dict(state["model"])
        resumed = resume_with(net.parameters())
        resumed.load_state_dict(state["optimizer"])
        train(net, resumed, second[:60])
        # A second round trip halfway through the second part, into the other class.
        middle = decode_checkpoint_plain(saved(net, resumed))
        again = model()
        again.load_state_dict(middle["model"])
        continued = then_with(again.parameters())
        continued.load_state_dict(middle["optimizer"])
        train(again, continued, second[60:])
        outcomes.append(saved(again, continued))
    assert outcomes == [expected] * 3


def decode_checkpoint_plain(data: bytes) -> dict[str, Any]:
    """`torch.load` as `decode_checkpoint` does it, for a dict without a checkpoint's meta."""
    import io

    loaded: dict[str, Any] = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return loaded


@pytest.mark.parametrize("kind", list(OptimizerKind))
def test_train_shard_digests_equal_torch_optims_and_resume_across(
    kind: OptimizerKind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoints of a shard are the same bytes as under torch.optim, which existing workspaces hold."""
    config = TrainingConfig(model="tanh-32", slices=4, epochs=6.0, batch_size=8, lr=1e-2, seed=7, optimizer=kind)
    task = ShardTask(2, make_slices([23, 17, 30, 11], seed=4), (4,), 2)
    store = CheckpointStore(tmp_path)
    eager = train_shard(task, config, store, torch.device("cpu"))

    def torch_optimizer(net: nn.Module, settings: TrainingConfig) -> torch.optim.Optimizer:
        if settings.optimizer is OptimizerKind.SGD:
            return torch.optim.SGD(net.parameters(), lr=settings.lr, momentum=0.9)
        return torch.optim.Adam(net.parameters(), lr=settings.lr)

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "_make_optimizer", torch_optimizer)
        reference = train_shard(task, config, store, torch.device("cpu"))
        # torch.optim resuming from a checkpoint the eager optimizer wrote
        from_eager = train_shard(
            ShardTask(2, task.slices, (4,), 2, start_slice=2, resume_digest=eager[1]),
            config,
            store,
            torch.device("cpu"),
        )
    # the eager optimizer resuming from a checkpoint torch.optim wrote (an existing workspace)
    from_torch = train_shard(
        ShardTask(2, task.slices, (4,), 2, start_slice=1, resume_digest=reference[0]),
        config,
        store,
        torch.device("cpu"),
    )
    assert eager == reference
    assert from_eager == reference[2:] and from_torch == reference[1:]
    assert decode_checkpoint(store.get(eager[-1]))["optimizer"]["param_groups"][0]["lr"] == 1e-2


PROBE = textwrap.dedent(
    """
    import sys, tempfile
    from pathlib import Path
    import torch
    from sisa.store import CheckpointStore
    from sisa.trainer import OptimizerKind, ShardTask, TrainingConfig, train_shard
    from tests.sisa.test_trainer import make_slices

    store = CheckpointStore(Path(tempfile.mkdtemp()))
    for kind in OptimizerKind:
        config = TrainingConfig("tanh-16", 3, 2.0, 8, 1e-2, 1, optimizer=kind)
        task = ShardTask(0, make_slices([9, 8, 7]), (4,), 2)
        digests = train_shard(task, config, store, torch.device("cpu"))
        # a resume loads optimizer state (load_state_dict), the other path torch decorates
        train_shard(ShardTask(0, task.slices, (4,), 2, start_slice=1, resume_digest=digests[0]), config, store,
                    torch.device("cpu"))
    print(sorted(name for name in sys.modules if name.startswith("torch._dynamo")))
    """
)


@pytest.mark.slow
def test_training_and_resuming_never_import_torch_dynamo() -> None:
    """The import costs about a second of CPU per process (`forget run`, a Dask worker's first task)."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=root, check=True, timeout=120
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"
