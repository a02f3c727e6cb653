"""`make demo`: the whole loop on loopback, verified.

A tansu broker and kinesalite start on free ports; a topic gets a realistic workload; the ESM
emulator invokes the real sink, which writes through the fault proxy; then the stream is read back
and audited against the topic. The last line printed is one `key=value` summary line. Exit status 1
if anything was lost, out of order, corrupted or discarded; 2, with one line saying why, for an
option, variable or function setting it can't use. With `--routes`, two topics go to two streams
by STREAM_ROUTES, and each stream is audited against its own topic.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Final, NoReturn, TextIO

from tqdm import tqdm

from localloop.audit import AuditReport, audit, read_stream
from localloop.broker import TansuBroker, create_topic
from localloop.destination import FolderDestination
from localloop.esm import EsmConfig, EsmStats
from localloop.faults import DEFAULT_DEMO_FAULTS, FaultSpec, FaultSpecError
from localloop.function import SinkFunction, check_function_env, sink_env
from localloop.kinesis_local import Kinesalite, create_stream, kinesis_client
from localloop.mapping import EventSourceMapping
from localloop.proxy import FaultProxy, ProxyStats
from localloop.workload import WORKLOAD_EPOCH_MS, SourceLog, WorkloadSpec, produce
from msk_kinesis_sink.errors import ConfigurationError
from msk_kinesis_sink.limits import MAX_BATCH_SIZE

DEFAULT_WORKDIR: Final = Path(".demo")
# A topic name with both '.' and '-': `records` keys must never be split to find the partition.
TOPIC: Final = "orders.v1-events"
STREAM: Final = "orders-mirror"
# `--routes`: two topics, each routed to its own stream (docs/routing.md).
ROUTED_LANES: Final = {TOPIC: STREAM, "payments.v1-events": "payments-mirror"}
ROUTES: Final = "orders.*=orders-mirror,payments.*=payments-mirror"
# Where the function's settings are checked before the fault proxy (and its port) exists.
_NO_ENDPOINT_YET: Final = "http://127.0.0.1:9"


class DemoInputError(ValueError):
    """An option or variable of the demo that it can't use (its message names it)."""


class _Parser(argparse.ArgumentParser):
    """Argument mistakes in one line, as synth reports a bad key (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"configuration error: {message}\n")


# The converters below raise ValueError with what is wrong, to follow the value they were given:
# "RECORDS='abc' is not a whole number".


def _whole_number(text: str, *, minimum: int, maximum: int | None = None) -> int:
    """A whole number in ASCII digits within the bounds."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise ValueError("is not a whole number")
    value = int(text)
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f"{minimum}-{maximum}" if maximum is not None else f"at least {minimum}"
        raise ValueError(f"is out of range (allowed: {allowed})")
    return value


def _seconds(text: str, *, positive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("is not a number of seconds") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"must be {'above' if positive else 'at least'} 0 seconds")
    return value


def _fault_spec(text: str) -> FaultSpec:
    try:
        return FaultSpec.parse(text)
    except FaultSpecError as error:
        raise ValueError(f"is not a fault spec: {error}") from None


def _arg_type(convert: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse type whose message says what is wrong with the value."""

    def parse(text: str) -> object:
        try:
            return convert(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{text!r} {error}") from None

    return parse


# Inputs `make demo` takes from the environment too (`make demo RECORDS=5000 FAULTS=none`): the
# command line wins, then the variable, then the default. Each is checked here, naming the
# variable, so a typo ends in one line rather than a traceback.
_ENV_INPUTS: Final[dict[str, tuple[str, str, Callable[[str], object]]]] = {
    "records": ("RECORDS", "20000", lambda text: _whole_number(text, minimum=1)),
    "seed": ("SEED", "1", lambda text: _whole_number(text, minimum=0)),
    "faults": ("FAULTS", DEFAULT_DEMO_FAULTS, _fault_spec),
}


def _parse(argv: list[str] | None, environ: Mapping[str, str]) -> argparse.Namespace:
    parser = _Parser(prog="python -m localloop.demo", description=__doc__)
    parser.add_argument("--records", help="records to produce (default: RECORDS or 20000)")
    count = _arg_type(lambda text: _whole_number(text, minimum=1))
    batch = _arg_type(lambda text: _whole_number(text, minimum=1, maximum=MAX_BATCH_SIZE))
    seconds = _arg_type(lambda text: _seconds(text, positive=False))
    timeout = _arg_type(lambda text: _seconds(text, positive=True))
    parser.add_argument("--partitions", type=count, default=6)
    parser.add_argument("--shards", type=count, default=4)
    parser.add_argument("--batch-size", type=batch, default=500)
    parser.add_argument("--batching-window", type=seconds, default=0.1, help="seconds")
    parser.add_argument("--concurrency", type=count, default=3, help="pollers (function instances)")
    # Short on purpose, with KINESIS_TIMEOUT_SECONDS=1: batches heavy with hot keys get a tight
    # budget, which the function must answer within.
    parser.add_argument("--function-timeout", type=timeout, default=4.0, help="seconds")
    parser.add_argument(
        "--faults",
        help=f"fault spec, 'none' for none (default: FAULTS or {DEFAULT_DEMO_FAULTS})",
    )
    parser.add_argument("--seed", help="workload and fault seed (default: SEED or 1)")
    parser.add_argument(
        "--aggregation", help="the function's AGGREGATION (default: AGGREGATION or its default)"
    )
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument(
        "--routes",
        action="store_true",
        help=f"two topics into two streams by STREAM_ROUTES={ROUTES} (records split between them)",
    )
    args = parser.parse_args(argv)
    for dest, (variable, default, convert) in _ENV_INPUTS.items():
        given = getattr(args, dest)
        name, raw = (f"--{dest}", given) if given is not None else (variable, None)
        if raw is None:
            raw = environ.get(variable, default)
        try:
            setattr(args, dest, convert(raw))
        except ValueError as error:
            raise DemoInputError(f"{name}={raw!r} {error}") from None
    if args.aggregation is None:
        args.aggregation = environ.get("AGGREGATION")
    return args


def function_env(
    args: argparse.Namespace, environ: Mapping[str, str], endpoint: str
) -> dict[str, str]:
    """The function's environment for this run; settings not given keep the function's defaults."""
    extra = {
        "RECORD_FORMAT": "envelope",
        "POWERTOOLS_METRICS_NAMESPACE": "local",
        "KINESIS_TIMEOUT_SECONDS": environ.get("KINESIS_TIMEOUT_SECONDS", "1"),
    }
    if args.aggregation is not None:
        extra["AGGREGATION"] = args.aggregation
    if args.routes:
        extra["STREAM_ROUTES"] = ROUTES
    return sink_env(stream=None if args.routes else STREAM, endpoint=endpoint, extra=extra)


def progress(
    desc: str, total: int | None = None, *, stream: TextIO | None = None
) -> tqdm[NoReturn]:
    """A progress bar on stderr, drawn only when stderr is a terminal (never into a log or pipe)."""
    stream = stream or sys.stderr
    return tqdm(total=total, desc=desc, unit="rec", file=stream, disable=not stream.isatty())


_STANDARD_ATTRS: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class _ExtrasFormatter(logging.Formatter):
    """Plain lines plus the structured fields passed as `extra=` (counts, offsets, timings)."""

    def format(self, record: logging.LogRecord) -> str:
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}
        line = super().format(record)
        return f"{line} {extras}" if extras else line


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so every `with` block stops the process it started


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    try:
        args = _parse(argv, environ)
        # The function's settings are checked by its own parser before anything starts: a bad
        # one would fail every initialisation (the emulator, like Lambda, would retry each
        # batch until it gave up), so say what is wrong, once.
        check_function_env(function_env(args, environ, _NO_ENDPOINT_YET))
    except (DemoInputError, ConfigurationError) as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
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
    spec: FaultSpec = args.faults
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
        with progress("produce ", args.records) as bar:
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
        env = function_env(args, environ, proxy.endpoint)
        delivery_delays: list[float] = []  # every invocation's, from each record written
        destination = FolderDestination(workdir / "on-failure", mapping_uuid=config.uuid)
        esm_started = time.monotonic()
        with progress("deliver ", sum(s.total for s in sources.values())) as bar:
            mapping = EventSourceMapping(
                config,
                topics=list(lanes),
                function_factory=lambda: SinkFunction(env, delivery_delays),
                destination=destination,
                concurrency=args.concurrency,
                on_progress=bar.update,
            )
            esm_stats = mapping.run(end_offsets=end_offsets)
        esm_s = time.monotonic() - esm_started
        proxy_stats = proxy.stats

        audit_started = time.monotonic()
        reports: dict[str, AuditReport] = {}
        with progress("read    ") as bar:
            for topic, stream in lanes.items():
                stream_records, shards = read_stream(
                    kinesis_client(kinesalite.endpoint), stream, on_progress=bar.update
                )
                # Each stream against its own topic: a record of the other one is `unexpected`.
                reports[stream] = audit(sources[topic], stream_records, shards)
        audit_s = time.monotonic() - audit_started

    total_s = time.monotonic() - started
    report = _total(reports.values())
    streams = reports if args.routes else {}
    print(
        report_text(
            report=report,
            streams=streams,
            esm=esm_stats,
            proxy=proxy_stats,
            value_mb=sum(s.value_bytes for s in sources.values()) / 1e6,
            produce_s=produce_s,
            esm_s=esm_s,
            audit_s=audit_s,
            total_s=total_s,
            discarded_docs=sum(1 for _ in destination.documents()),
            workdir=workdir,
            delivery_delays_ms=delivery_delays,
        ),
        flush=True,
    )
    return 0 if _ok(report, esm_stats, streams) else 1


def _total(reports: Iterable[AuditReport]) -> AuditReport:
    """Several streams' audits as one (counts added up)."""
    listed = list(reports)
    return AuditReport(
        **{f.name: sum(getattr(r, f.name) for r in listed) for f in dataclasses.fields(AuditReport)}
    )


def _ok(report: AuditReport, esm: EsmStats, streams: Mapping[str, AuditReport]) -> bool:
    # Routed, a record in the wrong stream is a failure too (it is `unexpected` there).
    return report.ok and not esm.records_discarded and not (streams and report.unexpected)


def _stream_line(prefix: str, report: AuditReport) -> str:
    routed = f", {report.unexpected} from another topic" if prefix else ""
    return (
        f"stream     {prefix}{report.stream_records} records in {report.shards} shards: "
        f"{report.delivered} delivered, {report.duplicates} duplicates (dropped by the consumer "
        f"rule), {report.lost} lost, {report.out_of_order} out of order, "
        f"{report.corrupted} corrupted{routed}"
    )


def report_text(
    *,
    report: AuditReport,
    streams: Mapping[str, AuditReport] | None = None,
    esm: EsmStats,
    proxy: ProxyStats,
    value_mb: float,
    produce_s: float,
    esm_s: float,
    audit_s: float,
    total_s: float,
    discarded_docs: int,
    workdir: Path,
    delivery_delays_ms: Sequence[float] = (),
) -> str:
    """The run's report, ending in one `key=value` summary line. Rates count delivered records
    only, and are left out when nothing was delivered; so are the delivery delay's p50 and p99
    (the function's DeliveryDelay: each record's Kafka timestamp to its acknowledgement)."""
    streams = streams or {}
    ok = _ok(report, esm, streams)
    delays = sorted(delivery_delays_ms)
    rate = report.delivered / esm_s if report.delivered and esm_s > 0 else None
    errors = f"{esm.function_errors} errors"
    if esm.init_errors:
        errors += f" ({esm.init_errors} at init)"
    deliver = f"deliver {esm_s:.1f} s" + ("" if rate is None else f" ({rate:.0f} records/s)")
    lines = [
        "",
        f"source     {report.records} records, {value_mb:.1f} MB of values, "
        f"{report.partitions} partitions, {report.keys} keys",
        f"esm        {esm.invocations} invocations ({esm.retries} retries, "
        f"{esm.partial_failures} partial, {errors}, {esm.timeouts} timeouts), "
        f"max batch {esm.max_batch_records} records / {esm.max_payload_bytes / 1e6:.2f} MB, "
        f"least time left {esm.least_time_left_ms} ms",
        f"faults     {proxy.summary()}",
        *(
            [_stream_line(f"{name}: ", r) for name, r in streams.items()]
            if streams
            else [_stream_line("", report)]
        ),
        f"discarded  {esm.records_discarded} records ({discarded_docs} on-failure documents in "
        f"{workdir / 'on-failure'})",
        f"time       produce {produce_s:.1f} s, {deliver}, "
        f"audit {audit_s:.1f} s, total {total_s:.1f} s; logs in {workdir / 'logs'}",
        *_delay_line(delays),
        "verdict    " + ("OK" if ok else "FAILED"),
    ]
    summary: dict[str, object] = {
        "records": report.records,
        "delivered": report.delivered,
        "lost": report.lost,
        "out_of_order": report.out_of_order,
        "duplicates": report.duplicates,
        "corrupted": report.corrupted,
        "discarded": esm.records_discarded,
        "invocations": esm.invocations,
        "retries": esm.retries,
        "function_errors": esm.function_errors,
        "throttled": proxy.records_throttled + proxy.requests_throttled,
        "lost_responses": proxy.responses_lost,
    }
    if rate is not None:
        delivered_mb = value_mb * report.delivered / report.records
        summary["records_per_s"] = f"{rate:.0f}"
        summary["mb_per_s"] = f"{delivered_mb / esm_s:.1f}"
    if delays:
        summary["delay_p50_ms"] = f"{_percentile(delays, 50):.0f}"
        summary["delay_p99_ms"] = f"{_percentile(delays, 99):.0f}"
    summary["seconds"] = f"{total_s:.1f}"
    summary["ok"] = str(ok).lower()
    lines.append(" ".join(f"{k}={v}" for k, v in summary.items()))
    return "\n".join(lines)


def _delay_line(delays: Sequence[float]) -> list[str]:
    """How late the records reached the stream (sorted delays), when any did."""
    if not delays:
        return []
    return [
        f"delay      p50 {_percentile(delays, 50) / 1000:,.1f} s, p99"
        f" {_percentile(delays, 99) / 1000:,.1f} s from each record's Kafka timestamp to its"
        f" acknowledgement ({len(delays)} records; the workload stamps them from"
        f" {datetime.fromtimestamp(WORKLOAD_EPOCH_MS / 1000, UTC):%Y-%m-%d} on, CREATE_TIME:"
        " their age, more than the sink's lag)"
    ]


def _percentile(ordered: Sequence[float], percent: int) -> float:
    """The nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: local servers stopped", file=sys.stderr)
        sys.exit(130)
