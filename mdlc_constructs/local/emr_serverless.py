"""EMR Serverless, locally: applications from the template, job runs on local PySpark.

moto has no EMR Serverless and refuses ``.sync`` integrations, so the
``arn:aws:states:::emr-serverless:startJobRun.sync`` task of a synthesized
workflow becomes a built-in stand-in (:func:`run_job`) that behaves as the
Step Functions optimized integration documents it:

* **the caller's IAM** (the state machine's role, the integration's IAM page,
  "Run a Job", static resources): ``emr-serverless:StartJobRun`` on the
  application, ``GetJobRun`` and ``CancelJobRun`` on its job runs,
  ``events:PutTargets|PutRule|DescribeRule`` on
  ``StepFunctionsGetEventsForEMRServerlessJobRule`` and ``iam:PassRole`` of
  the execution role with ``iam:PassedToService: emr-serverless.amazonaws.com``;
* **the execution role**: EMR Serverless must be able to assume it for this
  application (``aws:SourceArn``, ``aws:SourceAccount``), and it must be able
  to read the entry point, the ``spark.submit.pyFiles`` archive and the
  ``spark.archives`` environment, which EMR Serverless fetches as that role;
* **the application** must exist (its id as deployed), in one VPC of subnets
  and security groups that exist when it has a network configuration;
* the request and response are StartJobRun's (``ApplicationId``, ``JobRunId``,
  ``Arn``), ``.sync`` waiting for the run: a run that fails fails the task
  with ``States.TaskFailed`` and the run's description (``State: FAILED``,
  ``StateDetails``) as the cause; ``ClientToken`` makes a repeated start the
  same run, as StartJobRun's idempotency token does.

The run itself is the entry-point asset (``mdlc_core/spark_job.py`` from
``cdk.out``) with the code archive's folder on ``sys.path``, called in process
with a PySpark session in local mode, calling S3 and CloudWatch as the
execution role. EMRFS, through which the executors read and write ``s3://``
objects on EMR Serverless, is :class:`mdlc_core.spark_io.Downloaded` here
(local Spark has no S3 file system): the objects the job hands Spark are
copied to a folder of the run as the execution role (its ``s3:GetObject``
is checked, as EMRFS's would be), and what the executors write there is
uploaded as that role, SSE-KMS with the key the submit parameters give EMRFS
(``spark.hadoop.fs.s3.serverSideEncryption.kms.keyId``, when
``spark.hadoop.fs.s3.enableServerSideEncryption`` is true; without them,
the bucket's default encryption), its ``s3:PutObject`` and ``kms:*`` checked.
The job's own S3 client is another one, so what the driver reads is only
what the job asks for. Differences, by necessity: the host's Python and
PySpark run the job, not the release's Spark with ``spark.archives`` (the
archive is only checked to be readable); logs go to the run's log, not the
application's log group.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import shlex
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .functions import FunctionError, LocalFunction, prefer_host_packages
from .hooks import ServiceError
from .permissions import Need
from .resources import ACCOUNT, CREATORS, REGION, ResourceFactory, arn
from .stepfunctions import SYNC_TASKS, sync_function_name

if TYPE_CHECKING:
    from .runtime import LocalCloud

INTEGRATION = "emr-serverless:startJobRun.sync"
SERVICE = "emr-serverless.amazonaws.com"
SYNC_RULE = "StepFunctionsGetEventsForEMRServerlessJobRule"
APPLICATION_TYPE = "AWS::EMRServerless::Application"


def application_arn(application_id: str) -> str:
    return arn("emr-serverless", f"/applications/{application_id}")


def _application(factory: ResourceFactory, logical_id: str, props: dict[str, Any]
                 ) -> dict[str, Any]:
    """An application as CloudFormation returns it: Ref and ApplicationId are its
    id (16 lower-case alphanumerics), Arn its ARN."""
    application_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{factory.stack.name}/{logical_id}"
                                 ).hex[:16]
    return {"Ref": application_id, "ApplicationId": application_id,
            "Arn": application_arn(application_id)}


def install(cloud: LocalCloud) -> None:
    """Deploy ``AWS::EMRServerless::Application`` resources and stand in for the
    ``startJobRun.sync`` integration (the runtime calls this before deploying)."""
    assert INTEGRATION in SYNC_TASKS
    CREATORS.setdefault(APPLICATION_TYPE, _application)
    runs: dict[tuple[str, str], dict[str, Any]] = {}
    name = sync_function_name(SYNC_TASKS[INTEGRATION])

    def task(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        try:
            return run_job(cloud, event, runs)
        except ServiceError as error:
            raise FunctionError(f"EMRServerless.{error.code}", error.message) from None

    cloud.lambdas.register(LocalFunction(
        name=name, arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}", logical_id=name,
        stack="local", handler="builtin", code=None, environment={}, timeout=86400, memory=0,
        role_arn=None, builtin=task))


def _applications(cloud: LocalCloud) -> dict[str, dict[str, Any]]:
    """The deployed applications by id: their resolved properties."""
    found = {}
    for deployed in cloud.deployed.values():
        for logical_id, resource in deployed.stack.resources.items():
            if resource["Type"] == APPLICATION_TYPE and logical_id in deployed.physical:
                found[deployed.physical[logical_id]] = deployed.properties[logical_id]
    return found


def _asset(cloud: LocalCloud, uri: str, what: str) -> Path:
    path = cloud.asset(uri)
    if path is not None:
        return path
    raise FunctionError("States.TaskFailed", f"the {what} {uri} is not an asset of the deployed "
                        "assembly (the local stand-in runs the library's Spark job assets)")


def _object_arn(uri: str) -> str:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return f"arn:aws:s3:::{bucket}/{key}"


def _submit_conf(parameters: str) -> dict[str, str]:
    """``--conf name=value`` pairs of SparkSubmitParameters."""
    words = shlex.split(parameters or "")
    conf = {}
    for flag, value in itertools.pairwise(words):
        if flag == "--conf" and "=" in value:
            name, _, setting = value.partition("=")
            conf[name] = setting
    return conf


def run_job(cloud: LocalCloud, params: dict[str, Any],
            runs: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """StartJobRun, waited for: see the module docstring."""
    for field in ("ApplicationId", "ExecutionRoleArn", "JobDriver"):
        if field not in params:
            raise ServiceError("ValidationException", f"StartJobRun: {field} is required")
    application_id = str(params["ApplicationId"])
    role = str(params["ExecutionRoleArn"])
    application = application_arn(application_id)
    token = str(params.get("ClientToken") or uuid.uuid4())
    if (application_id, token) in runs:  # the idempotency token: the same run
        return runs[(application_id, token)]
    run_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{application_id}/{token}").hex[:16]
    job_run = f"{application}/jobruns/{run_id}"
    caller = cloud.principals.current()
    rule = arn("events", f"rule/{SYNC_RULE}")
    cloud.authorizer.check(caller, "emr-serverless", "StartJobRun", [
        Need.of("emr-serverless:StartJobRun", application),
        Need.of("emr-serverless:GetJobRun", job_run),
        Need.of("emr-serverless:CancelJobRun", job_run),
        *[Need.of(f"events:{action}", rule) for action in ("PutTargets", "PutRule",
                                                           "DescribeRule")],
        Need.of("iam:PassRole", role, {"iam:PassedToService": SERVICE}),
    ])
    properties = _applications(cloud).get(application_id)
    if properties is None:
        raise ServiceError("ResourceNotFoundException",
                           f"Application {application_id} does not exist")
    network = properties.get("NetworkConfiguration") or {}
    if network:
        _check_network(cloud, application_id, network)
    cloud.authorizer.check_assume(role, SERVICE, source=application)
    submit = params["JobDriver"].get("SparkSubmit") or {}
    entry = str(submit.get("EntryPoint", ""))
    conf = _submit_conf(str(submit.get("SparkSubmitParameters", "")))
    fetched = [entry, *filter(None, conf.get("spark.submit.pyFiles", "").split(","))]
    archives = [a.split("#", 1)[0] for a in conf.get("spark.archives", "").split(",") if a]
    # EMR Serverless fetches the entry point, the code and the archives as the job's role.
    cloud.authorizer.check(role, "s3", "GetObject",
                           [Need.of("s3:GetObject", _object_arn(u)) for u in fetched + archives])
    description = {"ApplicationId": application_id, "JobRunId": run_id, "Arn": job_run}
    code = [_asset(cloud, uri, "code archive") for uri in fetched[1:]]
    arguments = list(submit.get("EntryPointArguments", []))
    try:
        with cloud.principals.acting_as(role, source=application):
            _run(cloud, _asset(cloud, entry, "entry point"), code, arguments,
                 emrfs_key=_emrfs_key(conf), run_id=run_id)
    except FunctionError:
        raise
    except BaseException as error:  # a failed driver fails the run, and the task
        if isinstance(error, KeyboardInterrupt):
            raise
        failed = {**description, "State": "FAILED",
                  "StateDetails": f"Job failed: {type(error).__name__}: {error}"[:1024]}
        raise FunctionError("States.TaskFailed", json.dumps(failed)) from error
    runs[(application_id, token)] = description
    return description


def _check_network(cloud: LocalCloud, application_id: str, network: dict[str, Any]) -> None:
    """The application's subnets and security groups exist, in one VPC (EMR
    Serverless creates the interfaces with its service-linked role)."""
    ids = [*network.get("SubnetIds", []), *network.get("SecurityGroupIds", [])]
    unknown = [i for i in ids if i not in cloud.authorizer.networks]
    if unknown or not network.get("SubnetIds"):
        raise ServiceError("ValidationException", f"application {application_id}: the subnet "
                           f"or security group ID(s) {unknown or ids} do not exist")
    vpcs = {cloud.authorizer.networks[i] for i in ids}
    if len(vpcs) != 1:
        raise ServiceError("ValidationException", f"application {application_id}: the subnets "
                           f"and security groups are in different VPCs {sorted(vpcs)}")


def _emrfs_key(conf: dict[str, str]) -> str | None:
    """The KMS key EMRFS encrypts what Spark writes with (the submit parameters'
    ``spark.hadoop.fs.s3.*``), or None: the bucket's default encryption."""
    from mdlc_core.spark_io import EMRFS_SSE, EMRFS_SSE_KEY

    if conf.get(EMRFS_SSE, "").lower() != "true":
        return None
    return conf.get(EMRFS_SSE_KEY) or None


def _run(cloud: LocalCloud, entry: Path, code: list[Path], arguments: list[str], *,
         emrfs_key: str | None = None, run_id: str = "run") -> None:
    """The entry point's ``main`` in process, the code folders on ``sys.path``,
    EMRFS stood in for by a folder of the run (see the module docstring)."""
    import tempfile

    from mdlc_core.spark_io import Downloaded
    from mdlc_core.spark_job import local_session

    for folder in code:
        prefer_host_packages(folder)
    sys.path[:0] = [str(folder) for folder in code]
    objects = tempfile.TemporaryDirectory(prefix=f"mdlc-emrfs-{run_id}-", dir=cloud.scratch)
    try:
        spec = importlib.util.spec_from_file_location(
            f"mdlc_local_spark_{abs(hash(entry))}", entry)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with contextlib.redirect_stdout(sys.stderr):
            status = module.main(arguments, spark=local_session("mdlc-local"),
                                 s3=cloud.client("s3"), cloudwatch=cloud.client("cloudwatch"),
                                 scratch=cloud.scratch,
                                 store=Downloaded(cloud.client("s3"), objects.name,
                                                  kms_key=emrfs_key))
    finally:
        objects.cleanup()
        for folder in code:
            with contextlib.suppress(ValueError):
                sys.path.remove(str(folder))
    if status:
        raise RuntimeError(f"the driver exited with {status}")
