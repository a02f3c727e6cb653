"""Where the event source mappings send the batches they give up on: S3, Kafka, SQS or SNS.

AWS: "Capturing discarded batches for Amazon MSK and self-managed Apache Kafka event sources".
S3 gets whole invocation payloads (the default: the dead-letter bucket), a Kafka topic on the same
cluster gets the records themselves; SQS and SNS get metadata only (topic, partitions, offsets),
so the records must be read again from Kafka before its retention removes them.
"""

from __future__ import annotations

from typing import Final

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import AuthMode, DestinationKind, SourceConfig

# SQS keeps a message at most 14 days: the longest a notice can wait to be acted on.
NOTICE_RETENTION: Final = Duration.days(14)

# How alarm descriptions name the destination (a Kafka destination is named by its topic).
LABELS: Final = {
    DestinationKind.S3: "the dead-letter bucket",
    DestinationKind.SQS: "the discard-notice queue",
    DestinationKind.SNS: "the discard-notice topic",
}


class FailureDestination(Construct):
    """The mappings' on-failure destination, and what the function's role needs to reach it.

    Exposes `kind`, `target` (for the mappings), `statements` (for the role), `label`, and for
    SQS or SNS the `queue` or `topic` this stack creates with its `key`.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, source: SourceConfig, bucket: s3.IBucket
    ) -> None:
        super().__init__(scope, construct_id)
        self.kind = source.on_failure
        self.label = LABELS.get(self.kind, f"topic {source.on_failure_topic}")
        self.queue: sqs.Queue | None = None
        self.topic: sns.Topic | None = None
        self.key: kms.Key | None = None
        self.statements: list[iam.PolicyStatement] = []
        self.target: lambda_.IEventSourceDlq
        if self.kind is DestinationKind.S3:
            # The dead-letter bucket's statements are the function's own (it writes there too).
            self.target = sources.S3OnFailureDestination(bucket)
        elif self.kind is DestinationKind.KAFKA:
            assert source.on_failure_topic is not None
            self.target = sources.KafkaDlq(source.on_failure_topic)
            self.statements = _kafka_statements(source)
        elif self.kind is DestinationKind.SQS:
            self.key = self._key("queue")
            self.queue = sqs.Queue(
                self,
                "Queue",
                encryption=sqs.QueueEncryption.KMS,
                encryption_master_key=self.key,
                enforce_ssl=True,
                retention_period=NOTICE_RETENTION,
                # A notice is the only record of which offsets were given up.
                removal_policy=RemovalPolicy.RETAIN,
            )
            self.target = sources.SqsDlq(self.queue)
            self.statements = self._notice_statements(
                "SendDiscardNotices", "sqs:SendMessage", self.queue.queue_arn
            )
            Validations.of(self.queue).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-SQS3",
                    reason=(
                        "This queue is itself the mappings' on-failure destination: a dead-letter"
                        " queue of its own would only move unread notices elsewhere. Notices are"
                        " kept 14 days and the DiscardNoticesWaiting alarm fires while one is"
                        " older than a day."
                    ),
                )
            )
        else:
            self.key = self._key("topic")
            self.topic = sns.Topic(
                self,
                "Topic",
                display_name="MSK -> Kinesis sink: discarded batches",
                master_key=self.key,
                enforce_ssl=True,
            )
            self.target = sources.SnsDlq(self.topic)
            self.statements = self._notice_statements(
                "PublishDiscardNotices", "sns:Publish", self.topic.topic_arn
            )

    def _key(self, what: str) -> kms.Key:
        return kms.Key(
            self,
            "Key",
            description=f"Encrypts the MSK -> Kinesis sink's discard-notice {what}",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _notice_statements(self, sid: str, action: str, arn: str) -> list[iam.PolicyStatement]:
        assert self.key is not None
        # The mappings deliver with the function's role; an encrypted queue or topic also needs
        # kms:Decrypt and kms:GenerateDataKey on its key (AWS, page in the module docstring).
        return [
            iam.PolicyStatement(sid=sid, actions=[action], resources=[arn]),
            iam.PolicyStatement(
                sid="EncryptDiscardNotices",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[self.key.key_arn],
            ),
        ]


def _kafka_statements(source: SourceConfig) -> list[iam.PolicyStatement]:
    """With MSK's IAM access control, the mappings produce to the topic with the function's role.

    AWS: "Using a Kafka topic as an on-failure destination" (topic permissions). With SASL or
    mTLS, the cluster's ACLs grant the credentials' principal WRITE on the topic instead.
    """
    if source.cluster is None or source.auth is not AuthMode.IAM:
        return []
    assert source.on_failure_topic is not None
    return [
        iam.PolicyStatement(
            sid="WriteFailureTopic",
            actions=["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"],
            resources=[source.cluster.topic_arn(source.on_failure_topic)],
        )
    ]
