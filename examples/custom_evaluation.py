"""A team's own evaluation step: score a hold-out snapshot instead of trusting
the training job's validation metric.

Subclass ``TrainingWorkflow`` and override one plain-Python method; the
constructor calls it while it builds the state machine (no jsii callback is
involved, so this works from Python)::

    workflow = HoldoutEvaluationWorkflow(stack, "Training", spec=spec,
                                         data_lake=stack.data_lake, topic=stack.topic,
                                         holdout_handler=Path("team/holdout_scoring"))

The handler folder has an ``index.py`` whose ``handler(event, context)``
receives ``{"model_data": <s3 uri of model.tar.gz>, "metric": <spec metric>,
"holdout": <s3 uri>}`` and returns ``{"metric": ..., "value": <float>}``; the
gate then compares ``$.evaluation.value`` with the threshold, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_stepfunctions as sfn

from mdlc_constructs.compliance import acknowledge_all
from mdlc_constructs.functions import python_function
from mdlc_constructs.training import TrainingWorkflow
from mdlc_constructs.workflow import invoke

HERE = Path(__file__).resolve().parent


class HoldoutEvaluationWorkflow(TrainingWorkflow):
    """TrainingWorkflow whose evaluation scores a hold-out snapshot in a Lambda function.

    Args:
        holdout_handler: the scoring handler's folder. Default: the example
            handler next to this file.
        holdout_prefix: the hold-out data, under the features bucket.
            Default: ``holdout/<model>/``.
        **kwargs: as for ``TrainingWorkflow``.
    """

    def __init__(
        self,
        *args: Any,
        holdout_handler: Path | None = None,
        holdout_prefix: str | None = None,
        **kwargs: Any,
    ) -> None:
        # Set before super().__init__: the constructor calls build_evaluation.
        self._holdout_handler = holdout_handler or HERE / "holdout_scoring"
        self._holdout_prefix = holdout_prefix
        super().__init__(*args, **kwargs)

    def build_evaluation(self) -> sfn.IChainable:
        prefix = self._holdout_prefix or f"holdout/{self.spec.name}/"
        scorer = python_function(
            self,
            "HoldoutScorer",
            handler=self._holdout_handler,
            description=f"Scores {self.spec.name} on the hold-out snapshot",
            key=self.key,
            environment={"HOLDOUT_BUCKET": self.data_lake.features.bucket_name},
            memory_size=1024,
            timeout=Duration.minutes(10),
        )
        self.data_lake.features.grant_read(scorer, f"{prefix}*")
        self.data_lake.artifacts.grant_read(scorer, f"training-output/{self.spec.name}/*")
        acknowledge_all(
            scorer,
            {
                "AwsSolutions-IAM5[Action::s3:GetObject*]": "Reads the hold-out snapshot "
                "and this model's artifacts only",
                "AwsSolutions-IAM5[Action::s3:GetBucket*]": "grant_read on two buckets",
                "AwsSolutions-IAM5[Action::s3:List*]": "grant_read on two buckets",
                "AwsSolutions-IAM5[Resource::<" + self._logical(self.data_lake.features)
                + f".Arn>/{prefix}*]": "The hold-out snapshot of this model only",
                "AwsSolutions-IAM5[Resource::<" + self._logical(self.data_lake.artifacts)
                + f".Arn>/training-output/{self.spec.name}/*]": "This model's artifacts only",
            },
        )
        # self.catch: a scoring error notifies and fails the run like any other.
        return self.catch(
            invoke(
                self,
                "ScoreHoldout",
                scorer,
                payload={
                    "model_data": sfn.JsonPath.string_at("$.job.ModelArtifacts.S3ModelArtifacts"),
                    "metric": self.training.evaluation.metric,
                    "holdout": prefix,
                },
                result_path="$.evaluation",
                timeout=Duration.minutes(11),
                comment="Score the model on the hold-out snapshot",
            )
        )
