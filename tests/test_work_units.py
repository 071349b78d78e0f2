"""tests/work_units.py: the Spark modules are one unit and start first; a
module using the ``spark`` fixture under another name is refused."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests import work_units


class _Item(SimpleNamespace):
    def get_closest_marker(self, name: str) -> object:
        return object() if name in self.marks else None


def _item(nodeid: str, *, fixtures: tuple[str, ...] = (), marks: tuple[str, ...] = ()) -> _Item:
    return _Item(nodeid=nodeid, fixturenames=fixtures, marks=marks)


def test_every_spark_module_is_one_unit_and_the_others_their_own() -> None:
    assert {work_units.unit(n) for n in (
        "tests/test_spark.py::test_a", "tests/test_spark_monitoring.py::test_b[x]",
        "tests/test_sql_features.py::test_c")} == {work_units.SPARK_UNIT}
    assert work_units.unit("tests/test_simulation.py::test_d") == "tests/test_simulation.py"
    assert work_units.unit("examples/team_fraud/test_team_fraud.py::t") == \
        "examples/team_fraud/test_team_fraud.py"


def test_the_scheduler_splits_by_unit_under_loadfile_only() -> None:
    def config(dist: str) -> SimpleNamespace:  # what xdist's schedulers read of it
        return SimpleNamespace(getoption=lambda name: dist, getvalue=lambda name: ["2*popen"])

    assert work_units.scheduler(config("load"), None) is None
    from xdist.scheduler import LoadFileScheduling

    made = work_units.scheduler(config("loadfile"), None)
    assert isinstance(made, LoadFileScheduling)
    assert made._split_scope("tests/test_sql_quality.py::t") == work_units.SPARK_UNIT
    assert made._split_scope("tests/test_spec.py::t") == "tests/test_spec.py"


def test_units_are_ordered_spark_then_slow_then_the_rest_stably() -> None:
    items = [_item("tests/test_a.py::one"), _item("tests/test_b.py::two", marks=("slow",)),
             _item("tests/test_sql_x.py::three", fixtures=("spark",)),
             _item("tests/test_a.py::four"), _item("tests/test_b.py::five")]
    work_units.order(items)
    assert [i.nodeid.rsplit("::", 1)[1] for i in items] == [
        "three", "two", "five", "one", "four"]


def test_a_module_using_spark_outside_the_unit_is_refused_naming_it() -> None:
    with pytest.raises(pytest.UsageError, match=r"tests/test_other\.py.*use the spark fixture"):
        work_units.order([_item("tests/test_other.py::t", fixtures=("spark",))])
