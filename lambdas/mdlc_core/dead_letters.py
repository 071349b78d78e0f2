"""Dead letters: a rejected stream record kept whole, explained, and sent once.

A record that retrying cannot fix (malformed, dated beyond the clock skew, an
action whose outcome is unknown) leaves the stream through here:

1. its payload, byte for byte as the record carried it, is written to S3
   (``DEAD_LETTER_BUCKET``, the data lake's raw bucket: KMS-encrypted by
   default, versioned, TLS only) as ``<DEAD_LETTER_PREFIX><id>.payload``,
   where the prefix is ``dead-letters/<model>/<function>/``;
2. a message goes to ``DEAD_LETTER_QUEUE_URL`` with the reason, the stream
   coordinates, the payload's S3 location, size and SHA-256, and as much of
   the payload inline as fits. SQS bounds a message by its encoded size
   (body and attributes, UTF-8 bytes) against the queue's
   ``MaximumMessageSize``: at most 1 MiB, 262,144 bytes where SQS documents
   its long-standing default. The library's queues do not set it, so every
   message is built to fit 256 KiB, which any queue not set lower accepts,
   whatever the payload's characters (a character of "é" is 2 bytes, an
   emoji 4; a JSON escape of either is 6 or 12);
3. the message is copied to ``<id>.json`` beside the payload: the mark that
   this record was dead-lettered, and a durable copy once the queue's
   retention has passed.

The id is derived from the record (its stream, sequence number and payload),
so a redelivered record finds its mark and is not sent again (issue 14.9).
Steps 1 and 2 must succeed for the record to count as handled; if either
fails, :class:`DeadLetterError` is raised and the caller reports the record
as failed (retried, never dropped). A failure of step 3 is retried, then logged: it only
costs a duplicate message if the record is delivered again; the message's
``dead_letter_id`` names the duplicate.

Standard library only; the clients are passed in.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .layout import Layout

logger = logging.getLogger("mdlc.dead_letters")

#: SQS's long-standing default ``MaximumMessageSize``, the smallest a queue of
#: the library has (they do not set it; SQS allows up to 1 MiB).
MAX_MESSAGE_BYTES = 262_144
#: Room kept for what SQS counts beyond our arithmetic.
MARGIN_BYTES = 1_024
#: SQS's ``MessageAttributes`` string value is bounded; a reason is cut to this.
MAX_REASON_ATTRIBUTE = 256

# SQS accepts #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF.
_NOT_ALLOWED = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class DeadLetterError(RuntimeError):
    """A rejected record could not be kept; the caller reports it as failed."""


@dataclass(frozen=True)
class Rejection:
    """What is dead-lettered: why, the record's bytes, and where it came from."""

    reason: str
    payload: bytes
    source: Mapping[str, Any] = field(default_factory=dict)


def kinesis_source(record: Mapping[str, Any]) -> dict[str, Any]:
    """A Kinesis record's coordinates as Lambda delivers them (enough to replay it)."""
    kinesis = record.get("kinesis") or {}
    return {
        "event_source_arn": record.get("eventSourceARN"),
        "event_id": record.get("eventID"),
        "partition_key": kinesis.get("partitionKey"),
        "sequence_number": kinesis.get("sequenceNumber"),
        "approximate_arrival_timestamp": kinesis.get("approximateArrivalTimestamp"),
    }


def kinesis_payload(record: Mapping[str, Any]) -> bytes:
    """The record's data bytes: base64-decoded, or the text itself when it is not base64."""
    data = (record.get("kinesis") or {}).get("data", "")
    if not isinstance(data, str):
        data = json.dumps(data, default=str)
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        return data.encode("utf-8", "surrogatepass")


def dead_letter_id(source: Mapping[str, Any], payload: bytes) -> str:
    """The same for every delivery of one record, different for another record."""
    digest = hashlib.sha256()
    for part in (source.get("event_source_arn"), source.get("sequence_number")):
        digest.update(str(part or "").encode())
        digest.update(b"\n")
    digest.update(payload)
    return digest.hexdigest()[:40]


def _sqs_text(text: str) -> str:
    """``text`` with the characters SQS refuses written as JSON-style escapes."""
    return _NOT_ALLOWED.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _encoded(body: Mapping[str, Any]) -> str:
    return _sqs_text(json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str))


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


class DeadLetters:
    """Where one function's rejected records go (see the module docstring)."""

    #: The mark is written after the message: retried, since a lost mark means a
    #: second message if the record is delivered again.
    MARK_ATTEMPTS = 4

    def __init__(
        self,
        *,
        sqs: Any,
        s3: Any,
        queue_url: str,
        bucket: str,
        prefix: str,
        model: str,
        function: str,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        sleep: Callable[[float], None] = time.sleep,
        backoff_seconds: float = 0.02,
    ) -> None:
        missing = [n for n, v in (("DEAD_LETTER_QUEUE_URL", queue_url),
                                  ("DEAD_LETTER_BUCKET", bucket)) if not v]
        if missing:
            raise ValueError(f"dead letters need {' and '.join(missing)}, which "
                             f"{'is' if len(missing) == 1 else 'are'} not set")
        self.sqs = sqs
        self.s3 = s3
        self.queue_url = queue_url
        self.bucket = bucket
        self.prefix = prefix if prefix.endswith("/") else f"{prefix}/"
        self.model = model
        self.function = function
        self.max_message_bytes = max_message_bytes
        self.sleep = sleep
        self.backoff_seconds = backoff_seconds

    @classmethod
    def from_env(cls, *, sqs: Any, s3: Any, model: str, function: str,
                 environ: Mapping[str, str] | None = None) -> DeadLetters:
        env = os.environ if environ is None else environ
        return cls(
            sqs=sqs, s3=s3, model=model, function=function,
            queue_url=env.get("DEAD_LETTER_QUEUE_URL", ""),
            bucket=env.get("DEAD_LETTER_BUCKET", ""),
            prefix=env.get("DEAD_LETTER_PREFIX") or Layout(model).dead_letters(function),
        )

    def keys(self, letter_id: str) -> tuple[str, str]:
        """(payload key, message key) of a dead letter."""
        return f"{self.prefix}{letter_id}.payload", f"{self.prefix}{letter_id}.json"

    def send(self, rejection: Rejection) -> dict[str, Any]:
        """Keep ``rejection``; returns the message (``sent`` False when an earlier
        delivery of the same record already sent it). Raises DeadLetterError."""
        letter_id = dead_letter_id(rejection.source, rejection.payload)
        payload_key, message_key = self.keys(letter_id)
        try:
            if self._exists(message_key):
                logger.info("record already dead-lettered", extra={"dead_letter_id": letter_id})
                return {"dead_letter_id": letter_id, "sent": False}
            self.s3.put_object(Bucket=self.bucket, Key=payload_key, Body=rejection.payload,
                               ContentType="application/octet-stream")
        except Exception as error:
            raise DeadLetterError(f"payload of {letter_id} not stored in "
                                  f"s3://{self.bucket}/{payload_key}: {error}") from error
        body = self.message(letter_id, rejection, payload_key)
        reason = _sqs_text(rejection.reason[:MAX_REASON_ATTRIBUTE]) or "rejected"
        try:
            self.sqs.send_message(
                QueueUrl=self.queue_url, MessageBody=body,
                MessageAttributes={
                    "reason": {"DataType": "String", "StringValue": reason},
                    "dead_letter_id": {"DataType": "String", "StringValue": letter_id},
                },
            )
        except Exception as error:
            raise DeadLetterError(f"dead letter {letter_id} not sent to {self.queue_url}: "
                                  f"{error}") from error
        for attempt in range(self.MARK_ATTEMPTS):
            try:
                self.s3.put_object(Bucket=self.bucket, Key=message_key, Body=body.encode(),
                                   ContentType="application/json")
                break
            except Exception:  # sent and stored: only a redelivery would send it again
                if attempt + 1 < self.MARK_ATTEMPTS:
                    self.sleep(self.backoff_seconds * 2**attempt)
        else:
            logger.warning("dead letter sent but not marked", extra={"dead_letter_id": letter_id})
        return {"dead_letter_id": letter_id, "sent": True}

    def message(self, letter_id: str, rejection: Rejection, payload_key: str) -> str:
        """The queue message: everything but the payload, then as much of it as fits."""
        reason_bytes = _size(_sqs_text(rejection.reason[:MAX_REASON_ATTRIBUTE]))
        attributes = len("reason") + len("dead_letter_id") + 2 * len("String") + len(letter_id)
        budget = self.max_message_bytes - MARGIN_BYTES - attributes - reason_bytes
        try:
            text, encoding = rejection.payload.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(rejection.payload).decode(), "base64"
        body: dict[str, Any] = {
            "dead_letter_id": letter_id,
            "reason": rejection.reason,
            "model": self.model,
            "function": self.function,
            "rejected_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "source": dict(rejection.source),
            "payload_location": {"bucket": self.bucket, "key": payload_key,
                                 "uri": f"s3://{self.bucket}/{payload_key}"},
            "payload_bytes": len(rejection.payload),
            "payload_sha256": hashlib.sha256(rejection.payload).hexdigest(),
            "payload_encoding": encoding,
            "payload_truncated": False,
            "payload": "",
        }
        if _size(_encoded(body)) > budget:  # a reason of hundreds of KiB: cut it too
            body["reason"] = rejection.reason[:4096]
        room = budget - _size(_encoded(body))
        cut = text
        while cut and _size(_encoded({"p": cut})) - 6 > room:
            # Shrink in proportion to the overshoot; escapes make bytes per char vary.
            size = _size(_encoded({"p": cut})) - 6
            cut = cut[: max(0, int(len(cut) * room / size) - 1)]
        body["payload"] = cut
        body["payload_truncated"] = len(cut) < len(text)
        encoded = _encoded(body)
        if _size(encoded) > budget:  # unreachable by construction; never send what SQS refuses
            raise DeadLetterError(f"dead letter {letter_id} is {_size(encoded)} bytes, over "
                                  f"the budget of {budget}")
        return encoded

    def _exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except Exception as error:
            code = str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True
