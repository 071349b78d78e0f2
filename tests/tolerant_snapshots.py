"""Amber snapshots whose floats compare within a tolerance.

syrupy compares a snapshot as text, so a float recorded on one machine must be
written bit for bit the same on every other. Floats that went through NumPy's
``log`` or ``exp`` are not: NumPy picks its kernels by CPU (AVX-512 where there
is one, AVX2 otherwise), and the two can differ by an ulp (a PSI of
0.07469057163031582 on one host is 0.07469057163031581 on another). A subclass
of :class:`TolerantAmber` sets the tolerance; everything but floats (keys,
strings, ints, None, the structure) still compares exactly, and a float never
matches an int. syrupy's ``SnapshotComparator.matches`` is the hook; the
comparison of the text is ours.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

from syrupy.extensions.amber import AmberSnapshotExtension

#: A float as repr writes it (an int never matches: it has no point nor exponent).
_FLOAT = re.compile(r"(-?(?:\d+\.\d*(?:e[+-]?\d+)?|\d+e[+-]?\d+|inf)|nan)")


def same_line(recorded: str, received: str, rel_tol: float, abs_tol: float) -> bool:
    """Equal, but for floats within the tolerance (and of the same kind: a
    float never matches an int)."""
    if recorded == received:
        return True
    mine, theirs = _FLOAT.split(recorded), _FLOAT.split(received)
    if len(mine) != len(theirs):
        return False
    for index, (a, b) in enumerate(zip(mine, theirs, strict=True)):
        if index % 2 == 0:  # the text between floats
            if a != b:
                return False
        elif not math.isclose(float(a), float(b), rel_tol=rel_tol, abs_tol=abs_tol):
            return False
    return True


class TolerantAmber(AmberSnapshotExtension):
    """Amber snapshots compared line by line, floats within the tolerance."""

    REL_TOL: ClassVar[float] = 1e-12
    ABS_TOL: ClassVar[float] = 0.0

    def matches(self, *, serialized_data: Any, snapshot_data: Any) -> bool:
        if not isinstance(serialized_data, str) or not isinstance(snapshot_data, str):
            return bool(serialized_data == snapshot_data)
        mine, theirs = snapshot_data.splitlines(), serialized_data.splitlines()
        return len(mine) == len(theirs) and all(
            same_line(a, b, self.REL_TOL, self.ABS_TOL) for a, b in zip(mine, theirs, strict=True))
