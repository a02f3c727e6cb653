"""What moto's IAM evaluation covers, pinned: the rehearsal (rehearse/) and docs/deploy.md rely
on each of these, so a moto upgrade that changes one fails here first.

Each test gives an assumed role one policy, turns access control on, and makes one call."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core import set_initial_no_auth_action_count

ROLE = "evidence"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def _as_role(statements: list[dict[str, Any]], service: str) -> Any:
    """A client of `service` under a role whose one policy holds `statements`."""
    iam = boto3.client("iam")
    arn = iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    policy = {"Version": "2012-10-17", "Statement": statements}
    iam.put_role_policy(RoleName=ROLE, PolicyName="p", PolicyDocument=json.dumps(policy))
    credentials = boto3.client("sts").assume_role(RoleArn=arn, RoleSessionName="evidence")[
        "Credentials"
    ]
    return boto3.client(
        service,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def _allowed(call: Callable[[], object]) -> bool:
    """The call, with moto's access control on: True if it went through, False if refused."""

    @set_initial_no_auth_action_count(0)
    def make() -> bool:
        try:
            call()
        except ClientError as error:
            if error.response["ResponseMetadata"]["HTTPStatusCode"] == 403:
                return False
            raise
        return True

    return make()


def _stream() -> str:
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName="s", ShardCount=1)
    arn: str = kinesis.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"][
        "StreamARN"
    ]
    return arn


def _put(kinesis: Any) -> Callable[[], object]:
    return lambda: kinesis.put_records(
        StreamName="s", Records=[{"Data": b"x", "PartitionKey": "k"}]
    )


@pytest.mark.parametrize(("resource", "allowed"), [("*", True), ("the stream's ARN", False)])
def test_moto_compares_a_kinesis_call_with_resource_star(
    mocked_aws: None, resource: str, allowed: bool
) -> None:
    # GIVEN a role allowed kinesis:PutRecords on "*", or on exactly the stream it writes to
    arn = _stream()
    statement = {"Effect": "Allow", "Action": "kinesis:PutRecords"}
    statement["Resource"] = "*" if resource == "*" else arn
    kinesis = _as_role([statement], "kinesis")
    # THEN moto allows the first and refuses the second: it checks the action against "*"
    assert _allowed(_put(kinesis)) is allowed


def test_moto_refuses_an_action_no_statement_names(mocked_aws: None) -> None:
    _stream()
    kinesis = _as_role(
        [{"Effect": "Allow", "Action": "kinesis:ListShards", "Resource": "*"}], "kinesis"
    )
    assert not _allowed(_put(kinesis))


@pytest.mark.parametrize(("key", "allowed"), [("records/x.json", True), ("other/x.json", False)])
def test_moto_compares_s3_calls_with_the_object_arn(
    mocked_aws: None, key: str, allowed: bool
) -> None:
    boto3.client("s3").create_bucket(Bucket="dead-letters")
    statement = {
        "Effect": "Allow",
        "Action": "s3:PutObject",
        "Resource": "arn:aws:s3:::dead-letters/records/*",
    }
    s3 = _as_role([statement], "s3")
    assert _allowed(lambda: s3.put_object(Bucket="dead-letters", Key=key, Body=b"{}")) is allowed


def test_moto_passes_a_condition_that_cannot_hold(mocked_aws: None) -> None:
    # GIVEN s3:PutObject only while the bucket is in account 000000000000 (it is not)
    boto3.client("s3").create_bucket(Bucket="dead-letters")
    statement = {
        "Effect": "Allow",
        "Action": "s3:PutObject",
        "Resource": "arn:aws:s3:::dead-letters/*",
        "Condition": {"StringEquals": {"s3:ResourceAccount": "000000000000"}},
    }
    s3 = _as_role([statement], "s3")
    # THEN moto allows it all the same: identity-policy conditions are not evaluated
    assert _allowed(lambda: s3.put_object(Bucket="dead-letters", Key="k", Body=b"{}"))


@pytest.mark.parametrize("tls_only", [False, True])
def test_moto_applies_a_bucket_policys_deny_and_ignores_its_condition(
    mocked_aws: None, tls_only: bool
) -> None:
    # GIVEN a bucket whose policy denies every S3 action: to everyone, or (the stack's TLS-only
    # statement) to requests not sent over TLS, and a role allowed s3:PutObject
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="dead-letters")
    deny: dict[str, Any] = {
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": "s3:*",
        "Resource": ["arn:aws:s3:::dead-letters", "arn:aws:s3:::dead-letters/*"],
    }
    if tls_only:
        deny["Condition"] = {"Bool": {"aws:SecureTransport": "false"}}
    s3.put_bucket_policy(
        Bucket="dead-letters", Policy=json.dumps({"Version": "2012-10-17", "Statement": [deny]})
    )
    statement = {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}
    role_s3 = _as_role([statement], "s3")
    # THEN moto refuses the write either way: it applies a bucket policy's Deny to object
    # requests, and ignores its condition, so the stack's TLS-only policy would refuse all
    assert not _allowed(lambda: role_s3.put_object(Bucket="dead-letters", Key="k", Body=b"{}"))


def test_moto_writes_to_an_encrypted_stream_without_asking_kms(mocked_aws: None) -> None:
    # GIVEN a stream encrypted with a customer managed key, and a role that may write to the
    # stream but has no kms:GenerateDataKey (AWS refuses such a write: KMSAccessDeniedException)
    _stream()
    key = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    boto3.client("kinesis").start_stream_encryption(StreamName="s", EncryptionType="KMS", KeyId=key)
    kinesis = _as_role(
        [{"Effect": "Allow", "Action": "kinesis:PutRecords", "Resource": "*"}], "kinesis"
    )
    # THEN moto writes it: the gateway asks KMS as the caller in the service's place
    assert _allowed(_put(kinesis))
