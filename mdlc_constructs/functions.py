"""The one way this library creates Lambda functions.

Every handler gets the same secure, observable defaults: the latest Python
runtime aws-cdk-lib offers, code from ``lambdas/<name>`` as a plain asset
(no Docker), Powertools from the AWS-managed layer, explicit memory and
timeout, X-Ray tracing, a KMS-encrypted log group with retention, and the
model spec written into the asset as ``mdlc_config.json``.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from aws_cdk import Annotations, Duration, RemovalPolicy, Size, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from . import wheels
from .compliance import acknowledge_all, acknowledge_grant_actions, iam5_resource
from .data_layer import DataLayer
from .network import ModelNetwork
from .tokens import seconds, stack_of

#: aws-cdk-lib 2.275's newest Python runtime (cdk-nag AwsSolutions-L1 checks this).
RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.X86_64

#: AWS publishes the Powertools layer in every commercial region from this
#: account. The version is overridable with the context key below, so a team
#: can move to a newer layer without a library release.
POWERTOOLS_LAYER_ACCOUNT = "017000801446"
POWERTOOLS_LAYER_VERSION = 27
POWERTOOLS_CONTEXT_KEY = "mdlc:powertoolsLayerVersion"

#: The context key that picked the AWS SDK for pandas layer's version, before
#: the data functions got their own layer (:mod:`mdlc_constructs.data_layer`);
#: setting it now only warns.
RETIRED_DATA_CONTEXT_KEY = "mdlc:dataLayerVersion"

#: /tmp of a function running DuckDB: the objects it reads stay there for
#: DuckDB to scan, and it spills there past its memory limit (Lambda's most;
#: /tmp beyond 512 MB is billed per GB-second, a fraction of the memory's price).
DUCKDB_EPHEMERAL_STORAGE_MB = 10240

CONFIG_FILE_NAME = "mdlc_config.json"
#: Key of the config file's list of the sections left out (mdlc_core.runtime_config).
OMITTED_KEY = "_omitted"

#: The spec sections each library handler reads (``name`` always comes along).
#: Its code asset holds only these, so an edit of another section (a
#: monitoring threshold, the owner, the network) leaves the function's code,
#: and the function, unchanged. A handler reading a section it is not listed
#: with fails loudly at run time (``SectionNotDeployed``), which every
#: simulation of the example would show. A team's own handler folder gets the
#: whole spec.
HANDLER_CONFIG_SECTIONS: dict[str, tuple[str, ...]] = {
    "data_sourcing": ("data",),
    "quality_check": ("data", "quality"),
    "feature_batch": ("data", "features"),
    "feature_update": ("data", "features"),
    "training_input": ("data", "features", "training"),
    "model_monitor": ("data", "features", "monitoring"),
    "stream_consumer": ("data", "features", "integration"),
    "integration_step": ("data", "features", "integration"),
    "batch_decisions": ("data", "features", "integration"),
    "processing_job": ("data", "quality", "features", "monitoring"),
}


def handler_config(handler: str | Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """What of ``config`` (the whole spec as JSON) ``handler``'s asset gets: its
    sections from :data:`HANDLER_CONFIG_SECTIONS` and the names of the others,
    or all of it for a handler not in the table."""
    sections = HANDLER_CONFIG_SECTIONS.get(handler) if isinstance(handler, str) else None
    if sections is None:
        return dict(config)
    kept = {"name", *sections}
    return {**{k: v for k, v in config.items() if k in kept},
            OMITTED_KEY: sorted(k for k in config if k not in kept)}


def handlers_root() -> Path:
    """The folder holding the handler folders, installed or from a checkout."""
    import mdlc_handlers

    return Path(mdlc_handlers.__file__).resolve().parent


def core_root() -> Path:
    import mdlc_core

    return Path(mdlc_core.__file__).resolve().parent


#: A stack's layer-version context, read once per stack and key (two jsii round
#: trips each time otherwise, for every function; issue #12).
_LAYER_CONTEXT: weakref.WeakKeyDictionary[Stack, dict[str, Any]] = weakref.WeakKeyDictionary()


def _layer_version(scope: Construct, key: str, default: int) -> int:
    # Read at the stack: the context is set on the app (cdk.json, -c) or a stage.
    stack = stack_of(scope)
    values = _LAYER_CONTEXT.setdefault(stack, {})
    if key not in values:
        values[key] = stack.node.try_get_context(key)
    value = values[key]
    return int(value) if value is not None else default


def _runtime_tag() -> str:
    return RUNTIME.name.replace(".", "")  # python3.14 -> python314


def _handler_folder(handler: str | Path) -> Path:
    source = Path(handler) if isinstance(handler, Path) else handlers_root() / handler
    if not (source / "index.py").is_file():
        known = sorted(p.name for p in handlers_root().iterdir() if (p / "index.py").is_file())
        raise ValueError(
            f"no Lambda handler {str(handler)!r}: expected {source / 'index.py'} "
            f"(the library's handlers: {known})"
        )
    return source


def stage_code(
    handler: str | Path,
    config: Mapping[str, Any] | None = None,
    extra_code: Sequence[Path] = (),
    packages: Sequence[str] = (),
    target: wheels.Target | None = None,
) -> str:
    """The folder a function (or a Processing job) gets as code: the handler
    folder, ``mdlc_core``, the spec as ``mdlc_config.json``, ``extra_code``
    (files or packages a team adds, importable from the code root) and the
    third-party ``packages`` installed for ``target`` (default: the functions'
    runtime and architecture) from the wheelhouse (:mod:`mdlc_constructs.wheels`)."""
    config_json = (json.dumps(handler_config(handler, config), sort_keys=True,
                              separators=(",", ":")) if config else "")
    extra = tuple(Path(path).resolve() for path in extra_code)
    for path in extra:
        if not path.exists():
            raise ValueError(f"extra_code {path} does not exist")
    if packages and target is None:
        target = wheels.lambda_target(RUNTIME.name, ARCHITECTURE.name)
    return _staged_asset(_handler_folder(handler), config_json, extra, tuple(packages),
                         target if packages else None)


@cache
def _staged_asset(source: Path, config_json: str, extra: tuple[Path, ...] = (),
                  packages: tuple[str, ...] = (), platform: wheels.Target | None = None) -> str:
    """Copy the handler folder, mdlc_core and the config into one folder.

    Cached per (folder, config) so a synthesis stages each asset once; the
    folder's content, not its path, decides the asset hash, so synthesis is
    deterministic.
    """
    # A fresh folder per process: parallel test workers must not share one.
    # CDK copies it into the cloud assembly; it is removed when the process ends.
    folder = tempfile.mkdtemp(prefix=f"mdlc-asset-{source.name}-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    target = Path(folder) / "code"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "tests")
    shutil.copytree(source, target, ignore=ignore)
    shutil.copytree(core_root(), target / "mdlc_core", ignore=ignore)
    if config_json:
        (target / CONFIG_FILE_NAME).write_text(config_json)
    for path in extra:
        if path.is_dir():
            shutil.copytree(path, target / path.name, ignore=ignore)
        else:
            shutil.copy2(path, target / path.name)
    if packages:
        assert platform is not None
        wheels.vendor_into(target, packages, platform)
    return str(target)


def python_function(
    scope: Construct,
    construct_id: str,
    *,
    handler: str | Path,
    description: str,
    key: kms.IKey,
    config: Mapping[str, Any] | None = None,
    environment: Mapping[str, str] | None = None,
    memory_size: int = 256,
    timeout: Duration | None = None,
    reserved_concurrent_executions: int | None = None,
    data_layer: bool = False,
    log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
    dead_letter_queue: sqs.IQueue | None = None,
    vpc: ec2.IVpc | None = None,
    layers: Sequence[lambda_.ILayerVersion] = (),
    extra_code: Sequence[Path] = (),
    packages: Sequence[str] = (),
    ephemeral_storage_size: int | None = None,
) -> lambda_.Function:
    """Create the function for ``lambdas/<handler>/index.py``.

    Args:
        handler: the handler folder's name under ``lambdas/``, or the Path of a
            team's own folder with an ``index.py`` defining ``handler``.
        description: shown in the console; say what the function does.
        key: encrypts the log group and the environment variables.
        config: the model spec as plain JSON (``ModelSpec.as_config()``), read
            by the handler through ``mdlc_core.runtime_config``. Default: none.
        environment: resource names the handler needs. Powertools' service
            name is set from ``handler``.
        memory_size: MB. Default 256.
        timeout: Default: 60 seconds.
        reserved_concurrent_executions: cap (and reserve) concurrency. Default:
            unreserved; the caller decides where a cap protects a downstream.
        data_layer: give the function the stack's data layer
            (:class:`~mdlc_constructs.data_layer.DataLayer`: NumPy, PyArrow,
            DuckDB, sqlglot and Powertools) instead of the Powertools layer, and
            check at synthesis that code and layer fit Lambda's unzipped limit.
            Default: no.
        log_retention: Default one year.
        dead_letter_queue: for asynchronously invoked functions. Default: none
            (synchronous callers such as Step Functions handle failures).
        vpc: run in this VPC's private subnets (with egress). Default: the
            network of the function's stack (``ModelNetwork.of(scope)``: its
            subnets and the functions' security group) when it has one, else
            no VPC.
        layers: more layers, after Powertools or the data layer (their size is
            not known at synthesis: a data function has about 50 MB to spare).
        extra_code: files or package folders copied to the code root, e.g. a
            team's custom action module. Default: none.
        packages: third-party packages the asset carries, installed for the
            function's runtime and architecture from the Lambda wheelhouse
            (:mod:`mdlc_constructs.wheels`). Default: none.
        ephemeral_storage_size: MB of ``/tmp`` (512-10240), also given to the
            handler as ``MDLC_EPHEMERAL_STORAGE_MB``. Default: Lambda's 512.
    """
    stack = stack_of(scope)
    network = ModelNetwork.of(scope) if vpc is None else None
    source = _handler_folder(handler)
    code_path = stage_code(source, config, extra_code, packages)
    code = lambda_.Code.from_asset(code_path)
    log_group = logs.LogGroup(
        scope,
        f"{construct_id}Logs",
        retention=log_retention,
        encryption_key=key,
        removal_policy=RemovalPolicy.RETAIN,
    )
    if data_layer:
        if scope.node.try_get_context(RETIRED_DATA_CONTEXT_KEY) is not None:
            Annotations.of(stack).add_warning_v2(
                "mdlc:retiredContext",
                f"{RETIRED_DATA_CONTEXT_KEY} is no longer read: the data functions use the "
                "library's own data layer (docs/upgrading.md); remove the key")
        # The data layer carries Powertools: one layer, measured whole.
        data = DataLayer.of(scope)
        data.check_fits(f"{scope.node.path}/{construct_id}", Path(code_path))
        all_layers: list[lambda_.ILayerVersion] = [data.layer]
    else:
        all_layers = [lambda_.LayerVersion.from_layer_version_arn(
            scope,
            f"{construct_id}Powertools",
            f"arn:{stack.partition}:lambda:{stack.region}:{POWERTOOLS_LAYER_ACCOUNT}:layer:"
            f"AWSLambdaPowertoolsPythonV3-{_runtime_tag()}-{ARCHITECTURE.name}:"
            f"{_layer_version(scope, POWERTOOLS_CONTEXT_KEY, POWERTOOLS_LAYER_VERSION)}",
        )]
    all_layers.extend(layers)
    function = lambda_.Function(
        scope,
        construct_id,
        runtime=RUNTIME,
        architecture=ARCHITECTURE,
        handler="index.handler",
        code=code,
        description=description,
        memory_size=memory_size,
        ephemeral_storage_size=(Size.mebibytes(ephemeral_storage_size)
                                if ephemeral_storage_size is not None else None),
        timeout=timeout or seconds(60),
        tracing=lambda_.Tracing.ACTIVE,
        log_group=log_group,
        environment={
            "POWERTOOLS_SERVICE_NAME": source.name,
            "POWERTOOLS_LOG_LEVEL": "INFO",
            # The handler bounds its scratch (DuckDB's spill) by what it has.
            **({"MDLC_EPHEMERAL_STORAGE_MB": str(ephemeral_storage_size)}
               if ephemeral_storage_size is not None else {}),
            **dict(environment or {}),
        },
        environment_encryption=key,
        reserved_concurrent_executions=reserved_concurrent_executions,
        dead_letter_queue=dead_letter_queue,
        layers=all_layers,
        vpc=network.vpc if network else vpc,
        vpc_subnets=network.subnets if network else (
            ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS) if vpc else None),
        security_groups=network.function_security_groups if network else None,
    )
    reasons = {
        # X-Ray's PutTraceSegments has no resource-level permissions.
        iam5_resource("*"): "X-Ray PutTraceSegments/PutTelemetryRecords do "
        "not support resource-level permissions (added by tracing=ACTIVE)",
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AWSLambdaBasicExecutionRole]": "The AWS-managed basic execution policy only "
        "allows writing this function's logs",
    }
    if vpc is not None or network is not None:
        reasons["AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaVPCAccessExecutionRole]"] = (
            "The AWS-managed policy Lambda documents for functions in a VPC: managing the "
            "function's own network interfaces (EC2 has no resource-level scope for them)")
    else:
        reasons["PCI.DSS.321-LambdaInsideVPC"] = (
            "The handler calls only AWS APIs over TLS and reaches no private network; "
            "give the stack a network (spec network:, ModelNetwork) to run it in private "
            "subnets"
        )
    if reserved_concurrent_executions is None:
        reasons["PCI.DSS.321-LambdaConcurrency"] = (
            "Concurrency is bounded by the caller (a workflow, a schedule or a stream's "
            "shards); reserved_concurrent_executions caps it where a downstream needs it"
        )
    if dead_letter_queue is None:
        reasons["PCI.DSS.321-LambdaDLQ"] = (
            "Invoked synchronously or by an event source mapping, whose caller owns "
            "retries and failure destinations"
        )
    acknowledge_all(function, reasons)
    acknowledge_grant_actions(function)
    return function
