"""Issue 14: executors, checkpoint stores and model families are registries; a new one is one registration.

Each is registered here, by this module, and used through the same calls the application makes
(`create_executor`, `open_store`, `build_model` by way of `train_shard`); or found as an installed
package's entry point, without any registration call in this process.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch
from torch import nn

from sisa.dask_executor import DaskExecutor
from sisa.errors import CheckpointError, ModelSpecError
from sisa.executor import (
    EXECUTORS,
    ExecutorOptionError,
    ExecutorOptions,
    LocalExecutor,
    OnSlice,
    ShardJob,
    ShardTaskError,
    UnknownExecutorError,
    create_executor,
    register_executor,
)
from sisa.models import MLP, MODELS, DenseNet, ModelFamily, SmallCNN, build_model, register_model
from sisa.registry import RegistrationError
from sisa.store import (
    STORES,
    CheckpointDigestError,
    CheckpointStore,
    FsspecCheckpointStore,
    MemoryStore,
    open_store,
    register_store,
)
from sisa.trainer import ShardTask, TrainingConfig, train_shard
from tests.sisa import extensions
from tests.sisa.extensions import Buckets
from tests.sisa.test_trainer import make_slices

CPU = torch.device("cpu")


def bottleneck(argument: str, input_shape: tuple[int, ...], classes: int) -> nn.Module:
    """`bottleneck-W`: a linear layer of W units then the head, no activation."""
    width = int(argument)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.Linear(width, classes))


class RecordingExecutor:
    """Trains in this process like `local`, and keeps the options it was built with."""

    trains_here = True

    def __init__(self, options: ExecutorOptions) -> None:
        self.options = options

    def run(self, jobs: Sequence[ShardJob], on_slice: OnSlice) -> dict[int, list[str]]:
        return LocalExecutor().run(jobs, on_slice)


MEMORY = Buckets()
open_memory = MEMORY.open  # also the entry point `tests.sisa.test_registry:open_memory` (see `plugin`)


@pytest.fixture
def registered() -> Iterator[None]:
    family = ModelFamily(bottleneck, "bottleneck-WIDTH", r"[1-9][0-9]*")
    with extensions.registered(("bottleneck", family), ("recording", RecordingExecutor), ("testmem", MEMORY)):
        yield


def test_a_registered_model_trains_through_the_trainer(registered: None) -> None:
    config = TrainingConfig(model="bottleneck-3", slices=2, epochs=2.0, batch_size=8, lr=1e-2, seed=5)
    task = ShardTask(0, make_slices([9, 11]), (4,), 2)
    store = open_store("testmem://a")
    digests = train_shard(task, config, store, CPU)
    assert isinstance(store, MemoryStore) and list(store.digests()) == sorted(digests)
    assert train_shard(task, config, open_store("testmem://b"), CPU) == digests  # deterministic, as any family
    assert [type(m).__name__ for m in build_model("bottleneck-3", (4,), 2).modules()][1:] == [
        "Flatten",
        "Linear",
        "Linear",
    ]
    with pytest.raises(ModelSpecError, match=r"unknown model 'bottleneck': use mlp, .* bottleneck-WIDTH or"):
        build_model("bottleneck", (4,), 2)


def test_a_registered_executor_is_built_from_the_options(registered: None) -> None:
    executor = create_executor("recording", ExecutorOptions(scheduler="tcp://x:1", retries=7))
    assert isinstance(executor, RecordingExecutor) and executor.options.retries == 7


def test_names_are_taken_once_and_must_be_well_formed(registered: None) -> None:
    family = ModelFamily(bottleneck, "x")
    with pytest.raises(RegistrationError, match="model family 'tanh' is already registered"):
        register_model("tanh", family)
    with pytest.raises(RegistrationError, match="model family name 'my-net' must be lower-case"):
        register_model("my-net", family)
    with pytest.raises(RegistrationError, match="executor 'local' is already registered"):
        register_executor("local", RecordingExecutor)
    with pytest.raises(RegistrationError, match="checkpoint store name 'S3' is not a URL scheme"):
        register_store("S3", open_memory)


def test_the_built_in_executors_and_their_capabilities() -> None:
    assert isinstance(create_executor("local"), LocalExecutor) and LocalExecutor.trains_here
    dask = create_executor("dask", ExecutorOptions(scheduler="tcp://127.0.0.1:1", gpu=True, retries=4))
    assert isinstance(dask, DaskExecutor) and not dask.trains_here and (dask.gpu, dask.retries) == (True, 4)
    with pytest.raises(ExecutorOptionError, match=r"the dask executor needs a scheduler: tcp://HOST:PORT"):
        create_executor("dask")
    with pytest.raises(UnknownExecutorError, match=r"unknown executor 'ray': use local or dask"):
        create_executor("ray")


def test_the_dask_executor_without_dask_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before any import that needs dask: a bare ImportError would reach the person as a bug (exit 70)."""
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` now raises ImportError
    with pytest.raises(ShardTaskError, match=r"^the dask executor needs dask: pip install 'forget\[dask\]'$"):
        DaskExecutor("tcp://127.0.0.1:1").run([], lambda _: None)


def test_locations_open_a_folder_a_registered_scheme_or_fsspec(tmp_path: Path, registered: None) -> None:
    assert isinstance(open_store(str(tmp_path / "store")), CheckpointStore)
    assert open_store("testmem://x") is open_store("testmem://x")
    pytest.importorskip("fsspec")
    assert isinstance(open_store(f"file://{tmp_path / 'store'}"), FsspecCheckpointStore)


def test_the_memory_store_checks_digests_like_the_others() -> None:
    store = MemoryStore()
    digest = store.put(b"weights")
    assert digest in store and store.get(digest) == b"weights" and store.discard_temporaries() == 0
    store._blobs[digest] = b"altered"
    with pytest.raises(CheckpointDigestError, match="corrupt"):
        store.get(digest)
    store.delete(digest)
    with pytest.raises(CheckpointError, match="missing from memory"):
        store.get(digest)


SPECS: dict[str, Callable[[], nn.Module]] = {
    "mlp": lambda: MLP((6,), 3),
    "linear": lambda: DenseNet((6,), 3, width=0, depth=0, activation="relu"),
    "tanh-256": lambda: DenseNet((6,), 3, width=256, depth=1, activation="tanh"),
    "relu-32x3": lambda: DenseNet((6,), 3, width=32, depth=3, activation="relu"),
}


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_built_in_specs_build_what_the_if_chain_built(spec: str) -> None:
    """Checkpoint bytes depend on it: the same classes, constructed in the same order, same weights."""
    torch.manual_seed(0)
    built = build_model(spec, (6,), 3)
    torch.manual_seed(0)
    direct = SPECS[spec]()
    assert type(built) is type(direct)
    for a, b in zip(built.state_dict().items(), direct.state_dict().items(), strict=True):
        assert a[0] == b[0] and torch.equal(a[1], b[1])
    torch.manual_seed(0)
    cnn = build_model("cnn", (1, 8, 8), 10)
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(cnn.parameters(), SmallCNN((1, 8, 8), 10).parameters(), strict=True))


@pytest.mark.parametrize("spec", ["mlp-", "mlp-3", "tanh", "tanh-", "tanh-8x", "tanh-x2", "relu-08", "-8", ""])
def test_malformed_specs_are_unknown(spec: str) -> None:
    with pytest.raises(ModelSpecError, match=f"unknown model '{spec}': use mlp, cnn, linear"):
        build_model(spec, (3,), 2)


# ---------------------------------------------------------------------------------------------
# Found as entry points: an installed package's metadata, no registration call
# ---------------------------------------------------------------------------------------------

ENTRY_FAMILY = ModelFamily(bottleneck, "eptest-WIDTH", r"[1-9][0-9]*")


def entry_executor(options: ExecutorOptions) -> RecordingExecutor:
    return RecordingExecutor(options)


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    info = tmp_path / "forget_test_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: forget-test-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[sisa.models]\neptest = tests.sisa.test_registry:ENTRY_FAMILY\n"
        "[sisa.executors]\neptest = tests.sisa.test_registry:entry_executor\n"
        "[sisa.stores]\neptest = tests.sisa.test_registry:open_memory\n"
        "broken = tests.sisa.test_registry:no_such_opener\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for registry in (MODELS, EXECUTORS, STORES):
        registry.unregister("eptest")
    STORES.unregister("broken")
    MEMORY.clear()


def test_entry_points_register_on_first_use(plugin: None) -> None:
    assert "eptest" not in MODELS.names()
    assert isinstance(build_model("eptest-2", (4,), 2), nn.Sequential)
    assert isinstance(create_executor("eptest"), RecordingExecutor)
    assert isinstance(open_store("eptest://bucket"), MemoryStore)
    assert "eptest" in MODELS.names() and "eptest" in EXECUTORS.names() and "eptest" in STORES.names()
    with pytest.raises(RegistrationError, match=r"checkpoint store 'broken' from .* cannot be loaded"):
        open_store("broken://x")


def test_a_name_nothing_provides_is_looked_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """`open_store` runs for every job and every s3:// location; the installed packages are scanned once."""
    calls: list[str] = []

    def counting(**selection: str) -> object:
        calls.append(selection["name"])
        return entry_points(**selection)

    monkeypatch.setattr("sisa.registry.entry_points", counting)
    try:
        assert [STORES.lookup("nosuchscheme") for _ in range(3)] == [None, None, None]
        assert calls == ["nosuchscheme"]
    finally:
        STORES.unregister("nosuchscheme")
