"""How ``make test`` splits the suite between its two xdist workers.

``make test`` runs ``pytest -n 2 --dist loadfile --no-loadscope-reorder``. Each
module is one work unit (its module fixtures built once), except that the
modules using the ``spark`` fixture are one unit, so a run starts one JVM, not
one per worker. The units start slowest first: the Spark unit, then the modules
with a test marked ``slow``, then the rest in collection order, so the small
ones fill the end and both workers finish together. xdist's own order, by the
number of tests, left single long tests such as the lagging-updater
simulation for the very end.

xdist's ``--dist loadgroup`` would group from marks, but under pytest 9.2 it
silently does not group (pytest-dev/pytest-xdist#1386), so the Spark unit is a
``loadfile`` scheduler whose scope of a Spark module is :data:`SPARK_UNIT`.
``tests/conftest.py`` installs both hooks.
"""

from __future__ import annotations

from fnmatch import fnmatch
from typing import Any

import pytest

#: The work unit of the modules that run SQL on the session's local Spark: every
#: module whose tests take the ``spark`` fixture is named like one of these.
SPARK_UNIT = "spark"
SPARK_MODULES = ("tests/test_spark*.py", "tests/test_sql_*.py")


def module(nodeid: str) -> str:
    """The test module of a node id (``tests/test_x.py``)."""
    return nodeid.split("::", 1)[0]


def unit(nodeid: str) -> str:
    """The work unit of a node id: :data:`SPARK_UNIT` or its module."""
    path = module(nodeid)
    return SPARK_UNIT if any(fnmatch(path, p) for p in SPARK_MODULES) else path


def scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's ``loadfile`` scheduler with the Spark modules as one unit, or None
    (xdist's own) under any other ``--dist``."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class ModulesAndSpark(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit(nodeid)

    return ModulesAndSpark(config, log)


def order(items: list[pytest.Item]) -> None:
    """Sort ``items`` slowest unit first, keeping the collection's order within
    each rank.

    Raises:
        pytest.UsageError: a module outside :data:`SPARK_MODULES` uses the
            ``spark`` fixture (it would start a second JVM on the other worker).
    """
    strays = sorted({module(item.nodeid) for item in items
                     if "spark" in getattr(item, "fixturenames", ())
                     and unit(item.nodeid) != SPARK_UNIT})
    if strays:
        raise pytest.UsageError(f"{strays} use the spark fixture: name them like one of "
                                f"{SPARK_MODULES} (tests/work_units.py), so they share its JVM")
    slow = {module(item.nodeid) for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> int:
        if unit(item.nodeid) == SPARK_UNIT:
            return 0
        return 1 if module(item.nodeid) in slow else 2

    items.sort(key=rank)
