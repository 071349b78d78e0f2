"""Where decisions' actions are sent, for the stream and the batch paths alike.

The built-in action kinds (``sns``, ``sqs``, ``eventbridge``) send every
action of a kind to one target: an encrypted SNS topic, an encrypted SQS
queue with its own redrive queue, an encrypted EventBridge bus. Both the
client integration (per event) and batch inference (per day) create them with
:meth:`ActionTargets.create`, hand them to their function with
:meth:`ActionTargets.environment` (the variables ``mdlc_core.actions`` reads)
and :meth:`ActionTargets.grant_send`, so the two paths cannot drift apart.
``custom`` kinds get no target: their permissions are the team's to grant.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct, IConstruct

from .grants import combine
from .resources import encrypted_queue
from .tokens import days

#: A redriven action message is moved to the redrive queue after this many receives.
MAX_RECEIVE_COUNT = 5


@dataclass
class ActionTargets:
    """The topic (``sns``), queue (``sqs``) and bus (``eventbridge``) actions go
    to; None for a kind not used. Pass existing ones to share them (e.g.
    ``ActionTargets.of(integration)``: batch and online decisions then reach
    the same subscribers)."""

    topic: sns.ITopic | None = None
    queue: sqs.IQueue | None = None
    event_bus: events.IEventBus | None = None

    @classmethod
    def create(cls, scope: Construct, *, kinds: Iterable[str], key: kms.IKey,
               purpose: str) -> ActionTargets:
        """One encrypted, TLS-only target per built-in kind in ``kinds``, in
        ``scope`` (construct ids ``ActionTopic``, ``ActionQueue`` with
        ``ActionQueueDeadLetters``, ``ActionBus``: a public contract).
        ``purpose`` names them for people, e.g. ``"MDLC fraud: decisions"``."""
        used = set(kinds)
        topic = queue = bus = None
        if "sns" in used:
            topic = sns.Topic(scope, "ActionTopic", display_name=purpose, master_key=key,
                              enforce_ssl=True)
        if "sqs" in used:
            redrive = encrypted_queue(scope, "ActionQueueDeadLetters", key=key)
            queue = sqs.Queue(
                scope, "ActionQueue", encryption=sqs.QueueEncryption.KMS,
                encryption_master_key=key, enforce_ssl=True,
                retention_period=days(14),
                dead_letter_queue=sqs.DeadLetterQueue(queue=redrive,
                                                      max_receive_count=MAX_RECEIVE_COUNT))
        if "eventbridge" in used:
            bus = events.EventBus(scope, "ActionBus", kms_key=key,
                                  description=f"{purpose} (detail-type MDLC Decision)")
        return cls(topic=topic, queue=queue, event_bus=bus)

    @classmethod
    def of(cls, integration: object) -> ActionTargets:
        """A client integration's targets: its ``action_targets`` (or, for an
        object without them, its ``topic_target``, ``queue_target`` and
        ``event_bus_target``)."""
        targets = getattr(integration, "action_targets", None)
        if isinstance(targets, ActionTargets):
            return targets
        return cls(topic=getattr(integration, "topic_target", None),
                   queue=getattr(integration, "queue_target", None),
                   event_bus=getattr(integration, "event_bus_target", None))

    def for_kind(self, kind: str) -> IConstruct | None:
        """The target of a built-in kind, or None (``custom``, or not created)."""
        return {"sns": self.topic, "sqs": self.queue, "eventbridge": self.event_bus}.get(kind)

    def environment(self) -> dict[str, str]:
        """What ``mdlc_core.actions.Dispatcher.from_config`` reads: ACTION_TOPIC_ARN,
        ACTION_QUEUE_URL, ACTION_EVENT_BUS_NAME (each only when the target exists)."""
        environment = {}
        if self.topic is not None:
            environment["ACTION_TOPIC_ARN"] = self.topic.topic_arn
        if self.queue is not None:
            environment["ACTION_QUEUE_URL"] = self.queue.queue_url
        if self.event_bus is not None:
            environment["ACTION_EVENT_BUS_NAME"] = self.event_bus.event_bus_name
        return environment

    def grant_send(self, grantee: iam.IGrantable) -> iam.Grant:
        """Each target's one send action (and its key, through the L2 grants)."""
        grants = []
        if self.topic is not None:
            grants.append(self.topic.grant_publish(grantee))
        if self.queue is not None:
            grants.append(self.queue.grant_send_messages(grantee))
        if self.event_bus is not None:
            grants.append(self.event_bus.grant_put_events_to(grantee))
        return combine(grantee, grants, "the spec's actions have no topic, queue or bus")


__all__ = ["MAX_RECEIVE_COUNT", "ActionTargets"]
