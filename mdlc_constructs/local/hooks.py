"""Local service implementations, attached to boto3 through botocore's event system.

moto answers most calls. Where it cannot do what AWS does (Lambda without
Docker only echoes its payload; SageMaker jobs do not run; ``UpdateEndpoint``
is missing), a local implementation answers instead: :class:`ServiceHooks`
registers one ``before-call`` handler on boto3's default session, and a
handler that returns a response short-circuits the HTTP request, the public
way botocore offers (the same hook ``botocore.stub.Stubber`` uses). Every
client created from that session afterwards, the handlers' module-level
clients and moto's Step Functions interpreter included, goes through it.
"""

from __future__ import annotations

import io
import random
import threading
import uuid
from collections.abc import Callable
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.response import StreamingBody

#: A local operation: the call's API parameters -> its parsed response.
Operation = Callable[[dict[str, Any]], dict[str, Any]]
#: Told of a call that goes on to moto: (operation, the call's API parameters).
Observer = Callable[[str, dict[str, Any]], None]
#: Asked first about every call: (service, operation, parameters); raises ServiceError to refuse.
Guard = Callable[[str, str, dict[str, Any]], None]

_PARAMS_KEY = "mdlc_local_api_params"

#: Request ids of local answers: random UUIDs without a system call each
#: (``uuid.uuid4`` reads ``os.urandom``, which cost more than many a local answer).
_REQUEST_IDS = random.Random()


def request_id() -> str:
    """A version-4 UUID, as AWS's request ids are."""
    return str(uuid.UUID(int=_REQUEST_IDS.getrandbits(128), version=4))


class ServiceError(Exception):
    """Raised by a local operation: becomes the AWS error ``code`` with ``message``."""

    def __init__(self, code: str, message: str, *, status: int = 400,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.extra = extra or {}


def streaming(body: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(body), len(body))


class ServiceHooks:
    """Routes chosen operations (``("lambda", "Invoke")``) to local implementations."""

    def __init__(self) -> None:
        self._operations: dict[tuple[str, str], Operation] = {}
        self._observers: dict[str, list[Observer]] = {}
        #: Checks every call before anything answers it (the callers' permissions).
        self.guard: Guard | None = None
        self._session: boto3.Session | None = None
        self._local = threading.local()
        self.calls: list[tuple[str, str]] = []

    def add(self, service: str, operation: str, implementation: Operation) -> None:
        """``service`` is botocore's hyphenated service id (``sagemaker-runtime``)."""
        self._operations[(service, operation)] = implementation

    def observe(self, service: str, observer: Observer) -> None:
        """Call ``observer`` before each call of ``service`` that no local operation answers."""
        self._observers.setdefault(service, []).append(observer)

    def install(self) -> None:
        boto3.setup_default_session()
        session = boto3.DEFAULT_SESSION
        assert session is not None
        session.events.register("before-parameter-build", self._remember_params,
                                unique_id="mdlc-local-params")
        session.events.register("before-call", self._dispatch, unique_id="mdlc-local-call")
        session.events.register("creating-client-class", self._add_local_requests,
                                unique_id="mdlc-local-requests")
        self._session = session

    def _add_local_requests(self, class_attributes: dict[str, Any], base_classes: list[type],
                            **_: Any) -> None:
        """Clients skip building the HTTP request of a call answered locally.

        botocore validates and serializes every request before ``before-call``;
        for a call a local operation answers, the serialized body is never
        read, and serializing a DynamoDB transaction of 30-day aggregates costs
        more than answering it. The parameters are still validated as botocore
        validates them (unless the client turned validation off).
        """
        hooks = self

        class LocalRequests:
            def _convert_to_request_dict(self: Any, api_params: dict[str, Any],
                                         operation_model: Any, endpoint_url: str,
                                         context: Any = None, headers: Any = None,
                                         set_user_agent_header: bool = True) -> dict[str, Any]:
                service = self.meta.service_model.service_id.hyphenize()
                if (service, operation_model.name) not in hooks._operations:
                    return super()._convert_to_request_dict(  # type: ignore[misc]
                        api_params, operation_model, endpoint_url, context, headers,
                        set_user_agent_header)
                if self.meta.config.parameter_validation:
                    from botocore.exceptions import ParamValidationError
                    from botocore.validate import ParamValidator

                    report = ParamValidator().validate(api_params, operation_model.input_shape)
                    if report.has_errors():
                        raise ParamValidationError(report=report.generate_report())
                return {"url_path": "/", "query_string": {}, "method": "POST",
                        "headers": dict(headers or {}), "body": b"", "url": endpoint_url,
                        "context": context if context is not None else {}}

            def _resolve_endpoint_ruleset(self: Any, operation_model: Any, params: Any,
                                          request_context: Any,
                                          ignore_signing_region: bool = False) -> Any:
                # The endpoint of a call answered locally is never contacted, and
                # resolving it (DynamoDB's rules search every request for
                # resource ARNs) costs more than the answer. S3 keeps its
                # resolution: it refuses some bucket names and ARNs there.
                service = self.meta.service_model.service_id.hyphenize()
                if service == "s3" or (service, operation_model.name) not in hooks._operations:
                    return super()._resolve_endpoint_ruleset(  # type: ignore[misc]
                        operation_model, params, request_context, ignore_signing_region)
                return self.meta.endpoint_url, {}, {}

        base_classes.insert(0, LocalRequests)

    def uninstall(self) -> None:
        if self._session is not None:
            self._session.events.unregister("before-parameter-build",
                                            unique_id="mdlc-local-params")
            self._session.events.unregister("before-call", unique_id="mdlc-local-call")
            self._session.events.unregister("creating-client-class",
                                            unique_id="mdlc-local-requests")
            self._session = None
        boto3.DEFAULT_SESSION = None

    @staticmethod
    def _remember_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[_PARAMS_KEY] = dict(params)

    def _dispatch(self, model: Any, context: dict[str, Any], event_name: str, **_: Any) -> Any:
        # event_name: before-call.<service-id>.<Operation>
        _, service, operation = event_name.split(".", 2)
        implementation = self._operations.get((service, operation))
        params = context.get(_PARAMS_KEY, {})
        try:
            if self.guard is not None:
                self.guard(service, operation, params)
            if implementation is None:
                for observer in self._observers.get(service, ()):
                    observer(operation, params)
                return None
            parsed = implementation(params)
        except ServiceError as error:
            http = AWSResponse("https://local", error.status, {}, None)
            return http, {
                "Error": {"Code": error.code, "Message": error.message},
                "ResponseMetadata": {"HTTPStatusCode": error.status,
                                     "RequestId": request_id()},
                **error.extra,
            }
        parsed = dict(parsed)
        if "ResponseMetadata" not in parsed:
            parsed["ResponseMetadata"] = {"HTTPStatusCode": 200, "RequestId": request_id()}
        return AWSResponse("https://local", 200, {}, None), parsed
