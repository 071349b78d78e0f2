"""CI/CD: one self-updating pipeline from a commit to staging, approval, production.

:class:`MdlcPipelineStack` is a CDK Pipelines ``CodePipeline``::

    Source        CodeCommit repository, or a CodeStar connection (GitHub, GitLab,
                  Bitbucket), chosen by ``PipelineConfig.connection_arn``
    Build/Synth   installs, runs ``make test``, synthesizes with the commit id in
                  the context (``-c mdlc:codeVersion=<commit>``)
    UpdatePipeline  self-mutation: the pipeline first updates itself
    Assets        publishes Lambda code and other assets
    Staging       the platform stack and every model stack; then every custom
                  training container is built into the stage's ECR repository
    Production    after a manual approval, the same stacks and images

Every stage deploys exactly what :func:`~mdlc_constructs.platform.build_app`
builds locally, so what `make synth` shows is what the pipeline deploys.

The commit id reaches the stacks as the context value ``mdlc:codeVersion``
(read with :func:`~mdlc_constructs.platform.code_version`); the training
workflow records it as every model version's ``CommitId``. See docs/pipeline.md.

Artifacts rest in a bucket encrypted with the pipeline's own KMS key (rotated,
retained); with accounts other than the pipeline's, the key and the bucket
grant exactly the target accounts' CDK deploy roles.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codecommit as codecommit
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import pipelines
from constructs import Construct

from .algorithms import CustomImage
from .lineage import CODE_VERSION_CONTEXT, code_version
from .pipeline_acknowledgments import acknowledge_pipeline
from .pipeline_waves import CODEPIPELINE_MAX_ACTIONS, DEFAULT_ACTIONS_PER_STAGE, apply_waves
from .platform import (
    ONLY_CONTEXT,
    MdlcApp,
    MdlcPlatformStack,
    ModelStackFactory,
    build_app,
    default_model_stack,
    only_from_context,
)
from .spec import load_specs
from .storage import access_log_bucket, encrypted_bucket
from .tokens import days, hours, minutes

#: Context key holding the pipeline's configuration (see :meth:`PipelineConfig.from_context`).
PIPELINE_CONTEXT = "mdlc:pipeline"
#: Custom containers one pipeline step builds (in parallel): each step costs
#: the pipeline stack a CodeBuild project, role and policy, and its action may
#: carry at most 1,000 characters of variables, about 120 per image.
IMAGES_PER_STEP = 5
#: The CDK command line the project pins (the Makefile's CDK variable).
CDK_COMMAND = "npx --no-install --prefix .cdk-cli cdk"
_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_CONNECTION = re.compile(
    r"^arn:aws[a-z-]*:(codestar-connections|codeconnections):[a-z0-9-]+:\d{12}:connection/[\w-]+$"
)

__all__ = [
    "CODE_VERSION_CONTEXT",
    "IMAGES_PER_STEP",
    "DeploymentTarget",
    "ImageToBuild",
    "MdlcPipelineStack",
    "MdlcStage",
    "PipelineConfig",
    "build",
    "code_version",
]


@dataclass(frozen=True)
class ImageToBuild:
    """One custom container a pipeline step builds after a stage deploys."""

    model: str
    image: CustomImage
    #: The image's place among its model's custom images (0 for the first).
    index: int


@dataclass(frozen=True)
class DeploymentTarget:
    """Where a stage deploys. ``None``: the pipeline's own account or region."""

    account: str | None = None
    region: str | None = None

    def validate(self, where: str) -> None:
        if self.account is not None and not _ACCOUNT.match(self.account):
            raise ValueError(f"{where}.account: expected 12 digits, got {self.account!r}")
        if self.region is not None and not _REGION.match(self.region):
            raise ValueError(f"{where}.region: expected a region like 'eu-west-1', got "
                             f"{self.region!r}")


@dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline builds from and deploys to.

    Attributes:
        repository: the CodeCommit repository's name, or ``owner/name`` of
            the repository behind ``connection_arn``.
        branch: Default ``main``.
        connection_arn: a CodeStar (CodeConnections) connection. Default:
            none, the source is CodeCommit.
        create_repository: create the CodeCommit repository in the pipeline
            stack (retained on delete). Default: no, it exists already.
        account, region: of the pipeline itself. Default: the environment
            the pipeline stack is given (or the CLI's).
        staging, production: deployment targets. Default: the pipeline's
            account and region.
        models_dir: the specs, relative to the repository root. Default ``models``.
        shared_platform: one platform stack per stage plus one small stack
            per model (True, the default), or self-contained model stacks.
        pipeline_name: Default ``mdlc``.
        actions_per_stage: the most actions in one pipeline stage. A stage of
            more (a deployment of many models) is deployed in waves
            ``Staging.1``, ``Staging.2``, ... of at most this many, in order
            (:mod:`~mdlc_constructs.pipeline_waves`). Default 40, 20% below
            CodePipeline's hard limit of 50.
        use_change_sets: deploy each stack with two actions, create a change
            set, then execute it (CDK Pipelines' default), instead of one.
            Default False: one action per stack halves the pipeline's actions
            and template, which is what lets 200 models fit one pipeline with
            room to spare (docs/scaling.md).
    """

    repository: str
    branch: str = "main"
    connection_arn: str | None = None
    create_repository: bool = False
    account: str | None = None
    region: str | None = None
    staging: DeploymentTarget = field(default_factory=DeploymentTarget)
    production: DeploymentTarget = field(default_factory=DeploymentTarget)
    models_dir: str = "models"
    shared_platform: bool = True
    pipeline_name: str = "mdlc"
    actions_per_stage: int = DEFAULT_ACTIONS_PER_STAGE
    use_change_sets: bool = False

    def __post_init__(self) -> None:
        if (isinstance(self.actions_per_stage, bool) or not isinstance(self.actions_per_stage, int)
                or not 1 <= self.actions_per_stage <= CODEPIPELINE_MAX_ACTIONS):
            raise ValueError(
                f"{PIPELINE_CONTEXT}.actions_per_stage: expected a whole number from 1 to "
                f"{CODEPIPELINE_MAX_ACTIONS} (CodePipeline's limit per stage), got "
                f"{self.actions_per_stage!r}")
        if not isinstance(self.use_change_sets, bool):
            raise ValueError(f"{PIPELINE_CONTEXT}.use_change_sets: expected true or false, got "
                             f"{self.use_change_sets!r}")
        if self.connection_arn is not None:
            if not _CONNECTION.match(self.connection_arn):
                raise ValueError(
                    f"{PIPELINE_CONTEXT}.connection_arn: expected a CodeStar connection ARN "
                    f"(arn:aws:codestar-connections:<region>:<account>:connection/<id>), "
                    f"got {self.connection_arn!r}"
                )
            if self.repository.count("/") != 1:
                raise ValueError(
                    f"{PIPELINE_CONTEXT}.repository: with a connection, expected 'owner/name', "
                    f"got {self.repository!r}"
                )
            if self.create_repository:
                raise ValueError(
                    f"{PIPELINE_CONTEXT}.create_repository: only for CodeCommit, not with a "
                    "connection"
                )
        elif not re.match(r"^[\w.-]{1,100}$", self.repository):
            raise ValueError(
                f"{PIPELINE_CONTEXT}.repository: expected a CodeCommit repository name "
                f"(letters, digits, '.', '_', '-'), got {self.repository!r}"
            )
        DeploymentTarget(self.account, self.region).validate(PIPELINE_CONTEXT)
        self.staging.validate(f"{PIPELINE_CONTEXT}.staging")
        self.production.validate(f"{PIPELINE_CONTEXT}.production")

    @property
    def source_kind(self) -> str:
        """``codecommit`` or ``connection``."""
        return "connection" if self.connection_arn else "codecommit"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PipelineConfig:
        """From plain data, e.g. cdk.json's ``context["mdlc:pipeline"]``."""
        data = dict(data)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{PIPELINE_CONTEXT}: unknown fields {unknown}; expected some of "
                             f"{sorted(known)}")
        if "repository" not in data:
            raise ValueError(f"{PIPELINE_CONTEXT}.repository: required")
        for stage in ("staging", "production"):
            value = data.get(stage) or {}
            if not isinstance(value, Mapping) or set(value) - {"account", "region"}:
                raise ValueError(f"{PIPELINE_CONTEXT}.{stage}: expected {{account, region}}, "
                                 f"got {value!r}")
            data[stage] = DeploymentTarget(
                account=str(value["account"]) if value.get("account") else None,
                region=value.get("region"),
            )
        if data.get("account") is not None:
            data["account"] = str(data["account"])
        return cls(**data)

    @classmethod
    def from_context(cls, scope: Construct) -> PipelineConfig | None:
        """The ``mdlc:pipeline`` context value, or None when there is none."""
        value = scope.node.try_get_context(PIPELINE_CONTEXT)
        if value is None:
            return None
        if isinstance(value, str):
            # `cdk synth -c mdlc:pipeline='{...}'` passes the JSON text as a string.
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{PIPELINE_CONTEXT}: not valid JSON ({error.msg} at line {error.lineno} "
                    f"column {error.colno}): {value!r}") from None
        if not isinstance(value, Mapping):
            raise ValueError(f"{PIPELINE_CONTEXT}: expected an object, got {value!r}")
        return cls.from_mapping(value)

    @property
    def cross_account(self) -> bool:
        """Whether a stage deploys to an account other than the pipeline's."""
        return any(
            t.account is not None and t.account != self.account
            for t in (self.staging, self.production)
        )


class MdlcStage(cdk.Stage):
    """One deployment of every model: what :func:`build_app` builds, in a Stage.

    Args:
        models_dir: the spec folder (read at synthesis).
        shared_platform: see :func:`build_app`. Default True.
        model_stack: builds one model's stack. Default: ``MdlcModelStack``.
        **kwargs: passed to ``Stage`` (``env``, ...).

    Attributes:
        app: the :class:`MdlcApp` (``platform``, ``models``, ``specs``).
        images: ``{model name: [CustomImage, ...]}``, the containers built after deployment.
    """

    #: The shared platform's class (``build_app(platform_class=...)``), built
    #: under ``Mdlc-Platform`` when ``shared_platform``; a team's subclass of
    #: the stage sets its own (docs/extending.md).
    platform_class: type[MdlcPlatformStack] = MdlcPlatformStack

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        models_dir: str | Path,
        shared_platform: bool = True,
        model_stack: ModelStackFactory = default_model_stack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.app: MdlcApp = build_app(
            self, models_dir, shared_platform=shared_platform, model_stack=model_stack,
            platform_class=self.platform_class,
        )
        self.images: dict[str, list[CustomImage]] = {
            name: [c for c in stack.node.find_all() if isinstance(c, CustomImage)]
            for name, stack in self.app.models.items()
        }


class MdlcPipelineStack(cdk.Stack):
    """The CI/CD pipeline of a repository of model specs.

    Args:
        config: source, stages and accounts.
        models_dir: where the specs are at synthesis. Default:
            ``config.models_dir`` relative to the current directory.
        key: encrypts artifacts and build output. Default: a new key with
            rotation, retained on delete.
        model_stack: builds one model's stack in every stage. Default:
            ``MdlcModelStack``; a team passes its subclass.
        **kwargs: passed to ``Stack``. ``env`` defaults to the config's
            account and region.

    Attributes:
        config, key, artifact_bucket, access_log_bucket, repository (CodeCommit,
        or None), source (``pipelines.CodePipelineSource``), synth (the synth
        ``CodeBuildStep``), pipeline (``pipelines.CodePipeline``), staging,
        production (:class:`MdlcStage`), approval (the ``ManualApprovalStep``),
        image_steps (``{stage id: [CodeBuildStep, ...]}``, each building up
        to :data:`IMAGES_PER_STEP` images), stage_count (the
        CodePipeline stages after splitting deployments into waves).

    Extension points (plain methods called from the constructor):
    ``build_source``, ``build_synth``, ``build_stage``, ``build_image_step``;
    and ``stage_class``, the class ``build_stage`` instantiates.
    """

    #: ``build_stage``: the class of the Staging and Production stages (each
    #: every model's stacks, and the platform's), under ids ``Staging`` and
    #: ``Production``.
    stage_class: type[MdlcStage] = MdlcStage

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        models_dir: str | Path | None = None,
        key: kms.IKey | None = None,
        model_stack: ModelStackFactory = default_model_stack,
        **kwargs: Any,
    ) -> None:
        if "env" not in kwargs and (config.account or config.region):
            kwargs["env"] = cdk.Environment(account=config.account, region=config.region)
        kwargs.setdefault("description", f"mdlc-constructs CI/CD pipeline {config.pipeline_name}")
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.models_dir = Path(models_dir or config.models_dir)
        self.model_stack = model_stack
        # Fail at synthesis, naming the file and field, not in the pipeline.
        load_specs(self.models_dir)
        self._check_cross_account()
        self.key = key or self._create_key()
        self.access_log_bucket = self._create_access_log_bucket()
        self.artifact_bucket = self._create_artifact_bucket()
        self.repository: codecommit.IRepository | None = None
        self.source = self.build_source()
        self.synth = self.build_synth(self.source)
        code_pipeline = codepipeline.Pipeline(
            self,
            "CodePipeline",
            pipeline_name=config.pipeline_name,
            artifact_bucket=self.artifact_bucket,
            pipeline_type=codepipeline.PipelineType.V2,
            # A new commit supersedes a run that is still deploying the old one.
            restart_execution_on_update=True,
        )
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            code_pipeline=code_pipeline,
            synth=self.synth,
            self_mutation=True,
            publish_assets_in_parallel=False,
            use_change_sets=config.use_change_sets,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(
                    build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                    compute_type=codebuild.ComputeType.MEDIUM,
                ),
                timeout=minutes(60),
            ),
        )
        self.image_steps: dict[str, list[pipelines.CodeBuildStep]] = {}
        self.staging = self.build_stage("Staging", config.staging)
        self.pipeline.add_stage(self.staging, post=self._image_steps(self.staging))
        self.approval = pipelines.ManualApprovalStep(
            "PromoteToProduction",
            comment="Staging is deployed and its images are built: promote this commit "
            "to production?",
        )
        self.production = self.build_stage("Production", config.production)
        self.pipeline.add_stage(
            self.production, pre=[self.approval], post=self._image_steps(self.production)
        )
        # Pipeline-internal constructs exist only after build_pipeline().
        self.pipeline.build_pipeline()
        self.stage_count = apply_waves(code_pipeline, config.actions_per_stage)
        acknowledge_pipeline(self)

    # -- extension points -----------------------------------------------------------

    def build_source(self) -> pipelines.CodePipelineSource:
        """CodeCommit (``config.repository``) or the CodeStar connection's repository."""
        c = self.config
        if c.connection_arn:
            return pipelines.CodePipelineSource.connection(
                c.repository,
                c.branch,
                connection_arn=c.connection_arn,
                # The synth step reads the commit id from the source's variables;
                # no clone credentials are needed in CodeBuild.
                code_build_clone_output=False,
                trigger_on_push=True,
            )
        if c.create_repository:
            repository: codecommit.IRepository = codecommit.Repository(
                self,
                "Repository",
                repository_name=c.repository,
                description="Model specs and team code of the MDLC pipeline",
                kms_key=self.key,
            )
            # The source of every model version: never deleted with the stack.
            repository.apply_removal_policy(cdk.RemovalPolicy.RETAIN)
        else:
            repository = codecommit.Repository.from_repository_name(
                self, "Repository", c.repository
            )
        self.repository = repository
        return pipelines.CodePipelineSource.code_commit(
            repository,
            c.branch,
            trigger=None,  # EventBridge (the default), not polling
            code_build_clone_output=False,
        )

    def build_synth(self, source: pipelines.CodePipelineSource) -> pipelines.CodeBuildStep:
        """Install, ``make test``, synthesize with the commit id; output ``cdk.out``."""
        return pipelines.CodeBuildStep(
            "Synth",
            input=source,
            env={
                # The CommitId source variable: the same value for CodeCommit
                # and connections, and it survives retries of this step.
                "MDLC_CODE_VERSION": source.source_attribute("CommitId"),
            },
            install_commands=["make install"],
            commands=[
                "make test",
                f'{CDK_COMMAND} synth --quiet --app ".venv/bin/python app.py" '
                f'-c {CODE_VERSION_CONTEXT}="$MDLC_CODE_VERSION"',
            ],
            primary_output_directory="cdk.out",
            partial_build_spec=codebuild.BuildSpec.from_object(
                {"phases": {"install": {"runtime-versions": {"python": "3.12",
                                                             "nodejs": "20"}}}}
            ),
        )

    def build_stage(self, construct_id: str, target: DeploymentTarget) -> MdlcStage:
        """One stage with every model stack, in ``target``'s account and region."""
        env = None
        if target.account or target.region:
            env = cdk.Environment(
                account=target.account or self.config.account,
                region=target.region or self.config.region,
            )
        return self.stage_class(
            self,
            construct_id,
            models_dir=self.models_dir,
            shared_platform=self.config.shared_platform,
            model_stack=self.model_stack,
            env=env,
        )

    def build_image_step(
        self, stage: MdlcStage, images: Sequence[ImageToBuild], index: int
    ) -> pipelines.CodeBuildStep:
        """After a stage is deployed: build ``images`` (at most
        :data:`IMAGES_PER_STEP` custom containers) in that stage's account,
        each with its own CodeBuild project, in parallel.

        Each project is the one the training workflow runs before each job: it
        skips an existing tag, so training never waits for this build twice.
        For each image the step assumes a role its model stack creates for
        exactly this (``PipelineImageBuild``), trusted by the pipeline's
        account only. One step builds several images because every step is a
        CodeBuild project, role and policy in the pipeline stack (at most 500
        resources), and it reads each project's name from a CodePipeline
        variable (at most 1,000 characters of variables per action).
        """
        env: dict[str, str] = {}
        outputs: dict[str, cdk.CfnOutput] = {}
        role_arns = []
        for number, image in enumerate(images, start=1):
            model_stack = stage.app.models[image.model]
            suffix = "" if image.index == 0 else str(image.index + 1)
            trigger = _ImageBuildTrigger(
                model_stack,
                f"PipelineImageBuild{suffix}",
                image=image.image,
                pipeline_account=self.account,
                role_name=_image_role_name(image.model, stage.stage_name, suffix),
            )
            # The role's name is fixed, so its ARN needs no variable.
            role_arn = (f"arn:{cdk.Aws.PARTITION}:iam::{model_stack.account}:role/"
                        f"{trigger.role_name}")
            role_arns.append(role_arn)
            env[f"ROLE_ARN_{number}"] = role_arn
            outputs[f"PROJECT_{number}"] = trigger.project_output
        commands = [
            "set -euo pipefail",
            # One image: assume its role (for as long as the build may take),
            # start its project, poll to the end (CodeBuild has no waiter).
            "build() { "
            'creds=$(aws sts assume-role --role-arn "$1" --role-session-name mdlc-image-build '
            "--duration-seconds 7200 --query Credentials --output text); "
            'read -r AWS_ACCESS_KEY_ID _ AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN <<< "$creds"; '
            "export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN; "
            'id=$(aws codebuild start-build --project-name "$2" --query build.id --output text); '
            'echo "building $2: $id"; '
            'while status=$(aws codebuild batch-get-builds --ids "$id" '
            '--query "builds[0].buildStatus" --output text); '
            '[ "$status" = IN_PROGRESS ]; do sleep 20; done; '
            'echo "build $id: $status"; test "$status" = SUCCEEDED; }',
            "pids=()",
            *[f'build "$ROLE_ARN_{n}" "$PROJECT_{n}" & pids+=($!)'
              for n in range(1, len(images) + 1)],
            # Every build runs to its end; the step fails if any did.
            'failed=0; for pid in "${pids[@]}"; do wait "$pid" || failed=1; done; '
            'exit "$failed"',
        ]
        return pipelines.CodeBuildStep(
            f"BuildImages-{index}",
            env=env,
            env_from_cfn_outputs=outputs,
            commands=commands,
            role_policy_statements=[
                iam.PolicyStatement(actions=["sts:AssumeRole"], resources=role_arns)
            ],
            timeout=minutes(70),
        )

    # -- internals ------------------------------------------------------------------

    def _image_steps(self, stage: MdlcStage) -> list[pipelines.Step]:
        images = [ImageToBuild(model, image, index)
                  for model, custom in stage.images.items()
                  for index, image in enumerate(custom)]
        steps = [
            self.build_image_step(stage, images[start:start + IMAGES_PER_STEP],
                                  start // IMAGES_PER_STEP + 1)
            for start in range(0, len(images), IMAGES_PER_STEP)
        ]
        self.image_steps[stage.stage_name] = steps
        return list(steps)

    def _check_cross_account(self) -> None:
        if self.config.cross_account and cdk.Token.is_unresolved(self.account):
            raise ValueError(
                f"{PIPELINE_CONTEXT}.account: stages deploy to other accounts, so the "
                "pipeline's own account must be given (account and region)"
            )

    def _create_key(self) -> kms.Key:
        return kms.Key(
            self,
            "ArtifactKey",
            description=f"Encrypts the artifacts and build output of pipeline "
            f"{self.config.pipeline_name}",
            enable_key_rotation=True,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )

    def _create_access_log_bucket(self) -> s3.Bucket:
        return access_log_bucket(
            self,
            "AccessLogs",
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=days(365),
                    noncurrent_version_expiration=days(30),
                )
            ],
            removal_policy=cdk.RemovalPolicy.RETAIN,
            replication_reason="Access logs of pipeline artifacts; the artifacts are "
            "rebuilt from the repository",
        )

    def _create_artifact_bucket(self) -> s3.Bucket:
        return encrypted_bucket(
            self,
            "Artifacts",
            key=self.key,
            log_bucket=self.access_log_bucket,
            log_prefix="artifacts/",
            # Artifacts are rebuilt from the repository at any commit.
            lifecycle_rules=[s3.LifecycleRule(expiration=days(90),
                                              noncurrent_version_expiration=days(7))],
            removal_policy=cdk.RemovalPolicy.RETAIN,
            replication_reason="Pipeline artifacts are derived data: any commit's artifacts "
            "are rebuilt from the source repository, so a replica would add cost and no "
            "recovery",
        )

class _ImageBuildTrigger(Construct):
    """In a model stack: a role the pipeline's account assumes to run the image
    build project, and the outputs the pipeline step reads."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        image: CustomImage,
        pipeline_account: str,
        role_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.role_name = role_name
        self.role = iam.Role(
            self,
            "Role",
            role_name=role_name,
            assumed_by=iam.AccountPrincipal(pipeline_account),
            description=f"Lets the MDLC pipeline build {image.image_tag}",
            max_session_duration=hours(2),
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["codebuild:StartBuild", "codebuild:BatchGetBuilds"],
                resources=[image.project.project_arn],
            )
        )
        self.project_output = cdk.CfnOutput(
            self, "Project", value=image.project.project_name,
            description="CodeBuild project that builds this model's container",
        )
        # The role's ARN needs no output: its name is fixed (_image_role_name),
        # so the pipeline step names it directly.


def _image_role_name(model: str, stage: str, suffix: str) -> str:
    # Named, so the pipeline's policy can name it before the stage exists;
    # per stage, so staging and production may share an account.
    return f"mdlc-{model}-image{suffix}-{stage.lower()}"[:64]


def build(
    app: cdk.App,
    models_dir: str | Path,
    *,
    shared_platform: bool = True,
    env: cdk.Environment | None = None,
    model_stack: ModelStackFactory = default_model_stack,
) -> MdlcPipelineStack | MdlcApp:
    """The whole app: the pipeline when context ``mdlc:pipeline`` configures one,
    else the stacks themselves (:func:`build_app`), for ``cdk deploy`` by hand.

    The pipeline stack's id is ``MdlcPipeline``; its stages contain the model
    stacks, so ``cdk deploy MdlcPipeline`` is the only deployment by hand.
    """
    config = PipelineConfig.from_context(app)
    if config is None:
        return build_app(
            app, models_dir, shared_platform=shared_platform, env=env, model_stack=model_stack,
            only=only_from_context(app),
        )
    if only_from_context(app) is not None:
        raise ValueError(f"{ONLY_CONTEXT}: a pipeline deploys every model; remove it "
                         "(it selects stacks to synthesize by hand)")
    return MdlcPipelineStack(
        app, "MdlcPipeline", config=config, models_dir=models_dir, model_stack=model_stack
    )
