"""The doctor's reader (msk_kinesis_sink.doctor.aws_access) against moto, in-process: what it
reads of each service, what it reads as missing, and the errors it turns into one line."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto.core import set_initial_no_auth_action_count

from msk_kinesis_sink.doctor.aws_access import MAX_LISTED_OBJECTS, AwsDeployment
from msk_kinesis_sink.errors import DoctorError
from tests.integration.conftest import REGION
from tests.integration.test_replay_moto import _deploy_function

STACK = "DoctorStack"
TEMPLATE = {
    "Resources": {
        "Stream": {"Type": "AWS::Kinesis::Stream", "Properties": {"ShardCount": 1}},
        "Bucket": {"Type": "AWS::S3::Bucket"},
    },
    "Outputs": {"DeadLetterBucketName": {"Value": {"Ref": "Bucket"}}},
}


@pytest.fixture
def reader(mocked_aws: None) -> Iterator[AwsDeployment]:
    yield AwsDeployment(os.environ)


def test_doctor_reads_the_stack_its_resources_outputs_and_template(reader: AwsDeployment) -> None:
    # GIVEN a stack deployed from a JSON template
    boto3.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(TEMPLATE))
    # WHEN the doctor reads it
    stack = reader.stack(STACK)
    # THEN it has the stack's id, status, outputs, resources and the template as deployed
    assert stack.stack_id.startswith(f"arn:aws:cloudformation:{REGION}:")
    assert stack.status == "CREATE_COMPLETE"
    assert {r.logical_id: r.resource_type for r in stack.resources} == {
        "Stream": "AWS::Kinesis::Stream",
        "Bucket": "AWS::S3::Bucket",
    }
    assert stack.outputs["DeadLetterBucketName"] == stack.physical_ids("AWS::S3::Bucket")[0]
    assert stack.template == TEMPLATE


def test_doctor_no_such_stack_is_one_line(reader: AwsDeployment) -> None:
    with pytest.raises(DoctorError, match=f"^no stack named Missing in {REGION}$"):
        reader.stack("Missing")


def test_doctor_reads_the_function_environment_or_none(reader: AwsDeployment) -> None:
    _deploy_function("sink", {"STREAM_NAME": "s", "RECORD_FORMAT": "raw"})
    assert reader.function_environment("sink") == {"STREAM_NAME": "s", "RECORD_FORMAT": "raw"}
    assert reader.function_environment("gone") is None


def test_doctor_reads_streams_and_misses_the_missing(reader: AwsDeployment) -> None:
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName="orders", ShardCount=1)
    key = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    kinesis.start_stream_encryption(StreamName="orders", EncryptionType="KMS", KeyId=key)
    summary = reader.stream("orders")
    assert summary is not None
    by_arn = reader.stream(summary.arn)
    assert by_arn == summary
    assert (summary.status, summary.encryption, summary.key_id) == ("ACTIVE", "KMS", key)
    # moto's answer leaves these out: the doctor reads them as not reported
    assert summary.record_distribution is None and summary.max_record_kib is None
    assert reader.stream("nope") is None


def test_doctor_reads_mappings_it_finds_and_leaves_out_the_rest(reader: AwsDeployment) -> None:
    _deploy_function("sink", {})
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName="source", ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName="source")["StreamDescriptionSummary"][
        "StreamARN"
    ]
    uuid = boto3.client("lambda").create_event_source_mapping(
        EventSourceArn=arn, FunctionName="sink", StartingPosition="TRIM_HORIZON"
    )["UUID"]
    found = reader.mappings([uuid, "00000000-0000-0000-0000-000000000000"])
    assert [m.uuid for m in found] == [uuid]
    assert found[0].state


def test_doctor_reads_alarms_more_than_one_call_holds(reader: AwsDeployment) -> None:
    # GIVEN more alarms than DescribeAlarms takes names at once, one of them in ALARM
    cloudwatch = boto3.client("cloudwatch")
    names = [f"Sink-Alarm-{i:03d}" for i in range(120)]
    alarm = {"MetricName": "Errors", "Namespace": "AWS/Lambda", "Statistic": "Sum", "Period": 300}
    alarm |= {"EvaluationPeriods": 1, "Threshold": 7, "ComparisonOperator": "GreaterThanThreshold"}
    for name in names:
        cloudwatch.put_metric_alarm(AlarmName=name, AlarmDescription="Runbook: x#y", **alarm)
    cloudwatch.set_alarm_state(AlarmName=names[110], StateValue="ALARM", StateReason="forced")
    # WHEN read by name
    alarms = reader.alarms([*names, "Sink-Deleted"])
    # THEN every one that exists is there, with state, reason, description and threshold
    assert sorted(a.name for a in alarms) == names
    forced = next(a for a in alarms if a.name == names[110])
    assert (forced.state, forced.reason, forced.threshold) == ("ALARM", "forced", 7.0)


def test_doctor_counts_recent_objects_by_prefix(reader: AwsDeployment) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="dead-letters")
    for key in ("records/t/0/1.json", "records/t/0/2.json", "aws/lambda/u/t-0/x"):
        s3.put_object(Bucket="dead-letters", Key=key, Body=b"{}")
    now = datetime.now(tz=UTC)
    recent = reader.recent_objects("dead-letters", now - timedelta(hours=24))
    assert recent is not None and recent.complete
    assert dict(recent.by_prefix) == {"records/": 2, "aws/": 1}
    later = reader.recent_objects("dead-letters", now + timedelta(hours=1))
    assert later is not None and later.count == 0 and later.listed == 3
    assert reader.recent_objects("no-such-bucket", now) is None
    assert MAX_LISTED_OBJECTS >= 1000


def test_doctor_reads_the_latest_offset_lag(reader: AwsDeployment) -> None:
    now = datetime.now(tz=UTC)
    cloudwatch = boto3.client("cloudwatch")
    for minutes, value in ((10, 900.0), (2, 120.0)):
        cloudwatch.put_metric_data(
            Namespace="AWS/Lambda",
            MetricData=[
                {
                    "MetricName": "OffsetLag",
                    "Dimensions": [{"Name": "FunctionName", "Value": "sink"}],
                    "Timestamp": now - timedelta(minutes=minutes),
                    "Value": value,
                }
            ],
        )
    assert reader.latest_offset_lag("sink", now - timedelta(minutes=15)) == 120.0
    assert reader.latest_offset_lag("other", now - timedelta(minutes=15)) is None


def test_doctor_access_denied_is_one_line_naming_the_policy(reader: AwsDeployment) -> None:
    # GIVEN moto's access control on, and credentials of no IAM identity it knows
    @set_initial_no_auth_action_count(0)
    def read() -> None:
        reader.stack(STACK)

    # THEN the read fails as a DoctorError saying what it was reading
    with pytest.raises(DoctorError, match=f"^could not read stack {STACK}: "):
        read()
