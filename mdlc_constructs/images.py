"""SageMaker image URIs from the SageMaker SDK's own data, per region.

Stacks are usually environment-agnostic (the region is a token at
synthesis), so an image cannot be looked up once: we resolve it for every
region the SDK knows into a ``CfnMapping`` and select it with the stack's
region at deploy time.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnMapping, Stack, Token
from constructs import Construct


def image_regions(framework: str, version: str, scope: str = "training") -> list[str]:
    """Regions the SDK lists for ``framework`` at ``version``."""
    from sagemaker.core import image_uris

    config = image_uris.config_for_framework(framework)
    config = config.get(scope, config)
    versions = config.get("versions", {})
    if version not in versions:
        aliases = config.get("version_aliases", {})
        version = aliases.get(version, version)
    if version not in versions:
        raise ValueError(
            f"the SageMaker SDK has no {framework!r} image at version {version!r}; "
            f"known versions: {sorted(versions)}"
        )
    return sorted(versions[version]["registries"])


def image_uri(
    scope: Construct,
    construct_id: str,
    *,
    framework: str,
    version: str,
    image_scope: str = "training",
) -> str:
    """The image URI for the stack's region: a literal when the region is
    known at synthesis, else ``Fn::FindInMap`` on a mapping of every region
    the SDK knows (a region missing from it fails the deployment, naming the
    mapping)."""
    from sagemaker.core import image_uris

    region = Stack.of(scope).region
    if not Token.is_unresolved(region):
        if region not in image_regions(framework, version, image_scope):
            raise ValueError(f"{framework} {version} has no SageMaker image in {region}")
        return image_uris.retrieve(
            framework, region=region, version=version, image_scope=image_scope
        )
    existing = scope.node.try_find_child(construct_id)
    mapping = (
        existing
        if isinstance(existing, CfnMapping)
        else CfnMapping(
            scope,
            construct_id,
            mapping={
                region: {
                    "uri": image_uris.retrieve(
                        framework, region=region, version=version, image_scope=image_scope
                    )
                }
                for region in image_regions(framework, version, image_scope)
            },
        )
    )
    return mapping.find_in_map(Aws.REGION, "uri")
