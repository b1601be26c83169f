"""Plugin registries: every kind of part (judge, attack, erasure, scanner, report format) registers
itself by name, so adding one is a new module, never an if/else chain."""
from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        name = getattr(cls, "name", None)
        if not name:
            raise TypeError(f"{cls.__name__} needs a class attribute 'name' to be registered as a {self.kind}")
        if name in self._items and self._items[name] is not cls:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = cls
        return cls

    def get(self, name: str) -> type[T]:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items))}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, type[T]]]:
        return sorted(self._items.items())

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self):
        return iter(self.names())


def describe(cls) -> dict:
    """The self-description every plugin carries (garak-style)."""
    return {
        "name": cls.name,
        "summary": (cls.__doc__ or "").strip().split("\n")[0],
        **{k: getattr(cls, k) for k in ("family", "depth", "needs_reference", "cite", "tags") if hasattr(cls, k)},
    }


Factory = Callable[..., T]
