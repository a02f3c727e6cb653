"""`python -m localloop`: run the ESM emulator against your own broker, topic and stream.

The real sink runs in a process of its own per poller, with your function settings (from the
environment, or `--env`), invoked exactly as an MSK event source mapping would; optionally
through the fault proxy, and with crashes (`--faults crash=0.1`). Exit status 0 when the run
ends (the summary line says what happened); 2, in one line, for an option, a function setting,
a broker or a topic it can't use.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from localloop.broker import BrokerUnreachableError, quiet_client_logs
from localloop.destination import FolderDestination
from localloop.esm import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BATCHING_WINDOW_S,
    LOCAL_CLUSTER_ARN,
    EsmConfig,
)
from localloop.events import EVENT_SOURCE_MSK, EVENT_SOURCE_SELF_MANAGED
from localloop.faults import FaultSpec, FaultSpecError
from localloop.function import check_function_env, sink_env
from localloop.function_process import CrashFault, FunctionProcess
from localloop.kafka_source import STARTING_POSITIONS
from localloop.kinesis_local import DEFAULT_REGION
from localloop.mapping import EventSourceMapping
from localloop.procs import ProcessFailedError
from localloop.proxy import FaultProxy
from msk_kinesis_sink.errors import ConfigurationError
from msk_kinesis_sink.limits import MAX_BATCH_SIZE


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _fault_spec(text: str) -> FaultSpec:
    try:
        return FaultSpec.parse(text)
    except FaultSpecError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m localloop", description=__doc__)
    kafka = parser.add_argument_group("source (Kafka)")
    kafka.add_argument("--bootstrap", required=True, help="bootstrap servers, host:port[,...]")
    kafka.add_argument("--topic", action="append", required=True, help="topic (repeatable)")
    kafka.add_argument("--group-id", default=None, help="consumer group (default: mapping UUID)")
    kafka.add_argument("--starting-position", choices=STARTING_POSITIONS, default="TRIM_HORIZON")
    kafka.add_argument(
        "--event-source",
        choices=("msk", "self-managed"),
        default="msk",
        help="event shape: aws:kafka (MSK) or SelfManagedKafka",
    )
    kafka.add_argument("--cluster-arn", default=LOCAL_CLUSTER_ARN, help="eventSourceArn (MSK)")
    sink = parser.add_argument_group("function (the sink, in-process)")
    sink.add_argument(
        "--stream",
        default=None,
        help="STREAM_NAME (name or ARN); optional with --env STREAM_ROUTES=pattern=stream,...",
    )
    sink.add_argument("--endpoint", default=None, help="Kinesis endpoint (default: AWS)")
    sink.add_argument("--region", default=os.environ.get("AWS_REGION", DEFAULT_REGION))
    sink.add_argument(
        "--env",
        action="append",
        type=_env_pair,
        default=[],
        metavar="NAME=VALUE",
        help="function environment variable (repeatable), e.g. RECORD_FORMAT=envelope",
    )
    sink.add_argument("--function-timeout", type=float, default=60.0, help="seconds")
    sink.add_argument("--memory", type=int, default=1024, help="MB (reported in the context)")
    sink.add_argument(
        "--faults",
        type=_fault_spec,
        default=None,
        help="put the fault proxy in front of --endpoint (a spec, docs/local-loop.md); crash=p"
        " also kills the function's process in that share of invocations",
    )
    esm = parser.add_argument_group("event source mapping")
    esm.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help=f"1..{MAX_BATCH_SIZE}"
    )
    esm.add_argument(
        "--batching-window", type=float, default=DEFAULT_BATCHING_WINDOW_S, help="seconds"
    )
    esm.add_argument("--maximum-retry-attempts", type=int, default=-1, help="-1 = infinite")
    esm.add_argument("--maximum-record-age", type=float, default=-1, help="seconds; -1 = off")
    esm.add_argument("--bisect-batch-on-function-error", action="store_true")
    esm.add_argument(
        "--on-failure-dir", type=Path, default=None, help="folder standing in for the S3 bucket"
    )
    esm.add_argument("--concurrency", type=int, default=1, help="pollers (function instances)")
    esm.add_argument(
        "--until-idle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit once every partition has been caught up for this long (default: run forever)",
    )
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _function_env(args: argparse.Namespace, endpoint: str | None) -> dict[str, str]:
    """The environment, the stream, endpoint and region, then `--env` over all of them."""
    env = {**os.environ, **dict(args.env)}
    env.update(sink_env(stream=args.stream, endpoint=endpoint, region=args.region))
    env.update(dict(args.env))
    return env


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    quiet_client_logs(args.log_level)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    if args.faults is not None and args.endpoint is None:
        print("--faults needs --endpoint (the proxy's upstream)", file=sys.stderr)
        return 2
    try:
        # The function's own parser, before anything starts: a bad setting would fail every
        # initialisation, and the mapping would retry each batch with it.
        check_function_env(_function_env(args, args.endpoint))
    except ConfigurationError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    try:
        return _run(args)
    except (BrokerUnreachableError, ProcessFailedError) as error:
        print(f"kafka: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        endpoint = args.endpoint
        if args.faults is not None:
            proxy = stack.enter_context(FaultProxy(endpoint, args.faults))
            endpoint = proxy.endpoint
            print(f"fault proxy {proxy.endpoint} -> {args.endpoint}: {proxy.spec.describe()}")
        env = _function_env(args, endpoint)
        msk = args.event_source == "msk"
        config = EsmConfig(
            bootstrap_servers=args.bootstrap,
            batch_size=args.batch_size,
            batching_window_s=args.batching_window,
            maximum_retry_attempts=args.maximum_retry_attempts,
            maximum_record_age_s=args.maximum_record_age,
            bisect_batch_on_function_error=args.bisect_batch_on_function_error,
            function_timeout_s=args.function_timeout,
            memory_mb=args.memory,
            region=args.region,
            event_source=EVENT_SOURCE_MSK if msk else EVENT_SOURCE_SELF_MANAGED,
            event_source_arn=args.cluster_arn if msk else None,
        )
        destination = (
            FolderDestination(args.on_failure_dir, mapping_uuid=config.uuid)
            if args.on_failure_dir
            else None
        )
        spec: FaultSpec | None = args.faults
        crash = CrashFault(spec.crash, seed=spec.seed) if spec is not None and spec.crash else None
        dead_lettered = _Counter()

        def function_factory() -> FunctionProcess:
            return FunctionProcess(
                env,
                crash=crash,
                log_level=args.log_level,
                on_stats=lambda stats: dead_lettered.add(stats["records_dead_lettered"]),
            )

        mapping = EventSourceMapping(
            config,
            topics=args.topic,
            function_factory=function_factory,
            destination=destination,
            concurrency=args.concurrency,
            group_id=args.group_id,
            starting_position=args.starting_position,
        )
        try:
            stats = mapping.run(idle_exit_s=args.until_idle)
        except KeyboardInterrupt:
            mapping.stop()
            stats = mapping.stats
        print(
            f"invocations={stats.invocations} records_committed={stats.records_committed}"
            f" records_discarded={stats.records_discarded} retries={stats.retries}"
            f" function_errors={stats.function_errors} timeouts={stats.timeouts}"
            f" crashes={stats.crashes} partial_failures={stats.partial_failures}"
            f" dead_lettered={dead_lettered.total}"
        )
    return 0


class _Counter:
    """A total the pollers' threads add to."""

    def __init__(self) -> None:
        self.total = 0
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        with self._lock:
            self.total += count


if __name__ == "__main__":
    sys.exit(main())
