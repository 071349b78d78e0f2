"""State machines on moto's ASL interpreter, made to behave as AWS does.

The definition each state machine gets locally is the synthesized one with
three rewrites (:func:`local_definition`), each recorded so the report can
say what changed:

* a SageMaker ``.sync`` task (``createTrainingJob.sync``,
  ``createTransformJob.sync``, ``createProcessingJob.sync``) becomes a task on
  a local function that runs the job to its end and returns what the
  optimized integration returns (the ``Describe*`` result); moto refuses
  ``.sync`` for SageMaker ("Unsupported sync callback procedure");
* ``Wait`` states wait no wall-clock time (the simulated clock does not
  stop for them);
* ``Retry`` intervals shrink to one second with no backoff, so a retried
  step costs seconds, while the attempts, and which errors retry, stay.

Where moto is more lenient than AWS, :func:`install_aws_semantics` patches
its interpreter, which has no public hook for either:

* ``States.ALL`` does not catch ``States.Runtime`` (AWS: "A retry or catch on
  States.ALL won't catch States.Runtime errors");
* AWS SDK integration errors carry AWS's service names
  (``SageMaker.ResourceNotFoundException``, not ``sagemaker.…``);
* AWS SDK integrations whose Step Functions name differs from boto3's
  (``applicationautoscaling``) reach the service;
* ``$$.Execution.StartTime`` is ISO 8601 text, not a ``datetime``.

Both patches check the pinned moto version and the patched names first and
fail loudly otherwise; ``tests/test_local_runtime.py`` checks them too.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from typing import Any

#: The moto release the patches below were written against (pyproject pins it).
MOTO_VERSION = "5.2.5"

#: Optimized SageMaker integrations that wait for the job: the local function
#: that stands in for each.
SYNC_TASKS = {
    "sagemaker:createTrainingJob.sync": "createTrainingJob",
    "sagemaker:createTransformJob.sync": "createTransformJob",
    "sagemaker:createProcessingJob.sync": "createProcessingJob",
    # Not SageMaker, but waited for the same way (emr_serverless.py).
    "emr-serverless:startJobRun.sync": "emrServerlessStartJobRun",
}

#: How Step Functions names the services of AWS SDK integrations in error
#: names (``<Service>.<Exception>``), after the AWS SDK for Java v2 clients
#: the integrations are built on.
SERVICE_ERROR_NAMES = {
    "sagemaker": "SageMaker",
    "applicationautoscaling": "ApplicationAutoScaling",
    "s3": "S3",
    "sns": "Sns",
    "sqs": "Sqs",
    "dynamodb": "DynamoDb",
    "sfn": "Sfn",
    "kinesis": "Kinesis",
    "lambda": "Lambda",
    "eventbridge": "EventBridge",
    "cloudwatch": "CloudWatch",
    "kms": "Kms",
    "codebuild": "CodeBuild",
}


#: AWS SDK integration service names that differ from boto3's.
SERVICE_CLIENT_NAMES = {
    "applicationautoscaling": "application-autoscaling",
    "sagemakerruntime": "sagemaker-runtime",
    "eventbridge": "events",
    "cloudwatchlogs": "logs",
}


def sync_function_name(operation: str) -> str:
    return f"mdlc-local-sagemaker-{operation}"


def _states(definition: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for state in definition.get("States", {}).values():
        yield state
        for branch in state.get("Branches", []):
            yield from _states(branch)
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from _states(state[key])


def local_definition(definition: dict[str, Any], *, region: str, account: str
                     ) -> tuple[dict[str, Any], list[str]]:
    """The definition to run locally, and a line per rewrite made."""
    definition = copy.deepcopy(definition)
    rewrites: list[str] = []
    for state in _states(definition):
        resource = state.get("Resource", "")
        if isinstance(resource, str) and ":states:::" in resource:
            integration = resource.split(":states:::", 1)[1]
            if integration in SYNC_TASKS:
                name = sync_function_name(SYNC_TASKS[integration])
                state["Resource"] = f"arn:aws:lambda:{region}:{account}:function:{name}"
                rewrites.append(f"{integration} -> local stand-in {name}")
        if state.get("Type") == "Wait":
            for key in ("SecondsPath", "Timestamp", "TimestampPath", "Seconds"):
                state.pop(key, None)
            state["Seconds"] = 0
            rewrites.append("Wait -> no wall-clock wait")
        for retrier in state.get("Retry", []):
            retrier["IntervalSeconds"] = 1
            retrier["BackoffRate"] = 1
            retrier.pop("MaxDelaySeconds", None)
            retrier.pop("JitterStrategy", None)
    return definition, sorted(set(rewrites))


class MotoVersionError(RuntimeError):
    """The installed moto is not the one the AWS-semantics patches were written for."""


_INSTALLED = False


def install_aws_semantics() -> None:
    """Make moto's interpreter follow AWS where it is more lenient (module docstring)."""
    global _INSTALLED
    import moto

    if moto.__version__ != MOTO_VERSION:
        raise MotoVersionError(
            f"mdlc_constructs.local patches moto {MOTO_VERSION}'s Step Functions interpreter; "
            f"moto {moto.__version__} is installed. Install moto=={MOTO_VERSION} "
            "(pip install 'mdlc-constructs[local]') or re-check the patches in "
            "mdlc_constructs/local/stepfunctions.py against the new release."
        )
    from moto.stepfunctions.parser.asl.component.common.error_name import error_equals_decl
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
        StatesErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service as task_service,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk as aws_sdk,
    )

    decl = error_equals_decl.ErrorEqualsDecl
    names = getattr(aws_sdk, "_SERVICE_ERROR_NAMES", None)
    clients = getattr(task_service.StateTaskService, "_SERVICE_NAME_SFN_TO_BOTO_OVERRIDES", None)
    if not hasattr(decl, "_eval_body") or not isinstance(names, dict) or not isinstance(
            clients, dict):
        raise MotoVersionError("moto's ErrorEqualsDecl._eval_body, _SERVICE_ERROR_NAMES or "
                               "StateTaskService._SERVICE_NAME_SFN_TO_BOTO_OVERRIDES moved")
    # Shared tables: (re)applied on every call, as other code may edit them.
    names.update({k.lower(): v for k, v in SERVICE_ERROR_NAMES.items()})
    clients.update(SERVICE_CLIENT_NAMES)
    if _INSTALLED:
        return
    original = decl._eval_body  # noqa: SLF001
    runtime = StatesErrorName(typ=StatesErrorNameType.StatesRuntime)

    def eval_body(self: Any, env: Any) -> None:
        error_name = env.stack[-1]
        if error_name == runtime and decl._STATE_ALL_ERROR in self.error_names:  # noqa: SLF001
            env.stack.pop()
            env.stack.append(False)
            return
        original(self, env)

    decl._eval_body = eval_body  # noqa: SLF001
    _report_sync_failures_as_task_failed()
    _propagate_states_errors()
    _definite_paths_select_one_value()
    _sdk_timestamps_as_text(aws_sdk.StateTaskServiceAwsSdk)
    _context_start_time_as_text()
    _reuse_sdk_clients()
    _INSTALLED = True


def _context_start_time_as_text() -> None:
    """``$$.Execution.StartTime`` is ISO 8601 text (``2026-11-02T07:00:00.000Z``), as in AWS.

    moto puts the execution's ``datetime`` in the context object (its own type
    says ``str``), so ``States.StringSplit($$.Execution.StartTime, 'T')`` fails
    with a TypeError where AWS splits the text.
    """
    from datetime import UTC, datetime

    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    original = ExecutionWorker._get_evaluation_environment  # noqa: SLF001

    def environment(self: Any) -> Any:
        env = original(self)
        execution = env.states.context_object.context_object_data["Execution"]
        value = execution.get("StartTime")
        if isinstance(value, datetime):
            stamp = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
            execution["StartTime"] = stamp.isoformat(timespec="milliseconds").replace(
                "+00:00", "Z")
        return env

    ExecutionWorker._get_evaluation_environment = environment  # noqa: SLF001


#: Source digest of moto 5.2.5's ``boto_client_for``, which ignores ``state_credentials``.
_BOTO_CLIENT_FOR_DIGEST = "1f44dc2ac8aa2179"


def _reuse_sdk_clients() -> None:
    """One boto3 client per service for the interpreter's tasks, not one per task.

    moto builds a new client for every Task state it runs (``boto_client_for``),
    and a botocore client costs about 10 ms to create: more than most calls it
    makes. moto 5.2.5's ``boto_client_for`` builds the same client whatever the
    task's ``StateCredentials`` (every task has them: the execution's role, or
    its ``Credentials`` field), so one client per service serves every task;
    who calls is the thread's principal (``principals.py``), as before. The
    clients are dropped when boto3's default session changes (a new
    :class:`~mdlc_constructs.local.runtime.LocalCloud`).
    """
    import sys

    import boto3
    import moto.stepfunctions.parser.backend.execution_worker  # noqa: F401  (loads the tasks)
    from moto.stepfunctions.parser.asl.utils import boto_client

    from .moto_speedups import source_digest

    original = boto_client.boto_client_for
    if source_digest(original) != _BOTO_CLIENT_FOR_DIGEST:
        raise MotoVersionError("moto's boto_client_for changed (it may now use the task's "
                               "credentials): re-check _reuse_sdk_clients")
    users = [module for name, module in list(sys.modules.items())
             if name.startswith("moto.stepfunctions.parser")
             and getattr(module, "boto_client_for", None) is original]
    if len(users) < 2:  # the defining module and at least the AWS SDK task
        raise MotoVersionError("moto's Step Functions tasks no longer call boto_client_for")
    cache: dict[tuple[Any, ...], Any] = {}
    lock = threading.Lock()

    def cached(region: str, service: str, state_credentials: Any = None) -> Any:
        key = (id(boto3.DEFAULT_SESSION), region, service)
        with lock:
            if key not in cache:
                if any(k[0] != key[0] for k in cache):
                    cache.clear()
                cache[key] = original(region, service)
            return cache[key]

    for module in users:
        module.boto_client_for = cached  # type: ignore[attr-defined]


def _sdk_timestamps_as_text(task: Any) -> None:
    """Timestamps and bodies in an AWS SDK task's result are JSON text, as in AWS.

    boto3 parses timestamps into ``datetime`` objects and leaves an S3 body a
    stream, which moto leaves in the state: the timestamps break
    ``DescribeExecution`` once they reach the output, and ``States.StringToJson($.Body)``
    fails on the stream, where AWS passes the body as a string.
    """
    from datetime import UTC, datetime

    def text(value: Any) -> Any:
        if isinstance(value, datetime):
            stamp = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
            return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if hasattr(value, "read"):  # S3 GetObject's Body: the integration returns the text
            return value.read().decode("utf-8", errors="replace")
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        if isinstance(value, dict):
            return {k: text(v) for k, v in value.items()}
        if isinstance(value, list):
            return [text(v) for v in value]
        return value

    original = task._eval_service_task  # noqa: SLF001

    def eval_service_task(self: Any, env: Any, *args: Any, **kwargs: Any) -> None:
        original(self, env, *args, **kwargs)
        env.stack.append(text(env.stack.pop()))

    task._eval_service_task = eval_service_task  # noqa: SLF001


def _definite_paths_select_one_value() -> None:
    """``$.packages[0].ModelPackageArn`` is one value, as in AWS, not a list of one.

    moto returns a list whenever the last match's parent is an array index
    (a fix for getmoto/moto#7825); AWS returns an array only for paths with a
    wildcard, slice or filter. moto's modules import ``extract_json`` by name,
    so each module's reference is replaced.
    """
    import importlib
    import pkgutil
    import re
    import sys

    import moto.stepfunctions.parser as parser
    from moto.stepfunctions.parser.asl.utils import json_path

    # Every module that may hold a reference, loaded before it is replaced.
    for info in pkgutil.walk_packages(parser.__path__, prefix=f"{parser.__name__}."):
        try:
            importlib.import_module(info.name)
        except ImportError:  # parts of the LocalStack port moto does not ship
            continue
    original = json_path.extract_json
    indefinite = re.compile(r"\*|\?\(|:|\.\.")

    def extract_json(path: str, data: Any) -> Any:
        value = original(path, data)
        if isinstance(value, list) and not indefinite.search(path):
            # The module's parser, as moto's extract_json uses it (moto_speedups caches it).
            matches = json_path.parse(path).find(data)
            if len(matches) == 1:
                return matches[0].value
        return value

    replaced = 0
    for name, module in list(sys.modules.items()):
        if name.startswith("moto.stepfunctions.parser") and getattr(
                module, "extract_json", None) is original:
            module.extract_json = extract_json  # type: ignore[attr-defined]
            replaced += 1
    if replaced == 0:
        raise MotoVersionError("moto.stepfunctions.parser no longer uses extract_json")


def _propagate_states_errors() -> None:
    """A ``States.*`` error out of a Parallel branch or a Map iteration keeps its name.

    AWS fails the Parallel (or Map) state with the branch's error, e.g.
    ``States.TaskFailed``, which the state's Catch then sees; moto re-wraps
    it as a custom error name, which refuses the ``States.`` prefix.
    """
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
        CustomErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
        StatesErrorName,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        iteration_worker,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import branches_decl

    def error_name(error_name: str | None = None) -> Any:
        if error_name is not None and error_name.startswith("States."):
            return StatesErrorName.from_name(error_name)
        return CustomErrorName(error_name=error_name)

    for module in (branches_decl, iteration_worker):
        if getattr(module, "CustomErrorName", None) is not CustomErrorName:
            raise MotoVersionError(f"{module.__name__} no longer names errors with "
                                   "CustomErrorName; re-check the patch")
        module.CustomErrorName = error_name  # type: ignore[attr-defined]


def _report_sync_failures_as_task_failed() -> None:
    """A local ``.sync`` stand-in that fails reports ``States.TaskFailed``, as AWS's does.

    The stand-ins are reached as Lambda tasks (see :func:`local_definition`),
    whose error name moto takes from the payload's ``errorType`` and refuses
    when it starts with ``States.``.
    """
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
        StatesErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import (
        lambda_eval_utils,
        state_task_lambda,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    task = state_task_lambda.StateTaskLambda
    original = task._from_error  # noqa: SLF001

    def from_error(self: Any, env: Any, ex: Exception) -> Any:
        if isinstance(ex, lambda_eval_utils.LambdaFunctionErrorException):
            try:
                payload = json.loads(ex.payload)
            except ValueError:
                payload = {}
            if payload.get("errorType") == "States.TaskFailed":
                cause = str(payload.get("errorMessage", ""))
                return FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                    event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(
                        error="States.TaskFailed", cause=cause,
                        resource=self.resource.resource_arn, resourceType="sagemaker")),
                )
        return original(self, env, ex)

    task._from_error = from_error  # noqa: SLF001


def definition_json(definition: dict[str, Any]) -> str:
    return json.dumps(definition, separators=(",", ":"))
