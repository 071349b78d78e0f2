"""A synthesized cloud assembly, read as CloudFormation would deploy it locally.

:class:`Assembly` reads ``cdk.out`` (the manifest, each stack's template and
its file assets) and :class:`Resolver` evaluates the intrinsic functions the
templates use (``Ref``, ``Fn::GetAtt``, ``Fn::Join``, ``Fn::Sub``,
``Fn::Select``, ``Fn::Split``, ``Fn::FindInMap``, ``Fn::ImportValue``,
``Fn::GetStackOutput``, ``Fn::If`` and the condition functions) against the physical names the local
deployment gives each resource.

Written here because no maintained Python library resolves CloudFormation
intrinsics against a caller's own physical ids (cfn-lint parses them but does
not evaluate; moto's CloudFormation rejects alarms, KMS key tags and
unpublished assets, see docs/local.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: moto's default account; every local ARN names it.
ACCOUNT = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"

_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class AssemblyError(ValueError):
    """The assembly or a template cannot be run locally; the message says why."""


@dataclass
class StackArtifact:
    """One synthesized stack: its template and where its file assets are."""

    name: str
    template: dict[str, Any]
    assets: dict[str, Path]  # object key in the asset bucket -> local folder or file
    dependencies: list[str] = field(default_factory=list)

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.template.get("Resources", {})

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v.get("Type") == resource_type}


class Assembly:
    """The stacks of a ``cdk.out`` directory, in deployment order."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        manifest_path = self.directory / "manifest.json"
        if not manifest_path.is_file():
            raise AssemblyError(f"{self.directory}: no manifest.json; is it a cdk.out directory?")
        manifest = json.loads(manifest_path.read_text())
        self.stacks: dict[str, StackArtifact] = {}
        artifacts = manifest.get("artifacts", {})
        for name, artifact in artifacts.items():
            if artifact.get("type") != "aws:cloudformation:stack":
                continue
            properties = artifact.get("properties", {})
            template = json.loads((self.directory / properties["templateFile"]).read_text())
            assets: dict[str, Path] = {}
            for dependency in artifact.get("dependencies", []):
                asset_artifact = artifacts.get(dependency, {})
                if asset_artifact.get("type") != "cdk:asset-manifest":
                    continue
                asset_file = self.directory / asset_artifact["properties"]["file"]
                for entry in json.loads(asset_file.read_text()).get("files", {}).values():
                    source = self.directory / entry["source"]["path"]
                    for destination in entry.get("destinations", {}).values():
                        assets[destination["objectKey"]] = source
            self.stacks[name] = StackArtifact(
                name=name,
                template=template,
                assets=assets,
                dependencies=[d for d in artifact.get("dependencies", []) if d in artifacts
                              and artifacts[d].get("type") == "aws:cloudformation:stack"],
            )

    def ordered(self, names: list[str] | None = None) -> list[StackArtifact]:
        """The stacks (all, or ``names`` and what they depend on), dependencies first."""
        wanted = list(names or self.stacks)
        unknown = [n for n in wanted if n not in self.stacks]
        if unknown:
            raise AssemblyError(
                f"no stack {unknown} in {self.directory}; it has {sorted(self.stacks)}")
        ordered: list[StackArtifact] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            for dependency in self.stacks[name].dependencies:
                visit(dependency)
            ordered.append(self.stacks[name])

        for name in wanted:
            visit(name)
        return ordered


def physical_name(stack: str, logical_id: str, *, lower: bool = False, limit: int = 64) -> str:
    """A deterministic name as CloudFormation generates one: stack, logical id, suffix."""
    suffix = hashlib.sha256(f"{stack}/{logical_id}".encode()).hexdigest()[:12]
    base = re.sub(r"[^A-Za-z0-9-]", "-", f"{stack}-{logical_id}")
    name = f"{base[: limit - len(suffix) - 1]}-{suffix}"
    return name.lower() if lower else name


#: Ref/GetAtt values of one resource: attribute name -> value ("Ref" for Ref).
Attributes = dict[str, Any]


class Resolver:
    """Evaluates intrinsic functions against the local physical resources.

    ``attributes`` maps a logical id to its ``Ref`` and ``GetAtt`` values; it
    is filled as resources are created, so a resource is resolved after those
    it references (CloudFormation's order). ``exports`` holds every stack's
    exported outputs, for ``Fn::ImportValue`` (strong cross-stack references);
    ``outputs`` every deployed stack's outputs by stack name and output
    logical id, for ``Fn::GetStackOutput`` (weak ones).
    """

    def __init__(self, stack: StackArtifact, *, exports: Mapping[str, Any],
                 outputs: Mapping[str, Mapping[str, Any]] | None = None,
                 region: str = REGION, account: str = ACCOUNT) -> None:
        self.stack = stack
        self.exports = exports
        self.outputs: Mapping[str, Mapping[str, Any]] = outputs if outputs is not None else {}
        self.attributes: dict[str, Attributes] = {}
        self.pseudo = {
            "AWS::Partition": PARTITION,
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack.name,
            "AWS::StackId": f"arn:{PARTITION}:cloudformation:{region}:{account}:stack/"
                            f"{stack.name}/local",
            "AWS::NoValue": None,
            "AWS::NotificationARNs": [],
        }
        self._functions: dict[str, Callable[[Any], Any]] = {
            "Fn::Join": self._join,
            "Fn::Sub": self._sub,
            "Fn::GetAtt": self._get_att,
            "Fn::Select": self._select,
            # The local region's zones, as CloudFormation lists them (a, b, c).
            "Fn::GetAZs": lambda a: [f"{REGION}{zone}" for zone in "abc"],
            "Fn::Split": self._split,
            "Fn::FindInMap": self._find_in_map,
            "Fn::ImportValue": self._import_value,
            "Fn::GetStackOutput": self._get_stack_output,
            "Fn::If": self._if,
            "Fn::Equals": lambda a: self.resolve(a[0]) == self.resolve(a[1]),
            "Fn::Not": lambda a: not self.resolve(a[0]),
            "Fn::And": lambda a: all(self.resolve(x) for x in a),
            "Fn::Or": lambda a: any(self.resolve(x) for x in a),
            "Fn::Contains": lambda a: self.resolve(a[1]) in self.resolve(a[0]),
            "Fn::Base64": lambda a: self.resolve(a),
            "Fn::ToJsonString": lambda a: json.dumps(self.resolve(a)),
            "Condition": lambda a: self.condition(a),
        }

    def condition(self, name: str) -> bool:
        conditions = self.stack.template.get("Conditions", {})
        if name not in conditions:
            raise AssemblyError(f"{self.stack.name}: no condition {name!r}")
        return bool(self.resolve(conditions[name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(item) for item in value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), = value.items()
            if key == "Ref":
                return self._ref(argument)
            if key in self._functions:
                return self._functions[key](argument)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.attributes:
            return self.attributes[name]["Ref"]
        parameters = self.stack.template.get("Parameters", {})
        if name in parameters:
            return parameters[name].get("Default")
        raise AssemblyError(f"{self.stack.name}: Ref to {name!r}, which is not created yet "
                            "or has no local stand-in")

    def _get_att(self, argument: Any) -> Any:
        if isinstance(argument, str):
            argument = argument.split(".", 1)
        logical_id, attribute = argument[0], self.resolve(argument[1])
        attributes = self.attributes.get(logical_id)
        if attributes is None or attribute not in attributes:
            kind = self.stack.resources.get(logical_id, {}).get("Type", "unknown type")
            raise AssemblyError(
                f"{self.stack.name}: Fn::GetAtt {logical_id}.{attribute} ({kind}) has no local "
                "value; the resource is not created yet or the attribute is not simulated"
            )
        return attributes[attribute]

    def _join(self, argument: list[Any]) -> str:
        separator, parts = argument
        return str(separator).join(str(p) for p in self.resolve(parts))

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        variables = {k: self.resolve(v) for k, v in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] in self.attributes:
                return str(self._get_att(name.split(".", 1)))
            return str(self._ref(name))

        return _SUB_VARIABLE.sub(replace, text).replace("${!", "${")

    def _select(self, argument: list[Any]) -> Any:
        index, items = self.resolve(argument[0]), self.resolve(argument[1])
        return items[int(index)]

    def _split(self, argument: list[Any]) -> list[str]:
        return str(self.resolve(argument[1])).split(argument[0])

    def _find_in_map(self, argument: list[Any]) -> Any:
        name, top, second = (self.resolve(a) for a in argument[:3])
        try:
            return self.stack.template["Mappings"][name][top][second]
        except KeyError as error:
            raise AssemblyError(
                f"{self.stack.name}: Fn::FindInMap [{name}, {top}, {second}] has no value"
            ) from error

    def _import_value(self, argument: Any) -> Any:
        name = self.resolve(argument)
        if name not in self.exports:
            raise AssemblyError(f"{self.stack.name}: Fn::ImportValue {name!r} is not exported by "
                                "a stack deployed before it")
        return self.exports[name]

    def _get_stack_output(self, argument: Any) -> Any:
        """An output of another deployed stack in this account and region
        (``RoleArn``, for reading across accounts, is not needed locally)."""
        stack, output = self.resolve(argument["StackName"]), self.resolve(argument["OutputName"])
        region = self.resolve(argument.get("Region", self.pseudo["AWS::Region"]))
        if region != self.pseudo["AWS::Region"]:
            raise AssemblyError(f"{self.stack.name}: Fn::GetStackOutput {stack}.{output} is in "
                                f"region {region!r}; the local deployment has only "
                                f"{self.pseudo['AWS::Region']!r}")
        if output not in self.outputs.get(stack, {}):
            raise AssemblyError(f"{self.stack.name}: Fn::GetStackOutput {stack}.{output} is not "
                                "an output of a stack deployed before it")
        return self.outputs[stack][output]

    def _if(self, argument: list[Any]) -> Any:
        name, when_true, when_false = argument
        return self.resolve(when_true if self.condition(name) else when_false)

    def output_values(self) -> Mapping[str, Any]:
        """This stack's outputs by logical id, each resolved when it is read (an
        output nobody reads may name an attribute that is not simulated)."""
        return _Outputs(self)


class _Outputs(Mapping[str, Any]):
    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver
        self._outputs: dict[str, Any] = resolver.stack.template.get("Outputs", {})

    def __getitem__(self, key: str) -> Any:
        return self._resolver.resolve(self._outputs[key]["Value"])

    def __iter__(self) -> Iterator[str]:
        return iter(self._outputs)

    def __len__(self) -> int:
        return len(self._outputs)


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE: Any = _NoValue()
