"""Who is calling: the role (or service) each local call is made as.

A Lambda handler calls as its function's role, a state machine's tasks as
the machine's role, an EventBridge target as the target's role (or as
``events.amazonaws.com``). The local runtime runs all of them in one
process, so the caller is kept per thread and passed on to the threads a
caller starts: a handler's thread pool, and the Map and Parallel branches
of moto's interpreter. Calls made with no caller (the simulation's own
driver, which plays the outside world, and the runtime's raw clients) are
not checked.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any


class Principals:
    """The acting principal per thread, inherited by the threads it starts."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._original_start: Any = None
        self._original_logic: Any = None
        #: Notified each time an execution's interpreter thread ends (``ended`` counts
        #: them), so a waiter sleeps until one ends instead of polling.
        self.execution_ended = threading.Condition()
        self.ended = 0

    def current(self) -> str | None:
        stack = getattr(self._local, "stack", None)
        return stack[-1][0] if stack else None

    def source(self) -> str | None:
        """For a service principal: the resource it acts for (``aws:SourceArn``)."""
        stack = getattr(self._local, "stack", None)
        return stack[-1][1] if stack else None

    @contextlib.contextmanager
    def acting_as(self, principal: str | None, *, source: str | None = None) -> Iterator[None]:
        """Calls in this block (and threads started in it) are made as ``principal``
        (for a service principal, on behalf of ``source``); None keeps the current one
        (a built-in stand-in has no role of its own)."""
        if principal is None:
            yield
            return
        stack = self._local.__dict__.setdefault("stack", [])
        stack.append((principal, source))
        try:
            yield
        finally:
            stack.pop()

    def install(self) -> None:
        """Pass the caller on to new threads, run each execution as its machine's role,
        and notify :attr:`execution_ended` as each execution's thread ends."""
        from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

        principals = self
        self._original_start = original_start = threading.Thread.start

        def start(thread: threading.Thread) -> None:
            principal, source = principals.current(), principals.source()
            if principal is not None:
                run = thread.run

                def run_as() -> None:
                    with principals.acting_as(principal, source=source):
                        run()

                thread.run = run_as  # type: ignore[method-assign]
            original_start(thread)

        threading.Thread.start = start  # type: ignore[method-assign]
        self._original_logic = original_logic = ExecutionWorker._execution_logic  # noqa: SLF001

        def execution_logic(worker: Any) -> None:
            role = worker._evaluation_details.aws_execution_details.role_arn  # noqa: SLF001
            try:
                with principals.acting_as(role or None):
                    original_logic(worker)
            finally:
                with principals.execution_ended:
                    principals.ended += 1
                    principals.execution_ended.notify_all()

        ExecutionWorker._execution_logic = execution_logic  # type: ignore[method-assign]  # noqa: SLF001

    def uninstall(self) -> None:
        if self._original_start is not None:
            threading.Thread.start = self._original_start  # type: ignore[method-assign]
            self._original_start = None
        if self._original_logic is not None:
            from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

            ExecutionWorker._execution_logic = self._original_logic  # type: ignore[method-assign]  # noqa: SLF001
            self._original_logic = None
