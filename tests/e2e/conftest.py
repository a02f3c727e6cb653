"""Fixtures for end-to-end tests: one tansu broker and one kinesalite per session, on free
loopback ports; each test makes its own topic and stream (and its own fault proxy)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from localloop.audit import AuditReport, audit, read_stream
from localloop.audit import main as audit_main
from localloop.broker import TansuBroker, create_topic
from localloop.destination import FolderDestination
from localloop.esm import EsmConfig, EsmStats, Function
from localloop.function import SinkFunction, sink_env
from localloop.function_process import FunctionProcess
from localloop.kinesis_local import DUMMY_CREDENTIALS, Kinesalite, create_stream, kinesis_client
from localloop.local_s3 import MotoServer, s3_client
from localloop.mapping import EventSourceMapping
from localloop.workload import SourceLog


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    with TansuBroker(log_path=tmp_path_factory.mktemp("logs") / "tansu.log") as server:
        yield server


@pytest.fixture(scope="session")
def kinesalite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kinesalite]:
    with Kinesalite(log_path=tmp_path_factory.mktemp("logs") / "kinesalite.log") as server:
        yield server


@dataclass(frozen=True)
class Lane:
    """A fresh topic and stream for one test, and helpers to run the loop over them."""

    bootstrap: str
    topic: str
    kinesis_endpoint: str
    stream: str
    workdir: Path

    def sink(self, endpoint: str, **env: str) -> Callable[[], Function]:
        """A factory of real sinks writing envelope records through `endpoint`."""
        settings = self.sink_env(endpoint, **env)
        return lambda: SinkFunction(settings)

    def process_sink(self, endpoint: str, **env: str) -> Callable[[], Function]:
        """A factory of real sinks like `sink`, each in a process of its own, as Lambda runs it:
        for tests that judge the function's deadline. In the test process, the function would
        share the interpreter with the emulator and the whole suite: a collection of that heap
        (a second and more on a busy machine) stops every thread, and would count as the
        function's time."""
        settings = self.sink_env(endpoint, **env)
        return lambda: FunctionProcess(settings, log_level="WARNING")

    def sink_env(self, endpoint: str, **env: str) -> dict[str, str]:
        """The sink's settings: envelope records to this lane's stream through `endpoint`."""
        return sink_env(
            stream=self.stream,
            endpoint=endpoint,
            extra={"RECORD_FORMAT": "envelope", "RETRY_BASE_MS": "5", "RETRY_MAX_MS": "100", **env},
        )

    def config(self, **overrides: Any) -> EsmConfig:
        values: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "batching_window_s": 0.05,
            "retry_backoff_s": 0.0,
        }
        values.update(overrides)
        return EsmConfig(**values)

    def deliver(
        self,
        source: SourceLog,
        function_factory: Callable[[], Function],
        *,
        config: EsmConfig | None = None,
        destination: FolderDestination | None = None,
        concurrency: int = 1,
    ) -> EsmStats:
        """Run the mapping until every produced record is committed (or discarded)."""
        mapping = EventSourceMapping(
            config or self.config(),
            topics=[self.topic],
            function_factory=function_factory,
            destination=destination,
            concurrency=concurrency,
        )
        return mapping.run(end_offsets=source.end_offsets())

    def audit(self, source: SourceLog) -> AuditReport:
        records, shards = read_stream(kinesis_client(self.kinesis_endpoint), self.stream)
        return audit(source, records, shards)

    def audit_argv(self) -> list[str]:
        """The auditor's command line for this lane's topic and stream (`make audit`)."""
        return [
            *("--bootstrap", self.bootstrap, "--topic", self.topic),
            *("--stream", self.stream, "--endpoint", self.kinesis_endpoint),
        ]

    def run_audit(self, capsys: pytest.CaptureFixture[str], *more: str) -> tuple[int, str]:
        """`make audit` over this lane, with options `more`: its exit status and its output."""
        status = audit_main([*self.audit_argv(), *more])
        return status, capsys.readouterr().out

    def stream_offsets(self) -> Mapping[tuple[str, int], list[int]]:
        """Offsets found in the stream per topic-partition, in read order (duplicates kept)."""
        from msk_kinesis_sink.consumer import Envelope

        records, _ = read_stream(kinesis_client(self.kinesis_endpoint), self.stream)
        out: dict[tuple[str, int], list[int]] = {}
        for record in records:
            envelope = Envelope.from_bytes(record.data)
            out.setdefault((envelope.topic, envelope.partition), []).append(envelope.offset)
        return out


class LaneFactory(Protocol):
    def __call__(self, *, partitions: int, shards: int = 2) -> Lane: ...


@pytest.fixture
def lane_factory(broker: TansuBroker, kinesalite: Kinesalite, tmp_path: Path) -> LaneFactory:
    def make(*, partitions: int, shards: int = 2) -> Lane:
        suffix = uuid.uuid4().hex[:8]
        # Dots and dashes in the topic name: `records` keys must never be split to find partitions.
        topic = f"e2e.orders-{suffix}"
        stream = f"e2e-{suffix}"
        create_topic(broker.bootstrap, topic, partitions)
        create_stream(kinesis_client(kinesalite.endpoint), stream, shards)
        return Lane(broker.bootstrap, topic, kinesalite.endpoint, stream, tmp_path)

    return make


@dataclass(frozen=True)
class LocalBucket:
    """A bucket in moto's S3 server, for one test."""

    endpoint: str
    name: str

    def storage(self) -> dict[str, str]:
        """The function's settings that make it its dead-letter (and claim-check) bucket."""
        return {"DEAD_LETTER_BUCKET": self.name, "AWS_ENDPOINT_URL_S3": self.endpoint}


@pytest.fixture
def local_bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalBucket]:
    """moto's S3 server with one bucket; the operator's environment (the auditor's, which reads
    os.environ) points at it, with dummy credentials."""
    with MotoServer(log_path=tmp_path / "moto.log") as server:
        bucket = LocalBucket(server.endpoint, f"bucket-{uuid.uuid4().hex[:12]}")
        s3_client(server.endpoint).create_bucket(Bucket=bucket.name)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.endpoint)
        for name, value in DUMMY_CREDENTIALS.items():
            monkeypatch.setenv(name, value)
        yield bucket
