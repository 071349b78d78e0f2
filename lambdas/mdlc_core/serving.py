"""Which model package a real-time endpoint serves, for the decisions' ``model_version``.

Both integration paths (the fused ``stream_consumer`` and the
``state_machine`` path's ``integration_step``) write into each decision the
model package ARN the endpoint serves, looked up (DescribeEndpoint ->
DescribeEndpointConfig -> DescribeModel: the model's ``ModelPackageName``)
at most once per TTL. Caveats (docs/lineage.md): for up to the TTL after a
deployment, and while a blue/green update shifts traffic (both fleets answer
under the same variant name), a decision may name the version being
replaced; a failed lookup keeps the last answer, and with none the caller
names the variant, never failing an event for it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)
class ServingVersion:
    """The model package ARN the endpoint serves, cached for ``ttl`` seconds.

    Three describe calls on this model's endpoint, configuration and model
    (the only SageMaker reads the function is granted); a failure keeps the
    last answer, since a decision must not wait on its lineage.
    """

    @classmethod
    def from_env(cls) -> ServingVersion | None:
        """From ENDPOINT_NAME and SERVING_VERSION_TTL_SECONDS (default 60); None when
        MODEL_PACKAGE_VERSION fixes the version every decision names."""
        if os.environ.get("MODEL_PACKAGE_VERSION"):
            return None
        return cls(os.environ["ENDPOINT_NAME"],
                   float(os.environ.get("SERVING_VERSION_TTL_SECONDS") or 60))

    def __init__(self, endpoint: str, ttl: float, *,
                 client: Callable[[], Any] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._client_factory = client or lookup_client
        self._client: Any = None
        self.endpoint = endpoint
        self.ttl = ttl
        # time.time, not monotonic: the local simulation's clock moves it.
        self.clock = clock
        self._found: str | None = None
        self._at: float | None = None

    def current(self) -> str | None:
        now = self.clock()
        if self._at is not None and now - self._at < self.ttl:
            return self._found
        try:
            if self._client is None:
                self._client = self._client_factory()
            client = self._client
            endpoint = client.describe_endpoint(EndpointName=self.endpoint)
            config = client.describe_endpoint_config(
                EndpointConfigName=endpoint["EndpointConfigName"])
            model = client.describe_model(
                ModelName=config["ProductionVariants"][0]["ModelName"])
            package = (model.get("PrimaryContainer") or {}).get("ModelPackageName")
        except Exception as error:  # any failure: decide on, with the last answer
            logger.warning("serving version of %s not looked up (%s); decisions keep %s",
                           self.endpoint, error, self._found or "the variant")
            self._at = now  # asked again after the TTL, not on every event of an outage
            return self._found
        self._found, self._at = package or None, now
        return self._found



def lookup_client() -> Any:
    """A SageMaker client that gives up fast: the lookup must never slow a decision
    much (2 s to connect, 5 s to read, two attempts)."""
    import boto3
    from botocore.config import Config

    return boto3.client("sagemaker", config=Config(
        connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 2}))
