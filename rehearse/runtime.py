"""The function's process: `python -m rehearse.runtime JOB.json`, started with the deployed
function's environment and its role's session, the deployed code first on the path.

Like Lambda's runtime, it imports the handler the function names (the init phase, at the first
invocation) and invokes it; the ESM emulator's pollers, one per mapping of the template with its
settings, feed it the variant's records. It writes what each mapping did to the job's result file.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import time
import uuid as uuid_module
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from localloop.esm import EsmConfig, ExecutionEnvironment, Function, Poller
from localloop.events import KafkaRecord, TopicPartition
from rehearse.workload import TopicWorkload, by_partition, kafka_records

log = logging.getLogger("rehearse.runtime")
# What the function's event says of the cluster (the records never came from one).
BOOTSTRAP_SERVERS: Final = "b-1.rehearsal.local:9098"


class MemorySource:
    """A mapping's partitions held in memory: polled in offset order, commits remembered."""

    def __init__(self, records: list[KafkaRecord]) -> None:
        self._partitions = by_partition(records)
        self._next = dict.fromkeys(self._partitions, 0)
        self.committed: dict[TopicPartition, int] = {}

    def poll(self, max_records: int, timeout_s: float) -> list[KafkaRecord]:
        out: list[KafkaRecord] = []
        share = max(1, max_records // max(1, len(self._partitions)))
        for tp, records in self._partitions.items():
            room = min(share, max_records - len(out))
            taken = records[self._next[tp] : self._next[tp] + room]
            self._next[tp] += len(taken)
            out.extend(taken)
        if not out and timeout_s > 0:
            # A consumer's poll waits its timeout for records that do not come; returning at
            # once would spin the poller through its batching window.
            time.sleep(timeout_s)
        return out

    def commit(self, next_offsets: Mapping[TopicPartition, int]) -> None:
        self.committed.update(next_offsets)

    def caught_up(self) -> bool:
        return all(self._next[tp] >= len(r) for tp, r in self._partitions.items())

    def done(self) -> bool:
        """Every record committed (delivered, or given up on)."""
        return all(
            self.committed.get(tp, 0) >= records[-1].offset + 1
            for tp, records in self._partitions.items()
        )

    def close(self) -> None:
        pass


class S3OnFailureDestination:
    """A mapping's S3 on-failure destination: one object per discarded batch, under the key
    layout Lambda uses, written with the function's role as Lambda writes it."""

    def __init__(self, bucket: str, mapping_uuid: str) -> None:
        import boto3  # the role's credentials and the endpoint come from the environment

        self._client = boto3.client("s3")
        self._bucket = bucket
        self._uuid = mapping_uuid

    def send(self, document: Mapping[str, Any], partition: str) -> None:
        now = time.gmtime()
        key = (
            f"aws/lambda/{self._uuid}/{partition}/{time.strftime('%Y/%m/%d', now)}/"
            f"{time.strftime('%Y-%m-%dT%H.%M.%S', now)}-{uuid_module.uuid4()}"
        )
        body = json.dumps(document).encode()
        try:
            self._client.put_object(Bucket=self._bucket, Key=key, Body=body)
        except Exception as error:  # Lambda counts it (DestinationDeliveryFailures), goes on
            log.warning("on-failure delivery to s3://%s failed: %s", self._bucket, error)


@dataclass(frozen=True, slots=True)
class MappingJob:
    """One mapping as the template sets it, and the records of its topic."""

    uuid: str
    event_source_arn: str
    batch_size: int
    batching_window_s: float
    maximum_retry_attempts: int
    maximum_record_age_s: float
    bisect: bool
    on_failure_bucket: str | None
    workload: TopicWorkload

    def to_json(self) -> dict[str, object]:
        document = asdict(self)
        document["workload"] = self.workload.to_json()
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> MappingJob:
        fields = dict(document)
        fields["workload"] = TopicWorkload.from_json(document["workload"])
        return cls(**fields)


def load_handler(name: str) -> Function:
    """The handler `module.function` names, imported (Lambda's init phase)."""
    module, _, attribute = name.rpartition(".")
    handler: Function = getattr(importlib.import_module(module), attribute)
    return handler


def run(job: Mapping[str, Any]) -> dict[str, Any]:
    """Every mapping's pollers in turn, one invocation at a time, until all is committed."""
    environment = ExecutionEnvironment(lambda: load_handler(job["handler"]))
    function = job["function"]
    pollers: list[tuple[MappingJob, Poller, MemorySource]] = []
    for document in job["mappings"]:
        mapping = MappingJob.from_json(document)
        source = MemorySource(kafka_records(mapping.workload))
        config = EsmConfig(
            bootstrap_servers=BOOTSTRAP_SERVERS,
            batch_size=mapping.batch_size,
            batching_window_s=mapping.batching_window_s,
            maximum_retry_attempts=mapping.maximum_retry_attempts,
            maximum_record_age_s=mapping.maximum_record_age_s,
            bisect_batch_on_function_error=mapping.bisect,
            function_name=function["name"],
            function_timeout_s=function["timeout_s"],
            memory_mb=function["memory_mb"],
            region=job["region"],
            event_source_arn=mapping.event_source_arn,
            uuid=mapping.uuid,
        )
        destination = (
            None
            if mapping.on_failure_bucket is None
            else S3OnFailureDestination(mapping.on_failure_bucket, mapping.uuid)
        )
        pollers.append((mapping, Poller(config, source, environment, destination), source))
    while not all(source.done() for _, _, source in pollers):
        for _, poller, source in pollers:
            if not source.done():
                poller.run_once()
    code = sys.modules.get("msk_kinesis_sink")
    return {
        "code": getattr(code, "__file__", None),
        "mappings": [
            {"uuid": m.uuid, "topic": m.workload.topic, "stats": asdict(p.stats)}
            for m, p, _ in pollers
        ],
    }


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    job_path = Path(arguments[0])
    job = json.loads(job_path.read_text(encoding="utf-8"))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = run(job)
    Path(job["result"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
