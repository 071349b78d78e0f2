"""SageMaker image URIs from the SageMaker SDK's own data, per region.

Stacks are usually environment-agnostic (the region is a token at
synthesis), so an image cannot be looked up once: we resolve it for every
region the SDK knows into a ``CfnMapping`` and select it with the stack's
region at deploy time.

The URIs of one image are looked up once per process (:func:`region_image_uris`):
a stack with several Processing runners, or a test session synthesizing many
stacks, asks for the same image again and again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import cache

from aws_cdk import Aws, CfnMapping, Stack, Token
from constructs import Construct


@contextlib.contextmanager
def fast_endpoint_resolver() -> Iterator[None]:
    """Reuse one botocore endpoint resolver while we ask the SDK about many regions.

    ``image_uris.retrieve`` builds a new resolver (parsing botocore's 1 MB
    endpoints.json) on every call: 80 ms a region, seconds per image.
    The answers are the same; only the repeated parsing goes away.
    """
    from sagemaker.core import common_utils

    original = common_utils._botocore_resolver  # noqa: SLF001
    common_utils._botocore_resolver = cache(original)  # type: ignore[assignment]  # noqa: SLF001
    try:
        yield
    finally:
        common_utils._botocore_resolver = original  # type: ignore[assignment]  # noqa: SLF001


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


@cache
def region_image_uris(framework: str, version: str, image_scope: str = "training"
                      ) -> dict[str, str]:
    """Region -> URI of the image, for every region the SDK lists for it (see
    :func:`image_regions`, whose errors it raises). Cached: the dict is shared,
    copy it before changing it."""
    from sagemaker.core import image_uris

    regions = image_regions(framework, version, image_scope)
    with fast_endpoint_resolver():
        return {region: image_uris.retrieve(framework, region=region, version=version,
                                            image_scope=image_scope)
                for region in regions}


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
    uris = region_image_uris(framework, version, image_scope)
    region = Stack.of(scope).region
    if not Token.is_unresolved(region):
        if region not in uris:
            raise ValueError(f"{framework} {version} has no SageMaker image in {region}")
        return uris[region]
    existing = scope.node.try_find_child(construct_id)
    mapping = (
        existing
        if isinstance(existing, CfnMapping)
        else CfnMapping(
            scope,
            construct_id,
            mapping={region: {"uri": uri} for region, uri in uris.items()},
        )
    )
    return mapping.find_in_map(Aws.REGION, "uri")
