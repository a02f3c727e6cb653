"""`make rehearse` on the CI variant: the synthesized stack deployed into moto and run under
its own role passes end to end; without any one action the function uses, it fails naming it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from rehearse import iam
from rehearse.aws import client
from rehearse.gateway import EncryptionKeys, Gateway
from rehearse.moto_server import ACCOUNT, MotoServer
from rehearse.permissions import Policy
from rehearse.rehearsal import Outcome, RehearsalInputError, rehearse, set_up
from rehearse.synth import Synthesized
from rehearse.variants import Variant

pytestmark = [pytest.mark.rehearse, pytest.mark.timeout(600)]

# Every action the function's own code makes (the mappings' and Lambda's runtime's are not run
# here). kinesis:DescribeStreamSummary: the stream guard reads each target stream's summary.
FUNCTION_ACTIONS = (
    "kinesis:PutRecords",
    "kinesis:DescribeStreamSummary",
    "s3:PutObject",
    "kms:GenerateDataKey",
)


def _rehearse(
    server: MotoServer,
    synthesized: Synthesized,
    chosen: Variant,
    workdir: Path,
    without: str | None,
) -> tuple[Outcome, list[str]]:
    lines: list[str] = []
    outcome = rehearse(
        server,
        synthesized,
        chosen,
        without=without,
        workdir=workdir,
        say=lambda label, text: lines.append(f"{label:<9} {text}"),
    )
    return outcome, lines


def test_rehearsal_ci_variant_passes_end_to_end(
    moto_server: MotoServer, ci_synth: Synthesized, ci_variant: Variant, tmp_path: Path
) -> None:
    # WHEN the CI variant is rehearsed with the role's policy as synthesized
    outcome, lines = _rehearse(moto_server, ci_synth, ci_variant, tmp_path, without=None)
    text = "\n".join(lines)
    # THEN it passes: access control proven on, every call allowed, nothing denied
    assert outcome.ok, text
    assert "access control on: the role is refused kinesis:ListStreams" in text
    assert not outcome.denied and "denied " not in text
    # AND the function took every path: records, dead letters, and the data keys of both the
    # stream's and the bucket's keys, asked as the role
    for call in (
        "calls     kinesis:PutRecords x",
        "calls     s3:PutObject x",
        "calls     kms:GenerateDataKey x1 allowed (asked by the service for kinesis:PutRecords)",
        "calls     kms:GenerateDataKey x1 allowed (asked by the service for s3:PutObject)",
    ):
        assert call in text
    # AND the deployed code ran, from the asset, and nothing was lost, reordered or misplaced
    assert f"the handler ran from {tmp_path / 'code'}" in text
    [stream] = [line for line in lines if line.startswith("audit     stream ")]
    records = ci_variant.records - ci_variant.oversize
    assert f"{records} of {records} delivered" in stream
    assert "0 lost, 0 out of order, 0 corrupted, 0 from elsewhere" in stream
    expected = f"{ci_variant.oversize} of {ci_variant.oversize} expected, SSE-KMS"
    assert expected in text
    # AND the doctor, under its read-only policy, finds no failure
    assert outcome.doctor is not None and outcome.doctor.status == 0
    assert outcome.doctor.lines[-1].endswith("fail=0")
    assert lines[-1].startswith("doctor    checks=")


@pytest.mark.parametrize("action", FUNCTION_ACTIONS)
def test_rehearsal_without_an_action_the_function_uses_fails_naming_it(
    action: str,
    moto_server: MotoServer,
    ci_synth: Synthesized,
    ci_variant: Variant,
    tmp_path: Path,
) -> None:
    # WHEN the action is taken out of the role's policy before the run
    outcome, lines = _rehearse(moto_server, ci_synth, ci_variant, tmp_path, without=action)
    # THEN the rehearsal fails, with a line naming the action that was refused
    assert not outcome.ok
    denied = [line for line in lines if line.startswith("denied ")]
    assert denied and all(line.startswith(f"denied    {action} on arn:aws:") for line in denied), (
        lines
    )
    assert {call.action for call in outcome.denied} == {action}


def test_rehearsal_refuses_an_option_the_stack_cannot_use(
    moto_server: MotoServer, ci_synth: Synthesized, ci_variant: Variant, tmp_path: Path
) -> None:
    with pytest.raises(RehearsalInputError, match="sqs:SendMessage is not in the role's policy"):
        _rehearse(moto_server, ci_synth, ci_variant, tmp_path, without="sqs:SendMessage")


def test_rehearsal_checks_the_resources_moto_does_not(
    moto_server: MotoServer, ci_synth: Synthesized
) -> None:
    # GIVEN the deployed stack, and its role's policy with the stream statement scoped to
    # another stream (moto would compare "*" and allow the write)
    account = set_up(moto_server, ci_synth, lambda label, text: None)
    policy = account.role.policy
    other = "arn:aws:kinesis:us-east-1:123456789012:stream/another-stream"
    narrowed = Policy(
        tuple(
            replace(s, resources=(other,)) if "kinesis:PutRecords" in s.actions else s
            for s in policy.statements
        )
    )
    iam.install(account.endpoint, account.operator, account.role, narrowed.for_moto())
    session = iam.assume(account.endpoint, account.operator, account.role.role_arn, "resources")
    moto_server.enforce_access_control()
    stream = account.deployed.stack.outputs["StreamArn"]
    keys = EncryptionKeys({}, {})
    gateway = Gateway(account.endpoint, policy=narrowed, caller=session, account=ACCOUNT, keys=keys)
    with gateway.serving():
        kinesis = boto3.client(
            "kinesis",
            endpoint_url=gateway.endpoint,
            region_name="us-east-1",
            aws_access_key_id=session.access_key_id,
            aws_secret_access_key=session.secret_access_key,
            aws_session_token=session.session_token,
        )
        # WHEN the role writes to the deployed stream
        with pytest.raises(ClientError) as refused:
            kinesis.put_records(StreamARN=stream, Records=[{"Data": b"x", "PartitionKey": "k"}])
        calls = gateway.calls()
    # THEN the gateway refuses it as IAM would, naming the resource
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert [(c.action, c.resource, c.denied_by) for c in calls] == [
        ("kinesis:PutRecords", stream, "the policy's Resource")
    ]
    # AND moto itself compares S3 resources: an object in a bucket no statement names is refused
    s3 = client("s3", account.endpoint, session)
    with pytest.raises(ClientError) as outside:
        s3.put_object(Bucket=account.deployed.asset_bucket, Key="records/x.json", Body=b"{}")
    assert outside.value.response["Error"]["Code"] == "AccessDenied"
