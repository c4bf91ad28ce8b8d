"""A name -> builder registry with errors that say what to do.

LOSSES = Registry("loss")
@LOSSES.register("unpg")
class UNPG(nn.Module): ...
LOSSES.get("unpg")      # unknown name: error listing what is registered
LOSSES.register("uss", USS.from_config, defaults={"weight": 1.0})   # knobs under config.uss
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable


class RegistryError(KeyError):
    """Unknown or duplicate registry name."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable] = {}
        self._sources: dict[str, str] = {}
        self._defaults: dict[str, dict] = {}

    def register(
        self, name: str, obj: Callable | None = None, *, source: str | None = None, defaults: dict | None = None
    ):
        """Register `obj` under `name`; usable as `register(name, obj)` or as a decorator `@register(name)`.
        `defaults`: the entry's options with their default values (a config section named after it)."""

        def add(target: Callable) -> Callable:
            where = source or _where(target)
            if name in self._entries:
                raise RegistryError(
                    f"{self.kind} {name!r} is already registered by {self._sources[name]}; "
                    f"choose another name for the one from {where}"
                )
            self._entries[name] = target
            self._sources[name] = where
            if defaults is not None:
                self._defaults[name] = dict(defaults)
            return target

        return add(obj) if obj is not None else add

    def get(self, name: str) -> Callable:
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}; available: {', '.join(sorted(self._entries)) or '(none)'}.{hint}"
            )
        return self._entries[name]

    def defaults(self) -> dict[str, dict]:
        """{name: {option: default}} for the entries registered with options."""
        return {name: dict(options) for name, options in self._defaults.items()}

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


def _where(obj: Callable) -> str:
    try:
        return f"{obj.__module__}.{obj.__qualname__} ({inspect.getsourcefile(obj)})"
    except TypeError:
        return repr(obj)
