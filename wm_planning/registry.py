"""One small name → entry registry, used by every seam (planners, costs, envs, models, encoders,
collection policies, ROS model adapters) so that adding an entry touches only its own module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """``@registry.register("name")`` on a class or factory; ``registry.get("name")``.

    kind: what the entries are, for error messages ("planner", "cost", ...).
    A class that declares a ``name`` attribute gets the registered name written into it.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(entry: T) -> T:
            previous = self._entries.get(name)
            if previous is not None and previous is not entry:
                raise ValueError(f"{self.kind} {name!r} is already registered to {previous!r}")
            if isinstance(entry, type) and hasattr(entry, "name"):
                entry.name = name
            self._entries[name] = entry
            return entry

        return deco

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.available())}"
            ) from None

    def available(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
