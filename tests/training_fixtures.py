"""A minimal stack for the training tests: a data lake, an encrypted topic, nothing else.

The full MdlcModelStack builds every stage; the training tests synthesize
only what they look at, to keep jsii synthesis (and cdk-nag) short.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_sns as sns
from constructs import Construct

from mdlc_constructs.compliance import acknowledge
from mdlc_constructs.storage import DataLake


class TrainingTestStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.data_lake = DataLake(self, "DataLake")
        self.key = self.data_lake.key
        self.topic = sns.Topic(self, "Notifications", master_key=self.key, enforce_ssl=True)
        acknowledge(
            self,
            "PCI.DSS.321-IAMNoInlinePolicy",
            "CDK grant methods attach a policy to exactly one role, scoped to the "
            "resources that role uses; a shared managed policy would widen access",
        )
