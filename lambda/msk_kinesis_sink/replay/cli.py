"""`python -m msk_kinesis_sink.replay`: arguments, settings, the plan, progress and the summary."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, NoReturn, TextIO

from msk_kinesis_sink.errors import (
    ConfigurationError,
    KinesisPublishError,
    ReplayError,
    StreamHeldError,
    UnreadableObjectError,
)
from msk_kinesis_sink.events import KafkaRecord
from msk_kinesis_sink.limits import MIB
from msk_kinesis_sink.replay.objects import (
    ON_FAILURE_PREFIX,
    ObjectKind,
    ObjectStore,
    Reading,
    Selection,
    list_objects,
    read_objects,
)
from msk_kinesis_sink.replay.plan import (
    MAX_RECORDS_PER_INVOCATION,
    PartitionPlan,
    ReplaySet,
    plan_partitions,
)
from msk_kinesis_sink.replay.publish import INVOCATION_SECONDS, Replayer
from msk_kinesis_sink.replay.refusals import Skipped, Unreadable, kinds_field
from msk_kinesis_sink.replay.terminal import say, shown
from msk_kinesis_sink.runtime import Sink
from msk_kinesis_sink.settings import Settings
from msk_kinesis_sink.variables import bucket_name_problem

_AGE = re.compile(r"([0-9]{1,9})([smhd])", re.ASCII)
_AGE_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Lines of failure causes printed at most (each distinct cause once).
_MAX_CAUSES: Final = 20


@dataclass(slots=True)
class Summary:
    """The run in numbers: the last line the command prints."""

    mode: str
    objects: int = 0  # objects selected and read
    records: int = 0  # distinct records in them
    published: int = 0  # records Kinesis acknowledged in this run
    failed: int = 0  # records not delivered (a dry run: records the settings can not write)
    skipped: int = 0  # objects left out: by the selection, already replayed, folder markers
    duplicates: int = 0  # records held by more than one object (sent once)
    unreadable: int = 0  # objects refused (refusals.Unreadable), named and left in place
    marked: int = 0  # objects moved under replayed/
    skipped_kinds: str = "-"  # `kind:count,...` of the skipped objects (refusals.Skipped)
    unreadable_kinds: str = "-"  # `kind:count,...` of the unreadable ones (refusals.Unreadable)

    def line(self) -> str:
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self))

    def count(self, reading: Reading, replay_set: ReplaySet) -> None:
        """What was read: the objects and records to replay, and what was left, by kind."""
        self.objects = len(replay_set.objects)
        self.records = len(replay_set.records)
        self.skipped = reading.skipped
        self.skipped_kinds = kinds_field(reading.skips, Skipped)
        self.duplicates = replay_set.duplicates
        self.unreadable = len(reading.unreadable)
        self.unreadable_kinds = kinds_field(
            Counter(refusal.kind for refusal in reading.unreadable), Unreadable
        )

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.unreadable == 0


class Progress:
    """A one-line progress display on `stream`, drawn only when it is a terminal."""

    def __init__(
        self,
        stream: TextIO,
        label: str,
        total: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval_s: float = 0.1,
    ) -> None:
        self._stream = stream
        self._label = label
        self._total = total
        self._done = 0
        self._clock = clock
        self._interval_s = interval_s
        self._drawn_at: float | None = None
        self._enabled = _is_terminal(stream)

    def advance(self, count: int) -> None:
        self._done += count
        now = self._clock()
        if self._drawn_at is None or now - self._drawn_at >= self._interval_s:
            self._draw(now)

    def close(self) -> None:
        if self._drawn_at is not None or self._done:
            self._draw(self._clock())
            if self._enabled:
                self._stream.write("\n")
                self._stream.flush()

    def _draw(self, now: float) -> None:
        self._drawn_at = now
        if not self._enabled:
            return
        share = self._done / self._total if self._total else 1.0
        width = 30
        filled = min(width, int(share * width))
        bar = "#" * filled + "." * (width - filled)
        self._stream.write(f"\r{self._label} [{bar}] {self._done}/{self._total}")
        self._stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class _SinkProblems(logging.Handler):
    """Collects what the Sink reports at ERROR: topic, partition, offset and the reason or the
    error (the Sink never logs keys, values or headers), with the replay's own hints."""

    def __init__(self, hints: Mapping[str, str]) -> None:
        super().__init__(logging.ERROR)
        self.causes: list[str] = []
        self._hints = hints

    def emit(self, record: logging.LogRecord) -> None:
        reason = getattr(record, "reason", None)
        failure = record.args[0] if isinstance(record.args, tuple) and record.args else None
        code = getattr(record, "error_code", None)
        stream = getattr(record, "stream", None)
        if reason is not None:
            where = f"{getattr(record, 'topic', '?')}-{getattr(record, 'partition', '?')}"
            cause = f"{where} offset {getattr(record, 'offset', '?')}: {reason}"
        elif isinstance(failure, StreamHeldError):
            return  # the stream guard's own line says why the stream is held
        elif isinstance(failure, KinesisPublishError):
            where = getattr(record, "topic_partition", "?")
            cause = f"{where}: PutRecords refused: {self._with_replay_hint(failure)}"
        elif isinstance(code, str) and stream is not None:
            hint = self._hints.get(f"DescribeStreamSummary:{code}") or self._hints.get(code)
            described = f"{code}: {hint}" if hint is not None else str(failure)
            cause = f"stream {stream}: DescribeStreamSummary refused: {described}"
        else:
            cause = record.getMessage()
        if cause not in self.causes:
            self.causes.append(cause)

    def _with_replay_hint(self, error: KinesisPublishError) -> str:
        """The error as the function words it, or, where the function's description speaks of
        its role and variables, the code with the replay's own hint."""
        hint = self._hints.get(error.code)
        return str(error) if hint is None else f"{error.code}: {hint}"


def replay_hints(*, stream_option: bool, described: str) -> dict[str, str]:
    """What to tell an operator for PutRecords errors no retry fixes, by the replay's own
    options and credentials (the function's hints name its role and STREAM_NAME)."""
    streams = "--stream" if stream_option else f"STREAM_NAME / STREAM_ROUTES of {described}"
    return {
        "ResourceNotFoundException": f"the stream does not exist: check {streams} and the region",
        "AccessDeniedException": "these credentials lack kinesis:PutRecords on the stream",
        "KMSAccessDeniedException": "these credentials may not use the stream's KMS key"
        " (kms:GenerateDataKey)",
        # The stream guard reads the stream's summary before the first PutRecords.
        "DescribeStreamSummary:AccessDeniedException": "these credentials lack"
        " kinesis:DescribeStreamSummary on the stream",
        "DescribeStreamSummary:403": "these credentials lack kinesis:DescribeStreamSummary on the"
        " stream",
    }


def parse_when(text: str, now: datetime) -> datetime:
    """An ISO 8601 time (UTC unless it names an offset) or an age before `now` (30m, 6h, 2d)."""
    text = text.strip()
    age = _AGE.fullmatch(text)
    if age:
        try:
            return now - timedelta(seconds=int(age.group(1)) * _AGE_SECONDS[age.group(2)])
        except OverflowError:
            raise argparse.ArgumentTypeError(
                f"{text!r} reaches back before the year 1: give a smaller age, or a time"
            ) from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a time (2024-05-01T12:00Z; UTC unless an offset is given)"
            " nor an age (30m, 6h, 2d)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _bucket(text: str) -> str:
    problem = bucket_name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid S3 bucket name: {problem}")
    return text


class _OneLineParser(argparse.ArgumentParser):
    """Bad arguments end in one line, as every other refusal does (`--help` shows the usage)."""

    def __init__(self, err: TextIO, *, prog: str, description: str) -> None:
        super().__init__(prog=prog, description=description)
        self._err = err

    def error(self, message: str) -> NoReturn:
        say(self._err, f"replay: error: {message} (--help lists the options)")
        raise SystemExit(2)


def _parser(now: datetime, err: TextIO) -> argparse.ArgumentParser:
    parser = _OneLineParser(
        err,
        prog="python -m msk_kinesis_sink.replay",
        description="Replay the function's dead letters and the mappings' on-failure batches"
        " through the same Sink: same encoding, partition keys and retries, each partition in"
        " offset order. A dry run unless --apply. See docs/replay.md.",
    )
    parser.add_argument(
        "--bucket",
        type=_bucket,
        help="the dead-letter bucket (default: DEAD_LETTER_BUCKET of the settings)",
    )
    parser.add_argument(
        "--prefix",
        action="append",
        default=None,
        help="where to look; repeat for several (default: DEAD_LETTER_PREFIX and aws/lambda/)",
    )
    parser.add_argument(
        "--topic",
        action="append",
        default=None,
        help="only this topic (a name or a glob such as 'orders.*'); repeat for several",
    )

    def when(text: str) -> datetime:
        return parse_when(text, now)

    parser.add_argument(
        "--since",
        type=when,
        metavar="WHEN",
        help="objects written (S3 LastModified) at or after WHEN: a time such as"
        " 2024-05-01T02:00Z, or an age such as 6h",
    )
    parser.add_argument(
        "--until", type=when, metavar="WHEN", help="objects written before WHEN (time or age)"
    )
    parser.add_argument(
        "--function",
        metavar="NAME",
        help="read the settings from this deployed function (lambda:GetFunctionConfiguration)"
        " instead of the environment",
    )
    parser.add_argument(
        "--stream",
        help="send every record to this stream (name or ARN) instead of the settings' streams",
    )
    parser.add_argument(
        "--apply", action="store_true", help="publish, and move what was delivered to replayed/"
    )
    return parser


@dataclass(frozen=True, slots=True)
class _Source:
    settings: Settings
    bucket: str | None  # the settings' DEAD_LETTER_BUCKET
    described: str  # where the settings came from


def _replay_settings(args: argparse.Namespace, env: Mapping[str, str]) -> _Source:
    """The settings the function uses (its own, or the environment's), made into a replay's:
    no dead-letter bucket, and every record to --stream when it is given."""
    if args.function:
        from msk_kinesis_sink.replay.aws_access import function_environment

        variables = function_environment(args.function, env)
        described = f"function {args.function}"
    else:
        variables = dict(env)
        described = "the environment"
    bucket = variables.get("DEAD_LETTER_BUCKET", "").strip() or None
    # A replay never dead-letters again: what still can not be written is reported and stays.
    variables["DEAD_LETTER_BUCKET"] = ""
    if args.stream is not None:
        variables["STREAM_NAME"] = args.stream
        variables["STREAM_ROUTES"] = ""
    try:
        settings = Settings.from_env(variables)
    except ConfigurationError as error:
        raise ConfigurationError(f"settings from {described}: {error}") from None
    return _Source(settings, bucket, described)


def _describe_settings(settings: Settings) -> str:
    if settings.stream_routes:
        routes = ",".join(f"{r.pattern}={r.stream}" for r in settings.stream_routes)
        streams = f"STREAM_ROUTES={routes} STREAM_NAME={settings.default_stream or ''}"
    else:
        streams = f"STREAM_NAME={settings.default_stream}"
    key = settings.partition_key.value
    if settings.partition_key_header is not None:
        key = f"{key}:{settings.partition_key_header}"
    return (
        f"{streams} RECORD_FORMAT={settings.record_format.value} PARTITION_KEY={key}"
        f" AGGREGATION={settings.aggregation.value} MAX_RECORD_BYTES={settings.max_record_bytes}"
    )


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < MIB:
        return f"{count / 1024:.1f} KiB"
    return f"{count / MIB:.1f} MiB"


def _print_plan(
    out: TextIO, reading: Reading, replay_set: ReplaySet, plans: Sequence[PartitionPlan]
) -> None:
    kinds = {kind: 0 for kind in ObjectKind}
    for failed in replay_set.objects:
        kinds[failed.kind] += 1
    say(
        out,
        f"objects: {len(replay_set.objects)} to replay (dead letters:"
        f" {kinds[ObjectKind.DEAD_LETTER]}, on-failure batches: {kinds[ObjectKind.ON_FAILURE]}),"
        f" {reading.skipped} skipped, {len(reading.unreadable)} unreadable",
    )
    if not plans:
        return
    names = [shown(f"{plan.topic}-{plan.partition}") for plan in plans]
    width = max(len(name) for name in names)
    say(
        out,
        f"  {'topic-partition':<{width}}  {'offsets':>21}  {'records':>8}  {'bytes':>10}  stream",
    )
    for name, plan in zip(names, plans, strict=True):
        offsets = f"{plan.first_offset}..{plan.last_offset}"
        size = _size(plan.encoded_bytes + plan.unwritable_bytes)
        say(out, f"  {name:<{width}}  {offsets:>21}  {plan.records:>8}  {size:>10}  {plan.stream}")
    for name, plan in zip(names, plans, strict=True):
        if plan.unwritable:
            size = f", {_size(plan.unwritable_bytes)} encoded" if plan.unwritable_bytes else ""
            say(
                out,
                f"  can not be written: {name}: {plan.unwritable} record(s){size}"
                f" ({plan.reason}); {plan.blocked} later record(s) wait behind them",
            )


def _failed_ranges(records: Iterable[KafkaRecord]) -> list[str]:
    by_partition: dict[str, list[int]] = {}
    for record in records:
        by_partition.setdefault(record.topic_partition, []).append(record.offset)
    return [
        f"{name} offsets {min(offsets)}..{max(offsets)} ({len(offsets)} records)"
        for name, offsets in sorted(by_partition.items())
    ]


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """0: everything selected was delivered (or, in a dry run, can be); 1: something failed or
    could not be read or marked; 2: bad arguments, settings, or an AWS error before sending;
    130: interrupted. Every refusal is one line on `stderr` (docs/replay.md)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    env = os.environ if env is None else env
    try:
        args = _parser(datetime.now(UTC), err).parse_args(argv)
    except SystemExit as exited:  # --help (0), or a bad argument (2, in one line)
        return exited.code if isinstance(exited.code, int) else 2
    try:
        return _run(args, env, out, err, clock)
    except (ConfigurationError, ReplayError) as error:
        say(err, f"replay: error: {error}")
        return 2
    except KeyboardInterrupt:
        # Objects are marked as they are delivered: a run stopped here loses nothing, and the
        # next one sends only what was not marked.
        say(err, "replay: interrupted")
        return 130


def _run(
    args: argparse.Namespace,
    env: Mapping[str, str],
    out: TextIO,
    err: TextIO,
    clock: Callable[[], float],
) -> int:
    if args.since and args.until and args.since >= args.until:
        raise ConfigurationError("--since must be before --until")
    source = _replay_settings(args, env)
    settings = source.settings
    bucket = args.bucket or source.bucket
    if bucket is None:
        raise ConfigurationError(
            "no bucket: give --bucket, or settings with DEAD_LETTER_BUCKET (--function NAME)"
        )
    problem = bucket_name_problem(bucket)
    if problem:  # --bucket is checked by the parser; this one is the settings'
        raise ConfigurationError(
            f"DEAD_LETTER_BUCKET={bucket!r} of {source.described} is not a valid S3 bucket"
            f" name: {problem}"
        )
    selection = Selection(
        prefixes=tuple(args.prefix or (settings.dead_letter_prefix, ON_FAILURE_PREFIX)),
        dead_letter_prefix=settings.dead_letter_prefix,
        topics=tuple(args.topic or ()),
        since=args.since,
        until=args.until,
    )
    # boto3 only once the arguments are valid.
    from msk_kinesis_sink.replay.aws_access import S3ObjectStore, operator_s3_client

    store = S3ObjectStore(operator_s3_client(env), bucket)
    return replay(
        store,
        settings,
        selection,
        apply=args.apply,
        make_sink=_sink_factory(env, settings),
        described=source.described,
        hints=replay_hints(stream_option=args.stream is not None, described=source.described),
        out=out,
        err=err,
        clock=clock,
    )


def _sink_factory(env: Mapping[str, str], settings: Settings) -> Callable[[], Sink]:
    """The function's Sink, made as the function makes it (its clients from `env`)."""
    from msk_kinesis_sink.aws.classify import SDK_ERRORS, describe_error

    def make() -> Sink:
        try:
            return Sink.from_env(env, settings=settings)
        except SDK_ERRORS as error:  # no region, say: raised while the client is made
            code, message = describe_error(error)
            raise ReplayError(f"could not make the Kinesis client: {code}: {message}") from None

    return make


def replay(
    store: ObjectStore,
    settings: Settings,
    selection: Selection,
    *,
    apply: bool,
    make_sink: Callable[[], Sink],
    described: str = "the environment",
    out: TextIO,
    err: TextIO,
    invocation_seconds: float = INVOCATION_SECONDS,
    max_records: int = MAX_RECORDS_PER_INVOCATION,
    clock: Callable[[], float] = time.monotonic,
    hints: Mapping[str, str] | None = None,
) -> int:
    """Select, read, show; with `apply`, publish and mark. Returns the exit status."""
    if hints is None:
        hints = replay_hints(stream_option=False, described=described)
    summary = Summary(mode="apply" if apply else "dry-run")
    prefixes = ", ".join(shown(p) for p in selection.listing_prefixes()) or "(the whole bucket)"
    say(out, f"replay from s3://{store.bucket} under {prefixes}; settings from {described}")
    say(out, f"  {_describe_settings(settings)}")

    reading, replay_set = _read(store, selection, err)
    _print_refusals(err, store.bucket, reading)
    plans = plan_partitions(replay_set, settings)
    summary.count(reading, replay_set)
    _print_plan(out, reading, replay_set, plans)
    unrouted = sorted({plan.topic for plan in plans if plan.stream is None})
    if unrouted:
        raise ConfigurationError(
            f"topic {unrouted[0]!r} matches no STREAM_ROUTES pattern and STREAM_NAME is not set:"
            " add a route for it, or replay with --stream"
        )

    if not apply:
        summary.failed = sum(plan.unwritable + plan.blocked for plan in plans)
        say(out, "dry run: nothing was sent; run again with --apply to publish")
        say(out, summary.line())
        return 0 if summary.ok else 1

    status = _publish(
        replay_set,
        store,
        make_sink,
        summary,
        _Output(out, err, hints),
        invocation_seconds,
        max_records,
        clock,
    )
    say(out, summary.line())
    return status if status else (0 if summary.ok else 1)


def _read(store: ObjectStore, selection: Selection, err: TextIO) -> tuple[Reading, ReplaySet]:
    """List, read and merge what the selection wants; what can not be read stays in `reading`."""
    reading = list_objects(store, selection)
    bar = Progress(err, "reading", len(reading.listed))
    try:
        read_objects(store, selection, reading, bar.advance)
    finally:
        bar.close()
    replay_set = ReplaySet()
    for failed in reading.objects:
        try:
            replay_set.add(failed)
        except UnreadableObjectError as error:
            reading.refuse(failed.key, error)
    return reading, replay_set


def _print_refusals(err: TextIO, bucket: str, reading: Reading) -> None:
    """One line per object left in place for a reason of its own: its key and the reason."""
    for refusal in reading.noted:
        say(err, f"skipped: s3://{bucket}/{shown(refusal.key)}: {refusal.why}")
    for refusal in reading.unreadable:
        say(err, f"unreadable: s3://{bucket}/{shown(refusal.key)}: {refusal.why}")


@dataclass(frozen=True, slots=True)
class _Output:
    """Where the publishing step reports, and the hints it gives for the Sink's errors."""

    out: TextIO
    err: TextIO
    hints: Mapping[str, str]


def _publish(
    replay_set: ReplaySet,
    store: ObjectStore,
    make_sink: Callable[[], Sink],
    summary: Summary,
    output: _Output,
    invocation_seconds: float,
    max_records: int,
    clock: Callable[[], float],
) -> int:
    """Publish and mark; returns 1 when marking failed (after saying why), else 0."""
    if not replay_set.records:
        return 0
    sink = make_sink()
    problems = _SinkProblems(output.hints)
    sink_logger = logging.getLogger("msk_kinesis_sink")
    propagate = sink_logger.propagate
    sink_logger.addHandler(problems)
    sink_logger.propagate = False  # the Sink's per-invocation lines are the function's, not ours
    replayer = Replayer(
        sink,
        store,
        replay_set,
        invocation_seconds=invocation_seconds,
        max_records=max_records,
        clock=clock,
    )
    bar = Progress(output.err, "publishing", len(replay_set.records))
    failure: ReplayError | None = None
    try:
        replayer.run(on_progress=bar.advance)
    except ReplayError as error:
        failure = error
    finally:
        bar.close()
        sink.close()
        sink_logger.removeHandler(problems)
        sink_logger.propagate = propagate
    summary.published = replayer.published
    summary.failed = len(replayer.failed)
    summary.marked = len(replayer.marked)
    for key, where in replayer.kept_beside:
        say(
            output.out,
            f"kept both: s3://{store.bucket}/{shown(key)} moved to {shown(where)}, beside the"
            " replayed/ copy of an earlier object of that key",
        )
    for cause in problems.causes[:_MAX_CAUSES]:
        say(output.err, f"cause: {cause}")
    for line in _failed_ranges(replayer.failed):
        say(output.err, f"failed: {line} (their objects stay in place)")
    if failure is not None:
        say(output.err, f"replay: error: {failure}; sending stopped there")
        return 1
    return 0
