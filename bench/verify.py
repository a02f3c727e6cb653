"""Read a run's records back from kinesalite and audit them against the workload.

The local loop's auditor judges the stream under the consumer rule: nothing lost, nothing out of
order per (topic, partition, key), nothing corrupted; duplicates are counted. Aggregated records
are unpacked on the way (`deaggregate`). Only `envelope` workloads can be audited: the envelope
carries the topic, partition and offset each record came from.
"""

from __future__ import annotations

from typing import Any

from bench.endpoints import STREAM
from bench.workloads import TOPIC, WARM_UP_TOPIC, Workload
from localloop.audit import StreamRecord, audit, read_stream
from localloop.kinesis_local import kinesis_client
from localloop.workload import SourceLog, SourceRecord, content_digest
from msk_kinesis_sink.consumer import Envelope


def source_log(workload: Workload) -> SourceLog:
    """The auditor's view of the workload: every record's place, key and content digest."""
    log = SourceLog()
    for record in workload.records:
        log.value_bytes += len(record.value)
        log.add(
            SourceRecord(
                TOPIC, record.partition, record.offset, record.key, content_digest(record.value, [])
            )
        )
    log.sort()
    return log


def without_warm_up(records: list[StreamRecord]) -> list[StreamRecord]:
    """Drop the warm-up invocation's records (their own topic), keep everything else."""
    kept = []
    for record in records:
        try:
            if Envelope.from_bytes(record.data).topic == WARM_UP_TOPIC:
                continue
        except (ValueError, KeyError, TypeError):
            pass  # not an envelope: the audit counts it as undecodable
        kept.append(record)
    return kept


def verify(workload: Workload, kinesalite_url: str) -> dict[str, Any]:
    """The audit of what the run left in the stream, as a JSON-ready dict with `ok`."""
    records, shards = read_stream(kinesis_client(kinesalite_url), STREAM)
    report = audit(source_log(workload), without_warm_up(records), shards)
    return {**dict(report.pairs()), "ok": report.ok and report.unexpected == 0}
