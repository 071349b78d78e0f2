"""Spec sections for inference (stage 6) and client integration (stage 8)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import Fraction, Identifier, InstanceType, PositiveInt, Schedule, SpecModel


class BatchInferenceSpec(SpecModel):
    """Scheduled batch transform over the day's inference snapshot."""

    enabled: bool = True
    schedule: Schedule = "cron(0 6 * * ? *)"
    instance_type: InstanceType = "ml.m5.xlarge"
    instance_count: PositiveInt = 1


class Autoscaling(SpecModel):
    min_capacity: PositiveInt = 1
    max_capacity: PositiveInt = 4
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

    strategy: Literal["canary", "linear", "all_at_once"] = "canary"
    step_percent: int = Field(default=10, ge=1, le=99, description="canary size or linear step")
    wait_minutes: int = Field(default=5, ge=0, le=60, description="between traffic shifts")
    bake_minutes: int = Field(default=10, ge=0, le=60, description="after the last shift")
    max_error_rate: Fraction = Field(default=0.01, description="5XX share that rolls back")
    max_p99_latency_ms: int = Field(default=500, ge=1, description="model latency that rolls back")


class RealtimeSpec(SpecModel):
    """A SageMaker endpoint serving the approved model package."""

    enabled: bool = True
    instance_type: InstanceType = "ml.m5.large"
    initial_instance_count: PositiveInt = 1
    autoscaling: Autoscaling = Autoscaling()
    deployment: Deployment = Deployment()
    data_capture_percent: int = Field(default=100, ge=0, le=100)


class Rule(SpecModel):
    """A decision rule: the first rule whose ``when`` holds picks the action."""

    id: Identifier
    when: str = Field(min_length=1, description="e.g. 'score >= 0.9'; names: score and features")
    action: Identifier


class ActionTarget(SpecModel):
    """Where an action sends its decision, besides the decision log.

    ``custom`` runs a team's own ``mdlc_core.actions.Action`` subclass, named
    by ``handler`` ("module:Class", bundled with the function); its IAM
    permissions are the team's to grant.
    """

    kind: Literal["sns", "sqs", "eventbridge", "log", "custom"]
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

    enabled: bool = True
    mode: Literal["fused", "state_machine"] = Field(
        default="fused",
        description="fused: one consumer batches reads and endpoint calls; state_machine: "
        "an Express workflow per event, as in the talk",
    )
    shards: int | None = Field(default=None, ge=1, description="default: on-demand capacity")
    batch_size: int = Field(default=100, ge=1, le=10000)
    max_batching_window_seconds: int = Field(default=1, ge=0, le=300)
    retry_attempts: int = Field(default=3, ge=0, le=10)
    max_record_age_seconds: int = Field(default=3600, ge=60, le=604800)
    rules: list[Rule] = Field(min_length=1)
    default_action: Identifier
    actions: dict[Identifier, ActionTarget] = Field(
        default_factory=dict, description="action name -> target; default: the decision log only"
    )

    @property
    def action_names(self) -> list[str]:
        names = [rule.action for rule in self.rules] + [self.default_action]
        return list(dict.fromkeys(names))


class InferenceSpec(SpecModel):
    batch: BatchInferenceSpec = BatchInferenceSpec()
    realtime: RealtimeSpec = RealtimeSpec()
