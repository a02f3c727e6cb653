"""Claim checks (OVERSIZE_RECORDS=claim_check): the pointer's shape, reading it back, resolving it
against the object, and the consumer rule over pointers."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msk_kinesis_sink.claim_checks import CLAIM_CHECK_PREFIX, ClaimCheck, ClaimCheckTarget
from msk_kinesis_sink.consumer import Envelope, OffsetDeduplicator, resolve_claim_check
from msk_kinesis_sink.encoding import (
    ClaimCheckRecord,
    EncodedRecord,
    UnwritableRecord,
    claim_check_oversize,
    encode_partition,
    encode_record,
    envelope_bytes,
)
from msk_kinesis_sink.errors import (
    ClaimCheckError,
    ClaimCheckMismatchError,
    ConfigurationError,
    MalformedEnvelopeError,
    PartitionKeyRequiredError,
)
from msk_kinesis_sink.events import KafkaRecord, parse_event
from msk_kinesis_sink.settings import OversizeRecords, PartitionKeyMode, RecordFormat, Settings
from tests.factories import kafka_record, msk_event
from tests.fakes import FakeClaimChecks

BUCKET = "orders-claims"
TARGET = ClaimCheckTarget(BUCKET)
LIMIT = 2048
POINTER_MEMBERS = {"topic", "partition", "offset", "timestamp", "timestampType", "claimCheck"}


def _record(
    offset: int = 7,
    *,
    key: bytes | None = b"order-1",
    value: bytes | None = b"x" * 4000,
    headers: tuple[tuple[str, bytes], ...] = (("trace", b"t1"),),
    topic: str = "orders.v1",
) -> KafkaRecord:
    event = msk_event([kafka_record(topic, 3, offset, key, value, headers)])
    [batch] = parse_event(event).partitions
    return batch.records[0]


def _encode(
    record: KafkaRecord,
    *,
    mode: PartitionKeyMode = PartitionKeyMode.KEY,
    header: str | None = None,
    limit: int = LIMIT,
    target: ClaimCheckTarget | None = TARGET,
    record_format: RecordFormat = RecordFormat.ENVELOPE,
) -> EncodedRecord | UnwritableRecord | ClaimCheckRecord:
    unit = encode_record(
        record,
        record_format=record_format,
        partition_key_mode=mode,
        max_record_bytes=limit,
        partition_key_header=header,
    )
    if target is None:
        return unit
    return claim_check_oversize(unit, target, partition_key_mode=mode, max_record_bytes=limit)


def _claim_checked(record: KafkaRecord, **options: Any) -> ClaimCheckRecord:
    unit = _encode(record, **options)
    assert isinstance(unit, ClaimCheckRecord)
    return unit


# -- the pointer -------------------------------------------------------------------------------


def test_claim_check_pointer_keeps_the_records_place_and_names_the_whole_record() -> None:
    # GIVEN an envelope of about 5 KB, over a 2 KB record limit
    record = _record()
    # WHEN encoded with claim checks
    unit = _claim_checked(record)
    # THEN the object is the envelope the record would have been, byte for byte...
    assert unit.document == envelope_bytes(record)
    # ...kept under a key of its own record (prefix, topic, partition, offset, digest)...
    digest = hashlib.sha256(unit.document).hexdigest()
    assert unit.claim_check == ClaimCheck(
        BUCKET, f"{CLAIM_CHECK_PREFIX}orders.v1/3/7-{digest}.json", len(unit.document), digest
    )
    # ...and the pointer keeps topic, partition, offset, timestamp and the partition key, with
    # the claim check in place of key, value and headers
    pointer = json.loads(unit.pointer.data)
    assert set(pointer) == POINTER_MEMBERS
    assert {k: pointer[k] for k in ("topic", "partition", "offset")} == {
        "topic": "orders.v1",
        "partition": 3,
        "offset": 7,
    }
    assert (pointer["timestamp"], pointer["timestampType"]) == (
        record.timestamp,
        record.timestamp_type,
    )
    assert pointer["claimCheck"] == {
        "bucket": BUCKET,
        "key": unit.claim_check.key,
        "bytes": len(unit.document),
        "sha256": digest,
    }
    assert unit.partition_key == unit.pointer.partition_key == "order-1"
    assert unit.pointer.size == len(unit.pointer.data) + len("order-1") <= LIMIT


def test_claim_check_key_is_the_same_for_the_same_record_and_never_for_other_content() -> None:
    # GIVEN a record encoded twice (a retry, a redelivery), and a record at the same place with
    # other content (a topic deleted and created again)
    first, again = _claim_checked(_record()), _claim_checked(_record())
    other = _claim_checked(_record(value=b"y" * 4000))
    # WHEN their claim checks are compared
    # THEN the retry overwrites the same object; the other content never does
    assert first.claim_check == again.claim_check
    assert other.claim_check.key != first.claim_check.key


def test_claim_check_pointer_of_a_header_keyed_record_says_so() -> None:
    # GIVEN PARTITION_KEY=header:tenant
    record = _record(headers=(("tenant", b"acme"),))
    # WHEN claim-checked
    unit = _claim_checked(record, mode=PartitionKeyMode.HEADER, header="tenant")
    # THEN the pointer keeps the header's partition key and says where it came from
    assert unit.pointer.partition_key == "acme"
    assert json.loads(unit.pointer.data)["partitionKeyFrom"] == "header"


def test_claim_check_records_within_the_limit_are_left_alone() -> None:
    # GIVEN a record that fits / WHEN encoded with claim checks / THEN it is an ordinary record
    unit = _encode(_record(value=b"small"))
    assert isinstance(unit, EncodedRecord) and unit.data == envelope_bytes(unit.source)


def test_claim_check_pointer_too_large_itself_is_dead_lettered_with_the_reason() -> None:
    # GIVEN a 1 KiB limit and a topic name so long that no pointer fits
    record = _record(topic="t" * 249, key=b"k" * 256)
    # WHEN encoded
    unit = _encode(record, limit=1024)
    # THEN it is unwritable, saying why (never claim-checked with a pointer that can't be sent)
    assert isinstance(unit, UnwritableRecord)
    assert unit.reason.startswith("claim-check pointer is ")
    assert unit.reason.endswith("over MAX_RECORD_BYTES=1024")


def test_claim_check_never_applies_to_raw_records() -> None:
    # GIVEN the raw format (settings refuse claim checks with it; the encoder does not rely on it)
    event = msk_event([kafka_record("orders.v1", 3, 7, b"k", b"x" * 4000)])
    [batch] = parse_event(event).partitions
    # WHEN a partition is encoded with a claim-check target
    [unit] = encode_partition(
        batch,
        record_format=RecordFormat.RAW,
        partition_key_mode=PartitionKeyMode.KEY,
        max_record_bytes=LIMIT,
        claim_checks=TARGET,
    ).units
    # THEN an oversize raw value is dead-lettered as before
    assert isinstance(unit, UnwritableRecord) and "over MAX_RECORD_BYTES" in unit.reason


def test_claim_check_leaves_an_undecodable_record_a_dead_letter() -> None:
    # GIVEN an oversize record whose key is not base64 (the event's text, kept as given)
    record = _record()._replace(key_b64="not base64!")
    # WHEN encoded with claim checks / THEN it stays unwritable, for its key
    unit = _encode(record)
    assert isinstance(unit, UnwritableRecord) and "key is not valid base64" in unit.reason


# -- reading a pointer -------------------------------------------------------------------------


def test_claim_check_pointer_reads_as_an_envelope_without_key_value_or_headers() -> None:
    # GIVEN a pointer as the sink writes it
    unit = _claim_checked(_record())
    # WHEN read as an envelope
    envelope = Envelope.from_bytes(unit.pointer.data)
    # THEN its place is the record's, and its claim check the one that was written
    assert (envelope.topic, envelope.partition, envelope.offset) == ("orders.v1", 3, 7)
    assert (envelope.key, envelope.value, envelope.headers) == (None, None, ())
    assert envelope.claim_check == unit.claim_check


def _pointer(**claim: Any) -> bytes:
    document: dict[str, Any] = {
        "topic": "t",
        "partition": 0,
        "offset": 1,
        "timestamp": 0,
        "timestampType": "CREATE_TIME",
        "claimCheck": {"bucket": BUCKET, "key": "k", "bytes": 1, "sha256": "0" * 64, **claim},
    }
    return json.dumps({k: v for k, v in document.items() if v is not None}).encode()


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (_pointer(bucket="Not_A_Bucket"), "'bucket'"),
        (_pointer(key=""), "'key'"),
        (_pointer(key="k" * 1025), "longer than 1024 bytes"),
        (_pointer(bytes=-1), "'bytes'"),
        (_pointer(bytes=True), "'bytes'"),
        (_pointer(bytes=1.0), "'bytes'"),
        (_pointer(sha256="A" * 64), "'sha256'"),
        (_pointer(sha256="0" * 63), "'sha256'"),
        (json.dumps({**json.loads(_pointer()), "key": None}).encode(), "has a 'key' member"),
        (json.dumps({**json.loads(_pointer()), "headers": []}).encode(), "'headers' member"),
        (json.dumps({**json.loads(_pointer()), "claimCheck": []}).encode(), "must be an object"),
    ],
)
def test_claim_check_malformed_pointer_is_refused_naming_the_member(
    data: bytes, named: str
) -> None:
    # GIVEN / WHEN / THEN a pointer the sink would not write is refused, naming what is wrong
    with pytest.raises(MalformedEnvelopeError, match="claim") as raised:
        Envelope.from_bytes(data)
    assert named in str(raised.value)


# -- resolving a pointer -----------------------------------------------------------------------


def _stored(unit: ClaimCheckRecord, data: bytes | None = None) -> FakeClaimChecks:
    store = FakeClaimChecks()
    store.objects[(BUCKET, unit.claim_check.key)] = unit.document if data is None else data
    return store


def test_resolve_claim_check_returns_the_original_envelope() -> None:
    # GIVEN a pointer and its object
    unit = _claim_checked(_record())
    pointer = Envelope.from_bytes(unit.pointer.data)
    # WHEN resolved / THEN the document is the envelope the record would have been
    assert resolve_claim_check(pointer, _stored(unit)) == json.loads(envelope_bytes(unit.source))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:-1], "holds 5"),
        (lambda data: data + b" ", "holds more than"),
        (lambda data: data[:100] + bytes([data[100] ^ 1]) + data[101:], "SHA-256"),
    ],
    ids=["shorter", "longer", "tampered"],
)
def test_resolve_claim_check_refuses_an_object_that_is_not_the_record(
    damage: Any, message: str
) -> None:
    # GIVEN a pointer whose object was cut short, grown, or changed at the same length
    unit = _claim_checked(_record())
    data = damage(unit.document)
    assert data != unit.document
    pointer = Envelope.from_bytes(unit.pointer.data)
    # WHEN resolved / THEN it is a mismatch, naming the record and the object, not its contents
    with pytest.raises(ClaimCheckMismatchError, match=message) as raised:
        resolve_claim_check(pointer, _stored(unit, data))
    assert f"orders.v1-3 offset 7 (s3://{BUCKET}/{unit.claim_check.key})" in str(raised.value)
    assert "x" * 20 not in str(raised.value)


def test_resolve_claim_check_refuses_another_records_envelope_of_the_right_digest() -> None:
    # GIVEN a pointer made to name another record's envelope (digest and size of that one)
    unit, other = _claim_checked(_record()), _claim_checked(_record(offset=8))
    forged = json.loads(unit.pointer.data)
    forged["claimCheck"] = json.loads(other.pointer.data)["claimCheck"]
    pointer = Envelope.from_bytes(json.dumps(forged).encode())
    # WHEN resolved against the other record's object / THEN refused: not this record
    with pytest.raises(ClaimCheckMismatchError, match="not this record's envelope"):
        resolve_claim_check(pointer, _stored(other))


def test_resolve_claim_check_missing_object_names_the_client_error() -> None:
    # GIVEN a pointer whose object is gone (expired, deleted)
    unit = _claim_checked(_record())
    # WHEN resolved / THEN a ClaimCheckError with S3's code, and not a mismatch
    with pytest.raises(ClaimCheckError, match="could not be read: NoSuchKey") as raised:
        resolve_claim_check(Envelope.from_bytes(unit.pointer.data), FakeClaimChecks())
    assert not isinstance(raised.value, ClaimCheckMismatchError)


def test_resolve_claim_check_of_an_ordinary_envelope_is_refused() -> None:
    # GIVEN an envelope that holds its record / WHEN resolved / THEN refused, naming it
    envelope = Envelope.from_bytes(envelope_bytes(_record()))
    with pytest.raises(ClaimCheckError, match=r"orders\.v1-3 offset 7 is no claim-check pointer"):
        resolve_claim_check(envelope, FakeClaimChecks())


_VALUES = st.binary(min_size=0, max_size=6000)
_KEYS = st.one_of(st.none(), st.binary(max_size=40))
_HEADERS = st.lists(st.tuples(st.sampled_from(["a", "trace", "日本"]), st.binary(max_size=8)))


@settings(deadline=None, max_examples=150)
@given(
    key=_KEYS, value=st.one_of(st.none(), _VALUES), headers=_HEADERS, offset=st.integers(0, 2**40)
)
def test_claim_check_round_trip_gives_back_every_record_that_does_not_fit(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]], offset: int
) -> None:
    # GIVEN any record, encoded with claim checks under a 2 KB limit
    record = _record(offset, key=key, value=value, headers=tuple(headers))
    unit = _encode(record)
    if not isinstance(unit, ClaimCheckRecord):
        # THEN one that fits is sent as it is...
        assert isinstance(unit, EncodedRecord) and unit.size <= LIMIT
        return
    # ...and one that does not is a pointer within the limit whose object resolves to it
    assert unit.pointer.size <= LIMIT < len(unit.document)
    store = FakeClaimChecks()
    store.write(unit)
    pointer = Envelope.from_bytes(unit.pointer.data)
    resolved = resolve_claim_check(pointer, store)
    assert resolved == json.loads(envelope_bytes(record))
    original = Envelope.from_bytes(json.dumps(resolved).encode())
    assert (original.key, original.offset) == (Envelope.from_bytes(unit.document).key, offset)


# -- the consumer rule over pointers -----------------------------------------------------------


def test_offset_deduplicator_takes_pointers_by_partition_key_only() -> None:
    # GIVEN a pointer (it carries no Kafka key)
    unit = _claim_checked(_record())
    pointer = Envelope.from_bytes(unit.pointer.data)
    # WHEN accepted without its partition key / THEN refused rather than put in the wrong chain
    with pytest.raises(PartitionKeyRequiredError, match="claim-check pointer"):
        OffsetDeduplicator().accept(pointer)


@settings(deadline=None)
@given(
    claim_checked=st.sets(st.integers(0, 11)),
    redeliveries=st.lists(st.tuples(st.integers(0, 11), st.integers(1, 4)), max_size=6),
)
def test_offset_deduplicator_works_unchanged_on_pointers(
    claim_checked: set[int], redeliveries: list[tuple[int, int]]
) -> None:
    # GIVEN one key's records 0..11, some of them pointers, and a stream that repeats runs of
    # them (lost responses, ESM retries from a resume offset), never reordering first deliveries
    def envelope(offset: int) -> tuple[Envelope, str]:
        value = b"x" * (4000 if offset in claim_checked else 10)
        unit = _encode(_record(offset, value=value))
        data = (
            unit.pointer.data if isinstance(unit, ClaimCheckRecord) else envelope_bytes(unit.source)
        )
        return Envelope.from_bytes(data), unit.partition_key

    stream = list(range(12))
    for start, length in redeliveries:
        at = stream.index(min(start + length, 11))
        stream[at + 1 : at + 1] = range(start, min(start + length, 11) + 1)
    # WHEN a consumer applies the rule, each record with its partition key
    dedup = OffsetDeduplicator()
    accepted = [e.offset for e, key in map(envelope, stream) if dedup.accept(e, partition_key=key)]
    # THEN it takes each record once, in Kafka order, pointers and envelopes alike
    assert accepted == list(range(12))


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"OVERSIZE_RECORDS": "claim_check", "DEAD_LETTER_BUCKET": "dlq"},
            "OVERSIZE_RECORDS=claim_check needs RECORD_FORMAT=envelope (RECORD_FORMAT=raw)",
        ),
        (
            {"CLAIM_CHECK_BUCKET": "claims"},
            "CLAIM_CHECK_BUCKET only applies with OVERSIZE_RECORDS=claim_check"
            " (OVERSIZE_RECORDS=dead_letter)",
        ),
        (
            {"OVERSIZE_RECORDS": "split"},
            "OVERSIZE_RECORDS='split' is not one of: dead_letter, claim_check",
        ),
    ],
)
def test_settings_claim_check_refusals_name_the_variables(
    env: dict[str, str], message: str
) -> None:
    # GIVEN / WHEN / THEN each combination that can't work is refused in one line
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env({"STREAM_NAME": "s", **env})
    assert str(raised.value).startswith(message)


def test_settings_claim_check_bucket_defaults_to_the_dead_letter_bucket() -> None:
    # GIVEN claim checks with a dead-letter bucket, then with a bucket of their own
    base = {"STREAM_NAME": "s", "RECORD_FORMAT": "envelope", "OVERSIZE_RECORDS": "claim_check"}
    shared = Settings.from_env({**base, "DEAD_LETTER_BUCKET": "dlq"})
    own = Settings.from_env({**base, "DEAD_LETTER_BUCKET": "dlq", "CLAIM_CHECK_BUCKET": "claims"})
    # WHEN their targets are read / THEN the dead-letter bucket, unless one is given
    assert ClaimCheckTarget.of(shared) == ClaimCheckTarget("dlq")
    assert ClaimCheckTarget.of(own) == ClaimCheckTarget("claims")
    assert ClaimCheckTarget.of(Settings.from_env({"STREAM_NAME": "s"})) is None
    # ...and none without any bucket (a replay clears DEAD_LETTER_BUCKET): oversize records are
    # then reported, as dead letters are without a bucket
    assert ClaimCheckTarget.of(Settings.from_env(base)) is None
    # AND only a non-default mode is written to the environment
    assert own.to_env()["OVERSIZE_RECORDS"] == "claim_check"
    assert own.oversize_records is OversizeRecords.CLAIM_CHECK
    assert "OVERSIZE_RECORDS" not in Settings.from_env({"STREAM_NAME": "s"}).to_env()
