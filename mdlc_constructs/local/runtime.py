"""The local cloud: a synthesized assembly deployed on moto and run in process.

:class:`LocalCloud` is the entry point. As a context manager it starts moto
(Step Functions executing ASL), the simulated clock and the service hooks,
then creates every stack of the assembly in dependency order::

    with LocalCloud("cdk.out", start=datetime(2026, 11, 2, tzinfo=UTC)) as cloud:
        run = cloud.start_execution("Mdlc-fraud", "DataWorkflow99701C93", {"date": "2026-11-01"})
        print(cloud.wait(run))          # {"status": "SUCCEEDED", "output": {...}, ...}
        cloud.advance_to(datetime(2026, 11, 3, 8, tzinfo=UTC))   # schedules fire

What runs for real, what is a stand-in and every known difference from AWS:
docs/local.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import moto_speedups
from .alarms import Alarm, AlarmEvaluator
from .assembly import ACCOUNT, REGION, Assembly, Resolver
from .clock import SimulatedClock
from .dynamodb import FastItems, LocalTransactions
from .events import EventBus, Rule
from .functions import FunctionError, LambdaRuntime, LocalFunction
from .hooks import ServiceError, ServiceHooks, streaming
from .kinesis import EventSourceMapping, StreamPoller
from .permissions import Authorizer, Need, PolicyStore, needs
from .principals import Principals
from .resources import Deployed, ResourceFactory, raw_client
from .s3 import FastObjects
from .sagemaker import SageMakerLocal
from .sqs import MessageLimits
from .stepfunctions import SYNC_TASKS, install_aws_semantics, sync_function_name

_TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


@dataclass
class Execution:
    arn: str
    machine: str  # logical id
    stack: str
    started_by: str
    input: dict[str, Any]
    status: str = "RUNNING"
    output: Any = None
    error: str | None = None
    cause: str | None = None
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat())


_EVENTS = "events.amazonaws.com"


def _as_task_error(run: Any) -> Any:
    """A SageMaker error inside a ``.sync`` stand-in (a denied call among them) fails
    the task as the integration does: ``SageMaker.<code>``."""
    def task(event: Any, context: Any = None) -> Any:
        try:
            return run(event, context)
        except ServiceError as error:
            raise FunctionError(f"SageMaker.{error.code}", error.message) from None
    return task


class LocalCloud:
    """A synthesized cloud assembly, deployed locally; see the module docstring."""

    def __init__(self, assembly: str | Path | Assembly, *, start: datetime,
                 stacks: list[str] | None = None, scratch: Path | None = None) -> None:
        self.assembly = assembly if isinstance(assembly, Assembly) else Assembly(assembly)
        self.stack_names = stacks
        self.clock = SimulatedClock(start)
        self.hooks = ServiceHooks()
        #: DynamoDB's item operations, answered in process (see ``dynamodb.py``).
        self.items = FastItems()
        self._own_scratch = scratch is None
        self.scratch = Path(scratch or tempfile.mkdtemp(prefix="mdlc-local-"))
        #: Who calls, each caller's policies, and the check of every call (permissions.py).
        self.principals = Principals()
        self.permissions = PolicyStore()
        self.authorizer = Authorizer(self.permissions, self.principals)
        self.lambdas = LambdaRuntime()
        self.lambdas.principals, self.lambdas.authorizer = self.principals, self.authorizer
        self.bus = EventBus(self._deliver)
        self.streams = StreamPoller(self.lambdas, authorize=self.authorize)
        self.alarms = AlarmEvaluator(self.bus.put, authorize=self.authorize)
        self.sagemaker = SageMakerLocal(scratch=self.scratch, emit_event=self.bus.put,
                                        authorizer=self.authorizer)
        self.deployed: dict[str, Deployed] = {}
        self.executions: dict[str, Execution] = {}
        self.notifications: list[dict[str, Any]] = []
        #: Functions EventBridge invoked: rule, function, status, error, started_by, time.
        self.function_runs: list[dict[str, Any]] = []
        self._cause = threading.local()
        self._mock: Any = None
        self._clients: dict[str, Any] = {}
        self._schedules_until = start.astimezone(UTC)
        self._saved_environ: dict[str, str] = {}

    # -- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> LocalCloud:
        from moto import mock_aws

        install_aws_semantics()
        moto_speedups.install()
        # moto logs every state of a failing execution at length; the report and
        # the functions' logs say what failed.
        for name in ("moto", "botocore.credentials"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self._saved_environ = dict(os.environ)
        os.environ.update(_CREDENTIALS)
        self.clock.start()
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        self.hooks.install()
        self.principals.install()
        self.hooks.guard = self.authorizer.check_call
        self._install_hooks()
        try:
            self._deploy()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_: object) -> None:
        with contextlib.suppress(Exception):  # the run is over; report what finished
            self.wait_all(timeout=30)
        self.hooks.uninstall()
        self.hooks.guard = None
        self.principals.uninstall()
        self.items.uninstall()
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        self.clock.stop()
        os.environ.clear()
        os.environ.update(self._saved_environ)
        if self._own_scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def _install_hooks(self) -> None:
        self.hooks.add("lambda", "Invoke", self._invoke)
        self.hooks.add("sns", "Publish", self._publish)
        self.hooks.add("sfn", "StartExecution", self._start_execution_hook)
        self.sagemaker.install(self.hooks)
        self.bus.install(self.hooks)
        self.streams.install(self.hooks)
        self.alarms.install(self.hooks)
        self.items.install(self.hooks)
        FastObjects().install(self.hooks)
        MessageLimits().install(self.hooks)
        LocalTransactions(self.items).install(self.hooks)
        for operation, run in (("createTrainingJob", self.sagemaker.run_training_job),
                               ("createTransformJob", self.sagemaker.run_transform_job),
                               ("createProcessingJob", self._processing_job)):
            assert f"sagemaker:{operation}.sync" in SYNC_TASKS
            name = sync_function_name(operation)
            self.lambdas.register(LocalFunction(
                name=name, arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
                logical_id=name, stack="local", handler="builtin", code=None, environment={},
                timeout=86400, memory=0, role_arn=None, builtin=_as_task_error(run)))
        from . import emr_serverless

        emr_serverless.install(self)

    # -- deployment -----------------------------------------------------------------

    def _deploy(self) -> None:
        exports: dict[str, Any] = {}
        outputs: dict[str, Mapping[str, Any]] = {}
        for stack in self.assembly.ordered(self.stack_names):
            deployed = Deployed(stack=stack,
                                resolver=Resolver(stack, exports=exports, outputs=outputs))
            ResourceFactory(deployed, raw_client).create_all()
            self.deployed[stack.name] = deployed
            self.permissions.add_stack(deployed)
            self._check_log_group_keys(deployed)
            outputs[stack.name] = deployed.resolver.output_values()
            for output in stack.template.get("Outputs", {}).values():
                if "Export" in output:
                    name = deployed.resolver.resolve(output["Export"]["Name"])
                    exports[name] = deployed.resolver.resolve(output["Value"])
            self._register_network(deployed)
            self._register_functions(deployed)
            self._register_rules(deployed)
            self._register_mappings(deployed)
            self._register_alarms(deployed)

    def _register_network(self, deployed: Deployed) -> None:
        """The subnets and security groups a job's VpcConfig may name."""
        for kind in ("AWS::EC2::Subnet", "AWS::EC2::SecurityGroup"):
            for logical_id, props in deployed.of_type(kind).items():
                resource_id = deployed.resolver.attributes[logical_id]["Ref"]
                self.authorizer.add_network(str(props.get("VpcId")), [resource_id])

    def _register_functions(self, deployed: Deployed) -> None:
        for logical_id, props in deployed.of_type("AWS::Lambda::Function").items():
            attributes = deployed.resolver.attributes[logical_id]
            key = props.get("Code", {}).get("S3Key")
            code = deployed.stack.assets.get(key) if key else None
            if code is None or not code.is_dir():
                raise ServiceError("InvalidParameterValueException",
                                   f"{deployed.stack.name}/{logical_id}: no code asset folder "
                                   f"for {key!r} (inline code is not run locally)")
            self.lambdas.register(LocalFunction(
                name=attributes["Ref"], arn=attributes["Arn"], logical_id=logical_id,
                stack=deployed.stack.name, handler=props.get("Handler", "index.handler"),
                code=code,
                environment={k: str(v) for k, v in
                             props.get("Environment", {}).get("Variables", {}).items()},
                timeout=int(props.get("Timeout", 3)), memory=int(props.get("MemorySize", 128)),
                role_arn=props.get("Role"),
            ))

    def _register_rules(self, deployed: Deployed) -> None:
        for logical_id, props in deployed.of_type("AWS::Events::Rule").items():
            attributes = deployed.resolver.attributes[logical_id]
            if props.get("EventBusName", "default") not in ("default", None):
                continue
            self.bus.add_rule(Rule(
                stack=deployed.stack.name, logical_id=logical_id, name=attributes["Ref"],
                arn=attributes["Arn"], pattern=props.get("EventPattern"),
                schedule=props.get("ScheduleExpression"), targets=props.get("Targets", []),
                enabled=props.get("State", "ENABLED") == "ENABLED",
                created=self.clock.now(),
            ))

    def _register_mappings(self, deployed: Deployed) -> None:
        for logical_id, props in deployed.of_type("AWS::Lambda::EventSourceMapping").items():
            source = props.get("EventSourceArn", "")
            if ":kinesis:" not in source:
                continue
            self.streams.add(EventSourceMapping(
                uuid=logical_id, function=props["FunctionName"], stream_arn=source,
                batch_size=int(props.get("BatchSize", 100)),
                bisect=bool(props.get("BisectBatchOnFunctionError")),
                max_retries=int(props.get("MaximumRetryAttempts", -1)),
                max_age_seconds=int(props.get("MaximumRecordAgeInSeconds", -1)),
                report_failures="ReportBatchItemFailures" in props.get(
                    "FunctionResponseTypes", []),
                on_failure=props.get("DestinationConfig", {}).get("OnFailure", {}).get(
                    "Destination"),
                starting_position=props.get("StartingPosition", "TRIM_HORIZON"),
                enabled=props.get("Enabled", True),
            ))

    def _register_alarms(self, deployed: Deployed) -> None:
        for kind, composite in (("AWS::CloudWatch::Alarm", False),
                                ("AWS::CloudWatch::CompositeAlarm", True)):
            for logical_id, props in deployed.of_type(kind).items():
                attributes = deployed.resolver.attributes[logical_id]
                self.alarms.add(Alarm(name=attributes["Ref"], arn=attributes["Arn"],
                                      properties=props, composite=composite))

    # -- lookups --------------------------------------------------------------------

    def physical(self, stack: str, logical_id: str) -> Any:
        return self.deployed[stack].physical[logical_id]

    def asset(self, uri: str) -> Path | None:
        """The local file or folder of the asset object ``uri`` names
        (``s3://<assets bucket>/<hash>.<ext>``) in any deployed stack, or None:
        what a job's code input would download."""
        key = uri.rsplit("/", 1)[-1]
        for deployed in self.deployed.values():
            path = deployed.stack.assets.get(key)
            if path is not None and path.exists():
                return path
        return None

    def machine_logical_id(self, arn: str) -> tuple[str, str]:
        for name, deployed in self.deployed.items():
            for logical_id, physical in deployed.physical.items():
                if physical == arn:
                    return name, logical_id
        return "", arn

    # -- service hooks ----------------------------------------------------------------

    def _invoke(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["FunctionName"]
        try:
            self.lambdas.get(name)
        except KeyError:
            raise ServiceError("ResourceNotFoundException",
                               f"Function not found: {name}", status=404) from None
        payload = params.get("Payload", b"")
        payload = payload.encode() if isinstance(payload, str) else (
            payload.read() if hasattr(payload, "read") else payload)
        invocation = self.lambdas.invoke(name, payload)
        if params.get("InvocationType") == "Event":
            return {"StatusCode": 202, "Payload": streaming(b"")}
        response: dict[str, Any] = {"StatusCode": 200, "ExecutedVersion": "$LATEST",
                                    "Payload": streaming(invocation.payload)}
        if invocation.error:
            response["FunctionError"] = invocation.error
        return response

    def _publish(self, params: dict[str, Any]) -> dict[str, Any]:
        self.notifications.append({
            "topic": params.get("TopicArn") or params.get("TargetArn"),
            "subject": params.get("Subject"),
            "message": params.get("Message"),
            "time": datetime.now(UTC).isoformat(),
        })
        response = raw_client("sns").publish(**params)
        response.pop("ResponseMetadata", None)
        return response

    def _start_execution_hook(self, params: dict[str, Any]) -> dict[str, Any]:
        self._check_execution_role(str(params.get("stateMachineArn", "")))
        # Step Functions names an unnamed execution with a UUID.
        params = {"name": str(uuid.uuid4()), **params}
        response = raw_client("stepfunctions").start_execution(**params)
        stack, logical_id = self.machine_logical_id(params["stateMachineArn"])
        self.executions[response["executionArn"]] = Execution(
            arn=response["executionArn"], machine=logical_id, stack=stack,
            started_by=getattr(self._cause, "value", None) or "manual",
            input=json.loads(params.get("input") or "{}"),
        )
        response.pop("ResponseMetadata", None)
        response["startDate"] = datetime.now(UTC)
        return response

    def authorize(self, principal: str | None, service: str, operation: str,
                  params: dict[str, Any], *, source: str | None = None) -> None:
        """Check one call ``principal`` makes outside the hooks (a service acting for a
        resource, a stand-in acting as a job's role); raises the service's AccessDenied."""
        self.authorizer.check(principal, service, operation,
                              needs(self.permissions, service, operation, params), source=source)

    def _check_log_group_keys(self, deployed: Deployed) -> None:
        """CloudWatch Logs encrypts a log group with its key as its service principal,
        under the group's ARN as encryption context; the key policy must allow that,
        or creating the group fails (AccessDeniedException), as on AWS."""
        service = f"logs.{REGION}.amazonaws.com"
        for logical_id, props in deployed.of_type("AWS::Logs::LogGroup").items():
            key = self.permissions.key_arn(props.get("KmsKeyId"))
            if not key:
                continue
            group = deployed.resolver.attributes[logical_id]["Arn"].removesuffix(":*")
            context = {"kms:EncryptionContext:aws:logs:arn": group}
            self.authorizer.check(service, "logs", "CreateLogGroup", [
                Need.of(action, key, context, kind="kms", kms=True)
                for action in ("kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom",
                               "kms:GenerateDataKey")], source=group)

    def _check_execution_role(self, machine: str) -> None:
        """An execution runs as its machine's role: Step Functions must be trusted to
        assume it, and it must be able to use the machine's key (the execution's data
        is encrypted with it under the machine's ARN as encryption context)."""
        try:
            role = raw_client("stepfunctions").describe_state_machine(
                stateMachineArn=machine)["roleArn"]
        except Exception:  # an unknown machine: StartExecution itself says so
            return
        self.authorizer.check_assume(role, "states.amazonaws.com", source=machine)
        key = self.permissions.key_of(machine)
        if key:
            context = {"kms:ViaService": f"states.{REGION}.amazonaws.com",
                       "kms:CallerAccount": ACCOUNT,
                       "kms:EncryptionContext:aws:states:stateMachineArn": machine}
            self.authorizer.check(role, "sfn", "StartExecution", [
                Need.of(action, key, context, kind="kms", kms=True)
                for action in ("kms:GenerateDataKey", "kms:Decrypt")])

    def _processing_job(self, params: dict[str, Any], context: Any = None) -> dict[str, Any]:
        from .processing import run_processing_job

        return run_processing_job(self, params)

    # -- events -----------------------------------------------------------------------

    def _deliver(self, target: dict[str, Any], payload: Any, rule: Rule) -> None:
        arn = str(target["Arn"])
        previous = getattr(self._cause, "value", None)
        source = "schedule" if rule.schedule else (
            "alarm" if (rule.pattern or {}).get("source") == ["aws.cloudwatch"] else "event")
        self._cause.value = source
        try:
            body = json.dumps(payload)
            if ":states:" in arn and ":stateMachine:" in arn:
                # EventBridge assumes the target's role and starts the execution as it.
                role = target.get("RoleArn")
                if role:
                    self.authorizer.check_assume(str(role), "events.amazonaws.com",
                                                 source=rule.arn)
                with self.principals.acting_as(str(role) if role else _EVENTS, source=rule.arn):
                    self.client("stepfunctions").start_execution(stateMachineArn=arn,
                                                                 input=body)
            elif ":lambda:" in arn:
                # Invoked by the service, as the function's resource policy allows.
                self.authorize(_EVENTS, "lambda", "Invoke", {"FunctionName": arn},
                               source=rule.arn)
                invocation = self.lambdas.invoke(arn, body.encode())
                function = self.lambdas.get(arn)
                failure = json.loads(invocation.payload) if invocation.error else {}
                self.function_runs.append({
                    "rule": rule.name, "stack": function.stack, "function": function.logical_id,
                    "status": "FAILED" if invocation.error else "SUCCEEDED",
                    "error": failure.get("errorType"), "cause": failure.get("errorMessage"),
                    "started_by": source, "started_at": datetime.now(UTC).isoformat(),
                    "output": None if invocation.error else json.loads(invocation.payload),
                })
            elif ":sns:" in arn:
                with self.principals.acting_as(_EVENTS, source=rule.arn):
                    self.client("sns").publish(TopicArn=arn, Message=body)
            elif ":sqs:" in arn:
                self.authorize(_EVENTS, "sqs", "SendMessage", {"QueueUrl": arn},
                               source=rule.arn)
                sqs = raw_client("sqs")
                sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[1])[
                    "QueueUrl"], MessageBody=body)
            else:
                raise ValueError(f"target {arn} has no local delivery")
        finally:
            self._cause.value = previous

    def client(self, service: str) -> Any:
        """A client that goes through the local hooks, as a handler's would."""
        import boto3

        if service not in self._clients:
            self._clients[service] = boto3.client(service, region_name=REGION)
        return self._clients[service]

    def start_execution(self, stack: str, logical_id: str, payload: dict[str, Any] | None = None,
                        *, started_by: str = "manual") -> str:
        arn = self.physical(stack, logical_id)
        self._cause.value = started_by
        try:
            response = self.client("stepfunctions").start_execution(
                stateMachineArn=arn, input=json.dumps(payload or {}))
        finally:
            self._cause.value = None
        return response["executionArn"]

    # -- running ------------------------------------------------------------------------

    def _refresh(self, execution: Execution) -> None:
        description = raw_client("stepfunctions").describe_execution(executionArn=execution.arn)
        execution.status = description["status"]
        if execution.status in _TERMINAL:
            output = description.get("output")
            execution.output = json.loads(output) if output else None
            execution.error = description.get("error")
            execution.cause = description.get("cause")
            if execution.status == "FAILED" and execution.error is None:
                error, cause = self._failure_from_history(execution.arn)
                execution.error, execution.cause = error, cause
            self.bus.put({
                "source": "aws.states",
                "detail-type": "Step Functions Execution Status Change",
                "resources": [execution.arn],
                "detail": {"executionArn": execution.arn, "status": execution.status,
                           "stateMachineArn": self.physical(execution.stack, execution.machine)
                           if execution.stack else None},
            })

    @staticmethod
    def _failure_from_history(arn: str) -> tuple[str | None, str | None]:
        events = raw_client("stepfunctions").get_execution_history(
            executionArn=arn, reverseOrder=True)["events"]
        for event in events:
            details = event.get("executionFailedEventDetails")
            if details:
                return details.get("error"), details.get("cause")
        return None, None

    def wait(self, arn: str, *, timeout: float = 300) -> Execution:
        """Wait for one execution to end; returns it."""
        execution = self.executions[arn]
        deadline = time.monotonic() + timeout
        ended = self.principals.execution_ended
        while execution.status == "RUNNING":
            seen = self.principals.ended
            # Asked of moto's interpreter in process: a DescribeExecution per poll
            # costs a millisecond; the call is made once the run has ended.
            if not self._still_running(arn):
                self._refresh(execution)
            if execution.status != "RUNNING":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{arn} still running after {timeout} s")
            # Sleep until an execution's thread ends (polling every few
            # milliseconds took the interpreter's thread off the GIL as often);
            # the timeout covers an end that is not a thread's (a stop).
            with ended:
                ended.wait_for(lambda seen=seen: self.principals.ended != seen, timeout=0.05)
        return execution

    @staticmethod
    def _still_running(arn: str) -> bool:
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        try:
            found = stepfunctions_parser_backends[ACCOUNT][REGION].describe_execution(arn)
            status = found.exec_status
        except Exception:  # anything unexpected: ask through the API instead
            return False
        return getattr(status, "value", status) == "RUNNING"

    def running(self) -> list[Execution]:
        return [e for e in self.executions.values() if e.status == "RUNNING"]

    def wait_all(self, *, timeout: float = 600) -> None:
        while self.running():
            for execution in self.running():
                self.wait(execution.arn, timeout=timeout)

    def settle(self) -> None:
        """Run until nothing is left to do: streams drained, executions ended."""
        while True:
            delivered = self.streams.poll()
            pending = self.running()
            self.wait_all()
            if not delivered and not pending:
                return

    def advance_to(self, moment: datetime) -> None:
        """Move the clock to ``moment``, firing each schedule due on the way, in order.

        A schedule due at ``moment`` itself fires; each fires once, however the
        clock moved before (it keeps flowing between moves).
        """
        end = moment.astimezone(UTC) + timedelta(seconds=1)
        if end <= self._schedules_until:
            return
        for when, rule in self.bus.fire_schedules(self._schedules_until, end):
            self.settle()
            self.clock.advance_to(when)
            self.bus.scheduled_event(rule, when)
            self.settle()
        self._schedules_until = end
        self.clock.advance_to(moment)
        self.settle()
