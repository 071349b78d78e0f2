"""Every local call checked against its caller's role, as AWS would check it.

:class:`PolicyStore` reads, from the deployed templates, each role's identity
policies (inline, ``AWS::IAM::Policy``, customer managed policies, and the
AWS managed policies the library attaches), its trust policy, the resource
policies (bucket, key, topic, queue, function permissions) and which KMS key
encrypts each bucket, table, queue, topic, stream and state machine.

:func:`needs` turns one API call into what IAM evaluates for it: the action,
the resource ARN and the condition keys the request carries, plus the KMS
requests the service makes on the caller's behalf with their encryption
context (``kms:ViaService``, ``kms:EncryptionContext:…``), from the
services' documentation:

- S3 SSE-KMS: ``GenerateDataKey`` to write, ``Decrypt`` to read, context
  ``aws:s3:arn`` (the object, or the bucket with S3 Bucket Keys);
- SQS and SNS with a customer key: a producer needs ``GenerateDataKey`` and
  ``Decrypt`` (context ``aws:sqs:arn`` / ``aws:sns:topicArn``);
- Kinesis: ``GenerateDataKey`` to put, ``Decrypt`` to read (``aws:kinesis:arn``);
- DynamoDB with a customer key: ``Decrypt`` of the table key on each access
  (``aws:dynamodb:tableName``, ``aws:dynamodb:subscriberId``);
- Step Functions: the execution role needs ``GenerateDataKey`` and
  ``Decrypt`` (``aws:states:stateMachineArn``); ``StartExecution`` itself needs
  nothing on the key;
- CloudWatch Logs: the logs service principal encrypts a log group with its
  key (``aws:logs:arn``), which the key policy must allow (checked when the
  group is deployed).

:class:`Authorizer` evaluates them with :mod:`.policy`, caches decisions,
fails a denied call as the service fails it (its AccessDenied error), and
lists it in :attr:`Authorizer.denied` (the report's ``denied_calls``).
An operation without a mapping here is evaluated as ``<service>:<Operation>``
on ``*`` and says so in the reason.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .assembly import ACCOUNT, PARTITION, REGION
from .hooks import ServiceError
from .policy import Decision, Request, evaluate
from .principals import Principals

#: botocore's service id -> the IAM action prefix.
PREFIXES = {"sfn": "states", "stepfunctions": "states", "sagemaker-runtime": "sagemaker",
            "eventbridge": "events",
            "application-auto-scaling": "application-autoscaling"}

#: How each service refuses a call: (error code, HTTP status).
DENIED = {"s3": ("AccessDenied", 403), "sqs": ("AccessDenied", 403),
          "sns": ("AuthorizationError", 403), "cloudwatch": ("AccessDenied", 403),
          "lambda": ("AccessDeniedException", 403)}
#: How each service refuses a call when the caller may not use the resource's key.
KMS_DENIED = {"sqs": ("KMS.AccessDeniedException", 400), "sns": ("KMSAccessDenied", 400),
              "sfn": ("KmsAccessDeniedException", 400),
              "kinesis": ("KMSAccessDeniedException", 400), "s3": ("AccessDenied", 403)}

#: AWS managed policies the library's roles use, as much of them as matters here.
MANAGED = {
    f"arn:{PARTITION}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
            "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]}]},
}

#: Names the runtime gives its SageMaker ``.sync`` stand-ins (they check the integration).
STAND_IN_PREFIX = "mdlc-local-sagemaker-"


@dataclass(frozen=True)
class Need:
    """One authorization AWS makes for a call."""

    action: str
    resource: str
    context: tuple[tuple[str, Any], ...] = ()
    kind: str = "generic"  # which resource policy applies (policy.KINDS)
    kms: bool = False  # a request the service makes to KMS on the caller's behalf

    @staticmethod
    def of(action: str, resource: str, context: Mapping[str, Any] | None = None, *,
           kind: str = "generic", kms: bool = False) -> Need:
        return Need(action, resource, tuple(sorted((context or {}).items())), kind, kms)


@dataclass
class RolePolicies:
    arn: str
    name: str
    stack: str
    logical_id: str
    trust: dict[str, Any]
    identity: list[dict[str, Any]] = field(default_factory=list)


def arn(service: str, resource: str) -> str:
    return f"arn:{PARTITION}:{service}:{REGION}:{ACCOUNT}:{resource}"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


class PolicyStore:
    """The policies and keys of the deployed stacks, by ARN."""

    def __init__(self) -> None:
        self.roles: dict[str, RolePolicies] = {}
        self.resource_policies: dict[str, tuple[str, dict[str, Any]]] = {}
        self.keys: dict[str, str] = {}  # resource ARN (bucket: its ARN) -> key ARN
        self.bucket_keys: set[str] = set()  # buckets with S3 Bucket Keys
        self._key_ids: dict[str, str] = {}  # key id or ARN -> key ARN

    def add_stack(self, deployed: Any) -> None:
        attributes = deployed.resolver.attributes
        for logical_id, props in deployed.of_type("AWS::KMS::Key").items():
            key_arn = attributes[logical_id]["Arn"]
            self._key_ids[key_arn] = self._key_ids[key_arn.rsplit("/", 1)[-1]] = key_arn
            self.resource_policies[key_arn] = ("kms", props.get("KeyPolicy") or {})
        by_name: dict[str, RolePolicies] = {}
        for logical_id, props in deployed.of_type("AWS::IAM::Role").items():
            role = RolePolicies(arn=attributes[logical_id]["Arn"],
                                name=attributes[logical_id]["Ref"], stack=deployed.stack.name,
                                logical_id=logical_id,
                                trust=props.get("AssumeRolePolicyDocument") or {})
            role.identity += [p["PolicyDocument"] for p in props.get("Policies") or []]
            role.identity += [MANAGED[a] for a in props.get("ManagedPolicyArns") or []
                              if a in MANAGED]
            self.roles[role.arn] = by_name[role.name] = role
        for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for props in deployed.of_type(kind).values():
                for name in props.get("Roles") or []:
                    role = by_name.get(name) or next(
                        (r for r in self.roles.values() if r.name == name), None)
                    if role is not None:
                        role.identity.append(props["PolicyDocument"])
        for props in deployed.of_type("AWS::S3::BucketPolicy").values():
            self.resource_policies[f"arn:{PARTITION}:s3:::{props['Bucket']}"] = (
                "s3", props["PolicyDocument"])
        for props in deployed.of_type("AWS::SNS::TopicPolicy").values():
            for topic in props.get("Topics") or []:
                self.resource_policies[topic] = ("sns", props["PolicyDocument"])
        for props in deployed.of_type("AWS::SQS::QueuePolicy").values():
            for url in props.get("Queues") or []:
                self.resource_policies[queue_arn(url)] = ("sqs", props["PolicyDocument"])
        for props in deployed.of_type("AWS::Lambda::Permission").values():
            self._add_permission(props)
        self._add_keys(deployed)

    def _add_permission(self, props: Mapping[str, Any]) -> None:
        function = str(props["FunctionName"])
        if not function.startswith("arn:"):
            function = arn("lambda", f"function:{function}")
        principal = str(props["Principal"])
        statement: dict[str, Any] = {
            "Effect": "Allow", "Action": props["Action"], "Resource": function,
            "Principal": {"Service": principal} if principal.endswith(".amazonaws.com")
            else {"AWS": principal}}
        conditions: dict[str, Any] = {}
        if props.get("SourceArn"):
            conditions["ArnLike"] = {"AWS:SourceArn": props["SourceArn"]}
        if props.get("SourceAccount"):
            conditions["StringEquals"] = {"AWS:SourceAccount": props["SourceAccount"]}
        if conditions:
            statement["Condition"] = conditions
        _, document = self.resource_policies.setdefault(
            function, ("lambda", {"Version": "2012-10-17", "Statement": []}))
        document["Statement"].append(statement)

    def _add_keys(self, deployed: Any) -> None:
        attributes = deployed.resolver.attributes
        for logical_id, props in deployed.of_type("AWS::S3::Bucket").items():
            bucket = f"arn:{PARTITION}:s3:::{attributes[logical_id]['Ref']}"
            for rule in (props.get("BucketEncryption") or {}).get(
                    "ServerSideEncryptionConfiguration", []):
                default = rule.get("ServerSideEncryptionByDefault") or {}
                if default.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse") and default.get(
                        "KMSMasterKeyID"):
                    self.keys[bucket] = str(default["KMSMasterKeyID"])
                    if rule.get("BucketKeyEnabled"):
                        self.bucket_keys.add(bucket)
        for logical_id, props in deployed.of_type("AWS::DynamoDB::Table").items():
            sse = props.get("SSESpecification") or {}
            if sse.get("SSEEnabled") and sse.get("KMSMasterKeyId"):
                self.keys[arn("dynamodb", f"table/{attributes[logical_id]['Ref']}")] = str(
                    sse["KMSMasterKeyId"])
        simple = {"AWS::SQS::Queue": ("Arn", "KmsMasterKeyId"),
                  "AWS::SNS::Topic": ("Ref", "KmsMasterKeyId")}
        for kind, (attribute, prop) in simple.items():
            for logical_id, props in deployed.of_type(kind).items():
                if props.get(prop):
                    self.keys[attributes[logical_id][attribute]] = str(props[prop])
        for logical_id, props in deployed.of_type("AWS::Kinesis::Stream").items():
            encryption = props.get("StreamEncryption") or {}
            if encryption.get("EncryptionType") == "KMS" and encryption.get("KeyId"):
                self.keys[attributes[logical_id]["Arn"]] = str(encryption["KeyId"])
        for logical_id, props in deployed.of_type("AWS::StepFunctions::StateMachine").items():
            encryption = props.get("EncryptionConfiguration") or {}
            if encryption.get("KmsKeyId"):
                self.keys[attributes[logical_id]["Ref"]] = str(encryption["KmsKeyId"])

    def key_arn(self, key: str | None) -> str | None:
        """A key's ARN from an id, an ARN or (unknown keys) as given."""
        if not key:
            return None
        return self._key_ids.get(key) or self._key_ids.get(key.rsplit("/", 1)[-1]) or key

    def key_of(self, resource: str) -> str | None:
        return self.key_arn(self.keys.get(resource))

    def role_named(self, name: str) -> RolePolicies:
        """A role by its logical id, name or ARN (for tests that edit a grant)."""
        for role in self.roles.values():
            if name in (role.arn, role.name, role.logical_id) or role.logical_id.startswith(name):
                return role
        known = sorted(r.logical_id for r in self.roles.values())
        raise KeyError(f"no role {name!r}; roles: {known}")


def queue_arn(url_or_arn: str) -> str:
    if url_or_arn.startswith("arn:"):
        return url_or_arn
    account, name = url_or_arn.rstrip("/").split("/")[-2:]
    return f"arn:{PARTITION}:sqs:{REGION}:{account}:{name}"


def _via(service: str) -> dict[str, Any]:
    return {"kms:ViaService": f"{service}.{REGION}.amazonaws.com", "kms:CallerAccount": ACCOUNT}


_ABSENT = object()


def _s3_object(bucket: str, key: str, version_id: str | None = None) -> Any:
    """moto's object (of ``version_id``, else the current one), or ``_ABSENT``
    (no such object, version or bucket)."""
    try:
        from moto.s3.models import s3_backends

        found = s3_backends[ACCOUNT][PARTITION].get_object(bucket, key, version_id=version_id)
    except Exception:
        return _ABSENT
    return _ABSENT if found is None else found


def _s3_object_key(found: Any) -> str | None:
    """The KMS key an existing object was written with (None: not SSE-KMS, or absent)."""
    if found is _ABSENT or getattr(found, "encryption", None) not in ("aws:kms", "aws:kms:dsse"):
        return None
    return getattr(found, "kms_key_id", None)


def _s3(store: PolicyStore, operation: str, params: Mapping[str, Any]) -> list[Need]:
    bucket = str(params.get("Bucket", ""))
    bucket_arn = f"arn:{PARTITION}:s3:::{bucket}"
    secure = {"aws:SecureTransport": True}
    object_arn = f"{bucket_arn}/{params.get('Key', '')}"

    def kms(action: str, key: str | None, obj: str) -> list[Need]:
        key_arn = store.key_arn(key)
        if not key_arn:
            return []
        scope = bucket_arn if bucket_arn in store.bucket_keys else obj
        return [Need.of(action, key_arn, {**_via("s3"), "kms:EncryptionContext:aws:s3:arn": scope},
                        kind="kms", kms=True)]

    if operation in ("GetObject", "HeadObject"):
        # A named version needs s3:GetObjectVersion instead of s3:GetObject (the
        # GetObject reference, versionId), and is decrypted with its own key.
        version = params.get("VersionId") or None
        action = "s3:GetObjectVersion" if version else "s3:GetObject"
        needs = [Need.of(action, object_arn, secure, kind="s3")]
        found = _s3_object(bucket, str(params.get("Key", "")), version)
        if found is _ABSENT:
            # S3 says "no such key" (404) only to a caller that may list the bucket
            # there; to any other it answers AccessDenied (403), as for a hidden key.
            needs.append(Need.of("s3:ListBucket", bucket_arn,
                                 {**secure, "s3:prefix": str(params.get("Key", ""))},
                                 kind="s3"))
        elif operation == "GetObject":
            needs += kms("kms:Decrypt", _s3_object_key(found), object_arn)
        return needs
    if operation in ("PutObject", "CreateMultipartUpload", "UploadPart",
                     "CompleteMultipartUpload"):
        context: dict[str, Any] = dict(secure)
        if params.get("ServerSideEncryption"):
            context["s3:x-amz-server-side-encryption"] = params["ServerSideEncryption"]
        if params.get("SSEKMSKeyId"):
            context["s3:x-amz-server-side-encryption-aws-kms-key-id"] = params["SSEKMSKeyId"]
        needs = [Need.of("s3:PutObject", object_arn, context, kind="s3")]
        if operation in ("PutObject", "CreateMultipartUpload"):
            key = params.get("SSEKMSKeyId") if params.get("ServerSideEncryption") == "aws:kms" \
                else store.keys.get(bucket_arn)
            needs += kms("kms:GenerateDataKey", key, object_arn)
        if params.get("Tagging"):
            needs.append(Need.of("s3:PutObjectTagging", object_arn, secure, kind="s3"))
        return needs
    if operation == "CopyObject":
        source = params.get("CopySource")
        if isinstance(source, dict):
            source_bucket, source_key = str(source.get("Bucket")), str(source.get("Key"))
        else:
            source_bucket, _, source_key = str(source).lstrip("/").partition("/")
        source_arn = f"arn:{PARTITION}:s3:::{source_bucket}/{source_key}"
        return [Need.of("s3:GetObject", source_arn, secure, kind="s3"),
                *kms("kms:Decrypt", _s3_object_key(_s3_object(source_bucket, source_key)),
                     source_arn),
                Need.of("s3:PutObject", object_arn, secure, kind="s3"),
                *kms("kms:GenerateDataKey", store.keys.get(bucket_arn), object_arn)]
    if operation in ("ListObjectsV2", "ListObjects", "ListObjectVersions"):
        context = dict(secure)
        for param, key in (("Prefix", "s3:prefix"), ("Delimiter", "s3:delimiter"),
                           ("MaxKeys", "s3:max-keys")):
            if params.get(param) is not None:
                context[key] = str(params[param])
        action = "s3:ListBucketVersions" if operation == "ListObjectVersions" else "s3:ListBucket"
        return [Need.of(action, bucket_arn, context, kind="s3")]
    if operation == "DeleteObject":
        return [Need.of("s3:DeleteObject", object_arn, secure, kind="s3")]
    if operation == "DeleteObjects":
        return [Need.of("s3:DeleteObject", f"{bucket_arn}/{o.get('Key')}", secure, kind="s3")
                for o in (params.get("Delete") or {}).get("Objects", [])]
    return [Need.of(f"s3:{operation}", bucket_arn, secure, kind="s3")]


def _table_arn(name: str) -> str:
    return name if name.startswith("arn:") else arn("dynamodb", f"table/{name}")


def _dynamodb(store: PolicyStore, operation: str, params: Mapping[str, Any]) -> list[Need]:
    pairs: list[tuple[str, str]] = []  # (action, table ARN)
    if operation in ("BatchGetItem", "BatchWriteItem"):
        pairs = [(f"dynamodb:{operation}", _table_arn(t)) for t in params.get("RequestItems", {})]
    elif operation in ("TransactWriteItems", "TransactGetItems"):
        actions = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                   "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
        for entry in params.get("TransactItems", []):
            for kind, op in entry.items():
                pairs.append((f"dynamodb:{actions.get(kind, kind)}", _table_arn(op["TableName"])))
    else:
        table = _table_arn(str(params.get("TableName", "")))
        resource = f"{table}/index/{params['IndexName']}" if params.get("IndexName") else table
        pairs = [(f"dynamodb:{operation}", resource)]
    needs = [Need.of(action, resource) for action, resource in dict.fromkeys(pairs)]
    item_operations = {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan",
                       "BatchGetItem", "BatchWriteItem", "TransactWriteItems", "TransactGetItems"}
    if operation in item_operations:
        for table in dict.fromkeys(resource.split("/index/")[0] for _, resource in pairs):
            key = store.key_of(table)
            if key:
                needs.append(Need.of("kms:Decrypt", key, {
                    **_via("dynamodb"),
                    "kms:EncryptionContext:aws:dynamodb:tableName": table.rsplit("/", 1)[-1],
                    "kms:EncryptionContext:aws:dynamodb:subscriberId": ACCOUNT},
                    kind="kms", kms=True))
    return needs


def _producer_keys(store: PolicyStore, resource: str, service: str, context_key: str,
                   actions: Iterable[str]) -> list[Need]:
    key = store.key_of(resource)
    if not key:
        return []
    context = {**_via(service), f"kms:EncryptionContext:{context_key}": resource}
    return [Need.of(a, key, context, kind="kms", kms=True) for a in actions]


def _sagemaker_arn(kind: str, name: str) -> str:
    return name if str(name).startswith("arn:") else arn("sagemaker", f"{kind}/{str(name).lower()}")


def _sagemaker(operation: str, params: Mapping[str, Any]) -> list[Need]:
    action = f"sagemaker:{operation}"
    named = {"Model": ("model", "ModelName"), "EndpointConfig": ("endpoint-config",
                                                                 "EndpointConfigName"),
             "Endpoint": ("endpoint", "EndpointName"),
             "TrainingJob": ("training-job", "TrainingJobName"),
             "TransformJob": ("transform-job", "TransformJobName"),
             "ProcessingJob": ("processing-job", "ProcessingJobName")}
    needs: list[Need] = []
    for suffix, (kind, param) in named.items():
        if operation.endswith(suffix) and params.get(param):
            needs.append(Need.of(action, _sagemaker_arn(kind, params[param])))
            break
    if operation in ("CreateEndpoint", "UpdateEndpoint") and params.get("EndpointConfigName"):
        needs.append(Need.of(action, _sagemaker_arn("endpoint-config",
                                                    params["EndpointConfigName"])))
    if operation == "CreateModelPackage":
        needs.append(Need.of(action, _sagemaker_arn("model-package-group",
                                                    params.get("ModelPackageGroupName", ""))))
    if operation in ("DescribeModelPackage", "UpdateModelPackage", "DeleteModelPackage"):
        name = params.get("ModelPackageName") or params.get("ModelPackageArn") or ""
        needs.append(Need.of(action, _sagemaker_arn("model-package", name)))
    role = params.get("ExecutionRoleArn") or params.get("RoleArn")
    if role and operation.startswith("Create"):
        needs.append(Need.of("iam:PassRole", role,
                             {"iam:PassedToService": "sagemaker.amazonaws.com"}))
    return needs or [Need.of(action, "*")]


def needs(store: PolicyStore, service: str, operation: str,
          params: Mapping[str, Any]) -> list[Need]:
    """What IAM evaluates for one call of ``service`` (botocore's id) ``operation``."""
    prefix = PREFIXES.get(service, service)
    if service == "s3":
        return _s3(store, operation, params)
    if service == "dynamodb":
        return _dynamodb(store, operation, params)
    if service == "sqs":
        queue = queue_arn(str(params.get("QueueUrl") or arn("sqs", str(params.get(
            "QueueName", "")))))
        action = "sqs:SendMessage" if operation == "SendMessageBatch" else f"sqs:{operation}"
        result = [Need.of(action, queue, kind="sqs")]
        if operation in ("SendMessage", "SendMessageBatch"):
            result += _producer_keys(store, queue, "sqs", "aws:sqs:arn",
                                     ("kms:GenerateDataKey", "kms:Decrypt"))
        elif operation == "ReceiveMessage":
            result += _producer_keys(store, queue, "sqs", "aws:sqs:arn", ("kms:Decrypt",))
        return result
    if service == "sns":
        topic = str(params.get("TopicArn") or params.get("TargetArn") or "")
        result = [Need.of(f"sns:{operation}", topic, kind="sns")]
        if operation in ("Publish", "PublishBatch"):
            result += _producer_keys(store, topic, "sns", "aws:sns:topicArn",
                                     ("kms:GenerateDataKey", "kms:Decrypt"))
        return result
    if service == "kinesis":
        stream = str(params.get("StreamARN")
                     or arn("kinesis", f"stream/{params.get('StreamName')}"))
        result = [Need.of(f"kinesis:{operation}", stream)]
        if operation in ("PutRecord", "PutRecords"):
            result += _producer_keys(store, stream, "kinesis", "aws:kinesis:arn",
                                     ("kms:GenerateDataKey",))
        elif operation == "GetRecords":
            result += _producer_keys(store, stream, "kinesis", "aws:kinesis:arn",
                                     ("kms:Decrypt",))
        return result
    if service == "lambda" and operation == "Invoke":
        function = str(params.get("FunctionName", ""))
        if not function.startswith("arn:"):
            function = arn("lambda", f"function:{function}")
        if params.get("Qualifier"):
            function = f"{function}:{params['Qualifier']}"
        return [Need.of("lambda:InvokeFunction", function, kind="lambda")]
    if service in ("sfn", "stepfunctions"):
        resource = params.get("stateMachineArn") or params.get("executionArn") or "*"
        return [Need.of(f"states:{operation}", str(resource))]
    if service in ("sagemaker", "sagemaker-runtime"):
        return _sagemaker(operation, params)
    if service == "cloudwatch" and operation == "PutMetricData":
        return [Need.of("cloudwatch:PutMetricData", "*",
                        {"cloudwatch:namespace": params.get("Namespace", "")})]
    if service in ("events", "eventbridge") and operation == "PutEvents":
        buses = {str(e.get("EventBusName") or "default") for e in params.get("Entries", [])}
        return [Need.of("events:PutEvents", b if b.startswith("arn:")
                        else arn("events", f"event-bus/{b}")) for b in sorted(buses)]
    if service == "application-auto-scaling":
        return [Need.of(f"application-autoscaling:{operation}", "*")]
    return [Need.of(f"{prefix}:{operation}", "*", {"mdlc:unmapped": True})]


class Authorizer:
    """Checks each call as its caller, and remembers every denial."""

    def __init__(self, store: PolicyStore, principals: Principals) -> None:
        self.store = store
        self.principals = principals
        self.denied: list[dict[str, Any]] = []
        #: Checks made, by caller (a run's evidence that its calls were checked at all).
        self.callers: Counter[str] = Counter()
        self._cache: dict[tuple[str, Need], Decision] = {}
        self._lock = threading.Lock()
        #: Subnet and security group ids -> their VPC id (add_network).
        self.networks: dict[str, str] = {}

    def revoke(self, role: str, action: str) -> int:
        """Remove ``action`` from every statement of ``role``'s identity policies (tests:
        the run must then fail on exactly the calls that needed it); returns how many
        statements changed."""
        found = self.store.role_named(role)
        changed = 0
        for document in found.identity:
            for statement in _list(document.get("Statement")):
                actions = _list(statement.get("Action"))
                kept = [a for a in actions if a.lower() != action.lower()]
                if len(kept) != len(actions):
                    statement["Action"] = kept or ["mdlc:Revoked"]
                    changed += 1
        self._cache.clear()
        return changed

    def decide(self, principal: str, need: Need) -> Decision:
        key = (principal, need)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        role = self.store.roles.get(principal)
        kind, policy = self.store.resource_policies.get(self._policy_resource(need), (need.kind,
                                                                                     None))
        decision = evaluate(
            Request(principal=principal, action=need.action, resource=need.resource,
                    context=dict(need.context)),
            identity=role.identity if role else [], resource_policy=policy,
            resource_kind=kind if policy is not None else (
                "kms" if need.kind == "kms" else "generic"))
        with self._lock:
            self._cache[key] = decision
        return decision

    @staticmethod
    def _policy_resource(need: Need) -> str:
        if need.resource.startswith(f"arn:{PARTITION}:s3:::"):
            return need.resource.split("/", 1)[0]
        if need.resource.startswith(f"arn:{PARTITION}:lambda:"):
            return ":".join(need.resource.split(":")[:7])
        return need.resource

    def check(self, principal: str | None, service: str, operation: str,
              required: Iterable[Need], *, source: str | None = None) -> None:
        """Raise the service's AccessDenied for the first need ``principal`` lacks.

        A service principal (``events.amazonaws.com``) calls on behalf of ``source``,
        which the request carries as ``aws:SourceArn`` and ``aws:SourceAccount``.
        """
        if principal is None:
            return
        # Every signed request says whether an AWS service principal makes it; a
        # service also says for which resource (against the confused deputy).
        service_principal = not principal.startswith("arn:")
        extra: dict[str, Any] = {"aws:PrincipalIsAWSService": service_principal}
        if service_principal:
            extra["aws:SourceAccount"] = ACCOUNT
            if source:
                extra["aws:SourceArn"] = source
        required = [Need(n.action, n.resource, tuple(sorted({**dict(n.context), **extra}
                                                            .items())), n.kind, n.kms)
                    for n in required]
        self.callers[principal] += len(required)
        for need in required:
            decision = self.decide(principal, need)
            if decision.allowed:
                continue
            reason = decision.reason
            if dict(need.context).get("mdlc:unmapped"):
                reason += (f" (the local runtime has no IAM mapping for {service} "
                           f"{operation}: evaluated as {need.action} on *)")
            context = {k: v for k, v in need.context
                       if k not in ("mdlc:unmapped", "aws:PrincipalIsAWSService")}
            self.denied.append({"principal": principal, "action": need.action,
                                "resource": need.resource, "context": context,
                                "operation": f"{service}:{operation}", "reason": reason})
            code, status = (KMS_DENIED.get(service, ("AccessDeniedException", 400))
                            if need.kms else DENIED.get(service, ("AccessDeniedException", 400)))
            raise ServiceError(code, f"User: {principal} is not authorized to perform: "
                               f"{need.action} on resource: {need.resource} because {reason}",
                               status=status)

    def check_call(self, service: str, operation: str, params: Mapping[str, Any]) -> None:
        """The hook for every call through the local hooks."""
        principal = self.principals.current()
        if principal is None:
            return
        if service == "lambda" and str(params.get("FunctionName", "")).rsplit(":", 1)[
                -1].startswith(STAND_IN_PREFIX):
            return  # a rewritten .sync task: the stand-in checks the integration itself
        self.check(principal, service, operation, needs(self.store, service, operation, params),
                   source=self.principals.source())

    def check_assume(self, role_arn: str, service_principal: str, *,
                     source: str | None = None) -> None:
        """The service may assume the role (its trust policy), as AWS checks on each use;
        it says on behalf of which resource (``aws:SourceArn``, ``aws:SourceAccount``:
        the conditions against the confused deputy)."""
        role = self.store.roles.get(role_arn)
        if role is None:
            return
        context = {"aws:SourceAccount": ACCOUNT, **({"aws:SourceArn": source} if source else {})}
        need = Need.of("sts:AssumeRole", role_arn, context, kind="role-trust")
        key = (service_principal, need)
        decision = self._cache.get(key)
        if decision is None:
            if not role.trust.get("Statement"):
                decision = Decision(False, f"role {role.name} has no trust policy "
                                    "(AssumeRolePolicyDocument)")
            else:
                decision = evaluate(Request(principal=service_principal,
                                            action="sts:AssumeRole", resource=role_arn,
                                            context=context),
                                    identity=[], resource_policy=role.trust,
                                    resource_kind="role-trust")
            self._cache[key] = decision
        if not decision.allowed:
            self.denied.append({"principal": service_principal, "action": "sts:AssumeRole",
                                "resource": role_arn, "context": context,
                                "operation": "sts:AssumeRole",
                                "reason": decision.reason})
            raise ServiceError("AccessDeniedException",
                               f"{service_principal} cannot assume {role_arn}: {decision.reason}")

    def check_params(self, principal: str | None, service: str, operation: str,
                     params: Mapping[str, Any], *, source: str | None = None) -> None:
        """:meth:`check` of one call described by its API parameters."""
        self.check(principal, service, operation, needs(self.store, service, operation, params),
                   source=source)

    def check_sync_job(self, kind: str, params: Mapping[str, Any]) -> None:
        """What a ``.sync`` SageMaker job task needs of the state machine's role, per the
        Step Functions service integration's IAM page: create, describe and stop the
        job, pass its role, and manage the managed rule that reports its end."""
        caller = self.principals.current()
        name = params.get(f"{kind}JobName", "")
        job = _sagemaker_arn(f"{kind.lower()}-job", name)
        rule = arn("events", f"rule/StepFunctionsGetEventsForSageMaker{kind}JobsRule")
        required = [Need.of(f"sagemaker:Create{kind}Job", job),
                    Need.of(f"sagemaker:Describe{kind}Job", job),
                    Need.of(f"sagemaker:Stop{kind}Job", job),
                    *[Need.of(f"events:{a}", rule) for a in ("PutTargets", "PutRule",
                                                              "DescribeRule")]]
        role = params.get("RoleArn")
        if role:
            required.append(Need.of("iam:PassRole", str(role),
                                    {"iam:PassedToService": "sagemaker.amazonaws.com"}))
        self.check(caller, "sagemaker", f"Create{kind}Job", required)
        if role:
            self.check_assume(str(role), "sagemaker.amazonaws.com", source=job)

    def add_network(self, vpc_id: str, resource_ids: Iterable[str]) -> None:
        """Subnets and security groups of ``vpc_id`` that exist (deployed, or a
        team's existing network); a VpcConfig naming others is refused."""
        for resource_id in resource_ids:
            self.networks[resource_id] = vpc_id

    def check_network_interfaces(self, role: str | None, vpc_config: Mapping[str, Any] | None,
                                 *, source: str) -> None:
        """What SageMaker checks before it places a job's or model's network
        interfaces (its "Give SageMaker access to resources in your Amazon VPC"
        page): the subnets and groups exist in one VPC, and the execution role
        may describe the network and create, permit and delete interfaces there."""
        if not vpc_config:
            return
        subnets = list(vpc_config.get("Subnets", []))
        groups = list(vpc_config.get("SecurityGroupIds", []))
        if not subnets or not groups:
            raise ServiceError("ValidationException", "VpcConfig needs at least one subnet "
                               f"and one security group, got {dict(vpc_config)}")
        unknown = [i for i in subnets + groups if i not in self.networks]
        if unknown:
            raise ServiceError("ValidationException", f"{source}: the subnet or security group "
                               f"ID(s) {unknown} do not exist")
        vpcs = {self.networks[i] for i in subnets + groups}
        if len(vpcs) != 1:
            raise ServiceError("ValidationException", f"{source}: the subnets and security "
                               f"groups are in different VPCs {sorted(vpcs)}")
        if role is None:
            return
        (vpc_id,) = vpcs
        vpc = arn("ec2", f"vpc/{vpc_id}")
        interface = arn("ec2", "network-interface/eni-local")
        required = [Need.of(f"ec2:{action}", "*") for action in (
            "DescribeNetworkInterfaces", "DescribeVpcs", "DescribeDhcpOptions",
            "DescribeSubnets", "DescribeSecurityGroups")]
        for subnet in subnets:
            context = {"ec2:Vpc": vpc, "ec2:Subnet": arn("ec2", f"subnet/{subnet}")}
            required += [Need.of("ec2:CreateNetworkInterface", interface, context),
                         Need.of("ec2:CreateNetworkInterface", arn("ec2", f"subnet/{subnet}"))]
        required += [Need.of("ec2:CreateNetworkInterface", arn("ec2", f"security-group/{g}"))
                     for g in groups]
        required += [Need.of(f"ec2:{action}", interface, {"ec2:Vpc": vpc}) for action in (
            "CreateNetworkInterfacePermission", "DeleteNetworkInterface",
            "DeleteNetworkInterfacePermission")]
        self.check(role, "ec2", "CreateNetworkInterface", required)

    def report(self) -> list[dict[str, Any]]:
        return json.loads(json.dumps(self.denied, default=str))
