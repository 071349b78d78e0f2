"""Batch inference around the SageMaker transform job: its input, then rules and actions per part.

Two operations, picked by ``event["step"]``:

``prepare_input``
    in:  ``{"step", "date", "entities_key"}`` (``entities_key``: the day's
    ``entities.parquet`` in FEATURES_BUCKET, written by the features step
    with ``mdlc_core.sql.features.entity_table``: one row per entity, its raw
    model inputs from its latest event on or before the day, and its
    features). Writes the transform input as CSV parts without a header,
    every column of ``ModelSpec.feature_columns`` in training order (a null
    value is an empty field, which XGBoost treats as missing; a column the
    table lacks is an error, never a silently empty input), ``PART_ROWS``
    rows each, to ``batch-input/<model>/dt=<date>/transform/part-NNNNN.csv``
    in PREDICTIONS_BUCKET, and each part's entity ids in the sibling folder
    ``batch-input/<model>/dt=<date>/ids/part-NNNNN.ids`` (one per line, the
    same order: a transform job keeps line order within an object, so line
    *i* of the input, of the ids and of the output are the same entity). The
    ids are not under the transform's input prefix because a transform job
    reads every object under its S3Prefix: an ids file there would be scored
    as input and fail the job. Objects a previous run of the day left under
    either folder (a rerun with fewer parts) are deleted for the same reason.
    out: ``{"input_prefix", "output_prefix", "input_key_prefix",
    "output_key_prefix", "ids_key_prefix", "parts", "rows"}`` (S3 URIs and
    the key prefixes; the transform's output is
    ``predictions/<model>/dt=<date>/transform/``, a folder of its own).
``decide``
    in:  ``{"step", "date", "Key", "model_version"}`` (``Key``: one transform
    output object, ``predictions/<model>/dt=<date>/transform/part-NNNNN.csv.out``
    (the transform names it after its input object, ``.out`` appended), as
    the Distributed Map's S3 item reader lists it; ``model_version``: the
    approved model package ARN the transform ran). Joins each score with its
    entity id and its input row (the features the model saw, as the online
    path passes them), applies ``mdlc_core.decisions`` (event id
    ``<date>#<entity id>``), performs each decision's action through
    ``mdlc_core.actions.Dispatcher`` (the same targets as the client
    integration), then writes the decisions as JSON lines to
    ``predictions/<model>/dt=<date>/decisions/part-NNNNN.jsonl`` and the
    same decisions as monitoring's input (``mdlc_core.predictions``: Parquet,
    ``event_id``, ``score``, ``prediction_ts`` = the decision time,
    ``model_version``, ``action`` and the feature columns it scored) to
    ``predictions/<model>/dt=<date>/scored/part-NNNNN.parquet``, the only
    folder of the day the monitor reads (it never reads the ``.out``).
    out: ``{"key", "predictions_key", "rows", "actions": {action: count}}``.

Exactly once: an action with a side effect (any kind but ``log``) is
performed through ``mdlc_core.actions.ActionLedger`` in IDEMPOTENCY_TABLE,
keyed ``mdlc-batch-action-<model>#<date>#<entity id>#<model version>``: a
conditional put claims the key before acting, the action runs, an update
records it done with the decision (and the receipt). A retried map item (or
a rerun of the day with the same model version) finds the key done and
returns the stored decision without acting again; a failure of any of the
three calls fails only that decision (the claim of a failed action is
released, so the retry acts; a performed action whose completion could not
be written is completed by the retry without acting). A key whose claimant
ended without recording the outcome is never acted on again: it is counted
``unconfirmed`` in the part's result and left out of its decisions (retrying
cannot tell whether it acted). The decisions and predictions objects are
written last, from the stored decisions, so they always record what was
acted on (a retry rewrites both whole, under the same keys). When any action
fails, the part raises ``ActionsIncomplete`` after trying all the others (the
workflow retries the part; acted entities are skipped).

Environment: FEATURES_BUCKET, PREDICTIONS_BUCKET, MODEL_NAME; for actions
IDEMPOTENCY_TABLE (needed when an action has a side effect),
ACTION_TOPIC_ARN, ACTION_QUEUE_URL, ACTION_EVENT_BUS_NAME (the kinds the spec
uses), ACTION_IDEMPOTENCY_SECONDS (default 8 days), ACTION_CONCURRENCY
(actions in flight per part, default 16); MODEL_VERSION (optional override
of the event's ``model_version``).
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config
from mdlc_core.actions import ActionLedger, Clients, Dispatcher, Outcome
from mdlc_core.decisions import Decision, RuleSet
from mdlc_core.layout import Layout
from mdlc_core.predictions import day_prefix, scored_prefix, to_parquet
from mdlc_core.runtime_config import load_config
from mdlc_core.scoring import feature_columns, parse_scores

logger = Logger(service="batch_decisions")
s3 = boto3.client("s3")
CONFIG = load_config()
MODEL = os.environ.get("MODEL_NAME", CONFIG.get("name", "model"))
PART_ROWS = 100_000
CLIENTS = Clients(factory=lambda service: boto3.client(
    service, config=Config(retries={"mode": "standard"}, max_pool_connections=64)))


class ActionsIncomplete(RuntimeError):
    """Some actions of a part failed; the others acted. Retrying the part is safe."""


# --- prepare_input ------------------------------------------------------------------


def input_key_prefix(date: str) -> str:
    """The transform job's input: CSV parts and nothing else (it reads every object)."""
    return Layout(MODEL).transform_input(date)


def ids_key_prefix(date: str) -> str:
    """Each part's entity ids, beside the transform input, never inside it."""
    return Layout(MODEL).transform_ids(date)


def output_key_prefix(date: str) -> str:
    """The transform's raw output (``part-NNNNN.csv.out``), in its own folder of the
    day: the Distributed Map lists only it, and the monitor never reads it (its
    input is the day's ``scored/`` folder, ``mdlc_core.predictions``)."""
    return f"{day_prefix(MODEL, date)}transform/"


def _delete_others(bucket: str, prefix: str, keep: set[str]) -> None:
    """Delete what a previous run of the day left under ``prefix`` (not in ``keep``)."""
    stale = [
        {"Key": item["Key"]}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
        if item["Key"] not in keep
    ]
    for start in range(0, len(stale), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": stale[start:start + 1000],
                                                 "Quiet": True})


def prepare_input(event: dict[str, Any]) -> dict[str, Any]:
    import pyarrow.parquet as pq

    date, key = event["date"], event["entities_key"]
    body = s3.get_object(Bucket=os.environ["FEATURES_BUCKET"], Key=key)["Body"].read()
    table = pq.read_table(io.BytesIO(body))
    entity = CONFIG["data"]["entity_key"]
    columns = feature_columns(CONFIG)
    missing = [c for c in [entity, *columns] if c not in table.column_names]
    if missing:
        # An absent input column would be scored as missing for every entity.
        raise ValueError(f"s3://{os.environ['FEATURES_BUCKET']}/{key} has no column(s) "
                         f"{missing}; the model's inputs are {columns} (features step: "
                         "mdlc_core.sql.features.entity_table)")
    ids = [str(v) for v in table.column(entity).to_pylist()]
    values = {c: table.column(c).to_pylist() for c in columns}
    bucket = os.environ["PREDICTIONS_BUCKET"]
    prefix, ids_prefix = input_key_prefix(date), ids_key_prefix(date)
    parts = 0
    written: set[str] = set()
    for start in range(0, len(ids), PART_ROWS):
        end = min(start + PART_ROWS, len(ids))
        rows = (
            ",".join("" if values[c][i] is None else repr(float(values[c][i])) for c in columns)
            for i in range(start, end)
        )
        name = f"part-{parts:05d}"
        s3.put_object(Bucket=bucket, Key=f"{prefix}{name}.csv",
                      Body=("\n".join(rows) + "\n").encode(), ContentType="text/csv")
        s3.put_object(Bucket=bucket, Key=f"{ids_prefix}{name}.ids",
                      Body=("\n".join(ids[start:end]) + "\n").encode())
        written |= {f"{prefix}{name}.csv", f"{ids_prefix}{name}.ids"}
        parts += 1
    for folder in (prefix, ids_prefix):
        _delete_others(bucket, folder, written)
    output = output_key_prefix(date)
    logger.info("transform input written", extra={"rows": len(ids), "parts": parts})
    return {"input_prefix": f"s3://{bucket}/{prefix}", "input_key_prefix": prefix,
            "output_prefix": f"s3://{bucket}/{output}", "output_key_prefix": output,
            "ids_key_prefix": ids_prefix, "parts": parts, "rows": len(ids)}


# --- decide ---------------------------------------------------------------------------


def parse_inputs(text: str, columns: Sequence[str]) -> list[dict[str, float | None]]:
    """The transform's input rows back as ``{column: value}`` (empty field: None)."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line:
            continue
        fields = line.split(",")
        if len(fields) != len(columns):
            raise ValueError(f"input line {number} has {len(fields)} fields, expected "
                             f"{len(columns)} ({columns})")
        rows.append({c: (float(v) if v else None) for c, v in zip(columns, fields, strict=True)})
    return rows


@cache
def rules() -> RuleSet:
    return RuleSet.from_config(CONFIG)


@cache
def dispatcher() -> Dispatcher:
    # The same targets as the client integration, from the same environment.
    return Dispatcher.from_config(CONFIG, CLIENTS)


@cache
def ledger() -> ActionLedger:
    """The action ledger, built on first use (a spec whose actions are all ``log``
    needs no table)."""
    table = os.environ.get("IDEMPOTENCY_TABLE")
    if not table:
        raise RuntimeError("IDEMPOTENCY_TABLE is not set; an action with a side effect "
                           "needs it so a retried part acts once")
    return ActionLedger(
        CLIENTS.get("dynamodb"), table, key_name="id", nest="decision",
        # A rerun of a recent day with the same model version must not act again.
        ttl_attribute="expiration",
        ttl_seconds=int(os.environ.get("ACTION_IDEMPOTENCY_SECONDS", 8 * 86_400)),
    )


def idempotency_key(date: str, entity_id: str, version: str) -> str:
    return f"{date}#{entity_id}#{version}"


def perform(decisions: Sequence[Decision], date: str, context: Any = None
            ) -> tuple[list[Decision], list[tuple[str, str]], list[str]]:
    """Perform each decision's action once; returns the decisions acted on (in
    order, as stored on first acting), the (event id, reason) of failures, and
    the event ids whose earlier outcome is unconfirmed (never acted on again)."""
    actions = dispatcher().actions
    acted: list[Decision | None] = list(decisions)
    pending = [i for i, d in enumerate(decisions)
               if getattr(actions.get(d.action), "kind", None) != "log"]
    if not pending:
        return list(decisions), [], []
    book = ledger()
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    lease = remaining() / 1000 + 10 if remaining is not None else 900.0

    def one(index: int) -> tuple[int, Outcome]:
        decision = decisions[index]
        key = idempotency_key(date, decision.entity_id or decision.event_id,
                              decision.model_version)
        return index, book.perform_once(f"mdlc-batch-action-{MODEL}#{key}",
                                        decision.to_record(),
                                        lambda: dispatcher().perform(decision),
                                        lease_seconds=lease)

    failures: list[tuple[str, str]] = []
    unconfirmed: list[str] = []
    workers = max(1, int(os.environ.get("ACTION_CONCURRENCY", "16")))
    with ThreadPoolExecutor(max_workers=min(workers, len(pending))) as pool:
        for index, outcome in pool.map(one, pending):
            event_id = decisions[index].event_id
            if outcome.status in ("acted", "already") and outcome.record:
                acted[index] = Decision.from_record(outcome.record)
                continue
            acted[index] = None
            if outcome.status == "unconfirmed":
                logger.error("action outcome unconfirmed; not performed again",
                             extra={"event_id": event_id, "reason": outcome.reason})
                unconfirmed.append(event_id)
            else:
                failures.append((event_id, f"{outcome.status}: {outcome.reason}"))
    return [d for d in acted if d is not None], failures, unconfirmed


def decide(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    bucket = os.environ["PREDICTIONS_BUCKET"]
    date, key = event["date"], event["Key"]
    # The transform names its output after the input object: part-NNNNN.csv.out.
    name = key.rsplit("/", 1)[-1].removesuffix(".out").removesuffix(".csv")
    prefix, ids_prefix = input_key_prefix(date), ids_key_prefix(date)
    ids = [line for line in _text(bucket, f"{ids_prefix}{name}.ids").splitlines() if line]
    columns = feature_columns(CONFIG)
    inputs = parse_inputs(_text(bucket, f"{prefix}{name}.csv"), columns)
    if len(inputs) != len(ids):
        raise ValueError(f"{prefix}{name}.csv: {len(inputs)} input rows for {len(ids)} "
                         f"entity ids in {ids_prefix}{name}.ids")
    scores = parse_scores(_text(bucket, key), len(ids))
    version = (os.environ.get("MODEL_VERSION") or event.get("model_version")
               or str(event.get("model") or "unknown"))
    counts: Counter[str] = Counter()
    decisions = []
    for entity_id, features, score in zip(ids, inputs, scores, strict=True):
        if score is None:
            counts["no_score"] += 1
            continue
        # The same inputs a rule sees online: every model input, in training order.
        decisions.append(rules().decide(f"{date}#{entity_id}", score, features, version,
                                        entity_id=entity_id))
    acted, failures, unconfirmed = perform(decisions, date, context)
    if failures:
        logger.error("actions failed", extra={"part": key, "failed": len(failures),
                                              "first": failures[0]})
        raise ActionsIncomplete(f"{len(failures)} of {len(decisions)} actions of {key} failed "
                                f"(first: {failures[0][0]}: {failures[0][1]}); the others "
                                "acted, and a retry acts only on these")
    counts.update(d.action for d in acted)
    if unconfirmed:
        counts["unconfirmed"] += len(unconfirmed)
    out_key = f"{day_prefix(MODEL, date)}decisions/{name}.jsonl"
    lines = [json.dumps(d.to_record(), separators=(",", ":")) for d in acted]
    # Last: the record of what was done, rewritten whole by a retry.
    s3.put_object(Bucket=bucket, Key=out_key, Body=("\n".join(lines) + "\n").encode(),
                  ContentType="application/x-ndjson")
    # Monitoring's input: the same decisions in its contract, in the day's
    # scored/ folder (the transform's .out beside it is not monitoring input).
    predictions_key = f"{scored_prefix(MODEL, date)}{name}.parquet"
    s3.put_object(Bucket=bucket, Key=predictions_key, Body=to_parquet(acted, columns),
                  ContentType="application/vnd.apache.parquet")
    logger.info("part decided", extra={"part": key, "actions": dict(counts)})
    return {"key": out_key, "predictions_key": predictions_key, "rows": len(ids),
            "actions": dict(counts)}


def _text(bucket: str, key: str) -> str:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()


STEPS: dict[str, Callable[..., dict[str, Any]]] = {"prepare_input": prepare_input,
                                                    "decide": decide}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    step = event.get("step", "")
    if step == "prepare_input":
        return prepare_input(event)
    if step == "decide":
        return decide(event, context)
    raise ValueError(f"unknown step {step!r}; expected one of {list(STEPS)}")
