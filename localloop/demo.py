"""`make demo`: the whole loop on loopback, verified.

A tansu broker and kinesalite start on free ports; a topic gets a realistic workload; the ESM
emulator invokes the real sink, which writes through the fault proxy; then the stream is read back
and audited against the topic. The last line printed is one `key=value` summary line. Exit status 1
if anything was lost, out of order or corrupted. With `--routes`, two topics go to two streams by
STREAM_ROUTES, and each stream is audited against its own topic.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import fields
from pathlib import Path
from types import FrameType
from typing import Final

from tqdm import tqdm

from localloop.audit import AuditReport, audit, read_stream
from localloop.broker import TansuBroker, create_topic
from localloop.destination import FolderDestination
from localloop.esm import EsmConfig, EsmStats
from localloop.faults import DEFAULT_DEMO_FAULTS, FaultSpec
from localloop.function import SinkFunction, sink_env
from localloop.kinesis_local import Kinesalite, create_stream, kinesis_client
from localloop.mapping import EventSourceMapping
from localloop.proxy import FaultProxy, ProxyStats
from localloop.workload import SourceLog, WorkloadSpec, produce

DEFAULT_WORKDIR: Final = Path(".demo")
# A topic name with both '.' and '-': `records` keys must never be split to find the partition.
TOPIC: Final = "orders.v1-events"
STREAM: Final = "orders-mirror"
# `--routes`: two topics, each routed to its own stream (docs/routing.md).
ROUTED_LANES: Final = {TOPIC: STREAM, "payments.v1-events": "payments-mirror"}
ROUTES: Final = "orders.*=orders-mirror,payments.*=payments-mirror"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m localloop.demo", description=__doc__)
    parser.add_argument("--records", type=int, default=int(os.environ.get("RECORDS", "20000")))
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--batching-window", type=float, default=0.1, help="seconds")
    parser.add_argument(
        "--concurrency", type=int, default=3, help="pollers (concurrent function instances)"
    )
    # Short on purpose, with KINESIS_TIMEOUT_SECONDS=1 (a 2.5 s safety margin): batches of hot keys
    # meet the deadline, so the run shows partial responses and the ESM resuming partitions.
    parser.add_argument("--function-timeout", type=float, default=4.0, help="seconds")
    parser.add_argument(
        "--faults",
        default=os.environ.get("FAULTS", DEFAULT_DEMO_FAULTS),
        help=f"fault spec, 'none' for none (default: FAULTS or {DEFAULT_DEMO_FAULTS})",
    )
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SEED", "1")))
    parser.add_argument(
        "--aggregation", choices=("on", "off"), default=os.environ.get("AGGREGATION", "on")
    )
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument(
        "--routes",
        action="store_true",
        help=f"two topics into two streams by STREAM_ROUTES={ROUTES} (records split between them)",
    )
    return parser.parse_args(argv)


_STANDARD_ATTRS: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class _ExtrasFormatter(logging.Formatter):
    """Plain lines plus the structured fields passed as `extra=` (counts, offsets, timings)."""

    def format(self, record: logging.LogRecord) -> str:
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}
        line = super().format(record)
        return f"{line} {extras}" if extras else line


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so every `with` block stops the process it started


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    workdir: Path = args.workdir
    logs = workdir / "logs"
    # Each run starts clean: the report counts this run's on-failure documents only.
    shutil.rmtree(workdir / "on-failure", ignore_errors=True)
    logs.mkdir(parents=True, exist_ok=True)
    # The function logs one JSON line per invocation; keep them in a file, off the terminal.
    handler = logging.FileHandler(logs / "function.log", mode="w")
    handler.setFormatter(_ExtrasFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    spec = FaultSpec.parse(args.faults)
    if spec.seed == 0:
        spec = dataclasses.replace(spec, seed=args.seed)
    lanes = ROUTED_LANES if args.routes else {TOPIC: STREAM}
    started = time.monotonic()

    with ExitStack() as stack:
        broker = stack.enter_context(TansuBroker(log_path=logs / "tansu.log"))
        kinesalite = stack.enter_context(Kinesalite(log_path=logs / "kinesalite.log"))
        print(
            f"broker   tansu at {broker.bootstrap} ({broker.startup_s:.1f} s)\n"
            f"kinesis  kinesalite at {kinesalite.endpoint} ({kinesalite.startup_s:.1f} s)",
            file=sys.stderr,
        )
        for topic, stream in lanes.items():
            create_topic(broker.bootstrap, topic, args.partitions)
            create_stream(kinesis_client(kinesalite.endpoint), stream, args.shards)

        produce_started = time.monotonic()
        sources: dict[str, SourceLog] = {}
        with tqdm(total=args.records, desc="produce ", unit="rec", file=sys.stderr) as bar:
            for index, topic in enumerate(lanes):
                records = args.records // len(lanes) + (index < args.records % len(lanes))
                workload = WorkloadSpec(
                    records=records, partitions=args.partitions, seed=args.seed + index
                )
                sources[topic] = produce(broker.bootstrap, topic, workload, on_progress=bar.update)
        produce_s = time.monotonic() - produce_started
        end_offsets = {tp: end for s in sources.values() for tp, end in s.end_offsets().items()}

        proxy = stack.enter_context(FaultProxy(kinesalite.endpoint, spec))
        print(f"faults   {spec.describe()} (proxy at {proxy.endpoint})", file=sys.stderr)
        config = EsmConfig(
            bootstrap_servers=broker.bootstrap,
            batch_size=args.batch_size,
            batching_window_s=args.batching_window,
            function_timeout_s=args.function_timeout,
        )
        env = sink_env(
            stream=None if args.routes else STREAM,
            endpoint=proxy.endpoint,
            extra={
                **({"STREAM_ROUTES": ROUTES} if args.routes else {}),
                "RECORD_FORMAT": "envelope",
                "AGGREGATION": args.aggregation,
                "POWERTOOLS_METRICS_NAMESPACE": "local",
                "KINESIS_TIMEOUT_SECONDS": os.environ.get("KINESIS_TIMEOUT_SECONDS", "1"),
            },
        )
        destination = FolderDestination(workdir / "on-failure", mapping_uuid=config.uuid)
        esm_started = time.monotonic()
        with tqdm(
            total=sum(s.total for s in sources.values()),
            desc="deliver ",
            unit="rec",
            file=sys.stderr,
        ) as bar:
            mapping = EventSourceMapping(
                config,
                topics=list(lanes),
                function_factory=lambda: SinkFunction(env),
                destination=destination,
                concurrency=args.concurrency,
                on_progress=bar.update,
            )
            esm_stats = mapping.run(end_offsets=end_offsets)
        esm_s = time.monotonic() - esm_started
        proxy_stats = proxy.stats

        audit_started = time.monotonic()
        reports: dict[str, AuditReport] = {}
        with tqdm(desc="read    ", unit="rec", file=sys.stderr) as bar:
            for topic, stream in lanes.items():
                stream_records, shards = read_stream(
                    kinesis_client(kinesalite.endpoint), stream, on_progress=bar.update
                )
                # Each stream against its own topic: a record of the other one is `unexpected`.
                reports[stream] = audit(sources[topic], stream_records, shards)
        audit_s = time.monotonic() - audit_started

    total_s = time.monotonic() - started
    report = _total(reports.values())
    # Routed, a record in the wrong stream is a failure too (it is `unexpected` there).
    ok = report.ok and esm_stats.records_discarded == 0 and not (args.routes and report.unexpected)
    _print_report(
        report=report,
        ok=ok,
        streams=reports if args.routes else {},
        esm=esm_stats,
        proxy=proxy_stats,
        value_mb=sum(s.value_bytes for s in sources.values()) / 1e6,
        produce_s=produce_s,
        esm_s=esm_s,
        audit_s=audit_s,
        total_s=total_s,
        discarded_docs=sum(1 for _ in destination.documents()),
        workdir=workdir,
    )
    return 0 if ok else 1


def _total(reports: Iterable[AuditReport]) -> AuditReport:
    """Several streams' audits as one (counts added up)."""
    listed = list(reports)
    return AuditReport(
        **{f.name: sum(getattr(r, f.name) for r in listed) for f in fields(AuditReport)}
    )


def _stream_line(prefix: str, report: AuditReport) -> str:
    routed = f", {report.unexpected} from another topic" if prefix else ""
    return (
        f"stream     {prefix}{report.stream_records} records in {report.shards} shards: "
        f"{report.delivered} delivered, {report.duplicates} duplicates (dropped by the consumer "
        f"rule), {report.lost} lost, {report.out_of_order} out of order, "
        f"{report.corrupted} corrupted{routed}"
    )


def _print_report(
    *,
    report: AuditReport,
    ok: bool,
    streams: Mapping[str, AuditReport],
    esm: EsmStats,
    proxy: ProxyStats,
    value_mb: float,
    produce_s: float,
    esm_s: float,
    audit_s: float,
    total_s: float,
    discarded_docs: int,
    workdir: Path,
) -> None:
    rate = report.records / esm_s if esm_s else 0.0
    lines = [
        "",
        f"source     {report.records} records, {value_mb:.1f} MB of values, "
        f"{report.partitions} partitions, {report.keys} keys",
        f"esm        {esm.invocations} invocations ({esm.retries} retries, "
        f"{esm.partial_failures} partial, {esm.function_errors} errors, {esm.timeouts} timeouts), "
        f"max batch {esm.max_batch_records} records / {esm.max_payload_bytes / 1e6:.2f} MB, "
        f"least time left {esm.least_time_left_ms} ms",
        f"faults     {proxy.summary()}",
        *(
            [_stream_line("", report)]
            if not streams
            else [_stream_line(f"{name}: ", r) for name, r in streams.items()]
        ),
        f"discarded  {esm.records_discarded} records ({discarded_docs} on-failure documents in "
        f"{workdir / 'on-failure'})",
        f"time       produce {produce_s:.1f} s, deliver {esm_s:.1f} s ({rate:.0f} records/s), "
        f"audit {audit_s:.1f} s, total {total_s:.1f} s; logs in {workdir / 'logs'}",
        "verdict    " + ("OK" if ok else "FAILED"),
    ]
    print("\n".join(lines))
    summary = {
        "records": report.records,
        "delivered": report.delivered,
        "lost": report.lost,
        "out_of_order": report.out_of_order,
        "duplicates": report.duplicates,
        "corrupted": report.corrupted,
        "discarded": esm.records_discarded,
        "invocations": esm.invocations,
        "retries": esm.retries,
        "throttled": proxy.records_throttled + proxy.requests_throttled,
        "lost_responses": proxy.responses_lost,
        "records_per_s": f"{rate:.0f}",
        "mb_per_s": f"{value_mb / esm_s if esm_s else 0.0:.1f}",
        "seconds": f"{total_s:.1f}",
        "ok": str(ok).lower(),
    }
    print(" ".join(f"{k}={v}" for k, v in summary.items()), flush=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: local servers stopped", file=sys.stderr)
        sys.exit(130)
