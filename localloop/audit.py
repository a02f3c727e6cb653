"""Read a Kinesis stream back and check it against the Kafka source, under the consumer rule.

The source is the topic (or the topics) routed to that stream; a record of any other topic found
in the stream counts as `unexpected`, so auditing each stream of a routed run shows misrouting.

The rule (shipped with the sink as `msk_kinesis_sink.consumer`): for each (topic, partition, key),
a consumer that drops every record whose offset is at or below the highest offset it has already
seen for that key must receive every source record exactly once and in Kafka order. The auditor
applies that rule to each shard in sequence order (parents before children) and counts what is
lost, what arrives out of order, what is duplicated, corrupted, or foreign to the source.

After a replay (docs/replay.md), records the replay put back arrive after newer records of their
keys, and the rule drops them: the documented ordering caveat. Told what was replayed and when the
replay began, the auditor counts such a record as `out_of_order_replayed` instead of
`out_of_order` only when (1) the rule drops every copy of it, (2) the replay delivered it, and
(3) every copy of it in the stream arrived after the replay began, so the sink never wrote it out
of order. Any other record the rule drops is `out_of_order`, and fails the audit.

With OVERSIZE_RECORDS=claim_check, a record too large for the stream is there as a pointer to the
whole record in S3. Given an S3 reader, the auditor resolves each pointer (consumer
`resolve_claim_check`: size, SHA-256 and place checked) and audits the record it stands for, in
the pointer's place; a pointer it can not resolve (no reader, object missing or not the record)
delivers nothing, so its record counts as lost unless another copy arrived.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from localloop.broker import BrokerUnreachableError, quiet_client_logs
from localloop.kinesis_local import DEFAULT_REGION, kinesis_client
from localloop.procs import ProcessFailedError
from localloop.workload import SourceLog, content_digest, read_topic
from msk_kinesis_sink.aggregation import deaggregate
from msk_kinesis_sink.aws.classify import SDK_ERRORS, describe_error
from msk_kinesis_sink.consumer import (
    Envelope,
    ObjectReader,
    OffsetDeduplicator,
    resolve_claim_check,
)
from msk_kinesis_sink.errors import (
    ClaimCheckError,
    MalformedAggregateError,
    MalformedEnvelopeError,
    ReplayError,
    UnreadableObjectError,
)

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_s3 import S3Client

_GET_RECORDS_LIMIT: Final = 10_000
_READ_DEADLINE_S: Final = 600.0


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One user record as read from a shard (aggregated records are already unpacked)."""

    shard_id: str
    sequence_number: str
    data: bytes
    # The Kinesis record's partition key: the consumer rule's key, whatever PARTITION_KEY was
    # (None: group by the envelope's Kafka key, which a header-keyed envelope refuses).
    partition_key: str | None = None
    # ApproximateArrivalTimestamp, epoch milliseconds (None: unknown, taken as before a replay).
    arrival_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Replayed:
    """What a replay put back: its records, and when it began sending them."""

    records: frozenset[tuple[str, int, int]]  # (topic, partition, offset)
    # A stream record that arrived at or after this time (epoch ms) is counted as the replay's.
    started_ms: float


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The verdict: `ok` means nothing lost, nothing out of order, nothing corrupted."""

    records: int  # in the source
    stream_records: int  # user records read from the stream (duplicates included)
    delivered: int  # distinct source records found
    lost: int
    out_of_order: int  # present, but dropped by the consumer rule (arrived after a later one)
    duplicates: int  # extra copies, removed by the consumer rule
    corrupted: int  # key, value or headers differ from the source
    unexpected: int  # records that are not in the source (another run, another topic)
    undecodable: int  # not envelope JSON
    keys: int
    partitions: int
    shards: int
    replayed: int = 0  # source records the replay put back
    # Dropped by the rule only because the replay put them back after newer records of their
    # keys (the ordering caveat): not counted in `out_of_order`.
    out_of_order_replayed: int = 0
    # Source records delivered through a claim-check pointer resolved from S3.
    claim_checks: int = 0
    # Pointers that could not be resolved (their copies deliver nothing).
    unresolved_claim_checks: int = 0

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.out_of_order == 0
            and self.corrupted == 0
            and self.undecodable == 0
        )

    def pairs(self) -> list[tuple[str, int]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


def read_stream(
    client: KinesisClient,
    stream: str,
    *,
    on_progress: Callable[[int], object] | None = None,
) -> tuple[list[StreamRecord], int]:
    """Every record of every shard from TRIM_HORIZON to the current end; parents first."""
    shards = []
    token: str | None = None
    while True:
        listing = (
            client.list_shards(NextToken=token) if token else client.list_shards(StreamName=stream)
        )
        shards.extend(listing["Shards"])
        token = listing.get("NextToken")
        if not token:
            break
    by_id = {s["ShardId"]: s for s in shards}
    ordered: list[str] = []

    def visit(shard_id: str) -> None:
        if shard_id in ordered or shard_id not in by_id:
            return
        shard = by_id[shard_id]
        for parent in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")):
            if parent:
                visit(parent)
        ordered.append(shard_id)

    for shard_id in sorted(by_id):
        visit(shard_id)

    deadline = time.monotonic() + _READ_DEADLINE_S
    records: list[StreamRecord] = []
    for shard_id in ordered:
        iterator: str | None = client.get_shard_iterator(
            StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator and time.monotonic() < deadline:
            page = client.get_records(ShardIterator=iterator, Limit=_GET_RECORDS_LIMIT)
            for record in page["Records"]:
                for data in _user_records(record["Data"]):
                    records.append(
                        StreamRecord(
                            shard_id,
                            record["SequenceNumber"],
                            data,
                            record["PartitionKey"],
                            record["ApproximateArrivalTimestamp"].timestamp() * 1000,
                        )
                    )
            if on_progress is not None and page["Records"]:
                on_progress(len(page["Records"]))
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break  # caught up with an open shard
            iterator = page.get("NextShardIterator")
    return records, len(ordered)


def _user_records(data: bytes) -> list[bytes]:
    try:
        return deaggregate(data)
    except MalformedAggregateError:
        return [data]  # no envelope: the audit counts it as undecodable


def read_topics(bootstrap: str, topics: list[str]) -> SourceLog:
    """The source of a stream that one or several topics are routed to."""
    source = SourceLog()
    for topic in topics:
        log = read_topic(bootstrap, topic)
        source.by_tp.update(log.by_tp)
        source.value_bytes += log.value_bytes
    return source


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def _unb64(value: str | None) -> bytes | None:
    return None if value is None else base64.b64decode(value)


def audit(
    source: SourceLog,
    stream_records: list[StreamRecord],
    shards: int = 0,
    replayed: Replayed | None = None,
    claim_checks: ObjectReader | None = None,
) -> AuditReport:
    """Check the stream (in the order read) against the source (and what a replay put back);
    claim-check pointers are resolved through `claim_checks` (an S3 client)."""
    index = {
        (r.topic, r.partition, r.offset): r for records in source.by_tp.values() for r in records
    }
    expected: dict[tuple[str, int, str | None], list[int]] = {}
    for records in source.by_tp.values():
        for r in records:
            expected.setdefault((r.topic, r.partition, _b64(r.key)), []).append(r.offset)

    seen: Counter[tuple[str, int, int]] = Counter()
    corrupted: set[tuple[str, int, int]] = set()
    # Records with a copy the replay did not write (it arrived before the replay began).
    written_before_replay: set[tuple[str, int, int]] = set()
    accepted: dict[tuple[str, int, str | None], list[int]] = {}
    dedup = OffsetDeduplicator()
    unexpected = undecodable = unresolved = 0
    claim_checked: set[tuple[str, int, int]] = set()
    for stream_record in stream_records:
        try:
            envelope = Envelope.from_bytes(stream_record.data)
            if envelope.claim_check is not None:
                envelope = _resolved(envelope, claim_checks)
                claim_checked.add((envelope.topic, envelope.partition, envelope.offset))
        except MalformedEnvelopeError:
            undecodable += 1
            continue
        except ClaimCheckError:
            unresolved += 1
            continue
        record_id = (envelope.topic, envelope.partition, envelope.offset)
        original = index.get(record_id)
        if original is None:
            unexpected += 1
            continue
        seen[record_id] += 1
        if (
            replayed is None
            or stream_record.arrival_ms is None
            or stream_record.arrival_ms < replayed.started_ms
        ):
            written_before_replay.add(record_id)
        headers = [(name, _unb64(value)) for name, value in envelope.headers]
        if envelope.key != _b64(original.key) or original.digest != content_digest(
            _unb64(envelope.value), headers
        ):
            corrupted.add(record_id)
        if dedup.accept(envelope, partition_key=stream_record.partition_key):
            accepted.setdefault(envelope.ordering_key, []).append(envelope.offset)

    lost = sum(1 for record_id in index if seen[record_id] == 0)
    put_back = replayed.records & index.keys() if replayed is not None else frozenset()
    out_of_order = out_of_order_replayed = 0
    for key, offsets in expected.items():
        got = set(accepted.get(key, ()))
        for offset in offsets:
            record_id = (key[0], key[1], offset)
            if not seen[record_id] or offset in got:
                continue
            if record_id in put_back and record_id not in written_before_replay:
                out_of_order_replayed += 1
            else:
                out_of_order += 1
    return AuditReport(
        records=len(index),
        stream_records=len(stream_records),
        delivered=len(index) - lost,
        lost=lost,
        out_of_order=out_of_order,
        duplicates=sum(count - 1 for count in seen.values() if count > 1),
        corrupted=len(corrupted),
        unexpected=unexpected,
        undecodable=undecodable,
        keys=len(expected),
        partitions=len(source.by_tp),
        shards=shards,
        replayed=len(put_back),
        out_of_order_replayed=out_of_order_replayed,
        claim_checks=len(claim_checked & index.keys()),
        unresolved_claim_checks=unresolved,
    )


def _resolved(pointer: Envelope, claim_checks: ObjectReader | None) -> Envelope:
    """The envelope a claim-check pointer stands for, read from S3 and checked; raises
    ClaimCheckError when it can not be (no S3 reader, object missing or not the record)."""
    if claim_checks is None:
        raise ClaimCheckError("a claim-check pointer, and no S3 client to resolve it with")
    return Envelope.from_bytes(json.dumps(resolve_claim_check(pointer, claim_checks)).encode())


# Where docs/replay.md explains why replayed records arrive after newer records of their keys.
ORDERING_CAVEAT: Final = "docs/replay.md#the-ordering-caveat"


def replayed_records(bodies: Iterable[tuple[str, bytes]]) -> frozenset[tuple[str, int, int]]:
    """(topic, partition, offset) of every record held by the objects a replay moved under
    `replayed/` (dead letters and on-failure batches), given as (key, body)."""
    from msk_kinesis_sink.replay.objects import parse_object

    return frozenset(
        (record.topic, record.partition, record.offset)
        for key, body in bodies
        for record in parse_object(key, body).records
    )


def caveat_note(report: AuditReport) -> str | None:
    """One line on the replayed records the rule drops, or None when there are none."""
    if not report.out_of_order_replayed:
        return None
    return (
        f"note: {report.out_of_order_replayed} replayed record(s) arrived after newer records of"
        f" their keys and the offset rule drops them: the ordering caveat, {ORDERING_CAVEAT}"
    )


def _operator_s3() -> S3Client:
    """S3 with the operator's credentials (AWS_ENDPOINT_URL_S3 for a local S3)."""
    from msk_kinesis_sink.replay.aws_access import operator_s3_client

    return operator_s3_client(os.environ)


def _replayed_in_bucket(bucket: str, started_ms: float) -> Replayed:
    """The records of the objects under `replayed/` in `bucket` (the operator's credentials;
    AWS_ENDPOINT_URL_S3 for a local S3)."""
    from msk_kinesis_sink.replay.aws_access import S3ObjectStore
    from msk_kinesis_sink.replay.objects import REPLAYED_PREFIX

    store = S3ObjectStore(_operator_s3(), bucket)
    keys = [stored.key for stored in store.list(REPLAYED_PREFIX)]
    return Replayed(replayed_records((key, store.read(key)) for key in keys), started_ms)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m localloop.audit",
        description="Read a Kinesis stream (envelope records) and verify it against a Kafka topic:"
        " lost, out of order (under the consumer rule), duplicated, corrupted. Exit status 0: all"
        " in order; 1: something lost, out of order or corrupted; 2: an option, a broker, a topic"
        " or a stream it can't use.",
    )
    parser.add_argument("--stream", required=True, help="Kinesis stream name")
    parser.add_argument(
        "--endpoint", default=None, help="Kinesis endpoint URL (default: AWS, usual credentials)"
    )
    parser.add_argument("--region", default=DEFAULT_REGION)
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers (the source)")
    parser.add_argument(
        "--topic",
        action="append",
        required=True,
        help="source topic; repeat it for a stream that several topics are routed to",
    )
    parser.add_argument(
        "--claim-checks",
        action="store_true",
        help="resolve claim-check pointers (OVERSIZE_RECORDS=claim_check) from the S3 objects they"
        " name, with your credentials (AWS_ENDPOINT_URL_S3 for a local S3); without it, each"
        " pointer is unresolved and its record lost",
    )
    replay = parser.add_argument_group(
        "after a replay", f"tell replayed records (the ordering caveat, {ORDERING_CAVEAT}) apart"
    )
    replay.add_argument(
        "--replayed",
        metavar="BUCKET",
        help="the dead-letter bucket: its objects under replayed/ are what the replay delivered",
    )
    replay.add_argument(
        "--replay-started",
        metavar="WHEN",
        help="when the replay began: an ISO 8601 time (UTC unless it names an offset) or an age"
        " (30m); copies that arrived before it were written by the sink",
    )
    args = parser.parse_args(argv)
    if (args.replayed is None) != (args.replay_started is None):
        parser.error("--replayed and --replay-started go together")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    quiet_client_logs("WARNING")
    try:
        replayed = None
        if args.replayed is not None:
            from msk_kinesis_sink.replay.cli import parse_when

            started = parse_when(args.replay_started, datetime.now(UTC))
            replayed = _replayed_in_bucket(args.replayed, started.timestamp() * 1000)
        claim_checks = _operator_s3() if args.claim_checks else None
        source = read_topics(args.bootstrap, args.topic)
        records, shards = read_stream(kinesis_client(args.endpoint, args.region), args.stream)
    except (BrokerUnreachableError, ProcessFailedError) as error:
        print(f"audit: kafka: {error}", file=sys.stderr)
        return 2
    except (argparse.ArgumentTypeError, ReplayError, UnreadableObjectError) as error:
        print(f"audit: {error}", file=sys.stderr)
        return 2
    except SDK_ERRORS as error:
        code, message = describe_error(error)
        print(f"audit: stream {args.stream}: {code}: {message}", file=sys.stderr)
        return 2
    report = audit(source, records, shards, replayed, claim_checks=claim_checks)
    for name, value in report.pairs():
        print(f"  {name:<21} {value}")
    note = caveat_note(report)
    if note:
        print(note)
    print(" ".join(f"{name}={value}" for name, value in report.pairs()) + f" ok={report.ok}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
