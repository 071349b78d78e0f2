"""The fraud team's constructs: subclasses of the library, each overriding one method."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from mdlc_constructs.batch_inference import BatchInferenceWorkflow
from mdlc_constructs.functions import python_function
from mdlc_constructs.integration import ClientIntegration
from mdlc_constructs.model_stack import MdlcModelStack
from mdlc_constructs.platform import model_stack_factory
from mdlc_constructs.training import TrainingWorkflow
from mdlc_constructs.workflow import invoke

HERE = Path(__file__).resolve().parent
#: The team's tolerated gap between the train and validation metric.
MAX_GAP = 0.05


class TeamTrainingWorkflow(TrainingWorkflow):
    """Training whose evaluation penalizes overfitting (``handlers/overfit_evaluation``)."""

    def build_evaluation(self) -> sfn.IChainable:
        """Leaves ``$.evaluation.value`` (and ``.metric``) like the default, for the gate."""
        self.evaluation_function = python_function(
            self,
            "OverfitEvaluation",
            handler=HERE / "handlers" / "overfit_evaluation",
            description=f"{self.spec.name}: validation metric penalized for overfitting",
            key=self.key,
            timeout=Duration.seconds(30),
        )
        return self.catch(
            invoke(
                self,
                "EvaluateGeneralization",
                self.evaluation_function,
                payload={
                    "metrics": sfn.JsonPath.list_at("$.job.FinalMetricDataList"),
                    "metric": self.training.evaluation.metric,
                    "max_gap": MAX_GAP,
                },
                result_path="$.evaluation",
                timeout=Duration.minutes(1),
                comment="The team's evaluation: validation metric minus excess overfitting",
            )
        )


def grant_cases(scope: Construct, function: lambda_.IFunction) -> None:
    """Custom actions get no permissions from the library: the case management
    action puts events on the account's default bus."""
    events.EventBus.from_event_bus_name(scope, "CaseBus", "default").grant_put_events_to(
        function)


class TeamIntegration(ClientIntegration):
    """The library's client integration; its acting function may open cases."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        grant_cases(self, self.function)


class TeamBatchInference(BatchInferenceWorkflow):
    """The library's batch inference; its decide step may open cases."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        if self.decides:
            grant_cases(self, self.function)


class TeamFraudStack(MdlcModelStack):
    """The library's model stack with the team's training workflow and alarm.

    Attributes (beyond MdlcModelStack's): training_failures_alarm.
    """

    # Same ids and wiring as the library's: swapping a stage's class keeps the
    # deployed resources (MdlcModelStack's stage class attributes).
    training_workflow_class = TeamTrainingWorkflow
    client_integration_class = TeamIntegration
    batch_inference_class = TeamBatchInference

    def __init__(self, scope: Construct, construct_id: str, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.training_failures_alarm = self.build_team_alarms()

    def action_code(self) -> list[Path]:
        """The team's action kind ships with the functions that act."""
        return [HERE / "team_actions.py"]

    def build_team_alarms(self) -> cloudwatch.Alarm:
        """Page the team when a training run fails or misses the threshold twice in a week."""
        alarm = cloudwatch.Alarm(
            self,
            "TrainingFailures",
            alarm_description=f"{self.spec.name}: two failed or below-threshold training runs "
            "within 7 days",
            metric=self.training.metric_failed(period=Duration.days(1), statistic="Sum"),
            threshold=2,
            evaluation_periods=7,
            datapoints_to_alarm=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        return alarm


#: The team's factory for ``build_app``: fraud models get ``TeamFraudStack``, the
#: others the library's stack; both share the platform as the default factory does.
team_model_stack = model_stack_factory(
    lambda spec: TeamFraudStack if spec.owner == "fraud_ops" else MdlcModelStack)
