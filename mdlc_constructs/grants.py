"""``grant_*`` methods return an ``iam.Grant``, as aws-cdk-lib's own do.

A construct's grant often adds several permissions (an L2 grant per target,
or policy statements it builds itself); aws-cdk-lib has ``Grant.combine`` for
two grants but nothing for a list or for statements. These two helpers close
that gap, so every public ``grant_*`` of the library returns one ``Grant``
the caller can ``assert_success()`` or ``apply_before()`` on.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import aws_iam as iam


def combine(grantee: iam.IGrantable, grants: Iterable[iam.Grant], intent: str) -> iam.Grant:
    """One grant of all of ``grants``. With none, ``Grant.drop`` naming ``intent``:
    what aws-cdk-lib returns when it grants nothing (an imported resource),
    whose ``success`` is False, so ``assert_success()`` on it says that
    nothing was granted rather than passing silently."""
    result: iam.Grant | None = None
    for grant in grants:
        result = grant if result is None else result.combine(grant)
    return result if result is not None else iam.Grant.drop(grantee, intent)


def grant_statements(grantee: iam.IGrantable, statements: Iterable[iam.PolicyStatement],
                     intent: str) -> iam.Grant:
    """Add ``statements`` (Allow, without principals) to ``grantee``'s policy, as one grant."""
    return combine(grantee, (
        iam.Grant.add_to_principal(
            grantee=grantee, actions=statement.actions, resource_arns=statement.resources,
            conditions=statement.conditions or None)
        for statement in statements), intent)


__all__ = ["combine", "grant_statements"]
