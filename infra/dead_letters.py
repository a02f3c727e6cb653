"""The dead-letter bucket: records the function could not publish, and batches the ESM discarded."""

from __future__ import annotations

from typing import Final

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_s3 as s3
from constructs import Construct

# The function writes one object per record under this prefix (its DEAD_LETTER_PREFIX).
FUNCTION_PREFIX: Final = "records/"
# Lambda writes a Kafka ESM's on-failure batches under aws/lambda/<mapping-uuid>/...; that layout
# is Lambda's, not ours, so the function and the mappings never share a prefix.
ESM_PREFIX: Final = "aws/lambda/"


class DeadLetterBucket(Construct):
    """Encrypted, TLS-only, private bucket with an expiry; exposes `bucket`."""

    def __init__(self, scope: Construct, construct_id: str, *, retention_days: int) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
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
        Validations.of(self.bucket).acknowledge(
            Acknowledgment(
                id="AwsSolutions-S1",
                reason=(
                    "Only this stack's function role writes here, under two fixed prefixes;"
                    " object access is audited with CloudTrail data events where required. An"
                    " access-log bucket would add a second bucket with the same finding."
                ),
            )
        )
