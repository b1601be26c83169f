"""Plugin registries: every kind of part (scanner, erasure method, judge, report format, and the lab's
attacks) registers itself by name, so adding one is a new module, never an if/else chain.

One mechanism finds them all: on first use a registry imports every module of its package (the
built-ins; each registers its class with ``@REGISTRY.register``) and then every entry point in the
group ``eebguard.<kind>`` (plugins installed by other packages). Nothing imports the plugin modules by
name, so a package's ``base.py`` never depends on its plugins.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import math
import pkgutil
import warnings
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Named plugin classes of one kind.

    Parameters
    ----------
    kind : str
        What the plugins are, for messages ("scanner").
    package : str, optional
        The package whose modules hold the built-ins; all are imported on first use.
    group : str, optional
        The entry-point group of third-party plugins (default ``eebguard.<package's last part>``).
    """

    def __init__(self, kind: str, package: str | None = None, group: str | None = None):
        self.kind = kind
        self.package = package
        self.group = group or (f"eebguard.{package.rsplit('.', 1)[-1]}" if package else None)
        self._items: dict[str, type[T]] = {}
        self._discovered = package is None and group is None

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True  # first: a plugin module that reads the registry must not recurse
        try:
            if self.package:
                pkg = importlib.import_module(self.package)
                for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
                    if not info.name.startswith("_"):
                        importlib.import_module(f"{self.package}.{info.name}")
            for ep in (importlib.metadata.entry_points(group=self.group) if self.group else ()):
                try:
                    loaded = ep.load()
                except Exception as exc:  # noqa: BLE001 - another package's broken plugin must not stop a scan
                    warnings.warn(f"eebguard: the {self.kind} plugin {ep.name!r} ({ep.value}) did not load and is "
                                  f"left out: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
                    continue
                if isinstance(loaded, type) and getattr(loaded, "name", None) and loaded.name not in self._items:
                    self.register(loaded)
        except BaseException:
            self._discovered = False
            raise

    def register(self, cls: type[T]) -> type[T]:
        name = getattr(cls, "name", None)
        if not name:
            raise TypeError(f"{cls.__name__} needs a class attribute 'name' to be registered as a {self.kind}")
        if name in self._items and self._items[name] is not cls:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = cls
        return cls

    def get(self, name: str) -> type[T]:
        self._discover()
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items))}") from None

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._items)

    def items(self) -> list[tuple[str, type[T]]]:
        self._discover()
        return sorted(self._items.items())

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._items

    def __iter__(self):
        return iter(self.names())


class Plugin:
    """What every plugin shares: a ``name`` (its key in the registry) and ``describe()``, built from the
    class docstring's first line and the class attributes its kind lists in ``described``."""

    name: str = ""
    described: tuple[str, ...] = ()

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().split("\n")[0]

    @classmethod
    def describe(cls) -> dict:
        out = {"name": cls.name, "summary": cls.summary()}
        for key in cls.described:
            value = getattr(cls, key)
            out[key] = dict(value) if isinstance(value, dict) else value
        return out


def checked_hyperparameters(owner: str, defaults: dict, overrides: dict) -> dict:
    """``defaults`` updated with ``overrides``, each override checked against its default's kind.

    Plugins are configured from zoo specs and command lines, so a misspelt name or a value of the wrong
    kind must fail here, in one line, not minutes into a training loop: a bool stays a bool, a string a
    string, an int an int (a whole float such as 300.0 is taken as 300), and a float takes any finite
    number. Numbers must not be negative (no plugin's defaults are)."""
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise TypeError(f"{owner}: unknown hyperparameters {sorted(unknown)}; known: {', '.join(sorted(defaults))}")
    out = dict(defaults)
    for key, value in overrides.items():
        out[key] = _checked(f"{owner}: {key}", defaults[key], value)
    return out


def _checked(where: str, default: Any, value: Any) -> Any:
    if isinstance(default, bool) or isinstance(default, str):
        if type(value) is not type(default):
            raise TypeError(f"{where} must be a {type(default).__name__}, got {value!r}")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{where} must be a finite number >= 0, got {value!r}")
        if isinstance(default, int):
            if value != int(value):
                raise TypeError(f"{where} must be a whole number, got {value!r}")
            return int(value)
        return float(value)
    return value  # no plugin has other kinds of defaults yet; nothing to compare against


Factory = Callable[..., T]
