"""A small IAM policy evaluator: one request against identity and resource policies, as AWS decides.

Why our own: moto's ``moto/iam/access_control.py`` ignores Resource and Condition (its
docstring says so), iamspy 0.0.1 is an experimental Z3 model and @cloud-copilot/iam-simulate is
a Node library. This one is pure Python (no boto3, no moto) so the local runtime can
check every call a role makes; the caller builds the ``Request`` (action, resource ARN,
the context keys the service adds) and caches decisions. Wildcard patterns are compiled
once (``lru_cache``). Every rule comes from AWS's documentation:

- https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html,
  ``..._policy-eval-denyallow.html`` and ``...-cross-account.html``: an explicit deny in any
  policy wins; in one account an allow in the identity policies OR the resource policy
  suffices; across accounts both must allow; IAM role trust policies and KMS key policies
  are the exceptions, they must allow themselves.
- ``reference_policies_elements_principal.html``: an account principal (``"123456789012"``
  or ``arn:aws:iam::123456789012:root``) delegates to that account's IAM policies, it
  grants no role by itself; ``..._notprincipal.html``: Deny only, and a principal is
  excepted only when its account is listed too.
- ``reference_policies_elements_resource.html``: wildcards stay inside an ARN segment,
  except a ``*`` that ends a segment, which may run past colons.
- ``reference_policies_elements_condition_operators.html``: a missing key makes a positive
  operator false and a negated one true, ``...IfExists`` makes it true, ``Null`` tests
  presence, ArnLike/ArnEquals match the six ARN parts one by one, case-sensitively;
  ``reference_policies_condition-single-vs-multi-valued-context-keys.html``: ForAllValues
  is true for a missing or empty key, ForAnyValue false; ``reference_policies_variables.html``.
- https://docs.aws.amazon.com/kms/latest/developerguide/key-policies.html and
  ``key-policy-default.html``: without permission from the key policy, IAM policies that
  allow have no effect; the key policy enables them by allowing the account principal.

Not modelled, as none of our templates relies on them: SCPs/RCPs, permissions
boundaries, session policies, KMS grants, S3 ACLs and Block Public Access, the root
user's implicit access, anonymous callers, the ``${*}``/``${?}`` escapes (they raise).
"""

from __future__ import annotations

import ipaddress
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

ContextValue = str | bool | int | Sequence[str]
Test = Callable[[str, str], bool]
#: A policy document, a ``Role.Policies`` item, one statement, or a list of statements.
PolicyLike = Mapping[str, Any] | Sequence[Mapping[str, Any]]

#: resource_kind -> how the resource policy is named in reasons.
KINDS = {"generic": "resource policy", "s3": "bucket policy", "sns": "topic policy",
         "sqs": "queue policy", "lambda": "function policy", "kms": "key policy",
         "role-trust": "trust policy"}
#: Kinds whose resource policy must allow (directly, or by delegating to IAM) for any allow.
_REQUIRED = frozenset({"kms", "role-trust"})


class PolicyError(ValueError):
    """A policy AWS would reject, or one this evaluator cannot decide: never silently allowed."""


@dataclass(frozen=True)
class Request:
    """One call: who, what, on which resource, with which condition keys."""

    principal: str  # role (or assumed-role session) ARN, or a service principal
    action: str  # "s3:GetObject"
    resource: str  # an ARN, or "*" for actions without resource-level permissions
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    account: str = "123456789012"  # the principal's account


@dataclass(frozen=True)
class StatementRef:
    """Which statement of which policy decided, for reports."""

    source: str  # "identity policy 0", "identity policy 'Default'", "bucket policy", ...
    sid: str  # the Sid, or "#<index>" when the statement has none
    effect: str

    def __str__(self) -> str:
        return f"{self.source} statement '{self.sid}'"


@dataclass(frozen=True)
class Decision:
    """The verdict, why, and which statements decided (for ``denied_calls`` reports)."""

    allowed: bool
    reason: str
    statements: tuple[StatementRef, ...] = ()  # the statements that decided (empty: none applied)
    explicit_deny: bool = False

    def __bool__(self) -> bool:
        return self.allowed


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _values(value: ContextValue) -> tuple[str, ...]:
    if isinstance(value, str | bool | int | float):
        return (_text(value),)
    return tuple(_text(v) for v in value)


@lru_cache(maxsize=8192)
def _glob(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    """``*`` any run, ``?`` one character, anywhere (Action, StringLike, one ARN part)."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


@lru_cache(maxsize=8192)
def _resource_glob(pattern: str) -> re.Pattern[str]:
    """Resource element: a wildcard stays in its segment unless a ``*`` ends the segment."""
    out = []
    for i, c in enumerate(pattern):
        if c == "*":
            out.append(".*" if i + 1 == len(pattern) or pattern[i + 1] == ":" else "[^:]*")
        else:
            out.append("[^:]" if c == "?" else re.escape(c))
    return re.compile("".join(out), re.DOTALL)


def _arn_like(pattern: str, value: str) -> bool:
    """ArnLike/ArnEquals: all six parts present, each matched on its own, case-sensitively."""
    p, v = pattern.split(":", 5), value.split(":", 5)
    return len(p) == len(v) == 6 and all(_glob(a).fullmatch(b) for a, b in zip(p, v, strict=True))


def _when(text: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        moment = datetime.fromisoformat(text)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _compare(parse: Callable[[str], Any], cmp: Callable[[Any, Any], bool]) -> Test:
    """(policy value, request value) -> request <cmp> policy; unparsable values never match."""
    def test(wanted: str, got: str) -> bool:
        try:
            return cmp(parse(got), parse(wanted))
        except ValueError:
            return False
    return test


def _ip(wanted: str, got: str) -> bool:
    try:
        return ipaddress.ip_address(got) in ipaddress.ip_network(wanted, strict=False)
    except ValueError:
        return False


# Positive operators, (policy value, request value) -> match; negated ones map onto them.
_OPS: dict[str, Test] = {
    "StringEquals": operator.eq, "BinaryEquals": operator.eq,
    "StringEqualsIgnoreCase": lambda w, g: w.casefold() == g.casefold(),
    "StringLike": lambda w, g: _glob(w).fullmatch(g) is not None,
    "Bool": lambda w, g: w.lower() == g.lower(),
    "IpAddress": _ip, "ArnEquals": _arn_like, "ArnLike": _arn_like,
}
for _name, _cmp in (("Equals", operator.eq), ("LessThan", operator.lt),
                    ("LessThanEquals", operator.le), ("GreaterThan", operator.gt),
                    ("GreaterThanEquals", operator.ge)):
    _OPS["Numeric" + _name], _OPS["Date" + _name] = _compare(float, _cmp), _compare(_when, _cmp)
_NEGATED = {"StringNotEquals": "StringEquals", "StringNotLike": "StringLike",
            "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase", "NotIpAddress": "IpAddress",
            "NumericNotEquals": "NumericEquals", "DateNotEquals": "DateEquals",
            "ArnNotEquals": "ArnEquals", "ArnNotLike": "ArnLike"}


class _Operator(NamedTuple):
    set_op: str  # "", "ForAnyValue" or "ForAllValues"
    test: Test | None  # None: the Null check
    negated: bool
    if_exists: bool


@lru_cache(maxsize=512)
def _operator(name: str) -> _Operator:
    set_op, _, base = name.rpartition(":")
    if set_op not in ("", "ForAnyValue", "ForAllValues"):
        raise PolicyError(f"unknown condition set operator {set_op!r} in {name!r}")
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    if base == "Null":
        if set_op or if_exists:
            raise PolicyError(f"condition operator {name!r}: Null takes no prefix or IfExists")
        return _Operator("", None, False, False)
    test = _OPS.get(_NEGATED.get(base, base))
    if test is None:
        raise PolicyError(f"unknown condition operator {name!r}: not evaluated, never allowed")
    return _Operator(set_op, test, base in _NEGATED, if_exists)


def _key_holds(op: _Operator, wanted: list[str], got: tuple[str, ...] | None) -> bool:
    """One key of one operator; the key's policy values are OR-ed."""
    if op.test is None:  # Null: "true" means the key is absent
        return any((w.lower() == "true") == (not got) for w in wanted)
    if not got:
        if op.if_exists or op.set_op == "ForAllValues":
            return True
        return op.negated and op.set_op != "ForAnyValue"
    test = op.test

    def hit(value: str) -> bool:
        return any(test(w, value) for w in wanted) != op.negated

    # A plain operator on a multi-valued key behaves as ForAnyValue (any request value).
    return all(map(hit, got)) if op.set_op == "ForAllValues" else any(map(hit, got))


_VAR = re.compile(r"\$\{([^}]*)\}")


def _substitute(value: str, ctx: Mapping[str, tuple[str, ...]]) -> str | None:
    """Fill ``${key}`` / ``${key, 'default'}``; None when a key is missing (matches nothing)."""
    if "${" not in value:
        return value
    missing: list[str] = []

    def fill(match: re.Match[str]) -> str:
        name, _, default = (part.strip() for part in match.group(1).partition(","))
        if name in ("*", "?"):
            raise PolicyError(f"policy variable escape ${{{name}}} is not supported")
        got = ("$",) if name == "$" else ctx.get(name.lower())
        if got is not None and len(got) == 1:  # multi-valued keys are not variables
            return got[0]
        if len(default) >= 2 and default[0] == default[-1] == "'":
            return default[1:-1]
        missing.append(name)
        return ""

    filled = _VAR.sub(fill, value)
    return None if missing else filled


def _role_arn(arn: str) -> str | None:
    """``arn:aws:iam::<acct>:role/<name>`` for a role or one of its sessions, path dropped
    (a session ARN carries none, and a name is unique in its account)."""
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        name = parts[5].split("/")[1]
    elif len(parts) == 6 and parts[2] == "iam" and parts[5].startswith("role/"):
        name = parts[5].rsplit("/", 1)[1]
    else:
        return None
    return f"arn:{parts[1]}:iam::{parts[4]}:role/{name}"


class _Caller(NamedTuple):
    arn: str
    account: str | None  # None: a service principal
    role_arn: str | None


_ACCOUNT = re.compile(r"(\d{12})|arn:aws[\w-]*:iam::(\d{12}):root")


def _principal_hits(element: Any, caller: _Caller) -> set[str]:
    """Which of "everyone", "caller" (itself) and "account" (its account) the element names."""
    if element == "*":
        return {"everyone"}
    if not isinstance(element, Mapping):
        raise PolicyError(f"Principal must be '*' or a mapping, got {element!r}")
    hits: set[str] = set()
    for kind, values in element.items():
        for value in map(str, _as_list(values)):
            account = _ACCOUNT.fullmatch(value)
            if kind == "AWS" and value == "*":
                hits.add("everyone")
            elif kind == "AWS" and account:
                if caller.account == (account.group(1) or account.group(2)):
                    hits.add("caller" if caller.arn == value else "account")
            elif kind == "Service":
                if caller.account is None and value.lower() == caller.arn.lower():
                    hits.add("caller")
            elif caller.arn == value or (kind == "AWS" and caller.role_arn and ":iam:" in value
                                         and _role_arn(value) == caller.role_arn):
                hits.add("caller")  # a role ARN names the role's sessions too
    return hits


def _statements(doc: PolicyLike, source: str) -> list[tuple[StatementRef, Mapping[str, Any], bool]]:
    """Each statement with its reference and whether policy variables apply: a document
    needs Version 2012-10-17 (without one AWS reads 2008-10-17, where ``${...}`` is
    literal); bare statements, cut out of such documents, count as 2012-10-17."""
    if isinstance(doc, Mapping) and "PolicyDocument" in doc:
        source = f"identity policy '{doc.get('PolicyName', source)}'"
        doc = doc["PolicyDocument"]
    variables = True
    if isinstance(doc, Mapping) and "Statement" in doc:
        variables = doc.get("Version") == "2012-10-17"
        doc = doc["Statement"]
    out = []
    for i, st in enumerate(_as_list(doc)):
        if not isinstance(st, Mapping) or st.get("Effect") not in ("Allow", "Deny"):
            raise PolicyError(f"{source} statement #{i}: Effect must be Allow or Deny: {st!r}")
        ref = StatementRef(source, str(st.get("Sid") or f"#{i}"), st["Effect"])
        out.append((ref, st, variables))
    return out


def _matches(st: Mapping[str, Any], request: Request, ctx: Mapping[str, tuple[str, ...]],
             variables: bool, ref: StatementRef, identity: bool) -> bool:
    """Action, Resource and Condition of one statement (Principal is checked by the caller)."""
    condition = st.get("Condition") or {}
    ops = {name: _operator(name) for name in condition}  # unknown operators fail, applied or not
    key = next((k for k in ("Action", "NotAction") if k in st), None)
    if key is None:
        raise PolicyError(f"{ref}: neither Action nor NotAction")
    hit = any(_glob(str(a), True).fullmatch(request.action) for a in _as_list(st[key]))
    if hit != (key == "Action"):
        return False
    key = next((k for k in ("Resource", "NotResource") if k in st), None)
    if key is not None:
        patterns = (_substitute(str(p), ctx) if variables else str(p) for p in _as_list(st[key]))
        hit = any(p is not None and _resource_glob(p).fullmatch(request.resource)
                  for p in patterns)
        if hit != (key == "Resource"):
            return False
    elif identity:  # a resource policy may leave its own resource implied
        raise PolicyError(f"{ref}: neither Resource nor NotResource")
    for name, block in condition.items():
        if not isinstance(block, Mapping):
            raise PolicyError(f"{ref}: condition {name!r} must map keys to values")
        for cond_key, raw in block.items():
            wanted = [_text(w) for w in _as_list(raw)]
            if variables:
                wanted = [w for w in (_substitute(w, ctx) for w in wanted) if w is not None]
            if not _key_holds(ops[name], wanted, ctx.get(cond_key.lower())):
                return False
    return True


def _context(request: Request, caller: _Caller) -> dict[str, tuple[str, ...]]:
    """The request's keys, lower-cased (key names are case-insensitive), plus the principal
    keys AWS adds to every request (aws:PrincipalArn is the role's ARN for a session)."""
    ctx = {k.lower(): _values(v) for k, v in request.context.items()}
    if caller.account is None:
        ctx.setdefault("aws:principalservicename", (caller.arn,))
    else:
        ctx.setdefault("aws:principalarn", (caller.role_arn or caller.arn,))
        ctx.setdefault("aws:principalaccount", (caller.account,))
    return ctx


def evaluate(request: Request, *, identity: Sequence[PolicyLike],
             resource_policy: PolicyLike | None = None, resource_kind: str = "generic",
             resource_account: str | None = None) -> Decision:
    """Decide ``request`` as AWS would, from the caller's identity policies and the resource's.

    ``resource_account`` defaults to the account in the resource ARN, else the caller's
    (S3 ARNs carry none). ``resource_kind`` "kms" (and "role-trust") select the semantics in
    which the resource policy must allow, directly or by naming the account (delegation to
    IAM, after which the identity policies decide); other kinds only name the policy.
    """
    if resource_kind not in KINDS:
        raise PolicyError(f"unknown resource_kind {resource_kind!r}; expected {sorted(KINDS)}")
    label = KINDS[resource_kind]
    arn_principal = request.principal.startswith("arn:")
    caller = _Caller(request.principal, request.account if arn_principal else None,
                     _role_arn(request.principal))
    ctx = _context(request, caller)
    parts = request.resource.split(":", 5)
    owner = resource_account or (parts[4] if len(parts) == 6 and parts[4] else request.account)
    cross = caller.account is not None and caller.account != owner

    denies: list[StatementRef] = []
    allows: list[StatementRef] = []  # identity policy allows
    direct: list[StatementRef] = []  # resource policy allows naming the caller (or everyone)
    delegated: list[StatementRef] = []  # resource policy allows naming only the caller's account
    for i, doc in enumerate(identity):
        for ref, st, variables in _statements(doc, f"identity policy {i}"):
            if "Principal" in st or "NotPrincipal" in st:
                raise PolicyError(f"{ref}: an identity policy cannot have a Principal")
            if _matches(st, request, ctx, variables, ref, identity=True):
                (denies if ref.effect == "Deny" else allows).append(ref)
    if resource_policy is not None:
        for ref, st, variables in _statements(resource_policy, label):
            if "NotPrincipal" in st:
                if ref.effect == "Allow":
                    raise PolicyError(f"{ref}: NotPrincipal with Allow is not supported by AWS")
                hits = _principal_hits(st["NotPrincipal"], caller)
                excepted = "everyone" in hits or ("caller" in hits and (
                    caller.account is None or "account" in hits))
                how = None if excepted else "direct"
            elif "Principal" in st:
                hits = _principal_hits(st["Principal"], caller)
                how = "direct" if hits & {"everyone", "caller"} else "account" if hits else None
            else:
                raise PolicyError(f"{ref}: a resource policy statement needs a Principal")
            if how and _matches(st, request, ctx, variables, ref, identity=False):
                if ref.effect == "Deny":
                    denies.append(ref)
                else:
                    (direct if how == "direct" else delegated).append(ref)

    if denies:
        return Decision(False, f"explicit deny in {denies[0]}", tuple(denies), explicit_deny=True)
    required = resource_kind in _REQUIRED
    if required and resource_policy is None:
        return Decision(False, f"a {label} is required and there is none")
    granted = direct + delegated
    if cross:
        if allows and granted:
            return Decision(True, f"cross-account: allowed by {allows[0]} and {granted[0]}",
                            (allows[0], granted[0]))
        lacking = [n for n, ok in (("the identity policies", allows), (f"the {label}", granted))
                   if not ok]
        return Decision(False, f"cross-account request (principal account {caller.account}, "
                        f"resource account {owner}) needs an allow in both the identity "
                        f"policies and the {label}; none in {' or '.join(lacking)}",
                        tuple(allows + granted))
    if direct:
        return Decision(True, f"allowed by {direct[0]}, which names the principal", (direct[0],))
    if required:
        if delegated and allows:
            return Decision(True, f"allowed by {allows[0]}; the {label} delegates to IAM in "
                            f"{delegated[0]}", (allows[0], delegated[0]))
        if delegated:
            return Decision(False, f"the {label} delegates to IAM ({delegated[0]}) but no "
                            "statement of the identity policies allows it", (delegated[0],))
        ignored = f" (the allow in {allows[0]} does not count)" if allows else ""
        return Decision(False, f"{label} does not allow the principal and does not delegate "
                        f"to IAM{ignored}", tuple(allows))
    if allows:
        return Decision(True, f"allowed by {allows[0]}", (allows[0],))
    reason = "no statement of the identity policies allows it"
    if resource_policy is not None:
        reason += f", and the {label} does not allow the principal"
        if delegated:
            reason += f" ({delegated[0]} names only the account, which delegates to IAM)"
    return Decision(False, reason, tuple(delegated))
