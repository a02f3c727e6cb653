"""Consumer-side rule for `envelope` records: exactly once, in Kafka order, per key.

The sink delivers at least once and never reorders a key, so a consumer that drops every record
whose offset is at or below the highest offset it has already seen for that
(topic, partition, key) receives every record exactly once and in Kafka order. The key is the
one the partition key was derived from: the Kafka key by default; with
PARTITION_KEY=header:<name> (the envelope says so), pass the Kinesis record's partition key to
`accept`, which refuses such an envelope without one.
Keep `OffsetDeduplicator` state per consumer (e.g. per shard processor); persist it alongside
your checkpoints if duplicates across restarts matter.

With OVERSIZE_RECORDS=claim_check a record too large for the stream arrives as a pointer: an
envelope with `claimCheck` in place of key, value and headers (`Envelope.claim_check`). Pass
every record's partition key to `accept` (a pointer has no Kafka key; the rule is unchanged),
then `resolve_claim_check` reads the original envelope from S3 and checks it.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

from msk_kinesis_sink.claim_checks import CLAIM_CHECK_FIELD, SHA256_HEX, ClaimCheck
from msk_kinesis_sink.encoding import PARTITION_KEY_FROM_FIELD
from msk_kinesis_sink.errors import (
    ClaimCheckError,
    ClaimCheckMismatchError,
    MalformedEnvelopeError,
    MalformedEventError,
    PartitionKeyRequiredError,
)

# The envelope names a schema registry's metadata as the invocation event does.
from msk_kinesis_sink.events import KEY_SCHEMA_FIELD as KEY_SCHEMA
from msk_kinesis_sink.events import (
    MAX_OFFSET,
    MAX_PARTITION,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    is_unicode,
    schema_metadata,
)
from msk_kinesis_sink.events import VALUE_SCHEMA_FIELD as VALUE_SCHEMA
from msk_kinesis_sink.settings import PartitionKeyMode
from msk_kinesis_sink.variables import bucket_name_problem

_WHERE = "envelope"
# S3 object keys are at most 1,024 bytes of UTF-8.
_MAX_OBJECT_KEY_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded `envelope` record; key and value stay base64 (None for null)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: str
    key: str | None
    value: str | None
    headers: tuple[tuple[str, str], ...]
    # (dataFormat, schemaId) of the registry schema that validated the key / the value, when a
    # schema registry on the mapping did (docs/schema-registry.md).
    key_schema: tuple[str, str] | None = None
    value_schema: tuple[str, str] | None = None
    # PartitionKeyMode.HEADER when the partition key came from a header
    # (PARTITION_KEY=header:<name>): the record's order is kept per Kinesis partition key, not
    # per Kafka key. None: the Kafka key's rule, as for envelopes written before the member.
    partition_key_from: PartitionKeyMode | None = None
    # A pointer (OVERSIZE_RECORDS=claim_check): where the whole record is; key and value are
    # None and headers empty here, and resolve_claim_check reads them back.
    claim_check: ClaimCheck | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        """Read an envelope as the sink writes it: UTF-8 JSON, each member of its type.

        Raises MalformedEnvelopeError naming the member and the problem (never quoting a key,
        value or header). Numbers are JSON integers in Kafka's ranges (no floats, booleans or
        strings); key, value and header values are strict base64; a member given twice, NaN
        and Infinity are refused. Members the sink does not write are ignored.
        """
        document = _document(data)
        key_meta, value_meta = document.get(KEY_SCHEMA), document.get(VALUE_SCHEMA)
        # A claim-check pointer holds its record's place, and where the record is.
        claim_check = _claim_check(document) if CLAIM_CHECK_FIELD in document else None
        pointer = claim_check is not None
        return cls(
            topic=_text(document, "topic"),
            partition=_integer(document, "partition", 0, MAX_PARTITION),
            offset=_integer(document, "offset", 0, MAX_OFFSET),
            timestamp=_integer(document, "timestamp", MIN_TIMESTAMP, MAX_TIMESTAMP),
            timestamp_type=_text(document, "timestampType", empty=True),
            key=None if pointer else _base64(_required(document, "key"), "key", nullable=True),
            value=None
            if pointer
            else _base64(_required(document, "value"), "value", nullable=True),
            headers=() if pointer else _headers(_required(document, "headers")),
            key_schema=None if key_meta is None else _schema(key_meta, KEY_SCHEMA),
            value_schema=None if value_meta is None else _schema(value_meta, VALUE_SCHEMA),
            partition_key_from=_partition_key_from(document.get(PARTITION_KEY_FROM_FIELD)),
            claim_check=claim_check,
        )

    @property
    def ordering_key(self) -> tuple[str, int, str | None]:
        return (self.topic, self.partition, self.key)


def _document(data: Any) -> dict[str, Any]:
    if not isinstance(data, bytes | bytearray | memoryview):
        _refuse(f"{_WHERE} data must be bytes, got {type(data).__name__}")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as error:
        _refuse(f"{_WHERE} is not UTF-8 (byte {error.start})")
    try:
        document = json.loads(text, object_pairs_hook=_object, parse_constant=_constant)
    except MalformedEnvelopeError:
        raise  # from the hooks below (it is a ValueError too)
    except json.JSONDecodeError as error:
        _refuse(f"{_WHERE} is not JSON: {error.msg} at character {error.pos}")
    except ValueError:  # int() refuses more than 4,300 digits
        _refuse(f"{_WHERE} holds a number too long to read")
    except RecursionError:
        _refuse(f"{_WHERE} nests too deeply")
    if not isinstance(document, dict):
        _refuse(f"{_WHERE} must be a JSON object, got {_json_type(document)}")
    return document


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        # Readers disagree on which of two members wins; the sink never writes one twice.
        _refuse(f"{_WHERE} has a member given twice")
    return document


def _constant(name: str) -> NoReturn:
    _refuse(f"{_WHERE} holds {name}, which is not a JSON number")


def _required(document: dict[str, Any], member: str) -> Any:
    if member not in document:
        _refuse(f"{_WHERE} has no '{member}' member")
    return document[member]


def _text(document: dict[str, Any], member: str, *, empty: bool = False) -> str:
    value = _required(document, member)
    if not isinstance(value, str) or not (empty or value):
        kind = "a string" if empty else "a non-empty string"
        _refuse(f"{_WHERE} member '{member}' must be {kind}, got {_json_type(value)}")
    if not is_unicode(value):
        _refuse(f"{_WHERE} member '{member}' is not valid Unicode (a lone surrogate)")
    return value


def _integer(document: dict[str, Any], member: str, low: int, high: int) -> int:
    value = _required(document, member)
    # bool is an int to Python; 5.0 and "7" are not how the sink writes a number.
    if type(value) is not int:
        _refuse(f"{_WHERE} member '{member}' must be an integer, got {_json_type(value)}")
    if not low <= value <= high:
        shown = value if abs(value) < 10**30 else "an integer too large to show"
        _refuse(f"{_WHERE} member '{member}' is {shown}, outside {low}..{high}")
    return value


def _base64(value: Any, what: str, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        kind = "a base64 string or null" if nullable else "a base64 string"
        _refuse(f"{_WHERE} {what} must be {kind}, got {_json_type(value)}")
    try:
        binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        _refuse(f"{_WHERE} {what} is not valid base64")
    return value


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        _refuse(f"{_WHERE} member 'headers' must be a list, got {_json_type(value)}")
    headers: list[tuple[str, str]] = []
    for position, header in enumerate(value):
        if not isinstance(header, dict):
            _refuse(f"{_WHERE} header {position} must be an object, got {_json_type(header)}")
        name = header.get("name")
        if not isinstance(name, str) or not is_unicode(name):
            _refuse(f"{_WHERE} header {position} has no 'name' string of valid Unicode")
        data = _base64(header.get("value"), f"header {position} value")
        assert data is not None  # not nullable
        headers.append((name, data))
    return tuple(headers)


def _schema(metadata: Any, member: str) -> tuple[str, str]:
    try:
        return schema_metadata(metadata, member, _WHERE)
    except MalformedEventError as error:
        raise MalformedEnvelopeError(str(error)) from None


def _partition_key_from(value: Any) -> PartitionKeyMode | None:
    if value is None:
        return None
    if isinstance(value, str):
        for mode in PartitionKeyMode:
            if value == mode.value:
                return mode
    allowed = ", ".join(mode.value for mode in PartitionKeyMode)
    _refuse(f"{_WHERE} member '{PARTITION_KEY_FROM_FIELD}' must be one of {allowed}")


def _claim_check(document: dict[str, Any]) -> ClaimCheck:
    """A pointer's claim check; a pointer carries no key, value or headers."""
    for member in ("key", "value", "headers"):
        if member in document:
            _refuse(f"{_WHERE} is a claim-check pointer but has a '{member}' member")
    value = document[CLAIM_CHECK_FIELD]
    where = f"{_WHERE} member '{CLAIM_CHECK_FIELD}'"
    if not isinstance(value, dict):
        _refuse(f"{where} must be an object, got {_json_type(value)}")
    bucket, key = value.get("bucket"), value.get("key")
    size, digest = value.get("bytes"), value.get("sha256")
    if not isinstance(bucket, str) or bucket_name_problem(bucket):
        _refuse(f"{where} has no 'bucket' that is an S3 bucket name")
    if not (isinstance(key, str) and key and is_unicode(key)):
        _refuse(f"{where} has no 'key' that is a non-empty string")
    if len(key.encode("utf-8")) > _MAX_OBJECT_KEY_BYTES:
        _refuse(f"{where} 'key' is longer than {_MAX_OBJECT_KEY_BYTES} bytes")
    if type(size) is not int or size < 0:
        _refuse(f"{where} has no 'bytes' that is an integer of 0 or more")
    if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
        _refuse(f"{where} has no 'sha256' of 64 lowercase hexadecimal digits")
    return ClaimCheck(bucket=bucket, key=key, bytes=size, sha256=digest)


def _json_type(value: Any) -> str:
    """The JSON kind of a parsed value, as an error message names it (never the value)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "a number with a fraction or exponent"
    kinds = {int: "an integer", str: "a string", list: "a list", dict: "an object"}
    return kinds.get(type(value), "a value")


def _refuse(message: str) -> NoReturn:
    raise MalformedEnvelopeError(message)


class OffsetDeduplicator:
    """Drops repeats: a record is new only if its offset is above the highest seen for its key."""

    def __init__(self) -> None:
        # (topic, partition, by partition key?, key): a Kafka key and a Kinesis partition key
        # that happen to be equal text stay apart.
        self._highest: dict[tuple[str, int, bool, str | None], int] = {}

    def accept(self, envelope: Envelope, partition_key: str | None = None) -> bool:
        """True when the record is new for its (topic, partition, key) and should be processed.

        `partition_key`: the Kinesis record's partition key. Required for an envelope whose
        partition key came from a header (PARTITION_KEY=header:<name>): its order is kept per
        partition key, and records of one Kafka key with different header values are separate
        chains; and for a claim-check pointer, which carries no Kafka key. Raises
        PartitionKeyRequiredError without it rather than drop such records. Correct for every
        envelope when given (the sink orders each partition key).
        """
        chain: tuple[str, int, bool, str | None]
        if partition_key is not None:
            chain = (envelope.topic, envelope.partition, True, partition_key)
        elif envelope.claim_check is not None:
            raise PartitionKeyRequiredError(
                f"envelope of {envelope.topic}-{envelope.partition} offset {envelope.offset} is a"
                " claim-check pointer, which carries no Kafka key: pass the Kinesis record's"
                " partition key, accept(envelope, partition_key=...), for every record"
            )
        elif envelope.partition_key_from is PartitionKeyMode.HEADER:
            raise PartitionKeyRequiredError(
                f"envelope of {envelope.topic}-{envelope.partition} offset {envelope.offset} has"
                " its partition key from a header (PARTITION_KEY=header:<name>): pass the"
                " Kinesis record's partition key, accept(envelope, partition_key=...); by its"
                " Kafka key alone, later records could be taken for repeats and dropped"
            )
        else:
            chain = (envelope.topic, envelope.partition, False, envelope.key)
        highest = self._highest.get(chain)
        if highest is not None and envelope.offset <= highest:
            return False
        self._highest[chain] = envelope.offset
        return True

    def filter(self, envelopes: Iterable[Envelope]) -> Iterator[Envelope]:
        """The new records of `envelopes` by their Kafka keys (header-keyed envelopes and
        claim-check pointers raise: call `accept` with each record's partition key instead)."""
        return (envelope for envelope in envelopes if self.accept(envelope))


class ObjectReader(Protocol):
    """The part of an S3 client resolve_claim_check uses (boto3's S3 client is one)."""

    def get_object(self, *, Bucket: str, Key: str) -> Mapping[str, Any]: ...


def resolve_claim_check(envelope: Envelope, s3_client: ObjectReader) -> dict[str, Any]:
    """The original envelope a claim-check pointer stands for, as a JSON object (what
    `json.loads` gives for an ordinary envelope record; `Envelope.from_bytes` reads its bytes).

    Reads at most the claim check's `bytes` (and one more), then checks the size, the SHA-256,
    and that the object is the envelope of this record (same topic, partition and offset).
    Raises ClaimCheckError when `envelope` is no pointer or the object can not be read (missing,
    expired, no permission: the message gives the client's error code), and
    ClaimCheckMismatchError, a ClaimCheckError, when the object is not the record. Messages
    name the record and the object, never its contents. Needs s3:GetObject on the object and,
    for the stack's buckets, kms:Decrypt on the key that encrypts it.
    """
    claim = envelope.claim_check
    record = f"{envelope.topic}-{envelope.partition} offset {envelope.offset}"
    if claim is None:
        raise ClaimCheckError(
            f"envelope of {record} is no claim-check pointer: it holds its record"
        )
    where = f"claim check of {record} (s3://{claim.bucket}/{claim.key})"
    try:
        body = s3_client.get_object(Bucket=claim.bucket, Key=claim.key)["Body"]
        try:
            data = bytes(body.read(claim.bytes + 1))
        finally:
            body.close()
    # The client's own errors (botocore's, or another client's): the object can not be read.
    except Exception as error:
        raise ClaimCheckError(f"{where} could not be read: {_error_code(error)}") from error
    if len(data) != claim.bytes:
        held = f"more than {claim.bytes}" if len(data) > claim.bytes else str(len(data))
        raise ClaimCheckMismatchError(f"{where}: the object holds {held} bytes, not {claim.bytes}")
    if hashlib.sha256(data).hexdigest() != claim.sha256:
        raise ClaimCheckMismatchError(f"{where}: the object's SHA-256 is not the claim check's")
    try:
        original = Envelope.from_bytes(data)
    except MalformedEnvelopeError as error:
        raise ClaimCheckMismatchError(f"{where}: the object is no envelope ({error})") from None
    place = (original.topic, original.partition, original.offset)
    if original.claim_check is not None or place != (
        envelope.topic,
        envelope.partition,
        envelope.offset,
    ):
        raise ClaimCheckMismatchError(f"{where}: the object is not this record's envelope")
    document: dict[str, Any] = json.loads(data)
    return document


def _error_code(error: Exception) -> str:
    """An S3 client error's code (botocore's ClientError carries one), else its type's name."""
    response = getattr(error, "response", None)
    details = response.get("Error") if isinstance(response, dict) else None
    code = details.get("Code") if isinstance(details, dict) else None
    return str(code) if code else type(error).__name__
