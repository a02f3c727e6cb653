"""The doctor's AWS calls, read-only, with the operator's credentials: the stack, the function's
configuration, the mappings, the streams, the alarms, the bucket's recent objects, OffsetLag."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from msk_kinesis_sink.aws.classify import SDK_ERRORS, describe_error
from msk_kinesis_sink.aws.clients import endpoint_url, session
from msk_kinesis_sink.doctor.model import (
    AlarmState,
    MappingState,
    RecentObjects,
    StackResource,
    StackView,
    StreamSummary,
)
from msk_kinesis_sink.errors import DoctorError
from msk_kinesis_sink.limits import MAX_ALARM_NAMES_PER_DESCRIBE

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_s3 import S3Client

# Every action the calls below make, and nothing else: docs/runbook.md gives it as a policy
# (a test holds the two together), and the rehearsal runs the doctor under exactly this.
READ_ONLY_ACTIONS: Final = (
    "cloudformation:DescribeStacks",
    "cloudformation:GetTemplate",
    "cloudformation:ListStackResources",
    "cloudwatch:DescribeAlarms",
    "cloudwatch:GetMetricData",
    "kinesis:DescribeStreamSummary",
    "lambda:GetEventSourceMapping",
    "lambda:GetFunctionConfiguration",
    "s3:ListBucket",
)
POLICY_ANCHOR: Final = "docs/runbook.md#the-doctors-read-only-policy"
# Reads are idempotent: botocore's own retries suit them.
_READ_CONFIG: Final = Config(
    connect_timeout=10, read_timeout=30, retries={"total_max_attempts": 5, "mode": "standard"}
)
# The listing of a bucket stops here (its counts are then lower bounds): a bucket that keeps
# 90 days of dead letters can be large, and the doctor answers in seconds.
MAX_LISTED_OBJECTS: Final = 10_000
_NOT_FOUND: Final = frozenset(
    {"ResourceNotFoundException", "NoSuchBucket", "NotFound", "404", "NoSuchKey"}
)


def read_only_policy() -> dict[str, Any]:
    """The identity policy the doctor needs (Resource "*": every call only reads)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SinkDoctorReadOnly",
                "Effect": "Allow",
                "Action": list(READ_ONLY_ACTIONS),
                "Resource": "*",
            }
        ],
    }


@contextmanager
def _reading(what: str, *, missing_ok: bool = False) -> Iterator[list[bool]]:
    """Turns an SDK error into DoctorError naming what was being read; with `missing_ok`, a
    not-found answer sets the yielded flag instead."""
    missing = [False]
    try:
        yield missing
    except SDK_ERRORS as error:
        code, message = describe_error(error)
        if missing_ok and code in _NOT_FOUND:
            missing[0] = True
            return
        hint = ""
        if "Denied" in code or "Unauthorized" in code or code.endswith("Forbidden"):
            hint = f" (the doctor's read-only policy: {POLICY_ANCHOR})"
        raise DoctorError(f"could not read {what}: {code}: {message}".rstrip(": ") + hint) from None


class AwsDeployment:
    """A deployment read through boto3 (endpoints and credentials as `env` and boto3 give them)."""

    def __init__(
        self,
        env: Mapping[str, str],
        region: str | None = None,
        *,
        aws_session: boto3.session.Session | None = None,
    ) -> None:
        """Clients from `aws_session`, or from a session `env`'s credentials make."""
        with _reading("the AWS configuration"):
            aws = aws_session or session(env)
            self._region = region or aws.region_name
            if not self._region:
                raise DoctorError("no AWS region: set AWS_REGION or pass --region")
            self._clients: dict[str, Any] = {
                service: aws.client(
                    service,
                    region_name=self._region,
                    endpoint_url=endpoint_url(env, service.upper()),
                    config=_READ_CONFIG,
                )
                for service in ("cloudformation", "lambda", "kinesis", "cloudwatch", "s3")
            }

    def stack(self, name: str) -> StackView:
        cloudformation = self._clients["cloudformation"]
        with _reading(f"stack {name}"):
            try:
                described = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
            except ClientError as error:
                # CloudFormation names a missing stack only in its message (read here, never
                # printed: what is printed is the code and a fixed description).
                details = error.response.get("Error", {})
                if details.get("Code") == "ValidationError" and "does not exist" in str(
                    details.get("Message", "")
                ):
                    raise DoctorError(f"no stack named {name} in {self._region}") from None
                raise
            pages = cloudformation.get_paginator("list_stack_resources").paginate(StackName=name)
            resources = tuple(
                StackResource(
                    item["LogicalResourceId"],
                    item["ResourceType"],
                    item.get("PhysicalResourceId", ""),
                )
                for page in pages
                for item in page["StackResourceSummaries"]
            )
            body = cloudformation.get_template(StackName=name)["TemplateBody"]
        return StackView(
            name=described["StackName"],
            stack_id=described["StackId"],
            status=described["StackStatus"],
            outputs={o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])},
            resources=resources,
            template=_template(body, name),
        )

    def function_environment(self, name: str) -> dict[str, str] | None:
        with _reading(f"function {name}'s configuration", missing_ok=True) as missing:
            configuration = self._clients["lambda"].get_function_configuration(FunctionName=name)
        if missing[0]:
            return None
        environment = configuration.get("Environment") or {}
        if environment.get("Error"):
            code = environment["Error"].get("ErrorCode") or "Unknown"
            raise DoctorError(
                f"function {name}'s environment can't be read: {code} (it is encrypted with a"
                " KMS key these credentials may not use for kms:Decrypt)"
            )
        return {str(k): str(v) for k, v in (environment.get("Variables") or {}).items()}

    def mappings(self, uuids: Sequence[str]) -> list[MappingState]:
        found = []
        for uuid in uuids:
            with _reading(f"event source mapping {uuid}", missing_ok=True) as missing:
                mapping = self._clients["lambda"].get_event_source_mapping(UUID=uuid)
            if not missing[0]:
                found.append(
                    MappingState(
                        uuid=uuid,
                        topics=tuple(mapping.get("Topics") or ()),
                        state=mapping.get("State", ""),
                        state_transition_reason=mapping.get("StateTransitionReason", ""),
                        last_processing_result=mapping.get("LastProcessingResult", ""),
                    )
                )
        return found

    def stream(self, reference: str) -> StreamSummary | None:
        kinesis: KinesisClient = self._clients["kinesis"]
        target = {"StreamARN": reference} if reference.startswith("arn:") else {}
        with _reading(f"stream {reference}", missing_ok=True) as missing:
            answer = kinesis.describe_stream_summary(**(target or {"StreamName": reference}))
        if missing[0]:
            return None
        summary: Mapping[str, Any] = answer["StreamDescriptionSummary"]
        return StreamSummary(
            name=summary["StreamName"],
            arn=summary["StreamARN"],
            status=summary["StreamStatus"],
            mode=(summary.get("StreamModeDetails") or {}).get("StreamMode"),
            record_distribution=summary.get("RecordDistributionStrategy"),
            max_record_kib=summary.get("MaxRecordSizeInKiB"),
            encryption=summary.get("EncryptionType") or "NONE",
            key_id=summary.get("KeyId"),
        )

    def alarms(self, names: Sequence[str]) -> list[AlarmState]:
        found = []
        for start in range(0, len(names), MAX_ALARM_NAMES_PER_DESCRIBE):
            chunk = list(names[start : start + MAX_ALARM_NAMES_PER_DESCRIBE])
            with _reading("the stack's alarms"):
                answer = self._clients["cloudwatch"].describe_alarms(AlarmNames=chunk)
            for alarm in [*answer.get("MetricAlarms", []), *answer.get("CompositeAlarms", [])]:
                found.append(
                    AlarmState(
                        name=alarm["AlarmName"],
                        state=alarm.get("StateValue", ""),
                        reason=alarm.get("StateReason", ""),
                        description=alarm.get("AlarmDescription", ""),
                        threshold=alarm.get("Threshold"),
                    )
                )
        return found

    def recent_objects(self, bucket: str, since: datetime) -> RecentObjects | None:
        s3: S3Client = self._clients["s3"]
        by_prefix: dict[str, int] = {}
        listed = 0
        complete = True
        with _reading(f"bucket {bucket}", missing_ok=True) as missing:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for item in page.get("Contents", []):
                    listed += 1
                    if item["LastModified"] >= since:
                        prefix = item["Key"].partition("/")[0] + "/"
                        by_prefix[prefix] = by_prefix.get(prefix, 0) + 1
                if listed >= MAX_LISTED_OBJECTS and page.get("IsTruncated"):
                    complete = False
                    break
        if missing[0]:
            return None
        return RecentObjects(by_prefix=by_prefix, listed=listed, complete=complete)

    def latest_offset_lag(self, function_name: str, since: datetime) -> float | None:
        query = {
            "Id": "lag",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/Lambda",
                    "MetricName": "OffsetLag",
                    "Dimensions": [{"Name": "FunctionName", "Value": function_name}],
                },
                "Period": 60,
                "Stat": "Maximum",
            },
        }
        with _reading(f"the OffsetLag of {function_name}"):
            answer = self._clients["cloudwatch"].get_metric_data(
                MetricDataQueries=[query],
                StartTime=since,
                EndTime=datetime.now(tz=since.tzinfo),
                ScanBy="TimestampDescending",
            )
        for result in answer.get("MetricDataResults", []):
            values = list(zip(result.get("Timestamps", []), result.get("Values", []), strict=False))
            if values:
                return float(max(values)[1])
        return None


def _template(body: object, stack: str) -> Mapping[str, Any]:
    """GetTemplate's body: botocore hands a JSON template over parsed, or as text."""
    if isinstance(body, Mapping):
        return body
    try:
        parsed = json.loads(str(body))
    except ValueError:
        raise DoctorError(f"stack {stack}'s template is not JSON (a CDK template is)") from None
    if not isinstance(parsed, dict):
        raise DoctorError(f"stack {stack}'s template is not a JSON object")
    return parsed
