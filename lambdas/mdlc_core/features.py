"""Feature engineering: one definition, the batch engines and an incremental engine.

Windows are whole UTC days. An aggregate with ``window_days = N`` read *as of*
day ``D`` covers the events whose timestamp falls on one of the N days
``D-N+1 .. D`` (both ends included), i.e. timestamps in
``(end_of(D) - N days, end_of(D)]``. Every engine uses this rule, so they
give the same numbers for the same events (see docs/features.md).

Three forms:

* as of a day (the batch table batch inference scores): one row per entity
  (``data.entity_key``), aggregates over the window ending that day, raw
  columns taken from the entity's latest event on or before that day, then
  expressions in declared order. The features compiled to SQL compute it
  (:func:`mdlc_core.sql.features.as_of`; ``entity_table`` adds the model's
  raw inputs, ``FeatureSet.inputs``, from the same latest event), on DuckDB
  or on Spark; ``mdlc features`` prints it.
* as of each event (the training rows): the window ending on the event's
  day, restricted to events at or before it in (timestamp, event id) order,
  the event included, so no future event leaks into a row, and it is exactly
  what online serving reads for an event (:func:`rows_as_of_events`).
  :func:`mdlc_core.sql.features.per_event`; ``training_table`` adds the
  event's timestamp, label and raw model inputs.
* :class:`IncrementalEngine` - per-entity day buckets and the newest events
  in a small store (memory, or DynamoDB through :class:`DynamoDBStore`),
  updated in constant work per event and exactly once per event id; read
  as of a day (the entity row) or as of each event of a batch
  (:func:`rows_as_of_events`, the per-event row, which the stream consumer
  scores).

The hand-written NumPy batch engine (``compute_batch``, ``entity_table``,
``compute_per_event``, ``training_table`` here) was retired (issue #18):
the SQL engines are the batch engines, held to its recorded answers in the
tests.

Null handling, the same everywhere: null or non-finite values do not
contribute to sum/mean/min/max; ``count`` without a column counts events,
with a column counts its non-null values; the sum of nothing is 0, the
mean/min/max of nothing is null; an expression that divides by zero or
reads a null is null.
"""

# One idea per module (issue #17): the definition and the helpers every engine
# shares, the incremental engine, the DynamoDB store. Every name stays importable from
# here, where the handlers and teams' code import it.
from .batch_features import *  # noqa: F403
from .batch_features import EPOCH, FeatureError, FutureEvent, MalformedEvent  # noqa: F401
from .feature_store import *  # noqa: F403
from .incremental_features import *  # noqa: F403
