"""Feature engineering: one definition, a batch engine and an incremental engine.

Windows are whole UTC days. An aggregate with ``window_days = N`` read *as of*
day ``D`` covers the events whose timestamp falls on one of the N days
``D-N+1 .. D`` (both ends included), i.e. timestamps in
``(end_of(D) - N days, end_of(D)]``. Both engines use this rule, so they
give the same numbers for the same events (see docs/features.md).

Three forms:

* :func:`compute_batch` - one row per entity (``data.entity_key``) as of a
  day: aggregates over the window ending that day, raw columns taken from
  the entity's latest event on or before that day, then expressions in
  declared order. Used by ``mdlc features``; :func:`entity_table` adds the
  model's raw inputs (``FeatureSet.inputs``) from the same latest event and
  is the per-entity table batch inference scores.
* :func:`compute_per_event` - every event's features as of the event
  itself: the window ending on the event's day, restricted to events at or
  before it in (timestamp, event id) order, the event included. Used for
  training rows, so no future event leaks into a row, and it is exactly
  what online serving reads for an event (:func:`rows_as_of_events`).
  :func:`training_table` adds the event's timestamp, label and raw model
  inputs (``FeatureSet.inputs``) and is the per-event table training reads.
* :class:`IncrementalEngine` - per-entity day buckets and the newest events
  in a small store (memory, or DynamoDB through :class:`DynamoDBStore`),
  updated in constant work per event and exactly once per event id; read
  as of a day (the :func:`compute_batch` row) or as of each event of a batch
  (:func:`rows_as_of_events`, the :func:`compute_per_event` row, which the
  stream consumer scores).

Null handling, the same everywhere: null or non-finite values do not
contribute to sum/mean/min/max; ``count`` without a column counts events,
with a column counts its non-null values; the sum of nothing is 0, the
mean/min/max of nothing is null; an expression that divides by zero or
reads a null is null.
"""

# One idea per module (issue #17): the definition and the batch engine, the
# incremental engine, the DynamoDB store. Every name stays importable from
# here, where the handlers and teams' code import it.
from .batch_features import *  # noqa: F403
from .batch_features import EPOCH, FeatureError, FutureEvent, MalformedEvent  # noqa: F401
from .feature_store import *  # noqa: F403
from .feature_store import _from_dynamo, _to_dynamo  # noqa: F401
from .incremental_features import *  # noqa: F403
