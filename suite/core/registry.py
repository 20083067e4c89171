"""One generic registry, used for downscalers and metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError quotes its argument; show the sentence instead
        return str(self.args[0])


class Registry(Generic[T]):
    """Objects (classes or functions) registered under snake_case names.

    With ``names_classes``, registering a class also sets its ``name`` attribute, so that a
    name is written in one place (the decorator).
    """

    def __init__(self, kind: str, *, names_classes: bool = False):
        self.kind = kind
        self.names_classes = names_classes
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        if not name.replace("_", "").isalnum() or name != name.lower() or not name[:1].isalpha():
            raise ValueError(f"{self.kind} names are snake_case, found {name!r}")

        def decorator(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            if self.names_classes and isinstance(obj, type):
                obj.name = name  # type: ignore[attr-defined]
            self._items[name] = obj
            return obj

        return decorator

    def unregister(self, name: str) -> None:
        """Forget ``name`` (for plug-ins loaded only for a while, e.g. in tests)."""
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(f"{self.kind}: expected one of {', '.join(self.names())}, "
                                   f"found {name!r}") from None

    def names(self) -> list[str]:
        """The names, sorted."""
        return sorted(self._items)

    def registered(self) -> list[str]:
        """The names in the order they were registered."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
