"""The local IAM policy evaluator against AWS's documented evaluation logic.

Each case names the rule it checks; the policies are CloudFormation-shaped (what
synthesized templates contain) and, where AWS's documentation has an example
(default key policy, kms:ViaService, aws:TagKeys, policy variables), that example.
"""

from __future__ import annotations

from typing import Any

import pytest

from mdlc_constructs.local.policy import Decision, PolicyError, Request, evaluate

ACCT = "123456789012"
OTHER = "210987654321"
ROLE = f"arn:aws:iam::{ACCT}:role/TrainingRole"
OTHER_ROLE = f"arn:aws:iam::{ACCT}:role/SomeoneElse"
BUCKET = "arn:aws:s3:::data-bucket"
KEY = f"arn:aws:kms:us-east-1:{ACCT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
MISSING = object()


def doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: Any = "s3:GetObject", resource: Any = f"{BUCKET}/*", **extra: Any) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any = "s3:GetObject", resource: Any = f"{BUCKET}/*", **extra: Any) -> dict:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def req(action: str = "s3:GetObject", resource: str = f"{BUCKET}/key", principal: str = ROLE,
        account: str = ACCT, **context: Any) -> Request:
    return Request(principal=principal, action=action, resource=resource,
                   context={k.replace("__", ":"): v for k, v in context.items()}, account=account)


def run(request: Request, *identity: dict, resource_policy: dict | None = None,
        kind: str = "generic", **kw: Any) -> Decision:
    return evaluate(request, identity=list(identity), resource_policy=resource_policy,
                    resource_kind=kind, **kw)


# --- the decision: explicit deny, same account, cross-account -----------------------------

def test_identity_allow_is_enough_in_the_same_account_and_the_decision_names_it():
    d = run(req(), doc({**allow(), "Sid": "ReadData"}))
    assert d.allowed and bool(d)
    assert "identity policy 0 statement 'ReadData'" in d.reason
    assert [s.sid for s in d.statements] == ["ReadData"]


def test_nothing_allows_is_an_implicit_deny():
    d = run(req(), doc(allow(action="s3:PutObject")))
    assert not d.allowed and not d.explicit_deny
    assert d.reason == "no statement of the identity policies allows it"


def test_explicit_deny_in_an_identity_policy_beats_allows_everywhere():
    bucket = doc({**allow(), "Principal": {"AWS": ROLE}})
    d = run(req(), doc(allow()), doc({**deny(), "Sid": "NoReads"}), resource_policy=bucket,
            kind="s3")
    assert not d.allowed and d.explicit_deny
    assert d.reason == "explicit deny in identity policy 1 statement 'NoReads'"


def test_explicit_deny_in_the_bucket_policy_beats_the_identity_allow():
    bucket = doc({**deny(), "Sid": "DenyReads", "Principal": "*"})
    d = run(req(), doc(allow()), resource_policy=bucket, kind="s3")
    assert not d.allowed and d.explicit_deny
    assert d.reason == "explicit deny in bucket policy statement 'DenyReads'"


def test_a_deny_naming_the_account_applies_to_every_principal_of_it():
    bucket = doc(deny(Principal={"AWS": f"arn:aws:iam::{ACCT}:root"}))
    assert run(req(), doc(allow()), resource_policy=bucket, kind="s3").explicit_deny


def test_same_account_resource_policy_naming_the_role_allows_without_identity_policy():
    bucket = doc({**allow(), "Sid": "GrantRole", "Principal": {"AWS": [OTHER_ROLE, ROLE]}})
    d = run(req(), resource_policy=bucket, kind="s3")
    assert d.allowed and "bucket policy statement 'GrantRole'" in d.reason
    # ...and only the role it names
    assert not run(req(principal=f"arn:aws:iam::{ACCT}:role/Third"), resource_policy=bucket,
                   kind="s3").allowed


def test_an_assumed_role_session_is_matched_by_its_role_arn_even_with_a_path():
    bucket = doc(allow(Principal={"AWS": f"arn:aws:iam::{ACCT}:role/team/TrainingRole"}))
    session = f"arn:aws:sts::{ACCT}:assumed-role/TrainingRole/botocore-session-1"
    assert run(req(principal=session), resource_policy=bucket, kind="s3").allowed


def test_a_resource_policy_naming_only_the_account_delegates_to_iam():
    for account in (ACCT, f"arn:aws:iam::{ACCT}:root"):
        bucket = doc(allow(Principal={"AWS": account}))
        d = run(req(), resource_policy=bucket, kind="s3")
        assert not d.allowed and "names only the account" in d.reason
        assert run(req(), doc(allow()), resource_policy=bucket, kind="s3").allowed


def test_cross_account_needs_both_the_identity_and_the_resource_policy():
    caller = f"arn:aws:iam::{OTHER}:role/Partner"
    r = req(principal=caller, account=OTHER)
    bucket = doc(allow(Principal={"AWS": caller}))
    # S3 ARNs carry no account: the bucket's owner is given
    d = run(r, doc(allow()), resource_account=ACCT)
    assert not d.allowed and "none in the resource policy" in d.reason
    assert run(r, doc(allow())).allowed  # without it, the bucket counts as the caller's
    d = run(r, resource_policy=bucket, kind="s3", resource_account=ACCT)
    assert not d.allowed and "none in the identity policies" in d.reason
    assert run(r, doc(allow()), resource_policy=bucket, kind="s3", resource_account=ACCT).allowed
    # naming the other account (delegation) counts as the resource side cross-account
    assert run(r, doc(allow()), resource_policy=doc(allow(Principal={"AWS": OTHER})),
               kind="s3", resource_account=ACCT).allowed


def test_the_resource_account_comes_from_the_arn_unless_given():
    queue = f"arn:aws:sqs:us-east-1:{OTHER}:jobs"
    r = req(action="sqs:SendMessage", resource=queue)
    d = run(r, doc(allow("sqs:SendMessage", queue)))
    assert not d.allowed and f"resource account {OTHER}" in d.reason
    assert run(r, doc(allow("sqs:SendMessage", queue)), resource_account=ACCT).allowed


def test_a_service_principal_needs_the_resource_policy_to_name_it():
    topic = f"arn:aws:sns:us-east-1:{ACCT}:alerts"
    rule = f"arn:aws:events:us-east-1:{ACCT}:rule/drift"
    policy = doc(allow("sns:Publish", topic, Principal={"Service": "events.amazonaws.com"},
                       Condition={"ArnEquals": {"aws:SourceArn": rule}}))
    other = req(action="sns:Publish", resource=topic, principal="events.amazonaws.com",
                aws__SourceArn=f"arn:aws:events:us-east-1:{ACCT}:rule/other")
    assert not run(other, resource_policy=policy, kind="sns").allowed
    rule_ctx = req(action="sns:Publish", resource=topic, principal="events.amazonaws.com",
                   aws__SourceArn=rule)
    assert run(rule_ctx, resource_policy=policy, kind="sns").allowed
    s3 = req(action="sns:Publish", resource=topic, principal="s3.amazonaws.com",
             aws__SourceArn=rule)
    assert not run(s3, resource_policy=policy, kind="sns").allowed


def test_the_missing_source_arn_fails_the_positive_condition():
    topic = f"arn:aws:sns:us-east-1:{ACCT}:alerts"
    policy = doc(allow("sns:Publish", topic, Principal={"Service": "events.amazonaws.com"},
                       Condition={"ArnEquals": {"aws:SourceArn": "arn:aws:events:*:*:rule/*"}}))
    r = req(action="sns:Publish", resource=topic, principal="events.amazonaws.com")
    assert not run(r, resource_policy=policy, kind="sns").allowed


# --- KMS key policies --------------------------------------------------------------------

# The default key policy statement, from the KMS Developer Guide.
ENABLE_IAM = {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
              "Principal": {"AWS": f"arn:aws:iam::{ACCT}:root"}, "Action": "kms:*",
              "Resource": "*"}


def kms(action: str = "kms:Decrypt", **context: Any) -> Request:
    return req(action=action, resource=KEY, **context)


def test_a_kms_key_needs_a_key_policy():
    d = run(kms(), doc(allow("kms:Decrypt", KEY)), kind="kms")
    assert not d.allowed and d.reason == "a key policy is required and there is none"


def test_a_key_policy_without_root_delegation_ignores_the_identity_allow():
    key_policy = doc(allow("kms:*", "*", Principal={"AWS": OTHER_ROLE}))
    d = run(kms(), doc({**allow("kms:Decrypt", KEY), "Sid": "UseKey"}), resource_policy=key_policy,
            kind="kms")
    assert not d.allowed
    assert d.reason == ("key policy does not allow the principal and does not delegate to IAM "
                        "(the allow in identity policy 0 statement 'UseKey' does not count)")
    # The same documents on a bucket: the identity allow suffices.
    assert run(kms(), doc(allow("kms:Decrypt", KEY)), resource_policy=key_policy).allowed


def test_with_root_delegation_the_identity_policy_decides():
    for principal in (f"arn:aws:iam::{ACCT}:root", ACCT):
        key_policy = doc({**ENABLE_IAM, "Principal": {"AWS": principal}})
        d = run(kms(), doc(allow("kms:Decrypt", KEY)), resource_policy=key_policy, kind="kms")
        assert d.allowed and "delegates to IAM" in d.reason
        d = run(kms(), doc(allow("kms:Encrypt", KEY)), resource_policy=key_policy, kind="kms")
        assert not d.allowed
        assert d.reason.startswith("the key policy delegates to IAM (key policy statement "
                                   "'Enable IAM User Permissions') but no statement")


def test_delegation_is_per_action():
    key_policy = doc({**ENABLE_IAM, "Action": ["kms:Describe*", "kms:Get*"]})
    identity = doc(allow(["kms:Decrypt", "kms:DescribeKey"], KEY))
    assert run(kms("kms:DescribeKey"), identity, resource_policy=key_policy, kind="kms").allowed
    assert not run(kms("kms:Decrypt"), identity, resource_policy=key_policy, kind="kms").allowed


def test_a_key_policy_naming_the_role_allows_without_identity_policy():
    key_policy = doc(allow("kms:Decrypt", "*", Principal={"AWS": ROLE}))
    assert run(kms(), resource_policy=key_policy, kind="kms").allowed
    # an identity-policy deny still applies without permission from the key policy
    d = run(kms(), doc(deny("kms:*", "*")), resource_policy=key_policy, kind="kms")
    assert d.explicit_deny


def test_key_policy_kms_via_service_condition_from_the_kms_guide():
    key_policy = doc(ENABLE_IAM, {
        "Effect": "Allow", "Principal": {"AWS": ROLE},
        "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                   "kms:DescribeKey"],
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:ViaService": ["ec2.us-west-2.amazonaws.com",
                                                          "rds.us-west-2.amazonaws.com"]}}})
    via_rds = kms("kms:GenerateDataKeyWithoutPlaintext",
                  kms__ViaService="rds.us-west-2.amazonaws.com")
    assert run(via_rds, resource_policy=key_policy, kind="kms").allowed
    via_s3 = kms("kms:Decrypt", kms__ViaService="s3.us-west-2.amazonaws.com")
    assert not run(via_s3, resource_policy=key_policy, kind="kms").allowed
    assert not run(kms("kms:Decrypt"), resource_policy=key_policy, kind="kms").allowed


def test_encryption_context_conditions_s3_and_step_functions():
    obj = f"{BUCKET}/data/x.parquet"
    identity = doc(allow(["kms:Decrypt", "kms:GenerateDataKey"], KEY, Condition={
        "StringEquals": {"kms:EncryptionContext:aws:s3:arn": BUCKET}}))
    key_policy = doc(ENABLE_IAM)

    def decide(**context: Any) -> bool:
        return run(kms(**context), identity, resource_policy=key_policy, kind="kms").allowed

    assert decide(**{"kms__EncryptionContext__aws__s3__arn": BUCKET})
    assert not decide(**{"kms__EncryptionContext__aws__s3__arn": obj})
    assert not decide()
    # Issue 11: an unnamed state machine's grant is for "...:stateMachine:" and never matches.
    machine = f"arn:aws:states:us-east-1:{ACCT}:stateMachine:"
    sfn = doc(allow("kms:GenerateDataKey", KEY, Condition={
        "StringEquals": {"kms:EncryptionContext:aws:states:stateMachineArn": machine}}))
    ctx = {"kms:EncryptionContext:aws:states:stateMachineArn": machine + "Training1A2B"}
    r = Request(ROLE, "kms:GenerateDataKey", KEY, ctx)
    assert not evaluate(r, identity=[sfn], resource_policy=key_policy, resource_kind="kms")


def test_kms_cross_account_needs_the_key_policy_and_the_identity_policy():
    caller = f"arn:aws:iam::{OTHER}:role/Partner"
    r = req(action="kms:Decrypt", resource=KEY, principal=caller, account=OTHER)
    key_policy = doc(ENABLE_IAM, allow("kms:Decrypt", "*", Principal={"AWS": OTHER}))
    assert run(r, doc(allow("kms:Decrypt", KEY)), resource_policy=key_policy, kind="kms").allowed
    assert not run(r, resource_policy=key_policy, kind="kms").allowed
    assert not run(r, doc(allow("kms:Decrypt", KEY)), resource_policy=doc(ENABLE_IAM),
                   kind="kms").allowed


def test_role_trust_policies_follow_the_same_rule_as_key_policies():
    role = f"arn:aws:iam::{ACCT}:role/Target"
    r = req(action="sts:AssumeRole", resource=role)
    identity = doc(allow("sts:AssumeRole", role))
    trust_account = doc({"Effect": "Allow", "Principal": {"AWS": ACCT}, "Action": "sts:AssumeRole"})
    assert not run(r, identity, kind="role-trust").allowed
    assert run(r, identity, resource_policy=trust_account, kind="role-trust").allowed
    assert not run(r, resource_policy=trust_account, kind="role-trust").allowed


# --- Action, Resource, Principal and their Not- forms ----------------------------------------

@pytest.mark.parametrize(("pattern", "action", "expected"), [
    ("s3:Get*", "s3:GetObject", True),
    ("s3:Get*", "s3:PutObject", False),
    ("s3:Get?bject", "s3:GetObject", True),
    ("s3:Get?bject", "s3:GetObjectAcl", False),
    ("*", "dynamodb:PutItem", True),
    ("s3:GETOBJECT", "s3:getobject", True),  # action names are case-insensitive
    ("S3:GetObject", "s3:GetObject", True),  # and so is the service prefix
    ("s3:GetObject", "s3:GetObjectVersion", False),  # no implicit prefix match
])
def test_action_wildcards_and_case(pattern, action, expected):
    assert run(req(action=action), doc(allow(pattern))).allowed is expected


@pytest.mark.parametrize(("pattern", "resource", "expected"), [
    (f"{BUCKET}/prefix/*", f"{BUCKET}/prefix/a/b.csv", True),
    (f"{BUCKET}/prefix/*", f"{BUCKET}/other/a", False),
    (f"{BUCKET}/prefix/*", BUCKET, False),
    (f"{BUCKET}/prefix/*", "arn:aws:s3:::Data-bucket/prefix/a", False),  # case-sensitive
    (f"{BUCKET}/file-?.csv", f"{BUCKET}/file-7.csv", True),
    (f"{BUCKET}/file-?.csv", f"{BUCKET}/file-17.csv", False),
    ("*", f"{BUCKET}/anything", True),
    ("arn:aws:dynamodb:*:*:table/Features", f"arn:aws:dynamodb:us-east-1:{ACCT}:table/Features",
     True),
    # a * that ends a segment may run past colons (log streams have colons)...
    ("arn:aws:logs:*:*:log-group:/aws/lambda/fn:*",
     f"arn:aws:logs:us-east-1:{ACCT}:log-group:/aws/lambda/fn:log-stream:2024/x", True),
    ("arn:aws:*", f"arn:aws:sqs:us-east-1:{ACCT}:q", True),
    # ...one inside a segment does not
    (f"arn:aws:s*1:{ACCT}:q", f"arn:aws:sqs:us-east-1:{ACCT}:q", False),
    (f"arn:aws:s*:us-east-1:{ACCT}:q", f"arn:aws:sqs:us-east-1:{ACCT}:q", True),
])
def test_resource_wildcards(pattern, resource, expected):
    assert run(req(resource=resource), doc(allow(resource=pattern))).allowed is expected


def test_actions_without_resource_level_permissions_need_star():
    r = req(action="cloudwatch:PutMetricData", resource="*")
    assert run(r, doc(allow("cloudwatch:PutMetricData", "*"))).allowed
    assert not run(r, doc(allow("cloudwatch:PutMetricData", f"arn:aws:cloudwatch::{ACCT}:*"))
                   ).allowed


def test_not_action():
    identity = doc({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})
    assert run(req(), identity).allowed
    assert not run(req(action="iam:CreateUser", resource="*"), identity).allowed
    # Deny everything but reads
    guard = doc(allow("s3:*", f"{BUCKET}/*"),
                {"Effect": "Deny", "NotAction": ["s3:Get*", "s3:List*"], "Resource": "*"})
    assert run(req(), guard).allowed
    assert run(req(action="s3:PutObject"), guard).explicit_deny


def test_not_resource():
    identity = doc(allow("s3:*", "*"), {"Effect": "Deny", "Action": "s3:*",
                                        "NotResource": [BUCKET, f"{BUCKET}/*"]})
    assert run(req(), identity).allowed
    assert run(req(resource="arn:aws:s3:::other-bucket/key"), identity).explicit_deny


def test_not_principal_excepts_a_role_only_with_its_account():
    both = doc(deny("s3:*", f"{BUCKET}/*",
                    NotPrincipal={"AWS": [ROLE, f"arn:aws:iam::{ACCT}:root"]}))
    assert run(req(), doc(allow()), resource_policy=both, kind="s3").allowed
    assert run(req(principal=OTHER_ROLE), doc(allow()), resource_policy=both,
               kind="s3").explicit_deny
    role_only = doc(deny("s3:*", f"{BUCKET}/*", NotPrincipal={"AWS": ROLE}))
    assert run(req(), doc(allow()), resource_policy=role_only, kind="s3").explicit_deny
    service = doc(deny("sns:Publish", "*", NotPrincipal={"Service": "events.amazonaws.com"}))
    events = req(action="sns:Publish", principal="events.amazonaws.com")
    assert not run(events, resource_policy=service, kind="sns").explicit_deny


def test_not_principal_with_allow_is_rejected():
    with pytest.raises(PolicyError, match="NotPrincipal with Allow"):
        run(req(), resource_policy=doc(allow(NotPrincipal={"AWS": ROLE})), kind="s3")


def test_principal_star_and_aws_star_name_everyone():
    for principal in ("*", {"AWS": "*"}):
        assert run(req(), resource_policy=doc(allow(Principal=principal)), kind="s3").allowed


# --- Condition operators ---------------------------------------------------------------------

def holds(operator: str, wanted: Any, got: Any = MISSING, key: str = "test:Key") -> bool:
    """One Allow statement with one condition, decided for one context value (or none)."""
    context = {} if got is MISSING else {key: got}
    statement = allow(Condition={operator: {key: wanted}})
    return evaluate(Request(ROLE, "s3:GetObject", f"{BUCKET}/k", context),
                    identity=[doc(statement)]).allowed


@pytest.mark.parametrize(("operator", "wanted", "got", "expected"), [
    ("StringEquals", "fraud", "fraud", True),
    ("StringEquals", "fraud", "Fraud", False),  # values are case-sensitive
    ("StringEquals", ["a", "fraud"], "fraud", True),  # a key's values are OR-ed
    ("StringEquals", "fraud", MISSING, False),
    ("StringNotEquals", "fraud", "churn", True),
    ("StringNotEquals", "fraud", "fraud", False),
    ("StringNotEquals", ["a", "b"], "b", False),
    ("StringNotEquals", "fraud", MISSING, True),  # negated operator, key missing: true
    ("StringEqualsIgnoreCase", "Fraud", "fRAUD", True),
    ("StringEqualsIgnoreCase", "fraud", "churn", False),
    ("StringEqualsIgnoreCase", "fraud", MISSING, False),
    ("StringNotEqualsIgnoreCase", "Fraud", "fRAUD", False),
    ("StringNotEqualsIgnoreCase", "fraud", "churn", True),
    ("StringNotEqualsIgnoreCase", "fraud", MISSING, True),
    ("StringLike", "models/fraud/*", "models/fraud/v1/model.tar.gz", True),
    ("StringLike", "models/fraud/*", "Models/fraud/v1", False),
    ("StringLike", "v?", "v1", True),
    ("StringLike", "v?", "v10", False),
    ("StringLike", "*", MISSING, False),
    ("StringNotLike", "models/*", "data/x", True),
    ("StringNotLike", "models/*", "models/x", False),
    ("StringNotLike", "models/*", MISSING, True),
    ("NumericEquals", "10", 10, True),
    ("NumericEquals", "10", "10.0", True),
    ("NumericEquals", "10", "ten", False),
    ("NumericEquals", "10", MISSING, False),
    ("NumericNotEquals", "10", 11, True),
    ("NumericNotEquals", "10", 10, False),
    ("NumericNotEquals", "10", MISSING, True),
    ("NumericLessThan", "10", 9, True),
    ("NumericLessThan", "10", 10, False),
    ("NumericLessThanEquals", "10", 10, True),
    ("NumericLessThanEquals", "10", 11, False),
    ("NumericGreaterThan", "10", 11, True),
    ("NumericGreaterThan", "10", 10, False),
    ("NumericGreaterThanEquals", "10", 10, True),
    ("NumericGreaterThanEquals", "10", 9, False),
    ("DateEquals", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00+00:00", True),
    ("DateEquals", "2026-01-01T00:00:00Z", "1767225600", True),  # epoch seconds
    ("DateNotEquals", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", True),
    ("DateNotEquals", "2026-01-01T00:00:00Z", MISSING, True),
    ("DateLessThan", "2026-01-01T00:00:00Z", "2025-12-31T23:59:59Z", True),
    ("DateLessThan", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", False),
    ("DateLessThanEquals", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", True),
    ("DateGreaterThan", "2026-01-01T00:00:00Z", "2026-06-01T00:00:00Z", True),
    ("DateGreaterThan", "2026-01-01T00:00:00Z", "not a date", False),
    ("DateGreaterThanEquals", "2026-01-01T00:00:00Z", "2025-06-01T00:00:00Z", False),
    ("DateGreaterThan", "2026-01-01T00:00:00Z", MISSING, False),
    ("Bool", "true", True, True),
    ("Bool", "true", "TRUE", True),  # compared case-insensitively
    ("Bool", "false", False, True),
    ("Bool", "false", "true", False),
    ("Bool", True, "true", True),  # a JSON boolean in the template
    ("Bool", "true", MISSING, False),
    ("BinaryEquals", "QmluYXJ5", "QmluYXJ5", True),
    ("BinaryEquals", "QmluYXJ5", "QmluYXJ6", False),
    ("IpAddress", "203.0.113.0/24", "203.0.113.7", True),
    ("IpAddress", "203.0.113.0/24", "198.51.100.1", False),
    ("IpAddress", "2001:DB8:1234:5678::/64", "2001:db8:1234:5678::1", True),
    ("IpAddress", "203.0.113.0/24", MISSING, False),
    ("NotIpAddress", "203.0.113.0/24", "198.51.100.1", True),
    ("NotIpAddress", "203.0.113.0/24", "203.0.113.7", False),
    ("NotIpAddress", "203.0.113.0/24", MISSING, True),
    ("ArnLike", f"arn:aws:states:*:{ACCT}:stateMachine:*",
     f"arn:aws:states:us-east-1:{ACCT}:stateMachine:Training", True),
    ("ArnLike", "arn:aws:s3:::*", f"arn:aws:sns:us-east-1:{ACCT}:t", False),
    ("ArnLike", "arn:aws:sqs:*", f"arn:aws:sqs:us-east-1:{ACCT}:q", False),  # six parts needed
    ("ArnLike", f"arn:aws:sqs:us-east-1:{ACCT}:Q", f"arn:aws:sqs:us-east-1:{ACCT}:q", False),
    ("ArnLike", f"arn:aws:sqs:us-*-?:{ACCT}:q", f"arn:aws:sqs:us-east-1:{ACCT}:q", True),
    ("ArnLike", f"arn:aws:sqs:us-east-1:{ACCT}:q", MISSING, False),
    ("ArnEquals", f"arn:aws:sns:us-east-1:{ACCT}:t", f"arn:aws:sns:us-east-1:{ACCT}:t", True),
    ("ArnEquals", f"arn:aws:sns:*:{ACCT}:t", f"arn:aws:sns:us-east-1:{ACCT}:t", True),
    ("ArnEquals", f"arn:aws:sns:us-east-1:{ACCT}:t", f"arn:aws:sns:us-east-1:{ACCT}:u", False),
    ("ArnNotEquals", f"arn:aws:sns:us-east-1:{ACCT}:t", f"arn:aws:sns:us-east-1:{ACCT}:u", True),
    ("ArnNotEquals", f"arn:aws:sns:us-east-1:{ACCT}:t", f"arn:aws:sns:us-east-1:{ACCT}:t", False),
    ("ArnNotEquals", f"arn:aws:sns:us-east-1:{ACCT}:t", MISSING, True),
    ("ArnNotLike", f"arn:aws:sns:*:{ACCT}:*", f"arn:aws:sns:us-east-1:{ACCT}:t", False),
    ("ArnNotLike", f"arn:aws:sns:*:{ACCT}:*", f"arn:aws:sns:us-east-1:{OTHER}:t", True),
    ("ArnNotLike", f"arn:aws:sns:*:{ACCT}:*", MISSING, True),
    # ...IfExists: a missing key is true; a present one is tested as usual
    ("StringEqualsIfExists", "fraud", MISSING, True),
    ("StringEqualsIfExists", "fraud", "churn", False),
    ("StringEqualsIfExists", "fraud", "fraud", True),
    ("StringLikeIfExists", "models/*", "data/x", False),
    ("ArnLikeIfExists", "arn:aws:sns:*:*:*", MISSING, True),
    ("BoolIfExists", "false", MISSING, True),
    ("BoolIfExists", "false", "true", False),
    ("NumericLessThanIfExists", "5", MISSING, True),
    ("StringNotEqualsIfExists", "fraud", "fraud", False),
    # Null: "true" means the key is absent
    ("Null", "true", MISSING, True),
    ("Null", "true", "x", False),
    ("Null", "false", "x", True),
    ("Null", "false", MISSING, False),
    # Set operators on multi-valued keys
    ("ForAnyValue:StringEquals", ["a", "b"], ["b", "c"], True),
    ("ForAnyValue:StringEquals", ["a", "b"], ["c"], False),
    ("ForAnyValue:StringEquals", ["a", "b"], MISSING, False),
    ("ForAnyValue:StringEquals", ["a", "b"], [], False),
    ("ForAnyValue:StringNotLike", ["a*"], ["ab", "cd"], True),  # some value matches none
    ("ForAnyValue:StringNotLike", ["a*"], ["ab", "ac"], False),
    ("ForAllValues:StringEquals", ["a", "b", "c"], ["a", "b"], True),
    ("ForAllValues:StringEquals", ["a", "b"], ["a", "z"], False),
    ("ForAllValues:StringEquals", ["a", "b"], MISSING, True),  # true when missing or empty
    ("ForAllValues:StringEquals", ["a", "b"], [], True),
    ("ForAllValues:StringNotEquals", ["x"], ["a", "b"], True),
    ("ForAllValues:StringNotEquals", ["x"], ["a", "x"], False),
    ("ForAllValues:ArnLike", [f"arn:aws:sns:*:{ACCT}:*"], [f"arn:aws:sns:us-east-1:{ACCT}:t"],
     True),
    ("ForAnyValue:StringEqualsIfExists", ["a"], MISSING, True),
])
def test_condition_operator(operator, wanted, got, expected):
    assert holds(operator, wanted, got) is expected


def test_for_all_values_tag_keys_example_from_the_iam_guide():
    condition = {"ForAllValues:StringEquals": {"aws:TagKeys": ["environment", "cost-center"]}}
    statement = allow("ec2:CreateTags", "*", Condition=condition)

    def tagging(keys: list[str]) -> bool:
        r = Request(ROLE, "ec2:CreateTags", "*", {"aws:TagKeys": keys})
        return evaluate(r, identity=[doc(statement)]).allowed

    assert tagging(["environment"])
    assert tagging(["environment", "cost-center"])
    assert not tagging(["environment", "owner"])


def test_condition_key_names_are_case_insensitive_values_are_not():
    assert holds("Bool", "true", True, key="AWS:SecureTransport")
    r = Request(ROLE, "s3:GetObject", f"{BUCKET}/k", {"aws:securetransport": "true"})
    identity = doc(allow(Condition={"Bool": {"AWS:SecureTransport": "true"}}))
    assert evaluate(r, identity=[identity]).allowed
    upper = Request(ROLE, "s3:GetObject", f"{BUCKET}/k", {"S3:PREFIX": "Data/"})
    prefixed = doc(allow(Condition={"StringEquals": {"s3:prefix": "data/"}}))
    assert not evaluate(upper, identity=[prefixed]).allowed


def test_all_operators_and_all_keys_must_hold():
    condition = {"StringEquals": {"a:one": "1", "a:two": "2"}, "Bool": {"a:three": "true"}}
    identity = doc(allow(Condition=condition))

    def decide(**context: Any) -> bool:
        r = Request(ROLE, "s3:GetObject", f"{BUCKET}/k", context)
        return evaluate(r, identity=[identity]).allowed

    assert decide(**{"a:one": "1", "a:two": "2", "a:three": True})
    assert not decide(**{"a:one": "1", "a:two": "2", "a:three": False})
    assert not decide(**{"a:one": "1", "a:three": True})


def test_principal_keys_are_in_every_request_context():
    session = f"arn:aws:sts::{ACCT}:assumed-role/TrainingRole/session"
    identity = doc(allow(Condition={"ArnEquals": {"aws:PrincipalArn": ROLE},
                                    "StringEquals": {"aws:PrincipalAccount": ACCT}}))
    assert run(req(principal=session), identity).allowed
    assert not run(req(principal=OTHER_ROLE), identity).allowed


@pytest.mark.parametrize("operator", ["StringEqualz", "ForSomeValues:StringEquals",
                                      "NullIfExists", "ForAnyValue:Null", "StringEquals2"])
def test_unknown_operators_raise_naming_the_operator(operator):
    # Even in a statement whose action does not match this request: never silently skipped.
    identity = doc(allow(), allow("s3:PutObject", Condition={operator: {"k": "v"}}))
    with pytest.raises(PolicyError, match=operator.split(":")[0]):
        run(req(), identity)


# --- Realistic statements from synthesized templates ------------------------------------------

def test_cdk_enforce_ssl_bucket_policy_denies_insecure_transport():
    bucket_policy = {"Version": "2012-10-17", "Statement": [{
        "Sid": "DenyInsecure", "Action": "s3:*", "Effect": "Deny", "Principal": {"AWS": "*"},
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        "Resource": [BUCKET, f"{BUCKET}/*"]}]}
    identity = doc(allow(["s3:GetObject*", "s3:List*"], [BUCKET, f"{BUCKET}/*"]))

    def decide(**context: Any) -> Decision:
        return run(req(**context), identity, resource_policy=bucket_policy, kind="s3")

    insecure = decide(aws__SecureTransport=False)
    assert insecure.explicit_deny
    assert insecure.reason == "explicit deny in bucket policy statement 'DenyInsecure'"
    assert decide(aws__SecureTransport=True).allowed
    # Bool with the key missing is false, so the deny does not apply: callers must set the key.
    assert decide().allowed


def test_cdk_style_list_bucket_scoped_by_s3_prefix():
    identity = {"PolicyName": "TrainingRoleDefaultPolicy", "PolicyDocument": doc({
        "Sid": "ListModelPrefix", "Effect": "Allow", "Action": "s3:ListBucket",
        "Resource": BUCKET,
        "Condition": {"StringLike": {"s3:prefix": ["models/fraud/*", "models/fraud"]}}})}

    def listing(**context: Any) -> Decision:
        return evaluate(req(action="s3:ListBucket", resource=BUCKET, **context),
                        identity=[identity])

    d = listing(s3__prefix="models/fraud/2026-01-01/")
    assert d.allowed
    assert "identity policy 'TrainingRoleDefaultPolicy' statement 'ListModelPrefix'" in d.reason
    assert listing(s3__prefix="models/fraud").allowed
    assert not listing(s3__prefix="models/churn/").allowed
    assert not listing().allowed  # listing the whole bucket


# --- Policy variables ---------------------------------------------------------------------------

def test_policy_variables_from_the_request_context():
    home = doc(allow("s3:GetObject", f"{BUCKET}/home/${{aws:username}}/*"))
    alice = req(resource=f"{BUCKET}/home/alice/notes", aws__username="alice")
    assert run(alice, home).allowed
    assert not run(req(resource=f"{BUCKET}/home/bob/notes", aws__username="alice"), home).allowed
    # missing: the statement does not match (not even what an empty value would give)
    assert not run(req(resource=f"{BUCKET}/home/alice/notes"), home).allowed
    assert not run(req(resource=f"{BUCKET}/home//notes"), home).allowed
    shared = doc(allow("s3:GetObject", f"{BUCKET}/home/${{aws:username, 'shared'}}/*"))
    assert run(req(resource=f"{BUCKET}/home/shared/x"), shared).allowed
    in_condition = doc(allow(Condition={"StringEquals": {"s3:prefix": "${aws:username}/"}}))
    assert run(req(aws__username="alice", s3__prefix="alice/"), in_condition).allowed
    assert not run(req(s3__prefix="alice/"), in_condition).allowed
    assert not run(req(s3__prefix="/"), in_condition).allowed


def test_policy_variables_are_literal_without_version_2012():
    literal = {"Statement": [allow("s3:GetObject", f"{BUCKET}/home/${{aws:username}}/*")]}
    assert not run(req(resource=f"{BUCKET}/home/alice/x", aws__username="alice"), literal).allowed
    assert run(req(resource=f"{BUCKET}/home/${{aws:username}}/x"), literal).allowed


def test_unsupported_variable_escapes_raise():
    with pytest.raises(PolicyError, match=r"\$\{\*\}"):
        run(req(), doc(allow(resource=f"{BUCKET}/${{*}}")))


# --- Shapes and validation -----------------------------------------------------------------------

def test_accepted_policy_shapes():
    r = req()
    assert run(r, allow()).allowed  # a bare statement
    assert evaluate(r, identity=[[allow("s3:PutObject"), allow()]]).allowed  # a statement list
    assert run(r, {"Version": "2012-10-17", "Statement": allow()}).allowed  # Statement as a dict
    assert run(r, {"Statement": [allow()]}).allowed  # Version missing
    assert run(r, allow(["s3:GetObject"], [f"{BUCKET}/*"])).allowed  # lists


@pytest.mark.parametrize(("identity", "resource_policy", "kind", "message"), [
    ([{"Action": "s3:*", "Resource": "*"}], None, "generic", "Effect must be Allow or Deny"),
    ([allow(Principal="*")], None, "generic", "cannot have a Principal"),
    ([], doc(allow()), "s3", "needs a Principal"),
    ([{"Effect": "Allow", "Resource": "*"}], None, "generic", "neither Action nor NotAction"),
    ([{"Effect": "Allow", "Action": "*"}], None, "generic", "neither Resource nor NotResource"),
    ([], None, "dynamo", "unknown resource_kind"),
])
def test_invalid_policies_raise(identity, resource_policy, kind, message):
    with pytest.raises(PolicyError, match=message):
        evaluate(req(), identity=identity, resource_policy=resource_policy, resource_kind=kind)


def test_wildcard_patterns_are_compiled_once():
    from mdlc_constructs.local import policy

    identity = doc(allow("s3:Get*", f"{BUCKET}/unique-prefix-for-cache-test/*"))
    r = req(resource=f"{BUCKET}/unique-prefix-for-cache-test/a")
    assert run(r, identity).allowed
    misses = policy._glob.cache_info().misses, policy._resource_glob.cache_info().misses
    for _ in range(50):
        run(r, identity)
    assert (policy._glob.cache_info().misses, policy._resource_glob.cache_info().misses) == misses
