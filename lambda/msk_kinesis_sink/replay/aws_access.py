"""The replay's AWS calls, with the operator's credentials (never the function's): the bucket's
objects, and a deployed function's environment."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from botocore.config import Config
from botocore.exceptions import ClientError

from msk_kinesis_sink.aws.classify import SDK_ERRORS, describe_error
from msk_kinesis_sink.aws.clients import endpoint_url, session
from msk_kinesis_sink.errors import ReplayError
from msk_kinesis_sink.replay.terminal import shown

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Listing, reading, copying and deleting objects and reading a function's configuration are
# idempotent, so botocore's own retries suit them (PutRecords' retries stay the publisher's).
_OPERATOR_CONFIG: Final = Config(
    connect_timeout=10,
    read_timeout=60,
    retries={"total_max_attempts": 5, "mode": "standard"},
)

# What to tell an operator for errors of the replay's own calls.
REPLAY_HINTS: Mapping[str, str] = {
    "NoSuchBucket": "the bucket does not exist: check --bucket and the region",
    "AccessDenied": "these credentials lack s3:ListBucket, s3:GetObject, s3:PutObject or"
    " s3:DeleteObject on the bucket, or kms:Decrypt / kms:GenerateDataKey on its key",
    "AllAccessDisabled": "all access to the bucket is disabled",
    "InvalidObjectState": "the object is archived: restore it first",
    "KMS.DisabledException": "the bucket's KMS key is disabled: enable it",
    "KMS.NotFoundException": "the bucket's KMS key no longer exists",
    "KMS.KMSInvalidStateException": "the bucket's KMS key is not usable (pending deletion?)",
    "ResourceNotFoundException": "no such function: check --function and the region",
    "AccessDeniedException": "these credentials lack lambda:GetFunctionConfiguration on it",
}

# S3's answers to a conditional copy whose target came to exist meanwhile (412), or is being
# written by another request (409): look again for a free key.
_TARGET_TAKEN: Final = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_MOVE_ATTEMPTS: Final = 3


def _operator_problem(action: str, error: Exception) -> str:
    code, message = describe_error(error)
    text = f"{action}: {code}: {message}".rstrip(": ")
    hint = REPLAY_HINTS.get(code)
    return f"{text} ({hint})" if hint else text


class S3ObjectSummary(NamedTuple):
    """One listed object: what selection needs before reading it."""

    key: str
    size: int
    last_modified: datetime


class S3ObjectStore:
    """The replay's objects in one bucket: list them, read one, move a replayed one aside."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self.bucket = bucket

    def list(self, prefix: str) -> Iterator[S3ObjectSummary]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    yield S3ObjectSummary(item["Key"], item["Size"], item["LastModified"])
        except SDK_ERRORS as error:
            where = f"s3://{self.bucket}/{shown(prefix)}"
            raise ReplayError(_operator_problem(f"could not list {where}", error)) from None

    def read(self, key: str) -> bytes:
        try:
            body: bytes = self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except SDK_ERRORS as error:
            where = f"s3://{self.bucket}/{shown(key)}"
            raise ReplayError(_operator_problem(f"could not read {where}", error)) from None
        return body

    def move(self, key: str, to_keys: Sequence[str]) -> str:
        """Copy to the first of `to_keys` no object holds, then delete: the object is never gone
        from both places, and no copy is written over (on a versioned bucket a copy written
        over would only stay until the lifecycle expires noncurrent versions). The copy is
        conditional (If-None-Match), so a copy made meanwhile by another run is not written
        over either."""
        try:
            for _ in range(_MOVE_ATTEMPTS):
                target = self._free_key(to_keys)
                try:
                    self._client.copy_object(
                        Bucket=self.bucket,
                        Key=target,
                        CopySource={"Bucket": self.bucket, "Key": key},
                        IfNoneMatch="*",
                    )
                except ClientError as error:
                    if describe_error(error)[0] in _TARGET_TAKEN:
                        continue
                    raise
                self._client.delete_object(Bucket=self.bucket, Key=key)
                return target
        except SDK_ERRORS as error:
            where = f"s3://{self.bucket}/{shown(key)}"
            raise ReplayError(
                _operator_problem(f"could not move {where} to {shown(to_keys[0])}", error)
            ) from None
        raise ReplayError(
            f"could not move s3://{self.bucket}/{shown(key)}: {shown(to_keys[0])} and its"
            " copies kept beside it were taken by other writers each time"
        )

    def _free_key(self, to_keys: Sequence[str]) -> str:
        """The first of `to_keys` (which all start with the first) that no object holds."""
        taken = {summary.key for summary in self.list(to_keys[0])}
        for target in to_keys:
            if target not in taken:
                return target
        raise ReplayError(
            f"s3://{self.bucket}/{shown(to_keys[0])} and {len(to_keys) - 1} copies beside it"
            " exist already: move or delete some of them"
        )


def operator_s3_client(env: Mapping[str, str]) -> S3Client:
    return session(env).client("s3", endpoint_url=endpoint_url(env, "S3"), config=_OPERATOR_CONFIG)


def function_environment(name: str, env: Mapping[str, str]) -> dict[str, str]:
    """The deployed function's environment variables (lambda:GetFunctionConfiguration)."""
    # No stubs for the Lambda client are pinned: its one call here is checked by the tests.
    client: Any = session(env).client(
        "lambda", endpoint_url=endpoint_url(env, "LAMBDA"), config=_OPERATOR_CONFIG
    )
    try:
        configuration = client.get_function_configuration(FunctionName=name)
    except SDK_ERRORS as error:
        raise ReplayError(
            _operator_problem(f"could not read function {name}'s configuration", error)
        ) from None
    environment = configuration.get("Environment") or {}
    failure = environment.get("Error")
    if failure:
        code = str(failure.get("ErrorCode") or "Unknown")
        raise ReplayError(
            f"function {name}'s environment variables can not be read: {code} (they are"
            " encrypted with a KMS key these credentials may not use for kms:Decrypt)"
        )
    variables = environment.get("Variables") or {}
    return {str(variable): str(value) for variable, value in variables.items()}
