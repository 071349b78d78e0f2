"""Rules that relate several fields of a spec, and what synthesis would reject.

Pydantic checks each field on its own and stops a model's own validators when
one of its fields is wrong, so a type error in one section would hide a
misspelt column in another. The checks here are written so that they still
run then: names (columns, features, actions) are read from the spec as
written, tolerating anything that is not the expected shape, and checks of
values take the sections that did parse. ``ModelSpec`` runs them on a valid
spec; the loader runs them again beside pydantic's errors when it fails, so a
user sees every independent problem at once.

Every rule the constructs enforce at synthesis on the spec alone lives here
(or in a field's own validator), so ``mdlc validate`` rejects what ``cdk
synth`` would; tests/test_spec_rules.py walks the constructs' ``raise``
statements so a new one cannot escape this list.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, get_args

from pydantic import TypeAdapter, ValidationError

_lambdas = Path(__file__).resolve().parents[2] / "lambdas"
try:  # the installed distribution, or the source tree when run from a checkout
    from mdlc_core import expressions
except ImportError:  # pragma: no cover - only without `pip install`
    sys.path.insert(0, str(_lambdas))
    from mdlc_core import expressions

Problem = tuple[str, str]
"""A field's path (``quality.rules[3].column``) and what is wrong with it."""

#: Metrics whose value lies in [0, 1]: an evaluation threshold above 1 can
#: never be met. Matched on the metric's last ``:`` part, without an ``@k``
#: suffix, lower-cased (``validation:auc``, ``test:f1``, ``validation:map@5``).
BOUNDED_METRICS = frozenset(
    {
        "accuracy", "auc", "aucpr", "balanced_accuracy", "binary_classification_accuracy",
        "binary_f1_score", "error", "f1", "f1_binary", "f1_macro", "macro_f1",
        "macro_precision", "macro_recall", "map", "ndcg", "pr_auc", "precision",
        "precision_at_target_recall", "recall", "recall_at_target_precision", "roc_auc",
        "roc_auc_score",
    }
)

#: The training input step writes these content types (TrainingWorkflow).
WRITTEN_CONTENT_TYPES = ("text/csv", "application/x-parquet")

_ROLES = ("entity_key", "event_id", "timestamp", "label")
_UNPARSED = object()


class View:
    """What the checks read: the spec as written and the sections that parsed.

    ``raw`` is the mapping the user wrote (or a valid spec dumped); the
    accessors below return ``None`` where it does not have the expected shape,
    and the checks that need that part then stay silent (pydantic already
    reports the shape).
    """

    def __init__(self, raw: Mapping[str, Any], spec: Any = None) -> None:
        self.raw = raw
        self._spec = spec
        self._parsed: dict[tuple[str, ...], Any] = {}

    def parsed(self, *path: str) -> Any:
        """The typed value at ``path`` (``"training", "evaluation"``): from the
        valid spec when there is one, else the part of ``raw`` validated on its
        own (its default when absent), or ``_UNPARSED`` when it does not
        validate; so a bad ``training.instance_count`` does not keep the
        evaluation threshold from being checked."""
        if self._spec is not None:
            value = self._spec
            for part in path:
                value = getattr(value, part)
            return value
        if path not in self._parsed:
            self._parsed[path] = _parse(self.raw, path)
        return self._parsed[path]

    def mapping(self, *path: str) -> Mapping[str, Any] | None:
        node: Any = self.raw
        for part in path:
            node = node.get(part) if isinstance(node, Mapping) else None
        return node if isinstance(node, Mapping) else None

    def items(self, *path: str) -> list[tuple[int, Mapping[str, Any]]]:
        """``(index, entry)`` of the list at ``path`` whose entries are mappings."""
        parent = self.mapping(*path[:-1])
        value = parent.get(path[-1]) if parent is not None else None
        if not isinstance(value, list):
            return []
        return [(i, entry) for i, entry in enumerate(value) if isinstance(entry, Mapping)]

    def columns(self) -> list[tuple[str, Any]] | None:
        """``(name, type)`` of every declared column; None unless every column
        has a string name (otherwise a reference check would report columns
        that exist)."""
        data = self.mapping("data")
        value = data.get("columns") if data is not None else None
        if not isinstance(value, list) or not value:
            return None
        names = [_text(entry.get("name")) if isinstance(entry, Mapping) else None
                 for entry in value]
        if any(name is None for name in names):
            return None
        return [(name, _text(entry.get("type")))  # type: ignore[misc, union-attr]
                for name, entry in zip(names, value, strict=True)]

    def column_names(self) -> list[str] | None:
        columns = self.columns()
        return None if columns is None else [name for name, _ in columns]


def _text(value: Any) -> str | None:
    # The spec strips whitespace from every string (SpecModel's config).
    return value.strip() if isinstance(value, str) else None


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value.strip()]
    if isinstance(value, list):
        return [v.strip() for v in value if isinstance(v, str)]
    return []


def _duplicates(values: list[str]) -> list[str]:
    return sorted({v for v in values if values.count(v) > 1})


# --- data ------------------------------------------------------------------------


def _data(view: View) -> Iterator[Problem]:
    columns = view.columns()
    data = view.mapping("data")
    if columns is None or data is None:
        return
    names = [name for name, _ in columns]
    twice = _duplicates(names)
    if twice:
        yield "data.columns", f"columns are declared twice: {', '.join(twice)}"
    for role in _ROLES:
        value = _text(data.get(role))
        if value is not None and value not in names:
            yield f"data.{role}", f"{value!r} is not one of data.columns {names}"
    from .data import ColumnType

    timestamp = _text(data.get("timestamp"))
    kind = dict(columns).get(timestamp) if timestamp is not None else None
    if kind in get_args(ColumnType) and kind != "timestamp":
        yield (
            "data.timestamp",
            f"the timestamp column {timestamp!r} must have type 'timestamp', not {kind!r}",
        )


# --- quality -----------------------------------------------------------------------


def _quality(view: View) -> Iterator[Problem]:
    names = view.column_names()
    rules = view.items("quality", "rules")
    if names is not None:
        known = sorted(names)
        for index, rule in rules:
            for field in ("column", "entity", "columns"):
                for column in _texts(rule.get(field)):
                    if column not in names:
                        yield (
                            f"quality.rules[{index}].{field}",
                            f"{column!r} is not one of data.columns {known}",
                        )
    columns = view.columns()
    if columns is not None:
        yield from _rule_types(dict(columns), rules)
    from .data import QualityRule

    adapter: TypeAdapter[Any] = TypeAdapter(QualityRule)
    ids = []
    for _, rule in rules:
        try:
            ids.append(adapter.validate_python(rule).rule_id)
        except ValidationError:
            continue  # pydantic reports this rule; its id cannot clash with a guess
    twice = _duplicates(ids)
    if twice:
        yield "quality.rules", f"rule ids must be unique; give these an 'id': {twice}"


_NUMERIC = ("int", "float")
#: What a rule kind needs of its column's declared type (the quality engine
#: refuses anything else on every run, as unusable input).
_RULE_TYPES = {"range": _NUMERIC, "freshness": ("timestamp",)}
#: The types a type rule may demand of a string column besides ``string``: the
#: SQL engine re-parses its text with the reader's own patterns (sql.rules).
_REPARSED = ("int", "float", "bool")
#: A declared type that is not one of these is data.columns' error, reported there.
_COLUMN_TYPES = ("string", "int", "float", "bool", "timestamp")


def _rule_types(types: Mapping[str, Any], rules: list[tuple[int, Mapping[str, Any]]],
                ) -> Iterator[Problem]:
    for index, rule in rules:
        kind, column = rule.get("kind"), _text(rule.get("column"))
        declared = types.get(column) if column is not None else None
        if not isinstance(declared, str):
            continue
        path = f"quality.rules[{index}]"
        needed = _RULE_TYPES.get(kind)  # type: ignore[arg-type]
        if kind == "consistency":
            # change: constant compares numbers too (true/false as 1/0).
            needed = _NUMERIC if rule.get("change", "days") == "days" else (*_NUMERIC, "bool")
        if needed and declared not in needed:
            yield (f"{path}.column",
                   f"{column!r} is a {declared} column; a {kind} rule needs "
                   f"{' or '.join(needed)}")
        wanted = rule.get("type")
        if kind == "type" and isinstance(wanted, str) and wanted != declared \
                and declared in _COLUMN_TYPES and not (declared == "string"
                                                       and wanted in _REPARSED):
            yield (f"{path}.type",
                   f"{column!r} is a {declared} column; a type rule checks the declared type, "
                   f"or {', '.join(_REPARSED)} in a string column: to check {wanted} values, "
                   f"declare the column as {wanted} (its reader records what does not parse)")
        values = rule.get("values")
        if kind == "allowed_values" and isinstance(values, list) and values:
            wrong = _uncastable(values, declared)
            if wrong:
                yield (f"{path}.values",
                       f"{wrong} are not {declared} values, the type of column {column!r}")


def _uncastable(values: list[Any], declared: str) -> list[Any]:
    """The allowed values the quality engine cannot compare with a ``declared``
    column: it casts the list to the column's Arrow type (strings compare as
    text), so the same cast decides here."""
    if declared not in ("int", "float", "bool"):
        return []
    import pyarrow as pa

    type_ = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}[declared]

    def casts(items: list[Any]) -> bool:
        try:
            pa.array(items).cast(type_)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return False
        return True

    if casts(values):
        return []
    wrong = [value for value in values if not casts([value])]
    return wrong or values  # each casts alone, but not the mixed list


# --- features ------------------------------------------------------------------------


#: The spec sections whose ``runner`` may be ``spark``.
SPARK_STAGES = ("quality", "features", "monitoring")


def _spark_environments(view: View) -> Iterator[Problem]:
    """A ``runner: spark`` stage names the Python its job runs (the managed one is too old)."""
    for stage in SPARK_STAGES:
        section = view.mapping(stage) or {}
        if section.get("runner") == "spark" and not (view.mapping(stage, "spark") or {}).get(
                "python_environment"):
            yield (f"{stage}.spark.python_environment",
                   "runner spark needs it (s3://.../env.tar.gz): EMR Serverless's own Python is "
                   "older than the 3.11 mdlc_core needs (docs/engines.md, 'The job's Python')")


def _feature_names(view: View) -> list[str]:
    return [
        name
        for group in ("aggregates", "expressions")
        for _, entry in view.items("features", group)
        if (name := _text(entry.get("name"))) is not None
    ]


def _features(view: View) -> Iterator[Problem]:
    names = view.column_names()
    if names is None:
        return
    columns, known_sorted = set(names), sorted(names)
    known = set(names)
    types = dict(view.columns() or [])
    for index, feature in view.items("features", "aggregates"):
        for field in ("column", "entity"):
            column = _text(feature.get(field))
            if column is not None and column not in columns:
                yield (
                    f"features.aggregates[{index}].{field}",
                    f"{column!r} is not one of data.columns {known_sorted}",
                )
        function, column = feature.get("function"), _text(feature.get("column"))
        declared = types.get(column) if column is not None else None
        if function != "count" and isinstance(declared, str) and declared not in _NUMERIC:
            yield (
                f"features.aggregates[{index}].column",
                f"{column!r} is a {declared} column; a {function} aggregate needs int or float",
            )
        if (name := _text(feature.get("name"))) is not None:
            known.add(name)
    for index, feature in view.items("features", "expressions"):
        text = _text(feature.get("expression"))
        if text:
            try:
                expressions.parse(text, known=known)
            except expressions.ExpressionError as error:
                yield f"features.expressions[{index}].expression", str(error)
        if (name := _text(feature.get("name"))) is not None:
            known.add(name)
    for name in sorted(set(_feature_names(view)) & columns):
        yield "features", f"feature {name!r} has the name of a column"


def feature_columns(view: View) -> list[str] | None:
    """The model's inputs as ``ModelSpec.feature_columns`` orders them."""
    columns, data = view.columns(), view.mapping("data")
    if columns is None or data is None:
        return None
    roles = {_text(data.get(role)) for role in _ROLES}
    raw = [name for name, kind in columns if name not in roles and kind != "string"]
    return raw + _feature_names(view)


# --- integration and the actions it decides ------------------------------------------


def _integration(view: View) -> Iterator[Problem]:
    integration = view.mapping("integration")
    if integration is None:
        return
    rules = view.items("integration", "rules")
    twice = _duplicates([i for _, rule in rules if (i := _text(rule.get("id"))) is not None])
    if twice:
        yield "integration.rules", f"rule ids must be unique: {twice}"
    inputs = feature_columns(view)
    if inputs is not None:
        variables = {"score", *inputs}
        for index, rule in rules:
            text = _text(rule.get("when"))
            if text:
                try:
                    expressions.parse(text, known=variables, boolean=True)
                except expressions.ExpressionError as error:
                    yield f"integration.rules[{index}].when", str(error)
    targets = integration.get("actions")
    if not isinstance(targets, Mapping) or not targets:
        return  # no targets declared: every action only goes to the decision log
    declared = sorted(str(name) for name in targets)
    decided = {_text(rule.get("action")) for _, rule in rules} | {
        _text(integration.get("default_action"))
    }
    unused = [name for name in declared if name not in decided]
    hint = f"; declared but decided by no rule: {unused}" if unused else ""
    uses = [(f"integration.rules[{i}].action", _text(rule.get("action"))) for i, rule in rules]
    uses.append(("integration.default_action", _text(integration.get("default_action"))))
    for path, action in uses:
        if action is not None and action not in targets:
            yield (
                path,
                f"{action!r} is not a declared action; integration.actions declares "
                f"{declared}{hint} (add {action!r} to integration.actions, with kind: log "
                "for the decision log only)",
            )


def action_names(view: View) -> list[str] | None:
    """Every action the integration decides (rules, then the default)."""
    integration = view.mapping("integration")
    if integration is None:
        return None
    names = [_text(rule.get("action")) for _, rule in view.items("integration", "rules")]
    names.append(_text(integration.get("default_action")))
    return list(dict.fromkeys(name for name in names if name is not None))


def _action_caps(view: View) -> Iterator[Problem]:
    caps = view.mapping("monitoring", "open_loop", "max_action_share")
    if not caps:
        return
    path = "monitoring.open_loop.max_action_share"
    if view.raw.get("integration") is None:
        yield path, (
            f"caps the share of actions {sorted(map(str, caps))}, but the spec has no "
            "integration section, so no decision names an action"
        )
        return
    names = action_names(view)
    if names is None:
        return
    for action in caps:
        if action not in names:
            yield (
                f"{path}.{action}",
                f"{action!r} is no action an integration rule or default_action decides; "
                f"expected some of {names}",
            )


def _stages(view: View) -> Iterator[Problem]:
    """What the model stack needs of the other stages for an enabled integration."""
    integration = view.parsed("integration")
    if integration is _UNPARSED or integration is None or not integration.enabled:
        return
    realtime = view.parsed("inference", "realtime", "enabled")
    online = view.parsed("features", "online")
    aggregates = view.parsed("features", "aggregates")
    if realtime is False:
        yield (
            "inference.realtime.enabled",
            "is false, but the integration (integration.enabled: true) scores every event "
            "on the real-time endpoint; enable it or set integration.enabled: false",
        )
    if online is False or aggregates == []:
        yield (
            "features.online" if online is False else "features.aggregates",
            "the integration (integration.enabled: true) reads each entity's online "
            "features: it needs features.online: true and at least one aggregate",
        )


# --- inference -----------------------------------------------------------------------


def realtime_problems(realtime: Any) -> Iterator[Problem]:
    """Endpoint settings SageMaker would only reject at deployment (a
    ``RealtimeSpec``); ``RealtimeEndpoint`` raises on the same."""
    d = realtime.deployment
    path = "inference.realtime"
    if d.strategy == "canary" and d.step_percent > 50:
        yield (f"{path}.deployment.step_percent",
               f"a canary is at most 50% of the fleet, got {d.step_percent}")
    if d.strategy == "linear" and not 10 <= d.step_percent <= 50:
        yield (f"{path}.deployment.step_percent",
               f"a linear step is 10-50% of the fleet, got {d.step_percent}")
    a = realtime.autoscaling
    if not a.min_capacity <= realtime.initial_instance_count <= a.max_capacity:
        yield (
            f"{path}.initial_instance_count",
            f"{realtime.initial_instance_count} is outside autoscaling "
            f"min_capacity..max_capacity ({a.min_capacity}..{a.max_capacity})",
        )


def _inference(view: View) -> Iterator[Problem]:
    realtime = view.parsed("inference", "realtime")
    if realtime is not _UNPARSED and realtime.enabled:
        yield from realtime_problems(realtime)


# --- training ------------------------------------------------------------------------


def metric_is_bounded(metric: str) -> bool:
    """Whether ``metric`` (``validation:auc``) is one of ``BOUNDED_METRICS``."""
    return metric.rsplit(":", 1)[-1].split("@", 1)[0].strip().lower() in BOUNDED_METRICS


@cache
def builtin_versions(name: str) -> tuple[str, ...] | None:
    """The versions of built-in ``name`` the installed SageMaker SDK has images
    for, read from its configuration file (importing the SDK takes seconds);
    None when the file is not found, and then synthesis decides."""
    try:
        distribution = metadata.distribution("sagemaker-core")
    except metadata.PackageNotFoundError:
        return None
    path = Path(str(distribution.locate_file(f"sagemaker/core/image_uri_config/{name}.json")))
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    # As mdlc_constructs.algorithms reads it: one config, or one per scope.
    return tuple((config.get("training") or config).get("versions", {}))


def _training(view: View) -> Iterator[Problem]:
    evaluation = view.parsed("training", "evaluation")
    if evaluation is not _UNPARSED:
        yield from _evaluation(evaluation)
    content_type = view.parsed("training", "content_type")
    if content_type is not _UNPARSED and content_type not in WRITTEN_CONTENT_TYPES:
        yield (
            "training.content_type",
            f"{content_type!r} is not written by the training input step "
            f"({', '.join(WRITTEN_CONTENT_TYPES)})",
        )
    algorithm = view.parsed("training", "algorithm")
    if algorithm is not _UNPARSED and algorithm.kind == "builtin":
        versions = builtin_versions(algorithm.name)
        if versions is not None and algorithm.version not in versions:
            yield (
                "training.algorithm.version",
                f"the SageMaker SDK knows no {algorithm.name} version {algorithm.version!r}; "
                f"it knows {list(versions)}",
            )


def _evaluation(evaluation: Any) -> Iterator[Problem]:
    if "'" in evaluation.metric:
        yield ("training.evaluation.metric",
               f"{evaluation.metric!r} must not contain a quote (it is matched in a "
               "JSONPath filter)")
    if metric_is_bounded(evaluation.metric) and evaluation.threshold > 1:
        yield (
            "training.evaluation.threshold",
            f"{evaluation.threshold:g} can never be reached: {evaluation.metric} lies "
            "between 0 and 1",
        )


def source_problems(view: View, folder: Path) -> Iterator[Problem]:
    """What needs the spec's folder: a custom algorithm's ``source`` (relative
    to the spec file) must be a folder with a Dockerfile."""
    algorithm = view.parsed("training", "algorithm")
    if algorithm is _UNPARSED or algorithm.kind != "custom":
        return
    source = (folder / algorithm.source).resolve()
    if not (source / "Dockerfile").is_file():
        yield (
            "training.algorithm.source",
            f"expected a folder with a Dockerfile, got {source} (relative paths are "
            "relative to the spec file)",
        )


CHECKS: tuple[Callable[[View], Iterator[Problem]], ...] = (
    _data, _quality, _spark_environments, _features, _integration, _action_caps, _stages,
    _inference, _training,
)


def cross_field_problems(raw: Mapping[str, Any], spec: Any = None) -> list[Problem]:
    """Every problem of ``CHECKS`` in ``raw`` (and ``spec``, when it is valid)."""
    view = View(raw, spec)
    return [problem for check in CHECKS for problem in check(view)]


def _parse(raw: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    from pydantic import BaseModel

    from .model import ModelSpec

    model: Any = ModelSpec
    node: Any = raw
    for depth, part in enumerate(path):
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return _UNPARSED
        field = model.model_fields[part]
        if not isinstance(node, Mapping):
            return _UNPARSED
        if part not in node:
            if field.is_required():
                return _UNPARSED
            value = field.get_default(call_default_factory=True)
            for rest in path[depth + 1:]:
                value = getattr(value, rest, _UNPARSED) if value is not None else None
            return value
        node = node[part]
        model = field.annotation
        if depth == len(path) - 1:
            try:
                return TypeAdapter(model).validate_python(node)
            except ValidationError:
                return _UNPARSED
        args = [a for a in get_args(model) if a is not type(None)]
        if len(args) == 1:  # X | None
            model = args[0]
    return _UNPARSED
