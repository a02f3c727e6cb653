"""Read back what the function wrote and audit it: each stream against the topics routed to it
(localloop.audit, the consumer rule), and the dead-letter bucket against the records too large
for the stream (one object each, encrypted with the bucket's key)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from localloop.audit import AuditReport, audit, read_stream
from localloop.events import KafkaRecord
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
        s3 = client("s3", endpoint, operator) if claim_checks else None
        report = audit(source_log(expected), records, shards, claim_checks=s3)
        audits.append(StreamAudit(stream, tuple(topics), report))
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


def _keys(s3: Any, bucket: str, prefix: str) -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}
