"""Template values as CloudFormation resolved them for a deployed stack."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msk_kinesis_sink.doctor.model import StackResource
from msk_kinesis_sink.doctor.template import StackNames, resolve
from msk_kinesis_sink.errors import UnresolvedTemplateError

STACK_ID = "arn:aws:cloudformation:eu-west-1:111122223333:stack/Sink/0a1b2c3d-0000"
NAMES = StackNames.of(
    STACK_ID,
    [
        StackResource("Stream", "AWS::Kinesis::Stream", "Sink-Stream-AbC"),
        StackResource("Bucket", "AWS::S3::Bucket", "sink-bucket-xyz"),
        StackResource("Key", "AWS::KMS::Key", "1234abcd-0000"),
        StackResource("Topic", "AWS::SNS::Topic", "arn:aws:sns:eu-west-1:111122223333:alarms"),
        StackResource("Queue", "AWS::SQS::Queue", "https://sqs.eu-west-1.amazonaws.com/1/q"),
    ],
    {"Mapping": "6f1e0d2c-uuid"},
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"Ref": "Bucket"}, "sink-bucket-xyz"),
        ({"Ref": "AWS::Region"}, "eu-west-1"),
        ({"Ref": "AWS::AccountId"}, "111122223333"),
        ({"Ref": "AWS::StackName"}, "Sink"),
        ({"Ref": "Mapping"}, "6f1e0d2c-uuid"),
        (
            {"Fn::GetAtt": ["Stream", "Arn"]},
            "arn:aws:kinesis:eu-west-1:111122223333:stream/Sink-Stream-AbC",
        ),
        ({"Fn::GetAtt": "Key.Arn"}, "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-0000"),
        ({"Fn::GetAtt": ["Topic", "Arn"]}, "arn:aws:sns:eu-west-1:111122223333:alarms"),
        (
            {"Fn::Join": ["", [{"Fn::GetAtt": ["Bucket", "Arn"]}, "/*"]]},
            "arn:aws:s3:::sink-bucket-xyz/*",
        ),
        (
            {"Fn::Sub": "cdk-assets-${AWS::AccountId}-${AWS::Region}"},
            "cdk-assets-111122223333-eu-west-1",
        ),
        (
            {"Fn::Sub": ["${Who}/${Bucket}", {"Who": {"Ref": "AWS::Partition"}}]},
            "aws/sink-bucket-xyz",
        ),
        (
            {"Fn::Sub": "${Stream.Arn}!"},
            "arn:aws:kinesis:eu-west-1:111122223333:stream/Sink-Stream-AbC!",
        ),
        ({"Fn::Select": [1, ["a", {"Ref": "Bucket"}]]}, "sink-bucket-xyz"),
        ({"A": [{"Ref": "AWS::NoValue"}, 1], "B": {"Ref": "AWS::NoValue"}}, {"A": [1]}),
    ],
)
def test_template_resolves_the_intrinsics_a_stack_uses(value: object, expected: object) -> None:
    assert resolve(value, NAMES) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"Ref": "Nowhere"},
        {"Fn::GetAtt": ["Queue", "Arn"]},  # no ARN rule for a queue
        {"Fn::GetAtt": ["Stream", "StreamId"]},
        {"Fn::ImportValue": "shared-stream"},
        {"Fn::If": ["Cond", "a", "b"]},
    ],
)
def test_template_refuses_what_it_cannot_work_out(value: object) -> None:
    with pytest.raises(UnresolvedTemplateError):
        resolve(value, NAMES)


def test_template_stack_names_need_a_stack_arn() -> None:
    with pytest.raises(UnresolvedTemplateError, match="not a CloudFormation stack ARN"):
        StackNames.of("Sink", [])


_LITERALS: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.from_regex(r"[A-Z][a-z]{0,5}", fullmatch=True), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(_LITERALS)
def test_template_values_without_intrinsics_stay_as_they_are(value: Any) -> None:
    assert resolve(value, NAMES) == value
