"""The dead-letter message's bound, for payloads of every character class (issue 14.1).

The message is measured as SQS measures it (UTF-8 bytes of the body and the
attributes) against 262,144 bytes, the smallest ``MaximumMessageSize`` a
queue that does not set it has, and must hold only the characters SQS
accepts; the payload is kept whole in S3. moto counts characters and
accepts any, so the bound and the characters are checked here.
"""

from __future__ import annotations

import json
import re

import boto3
import pytest
from mdlc_core.dead_letters import DeadLetters, Rejection
from moto import mock_aws

SQS_CHARACTERS = re.compile("^[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*$")

PAYLOADS = {
    "180,000 é": ("é" * 180_000).encode(),
    "90,000 emoji": ("\U0001f600" * 90_000).encode(),
    "quotes and backslashes": ('"\\' * 200_000).encode(),
    "control characters": ("\x01\x1f" * 150_000).encode(),
    "characters SQS refuses": ("\ufffe\uffff" * 100_000).encode(),
    "not UTF-8": b"\xff\xfe" * 300_000,
    "small": b'{"order_id": "o1"}',
}


@pytest.fixture
def letters(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        sqs, s3 = boto3.client("sqs"), boto3.client("s3")
        queue = sqs.create_queue(QueueName="dlq")["QueueUrl"]
        s3.create_bucket(Bucket="raw")
        yield DeadLetters(sqs=sqs, s3=s3, queue_url=queue, bucket="raw",
                          prefix="dead-letters/fraud/stream-consumer/", model="fraud",
                          function="stream-consumer"), sqs, s3, queue


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_every_payload_fits_the_queue_and_is_kept_whole(letters, kind):
    sink, sqs, s3, queue = letters
    payload = PAYLOADS[kind]
    source = {"event_source_arn": "arn:aws:kinesis:us-east-1:1:stream/s", "sequence_number": "7"}
    reason = f"order_amount must be a number, got {payload[:300_000].decode('utf-8', 'replace')!r}"

    assert sink.send(Rejection(reason, payload, source))["sent"] is True
    assert sink.send(Rejection(reason, payload, source))["sent"] is False  # once per record

    (message,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10,
                                     MessageAttributeNames=["All"])["Messages"]
    body, attributes = message["Body"], message["MessageAttributes"]
    size = len(body.encode()) + sum(len(n.encode()) + len(a["DataType"].encode())
                                    + len(a["StringValue"].encode())
                                    for n, a in attributes.items())
    assert size <= 262_144
    assert SQS_CHARACTERS.match(body)
    letter = json.loads(body)
    where = letter["payload_location"]
    assert s3.get_object(Bucket=where["bucket"], Key=where["key"])["Body"].read() == payload
    assert letter["payload_bytes"] == len(payload)
    assert letter["payload_truncated"] is (len(payload) > 1000)
    assert letter["reason"].startswith("order_amount must be a number")
    if letter["payload_encoding"] == "utf-8":
        assert payload.decode().startswith(letter["payload"])
    else:
        assert kind == "not UTF-8"
