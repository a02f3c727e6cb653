"""Read back what the function wrote and audit it: each stream against the topics routed to it
(localloop.audit, the consumer rule), and the dead-letter bucket against the records too large
for the stream (one object each, encrypted with the bucket's key)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from localloop.audit import AuditReport, StreamRecord, audit, read_stream
from localloop.events import KafkaRecord
from msk_kinesis_sink.consumer import Envelope, resolve_claim_check
from msk_kinesis_sink.settings import OversizeRecords, Settings
from rehearse.aws import Identity, client
from rehearse.runtime import MappingJob
from rehearse.workload import kafka_records, source_log

# Where the mappings put discarded batches (Lambda's layout; rehearse.runtime).
ON_FAILURE_PREFIX = "aws/lambda/"


@dataclass(frozen=True, slots=True)
class StreamAudit:
    stream: str
    topics: tuple[str, ...]
    report: AuditReport


@dataclass(frozen=True, slots=True)
class DeadLetterAudit:
    """The function's dead letters and the mappings' discarded batches, as found."""

    bucket: str
    expected: int
    found: int = 0
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    # not SSE-KMS with the bucket's key, or holding another record
    not_as_expected: tuple[str, ...] = ()
    discarded_batches: int = 0
    key: str | None = None

    @property
    def ok(self) -> bool:
        return not (
            self.missing or self.unexpected or self.not_as_expected or self.discarded_batches
        )


@dataclass(frozen=True, slots=True)
class Sent:
    """What the run sent: each topic's records, and which were too large for the stream."""

    records: Mapping[str, list[KafkaRecord]]
    oversize: tuple[KafkaRecord, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, jobs: Sequence[MappingJob]) -> Sent:
        records = {job.workload.topic: kafka_records(job.workload) for job in jobs}
        oversize = tuple(
            record
            for job in jobs
            if job.workload.oversize
            for record in records[job.workload.topic]
            if len(record.value or b"") >= job.workload.oversize_bytes
        )
        return cls(records, oversize)


def audit_streams(
    endpoint: str, operator: Identity, variables: Mapping[str, str], sent: Sent
) -> list[StreamAudit]:
    """Each stream the function's settings route a topic to, against those topics' records
    (less the ones that belong in the dead-letter bucket; with claim checks, every record, each
    pointer resolved from S3 as a consumer would)."""
    settings = Settings.from_env(variables)
    claim_checks = settings.oversize_records is OversizeRecords.CLAIM_CHECK
    dead = set() if claim_checks else {(r.topic, r.partition, r.offset) for r in sent.oversize}
    streams: dict[str, list[str]] = {}
    for topic in sent.records:
        target = settings.stream_for(topic) or ""
        streams.setdefault(target.rpartition("/")[2] or target, []).append(topic)
    kinesis = client("kinesis", endpoint, operator)
    audits = []
    for stream, topics in streams.items():
        expected = [
            r
            for t in topics
            for r in sent.records[t]
            if (r.topic, r.partition, r.offset) not in dead
        ]
        records, shards = read_stream(kinesis, stream)
        if claim_checks:
            s3 = client("s3", endpoint, operator)
            records = [_resolved(record, s3) for record in records]
        audits.append(
            StreamAudit(stream, tuple(topics), audit(source_log(expected), records, shards))
        )
    return audits


def audit_dead_letters(
    endpoint: str, operator: Identity, variables: Mapping[str, str], sent: Sent
) -> DeadLetterAudit | None:
    """One object per oversize record, where the function's settings say, under the bucket's
    key; and no batch the mappings discarded."""
    settings = Settings.from_env(variables)
    bucket = settings.dead_letter_bucket
    if bucket is None:
        return None
    s3 = client("s3", endpoint, operator)
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    default = encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]
    key = default.get("KMSMasterKeyID")
    prefix = settings.dead_letter_prefix
    # With claim checks, oversize records are in the stream (as pointers), not dead letters.
    dead = () if settings.oversize_records is OversizeRecords.CLAIM_CHECK else sent.oversize
    expected = {f"{prefix}{r.topic}/{r.partition}/{r.offset}.json": r for r in dead}
    found = _keys(s3, bucket, prefix)
    not_as_expected = []
    for name in sorted(found & set(expected)):
        head = s3.head_object(Bucket=bucket, Key=name)
        if head.get("ServerSideEncryption") != "aws:kms" or head.get("SSEKMSKeyId") != key:
            not_as_expected.append(name)
        document = json.loads(s3.get_object(Bucket=bucket, Key=name)["Body"].read())
        if document.get("offset") != expected[name].offset:
            not_as_expected.append(f"{name} (holds offset {document.get('offset')})")
    return DeadLetterAudit(
        bucket=bucket,
        expected=len(expected),
        found=len(found),
        missing=tuple(sorted(set(expected) - found)),
        unexpected=tuple(sorted(found - set(expected))),
        not_as_expected=tuple(not_as_expected),
        discarded_batches=len(_keys(s3, bucket, ON_FAILURE_PREFIX)),
        key=key,
    )


def _resolved(record: StreamRecord, s3: Any) -> StreamRecord:
    """A claim-check pointer replaced by the envelope it stands for (size and digest checked);
    any other record as it is."""
    envelope = Envelope.from_bytes(record.data)
    if envelope.claim_check is None:
        return record
    original = json.dumps(resolve_claim_check(envelope, s3)).encode()
    return dataclasses.replace(record, data=original)


def _keys(s3: Any, bucket: str, prefix: str) -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}
