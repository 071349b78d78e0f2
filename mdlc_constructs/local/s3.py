"""S3, locally: ``GetObject`` of a whole object without the HTTP round trip.

The feature, quality and monitoring jobs read thousands of snapshot objects
over a simulation, and through botocore, the ``responses`` mock and moto's
URL dispatch each read costs about a millisecond. :class:`FastObjects`
answers a plain ``GetObject`` (bucket and key, optionally the version, the
checksum mode botocore adds) from moto's backend in process: the headers
moto's own handler would send (``FakeKey.response_dict``, the version, the
checksum, the user metadata), parsed by botocore's own REST-XML parser into
the response the client would have returned. Anything else (a range,
conditions, SSE-C, a missing bucket, a deleted key, a version that is not
there or is a delete marker) is answered by moto as usual, errors included;
a key that never existed is S3's ``NoSuchKey`` (404), which the snapshot
readers' version probes meet daily. tests/test_local_runtime.py and
tests/test_local_speedups.py compare both paths' answers.
"""

from __future__ import annotations

import functools
from typing import Any

from .assembly import ACCOUNT, PARTITION
from .hooks import ServiceError, ServiceHooks, streaming
from .resources import raw_client

#: The parameters a whole-object read may carry and still take the shortcut.
_PLAIN = frozenset({"Bucket", "Key", "ChecksumMode", "VersionId"})


@functools.cache
def _parser_and_shape() -> tuple[Any, Any]:
    from botocore.parsers import create_parser

    model = raw_client("s3").meta.service_model.operation_model("GetObject")
    return create_parser("rest-xml"), model.output_shape


class FastObjects:
    """moto's S3 objects read in process for the plain ``GetObject``."""

    def install(self, hooks: ServiceHooks) -> None:
        hooks.add("s3", "GetObject", self.get_object)

    def get_object(self, params: dict[str, Any]) -> dict[str, Any]:
        answer = self.shortcut(params)
        return answer if answer is not None else self.through_moto(params)

    @staticmethod
    def through_moto(params: dict[str, Any]) -> dict[str, Any]:
        client = raw_client("s3")
        try:
            response = client.get_object(**params)
        except client.exceptions.ClientError as error:
            failure = dict(error.response.get("Error", {}))
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
            code, message = failure.pop("Code", "InternalError"), failure.pop("Message", "")
            raise ServiceError(code, message, status=status, extra={"Error": {
                "Code": code, "Message": message, **failure}}) from None
        response.pop("ResponseMetadata", None)
        return response

    @staticmethod
    def shortcut(params: dict[str, Any]) -> dict[str, Any] | None:
        """The response, or None where moto must answer."""
        version = params.get("VersionId")
        if (set(params) - _PLAIN or not isinstance(params.get("Key"), str)
                or not isinstance(version, str | None)):
            return None
        from botocore.awsrequest import HeadersDict
        from moto.s3.models import FakeKey, s3_backends

        backend = s3_backends[ACCOUNT][PARTITION]
        try:
            # What moto's handler reads for the request (the version's key, if named).
            key = backend.get_object(params["Bucket"], params["Key"], version_id=version)
            bucket = backend.get_bucket(params["Bucket"])
        except Exception:  # no such bucket: moto's error
            return None
        if key is None and version is None and not bucket.keys.getlist(params["Key"], None):
            # A key that never existed (no delete marker, no version): S3's 404.
            error = {"Code": "NoSuchKey", "Message": "The specified key does not exist.",
                     "Key": params["Key"]}
            raise ServiceError("NoSuchKey", error["Message"], status=404,
                               extra={"Error": error})
        # A missing version (or a delete marker) is moto's NoSuchVersion or 405, as S3's.
        if (not isinstance(key, FakeKey) or key.multipart or key._expiry is not None  # noqa: SLF001
                or key.storage_class in ("GLACIER", "DEEP_ARCHIVE")):
            return None  # a restore, an archived object: moto's answer (and errors)
        headers = HeadersDict()
        if key.version_id != "null":
            headers["x-amz-version-id"] = key.version_id
        headers.update(key.response_dict)
        if params.get("ChecksumMode") == "ENABLED" and key.checksum_algorithm:
            checksum = key.checksum_value
            if key.checksum_type == "COMPOSITE":
                checksum = f"{checksum}-{key.checksum_parts}"
            headers[f"x-amz-checksum-{key.checksum_algorithm.lower()}"] = checksum
            if key.checksum_type:
                headers["x-amz-checksum-type"] = key.checksum_type
        headers.update(key.metadata)
        headers["Accept-Ranges"] = "bytes"
        value = key.value
        parser, shape = _parser_and_shape()
        parsed = parser.parse({"headers": headers, "status_code": 200,
                               "body": streaming(value)}, shape)
        parsed.pop("ResponseMetadata", None)
        return parsed
