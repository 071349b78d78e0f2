"""Reading spec files, with errors that name the file and the field."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import ValidationError

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


def parse_spec(data: object, source: str | Path = "<spec>") -> ModelSpec:
    """Validate already-loaded YAML data; errors name ``source``."""
    if not isinstance(data, dict):
        raise SpecError(source, [f"{source}: expected a mapping of spec fields at the top level"])
    try:
        spec = ModelSpec.model_validate(data)
    except ValidationError as error:
        problems = [
            f"{source}: {line}"
            for e in error.errors(include_url=False)
            for line in _describe(e, data)
        ]
        raise SpecError(source, problems) from None
    spec._source = Path(source)
    return spec


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate one spec file.

    Raises:
        SpecError: with one 'file: field: reason' line per problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpecError(path, [f"{path}: cannot read: {error.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(error, "problem", None) or str(error)
        raise SpecError(path, [f"{path}: not valid YAML{where}: {reason}"]) from None
    return parse_spec(data, path)


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
