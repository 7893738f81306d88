"""Building frozen slots dataclasses for less, where every command pays for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

Setter = Callable[[Any, Any], None]


def slot_setter(cls: type, name: str) -> Setter:
    """The setter of `cls`'s own slot `name`, for building an instance field by field.

    A frozen dataclass's `__init__` sets each field with `object.__setattr__(self, name, value)`,
    which finds the slot by its name every time; the slot's descriptor sets it directly, in
    about half the time (docs/performance.md, "Deciding a command for less"). Only for an
    instance being built: a frozen one is never changed once made.
    """
    return cast(Setter, vars(cls)[name].__set__)
