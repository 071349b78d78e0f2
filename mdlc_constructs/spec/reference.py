"""The field reference of docs/spec.md, generated from the pydantic models.

A hand-kept table drifts from the models (``training.validation_fraction``
went missing); this writes one table per spec section with every field, its
type, default and meaning (the field's ``description``), so the page cannot
leave one out. ``python -m mdlc_constructs.spec.reference docs/spec.md``
rewrites the part between the markers; ``--check`` exits 1 when it is stale
(tests/test_spec_reference.py runs the check).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from .base import SpecModel
from .model import ModelSpec

BEGIN = (
    "<!-- BEGIN field reference: generated from mdlc_constructs/spec by "
    "`python -m mdlc_constructs.spec.reference docs/spec.md`; do not edit by hand -->"
)
END = "<!-- END field reference -->"

#: What the spec's own validated string types are called in the tables.
_VALIDATORS = {
    "_identifier": "snake_case",
    "_model_name": "1-20 of `a-z0-9-`, starting with a letter",
    "_instance_type": "SageMaker instance type (`ml.…`)",
    "validate_schedule": "schedule (`cron(…)` or `rate(…)`)",
}


def _anchor(title: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", title.lower())
    return text.replace(" ", "-")


def _title(path: str, model: type[BaseModel], tagged: bool) -> str:
    kind = model.model_fields.get("kind")
    if tagged and kind is not None and get_origin(kind.annotation) is Literal:
        return f"{path} (kind: {get_args(kind.annotation)[0]})"
    return path


class _Sections:
    """Every model reachable from ModelSpec, named by its path in a spec."""

    def __init__(self) -> None:
        self.order: list[tuple[str, type[BaseModel]]] = []
        self.titles: dict[type[BaseModel], str] = {}

    def visit(self, path: str, model: type[BaseModel], tagged: bool = False) -> None:
        if model in self.titles:
            return
        title = _title(path, model, tagged) if path else "top level"
        self.titles[model] = title
        self.order.append((title, model))
        for name, field in model.model_fields.items():
            child_path = f"{path}.{name}" if path else name
            for nested_path, child, child_tagged in _nested(child_path, field.annotation):
                self.visit(nested_path, child, child_tagged)


def _nested(path: str, annotation: Any) -> Iterator[tuple[str, type[BaseModel], bool]]:
    origin, args = get_origin(annotation), get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield path, annotation, False
    elif origin is Annotated:
        yield from _nested(path, args[0])
    elif origin in (Union, types.UnionType):
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        for arg in args:
            if arg is not type(None):
                for child_path, child, _ in _nested(path, arg):
                    yield child_path, child, len(models) > 1
    elif origin is list:
        yield from _nested(f"{path}[]", args[0])
    elif origin is dict:
        yield from _nested(f"{path}.*", args[1])


def _constraints(metadata: list[Any]) -> str:
    parts = []
    for item in metadata:
        if isinstance(item, FieldInfo):  # Annotated[int, Field(ge=1)]
            parts += [p for p in [_constraints(list(item.metadata))] if p]
            continue
        for cls, attribute, symbol in ((annotated_types.Ge, "ge", "≥"),
                                       (annotated_types.Gt, "gt", ">"),
                                       (annotated_types.Le, "le", "≤"),
                                       (annotated_types.Lt, "lt", "<")):
            if isinstance(item, cls):
                bound = getattr(item, attribute)
                parts.append(f"{symbol} {bound:,}" if isinstance(bound, int) else
                             f"{symbol} {bound:g}")
        if isinstance(item, annotated_types.MinLen) and item.min_length:
            parts.append(f"at least {item.min_length}")
    return ", ".join(parts)


def _validator(metadata: list[Any]) -> str | None:
    for item in metadata:
        name = getattr(getattr(item, "func", None), "__name__", None)
        if name in _VALIDATORS:
            return _VALIDATORS[name]
    return None


def _type(annotation: Any, metadata: list[Any], sections: _Sections) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type(args[0], [*annotation.__metadata__, *metadata], sections)
    named = _validator(metadata)
    if named:
        return named
    limits = _constraints(metadata)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        title = sections.titles[annotation]
        return f"[{title}](#{_anchor(title)})"
    if origin is Literal:
        return " | ".join(f"`{a}`" for a in args)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        models = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) > 1:
            return "one of " + ", ".join(_type(a, [], sections) for a in options)
        text = " or ".join(_type(a, metadata, sections) for a in options)
        return text + (" or none" if len(options) < len(args) else "")
    if origin is list:
        item = _type(args[0], [], sections)
        return f"list of {item}" + (f" ({limits})" if limits else "")
    if origin is dict:
        return f"mapping of {_type(args[0], [], sections)} to {_type(args[1], [], sections)}"
    if annotation is str:
        return "non-empty text" if limits else "text"
    base = {int: "integer", float: "number", bool: "true/false"}.get(
        annotation, getattr(annotation, "__name__", str(annotation)))
    return f"{base} {limits}" if limits else base


def _yaml(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value) if value == "" or ":" in value or " " in value else value
    return f"{value:g}" if isinstance(value, float) else str(value)


def _default(field: FieldInfo, sections: _Sections) -> str:
    if field.is_required():
        return "required"
    value = (field.default_factory() if field.default_factory is not None  # type: ignore[call-arg]
             else field.default)
    if value is PydanticUndefined:  # pragma: no cover - is_required() covers it
        return "required"
    if isinstance(value, BaseModel) and value == type(value)():
        title = sections.titles[type(value)]
        return f"[its defaults](#{_anchor(title)})"
    return f"`{_yaml(value)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


def _doc(model: type[BaseModel]) -> str:
    doc = (model.__doc__ or "").strip()
    if not doc or model.__doc__ == SpecModel.__doc__:
        return ""  # no docstring of its own
    return " ".join(doc.split("\n\n")[0].split()).replace("``", "`")


def _discriminator(name: str, field: FieldInfo) -> str:
    """The meaning of a ``kind`` that tells one form of a section from another."""
    values = get_args(field.annotation) if get_origin(field.annotation) is Literal else ()
    return f"selects this form (`{name}: {values[0]}`)" if name == "kind" and len(values) == 1 \
        else ""


def undocumented() -> list[str]:
    """``section.field`` of every field without a meaning in the reference."""
    sections = _Sections()
    sections.visit("", ModelSpec)
    return [
        f"{title}.{name}"
        for title, model in sections.order
        for name, field in model.model_fields.items()
        if not (field.description or _discriminator(name, field))
    ]


def field_reference() -> str:
    """The markdown of every spec section's fields, between the markers."""
    sections = _Sections()
    sections.visit("", ModelSpec)
    lines = [BEGIN, ""]
    for title, model in sections.order:
        lines += [f"### {title}", ""]
        doc = _doc(model) if model is not ModelSpec else ""
        if doc:
            lines += [doc, ""]
        lines += ["| field | type | default | meaning |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            meaning = field.description or _discriminator(name, field)
            lines.append(
                f"| `{name}` | {_cell(_type(field.annotation, list(field.metadata), sections))} "
                f"| {_cell(_default(field, sections))} | {_cell(meaning)} |"
            )
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def rewrite(text: str) -> str:
    """``text`` (docs/spec.md) with its field reference regenerated."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no field reference markers ({BEGIN!r} ... {END!r})")
    return text[:start] + field_reference() + text[end + len(END):]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mdlc_constructs.spec.reference", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="the page to update (docs/spec.md)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the page's reference is not up to date; write nothing")
    args = parser.parse_args(argv)
    text = args.file.read_text(encoding="utf-8")
    try:
        updated = rewrite(text)
    except ValueError as error:
        print(f"{args.file}: {error}", file=sys.stderr)
        return 2
    if args.check:
        if updated != text:
            print(f"{args.file}: the field reference is stale; run "
                  f"python -m mdlc_constructs.spec.reference {args.file}", file=sys.stderr)
            return 1
        return 0
    if updated != text:
        args.file.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
