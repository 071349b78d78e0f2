"""Spec sections for inference (stage 6) and client integration (stage 8)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import Fraction, Identifier, InstanceType, PositiveInt, Schedule, SpecModel


class BatchInferenceSpec(SpecModel):
    """Scheduled batch transform over the day's inference snapshot."""

    enabled: bool = Field(default=True, description="false: no batch transform workflow")
    schedule: Schedule = Field(default="cron(0 6 * * ? *)", description="when it runs (UTC)")
    instance_type: InstanceType = Field(
        default="ml.m5.xlarge", description="the transform job's instances"
    )
    instance_count: PositiveInt = Field(default=1, description="instances of the job")


class Autoscaling(SpecModel):
    """Target tracking on invocations per instance."""

    min_capacity: PositiveInt = Field(default=1, description="fewest instances")
    max_capacity: PositiveInt = Field(
        default=4, description="most instances; at least min_capacity"
    )
    target_invocations_per_instance: PositiveInt = Field(
        default=1000, description="per minute, the target-tracking metric"
    )

    @model_validator(mode="after")
    def _order(self) -> Autoscaling:
        if self.min_capacity > self.max_capacity:
            raise ValueError(
                f"min_capacity ({self.min_capacity}) exceeds max_capacity ({self.max_capacity})"
            )
        return self


class Deployment(SpecModel):
    """Blue/green traffic shifting with automatic rollback on alarms."""

    strategy: Literal["canary", "linear", "all_at_once"] = Field(
        default="canary",
        description="how traffic moves to the new fleet; a canary is at most 50% of it, a "
        "linear step 10-50%",
    )
    step_percent: int = Field(default=10, ge=1, le=99, description="canary size or linear step")
    wait_minutes: int = Field(default=5, ge=0, le=60, description="between traffic shifts")
    bake_minutes: int = Field(default=10, ge=0, le=60, description="after the last shift")
    max_error_rate: Fraction = Field(default=0.01, description="5XX share that rolls back")
    max_p99_latency_ms: int = Field(default=500, ge=1, description="model latency that rolls back")


class RealtimeSpec(SpecModel):
    """A SageMaker endpoint serving the approved model package."""

    enabled: bool = Field(
        default=True, description="false: no endpoint (and no enabled integration)"
    )
    instance_type: InstanceType = Field(default="ml.m5.large", description="the endpoint's")
    initial_instance_count: PositiveInt = Field(
        default=1, description="within autoscaling min_capacity..max_capacity"
    )
    autoscaling: Autoscaling = Field(
        default=Autoscaling(), description="instances follow the invocations"
    )
    deployment: Deployment = Field(
        default=Deployment(), description="how a new model version is deployed"
    )
    data_capture_percent: int = Field(
        default=100, ge=0, le=100, description="share of requests and responses captured"
    )


class Rule(SpecModel):
    """A decision rule: the first rule whose ``when`` holds picks the action."""

    id: Identifier = Field(description="recorded in every decision the rule makes; unique")
    when: str = Field(min_length=1, description="e.g. 'score >= 0.9'; names: score and features")
    action: Identifier = Field(
        description="the action when it holds; one of integration.actions when any are declared"
    )


class ActionTarget(SpecModel):
    """Where an action sends its decision, besides the decision log.

    ``custom`` runs a team's own ``mdlc_core.actions.Action`` subclass, named
    by ``handler`` ("module:Class", bundled with the function); its IAM
    permissions are the team's to grant.
    """

    kind: Literal["sns", "sqs", "eventbridge", "log", "custom"] = Field(
        description="sns: a topic; sqs: a queue; eventbridge: an event bus; log: the "
        "decision log only; custom: a team's Action subclass (handler)"
    )
    handler: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="custom only: 'module:Class' of an Action subclass",
    )
    options: dict[str, str] = Field(
        default_factory=dict, description="passed to the action as self.options"
    )

    @model_validator(mode="after")
    def _handler(self) -> ActionTarget:
        if (self.kind == "custom") != (self.handler is not None):
            raise ValueError("a custom action needs a handler, and only a custom action has one")
        return self


class IntegrationSpec(SpecModel):
    """Client integration: features, inference, rules and actions per event."""

    enabled: bool = Field(
        default=True,
        description="false: no stream consumer (batch inference then writes predictions "
        "only); true needs inference.realtime.enabled and online features",
    )
    mode: Literal["fused", "state_machine"] = Field(
        default="fused",
        description="fused: one consumer batches reads and endpoint calls; state_machine: "
        "an Express workflow per event, as in the talk",
    )
    shards: int | None = Field(default=None, ge=1, description="default: on-demand capacity")
    batch_size: int = Field(default=100, ge=1, le=10000, description="records per invocation")
    max_batching_window_seconds: int = Field(
        default=1, ge=0, le=300, description="how long the stream consumer gathers a batch"
    )
    retry_attempts: int = Field(
        default=3, ge=0, le=10,
        description="retries of a failing batch, split in two each time (bisect)",
    )
    max_record_age_seconds: int = Field(
        default=3600, ge=60, le=604800,
        description="older records go to the dead-letter destination",
    )
    rules: list[Rule] = Field(
        min_length=1, description="in order; the first whose when holds decides; ids unique"
    )
    default_action: Identifier = Field(
        description="the action when no rule holds; one of integration.actions when any "
        "are declared"
    )
    actions: dict[Identifier, ActionTarget] = Field(
        default_factory=dict, description="action name -> target; default: the decision log only"
    )

    @property
    def action_names(self) -> list[str]:
        names = [rule.action for rule in self.rules] + [self.default_action]
        return list(dict.fromkeys(names))


class InferenceSpec(SpecModel):
    """Offline and real-time inference (stage 6)."""

    batch: BatchInferenceSpec = Field(
        default=BatchInferenceSpec(), description="the scheduled batch transform"
    )
    realtime: RealtimeSpec = Field(default=RealtimeSpec(), description="the real-time endpoint")
