"""Each template resource created on moto, with the Ref and GetAtt values it returns.

One function per CloudFormation type, the way CloudFormation's own resource
providers map properties to API calls. A type with no local behaviour
(IAM policies, log groups, dashboards, ...) is recorded with its Ref and
ARN so that templates referencing it resolve; nothing it would do at run
time is skipped silently: docs/local.md lists what is simulated.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import moto.core.models  # noqa: F401  (registers moto's botocore handler before any client)

from .assembly import ACCOUNT, PARTITION, REGION, Resolver, StackArtifact, physical_name
from .stepfunctions import definition_json, local_definition


@dataclass
class Deployed:
    """What the local deployment created for one stack."""

    stack: StackArtifact
    resolver: Resolver
    physical: dict[str, Any] = field(default_factory=dict)  # logical id -> Ref value
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)  # resolved properties
    rewrites: dict[str, list[str]] = field(default_factory=dict)  # state machine -> rewrites

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {lid: self.properties[lid] for lid in self.stack.of_type(resource_type)
                if lid in self.properties}


def arn(service: str, resource: str, *, region: str = REGION) -> str:
    return f"arn:{PARTITION}:{service}:{region}:{ACCOUNT}:{resource}"


Creator = Callable[["ResourceFactory", str, dict[str, Any]], dict[str, Any]]


class ResourceFactory:
    """Creates one stack's resources in dependency order on the active moto mock."""

    def __init__(self, deployed: Deployed, clients: Callable[[str], Any]) -> None:
        self.deployed = deployed
        self.stack = deployed.stack
        self.client = clients

    def name(self, logical_id: str, *, lower: bool = False, limit: int = 64) -> str:
        return physical_name(self.stack.name, logical_id, lower=lower, limit=limit)

    def create_all(self) -> None:
        resources = self.stack.resources
        order = _dependency_order(resources)
        for logical_id in order:
            resource = resources[logical_id]
            condition = resource.get("Condition")
            if condition and not self.deployed.resolver.condition(condition):
                continue
            properties = self.deployed.resolver.resolve(resource.get("Properties", {}))
            self.deployed.properties[logical_id] = properties
            creator = CREATORS.get(resource["Type"], _recorded)
            attributes = creator(self, logical_id, properties)
            self.deployed.resolver.attributes[logical_id] = attributes
            self.deployed.physical[logical_id] = attributes["Ref"]


def _references(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            found.add(value["Ref"])
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            found.add(target.split(".")[0] if isinstance(target, str) else target[0])
        if "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            for part in text.split("${")[1:]:
                found.add(part.split("}")[0].split(".")[0])
        for item in value.values():
            found |= _references(item)
    elif isinstance(value, list):
        for item in value:
            found |= _references(item)
    return found


def _dependency_order(resources: dict[str, Any]) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(logical_id: str) -> None:
        if state.get(logical_id) == 2:
            return
        if state.get(logical_id) == 1:
            raise ValueError(f"circular reference through {logical_id}")
        state[logical_id] = 1
        resource = resources[logical_id]
        depends = resource.get("DependsOn", [])
        depends = [depends] if isinstance(depends, str) else depends
        for other in sorted(set(depends) | _references(resource.get("Properties", {}))):
            if other in resources:
                visit(other)
        state[logical_id] = 2
        order.append(logical_id)

    for logical_id in resources:
        visit(logical_id)
    return order


# -- creators --------------------------------------------------------------------


def _recorded(factory: ResourceFactory, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
    """A type with no local behaviour (IAM policies' neighbours, dashboards, ESM
    records, ...): its Ref and an ARN, so templates that reference it resolve."""
    name = props.get("Name") or factory.name(logical_id)
    service = factory.stack.resources[logical_id]["Type"].split("::")[1].lower()
    return {"Ref": name, "Arn": arn(service, f"{logical_id}/{name}")}


def _kms_key(factory: ResourceFactory, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
    kwargs = {"Description": props.get("Description", logical_id)}
    if "KeyPolicy" in props:
        kwargs["Policy"] = json.dumps(props["KeyPolicy"])
    key = factory.client("kms").create_key(**kwargs)
    metadata = key["KeyMetadata"]
    if props.get("EnableKeyRotation"):
        factory.client("kms").enable_key_rotation(KeyId=metadata["KeyId"])
    return {"Ref": metadata["KeyId"], "Arn": metadata["Arn"], "KeyId": metadata["KeyId"]}


def _kms_alias(factory: ResourceFactory, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
    factory.client("kms").create_alias(AliasName=props["AliasName"],
                                       TargetKeyId=props["TargetKeyId"])
    return {"Ref": props["AliasName"]}


def _bucket(factory: ResourceFactory, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
    name = props.get("BucketName") or factory.name(logical_id, lower=True, limit=63)
    s3 = factory.client("s3")
    s3.create_bucket(Bucket=name)
    if props.get("VersioningConfiguration", {}).get("Status") == "Enabled":
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    if "BucketEncryption" in props:
        rules = [{"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                  **({"BucketKeyEnabled": rule["BucketKeyEnabled"]}
                     if "BucketKeyEnabled" in rule else {})}
                 for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]]
        s3.put_bucket_encryption(Bucket=name,
                                 ServerSideEncryptionConfiguration={"Rules": rules})
    if "PublicAccessBlockConfiguration" in props:
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=props[
            "PublicAccessBlockConfiguration"])
    return {"Ref": name, "Arn": f"arn:{PARTITION}:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{REGION}.amazonaws.com"}


def _bucket_policy(factory: ResourceFactory, logical_id: str, props: dict[str, Any]
                   ) -> dict[str, Any]:
    # Kept in the deployment's records, not given to moto: moto applies a bucket
    # policy's statements ignoring their conditions, so the TLS-only Deny
    # (aws:SecureTransport false) would deny every call (docs/local.md).
    return {"Ref": factory.name(logical_id)}


def _table(factory: ResourceFactory, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
    name = props.get("TableName") or factory.name(logical_id, limit=255)
    ddb = factory.client("dynamodb")
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    if kwargs["BillingMode"] == "PROVISIONED":
        kwargs["ProvisionedThroughput"] = props.get(
            "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "StreamSpecification"):
        if key in props:
            kwargs[key] = props[key]
    if "StreamSpecification" in kwargs:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, **kwargs["StreamSpecification"]}
    if "SSESpecification" in props:
        sse = props["SSESpecification"]
        kwargs["SSESpecification"] = {"Enabled": bool(sse.get("SSEEnabled")),
                                      "SSEType": sse.get("SSEType", "KMS"),
                                      **({"KMSMasterKeyId": sse["KMSMasterKeyId"]}
                                         if "KMSMasterKeyId" in sse else {})}
    table = ddb.create_table(**kwargs)["TableDescription"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": ttl["AttributeName"]})
    return {"Ref": name, "Arn": table["TableArn"], "StreamArn": table.get("LatestStreamArn")}


def _stream(factory: ResourceFactory, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
    name = props.get("Name") or factory.name(logical_id, limit=128)
    kinesis = factory.client("kinesis")
    mode = props.get("StreamModeDetails", {}).get("StreamMode", "PROVISIONED")
    if mode == "ON_DEMAND":
        kinesis.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    else:
        kinesis.create_stream(StreamName=name, ShardCount=int(props.get("ShardCount", 1)))
    encryption = props.get("StreamEncryption")
    if encryption:
        kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS",
                                        KeyId=encryption["KeyId"])
    description = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    return {"Ref": name, "Arn": description["StreamARN"]}


def _topic(factory: ResourceFactory, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
    name = props.get("TopicName") or factory.name(logical_id, limit=256)
    attributes = {k: str(props[p]) for k, p in (("KmsMasterKeyId", "KmsMasterKeyId"),
                                                 ("DisplayName", "DisplayName"))
                  if p in props}
    if props.get("FifoTopic"):
        attributes["FifoTopic"] = "true"
    topic_arn = factory.client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]
    return {"Ref": topic_arn, "TopicArn": topic_arn, "TopicName": name}


def _topic_policy(factory: ResourceFactory, logical_id: str, props: dict[str, Any]
                  ) -> dict[str, Any]:
    for topic in props.get("Topics", []):
        factory.client("sns").set_topic_attributes(
            TopicArn=topic, AttributeName="Policy", AttributeValue=json.dumps(
                props["PolicyDocument"]))
    return {"Ref": factory.name(logical_id)}


def _subscription(factory: ResourceFactory, logical_id: str, props: dict[str, Any]
                  ) -> dict[str, Any]:
    attributes = {}
    if props.get("RawMessageDelivery"):
        attributes["RawMessageDelivery"] = "true"
    if "FilterPolicy" in props:
        attributes["FilterPolicy"] = json.dumps(props["FilterPolicy"])
    subscription = factory.client("sns").subscribe(
        TopicArn=props["TopicArn"], Protocol=props["Protocol"], Endpoint=props["Endpoint"],
        Attributes=attributes, ReturnSubscriptionArn=True)
    return {"Ref": subscription["SubscriptionArn"]}


def _queue(factory: ResourceFactory, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
    fifo = bool(props.get("FifoQueue"))
    name = props.get("QueueName") or factory.name(logical_id, limit=75 if fifo else 80)
    if fifo and not name.endswith(".fifo"):
        name += ".fifo"
    attributes: dict[str, str] = {}
    for key in ("KmsMasterKeyId", "MessageRetentionPeriod", "VisibilityTimeout",
                "DelaySeconds", "KmsDataKeyReusePeriodSeconds"):
        if key in props:
            attributes[key] = str(props[key])
    if fifo:
        attributes["FifoQueue"] = "true"
        if props.get("ContentBasedDeduplication"):
            attributes["ContentBasedDeduplication"] = "true"
    if "RedrivePolicy" in props:
        attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
    sqs = factory.client("sqs")
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    queue_arn = arn("sqs", name)
    return {"Ref": url, "Arn": queue_arn, "QueueName": name, "QueueUrl": url}


def _queue_policy(factory: ResourceFactory, logical_id: str, props: dict[str, Any]
                  ) -> dict[str, Any]:
    for url in props.get("Queues", []):
        factory.client("sqs").set_queue_attributes(
            QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])})
    return {"Ref": factory.name(logical_id)}


def _model_package_group(factory: ResourceFactory, logical_id: str, props: dict[str, Any]
                         ) -> dict[str, Any]:
    name = props["ModelPackageGroupName"]
    response = factory.client("sagemaker").create_model_package_group(
        ModelPackageGroupName=name,
        ModelPackageGroupDescription=props.get("ModelPackageGroupDescription", ""),
    )
    return {"Ref": response["ModelPackageGroupArn"],
            "ModelPackageGroupArn": response["ModelPackageGroupArn"]}


def _state_machine(factory: ResourceFactory, logical_id: str, props: dict[str, Any]
                   ) -> dict[str, Any]:
    name = props.get("StateMachineName") or factory.name(logical_id, limit=80)
    definition = json.loads(props["DefinitionString"]) if "DefinitionString" in props \
        else props["Definition"]
    local, rewrites = local_definition(definition, region=REGION, account=ACCOUNT)
    factory.deployed.rewrites[logical_id] = rewrites
    machine_arn = factory.client("stepfunctions").create_state_machine(
        name=name, definition=definition_json(local), roleArn=props["RoleArn"],
        type=props.get("StateMachineType", "STANDARD"),
    )["stateMachineArn"]
    return {"Ref": machine_arn, "Arn": machine_arn, "Name": name}


def _function(factory: ResourceFactory, logical_id: str, props: dict[str, Any]
              ) -> dict[str, Any]:
    name = props.get("FunctionName") or factory.name(logical_id, limit=64)
    return {"Ref": name, "Arn": arn("lambda", f"function:{name}")}


def _network_id(prefix: str, factory: ResourceFactory, logical_id: str) -> str:
    """An EC2-style id (``vpc-0a1b...``), the same for the same resource every run."""
    digest = hashlib.sha256(f"{factory.stack.name}/{logical_id}".encode()).hexdigest()[:17]
    return f"{prefix}-{digest}"


def _vpc(factory: ResourceFactory, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
    # The handlers run in process: a network has no local behaviour, only the
    # identities the functions' and jobs' VpcConfig name.
    vpc_id = _network_id("vpc", factory, logical_id)
    return {"Ref": vpc_id, "VpcId": vpc_id, "CidrBlock": props.get("CidrBlock", "10.0.0.0/16"),
            "DefaultSecurityGroup": _network_id("sg", factory, f"{logical_id}/default"),
            "DefaultNetworkAcl": _network_id("acl", factory, logical_id)}


def _subnet(factory: ResourceFactory, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
    subnet_id = _network_id("subnet", factory, logical_id)
    return {"Ref": subnet_id, "SubnetId": subnet_id,
            "AvailabilityZone": props.get("AvailabilityZone", f"{REGION}a")}


def _security_group(factory: ResourceFactory, logical_id: str, props: dict[str, Any]
                    ) -> dict[str, Any]:
    group_id = _network_id("sg", factory, logical_id)
    return {"Ref": group_id, "GroupId": group_id, "VpcId": props.get("VpcId")}


def _network_part(prefix: str) -> Creator:
    def create(factory: ResourceFactory, logical_id: str, props: dict[str, Any]
               ) -> dict[str, Any]:
        return {"Ref": _network_id(prefix, factory, logical_id), "Id":
                _network_id(prefix, factory, logical_id)}
    return create


def _rule(factory: ResourceFactory, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
    name = props.get("Name") or factory.name(logical_id, limit=64)
    return {"Ref": name, "Arn": arn("events", f"rule/{name}")}


def _alarm(factory: ResourceFactory, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
    name = props.get("AlarmName") or factory.name(logical_id, limit=255)
    return {"Ref": name, "Arn": arn("cloudwatch", f"alarm:{name}")}


def _log_group(factory: ResourceFactory, logical_id: str, props: dict[str, Any]
               ) -> dict[str, Any]:
    name = props.get("LogGroupName") or factory.name(logical_id, limit=512)
    factory.client("logs").create_log_group(logGroupName=name)
    return {"Ref": name, "Arn": arn("logs", f"log-group:{name}:*")}


def _role(factory: ResourceFactory, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
    name = props.get("RoleName") or factory.name(logical_id, limit=64)
    path = props.get("Path", "/")
    role = factory.client("iam").create_role(
        RoleName=name, Path=path,
        AssumeRolePolicyDocument=json.dumps(props.get("AssumeRolePolicyDocument", {})),
    )["Role"]
    for index, policy in enumerate(props.get("Policies", [])):
        factory.client("iam").put_role_policy(
            RoleName=name, PolicyName=policy.get("PolicyName", f"inline{index}"),
            PolicyDocument=json.dumps(policy["PolicyDocument"]))
    return {"Ref": name, "Arn": role["Arn"], "RoleId": role["RoleId"]}


def _policy(factory: ResourceFactory, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
    name = props.get("PolicyName") or factory.name(logical_id)
    for role in props.get("Roles", []):
        factory.client("iam").put_role_policy(RoleName=role, PolicyName=name,
                                              PolicyDocument=json.dumps(props["PolicyDocument"]))
    return {"Ref": name, "Id": name}


CREATORS: dict[str, Creator] = {
    "AWS::KMS::Key": _kms_key,
    "AWS::KMS::Alias": _kms_alias,
    "AWS::S3::Bucket": _bucket,
    "AWS::S3::BucketPolicy": _bucket_policy,
    "AWS::DynamoDB::Table": _table,
    "AWS::Kinesis::Stream": _stream,
    "AWS::SNS::Topic": _topic,
    "AWS::SNS::TopicPolicy": _topic_policy,
    "AWS::SNS::Subscription": _subscription,
    "AWS::SQS::Queue": _queue,
    "AWS::SQS::QueuePolicy": _queue_policy,
    "AWS::SageMaker::ModelPackageGroup": _model_package_group,
    "AWS::StepFunctions::StateMachine": _state_machine,
    "AWS::Lambda::Function": _function,
    "AWS::Events::Rule": _rule,
    "AWS::CloudWatch::Alarm": _alarm,
    "AWS::CloudWatch::CompositeAlarm": _alarm,
    "AWS::Logs::LogGroup": _log_group,
    "AWS::IAM::Role": _role,
    "AWS::IAM::Policy": _policy,
    "AWS::EC2::VPC": _vpc,
    "AWS::EC2::Subnet": _subnet,
    "AWS::EC2::SecurityGroup": _security_group,
    "AWS::EC2::RouteTable": _network_part("rtb"),
    "AWS::EC2::VPCEndpoint": _network_part("vpce"),
    "AWS::EC2::FlowLog": _network_part("fl"),
}


_RAW: dict[str, Any] = {}


def raw_client(service: str) -> Any:
    """A client of its own session: answered by moto, never by the local hooks.

    Cached: creating a botocore client costs more than most moto calls.
    """
    if service not in _RAW:
        _RAW[service] = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        ).client(service)
    return _RAW[service]
