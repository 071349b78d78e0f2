"""Renamed public attributes keep their old name for a while, with a warning.

An attribute of a construct is public API: a team's subclass or app reads
it. When the library renames one for consistency (issue #17), the old name
stays as a read-only alias that warns (``DeprecationWarning``, so test runs
show it) and returns the new attribute; docs/upgrading.md lists each.
"""

from __future__ import annotations

import warnings
from typing import Any


class renamed:
    """Class attribute: ``rule = renamed("schedule_rule")`` makes ``obj.rule``
    return ``obj.schedule_rule`` and warn."""

    def __init__(self, new_name: str) -> None:
        self.new_name = new_name
        self.old_name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.old_name = f"{owner.__name__}.{name}"

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        warnings.warn(f"{self.old_name} is deprecated: use {self.new_name} (the same object)",
                      DeprecationWarning, stacklevel=2)
        return getattr(instance, self.new_name)


__all__ = ["renamed"]
