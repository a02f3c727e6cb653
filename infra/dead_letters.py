"""The dead-letter bucket: records the function could not publish, and batches the ESM discarded."""

from __future__ import annotations

from typing import Final

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.nag import acknowledge

# The function writes one object per record under this prefix (its DEAD_LETTER_PREFIX). The
# mappings write their discarded batches elsewhere: AWS documents aws/lambda/<mapping-uuid>/...
# for stream sources and no layout for Kafka, so the role may write anywhere in the bucket.
FUNCTION_PREFIX: Final = "records/"


class DeadLetterBucket(Construct):
    """KMS-encrypted, TLS-only, private bucket with an expiry; exposes `bucket` and `key`.

    Dead letters hold record keys and values (the function's objects) and whole invocation
    payloads (the mappings'), so they get a customer managed key like the stream's: reading
    them takes s3:GetObject on the bucket *and* kms:Decrypt on `key`.
    """

    def __init__(self, scope: Construct, construct_id: str, *, retention_days: int) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description="Encrypts the MSK -> Kinesis sink's dead letters (records and batches)",
            enable_key_rotation=True,
            # Retained objects stay readable only while their key exists.
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            # One data key per bucket instead of per object: fewer KMS calls, same protection.
            bucket_key_enabled=True,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-dead-letters",
                    expiration=Duration.days(retention_days),
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            # Dead letters are the only copy of records that did not reach the stream.
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.bucket,
            "AwsSolutions-S1",
            (
                "Only this stack's function role and its event source mappings write here;"
                " object access is audited with CloudTrail data events where required. An"
                " access-log bucket would add a second bucket with the same finding."
            ),
        )
