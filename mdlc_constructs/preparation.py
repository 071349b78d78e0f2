"""Stages 1-3 as one chain: source the day's snapshot, check it, compute its
features. Training and batch inference start with this chain; a scheduled
workflow runs it daily so every snapshot is checked when it is taken."""

from __future__ import annotations

from typing import Protocol, Unpack

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from .deprecation import renamed
from .features import FeatureEngineering
from .quality import DataQuality
from .sourcing import DataSourcing
from .stage import ModelStage, StageProps
from .tokens import hours
from .workflow import error_boundary, scheduled_start


class PreparationSteps(Protocol):
    """What a workflow that starts with data preparation takes (training, batch
    inference): the chain of steps that leaves ``$.data`` (snapshot, quality,
    features), and what its state machine needs beyond those steps' own
    grants. :class:`DataPreparation` is one; a test passes a stand-in."""

    def chain(self, scope: Construct, prefix: str) -> sfn.IChainable: ...

    def grant_to(self, machine: sfn.StateMachine) -> iam.Grant: ...


class DataPreparation(ModelStage):
    """Sourcing, quality and features for one model, and their daily workflow.

    The workflow's input is ``{"date": "YYYY-MM-DD"}`` (absent: yesterday, as
    the schedule runs it; given: a backfill). It leaves at ``$.data``:
    ``snapshot`` (the sourcing result), ``quality`` (passed, violations,
    report_uri) and ``features`` (features_key, entities_key, rows).

    Args:
        spec, data_lake, topic: the model spec, its data lake and its topic.
        stream: the model's event stream, for online features.

    Attributes:
        sourcing, quality, features: the stage constructs (built from
            ``sourcing_class``, ``quality_class``, ``features_class``).
        state_machine: the daily workflow.
        schedule_rule: its schedule (``data.schedule``).
    """

    # Each part is built from its class attribute (the mechanism of
    # MdlcModelStack's stage attributes), under the library's construct id: a
    # team swaps one part by subclassing it and setting the attribute on a
    # subclass of DataPreparation (docs/extending.md).

    #: ``Sourcing``: e.g. a subclass passing its own ``handler`` folder.
    sourcing_class: type[DataSourcing] = DataSourcing
    #: ``Quality``: the check of each snapshot.
    quality_class: type[DataQuality] = DataQuality
    #: ``Features``: batch and online features.
    features_class: type[FeatureEngineering] = FeatureEngineering

    #: Deprecated: :attr:`schedule_rule`.
    rule = renamed("schedule_rule")

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stream: kinesis.IStream | None = None,
        **stage: Unpack[StageProps],
    ) -> None:
        super().__init__(scope, construct_id, **stage)
        spec, data_lake, topic = self.spec, self.data_lake, self.topic
        self.sourcing = self.sourcing_class(self, "Sourcing", spec=spec, data_lake=data_lake)
        self.quality = self.quality_class(self, "Quality", spec=spec, data_lake=data_lake)
        self.features = self.features_class(
            self, "Features", spec=spec, data_lake=data_lake, stream=stream
        )
        workflow = error_boundary(
            self,
            "PrepareData",
            steps=self.chain(self, "Daily"),
            topic=topic,
            failure_id="DataPreparation",
            subject=f"MDLC {spec.name}: data preparation failed",
            cause="Data preparation failed; see the execution",
            result_path="$.prepared",
        )
        self.state_machine = self.stage_workflow(
            "Workflow", definition=workflow, timeout=hours(2),
            comment=f"MDLC {spec.name}: source, check and featurize the day's snapshot",
            run="data preparation",
        )
        if spec.quality.runner == "processing":
            self.quality.grant_processing(self.state_machine.role)
        self.schedule_rule = scheduled_start(
            self,
            "Schedule",
            machine=self.state_machine,
            schedule=spec.data.schedule,
            description=f"MDLC {spec.name}: daily data preparation",
        )

    def chain(self, scope: Construct, prefix: str) -> sfn.Chain:
        """Source → check (violations notify and fail) → features, as new states
        in ``scope`` with ids starting with ``prefix``, for any workflow."""
        source = self.sourcing.task(scope, f"{prefix}SourceSnapshot")
        check = self.quality.check(scope, f"{prefix}CheckQuality")
        features = self.features.compute(scope, f"{prefix}ComputeFeatures")
        return sfn.Chain.start(source).next(check).next(features)

    def grant_to(self, machine: sfn.StateMachine) -> iam.Grant:
        """What another workflow using :meth:`chain` needs beyond its Lambda grants."""
        if self.spec.quality.runner == "processing":
            return self.quality.grant_processing(machine.role)
        return iam.Grant.drop(machine, "the chain's Lambda steps carry their own grants")
