"""The rehearsal's pure parts: the role's policy (one action out, moto's copy, the resource
check), the template made deployable by moto, reading a request, the variants."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rehearse.calls import denial_answer, denied_action, describe
from rehearse.cli import parse
from rehearse.permissions import Policy, matches_action, matches_resource
from rehearse.prepare import prepare_template
from rehearse.synth import context_arguments
from rehearse.variants import CI_VARIANT, VARIANTS, variant

STREAM = "arn:aws:kinesis:us-east-1:123456789012:stream/orders"
OTHER_STREAM = "arn:aws:kinesis:us-east-1:123456789012:stream/payments"
KEY = "arn:aws:kms:us-east-1:123456789012:key/1111"
BUCKET = "arn:aws:s3:::dead-letters"
ROLE_POLICY = Policy.from_document(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PublishToStream",
                "Effect": "Allow",
                "Action": ["kinesis:PutRecords", "kinesis:DescribeStreamSummary"],
                "Resource": STREAM,
            },
            {
                "Sid": "WriteDeadLetters",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": f"{BUCKET}/records/*",
                "Condition": {"StringEquals": {"s3:ResourceAccount": "123456789012"}},
            },
            {"Effect": "Allow", "Action": ["kms:GenerateDataKey"], "Resource": [KEY]},
        ],
    }
)


def test_policy_without_an_action_takes_it_out_of_every_statement() -> None:
    # WHEN PutRecords is taken out (named in another case)
    reduced, removed = ROLE_POLICY.without("Kinesis:putrecords")
    # THEN the statement keeps its other action, and nothing else changes
    assert removed == 1
    assert not reduced.allows_action("kinesis:PutRecords")
    assert reduced.covers("kinesis:DescribeStreamSummary", STREAM)
    assert reduced.statements[1:] == ROLE_POLICY.statements[1:]


def test_policy_without_the_last_action_of_a_statement_drops_it() -> None:
    reduced, removed = ROLE_POLICY.without("s3:PutObject")
    assert removed == 1 and len(reduced.statements) == 2
    assert ROLE_POLICY.without("sqs:SendMessage") == (ROLE_POLICY, 0)


def test_policy_for_moto_widens_every_resource_but_s3s() -> None:
    # GIVEN moto compares non-S3 calls with "*"
    widened = ROLE_POLICY.for_moto()
    # THEN those statements get "*", the S3 one keeps its ARN (and its condition), and the
    # actions are the same
    assert widened.statements[0].resources == ("*",)
    assert widened.statements[2].resources == ("*",)
    assert widened.statements[1] == ROLE_POLICY.statements[1]
    assert widened.actions() == ROLE_POLICY.actions()


def test_policy_covers_only_the_resources_its_statements_name() -> None:
    assert ROLE_POLICY.covers("kinesis:PutRecords", STREAM)
    assert not ROLE_POLICY.covers("kinesis:PutRecords", OTHER_STREAM)
    assert ROLE_POLICY.covers("s3:PutObject", f"{BUCKET}/records/t/0/1.json")
    assert not ROLE_POLICY.covers("s3:PutObject", f"{BUCKET}/aws/lambda/x")
    assert ROLE_POLICY.condition_keys() == ["s3:ResourceAccount"]


def test_policy_explicit_deny_wins() -> None:
    denying = Policy(
        ROLE_POLICY.statements
        + Policy.from_document(
            {"Statement": {"Effect": "Deny", "Action": "kinesis:*", "Resource": STREAM}}
        ).statements
    )
    assert not denying.covers("kinesis:PutRecords", STREAM)
    assert denying.allows_action("kinesis:PutRecords")


def test_policy_not_action_and_not_resource() -> None:
    policy = Policy.from_document(
        {
            "Statement": [
                {"Effect": "Allow", "NotAction": "iam:*", "NotResource": OTHER_STREAM},
            ]
        }
    )
    assert policy.covers("kinesis:PutRecords", STREAM)
    assert not policy.covers("kinesis:PutRecords", OTHER_STREAM)
    assert not policy.covers("iam:PassRole", STREAM)


def test_policy_document_round_trips() -> None:
    assert Policy.from_document(ROLE_POLICY.document()) == ROLE_POLICY


_NAME = st.text(st.sampled_from("abcXYZ09-/:._"), min_size=1, max_size=12)


@given(_NAME, _NAME)
def test_resource_wildcards_follow_iam(prefix: str, rest: str) -> None:
    # A name matches itself; `*` matches any run, `?` one character; regex characters are plain
    assert matches_resource(prefix, prefix)
    assert matches_resource(f"{prefix}*", prefix + rest)
    assert matches_resource(prefix + "?" * len(rest), prefix + rest)
    assert not matches_resource(prefix + ".", prefix + "x")
    assert matches_resource("*", prefix + rest)


def test_action_names_compare_without_case_resources_with() -> None:
    assert matches_action("kinesis:Put*", "KINESIS:putrecords")
    assert not matches_resource("arn:aws:s3:::Bucket", "arn:aws:s3:::bucket")


def _resource(type_name: str, **properties: object) -> dict[str, Any]:
    return {"Type": type_name, "Properties": properties}


def test_prepare_takes_kafka_mappings_out_and_points_their_references_to_stand_ins() -> None:
    # GIVEN a template with a Kafka mapping, an SQS mapping, an alarm on the Kafka mapping and a
    # dashboard that names the alarm's ARN
    template = {
        "Resources": {
            "Orders": _resource(
                "AWS::Lambda::EventSourceMapping",
                AmazonManagedKafkaEventSourceConfig={"ConsumerGroupId": "g"},
                Topics=["orders"],
            ),
            "Queue": _resource(
                "AWS::Lambda::EventSourceMapping",
                EventSourceArn="arn:aws:sqs:us-east-1:1:q",
            ),
            "Alarm": _resource(
                "AWS::CloudWatch::Alarm",
                AlarmName="Sink-MappingNotPolling-orders",
                Dimensions=[{"Name": "EventSourceMappingUUID", "Value": {"Ref": "Orders"}}],
            ),
            "Dashboard": _resource(
                "AWS::CloudWatch::Dashboard",
                DashboardBody={"Fn::Join": ["", [{"Fn::GetAtt": ["Alarm", "Arn"]}]]},
            ),
        },
        "Outputs": {"X": {"Value": "y"}},
    }
    # WHEN prepared
    prepared = prepare_template(template, new_uuid=lambda: "uuid-1")
    resources = prepared.template["Resources"]
    # THEN only the Kafka mapping is gone, a stand-in takes its UUID and topics
    assert set(resources) == {"Queue", "Alarm", "Dashboard"}
    assert [(s.logical_id, s.uuid, s.topics) for s in prepared.stand_ins] == [
        ("Orders", "uuid-1", ("orders",))
    ]
    # AND the alarm names the stand-in, the dashboard the alarm's ARN as CloudFormation makes it
    assert resources["Alarm"]["Properties"]["Dimensions"][0]["Value"] == "uuid-1"
    assert resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Join"][1][0] == {
        "Fn::Sub": "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}"
        ":alarm:Sink-MappingNotPolling-orders"
    }
    assert prepared.alarm_arns == 1
    assert prepared.template["Outputs"] == template["Outputs"]


def _signed(service: str) -> dict[str, str]:
    return {
        "Authorization": f"AWS4-HMAC-SHA256 Credential=ASIAX/20260101/us-east-1/{service}/"
        "aws4_request, SignedHeaders=host;x-amz-date, Signature=0"
    }


def _json_call(service: str, target: str, body: dict[str, object]) -> tuple[Any, ...]:
    headers = {**_signed(service), "X-Amz-Target": target}
    return ("POST", "/", headers, json.dumps(body).encode())


@pytest.mark.parametrize(
    ("request_", "name", "resource"),
    [
        (
            _json_call("kinesis", "Kinesis_20131202.PutRecords", {"StreamARN": STREAM}),
            "kinesis:PutRecords",
            STREAM,
        ),
        (
            _json_call(
                "kinesis", "Kinesis_20131202.DescribeStreamSummary", {"StreamName": "payments"}
            ),
            "kinesis:DescribeStreamSummary",
            OTHER_STREAM,
        ),
        (
            _json_call("kms", "TrentService.GenerateDataKey", {"KeyId": "1111"}),
            "kms:GenerateDataKey",
            KEY,
        ),
        (
            ("PUT", "/dead-letters/records/t%2Bx/0/5.json", _signed("s3"), b"{}"),
            "s3:PutObject",
            f"{BUCKET}/records/t+x/0/5.json",
        ),
        (
            ("GET", "/dead-letters?list-type=2&prefix=r", _signed("s3"), b""),
            "s3:ListBucket",
            BUCKET,
        ),
        (
            ("POST", "/", _signed("sts"), b"Action=AssumeRole&Version=2011-06-15"),
            "sts:AssumeRole",
            None,
        ),
    ],
)
def test_describe_reads_json_rest_and_query_requests(
    request_: tuple[Any, ...], name: str, resource: str | None
) -> None:
    # GIVEN a signed request as the SDK sends it
    # WHEN it is read
    described = describe(*request_, "123456789012")
    # THEN its IAM action and the resource IAM authorizes it on are known
    assert (described.name, described.resource) == (name, resource)
    assert described.json_protocol == ("X-Amz-Target" in request_[2])


def test_denials_are_read_and_answered_as_each_service_does() -> None:
    kinesis = describe(
        "POST",
        "/",
        {**_signed("kinesis"), "X-Amz-Target": "Kinesis_20131202.PutRecords"},
        b"{}",
        "1",
    )
    moto_says = (
        b"<ErrorResponse><Error><Code>AccessDenied</Code><Message>User: arn:aws:sts::1:"
        b"assumed-role/r/s is not authorized to perform: kinesis:PutRecords</Message>"
    )
    assert denied_action(kinesis, 403, moto_says) == "kinesis:PutRecords"
    assert denied_action(kinesis, 400, b'{"__type": "ValidationException"}') is None
    s3 = describe("PUT", "/b/k", _signed("s3"), b"", "1")
    assert denied_action(s3, 403, b"<Error><Code>AccessDenied</Code></Error>") == "s3:PutObject"
    # A refused data key reaches a Kinesis caller as Kinesis's KMS error, in JSON
    status, body = denial_answer(kinesis, "caller", "kms:GenerateDataKey", KEY)
    answer = json.loads(body)
    assert status == 400 and answer["__type"] == "KMSAccessDeniedException"
    assert f"kms:GenerateDataKey on resource: {KEY}" in answer["message"]
    status, body = denial_answer(s3, "caller", "kms:GenerateDataKey", KEY)
    assert status == 403 and b"<Code>AccessDenied</Code>" in body


def test_variants_are_data_with_distinct_names_and_the_ci_one_among_them() -> None:
    names = [v.name for v in VARIANTS]
    assert len(set(names)) == len(names) and CI_VARIANT in names
    assert all(v.full_context()["recordFormat"] == "envelope" for v in VARIANTS)
    assert variant(CI_VARIANT).oversize > 0  # it takes the dead-letter path too
    with pytest.raises(KeyError, match="variants: default"):
        variant("nope")


def test_context_arguments_as_cdk_reads_them() -> None:
    assert context_arguments({"a": "x,y", "b": False, "c": {"k": ["v"]}, "d": 3}) == [
        "-c",
        "a=x,y",
        "-c",
        "b=false",
        "-c",
        'c={"k":["v"]}',
        "-c",
        "d=3",
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["--variant", "nope"],
        ["--without-permission", "PutRecords"],
        ["--without-permission", "kinesis:Put Records"],
    ],
)
def test_rehearse_bad_options_exit_2_in_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("rehearse: error: ") and err.count("\n") == 1
