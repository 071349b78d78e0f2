"""Lambda functions run in process, from their synthesized code assets.

Each function is loaded from its asset folder in ``cdk.out`` (the handler,
``mdlc_core`` and ``mdlc_config.json``, exactly what ``cdk deploy`` uploads)
once, like a warm execution environment, under its own module name. An
invocation runs with the function's environment variables from the
template, ``LAMBDA_TASK_ROOT`` at its asset, a Lambda context with its
timeout, and its output captured to the function's log. Invocations are
serialized: the environment of a process is shared, and a function sees only
its own variables while it runs.

A handler's exception becomes Lambda's error payload (``errorType``,
``errorMessage``), so Step Functions sees the error name AWS would. A run
longer than the function's timeout is reported as ``Sandbox.Timedout``
after it ends (a thread cannot be stopped; docs/local.md). Packages an
asset vendors for Lambda's platform (DuckDB: ``mdlc_vendored.json``) are
imported from this machine's environment instead: the asset's build is for
Lambda's Python and architecture, not necessarily this one's.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from .hooks import request_id

#: Variables the Lambda runtime sets; the template's own come on top.
_RUNTIME_ENVIRONMENT = {
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.14",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_DEV": "false",
}

#: A local function implemented in Python rather than loaded from an asset
#: (the SageMaker stand-ins behind rewritten ``.sync`` states).
Builtin = Callable[[Any, Any], Any]


class FunctionError(Exception):
    """An error to report as the function's ``errorType`` (e.g. ``States.TaskFailed``)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


@dataclass
class LocalFunction:
    name: str
    arn: str
    logical_id: str
    stack: str
    handler: str  # "index.handler"
    code: Path | None
    environment: dict[str, str]
    timeout: int
    memory: int
    role_arn: str | None
    builtin: Builtin | None = None
    module: ModuleType | None = None
    log: TextIO = field(default_factory=io.StringIO)
    invocations: int = 0
    errors: int = 0


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object handlers use."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str = field(default_factory=request_id)
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class Invocation:
    function: str
    status: int
    error: str | None
    payload: bytes
    seconds: float


class LambdaRuntime:
    """The functions of the deployed stacks, by name and ARN."""

    def __init__(self, log_dir: Path | None = None) -> None:
        self.functions: dict[str, LocalFunction] = {}
        self._lock = threading.RLock()
        self.log_dir = log_dir
        self.history: list[Invocation] = []
        #: Set by the runtime: who calls (handlers call as their role), and the checks.
        self.principals: Any = None
        self.authorizer: Any = None

    def register(self, function: LocalFunction) -> None:
        self.functions[function.name] = function
        self.functions[function.arn] = function

    def get(self, name_or_arn: str) -> LocalFunction:
        key = name_or_arn.split(":")[6] if name_or_arn.startswith("arn:") else name_or_arn
        # Qualified ARNs (…:function:name:alias) and names both resolve.
        function = self.functions.get(key) or self.functions.get(name_or_arn)
        if function is None:
            raise KeyError(name_or_arn)
        return function

    @contextlib.contextmanager
    def _environment(self, function: LocalFunction) -> Iterator[None]:
        changes = {**_RUNTIME_ENVIRONMENT, **function.environment,
                   "AWS_LAMBDA_FUNCTION_NAME": function.name,
                   "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory),
                   "MDLC_CONFIG_FILE": None,
                   "LAMBDA_TASK_ROOT": str(function.code) if function.code else None}
        with scoped_environment(changes):
            yield

    @contextlib.contextmanager
    def _invocation(self, function: LocalFunction) -> Iterator[None]:
        _clear_config_cache()
        stdout, stderr = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = function.log
        try:
            yield
        finally:
            sys.stdout, sys.stderr = stdout, stderr
            _clear_config_cache()

    @contextlib.contextmanager
    def _as_role(self, function: LocalFunction) -> Iterator[None]:
        """The handler's calls are its role's, which Lambda must be trusted to assume."""
        if self.principals is None or not function.role_arn:
            yield
            return
        if self.authorizer is not None:
            self.authorizer.check_assume(function.role_arn, "lambda.amazonaws.com",
                                         source=function.arn)
        with self.principals.acting_as(function.role_arn):
            yield

    def _load(self, function: LocalFunction) -> ModuleType:
        if function.module is not None:
            return function.module
        assert function.code is not None
        module_file, _, _ = function.handler.rpartition(".")
        path = function.code / f"{module_file.replace('.', '/')}.py"
        module_name = f"mdlc_local_{function.stack}_{function.logical_id}".replace("-", "_")
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise FunctionError("Runtime.ImportModuleError", f"no handler module at {path}")
        module = importlib.util.module_from_spec(spec)
        prefer_host_packages(function.code)
        sys.path.insert(0, str(function.code))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(function.code))
        function.module = module
        return module

    def invoke(self, name_or_arn: str, payload: bytes) -> Invocation:
        """Run the function on ``payload`` (JSON bytes), as a synchronous invoke."""
        function = self.get(name_or_arn)
        with self._lock, self._environment(function), self._invocation(function), \
                self._as_role(function):
            started = time.monotonic()
            context = LambdaContext(function.name, function.arn, function.memory,
                                    function.timeout)
            event = json.loads(payload or b"null")
            function.invocations += 1
            error: str | None = None
            try:
                if function.builtin is not None:
                    result = function.builtin(event, context)
                else:
                    module = self._load(function)
                    handler = getattr(module, function.handler.rpartition(".")[2])
                    result = handler(event, context)
                body = json.dumps(result, default=str).encode()
            except FunctionError as failure:
                error = "Unhandled"
                body = json.dumps({"errorType": failure.error_type,
                                   "errorMessage": failure.message}).encode()
            except Exception as failure:  # every handler error is reported, as Lambda does
                error = "Unhandled"
                body = json.dumps({
                    "errorType": type(failure).__name__,
                    "errorMessage": str(failure),
                    "stackTrace": traceback.format_exception(failure)[-6:],
                }).encode()
                print(traceback.format_exc(), file=function.log)
            seconds = time.monotonic() - started
            if error is None and seconds > function.timeout:
                error = "Unhandled"
                body = json.dumps({
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"RequestId: {context.aws_request_id} Error: Task timed "
                                    f"out after {function.timeout:.2f} seconds",
                }).encode()
            if error:
                function.errors += 1
            invocation = Invocation(function.name, 200, error, body, seconds)
            self.history.append(invocation)
            return invocation

    def write_logs(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        seen: set[str] = set()
        for function in self.functions.values():
            if function.name in seen:
                continue
            seen.add(function.name)
            text = function.log.getvalue()
            if text:
                (directory / f"{function.name}.log").write_text(text)


def prefer_host_packages(code: Path) -> None:
    """Import, from this machine's environment, the modules the asset at ``code``
    vendors for Lambda (its ``mdlc_vendored.json``), before the asset goes on
    ``sys.path``: once imported, the handler's ``import duckdb`` is the host's.

    Lambda's wheel is built for its Python and architecture (DuckDB 2: CPython
    3.12+ on manylinux x86_64), which this machine need not be; the host's
    DuckDB, installed with the library (``constraints.txt`` pins the version
    the Lambda carries), runs the same SQL. A host without the module fails
    the invocation naming it, not with the foreign binary's import error.
    """
    manifest = code / "mdlc_vendored.json"
    if not manifest.is_file():
        return
    vendored = json.loads(manifest.read_text())
    # The distributions' own modules (duckdb brings _duckdb with it); their
    # optional extras (adbc_driver_duckdb) are not imported by the handlers.
    for name in (requirement.partition("==")[0] for requirement in vendored["packages"]):
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise FunctionError(
                "Runtime.ImportModuleError",
                f"the asset {code} vendors {name} ({', '.join(vendored['packages'])}) for "
                f"{vendored['platform']}; the local execution imports it from this "
                f"environment, which lacks it: pip install the library ({error})") from error


@contextlib.contextmanager
def scoped_environment(changes: dict[str, str | None]) -> Iterator[None]:
    """Set (or, for None, remove) only these variables, and put them back after.

    Never clears the environment: the Step Functions interpreter's threads
    create boto3 clients meanwhile, which read the region and credentials
    from it.
    """
    saved = {name: os.environ.get(name) for name in changes}
    for name, value in changes.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _clear_config_cache() -> None:
    # The deployed config is cached per execution environment; here one process
    # hosts every function, so each invocation reads its own function's file.
    module = sys.modules.get("mdlc_core.runtime_config")
    if module is not None:
        module.load_config.cache_clear()
