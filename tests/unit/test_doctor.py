"""The doctor: what it finds in a stack, how it judges each part, its lines and exit status."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msk_kinesis_sink.doctor import checks
from msk_kinesis_sink.doctor.aws_access import READ_ONLY_ACTIONS, read_only_policy
from msk_kinesis_sink.doctor.checks import Status, environment_check
from msk_kinesis_sink.doctor.cli import main, run
from msk_kinesis_sink.doctor.model import AlarmState, MappingState, RecentObjects, StackView
from msk_kinesis_sink.doctor.model import StackResource as Resource
from msk_kinesis_sink.doctor.model import StreamSummary as Summary
from msk_kinesis_sink.errors import DoctorError
from msk_kinesis_sink.runbook import RUNBOOK_PATH, runbook_anchor

REPO = Path(__file__).resolve().parents[2]
RUNBOOK = REPO / RUNBOOK_PATH


def anchors(path: Path) -> set[str]:
    """The anchors of a page's headings (outside code blocks)."""
    fenced, found = False, set()
    for line in path.read_text(encoding="utf-8").splitlines():
        fenced ^= line.startswith("```")
        match = None if fenced else re.match(r"^#{1,6} (.+)$", line)
        if match:
            found.add(runbook_anchor(match.group(1).strip()))
    return found


NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
STACK = "Sink"
STACK_ID = "arn:aws:cloudformation:eu-west-1:111122223333:stack/Sink/0a1b2c3d"
FUNCTION = "Sink-Function-AbC"
STREAM = "Sink-Stream-XyZ"
STREAM_ARN = f"arn:aws:kinesis:eu-west-1:111122223333:stream/{STREAM}"
BUCKET = "sink-deadletters-abc"
UUID = "6f1e0d2c-0000-4000-8000-000000000001"
RUNBOOK_URL = "https://wiki.example.com/sink/runbook"
TEMPLATE: dict[str, Any] = {
    "Resources": {
        "Function": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Environment": {
                    "Variables": {
                        "STREAM_NAME": {"Fn::GetAtt": ["Stream", "Arn"]},
                        "DEAD_LETTER_BUCKET": {"Ref": "Bucket"},
                        "MAX_RECORD_BYTES": "1048576",
                        "RECORD_FORMAT": "raw",
                    }
                }
            },
        },
        "Stream": {
            "Type": "AWS::Kinesis::Stream",
            "Properties": {"StreamEncryption": {"EncryptionType": "KMS", "KeyId": "k"}},
        },
        "Bucket": {"Type": "AWS::S3::Bucket"},
        "Mapping": {"Type": "AWS::Lambda::EventSourceMapping"},
        "LagAlarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {"AlarmName": f"{STACK}-OffsetLag"},
        },
        "ErrorsAlarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {"AlarmName": f"{STACK}-FunctionErrors"},
        },
    }
}


def _alarm(name: str, entry: str, state: str = "OK", threshold: float = 1.0) -> AlarmState:
    description = f"something happened. Runbook: {RUNBOOK_URL}#{runbook_anchor(entry)}"
    return AlarmState(name, state, "Threshold Crossed: 3 datapoints", description, threshold)


@dataclass
class FakeDeployment:
    """A deployment in memory, healthy until a test changes it."""

    environment: dict[str, str] | None = field(
        default_factory=lambda: {
            "STREAM_NAME": STREAM_ARN,
            "DEAD_LETTER_BUCKET": BUCKET,
            "MAX_RECORD_BYTES": "1048576",
            "RECORD_FORMAT": "raw",
        }
    )
    mapping: MappingState | None = field(
        default_factory=lambda: MappingState(UUID, ("orders",), "Enabled", "USER_INITIATED", "OK")
    )
    summary: Summary | None = field(
        default_factory=lambda: Summary(
            STREAM, STREAM_ARN, "ACTIVE", "ON_DEMAND", "USER_PARTITION_KEY", 1024, "KMS", "k"
        )
    )
    alarm_states: list[AlarmState] = field(
        default_factory=lambda: [
            _alarm(f"{STACK}-OffsetLag", "OffsetLag", threshold=10_000),
            _alarm(f"{STACK}-FunctionErrors", "FunctionErrors"),
        ]
    )
    recent: RecentObjects | None = field(
        default_factory=lambda: RecentObjects({}, listed=12, complete=True)
    )
    lag: float | None = 40.0
    status: str = "UPDATE_COMPLETE"
    read: list[str] = field(default_factory=list)

    def stack(self, name: str) -> StackView:
        if name != STACK:
            raise DoctorError(f"no stack named {name} in eu-west-1")
        return StackView(
            name=STACK,
            stack_id=STACK_ID,
            status=self.status,
            outputs={"FunctionName": FUNCTION, "DeadLetterBucketName": BUCKET},
            resources=(
                Resource("Function", "AWS::Lambda::Function", FUNCTION),
                Resource("Stream", "AWS::Kinesis::Stream", STREAM),
                Resource("Bucket", "AWS::S3::Bucket", BUCKET),
                Resource("Mapping", "AWS::Lambda::EventSourceMapping", UUID),
                Resource("LagAlarm", "AWS::CloudWatch::Alarm", f"{STACK}-OffsetLag"),
                Resource("ErrorsAlarm", "AWS::CloudWatch::Alarm", f"{STACK}-FunctionErrors"),
            ),
            template=TEMPLATE,
        )

    def function_environment(self, name: str) -> dict[str, str] | None:
        self.read.append(f"function {name}")
        return None if self.environment is None else dict(self.environment)

    def mappings(self, uuids: Sequence[str]) -> list[MappingState]:
        return [self.mapping] if self.mapping is not None and UUID in uuids else []

    def stream(self, reference: str) -> Summary | None:
        self.read.append(f"stream {reference}")
        return self.summary

    def alarms(self, names: Sequence[str]) -> list[AlarmState]:
        return [alarm for alarm in self.alarm_states if alarm.name in names]

    def recent_objects(self, bucket: str, since: datetime) -> RecentObjects | None:
        assert since == NOW - timedelta(hours=24)
        return self.recent

    def latest_offset_lag(self, function_name: str, since: datetime) -> float | None:
        assert function_name == FUNCTION
        return self.lag


def _run(deployment: FakeDeployment, stack: str = STACK) -> tuple[int, list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    status = run(deployment, stack, out=out, err=err, now=lambda: NOW)
    return status, out.getvalue().splitlines(), err.getvalue()


def _line(lines: list[str], subject: str) -> str:
    found = [line for line in lines if subject in line]
    assert len(found) == 1, (subject, lines)
    return found[0]


def test_doctor_healthy_deployment_every_check_ok_exit_0() -> None:
    # GIVEN a deployment where everything is as the stack set it
    deployment = FakeDeployment()
    # WHEN the doctor runs
    status, lines, err = _run(deployment)
    # THEN every line is OK, the summary counts them, and it exits 0
    assert status == 0 and err == ""
    assert all(line.startswith("OK ") for line in lines[:-1]), lines
    assert lines[-1] == "checks=7 ok=7 warn=0 fail=0"
    assert "latest OffsetLag 40, below the alarm's threshold 10000" in lines[-2]
    # AND the stream it checked is the one the stack created (found once, by name)
    assert deployment.read.count(f"stream {STREAM}") == 1


def test_doctor_stream_set_to_auto_fails_naming_it_with_the_runbook_link() -> None:
    # GIVEN a stream switched to AUTO (Kinesis then ignores partition keys)
    deployment = FakeDeployment()
    assert deployment.summary is not None
    deployment.summary = replace(deployment.summary, record_distribution="AUTO")
    # WHEN the doctor runs
    status, lines, _ = _run(deployment)
    # THEN the stream's line fails first with AUTO, and links to its runbook entry at the
    # runbook the alarms name
    line = _line(lines, f"stream {STREAM}")
    assert line.startswith(f"FAIL  stream {STREAM}: RecordDistributionStrategy AUTO")
    assert line.endswith(f"(runbook: {RUNBOOK_URL}#stream-settings)")
    assert status == 1 and lines[-1] == "checks=7 ok=6 warn=0 fail=1"


@pytest.mark.parametrize(
    ("state", "reason", "result", "verdict"),
    [
        ("Disabled", "USER_INITIATED", "OK", "FAIL"),
        ("Enabled", "USER_INITIATED", "PROBLEM: Connection error. Check the VPC.", "FAIL"),
        ("Creating", "USER_INITIATED", "No records processed", "WARN"),
        ("Enabled", "USER_INITIATED", "No records processed", "OK"),
    ],
)
def test_doctor_mapping_state_and_last_processing_result(
    state: str, reason: str, result: str, verdict: str
) -> None:
    # GIVEN a mapping in some state with some last processing result
    deployment = FakeDeployment(mapping=MappingState(UUID, ("orders",), state, reason, result))
    # WHEN the doctor runs
    status, lines, _ = _run(deployment)
    # THEN the mapping's line says all three, with the verdict they call for
    line = _line(lines, f"mapping orders ({UUID})")
    assert line.startswith(verdict)
    assert f"{state} ({reason}), last processing result: {result}" in line
    assert status == (1 if verdict == "FAIL" else 0)
    if verdict != "OK":
        assert line.endswith("#mappingnotpolling-topic)")


def test_doctor_environment_changed_by_hand_names_variables_never_values() -> None:
    # GIVEN a function whose environment was edited in the console
    deployment = FakeDeployment()
    assert deployment.environment is not None
    deployment.environment["RECORD_FORMAT"] = "envelope-secret-value"
    del deployment.environment["MAX_RECORD_BYTES"]
    deployment.environment["AWS_ENDPOINT_URL"] = "https://proxy.example.com"
    # WHEN the doctor runs
    status, lines, _ = _run(deployment)
    # THEN one FAIL names what changed, what went and what came, but no value
    line = _line(lines, f"function {FUNCTION} environment")
    assert line.startswith("FAIL")
    assert "changed by hand: RECORD_FORMAT" in line
    assert "removed: MAX_RECORD_BYTES" in line
    assert "added by hand: AWS_ENDPOINT_URL" in line
    assert "secret" not in "\n".join(lines) and "proxy.example.com" not in "\n".join(lines)
    assert status == 1


def test_doctor_alarm_in_alarm_fails_with_the_link_its_description_gives() -> None:
    # GIVEN an alarm in ALARM
    deployment = FakeDeployment()
    deployment.alarm_states[1] = replace(deployment.alarm_states[1], state="ALARM")
    # WHEN the doctor runs
    status, lines, _ = _run(deployment)
    # THEN that alarm fails with its reason and its own runbook link; the rest are one OK line
    line = _line(lines, f"alarm {STACK}-FunctionErrors")
    assert line == (
        f"FAIL  alarm {STACK}-FunctionErrors: in ALARM: Threshold Crossed: 3 datapoints"
        f" (runbook: {RUNBOOK_URL}#functionerrors)"
    )
    assert _line(lines, "alarms:").startswith("OK    alarms: 1 not in ALARM")
    assert status == 1


def test_doctor_alarm_the_stack_declares_but_cloudwatch_lacks_warns() -> None:
    deployment = FakeDeployment()
    deployment.alarm_states.pop()
    status, lines, _ = _run(deployment)
    assert _line(lines, f"alarm {STACK}-FunctionErrors").startswith("WARN")
    assert status == 0


@pytest.mark.parametrize(
    ("summary_change", "expected"),
    [
        ({"max_record_kib": 512}, "FAIL  stream Sink-Stream-XyZ: max record 512 KiB is below"),
        ({"status": "DELETING"}, "FAIL  stream Sink-Stream-XyZ: DELETING: it takes no writes"),
        ({"encryption": "NONE"}, "FAIL  stream Sink-Stream-XyZ: encryption NONE, where the stack"),
        ({"record_distribution": None}, "OK    stream Sink-Stream-XyZ: ACTIVE; USER_PARTITION_KEY"),
        ({"max_record_kib": None}, "OK    stream Sink-Stream-XyZ: ACTIVE; USER_PARTITION_KEY;"),
    ],
)
def test_doctor_stream_checks(summary_change: dict[str, Any], expected: str) -> None:
    deployment = FakeDeployment()
    assert deployment.summary is not None
    deployment.summary = replace(deployment.summary, **summary_change)
    _, lines, _ = _run(deployment)
    assert _line(lines, f"stream {STREAM}").startswith(expected)


def test_doctor_missing_function_stream_and_bucket_fail() -> None:
    deployment = FakeDeployment(environment=None, summary=None, recent=None)
    status, lines, _ = _run(deployment)
    assert _line(lines, "environment").endswith(
        f"the function was not found (runbook: {RUNBOOK_URL}#function-environment)"
    )
    assert _line(lines, f"stream {STREAM}").startswith(f"FAIL  stream {STREAM}: not found")
    assert _line(lines, "dead letters").startswith(f"FAIL  dead letters s3://{BUCKET}")
    assert status == 1


def test_doctor_recent_dead_letters_and_lag_warn() -> None:
    # GIVEN dead letters written today (more than were listed) and a lag above the threshold
    recent = RecentObjects({"records/": 3, "aws/": 1}, listed=10_000, complete=False)
    deployment = FakeDeployment(recent=recent, lag=25_000.0)
    status, lines, _ = _run(deployment)
    # THEN both warn, the counts said as lower bounds, and the run still exits 0
    assert _line(lines, "dead letters").startswith(
        f"WARN  dead letters s3://{BUCKET}: at least 4 objects written in the last 24 hours"
        " (aws/: 1, records/: 3)"
    )
    assert "at or above the OffsetLag alarm's threshold 10000" in _line(lines, "offset lag")
    assert status == 0 and lines[-1] == "checks=7 ok=5 warn=2 fail=0"


def test_doctor_claim_check_objects_are_no_dead_letters() -> None:
    # GIVEN only claim-check objects written today (OVERSIZE_RECORDS=claim_check at work)
    recent = RecentObjects({"claim-checks/": 3}, listed=3, complete=True)
    # WHEN the doctor runs
    _, lines, _ = _run(FakeDeployment(recent=recent))
    # THEN the dead-letter check is OK and says what it saw
    assert _line(lines, "dead letters") == (
        f"OK    dead letters s3://{BUCKET}: no dead letters written in the last 24 hours;"
        " 3 claim-check objects (records kept whole)"
    )


def test_doctor_no_offset_lag_datapoint_warns() -> None:
    _, lines, _ = _run(FakeDeployment(lag=None))
    assert _line(lines, "offset lag").startswith("WARN")


@pytest.mark.parametrize(
    ("stack_status", "verdict"),
    [
        ("CREATE_COMPLETE", "OK"),
        ("UPDATE_IN_PROGRESS", "WARN"),
        ("UPDATE_ROLLBACK_COMPLETE", "WARN"),
        ("ROLLBACK_COMPLETE", "FAIL"),
        ("UPDATE_FAILED", "FAIL"),
    ],
)
def test_doctor_stack_status(stack_status: str, verdict: str) -> None:
    _, lines, _ = _run(FakeDeployment(status=stack_status))
    assert lines[0].startswith(f"{verdict:<5} stack {STACK}: {stack_status}")


def test_doctor_unknown_stack_exits_2_with_one_line() -> None:
    # GIVEN a stack name that does not exist
    status, lines, err = _run(FakeDeployment(), stack="Other")
    # THEN one line on stderr, no report, exit status 2
    assert status == 2 and lines == []
    assert err == "doctor: error: no stack named Other in eu-west-1\n"


@pytest.mark.parametrize(
    "argv",
    [[], ["--stack"], ["--stack", "1-starts-with-a-digit"], ["--stack", "S", "--region", "EU"]],
)
def test_doctor_bad_arguments_exit_2_in_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv, environ={})
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("doctor: error: ") and err.count("\n") == 1


def test_doctor_no_region_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--stack", STACK], environ={"AWS_CONFIG_FILE": "/nonexistent"})
    assert status == 2
    assert (
        capsys.readouterr().err == "doctor: error: no AWS region: set AWS_REGION or pass --region\n"
    )


def test_doctor_runbook_entries_are_headings_of_the_runbook() -> None:
    # GIVEN every runbook entry a check can point to
    # THEN the runbook has a heading with that anchor
    assert {runbook_anchor(e) for e in checks.Entry} <= anchors(RUNBOOK)
    assert "the-doctors-read-only-policy" in anchors(RUNBOOK)


def test_doctor_runbook_gives_the_read_only_policy_the_calls_need() -> None:
    # GIVEN the policy block under "The doctor's read-only policy"
    text = RUNBOOK.read_text(encoding="utf-8")
    block = re.search(r"### The doctor's read-only policy\n.*?```json\n(.*?)```", text, re.S)
    assert block is not None
    # THEN it is the policy the code states, which names each action the reader calls
    assert json.loads(block.group(1)) == read_only_policy()
    assert sorted(READ_ONLY_ACTIONS) == list(READ_ONLY_ACTIONS)


@given(
    expected=st.dictionaries(st.from_regex(r"[A-Z_]{1,12}", fullmatch=True), st.text(max_size=8)),
    edits=st.lists(st.tuples(st.integers(0, 20), st.text(max_size=8)), max_size=4),
)
def test_doctor_environment_check_fails_exactly_when_something_differs(
    expected: dict[str, str], edits: list[tuple[int, str]]
) -> None:
    # GIVEN the stack's environment and the deployed one, edited or not
    actual = dict(expected)
    names = sorted(expected)
    for index, value in edits:
        if names:
            actual[names[index % len(names)]] = value
    # WHEN compared
    check = environment_check("f", expected, (), actual)
    # THEN it fails exactly when they differ, and never shows a value
    assert (check.status is Status.FAIL) == (actual != expected)
    for value in {*expected.values(), *actual.values()} - {""}:
        assert f"={value}" not in check.detail


def test_doctor_line_points_to_the_repository_runbook_by_default() -> None:
    check = checks.Check(Status.WARN, "s", "d", checks.Entry.STREAM)
    assert check.line() == f"WARN  s: d (runbook: {RUNBOOK_PATH}#stream-settings)"
    assert checks.Check(Status.OK, "s", "d", checks.Entry.STREAM).line() == "OK    s: d"
