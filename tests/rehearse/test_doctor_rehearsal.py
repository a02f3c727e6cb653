"""The doctor against the rehearsal's deployment in moto, as its own IAM user with access control
on, with each failure injected where it can be: the alarm and the environment through moto's own
API; the mapping and the stream's distribution strategy through the doctor's reader, since moto
has no Kafka mappings and neither RecordDistributionStrategy nor the call that sets it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from msk_kinesis_sink.doctor.aws_access import AwsDeployment
from msk_kinesis_sink.doctor.model import StreamSummary
from rehearse import iam
from rehearse.aws import Identity, client, session
from rehearse.doctor import DoctorRun, EmulatedMappings, examine, mapping_states
from rehearse.moto_server import REGION, MotoServer
from rehearse.rehearsal import Account, set_up
from rehearse.synth import Synthesized

pytestmark = [pytest.mark.rehearse, pytest.mark.timeout(600)]


@dataclass(frozen=True)
class Enforced:
    """The CI variant deployed, the role's policy installed, access control on; and a session
    of the function's role, asked for before (moto can't check a service principal's trust)."""

    account: Account
    role: Identity


@pytest.fixture(scope="module")
def enforced(moto_server: MotoServer, ci_synth: Synthesized) -> Iterator[Enforced]:
    deployed = set_up(moto_server, ci_synth, lambda label, text: None)
    policy = deployed.role.policy.for_moto()
    iam.install(deployed.endpoint, deployed.operator, deployed.role, policy)
    role = iam.assume(deployed.endpoint, deployed.operator, deployed.role.role_arn, "not-doctor")
    moto_server.enforce_access_control()
    yield Enforced(deployed, role)


@pytest.fixture
def account(enforced: Enforced) -> Account:
    return enforced.account


class AutoStreams(AwsDeployment):
    """moto's stream summaries, read as if someone had switched each stream to AUTO."""

    def stream(self, reference: str) -> StreamSummary | None:
        summary = super().stream(reference)
        return None if summary is None else replace(summary, record_distribution="AUTO")


@dataclass(frozen=True)
class Doctor:
    account: Account

    def reader(self, cls: type[AwsDeployment] = AwsDeployment) -> AwsDeployment:
        endpoint = {"AWS_ENDPOINT_URL": self.account.endpoint}
        return cls(endpoint, REGION, aws_session=session(self.account.doctor))

    def deployment(self, cls: type[AwsDeployment] = AwsDeployment) -> EmulatedMappings:
        stand_ins = self.account.deployed.stand_ins
        return EmulatedMappings(self.reader(cls), stand_ins, mapping_states(stand_ins, True))

    def run(self, deployment: EmulatedMappings | None = None) -> DoctorRun:
        return examine(deployment or self.deployment(), self.account.deployed.stack.name)


def _line(result: DoctorRun, start: str) -> str:
    found = [line for line in result.lines if line.startswith(start)]
    assert len(found) == 1, (start, result.lines)
    return found[0]


def test_doctor_on_the_rehearsal_deployment_fails_nothing(account: Account) -> None:
    # WHEN the doctor examines the deployment as deployed
    result = Doctor(account).run()
    # THEN no check fails; it found the function, the mapping, the stream and every alarm
    assert result.status == 0, result.lines
    assert result.lines[-1].endswith("fail=0")
    assert _line(result, "OK    function ").endswith("variables as the stack set them")
    assert _line(result, "OK    mapping ")
    alarms = len(account.deployed.stack.declared("AWS::CloudWatch::Alarm"))
    assert _line(result, "OK    alarms: ").startswith(f"OK    alarms: {alarms} not in ALARM")


def test_doctor_finds_a_stream_set_to_auto(account: Account) -> None:
    doctor = Doctor(account)
    result = doctor.run(doctor.deployment(AutoStreams))
    line = _line(result, "FAIL  stream ")
    assert "RecordDistributionStrategy AUTO" in line and line.endswith("#stream-settings)")
    assert result.status == 1 and result.lines[-1].endswith("fail=1")


def test_doctor_finds_a_disabled_mapping(account: Account) -> None:
    doctor = Doctor(account)
    [stand_in] = account.deployed.stand_ins
    deployment = doctor.deployment().with_state(stand_in.uuid, "Disabled", "USER_INITIATED")
    result = doctor.run(deployment)
    line = _line(result, f"FAIL  mapping {stand_in.topics[0]} ({stand_in.uuid})")
    assert "Disabled (USER_INITIATED)" in line and line.endswith("#mappingnotpolling-topic)")
    assert result.status == 1


def test_doctor_finds_an_alarm_forced_into_alarm(account: Account) -> None:
    # GIVEN one of the stack's alarms set to ALARM (SetAlarmState, as the operator)
    name = f"{account.deployed.stack.name}-RecordsDeadLettered"
    cloudwatch = client("cloudwatch", account.endpoint, account.operator)
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="forced by a test")
    try:
        result = Doctor(account).run()
    finally:
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="reset")
    # THEN it fails, with the reason and the link its description carries
    line = _line(result, f"FAIL  alarm {name}")
    assert line.endswith(
        "in ALARM: forced by a test (runbook: docs/runbook.md#recordsdeadlettered)"
    )
    assert result.status == 1


def test_doctor_finds_an_environment_changed_by_hand(account: Account) -> None:
    # GIVEN the function's environment edited outside the stack
    function = account.deployed.stack.outputs["FunctionName"]
    lambda_ = client("lambda", account.endpoint, account.operator)
    before = lambda_.get_function_configuration(FunctionName=function)["Environment"]["Variables"]
    lambda_.update_function_configuration(
        FunctionName=function,
        Environment={"Variables": {**before, "MAX_CONCURRENCY": "64", "LOG_LEVEL": "DEBUG"}},
    )
    try:
        result = Doctor(account).run()
    finally:
        lambda_.update_function_configuration(
            FunctionName=function, Environment={"Variables": before}
        )
    # THEN it fails, naming both variables and neither value
    line = _line(result, f"FAIL  function {function} environment")
    assert "changed by hand: MAX_CONCURRENCY" in line and "added by hand: LOG_LEVEL" in line
    assert "64" not in line and "DEBUG" not in line
    assert result.status == 1


def test_doctor_without_its_policy_exits_2_in_one_line(enforced: Enforced) -> None:
    # GIVEN credentials that lack the doctor's read-only policy (the function's own role)
    account, role = enforced.account, enforced.role
    stand_ins = account.deployed.stand_ins
    reader = AwsDeployment(
        {"AWS_ENDPOINT_URL": account.endpoint}, REGION, aws_session=session(role)
    )
    result = examine(
        EmulatedMappings(reader, stand_ins, mapping_states(stand_ins, True)),
        account.deployed.stack.name,
    )
    # THEN one line says what it could not read, and the exit status is 2
    assert result.status == 2
    assert len(result.lines) == 1
    assert result.lines[0].startswith("doctor: error: could not read stack ")
