"""The model stack's own resources: the encrypted notification topic, tags."""

from __future__ import annotations

from aws_cdk.assertions import Match


def test_topic_is_encrypted_with_the_data_key(fraud_template):
    key_id = next(iter(fraud_template.find_resources("AWS::KMS::Key")))
    fraud_template.has_resource_properties(
        "AWS::SNS::Topic", {"KmsMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}}
    )


def test_topic_accepts_tls_only(fraud_template):
    fraud_template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_resources_are_tagged_with_model_and_owner(fraud_template):
    fraud_template.has_resource_properties(
        "AWS::SNS::Topic",
        {
            "Tags": Match.array_with(
                [
                    {"Key": "mdlc:model", "Value": "fraud"},
                    {"Key": "mdlc:owner", "Value": "fraud_science"},
                ]
            )
        },
    )


def test_key_lets_cloudwatch_logs_encrypt_only_this_accounts_log_groups(fraud_template):
    fraud_template.has_resource_properties(
        "AWS::KMS::Key",
        {
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Principal": {
                                    "Service": {
                                        "Fn::Join": [
                                            "",
                                            ["logs.", {"Ref": "AWS::Region"}, ".amazonaws.com"],
                                        ]
                                    }
                                },
                                "Condition": {"ArnLike": Match.any_value()},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_state_machines_log_under_vendedlogs(fraud_template):
    """Step Functions adds every other log group it delivers to into the account's
    one 5,120-character CloudWatch Logs resource policy, which fills at about ten
    models; /aws/vendedlogs/ groups do not use it (issue #12)."""
    resources = fraud_template.to_json()["Resources"]
    machines = {k: v for k, v in resources.items()
                if v["Type"] == "AWS::StepFunctions::StateMachine"}
    assert len(machines) >= 4
    for logical_id, machine in machines.items():
        (destination,) = machine["Properties"]["LoggingConfiguration"]["Destinations"]
        group_id = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
        name = resources[group_id]["Properties"]["LogGroupName"]
        assert name == "/aws/vendedlogs/states/" + machine["Properties"]["StateMachineName"], (
            logical_id, name)
