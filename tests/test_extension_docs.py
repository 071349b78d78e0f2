"""docs/extending.md lists every extension point the code has.

An extension point is found in the code, not in a hand-kept list: every
``<part>_class`` attribute of a construct, and every public method its
constructor calls on ``self`` (directly, through private helpers, or through
another such method): a subclass's override of it changes what is built.
Public API verbs the constructor also calls (``add_*``, ``grant_*``,
``metric*``) are documented with the constructs (docs/constructs.md), not
as hooks. Each construct with a hook needs a section of docs/extending.md
whose heading names it (`` `ClassName` ``) and that names each hook; a hook
named there must exist (no stale entries).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from constructs import Construct

import mdlc_constructs

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
#: Public API the constructors call too; not extension points.
API_VERBS = ("add_", "grant_", "metric")


def _constructs() -> dict[str, type]:
    """Every public construct class the library defines (not the CLI's or the
    local runtime's, which build no resources)."""
    found: dict[str, type] = {}
    for module_info in pkgutil.walk_packages(mdlc_constructs.__path__, "mdlc_constructs."):
        if module_info.name.startswith(("mdlc_constructs.cli", "mdlc_constructs.local")):
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, Construct)
                    and value.__module__ == module.__name__ and not name.startswith("_")):
                found[name] = value
    return found


def _library_bases(cls: type) -> list[type]:
    return [base for base in cls.__mro__ if base.__module__.startswith("mdlc_constructs")
            or base.__module__ == cls.__module__]


def _self_calls(function: Any) -> set[str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    return {node.func.attr for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "self"}


def hooks(cls: type) -> set[str]:
    """The extension points of ``cls`` (see the module docstring)."""
    # Every definition of a name along the MRO: an override calling super()
    # still runs the library's body, and its calls.
    functions: dict[str, list[Any]] = {}
    attributes: set[str] = set()
    for base in _library_bases(cls):
        for name, value in vars(base).items():
            if inspect.isfunction(value):
                functions.setdefault(name, []).append(value)
            elif name.endswith("_class") and isinstance(value, type):
                attributes.add(name)
    found: set[str] = set()
    seen: set[str] = set()
    todo = ["__init__"]
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        for called in set().union(*(_self_calls(f) for f in functions[name])):
            if called not in functions:
                continue
            todo.append(called)
            if not called.startswith("_") and not called.startswith(API_VERBS):
                found.add(called)
    return found | attributes


def _sections(text: str) -> list[tuple[list[str], set[str]]]:
    """Each part of the doc that names constructs, with every identifier in its
    code spans: a section (its heading's `` `Name` ``s), and a table row whose
    first cell is one (`` | `MdlcStage` | `platform_class` | ``). A wildcard
    (`` `build_*` ``) names nothing."""
    parts: list[tuple[list[str], set[str]]] = []
    section: tuple[list[str], set[str]] = ([], set())
    for line in text.splitlines():
        if line.startswith("#"):
            section = (re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", line), set())
            parts.append(section)
            continue
        names = {name for span in re.findall(r"`([^`]+)`", line)
                 for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*(?![A-Za-z0-9_*])", span)
                 if not name.endswith("_")}
        section[1].update(names)
        owner = re.match(r"\|\s*`([A-Za-z_][A-Za-z0-9_]*)`\s*\|", line)
        if owner:
            parts.append(([owner.group(1)], names))
    return [part for part in parts if part[0]]


def _documented(parts: list[tuple[list[str], set[str]]]) -> dict[str, set[str]]:
    """Construct name -> the identifiers of every part naming it."""
    by_name: dict[str, set[str]] = {}
    for names, identifiers in parts:
        for name in names:
            by_name.setdefault(name, set()).update(identifiers)
    return by_name


CONSTRUCTS = _constructs()
WITH_HOOKS = sorted(name for name, cls in CONSTRUCTS.items() if hooks(cls))
PARTS = _sections(DOC.read_text(encoding="utf-8"))
DOCUMENTED = _documented(PARTS)


def test_the_stages_the_issue_names_have_hooks_found_in_the_code():
    """The detector finds what docs/extending.md is about (it cannot pass by finding nothing)."""
    assert {"MdlcModelStack", "DataPreparation", "TrainingWorkflow", "RealtimeEndpoint",
            "ClientIntegration", "BatchInferenceWorkflow", "ModelMonitoring",
            "MdlcPlatformStack", "MdlcStage", "MdlcPipelineStack"} <= set(WITH_HOOKS)
    assert {"training_workflow_class", "build_monitoring", "action_code"} <= hooks(
        CONSTRUCTS["MdlcModelStack"])
    # Reached through a private helper of the deployment workflow's mixin.
    assert "scaling_policy_parameters" in hooks(CONSTRUCTS["RealtimeEndpoint"])


@pytest.mark.parametrize("name", WITH_HOOKS)
def test_every_hook_in_the_code_is_in_docs_extending(name):
    assert name in DOCUMENTED, f"docs/extending.md: no section heading names `{name}`"
    missing = sorted(hooks(CONSTRUCTS[name]) - DOCUMENTED[name])
    assert missing == [], f"docs/extending.md, section(s) on `{name}`: not listed {missing}"


@pytest.mark.parametrize("part", range(len(PARTS)))
def test_every_hook_the_doc_names_exists(part):
    """A ``*_class`` or ``build_*`` name in a part about some constructs is a
    hook of one of them (or ``build_app`` and its parameters, when the part is
    about it too)."""
    names, identifiers = PARTS[part]
    owners = [CONSTRUCTS[name] for name in names if name in CONSTRUCTS]
    if not owners:
        return  # a section about handlers, or a part naming no construct
    from mdlc_constructs.platform import build_app

    named = {n for n in identifiers if n.endswith("_class") or n.startswith("build_")}
    known = {"build_app", *(inspect.signature(build_app).parameters if "build_app" in names
                            else ())}
    stale = sorted(n for n in named - known if not any(hasattr(owner, n) for owner in owners))
    assert stale == [], f"docs/extending.md, on {names}: no such hook {stale}"


def test_a_new_hook_is_found_and_its_absence_from_the_doc_reported():
    """The detector on a construct with a hook the doc cannot know: reached
    from the constructor only through a private helper."""
    from mdlc_constructs.preparation import DataPreparation

    class Probe(DataPreparation):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._finish()

        def _finish(self) -> None:
            self.build_probe()

        def build_probe(self) -> None:
            """A new hook."""

    assert hooks(Probe) - hooks(DataPreparation) == {"build_probe"}
    assert "build_probe" not in DOCUMENTED["DataPreparation"]
