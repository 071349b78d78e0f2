"""What every stage construct of one model takes and keeps: the spec, the data lake, the topic.

Each stage (:class:`~mdlc_constructs.preparation.DataPreparation`,
:class:`~mdlc_constructs.training.TrainingWorkflow`, the inference, monitoring
and integration constructs) is built for one model spec, stores its data in
the model's :class:`~mdlc_constructs.storage.DataLake` (encrypted with its
key) and notifies the model's topic. :class:`ModelStage` takes those three
props once, keyword-only as every construct prop, and keeps them as the
attributes ``spec``, ``data_lake``, ``key`` (the lake's) and ``topic``; a
stage adds its own props in front of ``**stage: Unpack[StageProps]``, so a
caller still writes ``TrainingWorkflow(self, "Training", spec=spec,
data_lake=lake, topic=topic, preparation=prep)`` and a type checker still
checks every keyword.

The parts of data preparation (sourcing, quality, features) notify through
their parent's workflow, not a topic of their own: they are
:class:`DataStage` s, which take and keep only the spec and the data lake
(:class:`DataStageProps`).

Every stage's functions are made the same way, so the way is written here
once: :meth:`DataStage.stage_function` (the lake's key, the whole spec as
the function's configuration) and :meth:`DataStage.data_function` (one that
reads the model's dated snapshots, with the data layer); likewise a stage's
workflow: :meth:`ModelStage.stage_workflow` (the lake's key, the stage's
topic told of failures and timeouts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from .functions import python_function
from .spec import ModelSpec
from .storage import DataLake
from .workflow import state_machine


class DataStageProps(TypedDict):
    """The props every part of a model's data stages takes (all required)."""

    #: The model spec the stage is built for.
    spec: ModelSpec
    #: The model's buckets and key (which encrypts what the stage writes).
    data_lake: DataLake


class StageProps(DataStageProps):
    """The props every stage of a model takes (all required)."""

    #: Where the stage publishes failures and results.
    topic: sns.ITopic


class DataStage(Construct):
    """A construct that reads and writes one model's data lake (see the module docstring).

    Args:
        spec: the model spec.
        data_lake: the model's buckets; its ``key`` encrypts what the stage writes.

    Attributes:
        spec, data_lake, key (``data_lake.key``).
    """

    def __init__(self, scope: Construct, construct_id: str, *, spec: ModelSpec,
                 data_lake: DataLake) -> None:
        super().__init__(scope, construct_id)
        self.spec = spec
        self.data_lake = data_lake
        self.key = data_lake.key

    def stage_function(self, construct_id: str, *, handler: str | Path, description: str,
                       **options: Any) -> lambda_.Function:
        """The function ``lambdas/<handler>`` of this stage, a child of it.

        :func:`~mdlc_constructs.functions.python_function` with the lake's key
        (logs and environment) and the spec as the handler's configuration;
        ``options`` are python_function's other keyword arguments.
        """
        return python_function(self, construct_id, handler=handler, description=description,
                               key=self.key, config=self.spec.as_config(), **options)

    def data_function(self, construct_id: str, *, handler: str | Path, description: str,
                      environment: dict[str, str], **options: Any) -> lambda_.Function:
        """A :meth:`stage_function` that reads the model's dated snapshots.

        It gets the data layer (the engines' libraries) and ``DATASETS_BUCKET``
        in front of ``environment``; its grants stay with the caller, which
        knows what it reads and writes.
        """
        return self.stage_function(
            construct_id, handler=handler, description=description, data_layer=True,
            environment={"DATASETS_BUCKET": self.data_lake.datasets.bucket_name, **environment},
            **options)


class ModelStage(DataStage):
    """A construct that is one stage of one model (see the module docstring).

    Args:
        spec: the model spec.
        data_lake: the model's buckets; its ``key`` encrypts what the stage writes.
        topic: the model's notifications.

    Attributes:
        spec, data_lake, key (``data_lake.key``), topic.
    """

    def __init__(self, scope: Construct, construct_id: str, *, spec: ModelSpec,
                 data_lake: DataLake, topic: sns.ITopic) -> None:
        super().__init__(scope, construct_id, spec=spec, data_lake=data_lake)
        self.topic = topic

    def stage_workflow(self, construct_id: str, *, definition: sfn.IChainable,
                       timeout: Duration, comment: str, run: str) -> sfn.StateMachine:
        """This stage's state machine (:func:`~mdlc_constructs.workflow.state_machine`).

        Encrypted with the lake's key; it publishes to the stage's topic, which
        also hears of a run that times out ("Notify when a ``run`` run of
        <model> times out" describes that rule).
        """
        return state_machine(
            self, construct_id, definition=definition, key=self.key, timeout=timeout,
            comment=comment, notifies=[self.topic],
            timed_out=f"Notify when a {run} run of {self.spec.name} times out")
