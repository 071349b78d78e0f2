"""Stage 4, model development: the algorithm a model trains with, from its spec.

Three kinds, one interface (:class:`TrainingAlgorithm`) that the training
workflow reads:

* **built-in** (``kind: builtin``): every SageMaker built-in algorithm. The
  image URI of each region comes from the SageMaker SDK's own data
  (``sagemaker.core.image_uris``) at synthesis and is written into a
  ``CfnMapping`` (region -> URI), so an environment-agnostic stack deploys in
  every region the algorithm exists in. A region without it fails before any
  resource is created: the template carries a CloudFormation *rule* whose
  assertion names the algorithm, its version and the regions that have it
  (a ``Fn::FindInMap`` default could only fail later, with an opaque message
  from SageMaker at run time). When the stack's region is known at
  synthesis, the same check raises ``ValueError`` at synthesis instead.
* **marketplace** (``kind: marketplace``): an AWS Marketplace algorithm the
  account subscribed to, by ARN (``AlgorithmName`` of the training job).
* **custom** (``kind: custom``): a container built by CodeBuild from a
  source folder (a Dockerfile), pushed to an ECR repository with immutable
  tags, scan on push and the data key. The folder is uploaded as an S3
  asset, so synthesis needs no Docker. The image tag is the asset's content
  hash: a changed folder is a new tag, the same folder is never pushed twice
  (immutable tags would refuse it), and the build step skips the build when
  the tag exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aws_cdk import (
    Aws,
    CfnMapping,
    CfnRule,
    CfnRuleAssertion,
    Fn,
    RemovalPolicy,
    Stack,
    Token,
)
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from .compliance import acknowledge_all, iam5_action, iam5_resource, printed_arn
from .grants import combine
from .images import region_image_uris
from .spec.training import (
    BUILTIN_ALGORITHMS,
    BuiltinAlgorithm,
    CustomAlgorithm,
    MarketplaceAlgorithm,
)
from .tokens import minutes, task_timeout

if TYPE_CHECKING:
    from .spec import ModelSpec

#: The talk's names for the built-ins, by the SDK's framework name (for docs and errors).
BUILTIN_TITLES: dict[str, str] = {
    "blazingtext": "BlazingText",
    "forecasting-deepar": "DeepAR",
    "factorization-machines": "Factorization Machines",
    "image-classification": "Image Classification",
    "ipinsights": "IP Insights",
    "kmeans": "K-Means",
    "knn": "k-NN",
    "lda": "LDA",
    "linear-learner": "Linear Learner",
    "ntm": "NTM",
    "object2vec": "Object2Vec",
    "object-detection": "Object Detection",
    "pca": "PCA",
    "randomcutforest": "Random Cut Forest",
    "semantic-segmentation": "Semantic Segmentation",
    "seq2seq": "Seq2Seq",
    "xgboost": "XGBoost",
}
assert set(BUILTIN_TITLES) == set(BUILTIN_ALGORITHMS)

_SCOPE = "training"


# -- the SDK's data ---------------------------------------------------------------


def _versions(config: dict[str, Any]) -> dict[str, Any]:
    # Most built-ins have one config for both scopes; xgboost has one per scope.
    return (config.get(_SCOPE) or config)["versions"]


def known_versions(name: str) -> list[str]:
    """The versions of built-in ``name`` that the installed SageMaker SDK knows."""
    from sagemaker.core import image_uris

    return list(_versions(image_uris.config_for_framework(name)))


def builtin_image_uris(name: str, version: str) -> dict[str, str]:
    """Region -> training image URI of a built-in, every region the SDK knows for it.

    Raises:
        ValueError: ``name`` is not a built-in, or the SDK does not know
            ``version`` (naming the spec field and the versions it knows).
    """
    if name not in BUILTIN_ALGORITHMS:
        raise ValueError(
            f"training.algorithm.name: {name!r} is not a SageMaker built-in; "
            f"expected one of {list(BUILTIN_ALGORITHMS)}"
        )
    from sagemaker.core import image_uris

    versions = _versions(image_uris.config_for_framework(name))
    if version not in versions:
        raise ValueError(
            f"training.algorithm.version: the SageMaker SDK knows no {name} version "
            f"{version!r}; it knows {list(versions)}"
        )
    return region_image_uris(name, version, _SCOPE)


# -- what the training workflow reads ----------------------------------------------


@dataclass
class TrainingAlgorithm:
    """The algorithm as the training workflow needs it.

    Exactly one of ``image_uri`` (built-in, custom) and ``algorithm_name``
    (marketplace) is set.
    """

    kind: str
    #: Training (and inference) image; a ``Fn::FindInMap`` token for built-ins.
    image_uri: str | None = None
    #: The Marketplace algorithm's ARN.
    algorithm_name: str | None = None
    #: Run the job without network access (its container cannot call out).
    network_isolation: bool = True
    #: The custom image's build project, run before the training job.
    build_project: codebuild.IProject | None = None
    #: The construct holding what was created (BuiltinImage, CustomImage), if any.
    resources: Construct | None = None
    #: Grants the training job's role and the workflow's role need.
    _training_role_grants: list[Any] = field(default_factory=list)
    _workflow_statements: list[iam.PolicyStatement] = field(default_factory=list)

    def grant_training_role(self, role: iam.IRole) -> iam.Grant:
        """Let the SageMaker training job's role use the algorithm (pull the image)."""
        return combine(role, (grant(role) for grant in self._training_role_grants),
                       "a built-in algorithm needs no grant on the training role")

    def workflow_statements(self) -> list[iam.PolicyStatement]:
        """What the state machine's role needs to start a job with this algorithm."""
        return list(self._workflow_statements)

    def algorithm_specification(self) -> dict[str, Any]:
        """The training job's ``AlgorithmSpecification`` (without metric definitions)."""
        spec: dict[str, Any] = {"TrainingInputMode": "File"}
        if self.algorithm_name is not None:
            spec["AlgorithmName"] = self.algorithm_name
        else:
            spec["TrainingImage"] = self.image_uri
        return spec

    def build_step(self, scope: Construct, construct_id: str) -> tasks.CodeBuildStartBuild | None:
        """The step that builds the image before training (custom containers only).

        The build skips itself when the tag already exists, so a run with an
        unchanged source folder costs seconds.
        """
        if self.build_project is None:
            return None
        return tasks.CodeBuildStartBuild(
            scope,
            construct_id,
            project=self.build_project,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            result_path=sfn.JsonPath.DISCARD,
            task_timeout=task_timeout(minutes(60)),
            comment="Build and push the training image unless its tag exists",
        )


# -- built-in ---------------------------------------------------------------------


class BuiltinImage(Construct):
    """The region mapping and region rule of one built-in algorithm's image.

    Attributes:
        image_uri: ``Fn::FindInMap`` on the stack's region (or the literal URI
            when the region is known at synthesis).
        regions: the regions the image exists in, per the SageMaker SDK.
    """

    def __init__(self, scope: Construct, construct_id: str, *, name: str, version: str) -> None:
        super().__init__(scope, construct_id)
        uris = builtin_image_uris(name, version)
        self.regions: list[str] = sorted(uris)
        title = f"{BUILTIN_TITLES[name]} ({name}) version {version}"
        region = Stack.of(self).region
        if not Token.is_unresolved(region) and region not in uris:
            raise ValueError(
                f"training.algorithm: {title} has no image in {region}; the SageMaker "
                f"SDK knows it in {self.regions}"
            )
        self.mapping = CfnMapping(
            self,
            "Images",
            mapping={r: {"image": uri} for r, uri in uris.items()},
            lazy=True,
        )
        self.image_uri: str = self.mapping.find_in_map(Aws.REGION, "image")
        if Token.is_unresolved(region):
            # Environment-agnostic: fail the deployment up front, with a message
            # that says why, in a region the algorithm does not exist in.
            CfnRule(
                self,
                "RegionHasImage",
                assertions=[
                    CfnRuleAssertion(
                        assert_=Fn.condition_contains(self.regions, Aws.REGION),
                        assert_description=(
                            f"SageMaker {title} is not available in this region. "
                            f"Regions: {', '.join(self.regions)}"
                        )[:1024],
                    )
                ],
            )


# -- custom container -------------------------------------------------------------

_BUILDSPEC = {
    "version": "0.2",
    "phases": {
        "pre_build": {
            "commands": [
                # Immutable tags: an existing tag means this source was built already.
                'if aws ecr describe-images --repository-name "$REPOSITORY_NAME" '
                '--image-ids imageTag="$IMAGE_TAG" >/dev/null 2>&1; then '
                'echo "image $IMAGE_TAG exists"; touch .skip; fi',
                'test -f .skip || aws ecr get-login-password | docker login --username AWS '
                '--password-stdin "${REPOSITORY_URI%%/*}"',
            ]
        },
        "build": {
            "commands": [
                'test -f .skip || docker build -t "$REPOSITORY_URI:$IMAGE_TAG" .',
            ]
        },
        "post_build": {
            "commands": [
                'test -f .skip || docker push "$REPOSITORY_URI:$IMAGE_TAG"',
            ]
        },
    },
}


class CustomImage(Construct):
    """An ECR repository and the CodeBuild project that builds the image into it.

    Args:
        source: the folder with the Dockerfile.
        key: encrypts the repository, the build and its logs.
        tag_prefix: the image tag is ``<tag_prefix>-<source content hash>``.
        removal_policy: for the repository. Default: RETAIN (images of
            registered model versions must stay pullable).

    Attributes:
        repository, project, image_tag, image_uri.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        source: Path,
        key: kms.IKey,
        tag_prefix: str = "latest",
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        if not (source / "Dockerfile").is_file():
            raise ValueError(
                f"training.algorithm.source: expected a folder with a Dockerfile, "
                f"got {source} (relative paths are relative to the spec file)"
            )
        self.repository = ecr.Repository(
            self,
            "Repository",
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            image_scan_on_push=True,
            encryption=ecr.RepositoryEncryption.KMS,
            encryption_key=key,
            removal_policy=removal_policy,
        )
        asset = s3_assets.Asset(self, "Source", path=str(source))
        self.image_tag = f"{tag_prefix}-{asset.asset_hash[:16]}"
        self.image_uri: str = self.repository.repository_uri_for_tag(self.image_tag)
        log_group = logs.LogGroup(
            self,
            "BuildLogs",
            encryption_key=key,
            retention=logs.RetentionDays.ONE_YEAR,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.project = codebuild.Project(
            self,
            "Build",
            description=f"Builds {self.image_tag} from {source.name} into ECR",
            source=codebuild.Source.s3(bucket=asset.bucket, path=asset.s3_object_key),
            build_spec=codebuild.BuildSpec.from_object(_BUILDSPEC),
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                compute_type=codebuild.ComputeType.MEDIUM,
                # Docker-in-CodeBuild needs the privileged daemon; it runs only
                # this project's own buildspec on the uploaded folder.
                privileged=True,
            ),
            environment_variables={
                "REPOSITORY_URI": codebuild.BuildEnvironmentVariable(
                    value=self.repository.repository_uri
                ),
                "REPOSITORY_NAME": codebuild.BuildEnvironmentVariable(
                    value=self.repository.repository_name
                ),
                "IMAGE_TAG": codebuild.BuildEnvironmentVariable(value=self.image_tag),
            },
            encryption_key=key,
            logging=codebuild.LoggingOptions(
                cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=log_group)
            ),
            timeout=minutes(60),
        )
        self.repository.grant_pull_push(self.project)
        self.repository.grant_read(self.project)  # ecr:DescribeImages for the skip check
        acknowledge_all(
            self.project,
            {
                "AwsSolutions-CB3": "Privileged mode runs the Docker daemon that builds the "
                "training image; the project runs only its own buildspec on this asset",
                iam5_resource("*"): "ecr:GetAuthorizationToken has no "
                "resource-level permissions (added by grant_pull_push)",
                "PCI.DSS.321-CodeBuildProjectSourceRepoUrl": "The source is a CDK S3 asset "
                "(a content-addressed object in the bootstrap bucket), not a repository URL "
                "with credentials",
            },
        )
        # CodeBuild's own generated policy: reading the source asset, writing its
        # log streams and report groups, using the key for artifacts and logs.
        project_id = Stack.of(self).get_logical_id(
            self.project.node.default_child  # type: ignore[arg-type]
        )
        acknowledge_all(
            self.project,
            {
                iam5_action("s3:GetObject*"): "Reads the source asset object "
                "(CodeBuild's generated S3 source policy)",
                iam5_action("s3:GetBucket*"): "CodeBuild's S3 source policy on "
                "the asset bucket only",
                iam5_action("s3:List*"): "CodeBuild's S3 source policy on the "
                "asset bucket only",
                iam5_action("kms:GenerateDataKey*"): "CodeBuild encrypts its "
                "artifacts and logs with the data key only",
                iam5_action("kms:ReEncrypt*"): "CodeBuild's key grant, on the "
                "data key only",
                iam5_resource(printed_arn("codebuild", f"report-group/<{project_id}>-*")):
                "Report groups of this "
                "project only (CodeBuild's generated policy)",
                iam5_resource(printed_arn("logs", f"log-group:/aws/codebuild/<{project_id}>:*")):
                "Log streams "
                "of this project's default log group only (CodeBuild's generated policy)",
            },
        )


# -- the factory ------------------------------------------------------------------


def training_algorithm(
    scope: Construct,
    construct_id: str,
    *,
    spec: ModelSpec,
    key: kms.IKey,
    source_root: Path | None = None,
) -> TrainingAlgorithm:
    """The spec's algorithm, with the resources it needs created under ``scope``.

    Args:
        spec: the model spec (``spec.training.algorithm`` decides).
        key: encrypts a custom image's repository and build.
        source_root: what a custom ``source`` folder is relative to. Default:
            the spec file's folder (the current directory without a file).
    """
    algorithm = spec.training.algorithm
    if isinstance(algorithm, BuiltinAlgorithm):
        image = BuiltinImage(scope, construct_id, name=algorithm.name, version=algorithm.version)
        return TrainingAlgorithm(kind="builtin", image_uri=image.image_uri, resources=image)
    if isinstance(algorithm, MarketplaceAlgorithm):
        return TrainingAlgorithm(
            kind="marketplace",
            algorithm_name=algorithm.arn,
            # Marketplace sellers' containers always run isolated: the buyer's
            # data never leaves the job.
            network_isolation=True,
            _workflow_statements=[
                # CreateTrainingJob with AlgorithmName reads the algorithm's
                # training specification (validated against the job's request).
                iam.PolicyStatement(
                    actions=["sagemaker:DescribeAlgorithm"], resources=[algorithm.arn]
                ),
            ],
        )
    if isinstance(algorithm, CustomAlgorithm):
        base = source_root or (spec.source.parent if spec.source else Path.cwd())
        image = CustomImage(
            scope,
            construct_id,
            source=(base / algorithm.source).resolve(),
            key=key,
            tag_prefix=algorithm.tag,
        )
        return TrainingAlgorithm(
            kind="custom",
            image_uri=image.image_uri,
            # A team's container may fetch packages at start; isolate it by
            # overriding TrainingWorkflow(network_isolation=True).
            network_isolation=False,
            build_project=image.project,
            resources=image,
            _training_role_grants=[
                image.repository.grant_pull,
                key.grant_decrypt,
            ],
        )
    raise TypeError(f"training.algorithm: unsupported kind {algorithm!r}")  # pragma: no cover
