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
"""

from __future__ import annotations

from typing import TypedDict

from aws_cdk import aws_sns as sns
from constructs import Construct

from .spec import ModelSpec
from .storage import DataLake


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
