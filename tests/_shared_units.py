"""How `make test` spreads the suite over its two xdist workers (``--dist loadgroup``).

tests/conftest.py calls :func:`assign` from ``pytest_collection_modifyitems``
on each worker: every collected item gets its *work unit* (which runs on one
worker, in collection order) and the units are ordered longest first, so the
long poles start at once on both workers and the many short modules fill in
at the end (the longest-processing-time-first rule; ``--no-loadscope-reorder``
keeps this order instead of xdist's by-number-of-tests). The controller
schedules by unit with :class:`UnitScheduling`.

A unit is a whole module, as ``--dist loadfile`` had it, except in the modules
of :data:`SPLIT`: there, tests that share a module-, class- or package-scoped
fixture stay together (that fixture is built once) and the others are units
of their own. Only modules listed there are split, so a module whose tests
share state in another way keeps running as it always did.

The figures below only order the units: a stale or missing one costs balance,
never a result. Refresh the long ones from ``make test``'s ``--durations``
list when they move.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadGroupScheduling

#: The units the workers computed, in the session's base temporary folder.
UNITS_FILE = "mdlc-test-units.json"

#: Modules whose tests are split into units by the fixtures they share.
SPLIT = frozenset({
    "tests/test_simulation.py",
    "tests/test_quality_engines_handler.py",
    "tests/test_monitoring_files.py",
    "tests/test_feature_flags.py",
    "tests/test_online_parity.py",
    "tests/test_spark_monitoring.py",
    "tests/test_spark_features.py",
    "tests/test_spark.py",
    "tests/test_sql_features.py",
    "tests/test_pipeline.py",
    "tests/test_data_layer.py",
})

#: Module-scoped fixtures that are only a view of a session fixture (so
#: building them on both workers costs nothing): they do not tie tests together.
CHEAP_MODULE_FIXTURES = frozenset({"fraud_assembly"})

#: Seconds per module (its tests share them), or for a split module per test
#: function (each parametrization; "" for the module's other tests together).
#: Generated from a ``--junitxml`` run of make test's options (setup + call +
#: teardown; a module's first test carries the worker's first-synthesis cost).
SECONDS: dict[str, float | dict[str, float]] = {
    "tests/test_simulation.py": {
        "test_every_scheduled_run_of_the_lifecycle_succeeds": 77.2,
        "test_the_tenure_anomaly_blocks_its_day_at_the_quality_gate": 7.3,
        "test_a_spec_unlike_the_example_runs_its_lifecycle": 5.3,
        "test_a_revoked_grant_fails_exactly_its_call_and_is_reported": 4.6,
        "test_random_labels_are_rejected_by_the_evaluation_gate": 2.7,
        "": 1.0,
    },
    "tests/test_spark_monitoring.py": {
        "test_the_monitoring_workflow_runs_on_local_spark_and_its_metrics_drive_the_alarms": 30.1,
        "test_the_job_writes_what_the_lambda_runner_writes": 6.0,
        "test_the_executors_type_the_day_as_the_shared_reader_and_duckdb": 4.6,
        "test_the_cli_prints_and_writes_the_same_report_on_spark": 2.4,
        "test_a_bad_object_fails_the_job_naming_it": 1.0,
        "": 1.4,
    },
    "tests/test_packaging.py": 60.2,
    "tests/test_spark.py": {
        "test_the_job_writes_what_the_lambda_runner_writes": 18.0,
        "test_the_quality_workflow_runs_on_local_spark_and_stops_the_bad_day": 13.9,
        "test_the_executors_read_the_snapshots_the_driver_reads_only_manifests": 7.8,
        "test_every_rule_kind_gives_duckdbs_report_on_spark": 3.4,
        "test_the_stand_in_checks_the_state_machines_iam": 3.1,
        "test_the_spark_stack_has_no_unacknowledged_findings": 2.2,
        "test_the_cli_prints_and_writes_the_same_report_on_spark": 1.1,
        "": 3.8,
    },
    "tests/test_online_parity.py": {
        "test_every_scored_event_reads_its_training_row": 19.9,
        "test_the_consumer_scores_training_rows_with_a_lagging_failing_updater": 14.6,
        "test_small_items_are_exact_or_say_they_are_not": 12.0,
    },
    "tests/test_monitoring_files.py": {
        "test_a_day_larger_than_the_memory_limit_is_monitored_in_bounded_memory": 14.7,
        "test_a_baseline_larger_than_the_memory_limit_is_read_and_mixed_by_duckdb": 6.3,
        "test_what_the_shared_reader_types_duckdb_types_the_same": 1.5,
        "test_a_bad_file_fails_both_engines_naming_it": 0.4,
        "": 5.5,
    },
    "tests/test_pipeline.py": {
        "test_images_are_built_five_to_a_step_within_codepipelines_limits": 17.1,
        "test_documented_shared_platform_pipeline_synthesizes_clean": 6.9,
        "test_pipeline_stack_passes_cdk_nag": 4.6,
        "test_the_pipeline_in_waves_is_cfn_lint_clean": 4.0,
    },
    "tests/test_spark_features.py": {
        "test_training_and_batch_inference_run_on_what_the_local_spark_job_wrote": 26.2,
        "test_the_spark_job_writes_what_the_embedded_and_duckdb_engines_write": 6.6,
        "test_the_tables_on_spark_are_the_embedded_engines_with_nulls": 1.4,
        "": 2.5,
    },
    "tests/test_features.py": 34.2,
    "tests/test_monitoring_metrics.py": 31.5,
    "tests/test_feature_flags.py": {
        "test_cdk_synth_of_the_example_prints_nothing_but_its_result": 15.5,
    },
    "tests/test_scale_out_stage.py": 31.2,
    "tests/test_feature_window.py": {
        "test_a_window_larger_than_duckdbs_memory_limit_is_computed_within_it": 13.7,
        "test_the_text_forms_sql_parses_agree_with_the_engines_converters": 7.3,
        "test_a_warm_process_reuses_its_database_and_no_run_leaks_into_the_next": 4.0,
        "test_a_bad_csv_value_names_the_object_the_row_and_the_engines_reason": 0.5,
        "": 3.3,
    },
    "tests/test_cross_stack_references.py": 30.0,
    "tests/test_simulation_updater.py": 26.1,
    "tests/test_sql_features.py": {
        "test_spark_gives_the_embedded_engines_answers": 14.4,
        "test_random_streams_agree": 3.9,
        "": 6.6,
    },
    "tests/test_network.py": 20.9,
    "tests/test_sql_quality.py": 20.6,
    "tests/test_sql_monitoring.py": 19.2,
    "tests/test_lineage.py": 19.0,
    "tests/test_extension_points.py": 18.4,
    "tests/test_processing.py": 11.4,
    "tests/test_algorithms.py": 11.0,
    "tests/test_platform.py": 11.0,
    "tests/test_faults_stream.py": 10.7,
    "tests/test_local_algorithms.py": 9.4,
    "tests/test_extension_runners.py": 9.1,
    "tests/test_spec_rules.py": 8.8,
    "tests/test_batch_inference.py": 8.7,
    "tests/test_extension_platform.py": 8.6,
    "tests/test_permissions_templates.py": 8.3,
    "examples/team_fraud/test_team_fraud.py": 8.2,
    "tests/test_cfn_lint.py": 7.6,
    "tests/test_quality_engines_handler.py": {
        "test_a_day_larger_than_the_memory_limit_spills_with_bounded_memory": 6.1,
    },
    "tests/test_data_layer.py": {
        "test_the_engines_on_a_trimmed_tree_print_what_they_print_untrimmed": 5.9,
    },
    "tests/test_model_monitor_handler.py": 5.0,
    "tests/test_app_shapes.py": 4.9,
    "tests/test_feature_handlers.py": 4.9,
    "tests/test_monitoring_inputs.py": 4.8,
    "tests/test_quality_handler.py": 4.4,
    "tests/test_sourcing_handler.py": 4.4,
    "tests/test_timestamp_units.py": 4.3,
    "tests/test_local_speedups.py": 4.1,
    "tests/test_scale_out.py": 3.6,
    "tests/test_cli_output.py": 3.5,
    "tests/test_local_runtime.py": 3.5,
    "tests/test_permissions_static.py": 3.4,
    "tests/test_snapshot_recovery.py": 3.2,
    "tests/test_quality_engine.py": 3.1,
    "tests/test_drift_baselines.py": 3.1,
    "tests/test_stream_consumer.py": 3.0,
    "tests/test_training_workflow.py": 2.9,
    "tests/test_sample.py": 2.8,
    "tests/test_integration_steps.py": 2.7,
    "tests/test_realtime.py": 2.6,
    "tests/test_dead_letters.py": 2.6,
    "tests/test_network_endpoints.py": 2.3,
    "tests/test_monitor_cli.py": 2.3,

}

#: An item with no figure, module or test.
DEFAULT_SECONDS = 0.02


def _module(item: pytest.Item, root: Path) -> str:
    return Path(item.path).relative_to(root).as_posix()


def _anchors(item: pytest.Item, module: str) -> Iterable[str]:
    """What ties ``item`` to other tests of its (split) module: the broader-than-
    function fixtures it uses, each built once where its tests run together."""
    # `_fixtureinfo` is pytest's own record of the item's fixture closure (no
    # public accessor gives the resolved definitions with their scopes).
    definitions = item._fixtureinfo.name2fixturedefs  # type: ignore[attr-defined]
    for name in item.fixturenames:
        defs = definitions.get(name)
        if not defs or name in CHEAP_MODULE_FIXTURES:
            continue
        scope = defs[-1].scope
        if scope == "module":
            yield f"{module}:{name}"
        elif scope == "class":
            yield f"{item.parent.nodeid if item.parent else module}:{name}"
        elif scope == "package":
            yield f"{defs[-1].baseid}:{name}"


def _units(items: Sequence[pytest.Item], root: Path) -> list[list[int]]:
    """Indexes of ``items`` per work unit, each in collection order."""
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for index, item in enumerate(items):
        module = _module(item, root)
        # A whole module, unless split; a group a test module names itself
        # (``pytest.mark.xdist_group``) stays one unit too.
        keys = [f"group:{m.args[0] if m.args else m.kwargs.get('name', 'default')}"
                for m in item.iter_markers("xdist_group")]
        keys += list(_anchors(item, module)) if module in SPLIT else [module]
        for key in keys:
            other = first.setdefault(key, index)
            parent[find(index)] = find(other)
    units: dict[int, list[int]] = {}
    for index in range(len(items)):
        units.setdefault(find(index), []).append(index)
    return list(units.values())


def _seconds(items: Sequence[pytest.Item], root: Path) -> list[float]:
    modules = [_module(item, root) for item in items]
    names = [getattr(item, "originalname", None) or item.name.split("[", 1)[0]
             for item in items]
    # A figure shared by several tests ("" of a split module, or a whole
    # module's) is divided among them.
    sharing: dict[tuple[str, str], int] = {}
    keys: list[tuple[str, str] | None] = []
    for module, name in zip(modules, names, strict=True):
        figure = SECONDS.get(module)
        key = None
        if isinstance(figure, dict):
            key = (module, name) if name in figure else ((module, "") if "" in figure else None)
        elif figure is not None:
            key = (module, "")
        keys.append(key)
        if key is not None and key[1] == "":
            sharing[key] = sharing.get(key, 0) + 1
    costs = []
    for key in keys:
        if key is None:
            costs.append(DEFAULT_SECONDS)
            continue
        module, name = key
        figure = SECONDS[module]
        if isinstance(figure, dict):
            costs.append(figure[name] / sharing.get(key, 1))
        else:
            costs.append(figure / sharing[key])
    return costs


def _name(items: Sequence[pytest.Item], unit: list[int], root: Path, whole: bool) -> str:
    # A name to read in xdist's log: the module, or the module and first test.
    # A split unit is named after its first test (with its parameters: the
    # parametrizations of one test can be units of their own).
    module = _module(items[unit[0]], root).removeprefix("tests/").removesuffix(".py")
    if whole:
        return module
    return f"{module}::{items[unit[0]].name}"


def assign(items: list[pytest.Item], root: Path) -> dict[str, str]:
    """Reorder ``items`` longest unit first; returns each node id's unit."""
    units = _units(items, root)
    costs = _seconds(items, root)
    per_module: dict[str, int] = {}
    for unit in units:
        module = _module(items[unit[0]], root)
        per_module[module] = per_module.get(module, 0) + 1
    # Longest first; equal ones (most short modules) in collection order.
    ordered = sorted(units, key=lambda unit: (-sum(costs[i] for i in unit), unit[0]))
    reordered: list[pytest.Item] = []
    names: dict[str, str] = {}
    for unit in ordered:
        module = _module(items[unit[0]], root)
        name = _name(items, unit, root, whole=per_module[module] == 1)
        for i in unit:
            names[items[i].nodeid] = name
            reordered.append(items[i])
    assert len(reordered) == len(items) == len(names)
    items[:] = reordered
    return names


class UnitScheduling(LoadGroupScheduling):
    """xdist's loadgroup scheduling, the scope of a test being its unit.

    The units are computed by the workers, which have the items and their
    fixtures, and written to :data:`UNITS_FILE` in the session's base temporary
    folder before they report their collection; the controller, which only
    sees node ids, reads them when it first splits the collection. (xdist's
    own ``xdist_group`` marker no longer reaches the node ids under pytest 9,
    whose nodes keep their id elsewhere, so it cannot carry the units.)
    """

    def __init__(self, config: pytest.Config, log: Any = None, *, units_file: Path) -> None:
        super().__init__(config, log)
        self._units_file = units_file
        self._units: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._units is None:
            self._units = (json.loads(self._units_file.read_text())
                           if self._units_file.exists() else {})
        # A test the workers did not name (no file: not run by make test's
        # options) is grouped with its module, as --dist loadfile would.
        return self._units.get(nodeid) or nodeid.split("::", 1)[0]
