"""Reading spec files, with errors that name the file and the field."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import ValidationError

from . import rules
from .model import ModelSpec


class SpecError(ValueError):
    """A spec file that cannot be used. ``problems`` are 'file: field: reason' lines."""

    def __init__(self, path: str | Path, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        super().__init__("\n".join(problems))


def _location(loc: Iterable[str | int]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif parts:
            parts.append(f".{item}")
        else:
            parts.append(str(item))
    return "".join(parts) or "(top level)"


def _user_location(loc: tuple[str | int, ...], data: object) -> list[str | int]:
    """``loc`` without the discriminator tags pydantic inserts for tagged unions
    (it reports ``rules[0].range.min``; the user wrote ``rules[0].min``)."""
    path: list[str | int] = []
    node = data
    for part in loc:
        is_tag = isinstance(node, dict) and part not in node and node.get("kind") == part
        if isinstance(part, str) and is_tag:
            continue
        path.append(part)
        try:
            node = node[part]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            node = None
    return path


def _describe(error: dict, data: object) -> list[str]:
    loc = _user_location(tuple(error["loc"]), data)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return [
            f"{_location(loc)}: unknown field (check the spelling; docs/spec.md lists the fields)"
        ]
    if error["type"] == "value_error" and not loc:
        # Cross-field checks already start each line with the field's path.
        return message.splitlines()
    received = error.get("input")
    shown = error["type"] == "missing" or isinstance(received, dict | list)
    if not shown and repr(received) not in message:
        message = f"{message} (got {received!r})"
    return [f"{_location(loc)}: {message}"]


class SpecLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key given twice in one mapping.

    PyYAML keeps the last of two equal keys silently, so a field written twice
    (say two ``evaluation:`` blocks) would drop the first without a word.
    Merge keys (``<<``) still override as YAML specifies.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r} (first given at line {first})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str | Path = "<spec>") -> object:
    """The YAML document in ``text`` (with ``SpecLoader``).

    Raises:
        SpecError: naming ``source`` and the line and column of the problem.
    """
    try:
        return yaml.load(text, Loader=SpecLoader)  # SpecLoader is a SafeLoader
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(error, "problem", None) or str(error)
        raise SpecError(source, [f"{source}: not valid YAML{where}: {reason}"]) from None


def parse_spec(
    data: object, source: str | Path = "<spec>", *, folder: str | Path | None = None
) -> ModelSpec:
    """Validate already-loaded YAML data; errors name ``source``.

    Every independent problem is reported at once: when pydantic rejects a
    field, the cross-field rules (rules.py) still run on the sections that
    parsed and on the names as written. ``folder``, when given, is what
    relative paths in the spec are relative to (a custom algorithm's
    ``source``), and they are checked too.
    """
    if not isinstance(data, dict):
        raise SpecError(source, [f"{source}: expected a mapping of spec fields at the top level"])
    try:
        spec = ModelSpec.model_validate(data)
    except ValidationError as error:
        errors = error.errors(include_url=False)
        problems = [f"{source}: {line}" for e in errors for line in _describe(e, data)]
        view = rules.View(data)
        extra: list[rules.Problem] = []
        if not any(e["type"] == "value_error" and not e["loc"] for e in errors):
            # Pydantic stopped before ModelSpec's cross-field checks: run them here.
            extra += rules.cross_field_problems(data)
        if folder is not None:
            extra += rules.source_problems(view, Path(folder))
        reported = {_location(_user_location(tuple(e["loc"]), data)) for e in errors}
        problems += [
            line
            for path, message in extra
            if path not in reported and (line := f"{source}: {path}: {message}") not in problems
        ]
        raise SpecError(source, problems) from None
    if folder is not None:
        found = list(rules.source_problems(rules.View(data, spec), Path(folder)))
        if found:
            raise SpecError(source, [f"{source}: {path}: {message}" for path, message in found])
    # The file a spec came from is set by its loader only: read-only to everyone else.
    spec._source = Path(source)  # noqa: SLF001
    return spec


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate one spec file.

    Raises:
        SpecError: with one 'file: field: reason' line per problem, also for
            a file that cannot be read, is not UTF-8 or is not valid YAML.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise SpecError(path, [f"{path}: cannot read: {error.strerror}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise SpecError(
            path,
            [f"{path}: not UTF-8 text: byte 0x{raw[error.start]:02x} at line {line} "
             "(save the spec as UTF-8)"],
        ) from None
    return parse_spec(load_yaml(text, path), path, folder=path.parent)


def load_specs(folder: str | Path) -> list[ModelSpec]:
    """Every ``*.yaml`` spec in ``folder``, sorted by file name; all errors at once."""
    specs, problems = [], []
    for path in sorted(Path(folder).glob("*.yaml")):
        try:
            specs.append(load_spec(path))
        except SpecError as error:
            problems.extend(error.problems)
    if problems:
        raise SpecError(folder, problems)
    names = [s.name for s in specs]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise SpecError(folder, [f"{folder}: two specs use the name {n!r}" for n in clashes])
    return specs
