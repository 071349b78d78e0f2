"""One model, one stack: every MDLC stage for a spec, wired together."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Stack, Tags
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from .batch_inference import ActionTargets, BatchInferenceWorkflow
from .compliance import acknowledge, batched_acknowledgments
from .integration import ClientIntegration
from .monitoring import ModelMonitoring
from .network import ModelNetwork
from .notifications import notification_topic
from .preparation import DataPreparation
from .realtime import RealtimeEndpoint
from .retraining import Retraining
from .spec import ModelSpec
from .storage import DataLake
from .tokens import hours
from .training import TrainingWorkflow


class MdlcModelStack(Stack):
    """The stack for one model spec.

    Args:
        spec: the model spec (``load_spec('models/<name>.yaml')``).
        data_lake: a shared data lake (e.g. from a platform stack). Default: a
            new one in this stack.
        alarm_topic: an existing topic for failures and approvals. Default: a
            new topic encrypted with the data lake's key.
        network: an existing :class:`ModelNetwork` (e.g. a shared platform's)
            every function, job and endpoint runs in. Default: the one the
            spec's ``network`` section describes (``build_network``), else none.
        **kwargs: passed to ``Stack`` (``env``, ``stack_name``, ...).

    Attributes:
        spec, data_lake, key, topic, stream (or None), preparation, training,
        retraining, realtime, batch_inference, integration (each None when the
        spec disables it), monitoring.

    Each stage is built by a ``build_*`` method called from the constructor;
    a team changes one stage by subclassing and overriding that method.
    """

    # One mechanism for every stage and shared resource the stack builds: the
    # class it instantiates, with the library's construct id and wiring. A team
    # that changes one step subclasses that stage and sets the attribute
    # (docs/extending.md); overriding the ``build_*`` method stays possible for
    # a change of wiring. The constructs that build parts of their own
    # (DataPreparation, MdlcPlatformStack, MdlcStage, MdlcPipelineStack) have
    # attributes named the same way.

    #: The model's own data lake when none is given (construct id ``DataLake``).
    data_lake_class: type[DataLake] = DataLake
    #: ``build_network``: the spec's ``network`` section (construct id ``Network``).
    network_class: type[ModelNetwork] = ModelNetwork
    #: ``build_data_preparation``: sourcing, quality, features, the daily workflow.
    data_preparation_class: type[DataPreparation] = DataPreparation
    #: ``build_training``: e.g. a subclass with its own ``build_evaluation``.
    training_workflow_class: type[TrainingWorkflow] = TrainingWorkflow
    #: ``build_retraining``: schedule, retrain event and alarms, the cooldown.
    retraining_class: type[Retraining] = Retraining
    #: ``build_realtime``: the endpoint and its blue/green deployment workflow.
    realtime_endpoint_class: type[RealtimeEndpoint] = RealtimeEndpoint
    #: ``build_integration``: features, inference, rules and actions per event.
    client_integration_class: type[ClientIntegration] = ClientIntegration
    #: ``build_batch_inference``: the daily transform and its decisions.
    batch_inference_class: type[BatchInferenceWorkflow] = BatchInferenceWorkflow
    #: ``build_monitoring``: the monitoring job, alarms and dashboard.
    monitoring_class: type[ModelMonitoring] = ModelMonitoring

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: ModelSpec,
        data_lake: DataLake | None = None,
        alarm_topic: sns.ITopic | None = None,
        network: ModelNetwork | None = None,
        **kwargs: object,
    ) -> None:
        kwargs.setdefault("description", f"mdlc-constructs model stack for {spec.name!r}")
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        with batched_acknowledgments():
            self._build(spec, data_lake, alarm_topic, network)

    def _build(self, spec: ModelSpec, data_lake: DataLake | None,
               alarm_topic: sns.ITopic | None, network: ModelNetwork | None) -> None:
        self.spec = spec
        Tags.of(self).add("mdlc:model", spec.name)
        Tags.of(self).add("mdlc:owner", spec.owner)
        self.data_lake = data_lake or self.data_lake_class(self, "DataLake")
        self.key: kms.IKey = self.data_lake.key
        self.topic: sns.ITopic = alarm_topic or self._create_topic()
        # Before every stage: functions and SageMaker calls find it (ModelNetwork.of).
        self.network: ModelNetwork | None = network or self.build_network()
        self.stream: kinesis.IStream | None = self.build_event_stream()
        self.preparation = self.build_data_preparation()
        self.training = self.build_training()
        self.retraining = self.build_retraining()
        self.realtime = self.build_realtime()
        self.integration = self.build_integration()
        self.batch_inference = self.build_batch_inference()
        self.monitoring = self.build_monitoring()
        acknowledge(
            self,
            "PCI.DSS.321-IAMNoInlinePolicy",
            "CDK grant methods attach a policy to exactly one role, scoped to the "
            "resources that role uses; a shared managed policy would widen access",
        )

    # -- stages: each built by a method a team can override in a subclass ------

    def build_network(self) -> ModelNetwork | None:
        """The private network of the spec's ``network`` section (construct id
        ``Network``), or None: then the code reaches AWS's public endpoints over TLS."""
        if self.spec.network is None:
            return None
        return self.network_class.from_spec(self, "Network", self.spec.network, key=self.key)

    def build_event_stream(self) -> kinesis.IStream | None:
        """The encrypted stream client events arrive on, when online features or
        the client integration need one. Default: on-demand capacity (or
        ``integration.shards``), KMS with the data key, 24 hours retention."""
        integration = self.spec.integration
        online = self.spec.features.online and bool(self.spec.features.aggregates)
        if not online and not (integration and integration.enabled):
            return None
        shards = integration.shards if integration else None
        stream = kinesis.Stream(
            self,
            "Events",
            encryption=kinesis.StreamEncryption.KMS,
            encryption_key=self.key,
            stream_mode=kinesis.StreamMode.PROVISIONED if shards else kinesis.StreamMode.ON_DEMAND,
            shard_count=shards,
            retention_period=hours(24),
        )
        acknowledge(
            stream,
            "AwsSolutions-KDS3",
            "Encrypted with the model's customer-managed key on purpose: its key policy, "
            "rotation and audit trail are the account owner's, not AWS-managed",
        )
        return stream

    def build_data_preparation(self) -> DataPreparation:
        """Stages 1-3: sourcing, data quality and features, and their daily workflow."""
        return self.data_preparation_class(
            self,
            "Data",
            spec=self.spec,
            data_lake=self.data_lake,
            topic=self.topic,
            stream=self.stream,
        )

    def build_training(self) -> TrainingWorkflow:
        """Stages 4-5: the training workflow and its model package group.

        The workflow starts with the data preparation chain, so a training run
        always uses a freshly checked snapshot and its features. The class is
        ``training_workflow_class``: a team that only swaps a step of the
        workflow sets that attribute instead of overriding this method.
        """
        training = self.training_workflow_class(
            self,
            "Training",
            spec=self.spec,
            data_lake=self.data_lake,
            topic=self.topic,
            preparation=self.preparation,
        )
        return training

    def build_retraining(self) -> Retraining:
        """Re-training: the spec's schedule, the retrain event and alarms, with a cooldown."""
        return self.retraining_class(
            self,
            "Retraining",
            spec=self.spec,
            state_machine=self.training.state_machine,
            key=self.key,
        )

    def build_realtime(self) -> RealtimeEndpoint | None:
        """Stage 6, real time: the approved model version on an endpoint,
        deployed blue/green by an event-driven workflow. None when disabled."""
        if not self.spec.inference.realtime.enabled:
            return None
        return self.realtime_endpoint_class(
            self,
            "Realtime",
            spec=self.spec,
            data_lake=self.data_lake,
            topic=self.topic,
            model_package_group_name=self.training.model_package_group_name,
            image_repositories=self._image_repositories(),
        )

    def build_batch_inference(self) -> BatchInferenceWorkflow | None:
        """Stage 6, offline: the scheduled batch transform with the latest
        approved model version, and its decisions. None when disabled."""
        if not self.spec.inference.batch.enabled:
            return None
        return self.batch_inference_class(
            self,
            "BatchInference",
            spec=self.spec,
            data_lake=self.data_lake,
            topic=self.topic,
            model_package_group_name=self.training.model_package_group_name,
            preparation=self.preparation,
            # With a client integration, batch decisions act through its
            # targets and idempotency table instead of creating their own.
            action_targets=ActionTargets.of(self.integration) if self.integration else None,
            idempotency_table=self.integration.idempotency_table if self.integration else None,
            action_code=self.action_code(),
            image_repositories=self._image_repositories(),
        )

    def _image_repositories(self) -> list[ecr.IRepository]:
        """The training algorithm's own repository (a custom image), if any: the
        endpoint's and the batch transform's roles may pull from it only."""
        repository = getattr(self.training.algorithm.resources, "repository", None)
        return [repository] if repository is not None else []

    def action_code(self) -> Sequence[Path]:
        """Modules bundled with the functions that perform actions (online and
        batch), for the spec's ``custom`` action kinds. Default: none; a team
        returns its own, e.g. ``[Path(__file__).parent / "team_actions.py"]``."""
        return ()

    def build_integration(self) -> ClientIntegration | None:
        """Stage 8: collect features, run inference, execute rules and perform
        the action for every event on the stream. None without ``integration``."""
        integration = self.spec.integration
        if integration is None or not integration.enabled:
            return None
        where = self.spec.source or self.spec.name
        table = self.preparation.features.table
        if table is None or self.stream is None:
            raise ValueError(
                f"{where}: integration needs online features "
                "(features.online: true with at least one aggregate)"
            )
        if self.realtime is None:
            raise ValueError(
                f"{where}: integration needs the real-time endpoint "
                "(inference.realtime.enabled: true)"
            )
        return self.client_integration_class(
            self,
            "Integration",
            spec=self.spec,
            data_lake=self.data_lake,
            key=self.key,
            topic=self.topic,
            stream=self.stream,
            feature_table=table,
            endpoint_name=self.realtime.endpoint_name,
            action_code=self.action_code(),
        )

    def build_monitoring(self) -> ModelMonitoring:
        """Stage 7: the daily monitoring job, alarms (accuracy and drift start
        re-training through the cooldown), and the model's dashboard."""
        consumers = [
            f
            for f in (
                self.preparation.features.update_function,
                self.integration.consumer if self.integration else None,
            )
            if f is not None
        ]
        monitoring = self.monitoring_class(
            self,
            "Monitoring",
            spec=self.spec,
            data_lake=self.data_lake,
            topic=self.topic,
            retrain=self.retraining if self.spec.monitoring.retrain_on_alarm else None,
            stream=self.stream,
            stream_consumers=consumers,
            state_machines=[
                machine
                for machine in (
                    self.preparation.state_machine,
                    self.training.state_machine,
                    self.realtime.state_machine if self.realtime else None,
                    self.batch_inference.state_machine if self.batch_inference else None,
                    self.integration.state_machine if self.integration else None,
                )
                if machine is not None
            ],
            endpoint_name=self.realtime.endpoint_name if self.realtime else None,
        )
        if self.integration is not None:
            monitoring.add_function(self.integration.function, title="Client integration")
        if self.realtime is not None:
            monitoring.dashboard.add_alarms(
                [self.realtime.error_rate_alarm, self.realtime.latency_alarm]
            )
        return monitoring

    def _create_topic(self) -> sns.Topic:
        return notification_topic(
            self,
            "Notifications",
            key=self.key,
            display_name=f"MDLC {self.spec.name}: failures and approvals",
        )
