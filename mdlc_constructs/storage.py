"""The data lake: one customer-managed key and the buckets every stage uses,
and the grants every stage uses on them.

Buckets are partitioned by model (``<prefix>/<model>/...``) and, on a shared
platform, shared by every model. aws-cdk-lib's ``bucket.grant_read(grantee,
pattern)`` scopes object access to ``pattern`` but grants ``s3:List*`` on the
whole bucket, which would let one model list the object names of every
other. :func:`grant_read_objects` and :func:`grant_read_write_objects` grant
the same object access, and ``s3:ListBucket`` only under ``pattern``'s prefix
(an ``s3:prefix`` condition): every listing the handlers and SageMaker make
names a prefix inside what they read.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Annotations, ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct
from mdlc_core.layout import Layout

from .compliance import acknowledge, acknowledge_all
from .grants import combine
from .tokens import days


def scored_predictions_pattern(model: str) -> str:
    """The objects that are model monitoring's input, in the predictions bucket:
    ``predictions/<model>/dt=<day>/scored/...`` (``lambdas/mdlc_core/predictions.py``;
    the batch decide step, the stream consumer and the integration step write
    there, the monitoring job reads only there)."""
    return Layout(model).scored_pattern


def listing_prefixes(pattern: str) -> list[str]:
    """The ``s3:prefix`` values a listing of ``pattern``'s objects may use:
    ``datasets/fraud/*`` -> ``["datasets/fraud/*", "datasets/fraud/"]``. A
    pattern without a wildcard names one object (or a prefix SageMaker lists,
    such as an asset's key) and is its own value."""
    if not pattern.endswith("*"):
        return [pattern]
    return [pattern, pattern.rstrip("*")] if pattern.rstrip("*") else [pattern]


def list_conditions(patterns: Sequence[str]) -> dict[str, dict[str, list[str]]]:
    """The condition of a listing limited to ``patterns``' prefixes."""
    values = [v for pattern in patterns for v in listing_prefixes(pattern)]
    if not values or any(v in ("", "*") for v in values):
        raise ValueError(f"listing must be limited to a prefix, got patterns {list(patterns)!r}")
    return {"StringLike": {"s3:prefix": values}}


def list_statement(bucket: s3.IBucket, patterns: Sequence[str]) -> iam.PolicyStatement:
    """``s3:ListBucket`` on ``bucket``, only for prefixes inside ``patterns``."""
    return iam.PolicyStatement(
        actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
        conditions=list_conditions(patterns),
    )


#: Each bucket's ARN token and key, while the bucket lives: each read of a jsii
#: property is a round trip, and a model stack grants on the same few buckets
#: about 30 times.
_BUCKETS: weakref.WeakKeyDictionary[s3.IBucket, tuple[str, kms.IKey | None]] = (
    weakref.WeakKeyDictionary())


def _bucket_facts(bucket: s3.IBucket) -> tuple[str, kms.IKey | None]:
    cached = _BUCKETS.get(bucket)
    if cached is None:
        cached = _BUCKETS[bucket] = (bucket.bucket_arn, bucket.encryption_key)
    return cached


def grant_list(bucket: s3.IBucket, grantee: iam.IGrantable, pattern: str) -> iam.Grant:
    """Let ``grantee`` list ``bucket`` under ``pattern``'s prefix only."""
    arn, _ = _bucket_facts(bucket)
    return iam.Grant.add_to_principal_or_resource(
        grantee=grantee, actions=["s3:ListBucket"], resource_arns=[arn],
        resource=bucket, conditions=list_conditions([pattern]),
    )


def grant_read_objects(bucket: s3.IBucket, grantee: iam.IGrantable, pattern: str) -> iam.Grant:
    """What ``bucket.grant_read(grantee, pattern)`` grants, with listing limited to
    ``pattern``'s prefix: ``s3:GetObject*`` on the objects, ``s3:GetBucket*`` on
    the bucket, ``s3:ListBucket`` under the prefix, and decrypting with the
    bucket's key. Returns the grant of the object reads."""
    arn, key = _bucket_facts(bucket)
    objects = iam.Grant.add_to_principal_or_resource(
        # What IBucket.arn_for_objects returns: the ARN, "/", the pattern.
        grantee=grantee, actions=["s3:GetObject*"], resource_arns=[f"{arn}/{pattern}"],
        resource=bucket,
    )
    iam.Grant.add_to_principal_or_resource(
        grantee=grantee, actions=["s3:GetBucket*"], resource_arns=[arn], resource=bucket,
    )
    grant_list(bucket, grantee, pattern)
    if key is not None:
        key.grant(grantee, "kms:Decrypt", "kms:DescribeKey")
    # The object grant stands for the whole: combining the four would cost a
    # jsii round trip each on a path every stage takes (issue #12).
    return objects


def grant_read_write_objects(bucket: s3.IBucket, grantee: iam.IGrantable, pattern: str) -> None:
    """What ``bucket.grant_read_write(grantee, pattern)`` grants, with listing
    limited to ``pattern``'s prefix: :func:`grant_read_objects`, ``grant_put``
    (put and abort, encrypting with the key), deleting the objects, and listing
    the parts of their multipart uploads."""
    grant_read_objects(bucket, grantee, pattern)
    bucket.grant_put(grantee, pattern)
    arn, _ = _bucket_facts(bucket)
    iam.Grant.add_to_principal_or_resource(
        grantee=grantee, actions=["s3:DeleteObject*", "s3:ListMultipartUploadParts"],
        resource_arns=[f"{arn}/{pattern}"], resource=bucket,
    )


#: The buckets of a data lake, in the order they are created. The names are
#: construct ids: changing one replaces the bucket (and orphans its data).
BUCKET_KINDS = ("raw", "datasets", "features", "artifacts", "predictions", "capture")


@dataclass(frozen=True)
class BucketOverrides:
    """Props merged into every generated bucket (AWS Solutions Constructs style).

    Only what is safe to change: security properties (encryption, TLS,
    public access, versioning, logging) are not overridable.
    """

    noncurrent_version_expiration_days: int = 365
    noncurrent_versions_to_retain: int = 3
    #: None keeps current objects in S3 Standard.
    transition_to_infrequent_access_days: int | None = 90
    intelligent_tiering: bool = False


class DataLake(Construct):
    """A KMS key with rotation and the buckets for every MDLC stage.

    Every generated bucket blocks all public access, accepts TLS only, is
    encrypted with the key, is versioned, logs server access to ``log_bucket``,
    expires noncurrent versions, and is retained when the stack is deleted.

    Args:
        key: an existing key to encrypt with. Default: a new key with rotation,
            retained on delete, usable by CloudWatch Logs, CloudWatch alarms and
            EventBridge (which encrypt logs and publish to encrypted topics).
        buckets: existing buckets by kind (``raw``, ``datasets``, ``features``,
            ``artifacts``, ``predictions``, ``capture``); the others are created.
            Default: all are created.
        log_bucket: an existing bucket for server access logs. Default: a new
            one (SSE-S3, since S3 log delivery cannot write with a KMS key).
        overrides: lifecycle settings for the generated buckets. Default:
            noncurrent versions kept 365 days (at least 3), current objects to
            Infrequent Access after 90 days.
        removal_policy: for the key and the generated buckets. Default: RETAIN.
            Data is kept unless the owner chooses otherwise.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey | None = None,
        buckets: dict[str, s3.IBucket] | None = None,
        log_bucket: s3.IBucket | None = None,
        overrides: BucketOverrides | None = None,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        existing = dict(buckets or {})
        unknown = sorted(set(existing) - set(BUCKET_KINDS))
        if unknown:
            raise ValueError(
                f"DataLake buckets: unknown kinds {unknown}; expected some of {list(BUCKET_KINDS)}"
            )
        self._overrides = overrides or BucketOverrides()
        self._removal_policy = removal_policy
        self.key: kms.IKey = key or self._create_key()
        self.log_bucket: s3.IBucket = log_bucket or self._create_log_bucket()
        self._buckets: dict[str, s3.IBucket] = {
            kind: existing.get(kind) or self._create_bucket(kind) for kind in BUCKET_KINDS
        }

    # -- public attributes ----------------------------------------------------

    def bucket(self, kind: str) -> s3.IBucket:
        """The bucket of ``kind`` (one of ``BUCKET_KINDS``)."""
        try:
            return self._buckets[kind]
        except KeyError:
            raise ValueError(f"no {kind!r} bucket; expected one of {list(BUCKET_KINDS)}") from None

    @property
    def raw(self) -> s3.IBucket:
        """Source data as delivered, before snapshots."""
        return self._buckets["raw"]

    @property
    def datasets(self) -> s3.IBucket:
        """Immutable dated snapshots: ``datasets/<model>/dt=YYYY-MM-DD/``."""
        return self._buckets["datasets"]

    @property
    def features(self) -> s3.IBucket:
        """Feature snapshots computed from the datasets."""
        return self._buckets["features"]

    @property
    def artifacts(self) -> s3.IBucket:
        """Model artifacts, evaluation reports and training outputs."""
        return self._buckets["artifacts"]

    @property
    def predictions(self) -> s3.IBucket:
        """Batch predictions and decisions, dated; monitoring's input under
        ``predictions/<model>/dt=<day>/scored/`` (:func:`scored_predictions_pattern`)."""
        return self._buckets["predictions"]

    @property
    def capture(self) -> s3.IBucket:
        """Captured real-time inference requests and responses."""
        return self._buckets["capture"]

    def grant_read(self, grantee: iam.IGrantable, *kinds: str) -> iam.Grant:
        """Read objects of the given bucket kinds (and decrypt with the key).

        Whole buckets: on a shared platform that is every model's objects. The
        library's roles use :func:`grant_read_objects` with their model's
        prefixes instead."""
        return combine(grantee, (self.bucket(kind).grant_read(grantee) for kind in kinds),
                       "no bucket kind given")

    def grant_read_write(self, grantee: iam.IGrantable, *kinds: str) -> iam.Grant:
        """Read and write objects of the given bucket kinds (and use the key).

        Whole buckets, like :meth:`grant_read`."""
        return combine(grantee, (self.bucket(kind).grant_read_write(grantee) for kind in kinds),
                       "no bucket kind given")

    # -- resources ------------------------------------------------------------

    def _create_key(self) -> kms.Key:
        key = kms.Key(
            self,
            "Key",
            description=f"mdlc-constructs data key for {Stack.of(self).stack_name}",
            enable_key_rotation=True,
            removal_policy=self._removal_policy,
        )
        stack = Stack.of(self)
        # CloudWatch Logs encrypts log groups with this key, scoped to this
        # account's log groups by the encryption context. (AWS's example adds
        # kms:Describe*, but DescribeKey carries no encryption context, so
        # under this condition it could never apply.)
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                ],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                            service="logs",
                            resource="log-group",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )
        # Alarms and EventBridge rules publish to topics and queues encrypted
        # with this key; without these grants the messages are dropped silently.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[
                    iam.ServicePrincipal("cloudwatch.amazonaws.com"),
                    iam.ServicePrincipal("events.amazonaws.com"),
                ],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
        return key

    def _lifecycle_rules(self) -> list[s3.LifecycleRule]:
        o = self._overrides
        transitions = []
        if o.transition_to_infrequent_access_days is not None:
            transitions.append(
                s3.Transition(
                    storage_class=s3.StorageClass.INTELLIGENT_TIERING
                    if o.intelligent_tiering
                    else s3.StorageClass.INFREQUENT_ACCESS,
                    transition_after=days(o.transition_to_infrequent_access_days),
                )
            )
        return [
            s3.LifecycleRule(
                id="noncurrent-versions",
                noncurrent_version_expiration=days(o.noncurrent_version_expiration_days),
                noncurrent_versions_to_retain=o.noncurrent_versions_to_retain,
                abort_incomplete_multipart_upload_after=days(7),
                transitions=transitions or None,
            )
        ]

    def _create_log_bucket(self) -> s3.Bucket:
        return access_log_bucket(
            self,
            "AccessLogs",
            lifecycle_rules=self._lifecycle_rules(),
            removal_policy=self._removal_policy,
            replication_reason="Cross-region replication is an account-level "
            "disaster-recovery choice; pass a replicated log_bucket",
        )

    def _create_bucket(self, kind: str) -> s3.Bucket:
        return encrypted_bucket(
            self,
            kind.capitalize(),
            key=self.key,
            log_bucket=self.log_bucket,
            log_prefix=f"{kind}/",
            lifecycle_rules=self._lifecycle_rules(),
            removal_policy=self._removal_policy,
            replication_reason="Cross-region replication is an account-level "
            "disaster-recovery choice; pass replicated buckets via DataLake(buckets=...)",
        )


def encrypted_bucket(
    scope: Construct,
    construct_id: str,
    *,
    key: kms.IKey,
    log_bucket: s3.IBucket,
    log_prefix: str,
    lifecycle_rules: list[s3.LifecycleRule],
    removal_policy: RemovalPolicy,
    replication_reason: str,
) -> s3.Bucket:
    """A bucket for the library's data: KMS with ``key`` (and an S3 bucket key,
    so requests do not each call KMS), no public access, TLS only, versioned,
    ACLs disabled (bucket-owner ownership), its server access logged to
    ``log_bucket`` under ``log_prefix`` (:func:`log_server_access`).

    It is not replicated: the caller says why in ``replication_reason``, the
    reason given for PCI DSS's replication finding.
    """
    bucket = _private_bucket(scope, construct_id, key, lifecycle_rules, removal_policy)
    log_server_access(bucket, log_bucket, log_prefix)
    acknowledge(bucket, "PCI.DSS.321-S3BucketReplicationEnabled", replication_reason)
    return bucket


def _private_bucket(
    scope: Construct,
    construct_id: str,
    key: kms.IKey | None,
    lifecycle_rules: list[s3.LifecycleRule],
    removal_policy: RemovalPolicy,
) -> s3.Bucket:
    """What every bucket of the library is: no public access, TLS only,
    versioned, ACLs disabled (bucket-owner ownership). Encrypted with ``key``
    and an S3 bucket key (so requests do not each call KMS), or without a key
    with SSE-S3."""
    encryption: dict[str, Any] = (
        {"encryption": s3.BucketEncryption.S3_MANAGED} if key is None else
        {"encryption": s3.BucketEncryption.KMS, "encryption_key": key,
         "bucket_key_enabled": True}
    )
    return s3.Bucket(
        scope,
        construct_id,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        versioned=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        lifecycle_rules=lifecycle_rules,
        removal_policy=removal_policy,
        **encryption,
    )


#: The service principal that delivers S3 server access logs.
LOG_DELIVERY_PRINCIPAL = "logging.s3.amazonaws.com"


def log_server_access(bucket: s3.Bucket, log_bucket: s3.IBucket, prefix: str) -> None:
    """Log ``bucket``'s server access to ``log_bucket`` under ``prefix``, delivered
    by the bucket policy of ``log_bucket``, whatever the app's feature flags.

    ``s3.Bucket(server_access_logs_bucket=...)`` lets log delivery depend on the
    consumer's ``@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy`` flag:
    without it CDK grants delivery with the ``LogDeliveryWrite`` ACL, which
    needs ACLs enabled (ObjectWriter ownership) and fails on a bucket that
    enforces bucket-owner ownership. This writes what the flag selects:
    ``s3:PutObject`` for ``logging.s3.amazonaws.com`` under ``prefix`` only,
    from ``bucket`` in this account (when both are in one stack; a condition
    naming another stack's bucket would make the stacks reference each
    other), and no ACL. An imported ``log_bucket`` has no policy to add to:
    its owner grants the same statement, and CDK's warning says so.
    """
    cfn = bucket.node.default_child
    if not isinstance(cfn, s3.CfnBucket):
        raise ValueError(f"{bucket.node.path} has no AWS::S3::Bucket resource of its own")
    cfn.logging_configuration = s3.CfnBucket.LoggingConfigurationProperty(
        destination_bucket_name=log_bucket.bucket_name, log_file_prefix=prefix
    )
    conditions = None
    if Stack.of(bucket) is Stack.of(log_bucket):
        conditions = {
            "ArnLike": {"aws:SourceArn": bucket.bucket_arn},
            "StringEquals": {"aws:SourceAccount": bucket.env.account},
        }
    added = log_bucket.add_to_resource_policy(
        iam.PolicyStatement(
            effect=iam.Effect.ALLOW,
            principals=[iam.ServicePrincipal(LOG_DELIVERY_PRINCIPAL)],
            actions=["s3:PutObject"],
            resources=[log_bucket.arn_for_objects(f"{prefix}*" if prefix else "*")],
            conditions=conditions,
        )
    )
    if not added.statement_added:
        Annotations.of(bucket).add_warning_v2(
            "@aws-cdk/aws-s3:accessLogsPolicyNotAdded",
            f"Unable to add necessary logging permissions to imported target bucket: "
            f"{log_bucket.node.path}",
        )
    if log_bucket.encryption_key is not None:
        log_bucket.encryption_key.grant_encrypt_decrypt(
            iam.ServicePrincipal(LOG_DELIVERY_PRINCIPAL)
        )


def access_log_bucket(
    scope: Construct,
    construct_id: str,
    *,
    lifecycle_rules: list[s3.LifecycleRule],
    removal_policy: RemovalPolicy,
    replication_reason: str,
) -> s3.Bucket:
    """A bucket for S3 server access logs: private, TLS only, versioned, with
    ACLs disabled (bucket-owner ownership); :func:`log_server_access` grants
    log delivery in its bucket policy.

    S3 log delivery writes only to SSE-S3 buckets, and a log bucket cannot log
    to itself; both findings are acknowledged here, with the reason the
    caller gives for not replicating it.
    """
    # S3 server access log delivery supports only SSE-S3 on its target.
    bucket = _private_bucket(scope, construct_id, None, lifecycle_rules, removal_policy)
    acknowledge_all(
        bucket,
        {
            "AwsSolutions-S1": "This is the server access log bucket; logging it to "
            "itself would loop, and CloudTrail data events cover it",
            "PCI.DSS.321-S3BucketLoggingEnabled": "This is the server access log "
            "bucket; logging it to itself would loop",
            "PCI.DSS.321-S3DefaultEncryptionKMS": "S3 server access log delivery "
            "supports only SSE-S3 on the target bucket, not KMS keys",
            "PCI.DSS.321-S3BucketReplicationEnabled": replication_reason,
        },
    )
    return bucket
