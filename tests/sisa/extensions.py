"""A model family, an executor and a checkpoint store registered for one test, then removed.

The registries are process-wide, and a name once registered cannot be taken again: a test that
registered its extensions and left them would break the next test that registers the same
names. The registry tests (tests/sisa/test_registry.py) and the application's
(tests/forget/test_extensions.py) both register their three through `registered`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sisa.executor import EXECUTORS, ExecutorFactory, register_executor
from sisa.models import MODELS, ModelFamily, register_model
from sisa.store import STORES, MemoryStore, register_store


class Buckets(dict[str, MemoryStore]):
    """In-memory checkpoint stores by location: one location opens the same store each time, as a
    folder or a bucket would, so a test can look at what was stored there."""

    def open(self, location: str) -> MemoryStore:
        """The store at `location` (a `StoreOpener`), empty on first use; raises nothing."""
        return self.setdefault(location, MemoryStore())


@contextmanager
def registered(
    model: tuple[str, ModelFamily], executor: tuple[str, ExecutorFactory], store: tuple[str, Buckets]
) -> Iterator[None]:
    """Register the model family, the executor and the store's URL scheme for the `with` block,
    then unregister them and empty the buckets, even if the block raised.

    Raises `RegistrationError` (before the block runs) if a name is taken or malformed.
    """
    model_name, family = model
    executor_name, factory = executor
    scheme, buckets = store
    register_model(model_name, family)
    register_executor(executor_name, factory)
    register_store(scheme, buckets.open)
    try:
        yield
    finally:
        MODELS.unregister(model_name)
        EXECUTORS.unregister(executor_name)
        STORES.unregister(scheme)
        buckets.clear()
