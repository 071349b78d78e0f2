"""SageMaker Processing jobs, locally: ``lambdas/processing_job`` run in process.

The job's code input is the synthesized asset the ProcessingRunner uploads
(a zip of ``lambdas/processing_job`` with ``mdlc_core`` and the spec); the
local run takes the same folder from ``cdk.out``, runs its ``main`` with the
job's arguments and environment and a local ``/opt/ml/processing`` in a
scratch folder, then uploads ``output/`` to the job's output URI with the
job's KMS key, as SageMaker does at the end of the job. The container image
is not run: the runner's image only provides Python and the libraries,
which this process has.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .functions import FunctionError, prefer_host_packages, scoped_environment
from .resources import arn

if TYPE_CHECKING:
    from .runtime import LocalCloud


def _asset_folder(cloud: LocalCloud, uri: str) -> Path:
    folder = cloud.asset(uri)
    if folder is not None and folder.is_dir():
        return folder
    raise FunctionError("States.TaskFailed", f"processing code {uri} is not an asset of the "
                        "deployed assembly")


def run_processing_job(cloud: LocalCloud, params: dict[str, Any]) -> dict[str, Any]:
    name = params["ProcessingJobName"]
    description: dict[str, Any] = {
        "ProcessingJobName": name,
        "ProcessingJobArn": arn("sagemaker", f"processing-job/{name}"),
        "AppSpecification": params.get("AppSpecification", {}),
        "ProcessingInputs": params.get("ProcessingInputs", []),
        "ProcessingOutputConfig": params.get("ProcessingOutputConfig", {}),
        "ProcessingResources": params.get("ProcessingResources", {}),
        "RoleArn": params.get("RoleArn"),
    }
    code = next((i["S3Input"]["S3Uri"] for i in params.get("ProcessingInputs", [])
                 if i.get("InputName") == "code"), None)
    if code is None:
        raise FunctionError("States.TaskFailed", "the local stand-in runs the library's "
                            "processing_job code input; this job has none")
    cloud.authorizer.check_sync_job("Processing", params)
    cloud.authorizer.check_network_interfaces(
        params.get("RoleArn"), (params.get("NetworkConfig") or {}).get("VpcConfig"),
        source=f"processing job {name}")
    folder = _asset_folder(cloud, code)
    base = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=cloud.scratch))
    environment = {k: str(v) for k, v in params.get("Environment", {}).items()}
    environment["MDLC_CONFIG_FILE"] = str(folder / "mdlc_config.json")
    try:
        # The job's container calls S3 and CloudWatch as the job's role.
        with scoped_environment(environment), cloud.principals.acting_as(params.get("RoleArn")):
            _run(cloud, params, folder, base, description)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    description["ProcessingJobStatus"] = "Completed"
    return description


def _run(cloud: LocalCloud, params: dict[str, Any], folder: Path, base: Path,
         description: dict[str, Any]) -> None:
    """Run the job's code in process and upload its outputs (the job's environment is set)."""
    module_name = f"mdlc_local_processing_{abs(hash(folder))}"
    spec = importlib.util.spec_from_file_location(module_name, folder / "index.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    prefer_host_packages(folder)
    sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    loader = sys.modules.get("mdlc_core.runtime_config")
    if loader is not None:
        loader.load_config.cache_clear()
    arguments = list(params.get("AppSpecification", {}).get("ContainerArguments", []))
    try:
        with contextlib.redirect_stdout(sys.stderr):
            status = module.main(arguments, base=base, s3=cloud.client("s3"),
                                 cloudwatch=cloud.client("cloudwatch"))
    except SystemExit as error:  # argparse errors
        status = error.code
    except Exception as error:
        description.update(ProcessingJobStatus="Failed", ExitMessage=str(error)[:1024],
                           FailureReason=f"AlgorithmError: {type(error).__name__}: {error}")
        raise FunctionError("States.TaskFailed", json.dumps(description)) from error
    if status:
        description.update(ProcessingJobStatus="Failed",
                           FailureReason=f"AlgorithmError: exit code {status}")
        raise FunctionError("States.TaskFailed", json.dumps(description))
    output_config = params.get("ProcessingOutputConfig", {})
    s3 = cloud.client("s3")
    extra = ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": output_config["KmsKeyId"]}
             if output_config.get("KmsKeyId") else {})
    for output in output_config.get("Outputs", []):
        target = output["S3Output"]
        local = base / Path(target["LocalPath"]).relative_to("/opt/ml/processing")
        bucket, _, prefix = target["S3Uri"][5:].partition("/")
        for path in sorted(local.rglob("*")) if local.exists() else []:
            if path.is_file():
                s3.put_object(Bucket=bucket, Key=f"{prefix.rstrip('/')}/"
                              f"{path.relative_to(local)}", Body=path.read_bytes(), **extra)
