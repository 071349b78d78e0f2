"""Where moto's work grows with everything stored so far, the same answers in less work.

A 28-day simulation sends tens of thousands of stream records and queue
messages, and starts about a hundred executions of a few large state
machines; three of moto's code paths cost time in proportion to what is
already stored, or repeat work whose input never changes:

* Kinesis ``PutRecord(s)``: moto finds a shard's newest sequence number by
  listing every record's (``list(records)[-1]``) for each record put; here
  the shard's ordered dict gives its first and last key directly;
* SQS ``SendMessage``: moto reads the queue's ``attributes`` to learn whether
  it deduplicates by content, which counts every message of the queue
  (visible, in flight, delayed) on each send. The attribute exists only on a
  FIFO queue, so while a message is sent to a standard queue its
  ``attributes`` are not computed (they would not contain it);
* the ASL parser: moto parses a state machine's definition with ANTLR (in
  Python) on every execution. The syntax tree of a definition is cached; the
  evaluation components are still built from it for each execution (they
  hold an execution's state), so every execution runs on its own;
* JSONPath: the interpreter parses each ``InputPath``, ``ResultPath`` and
  ``$``-parameter with jsonpath-ng (a PLY parser built per call) every time
  a state runs; the parsed paths, immutable trees whose ``find`` and
  ``update`` work on the data they are given, are cached by their text.

Nothing here changes what moto answers or checks. Each patch is applied
only to the moto functions it was written against (their source is
compared with the pinned release's, by hash) and fails loudly otherwise,
like :mod:`.stepfunctions`' patches; ``tests/test_local_runtime.py``
compares the patched answers with moto's own.
"""

from __future__ import annotations

import hashlib
import inspect
import threading
from collections.abc import Callable
from typing import Any

from .stepfunctions import MotoVersionError

#: sha256 (first 16 hex digits) of the moto 5.2.5 functions the patches rely on.
_SOURCES = {
    "moto.kinesis.models.Shard.get_max_sequence_number": "eff48df162f5a63d",
    "moto.kinesis.models.Shard.get_min_sequence_number": "acae970512147e4e",
    "moto.sqs.models.SQSBackend.send_message": "bf161af09a9e6b86",
    "moto.sqs.models.SQSBackend._validate_message": "39cb57c19e596164",
    "moto.sqs.models.Queue.add_message": "f27c9231c1f20433",
    "moto.stepfunctions.parser.asl.parse.asl_parser.AmazonStateLanguageParser.parse":
        "a59a7d18760fb22e",
}

_INSTALLED = False
_LOCK = threading.Lock()


def source_digest(function: Callable[..., Any]) -> str:
    """The first 16 hex digits of the sha256 of a function's source."""
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]


def _check(name: str, function: Any) -> None:
    expected = _SOURCES[name]
    found = source_digest(function.fget if isinstance(function, property) else function)
    if found != expected:
        raise MotoVersionError(
            f"{name} is not the moto 5.2.5 function mdlc_constructs/local/moto_speedups.py "
            f"was written against (source digest {found}, expected {expected}): re-check "
            "the patch against the installed moto")


def install() -> None:
    """Apply the patches (once per process; see the module docstring)."""
    global _INSTALLED
    with _LOCK:
        if _INSTALLED:
            return
        _kinesis_sequence_bounds()
        _sqs_standard_queue_sends()
        _cached_asl_syntax_trees()
        _cached_json_paths()
        _INSTALLED = True


def _kinesis_sequence_bounds() -> None:
    """A shard's first and last sequence numbers without listing its records."""
    from moto.kinesis.models import Shard

    _check("moto.kinesis.models.Shard.get_max_sequence_number", Shard.get_max_sequence_number)
    _check("moto.kinesis.models.Shard.get_min_sequence_number", Shard.get_min_sequence_number)

    def get_min_sequence_number(self: Any) -> int:
        return next(iter(self.records), 0)

    def get_max_sequence_number(self: Any) -> int:
        return next(reversed(self.records), 0)

    Shard.get_min_sequence_number = get_min_sequence_number  # type: ignore[method-assign]
    Shard.get_max_sequence_number = get_max_sequence_number  # type: ignore[method-assign]


def _sqs_standard_queue_sends() -> None:
    """``SendMessage`` to a standard queue without counting its messages.

    In moto 5.2.5, ``send_message`` (with ``_validate_message`` and
    ``Queue.add_message``) reads a queue's ``attributes`` only for
    ``.get("ContentBasedDeduplication")``, and only a FIFO queue's attributes
    hold that key: for a standard queue the answer is None whether the
    attributes are computed or not. While a thread sends to a standard queue,
    that queue's ``attributes`` are therefore the empty dict.
    """
    from moto.sqs.models import Queue, SQSBackend

    _check("moto.sqs.models.SQSBackend.send_message", SQSBackend.send_message)
    _check("moto.sqs.models.SQSBackend._validate_message", SQSBackend._validate_message)  # noqa: SLF001
    _check("moto.sqs.models.Queue.add_message", Queue.add_message)
    attributes = Queue.__dict__.get("attributes")
    if not isinstance(attributes, property) or attributes.fget is None:
        raise MotoVersionError("moto.sqs.models.Queue.attributes is no longer a property")
    computed = attributes.fget
    sending = threading.local()
    original = SQSBackend.send_message

    def queue_attributes(self: Any) -> dict[str, Any]:
        if getattr(sending, "queue", None) is self and not self.fifo_queue:
            return {}
        return computed(self)

    def send_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        previous = getattr(sending, "queue", None)
        sending.queue = self.queues.get(queue_name)
        try:
            return original(self, queue_name, *args, **kwargs)
        finally:
            sending.queue = previous

    Queue.attributes = property(queue_attributes)  # type: ignore[assignment,method-assign]
    SQSBackend.send_message = send_message  # type: ignore[method-assign]


def _cached_asl_syntax_trees() -> None:
    """Parse each state machine definition once; build its components per execution."""
    from moto.stepfunctions.parser.asl.parse import asl_parser
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    parser = asl_parser.AmazonStateLanguageParser
    name = "moto.stepfunctions.parser.asl.parse.asl_parser.AmazonStateLanguageParser.parse"
    _check(name, parser.parse)
    if getattr(asl_parser, "Preprocessor", None) is not Preprocessor:
        raise MotoVersionError("asl_parser no longer preprocesses with Preprocessor")
    original = parser.parse
    trees: dict[str, Any] = {}
    lock = threading.Lock()

    def parse(definition: str) -> tuple[Any, Any]:
        with lock:
            tree = trees.get(definition)
        if tree is not None:
            return Preprocessor().visit(tree), tree
        # A definition with syntax errors raises here, every time, as before.
        program, tree = original(definition)
        with lock:
            trees[definition] = tree
        return program, tree

    parser.parse = staticmethod(parse)  # type: ignore[method-assign]


def _cached_json_paths() -> None:
    """jsonpath-ng's parse, memoized by path text, where the interpreter calls it."""
    import functools

    import jsonpath_ng
    import jsonpath_ng.ext
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.utils import json_path

    for module, parse in ((json_path, jsonpath_ng.ext.parse), (result_path, jsonpath_ng.parse)):
        if getattr(module, "parse", None) is not parse:
            raise MotoVersionError(f"{module.__name__} no longer parses paths with "
                                   f"{parse.__module__}.parse; re-check the patch")
        module.parse = functools.lru_cache(maxsize=4096)(parse)  # type: ignore[attr-defined]
