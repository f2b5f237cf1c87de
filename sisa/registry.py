"""Named extension points: executors, checkpoint stores and model families, each a `Registry`.

After opacus's `accountants/registry.py`: a dict from name to implementation, filled with the
built-in ones where the extension point is defined, and one `register(name, item)` call for a new
one. A name not registered in this process is looked up once among the installed packages'
entry points (group `sisa.executors`, `sisa.stores` or `sisa.models`), so that a plugin's module
is imported where it is needed: by `forget` on the command line, and by a Dask worker that opens
a store. A name, once registered, cannot be taken over: a workspace's configuration names an
implementation, and a second registration must not silently change what it runs.
"""

from __future__ import annotations

import re
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from sisa.errors import SisaError

T = TypeVar("T")


class RegistrationError(SisaError):
    """A name registered twice, malformed, or whose entry point does not load."""


class Registry(Generic[T]):
    """Name -> implementation for one extension point; `what` names it in messages ("executor").

    A name must match `pattern` in full (it ends up in forget.toml, a command line or a URL
    scheme); `rule` says so for a person, after the name: "must be lower-case letters or digits".
    """

    def __init__(self, what: str, group: str, pattern: str, rule: str) -> None:
        self.what = what
        self.group = group
        self._pattern = re.compile(pattern)
        self._rule = rule
        self._items: dict[str, T] = {}
        self._searched: set[str] = set()

    def register(self, name: str, item: T) -> None:
        """Make `item` available as `name`; raises RegistrationError if the name is taken or malformed."""
        if not self._pattern.fullmatch(name):
            raise RegistrationError(f"{self.what} name {name!r} {self._rule}")
        if name in self._items:
            raise RegistrationError(f"{self.what} {name!r} is already registered")
        self._items[name] = item

    def unregister(self, name: str) -> None:
        """Forget `name` (for tests, and for a plugin that unloads); absent names are ignored."""
        self._items.pop(name, None)
        self._searched.discard(name)

    def lookup(self, name: str) -> T | None:
        """The implementation registered as `name`, else the entry point of that name, else None."""
        item = self._items.get(name)
        if item is not None or name in self._searched:
            return item
        self._searched.add(name)
        for point in entry_points(group=self.group, name=name):
            try:
                loaded: T = point.load()
            except Exception as error:  # an entry point may fail in any way its module can
                raise RegistrationError(f"{self.what} {name!r} from {point.value} cannot be loaded: {error}") from error
            self._items[name] = loaded
            return loaded
        return None

    def names(self) -> tuple[str, ...]:
        """The names registered so far, in registration order (entry points not yet looked up are not listed)."""
        return tuple(self._items)

    def items(self) -> tuple[tuple[str, T], ...]:
        """(name, implementation) pairs, in registration order."""
        return tuple(self._items.items())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.lookup(name) is not None
