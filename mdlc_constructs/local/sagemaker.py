"""SageMaker, locally: jobs that do the real work, endpoints that serve the real model.

moto keeps SageMaker's records (models, endpoint configurations, model
package groups and versions); this module does what moto cannot:

* **Training** (``createTrainingJob.sync``): downloads every channel, trains
  with the algorithm's stand-in (:mod:`mdlc_constructs.local.algorithms`:
  real XGBoost, Linear Learner, or one a team registers), uploads
  ``<S3OutputPath>/<job>/output/model.tar.gz`` with the job's KMS key, and
  returns what the optimized integration returns: the job's description
  with ``FinalMetricDataList``.
* **Batch transform** (``createTransformJob.sync``): every object under the
  input prefix, as AWS reads it, scored line by line into
  ``<S3OutputPath>/<name>.out``.
* **Processing** (``createProcessingJob.sync``): ``lambdas/processing_job``
  run in process on the job's inputs.
* **Endpoints**: ``CreateEndpoint`` / ``UpdateEndpoint`` move through
  Creating/Updating to InService; an update is blue/green: the green fleet
  loads the new model, and if it fails (a model that cannot load, or a
  version marked with :meth:`SageMakerLocal.fail_deployments_of`) traffic
  stays on blue and ``FailureReason`` says why, as an auto-rollback does.
  ``InvokeEndpoint`` is answered by the model the endpoint serves.
* **Approval events**: ``UpdateModelPackage`` that changes the approval
  status emits "SageMaker Model Package State Change", as SageMaker does.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .assembly import ACCOUNT, REGION
from .functions import FunctionError
from .hooks import ServiceError, ServiceHooks, streaming
from .resources import arn, raw_client

#: The event SageMaker sends when a model package's approval changes.
APPROVAL_DETAIL_TYPE = "SageMaker Model Package State Change"


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class Endpoint:
    name: str
    config: str
    status: str = "Creating"
    pending_config: str | None = None
    failure_reason: str | None = None
    created: str = field(default_factory=_now)
    modified: str = field(default_factory=_now)
    history: list[dict[str, Any]] = field(default_factory=list)


class SageMakerLocal:
    """The local SageMaker jobs and endpoints; see the module docstring."""

    def __init__(self, *, scratch: Path, emit_event: Callable[[dict[str, Any]], None],
                 authorizer: Any = None) -> None:
        self.scratch = scratch
        #: The jobs and endpoints read and write S3 as their roles (permissions.py).
        self.authorizer = authorizer
        self.emit_event = emit_event
        self.endpoints: dict[str, Endpoint] = {}
        self.training_jobs: dict[str, dict[str, Any]] = {}
        self.transform_jobs: dict[str, dict[str, Any]] = {}
        self.deployments: list[dict[str, Any]] = []
        #: CreateModelPackage is idempotent on ClientToken, as in SageMaker.
        self.client_tokens: dict[str, str] = {}
        self._failing_versions: set[int] = set()
        self._predictors: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._s3 = raw_client("s3")
        self._sagemaker = raw_client("sagemaker")

    # -- wiring ----------------------------------------------------------------------

    def install(self, hooks: ServiceHooks) -> None:
        hooks.add("sagemaker", "CreateEndpoint", self.create_endpoint)
        hooks.add("sagemaker", "DescribeEndpoint", self.describe_endpoint)
        hooks.add("sagemaker", "UpdateEndpoint", self.update_endpoint)
        hooks.add("sagemaker", "DeleteEndpoint", self.delete_endpoint)
        hooks.add("sagemaker", "UpdateModelPackage", self.update_model_package)
        hooks.add("sagemaker", "CreateModelPackage", self.create_model_package)
        hooks.add("sagemaker", "DescribeTrainingJob", self.describe_training_job)
        hooks.add("sagemaker-runtime", "InvokeEndpoint", self.invoke_endpoint)

    def fail_deployments_of(self, version: int) -> None:
        """Make the green fleet of model package ``version`` fail its health check."""
        self._failing_versions.add(version)

    # -- training --------------------------------------------------------------------

    def _as(self, role: str | None, operation: str, params: dict[str, Any]) -> None:
        """An S3 call the job or endpoint makes as ``role``."""
        if self.authorizer is not None:
            self.authorizer.check_params(role, "s3", operation, params)

    def _download_prefix(self, uri: str, target: Path, role: str | None = None) -> list[str]:
        bucket, prefix = _split_s3(uri)
        target.mkdir(parents=True, exist_ok=True)
        keys = []
        self._as(role, "ListObjectsV2", {"Bucket": bucket, "Prefix": prefix})
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                         Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                if key.endswith("/"):
                    continue
                self._as(role, "GetObject", {"Bucket": bucket, "Key": key})
                relative = key[len(prefix):].lstrip("/") or Path(key).name
                path = target / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(self._s3.get_object(Bucket=bucket, Key=key)["Body"].read())
                keys.append(key)
        return keys

    def _put(self, uri: str, body: bytes, kms_key: str | None, role: str | None = None) -> None:
        bucket, key = _split_s3(uri)
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key} if kms_key else {}
        self._as(role, "PutObject", {"Bucket": bucket, "Key": key, **extra})
        self._s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)

    def run_training_job(self, params: dict[str, Any], context: Any = None) -> dict[str, Any]:
        from .algorithms import NoStandInError, stand_in_for_image

        name = params["TrainingJobName"]
        if name in self.training_jobs:
            raise FunctionError("SageMaker.AmazonSageMakerException",
                                f"Training job names must be unique within an AWS account and "
                                f"region, and a training job with this name already exists "
                                f"(arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{name})")
        spec = params.get("AlgorithmSpecification", {})
        image = spec.get("TrainingImage") or spec.get("AlgorithmName", "")
        description: dict[str, Any] = {
            "TrainingJobName": name,
            "TrainingJobArn": arn("sagemaker", f"training-job/{name}"),
            "AlgorithmSpecification": spec,
            "RoleArn": params.get("RoleArn"),
            "HyperParameters": params.get("HyperParameters", {}),
            "InputDataConfig": params.get("InputDataConfig", []),
            "OutputDataConfig": params.get("OutputDataConfig", {}),
            "ResourceConfig": params.get("ResourceConfig", {}),
            "StoppingCondition": params.get("StoppingCondition", {}),
            "EnableNetworkIsolation": params.get("EnableNetworkIsolation", False),
            "CreationTime": _now(),
            "TrainingStartTime": _now(),
        }
        if self.authorizer is not None:
            self.authorizer.check_sync_job("Training", params)
            self.authorizer.check_network_interfaces(
                params.get("RoleArn"), params.get("VpcConfig"), source=f"training job {name}")
        role = params.get("RoleArn")
        self.training_jobs[name] = description
        work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.scratch))
        try:
            stand_in = stand_in_for_image(image)
            channels: dict[str, Path] = {}
            content_type = "text/csv"
            for channel in params.get("InputDataConfig", []):
                uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
                folder = work / "input" / channel["ChannelName"]
                if not self._download_prefix(uri, folder, role):
                    raise ValueError(f"channel {channel['ChannelName']!r}: no object under {uri}")
                channels[channel["ChannelName"]] = folder
                content_type = channel.get("ContentType", content_type)
            model_dir = work / "model"
            model_dir.mkdir()
            metrics = stand_in.train(channels=channels,
                                     hyperparameters=dict(params.get("HyperParameters", {})),
                                     content_type=content_type, model_dir=model_dir)
            artifact = io.BytesIO()
            with tarfile.open(fileobj=artifact, mode="w:gz") as archive:
                for path in sorted(model_dir.rglob("*")):
                    archive.add(path, arcname=str(path.relative_to(model_dir)))
            output = params["OutputDataConfig"]
            model_uri = f"{output['S3OutputPath'].rstrip('/')}/{name}/output/model.tar.gz"
            self._put(model_uri, artifact.getvalue(), output.get("KmsKeyId"), role)
        except NoStandInError as error:
            description.update(TrainingJobStatus="Failed", FailureReason=str(error))
            raise FunctionError("States.TaskFailed", json.dumps(description, default=str)) \
                from error
        except Exception as error:
            description.update(TrainingJobStatus="Failed",
                               FailureReason=f"AlgorithmError: {type(error).__name__}: {error}")
            raise FunctionError("States.TaskFailed", json.dumps(description, default=str)) \
                from error
        finally:
            shutil.rmtree(work, ignore_errors=True)
        description.update(
            TrainingJobStatus="Completed",
            SecondaryStatus="Completed",
            TrainingEndTime=_now(),
            ModelArtifacts={"S3ModelArtifacts": model_uri},
            FinalMetricDataList=[{"MetricName": k, "Value": float(v), "Timestamp": _now()}
                                 for k, v in sorted(metrics.items())],
        )
        return description

    def describe_training_job(self, params: dict[str, Any]) -> dict[str, Any]:
        job = self.training_jobs.get(params["TrainingJobName"])
        if job is None:
            raise ServiceError("ValidationException",
                               f"Requested resource not found: {params['TrainingJobName']}")
        return job

    # -- models ----------------------------------------------------------------------

    def _container(self, model_name: str) -> tuple[str, str, str | None]:
        """The image, model data and execution role of a SageMaker model (direct or
        from its package)."""
        try:
            model = self._sagemaker.describe_model(ModelName=model_name)
        except Exception as error:
            raise ValueError(f"Could not find model {model_name!r}") from error
        container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
        if container.get("ModelPackageName"):
            package = self._sagemaker.describe_model_package(
                ModelPackageName=container["ModelPackageName"])
            container = package["InferenceSpecification"]["Containers"][0]
        return container["Image"], container["ModelDataUrl"], model.get("ExecutionRoleArn")

    def predictor(self, model_name: str) -> Any:
        """The loaded model behind ``model_name``, cached (a warm container)."""
        from .algorithms import stand_in_for_image

        with self._lock:
            if model_name in self._predictors:
                return self._predictors[model_name]
            image, data_url, role = self._container(model_name)
            bucket, key = _split_s3(data_url)
            # The container fetches its model data as the model's execution role.
            if role and self.authorizer is not None:
                self.authorizer.check_assume(role, "sagemaker.amazonaws.com",
                                             source=arn("sagemaker", f"model/{model_name.lower()}"))
                self.authorizer.check_network_interfaces(
                    role, self._sagemaker.describe_model(ModelName=model_name).get("VpcConfig"),
                    source=f"model {model_name}")
            self._as(role, "GetObject", {"Bucket": bucket, "Key": key})
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            folder = Path(tempfile.mkdtemp(prefix="model-", dir=self.scratch))
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
                archive.extractall(folder, filter="data")
            predictor = stand_in_for_image(image).load(folder)
            self._predictors[model_name] = predictor
            return predictor

    # -- transform -------------------------------------------------------------------

    def run_transform_job(self, params: dict[str, Any], context: Any = None) -> dict[str, Any]:
        name = params["TransformJobName"]
        description: dict[str, Any] = {
            "TransformJobName": name,
            "TransformJobArn": arn("sagemaker", f"transform-job/{name}"),
            "ModelName": params["ModelName"],
            "TransformInput": params["TransformInput"],
            "TransformOutput": params["TransformOutput"],
            "TransformResources": params.get("TransformResources", {}),
            "CreationTime": _now(),
        }
        self.transform_jobs[name] = description
        if self.authorizer is not None:
            self.authorizer.check_sync_job("Transform", params)
        try:
            predictor = self.predictor(params["ModelName"])
            role = self._container(params["ModelName"])[2]  # a transform runs as its model's
            source = params["TransformInput"]["DataSource"]["S3DataSource"]
            bucket, prefix = _split_s3(source["S3Uri"])
            output = params["TransformOutput"]
            out_base = output["S3OutputPath"].rstrip("/")
            count = 0
            self._as(role, "ListObjectsV2", {"Bucket": bucket, "Prefix": prefix})
            for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                             Prefix=prefix):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    self._as(role, "GetObject", {"Bucket": bucket, "Key": key})
                    body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                    scores = predictor.predict_csv(body) if body.strip() else b""
                    relative = key[len(prefix):].lstrip("/") if prefix.endswith("/") \
                        else Path(key).name
                    self._put(f"{out_base}/{relative}.out", scores, output.get("KmsKeyId"),
                              role)
                    count += 1
            if count == 0:
                raise ValueError(f"no input object under {source['S3Uri']}")
        except Exception as error:
            description.update(TransformJobStatus="Failed",
                               FailureReason=f"ClientError: {type(error).__name__}: {error}")
            raise FunctionError("States.TaskFailed", json.dumps(description, default=str)) \
                from error
        description.update(TransformJobStatus="Completed", TransformEndTime=_now())
        return description

    # -- endpoints -------------------------------------------------------------------

    def _missing(self, name: str) -> ServiceError:
        return ServiceError("ValidationException", f'Could not find endpoint "{name}".')

    def create_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["EndpointName"]
        if name in self.endpoints:
            existing = arn("sagemaker", f"endpoint/{name}")
            raise ServiceError("ValidationException",
                               f'Cannot create already existing endpoint "{existing}".')
        self._sagemaker.describe_endpoint_config(EndpointConfigName=params["EndpointConfigName"])
        self.endpoints[name] = Endpoint(name=name, config=params["EndpointConfigName"])
        return {"EndpointArn": arn("sagemaker", f"endpoint/{name}")}

    def update_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        endpoint = self.endpoints.get(params["EndpointName"])
        if endpoint is None:
            raise self._missing(params["EndpointName"])
        if endpoint.status != "InService":
            raise ServiceError("ValidationException",
                               f"Cannot update in-progress endpoint {endpoint.name!r}.")
        self._sagemaker.describe_endpoint_config(EndpointConfigName=params["EndpointConfigName"])
        endpoint.status = "Updating"
        endpoint.pending_config = params["EndpointConfigName"]
        endpoint.failure_reason = None
        return {"EndpointArn": arn("sagemaker", f"endpoint/{endpoint.name}")}

    def delete_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.endpoints.pop(params["EndpointName"], None) is None:
            raise self._missing(params["EndpointName"])
        return {}

    def model_of_config(self, config: str) -> str:
        """The model of an endpoint configuration's (first) variant.

        Read from moto's backend in process, as DescribeEndpointConfig answers
        (an unknown configuration raises its ValidationError): each
        InvokeEndpoint asks, and through the API the lookup cost more than
        scoring a batch.
        """
        from moto.sagemaker.models import sagemaker_backends

        described = sagemaker_backends[ACCOUNT][REGION].describe_endpoint_config(config)
        return described["ProductionVariants"][0]["ModelName"]

    def version_of_model(self, model_name: str) -> int | None:
        """The model package version a model serves (None: not from a package).

        From moto's backend in process, as DescribeModel and DescribeModelPackage
        answer (an unknown model or package raises their ValidationError).
        """
        from moto.sagemaker.models import sagemaker_backends

        backend = sagemaker_backends[ACCOUNT][REGION]
        model = backend.describe_model(model_name).response_object
        container = model.get("PrimaryContainer") or {}
        package = container.get("ModelPackageName")
        if not package:
            return None
        return int(backend.describe_model_package(package).gen_response_object()[
            "ModelPackageVersion"])

    def _bring_up(self, config: str) -> str | None:
        """Start a fleet on ``config``; the reason it fails, or None."""
        try:
            model = self.model_of_config(config)
            version = self.version_of_model(model)
            if version in self._failing_versions:
                return (f"The new fleet for model package version {version} failed its health "
                        "check (simulated failure)")
            self.predictor(model)
        except Exception as error:
            return f"The new fleet failed to start: {type(error).__name__}: {error}"
        return None

    def _settle(self, endpoint: Endpoint) -> None:
        # A describe after the workflow's wait finds the change done.
        if endpoint.status == "Creating":
            failure = self._bring_up(endpoint.config)
            endpoint.status = "Failed" if failure else "InService"
            endpoint.failure_reason = failure
            self.deployments.append({"endpoint": endpoint.name, "config": endpoint.config,
                                     "outcome": "failed" if failure else "deployed",
                                     "reason": failure, "at": _now()})
        elif endpoint.status == "Updating" and endpoint.pending_config:
            failure = self._bring_up(endpoint.pending_config)
            if failure:
                endpoint.failure_reason = (
                    f"{failure}. Rolled back to {endpoint.config}: blue/green deployment "
                    "stopped and traffic stays on the previous fleet")
                outcome, config = "rolled_back", endpoint.pending_config
            else:
                endpoint.config = endpoint.pending_config
                outcome, config = "deployed", endpoint.config
            # ``at``: when traffic moved (or stayed), on the simulated clock: a
            # decision's version is the one deployed last before it (mdlc lineage).
            self.deployments.append({"endpoint": endpoint.name, "config": config,
                                     "outcome": outcome, "reason": failure, "at": _now()})
            endpoint.status = "InService"
            endpoint.pending_config = None
        endpoint.modified = _now()

    def describe_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        endpoint = self.endpoints.get(params["EndpointName"])
        if endpoint is None:
            raise self._missing(params["EndpointName"])
        with self._lock:
            response = self._description(endpoint)
            if endpoint.status in ("Creating", "Updating"):
                self._settle(endpoint)
        return response

    def _description(self, endpoint: Endpoint) -> dict[str, Any]:
        response: dict[str, Any] = {
            "EndpointName": endpoint.name,
            "EndpointArn": arn("sagemaker", f"endpoint/{endpoint.name}"),
            "EndpointConfigName": endpoint.config,
            "EndpointStatus": endpoint.status,
            "CreationTime": datetime.fromisoformat(endpoint.created),
            "LastModifiedTime": datetime.fromisoformat(endpoint.modified),
            "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentInstanceCount": 1,
                                    "DesiredInstanceCount": 1}],
        }
        if endpoint.failure_reason:
            response["FailureReason"] = endpoint.failure_reason
        return response

    def serving_model(self, endpoint_name: str) -> str:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is None or endpoint.status not in ("InService", "Updating"):
            raise self._missing(endpoint_name)
        return self.model_of_config(endpoint.config)

    def serving_version(self, endpoint_name: str) -> int | None:
        try:
            return self.version_of_model(self.serving_model(endpoint_name))
        except ServiceError:
            return None

    def invoke_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        model = self.serving_model(params["EndpointName"])
        body = params["Body"]
        body = body if isinstance(body, bytes) else (
            body.read() if hasattr(body, "read") else str(body).encode())
        content_type = params.get("ContentType", "text/csv")
        if content_type != "text/csv":
            raise ServiceError("ModelError", f"the local stand-in serves text/csv, got "
                               f"{content_type!r}")
        try:
            scores = self.predictor(model).predict_csv(body)
        except Exception as error:
            raise ServiceError("ModelError", f"Received client error (400) from primary with "
                               f"message \"{type(error).__name__}: {error}\"") from error
        return {"Body": streaming(scores), "ContentType": "text/csv",
                "InvokedProductionVariant": "AllTraffic"}

    # -- registry --------------------------------------------------------------------

    def create_model_package(self, params: dict[str, Any]) -> dict[str, Any]:
        """moto's, plus the ``CustomerMetadataProperties`` it drops on create."""
        metadata = params.get("CustomerMetadataProperties")
        token = params.get("ClientToken")
        if token and token in self.client_tokens:
            return {"ModelPackageArn": self.client_tokens[token]}
        response = self._sagemaker.create_model_package(**params)
        if metadata:
            status = {"ModelApprovalStatus": params["ModelApprovalStatus"]} \
                if "ModelApprovalStatus" in params else {}
            self._sagemaker.update_model_package(ModelPackageArn=response["ModelPackageArn"],
                                                 CustomerMetadataProperties=metadata, **status)
        if token:
            self.client_tokens[token] = response["ModelPackageArn"]
        response.pop("ResponseMetadata", None)
        return response

    def update_model_package(self, params: dict[str, Any]) -> dict[str, Any]:
        before = self._sagemaker.describe_model_package(ModelPackageName=params["ModelPackageArn"])
        # moto clears the properties an update does not name; SageMaker keeps them.
        params = {"CustomerMetadataProperties": before.get("CustomerMetadataProperties") or {},
                  **params}
        if not params["CustomerMetadataProperties"]:
            params.pop("CustomerMetadataProperties")
        response = self._sagemaker.update_model_package(**params)
        after = self._sagemaker.describe_model_package(ModelPackageName=params["ModelPackageArn"])
        if before.get("ModelApprovalStatus") != after.get("ModelApprovalStatus"):
            detail = {key: after.get(key) for key in (
                "ModelPackageGroupName", "ModelPackageVersion", "ModelPackageArn",
                "ModelPackageName", "ModelApprovalStatus", "ModelPackageStatus")}
            detail["CreationTime"] = str(after.get("CreationTime"))
            self.emit_event({
                "source": "aws.sagemaker",
                "detail-type": APPROVAL_DETAIL_TYPE,
                "resources": [after["ModelPackageArn"]],
                "detail": detail,
            })
        response.pop("ResponseMetadata", None)
        return response
