"""SQS's message limits, enforced as SQS enforces them (moto is more lenient).

moto 5.2 measures a message in characters and accepts any character, so a
message of 180,000 "é" (360,000 bytes) or one holding U+FFFE is taken
locally and refused by SQS. Here a ``SendMessage`` (and each entry of a
``SendMessageBatch``) is checked before moto sees it: the body and the
message attributes (name, data type and value), in UTF-8 bytes, within the
queue's ``MaximumMessageSize``, and only the characters SQS accepts
(#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF).
"""

from __future__ import annotations

import re
from typing import Any

from .hooks import ServiceError, ServiceHooks
from .resources import raw_client

#: SQS's ``MaximumMessageSize`` when a queue does not set it.
DEFAULT_MAXIMUM_MESSAGE_SIZE = 262_144
_REFUSED = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def message_size(body: str, attributes: dict[str, Any] | None) -> int:
    """A message's size as SQS counts it: body and attributes, UTF-8 bytes."""
    size = len(body.encode("utf-8", "surrogatepass"))
    for name, attribute in (attributes or {}).items():
        size += len(name.encode()) + len(str(attribute.get("DataType", "")).encode())
        value = attribute.get("StringValue")
        if value is None:
            value = attribute.get("BinaryValue", b"")
        size += len(value.encode() if isinstance(value, str) else bytes(value))
    return size


class MessageLimits:
    """Refuses what SQS refuses, with SQS's error codes."""

    def __init__(self) -> None:
        self._maximum: dict[str, int] = {}

    def install(self, hooks: ServiceHooks) -> None:
        hooks.observe("sqs", self.check)

    def maximum(self, queue_url: str) -> int:
        if queue_url not in self._maximum:
            try:
                attributes = raw_client("sqs").get_queue_attributes(
                    QueueUrl=queue_url, AttributeNames=["MaximumMessageSize"])["Attributes"]
                self._maximum[queue_url] = int(attributes.get(
                    "MaximumMessageSize", DEFAULT_MAXIMUM_MESSAGE_SIZE))
            except Exception:  # an unknown queue: moto answers that call as SQS does
                return DEFAULT_MAXIMUM_MESSAGE_SIZE
        return self._maximum[queue_url]

    def check(self, operation: str, params: dict[str, Any]) -> None:
        if operation == "SendMessage":
            entries = [params]
        elif operation == "SendMessageBatch":
            entries = list(params.get("Entries") or [])
        else:
            return
        limit = self.maximum(str(params.get("QueueUrl", "")))
        for entry in entries:
            body = str(entry.get("MessageBody", ""))
            found = _REFUSED.search(body)
            if found:
                raise ServiceError("InvalidMessageContents",
                                   f"Invalid characters found. Invalid character "
                                   f"U+{ord(found.group()):04X} in the message body")
            size = message_size(body, entry.get("MessageAttributes"))
            if size > limit:
                raise ServiceError("InvalidParameterValue",
                                   "One or more parameters are invalid. Reason: Message must "
                                   f"be shorter than {limit} bytes (this one is {size}).")
