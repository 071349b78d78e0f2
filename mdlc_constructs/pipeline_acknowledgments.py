"""cdk-nag acknowledgments of the pipeline stack: what CDK Pipelines' own
roles and projects are granted, and why each wildcard is as narrow as it gets.

Kept apart from :mod:`mdlc_constructs.pipeline` (issue #17): the findings
come from aws-cdk-lib's CodePipeline, CodeBuild and CDK Pipelines constructs,
not from a choice the pipeline module makes, and they are many. The printed
forms (``<Logical.Arn>``, ``<AWS::Region>`` or the literal of an explicit
environment) are built from the resources themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aws_cdk as cdk
from aws_cdk import aws_codebuild as codebuild
from constructs import Construct

from .compliance import acknowledge_all, iam5_action, iam5_resource, resource_token

if TYPE_CHECKING:
    from .pipeline import MdlcPipelineStack


def acknowledge_pipeline(stack: MdlcPipelineStack) -> None:
    """Every acknowledgment the pipeline stack needs, each with its reason."""
    pipeline = stack.pipeline.pipeline
    acknowledge_all(
        stack,
        {
            "PCI.DSS.321-IAMNoInlinePolicy": "CDK Pipelines attaches one policy per role, "
            "scoped to that role's actions; a shared managed policy would widen access",
            # Every CodeBuild project of the pipeline gets its source from the
            # pipeline's artifact (CODEPIPELINE source type), never a URL.
            "PCI.DSS.321-CodeBuildProjectSourceRepoUrl": "Pipeline-sourced projects: the "
            "source is the pipeline's encrypted artifact, there is no repository URL or "
            "credential in the project (the rule misfires on CODEPIPELINE sources)",
            "PCI.DSS.321-CodeBuildProjectEnvVarAwsCred": "No AWS credentials are in the "
            "project's environment; the image steps assume a role at run time",
        },
    )
    acknowledge_all(
        pipeline,
        {
            iam5_action("s3:GetObject*"): "aws-cdk-lib grants on the "
            "pipeline's own artifact bucket only",
            iam5_action("s3:GetBucket*"): "aws-cdk-lib grants on the "
            "pipeline's own artifact bucket only",
            iam5_action("s3:List*"): "aws-cdk-lib grants on the pipeline's "
            "own artifact bucket only",
            iam5_action("s3:DeleteObject*"): "Actions replace their own "
            "output artifacts in the pipeline's bucket",
            iam5_action("s3:Abort*"): "Actions abort their own multipart "
            "uploads to the pipeline's bucket",
            iam5_action("kms:GenerateDataKey*"): "Encrypting artifacts with "
            "the pipeline's own key only",
            iam5_action("kms:ReEncrypt*"): "aws-cdk-lib grant on the "
            "pipeline's own key only",
            iam5_resource(f"<{logical_id(stack.artifact_bucket)}.Arn>/*"): "Every "
            "action reads and writes artifacts under per-execution keys of the pipeline's "
            "own bucket; the object names are only known at run time",
        },
    )
    _acknowledge_projects(stack)
    # The roles CDK Pipelines creates for its CodeBuild projects (synth,
    # self-mutation, asset publishing, image steps) live under the pipeline
    # construct and the stack; acknowledge what they share at the stack.
    acknowledge_all(
        stack,
        {
            iam5_action("s3:GetObject*"): "aws-cdk-lib grants on the "
            "pipeline's artifact bucket and CDK's bootstrap asset buckets only",
            iam5_action("s3:GetBucket*"): "aws-cdk-lib grants on the "
            "pipeline's artifact bucket only",
            iam5_action("s3:List*"): "aws-cdk-lib grants on the pipeline's "
            "artifact bucket only",
            iam5_action("s3:DeleteObject*"): "Build output replaces its "
            "own artifacts in the pipeline's bucket",
            iam5_action("s3:Abort*"): "Builds abort their own multipart "
            "uploads to the pipeline's bucket",
            iam5_action("kms:GenerateDataKey*"): "Encrypting build output "
            "with the pipeline's own key only",
            iam5_action("kms:ReEncrypt*"): "aws-cdk-lib grant on the "
            "pipeline's own key only",
            iam5_resource(f"<{logical_id(stack.artifact_bucket)}.Arn>/*"): "Builds "
            "read and write artifacts under per-execution keys of the pipeline's bucket",
        },
    )


def _acknowledge_projects(stack: MdlcPipelineStack) -> None:
    """The CodeBuild defaults of every project's role, and CDK Pipelines' own roles."""
    region = pseudo(stack.region, "Region")
    account = pseudo(stack.account, "AccountId")
    prefix = f"arn:<AWS::Partition>:{{service}}:{region}:{account}:"
    for project in [c for c in stack.node.find_all() if isinstance(c, codebuild.Project)]:
        name = f"<{logical_id(project)}>"
        acknowledge_all(
            project,
            {
                iam5_resource(f"{prefix.format(service='logs')}log-group:/aws/codebuild/"
                              f"{name}:*"): "The project's own log streams (CodeBuild "
                "names them per build)",
                iam5_resource(f"{prefix.format(service='codebuild')}report-group/{name}-*"):
                "The project's own test report groups "
                "(CodeBuild names them per report)",
            },
        )
    acknowledge_all(
        stack.pipeline.self_mutation_project,
        {
            iam5_resource("*"): "cloudformation:DescribeStacks and "
            "s3:ListBucket of the CDK CLI during self-mutation; the CLI looks up the "
            "bootstrap stack whose name it does not know in advance",
            iam5_resource(f"arn:*:iam::{account}:role/*"): "sts:AssumeRole "
            "only on roles tagged as CDK bootstrap roles (condition on "
            "iam:ResourceTag/aws-cdk:bootstrap-role)",
        },
    )
    assets = stack.pipeline.node.try_find_child("Assets")
    if assets is not None:
        acknowledge_all(
            assets,
            {
                iam5_resource("*"): "CDK Pipelines' asset role starts and "
                "reads the builds of its per-asset projects, created after the role",
                iam5_resource(f"{prefix.format(service='logs')}log-group:/aws/codebuild/*"):
                "Log groups of the asset publishing projects, one "
                "per asset, named by CodeBuild",
                iam5_resource(f"{prefix.format(service='codebuild')}report-group/*"):
                "Report groups of the asset publishing projects, named "
                "by CodeBuild",
            },
        )


def pseudo(value: str, name: str) -> str:
    """How cdk-nag prints an account or region: the value, or ``<AWS::Name>``."""
    return f"<AWS::{name}>" if cdk.Token.is_unresolved(value) else value


def logical_id(resource: Construct) -> str:
    return resource_token(resource)[1:].split(".")[0]
