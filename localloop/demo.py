"""`make demo`: the whole loop on loopback, verified.

A tansu broker and kinesalite start on free ports; a topic gets a realistic workload; the ESM
emulator invokes the real sink, which writes through the fault proxy; then the stream is read back
and audited against the topic. The last line printed is one `key=value` summary line. Exit status 1
if anything was lost, out of order, corrupted, discarded or dead-lettered (and not replayed); 2,
with one line saying why, for an option, variable or function setting it can't use. With
`--routes`, two topics go to two streams by STREAM_ROUTES, and each stream is audited against its
own topic. With `--replay`, a small record limit dead-letters some records into a local S3 and the
mapping discards one batch there too; the replay (`python -m msk_kinesis_sink.replay`) puts them
back with the limit raised, and the audit tells the replayed records' documented ordering caveat
apart from real reordering. With `--keep`, the same workload, limit and poison under
failureMode=block and OVERSIZE_RECORDS=claim_check: oversize records keep their place as claim
checks in the local S3, the poisoned partition waits until the fault clears, and the run passes
only with nothing dead-lettered, discarded, lost or out of order (the audit resolves each pointer).
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
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Final, NoReturn, TextIO

from tqdm import tqdm

from localloop.audit import (
    ORDERING_CAVEAT,
    AuditReport,
    Replayed,
    audit,
    read_stream,
)
from localloop.broker import TansuBroker, create_topic
from localloop.destination import FolderDestination, S3Destination
from localloop.esm import EsmConfig, EsmStats
from localloop.failure_mode import cdk_context, read_failure_mode, with_failure_mode
from localloop.faults import DEFAULT_DEMO_FAULTS, FaultSpec, FaultSpecError
from localloop.function import check_function_env, sink_env
from localloop.function_process import CrashFault, FunctionProcess
from localloop.kinesis_local import DUMMY_CREDENTIALS, Kinesalite, create_stream, kinesis_client
from localloop.local_s3 import MotoServer, s3_client
from localloop.logs import LOG_FORMAT, ExtrasFormatter
from localloop.mapping import EventSourceMapping
from localloop.proxy import FaultProxy, ProxyStats
from localloop.scenarios import (
    PLAIN,
    STORIES,
    ReplayResult,
    Scenario,
    poison_key,
    run_replay,
)
from localloop.workload import WORKLOAD_EPOCH_MS, SourceLog, WorkloadSpec, produce
from msk_kinesis_sink.claim_checks import ClaimCheckTarget
from msk_kinesis_sink.errors import ConfigurationError
from msk_kinesis_sink.limits import MAX_BATCH_SIZE
from msk_kinesis_sink.replay.objects import REPLAYED_PREFIX
from msk_kinesis_sink.settings import Settings

DEFAULT_WORKDIR: Final = Path(".demo")
# A topic name with both '.' and '-': `records` keys must never be split to find the partition.
TOPIC: Final = "orders.v1-events"
STREAM: Final = "orders-mirror"
# `--routes`: two topics, each routed to its own stream (docs/routing.md).
ROUTED_LANES: Final = {TOPIC: STREAM, "payments.v1-events": "payments-mirror"}
ROUTES: Final = "orders.*=orders-mirror,payments.*=payments-mirror"
# Where the function's settings are checked before the fault proxy (and its port) exists.
_NO_ENDPOINT_YET: Final = "http://127.0.0.1:9"
# The function's settings `make demo` passes on from variables of the same name.
_FUNCTION_VARIABLES: Final = ("KINESIS_TIMEOUT_SECONDS", "MAX_RECORD_BYTES")


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


def _failure_mode(text: str) -> str:
    """divert or block; blank: cdk.json's failureMode (the stack's)."""
    try:
        return read_failure_mode(text or cdk_context().get("failureMode", "divert")).value
    except ValueError:
        raise ValueError("is not a failure mode (divert, block)") from None


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
    "failure_mode": ("FAILURE_MODE", "", _failure_mode),
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
        "--failure-mode",
        help="the mapping's failureMode, divert or block (default: FAILURE_MODE or cdk.json's)",
    )
    parser.add_argument(
        "--aggregation", help="the function's AGGREGATION (default: AGGREGATION or its default)"
    )
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument(
        "--routes",
        action="store_true",
        help=f"two topics into two streams by STREAM_ROUTES={ROUTES} (records split between them)",
    )
    for story in STORIES:
        parser.add_argument(f"--{story.name}", action="store_true", help=story.help)
    args = parser.parse_args(argv)
    given = [f"--{name}" for name in (*(s.name for s in STORIES), "routes") if getattr(args, name)]
    if len(given) > 1:
        raise DemoInputError(f"{' and '.join(given)} are separate stories: give one of them")
    scenario = scenario_of(args)
    needed = scenario.failure_mode
    if needed is not None and args.failure_mode is None and not environ.get("FAILURE_MODE"):
        args.failure_mode = needed.value  # the story's own, over cdk.json's
    for dest, (variable, default, convert) in _ENV_INPUTS.items():
        given = getattr(args, dest)
        option = f"--{dest.replace('_', '-')}"
        name, raw = (option, given) if given is not None else (variable, None)
        if raw is None:
            raw = environ.get(variable, default)
        try:
            setattr(args, dest, convert(raw))
        except ValueError as error:
            raise DemoInputError(f"{name}={raw!r} {error}") from None
    if args.aggregation is None:
        args.aggregation = environ.get("AGGREGATION")
    if needed is not None and args.failure_mode != needed.value:
        raise DemoInputError(
            f"--{scenario.name} needs failureMode={needed.value}: {scenario.failure_mode_reason}"
        )
    return args


def scenario_of(args: argparse.Namespace) -> Scenario:
    """The story the demo's options pick (the plain one without any)."""
    return next((story for story in STORIES if getattr(args, story.name, False)), PLAIN)


def function_env(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    endpoint: str,
    s3: tuple[str, str] | None = None,
) -> dict[str, str]:
    """The function's environment for this run; settings not given keep the function's defaults.
    `s3`: (endpoint, bucket) of the local dead-letter bucket, when the scenario has one."""
    extra = {
        "RECORD_FORMAT": "envelope",
        "POWERTOOLS_METRICS_NAMESPACE": "local",
        "KINESIS_TIMEOUT_SECONDS": "1",
        **scenario_of(args).function_env,
    }
    extra.update({name: environ[name] for name in _FUNCTION_VARIABLES if name in environ})
    if args.aggregation is not None:
        extra["AGGREGATION"] = args.aggregation
    if args.routes:
        extra["STREAM_ROUTES"] = ROUTES
    if s3 is not None:
        extra.update({"AWS_ENDPOINT_URL_S3": s3[0], "DEAD_LETTER_BUCKET": s3[1]})
    return sink_env(stream=None if args.routes else STREAM, endpoint=endpoint, extra=extra)


def progress(
    desc: str, total: int | None = None, *, stream: TextIO | None = None
) -> tqdm[NoReturn]:
    """A progress bar on stderr, drawn only when stderr is a terminal (never into a log or pipe)."""
    stream = stream or sys.stderr
    return tqdm(total=total, desc=desc, unit="rec", file=stream, disable=not stream.isatty())


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so every `with` block stops the process it started


@dataclass(frozen=True, slots=True)
class _Servers:
    """The run's local services."""

    broker: TansuBroker
    kinesalite: Kinesalite
    s3: MotoServer | None
    bucket: str | None  # the dead-letter bucket, also the on-failure destination's


@dataclass(frozen=True, slots=True)
class _Delivery:
    """What the loop delivered, before any replay."""

    esm: EsmStats
    proxy: ProxyStats
    destination: FolderDestination | S3Destination
    diverts: bool  # the mapping has an on-failure destination (failureMode=divert)
    env: dict[str, str]  # the function's
    seconds: float
    # Every invocation's DeliveryDelay samples (ms, from each record written).
    delivery_delays_ms: list[float]


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
    logs = _start_logs(workdir)
    spec: FaultSpec = args.faults
    if spec.seed == 0:
        spec = dataclasses.replace(spec, seed=args.seed)
    lanes = ROUTED_LANES if args.routes else {TOPIC: STREAM}
    scenario = scenario_of(args)
    started = time.monotonic()

    with ExitStack() as stack:
        servers = _start_servers(stack, scenario, logs)
        for topic, stream in lanes.items():
            create_topic(servers.broker.bootstrap, topic, args.partitions)
            create_stream(kinesis_client(servers.kinesalite.endpoint), stream, args.shards)

        produce_started = time.monotonic()
        sources: dict[str, SourceLog] = {}
        with progress("produce ", args.records) as bar:
            for topic, workload in _workloads(args, lanes).items():
                sources[topic] = produce(
                    servers.broker.bootstrap, topic, workload, on_progress=bar.update
                )
        produce_s = time.monotonic() - produce_started
        if scenario.poison_one_record:
            spec = dataclasses.replace(
                spec,
                poison=(*spec.poison, poison_key(_workloads(args, lanes)[TOPIC])),
                poison_failures=spec.poison_failures or scenario.poison_failures,
            )
        delivery = _deliver(stack, args, environ, servers, spec, sources, workdir)
        story = _replay(scenario, servers, delivery, sources, logs)
        audit_started = time.monotonic()
        reports = _audit(servers, lanes, sources, None if story is None else story.replayed)
        audit_s = time.monotonic() - audit_started
        dead_lettered = _dead_letters(servers, delivery.env)
        discarded_docs = sum(1 for _ in delivery.destination.documents())

    total_s = time.monotonic() - started
    report = _total(reports.values())
    s3 = None if servers.bucket is None else S3Places.of(servers.bucket, delivery.env)
    streams = reports if args.routes else {}
    print(
        report_text(
            report=report,
            streams=streams,
            esm=delivery.esm,
            proxy=delivery.proxy,
            value_mb=sum(s.value_bytes for s in sources.values()) / 1e6,
            produce_s=produce_s,
            esm_s=delivery.seconds,
            audit_s=audit_s,
            total_s=total_s,
            discarded_docs=discarded_docs,
            discarded_where=f"s3://{servers.bucket}/aws/lambda/" if servers.bucket else None,
            has_destination=delivery.diverts,
            workdir=workdir,
            dead_lettered=dead_lettered,
            replay=story,
            s3=s3,
            delivery_delays_ms=delivery.delivery_delays_ms,
        ),
        flush=True,
    )
    return 0 if _ok(report, delivery.esm, streams, story, dead_lettered=dead_lettered) else 1


def _start_logs(workdir: Path) -> Path:
    """The run's log folder, with the function log emptied and the root logger writing to it."""
    logs = workdir / "logs"
    # Each run starts clean: the report counts this run's on-failure documents only.
    shutil.rmtree(workdir / "on-failure", ignore_errors=True)
    logs.mkdir(parents=True, exist_ok=True)
    # The emulator's and the functions' processes log into one file, all appending to it.
    (logs / "function.log").write_text("")
    handler = logging.FileHandler(logs / "function.log", mode="a")
    handler.setFormatter(ExtrasFormatter(LOG_FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    return logs


def _replay(
    scenario: Scenario,
    servers: _Servers,
    delivery: _Delivery,
    sources: Mapping[str, SourceLog],
    logs: Path,
) -> ReplayReport | None:
    """The replay step of a story that has one: what is missing, then the replay command with
    the story's settings, straight to kinesalite (around the fault proxy)."""
    if scenario.replay_env is None or servers.s3 is None or servers.bucket is None:
        return None
    missing_before = _audit(servers, {TOPIC: STREAM}, sources)[STREAM].lost
    result = run_replay(
        {**delivery.env, **scenario.replay_env, **_direct(servers.kinesalite)},
        s3=s3_client(servers.s3.endpoint),
        bucket=servers.bucket,
        log_path=logs / "replay.log",
    )
    return ReplayReport(missing_before, result)


def _workloads(args: argparse.Namespace, lanes: Mapping[str, str]) -> dict[str, WorkloadSpec]:
    """Each topic's workload: the records split between the topics, a seed each."""
    return {
        topic: WorkloadSpec(
            records=args.records // len(lanes) + (index < args.records % len(lanes)),
            partitions=args.partitions,
            seed=args.seed + index,
        )
        for index, topic in enumerate(lanes)
    }


def _start_servers(stack: ExitStack, scenario: Scenario, logs: Path) -> _Servers:
    broker = stack.enter_context(TansuBroker(log_path=logs / "tansu.log"))
    kinesalite = stack.enter_context(Kinesalite(log_path=logs / "kinesalite.log"))
    lines = [
        f"broker   tansu at {broker.bootstrap} ({broker.startup_s:.1f} s)",
        f"kinesis  kinesalite at {kinesalite.endpoint} ({kinesalite.startup_s:.1f} s)",
    ]
    s3, bucket = None, None
    if scenario.local_s3:
        s3 = stack.enter_context(MotoServer(log_path=logs / "moto.log"))
        # A name of its own per run: nothing of an earlier run is counted or replayed.
        bucket = f"dead-letters-{uuid.uuid4().hex[:12]}"
        s3_client(s3.endpoint).create_bucket(Bucket=bucket)
        lines.append(f"s3       moto at {s3.endpoint}, bucket {bucket} ({s3.startup_s:.1f} s)")
    print("\n".join(lines), file=sys.stderr)
    return _Servers(broker, kinesalite, s3, bucket)


def _deliver(
    stack: ExitStack,
    args: argparse.Namespace,
    environ: Mapping[str, str],
    servers: _Servers,
    spec: FaultSpec,
    sources: Mapping[str, SourceLog],
    workdir: Path,
) -> _Delivery:
    """Run the mapping over every topic until each produced record is committed or discarded."""
    scenario = scenario_of(args)
    proxy = stack.enter_context(FaultProxy(servers.kinesalite.endpoint, spec))
    print(f"faults   {spec.describe()} (proxy at {proxy.endpoint})", file=sys.stderr)
    # The mapping's retries, record age and destination, as the stack deploys cdk.json's.
    config, diverts = with_failure_mode(
        EsmConfig(
            bootstrap_servers=servers.broker.bootstrap,
            batch_size=args.batch_size,
            batching_window_s=args.batching_window,
            function_timeout_s=args.function_timeout,
        ),
        {**cdk_context(), "failureMode": args.failure_mode},
    )
    if scenario.maximum_retry_attempts is not None:
        config = dataclasses.replace(config, maximum_retry_attempts=scenario.maximum_retry_attempts)
    local_s3 = None
    destination: FolderDestination | S3Destination
    if servers.s3 is not None and servers.bucket is not None:
        local_s3 = (servers.s3.endpoint, servers.bucket)
        destination = S3Destination(
            s3_client(servers.s3.endpoint), servers.bucket, mapping_uuid=config.uuid
        )
    else:
        destination = FolderDestination(workdir / "on-failure", mapping_uuid=config.uuid)
    env = function_env(args, environ, proxy.endpoint, local_s3)
    crash = CrashFault(spec.crash, seed=spec.seed) if spec.crash else None
    log_path = workdir / "logs" / "function.log"
    delivery_delays: list[float] = []

    def collect_delays(stats: Mapping[str, object]) -> None:
        delays = stats.get("delivery_delays_ms")
        if isinstance(delays, list):
            delivery_delays.extend(float(delay) for delay in delays)

    started = time.monotonic()
    with progress("deliver ", sum(s.total for s in sources.values())) as bar:
        mapping = EventSourceMapping(
            config,
            topics=list(sources),
            function_factory=lambda: FunctionProcess(
                env, crash=crash, log_path=log_path, on_stats=collect_delays
            ),
            destination=destination if diverts else None,
            concurrency=args.concurrency,
            on_progress=bar.update,
        )
        end_offsets = {tp: end for s in sources.values() for tp, end in s.end_offsets().items()}
        esm_stats = mapping.run(end_offsets=end_offsets)
    return _Delivery(
        esm_stats,
        proxy.stats,
        destination,
        diverts,
        env,
        time.monotonic() - started,
        delivery_delays,
    )


def _direct(kinesalite: Kinesalite) -> dict[str, str]:
    """Settings that send to kinesalite itself: the replay goes around the fault proxy."""
    return {"AWS_ENDPOINT_URL_KINESIS": kinesalite.endpoint, **DUMMY_CREDENTIALS}


def _audit(
    servers: _Servers,
    lanes: Mapping[str, str],
    sources: Mapping[str, SourceLog],
    replayed: Replayed | None = None,
) -> dict[str, AuditReport]:
    """Each stream read back and checked against its own topic; claim-check pointers resolved
    from the local S3, when the story has one."""
    reports: dict[str, AuditReport] = {}
    claim_checks = None if servers.s3 is None else s3_client(servers.s3.endpoint)
    with progress("read    ") as bar:
        for topic, stream in lanes.items():
            stream_records, shards = read_stream(
                kinesis_client(servers.kinesalite.endpoint), stream, on_progress=bar.update
            )
            # Each stream against its own topic: a record of the other one is `unexpected`.
            reports[stream] = audit(
                sources[topic], stream_records, shards, replayed, claim_checks=claim_checks
            )
    return reports


def _dead_letter_prefix(env: Mapping[str, str]) -> str:
    return Settings.from_env(env).dead_letter_prefix


def _dead_letters(servers: _Servers, env: Mapping[str, str]) -> int:
    """Dead letters the function wrote: the objects under its prefix in the bucket, where they
    are or where the replay moved them."""
    if servers.s3 is None or servers.bucket is None:
        return 0
    prefix = _dead_letter_prefix(env)
    client = s3_client(servers.s3.endpoint)
    return sum(
        1
        for where in (prefix, f"{REPLAYED_PREFIX}{prefix}")
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=servers.bucket, Prefix=where
        )
        for _ in page.get("Contents", [])
    )


def _total(reports: Iterable[AuditReport]) -> AuditReport:
    """Several streams' audits as one (counts added up)."""
    listed = list(reports)
    return AuditReport(
        **{f.name: sum(getattr(r, f.name) for r in listed) for f in dataclasses.fields(AuditReport)}
    )


@dataclass(frozen=True, slots=True)
class S3Places:
    """Where a story with a local S3 keeps records: its dead letters, and its claim checks when
    the function takes them (None: it does not)."""

    dead_letters: str  # s3://bucket/prefix
    claim_checks: str | None = None

    @classmethod
    def of(cls, bucket: str, env: Mapping[str, str]) -> S3Places:
        """The places the function's settings `env` give it in `bucket`, the dead letters'."""
        settings = Settings.from_env(env)
        target = ClaimCheckTarget.of(settings)
        return cls(
            f"s3://{bucket}/{settings.dead_letter_prefix}",
            None if target is None else f"s3://{target.bucket}/{target.prefix}",
        )


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """The replay story in numbers: what was missing before the replay, and the replay's runs."""

    missing_before: int  # source records not in the stream before the replay
    result: ReplayResult

    @property
    def replayed(self) -> Replayed:
        return self.result.replayed


def _ok(
    report: AuditReport,
    esm: EsmStats,
    streams: Mapping[str, AuditReport],
    replay: ReplayReport | None = None,
    *,
    dead_lettered: int = 0,
) -> bool:
    # Discarded and dead-lettered records fail the run unless a replay put them back (then
    # `lost` says whether it did). Routed, a record in the wrong stream is a failure too (it is
    # `unexpected` there).
    put_back = replay is not None and replay.result.status == 0
    return (
        report.ok
        and (not esm.records_discarded or put_back)
        and (not dead_lettered or put_back)
        and (replay is None or replay.result.status == 0)
        and not (streams and report.unexpected)
    )


def _stream_line(prefix: str, report: AuditReport) -> str:
    routed = f", {report.unexpected} from another topic" if prefix else ""
    caveat = (
        f", {report.out_of_order_replayed} replayed after newer records of their keys (the"
        f" ordering caveat: {ORDERING_CAVEAT})"
        if report.replayed
        else ""
    )
    return (
        f"stream     {prefix}{report.stream_records} records in {report.shards} shards: "
        f"{report.delivered} delivered, {report.duplicates} duplicates (dropped by the consumer "
        f"rule), {report.lost} lost, {report.out_of_order} out of order{caveat}, "
        f"{report.corrupted} corrupted{routed}"
    )


def _s3_lines(s3: S3Places, report: AuditReport, dead_lettered: int) -> list[str]:
    """Where the story's dead letters and claim checks went, and how many."""
    lines = [
        f"dead       {dead_lettered} records dead-lettered to {s3.dead_letters} (a log line each:"
        " topic, partition, offset, size, reason)"
    ]
    if s3.claim_checks is not None:
        unresolved = report.unresolved_claim_checks
        lines.append(
            f"claims     {report.claim_checks} records kept whole in {s3.claim_checks}, a pointer"
            f" to each in the stream in its key's turn (the audit resolved them: {unresolved}"
            " could not be)"
        )
    return lines


def _replay_lines(replay: ReplayReport, records: int) -> list[str]:
    dry, applied = replay.result.dry_run, replay.result.applied
    return [
        f"before     {replay.missing_before} of {records} records not in the stream before the"
        " replay",
        f"replay     dry run: objects={dry.get('objects')} records={dry.get('records')}"
        f" failed={dry.get('failed')}; --apply: published={applied.get('published')}"
        f" failed={applied.get('failed')} marked={applied.get('marked')}"
        f" (exit status {replay.result.status})",
    ]


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
    discarded_where: str | None = None,
    has_destination: bool = True,
    dead_lettered: int = 0,
    replay: ReplayReport | None = None,
    s3: S3Places | None = None,
    delivery_delays_ms: Sequence[float] = (),
) -> str:
    """The run's report, ending in one `key=value` summary line. Rates count delivered records
    only, and are left out when nothing was delivered; so are the delivery delay's p50 and p99
    (the function's DeliveryDelay: each record's Kafka timestamp to its acknowledgement)."""
    streams = streams or {}
    ok = _ok(report, esm, streams, replay, dead_lettered=dead_lettered)
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
        f"{esm.partial_failures} partial, {errors}, {esm.timeouts} timeouts, "
        f"{esm.crashes} crashes), max batch {esm.max_batch_records} records / "
        f"{esm.max_payload_bytes / 1e6:.2f} MB, least time left {esm.least_time_left_ms} ms",
        f"faults     {proxy.summary()}",
        *([] if s3 is None else _s3_lines(s3, report, dead_lettered)),
        f"discarded  {esm.records_discarded} records ("
        + (
            f"{discarded_docs} on-failure documents in {discarded_where or workdir / 'on-failure'}"
            if has_destination
            else "failureMode=block: no on-failure destination, a failing batch is retried"
            " until it succeeds"
        )
        + ")",
        *([] if replay is None else _replay_lines(replay, report.records)),
        *(
            [_stream_line(f"{name}: ", r) for name, r in streams.items()]
            if streams
            else [_stream_line("", report)]
        ),
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
        **(
            {}
            if replay is None
            else {
                "replayed": report.replayed,
                "out_of_order_replayed": report.out_of_order_replayed,
            }
        ),
        "duplicates": report.duplicates,
        "corrupted": report.corrupted,
        **({} if s3 is None or s3.claim_checks is None else {"claim_checks": report.claim_checks}),
        "discarded": esm.records_discarded,
        "dead_lettered": dead_lettered,
        "invocations": esm.invocations,
        "retries": esm.retries,
        "function_errors": esm.function_errors,
        "crashes": esm.crashes,
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
