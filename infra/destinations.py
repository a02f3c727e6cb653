"""Where the event source mappings send the batches they give up on: S3, Kafka, SQS or SNS; or,
with failureMode=block, nowhere: they never give up, and a failing partition waits.

AWS: "Capturing discarded batches for Amazon MSK and self-managed Apache Kafka event sources".
S3 gets whole invocation payloads (the default: the dead-letter bucket), a Kafka topic on the same
cluster gets the records themselves; SQS and SNS get metadata only (topic, partitions, offsets),
so the records must be read again from Kafka before its retention removes them.

Each kind is a class that holds all there is to it: its settings' rules, what it builds, what the
function's role needs for the mappings to reach it, its alarms (each with a runbook entry), its
dashboard widgets and outputs. Nothing else in the stack looks at the kind. infra.config imports
this module for the kinds and their rules, so nothing here imports infra.config at run time.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, Final, assert_never

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.cloudwatch import PERIOD, WIDTH, AlarmSpec, SinkMetrics
from infra.context import ConfigError
from infra.failure_modes import UNLIMITED, FailureMode, mapping_retries
from infra.nag import acknowledge
from msk_kinesis_sink.limits import INFINITE_RETRIES_CAP, MAX_RETRY_ATTEMPTS

if TYPE_CHECKING:
    from infra.config import SourceConfig
    from infra.event_sources import TopicMapping

# SQS keeps a message at most 14 days: the longest a notice can wait to be acted on.
NOTICE_RETENTION: Final = Duration.days(14)
# A discard notice in the queue this long has not been acted on; Kafka may drop its records.
NOTICE_WAITING_SECONDS: Final = 86_400


class DestinationKind(StrEnum):
    """Where the event source mappings send what they give up on."""

    S3 = "s3"  # whole invocation payloads, in the dead-letter bucket
    KAFKA = "kafka"  # the records themselves, to a topic of the same cluster
    SQS = "sqs"  # metadata only (topic, partitions, offsets), to a queue this stack creates
    SNS = "sns"  # metadata only, to a topic this stack creates


def destination_type(kind: DestinationKind) -> type[FailureDestination]:
    """The class of each kind."""
    match kind:
        case DestinationKind.S3:
            return S3Destination
        case DestinationKind.KAFKA:
            return KafkaDestination
        case DestinationKind.SQS:
            return SqsDestination
        case DestinationKind.SNS:
            return SnsDestination
        case _:
            assert_never(kind)


def destination_for(source: SourceConfig) -> type[FailureDestination]:
    """The class of the source's destination: the kind `onFailureDestination` names, or none
    with failureMode=block."""
    mode = source.failure_mode
    match mode:
        case FailureMode.DIVERT:
            return destination_type(source.on_failure)
        case FailureMode.BLOCK:
            return NoDestination
        case _:
            assert_never(mode)


def failure_destination(
    scope: Construct, construct_id: str, *, source: SourceConfig, bucket: s3.IBucket
) -> FailureDestination:
    """The destination the source's settings name."""
    return destination_for(source)(scope, construct_id, source=source, bucket=bucket)


class FailureDestination(Construct):
    """The mappings' on-failure destination.

    Exposes `target` (for the mappings), `statements` (what the function's role needs for the
    mappings to deliver with it), `label` (how alarm descriptions name it), and the mappings'
    `retry_attempts` and `max_record_age_seconds` (infra.failure_modes.mapping_retries).
    """

    short: ClassVar[str]  # how the dashboard names it
    # The runbook entries of its per-mapping alarms: batches given up on, and failed deliveries.
    discard_entry: ClassVar[str]
    delivery_entry: ClassVar[str]
    # The mappings write into the dead-letter bucket (the role's grants there widen for them).
    writes_dead_letters: ClassVar[bool] = False
    label: str

    def __init__(
        self, scope: Construct, construct_id: str, *, source: SourceConfig, bucket: s3.IBucket
    ) -> None:
        super().__init__(scope, construct_id)
        self.statements: list[iam.PolicyStatement] = []
        self.target = self._bind(source, bucket)
        retries = mapping_retries(
            source.failure_mode, source.retry_attempts, source.max_record_age_seconds
        )
        self.retry_attempts = retries.retry_attempts
        self.max_record_age_seconds = retries.max_record_age_seconds

    def _bind(self, source: SourceConfig, bucket: s3.IBucket) -> lambda_.IEventSourceDlq | None:
        """Builds what this kind needs of the source's settings and the dead-letter bucket, sets
        the role's `statements`, and returns the mappings' target (None: they get none)."""
        raise NotImplementedError

    @classmethod
    def check(cls, source: SourceConfig) -> None:
        """Refuses, when the settings are read, what this kind can't take."""
        if source.retry_attempts == UNLIMITED:
            raise ConfigError(
                f"retryAttempts=-1 (infinite) cannot apply with failureMode=divert: with an"
                f" on-failure destination Lambda caps retries at {INFINITE_RETRIES_CAP}"
                f" (allowed: 0-{MAX_RETRY_ATTEMPTS}); failureMode=block retries until the fault"
                " clears"
            )
        cls.check_topic(source)

    @staticmethod
    def check_topic(source: SourceConfig) -> None:
        """Refuses an onFailureTopic this kind does not take."""
        if source.on_failure_topic is not None:
            raise ConfigError(
                f"onFailureTopic only applies with onFailureDestination=kafka"
                f" (onFailureDestination={source.on_failure.value})"
            )

    @property
    def fate(self) -> str:
        """What becomes of a batch whose invocations keep failing."""
        return f"the batch is retried, then sent to {self.short}"

    def alarms(self, metrics: SinkMetrics) -> tuple[AlarmSpec, ...]:
        """Its alarms beside the function's."""
        return (
            AlarmSpec(
                "DestinationDeliveryFailures",
                metrics.of_function(
                    "DestinationDeliveryFailures", "Sum", "on-failure delivery failures"
                ),
                what=(
                    f"a discarded batch could not be delivered to {self.label}: those records"
                    " exist only in Kafka now"
                ),
            ),
        )

    def discard_alarms(self, metrics: SinkMetrics, mapping: TopicMapping) -> tuple[AlarmSpec, ...]:
        """A mapping's alarm on the batches it gives up on."""
        # The two exist only when something happened; FILL makes the sum defined when one is
        # missing (a plain a + b has no value then, and the alarm would never see the other).
        discarded = cw.MathExpression(
            expression="FILL(dropped, 0) + FILL(delivered, 0)",
            using_metrics={
                "dropped": metrics.of_mapping(mapping, "DroppedEventCount"),
                "delivered": metrics.of_mapping(mapping, "OnFailureDestinationDeliveredEventCount"),
            },
            label=f"{mapping.topic}: discarded by the event source mapping",
            period=PERIOD,
        )
        what = f"gave up on records (their batch went to {self.label}, or was dropped)"
        return (self._mapping_alarm(self.discard_entry, mapping, discarded, what),)

    def delivery_alarms(self, metrics: SinkMetrics, mapping: TopicMapping) -> tuple[AlarmSpec, ...]:
        """A mapping's alarm on batches it could not deliver here."""
        errors = metrics.of_mapping(mapping, "OnFailureDestinationDeliveryErrorCount")
        what = f"could not deliver a discarded batch to {self.label}"
        return (self._mapping_alarm(self.delivery_entry, mapping, errors, what),)

    @staticmethod
    def _mapping_alarm(
        entry: str, mapping: TopicMapping, metric: cw.Metric | cw.MathExpression, what: str
    ) -> AlarmSpec:
        return AlarmSpec(
            entry,
            metric,
            what=f"the event source mapping for {mapping.topic} {what}",
            topic=mapping.topic,
        )

    def widgets(self) -> list[cw.IWidget]:
        """Its own dashboard row (none unless it builds something to watch)."""
        return []


class S3Destination(FailureDestination):
    """The dead-letter bucket (the default): whole invocation payloads."""

    short = "S3"
    label = "the dead-letter bucket"
    discard_entry = "MappingDiscarded"
    delivery_entry = "MappingDeliveryErrors"
    # The bucket's statements are the function's own (it writes there too), widened.
    writes_dead_letters = True

    def _bind(self, source: SourceConfig, bucket: s3.IBucket) -> lambda_.IEventSourceDlq:
        return sources.S3OnFailureDestination(bucket)


class NoDestination(FailureDestination):
    """failureMode=block: no destination. The mappings retry a failing batch until it succeeds
    and never skip a record for its age (MaximumRetryAttempts and MaximumRecordAgeInSeconds -1),
    so a failing partition waits, in order, until the fault clears (or until Kafka's retention
    removes what it waits with). Records Kinesis can never accept still go to the function's
    dead-letter bucket; the offset lag, function error and not-polling alarms are what page.
    """

    short = "no destination"
    label = "no on-failure destination (failureMode=block)"
    discard_entry = "MappingDropped"
    delivery_entry = "MappingDropped"  # nothing is delivered anywhere: no delivery alarm

    def _bind(self, source: SourceConfig, bucket: s3.IBucket) -> None:
        return None

    @classmethod
    def check(cls, source: SourceConfig) -> None:
        """Refuses what contradicts waiting, one key at a time. retryAttempts and
        onFailureDestination at their defaults (the shipped cdk.json spells them out) say
        nothing; bisectOnError keeps its meaning (a failed batch is retried in halves, which
        narrows the wait to the records that fail; nothing is skipped)."""
        fields = type(source).model_fields
        if source.retry_attempts not in (UNLIMITED, fields["retry_attempts"].default):
            raise ConfigError(
                f"retryAttempts={source.retry_attempts} contradicts failureMode=block, which"
                " retries a failing batch until the fault clears: remove it or set -1"
            )
        if source.max_record_age_seconds is not None:
            raise ConfigError(
                f"maxRecordAgeSeconds={source.max_record_age_seconds} contradicts"
                " failureMode=block: with no on-failure destination Lambda would drop records"
                " older than that; remove it or set -1"
            )
        if source.on_failure is not fields["on_failure"].default:
            raise ConfigError(
                f"onFailureDestination={source.on_failure.value} contradicts failureMode=block,"
                " which has no on-failure destination: remove it, or use failureMode=divert"
            )
        if source.on_failure_topic is not None:
            raise ConfigError(
                "onFailureTopic only applies with failureMode=divert and"
                " onFailureDestination=kafka (failureMode=block)"
            )

    @property
    def fate(self) -> str:
        return "the batch is retried until the fault clears: its partition waits"

    def alarms(self, metrics: SinkMetrics) -> tuple[AlarmSpec, ...]:
        return ()  # nothing is delivered anywhere

    def discard_alarms(self, metrics: SinkMetrics, mapping: TopicMapping) -> tuple[AlarmSpec, ...]:
        """Nothing should be dropped: if the mapping drops records anyway, they are only in
        Kafka now."""
        dropped = metrics.of_mapping(mapping, "DroppedEventCount")
        what = "dropped records although failureMode=block never gives a batch up"
        return (self._mapping_alarm(self.discard_entry, mapping, dropped, what),)

    def delivery_alarms(self, metrics: SinkMetrics, mapping: TopicMapping) -> tuple[AlarmSpec, ...]:
        return ()


class KafkaDestination(FailureDestination):
    """A topic on the same cluster (`onFailureTopic`): the records themselves."""

    short = "Kafka"
    discard_entry = "MappingDiscardedToKafka"
    delivery_entry = "MappingKafkaDeliveryErrors"

    def _bind(self, source: SourceConfig, bucket: s3.IBucket) -> lambda_.IEventSourceDlq:
        topic = source.on_failure_topic
        assert topic is not None  # check() requires it
        self.label = f"topic {topic}"
        self.statements = _kafka_statements(source, topic)
        return sources.KafkaDlq(topic)

    @property
    def fate(self) -> str:
        return f"the batch is retried, then sent to Kafka {self.label}"

    @staticmethod
    def check_topic(source: SourceConfig) -> None:
        topic = source.on_failure_topic
        if topic is None:
            raise ConfigError(
                "onFailureTopic is required when onFailureDestination=kafka: the topic, on the"
                " same cluster, that receives the failed records"
            )
        # AWS: "Using a Kafka topic as an on-failure destination": Lambda blocks a destination
        # topic that is also a source topic (it would loop).
        if topic in source.topic_names:
            raise ConfigError(
                f"onFailureTopic={topic!r} is also in topics: Lambda refuses a"
                " destination topic that is a source topic"
            )


def _kafka_statements(source: SourceConfig, topic: str) -> list[iam.PolicyStatement]:
    """With MSK's IAM access control, the mappings produce to the topic with the function's role.

    AWS: "Using a Kafka topic as an on-failure destination" (topic permissions). With SASL or
    mTLS, the cluster's ACLs grant the credentials' principal WRITE on the topic instead.
    """
    cluster = source.iam_cluster
    if cluster is None:
        return []
    return [
        iam.PolicyStatement(
            sid="WriteFailureTopic",
            actions=["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"],
            resources=[cluster.topic_arn(topic)],
        )
    ]


class _NoticeDestination(FailureDestination):
    """SQS or SNS: a notice of each batch given up on, in a queue or topic this stack creates,
    encrypted with its own key, and an output that says where."""

    discard_entry = "MappingDiscardedToNotice"
    delivery_entry = "MappingNoticeDeliveryErrors"
    holder: ClassVar[str]  # what holds the notices
    output: ClassVar[tuple[str, str]]  # the output's id and description
    grant: ClassVar[tuple[str, str]]  # the role's statement id and action to send a notice

    @property
    def fate(self) -> str:
        return f"the batch is retried, then given up with a notice to {self.short}"

    def _bind(self, source: SourceConfig, bucket: s3.IBucket) -> lambda_.IEventSourceDlq:
        self.key = kms.Key(
            self,
            "Key",
            description=f"Encrypts the MSK -> Kinesis sink's discard-notice {self.holder}",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        target, arn, where = self._build_holder(self.key)
        output_id, description = self.output
        CfnOutput(Stack.of(self), output_id, value=where, description=description)
        sid, action = self.grant
        # The mappings deliver with the function's role; an encrypted queue or topic also needs
        # kms:Decrypt and kms:GenerateDataKey on its key (AWS, page in the module docstring).
        self.statements = [
            iam.PolicyStatement(sid=sid, actions=[action], resources=[arn]),
            iam.PolicyStatement(
                sid="EncryptDiscardNotices",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[self.key.key_arn],
            ),
        ]
        return target

    def _build_holder(self, key: kms.IKey) -> tuple[lambda_.IEventSourceDlq, str, str]:
        """Builds the queue or topic; returns the mappings' target, its ARN and the output."""
        raise NotImplementedError


class SqsDestination(_NoticeDestination):
    """Exposes the `queue` of notices and its `key`."""

    short = "SQS"
    label = "the discard-notice queue"
    holder = "queue"
    output = (
        "DiscardNoticeQueueUrl",
        "A notice per batch the mappings gave up on (records stay in Kafka)",
    )
    grant = ("SendDiscardNotices", "sqs:SendMessage")

    def _build_holder(self, key: kms.IKey) -> tuple[lambda_.IEventSourceDlq, str, str]:
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=NOTICE_RETENTION,
            # A notice is the only record of which offsets were given up.
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.queue,
            "AwsSolutions-SQS3",
            (
                "This queue is itself the mappings' on-failure destination: a dead-letter"
                " queue of its own would only move unread notices elsewhere. Notices are"
                " kept 14 days and the DiscardNoticesWaiting alarm fires while one is"
                " older than a day."
            ),
        )
        return sources.SqsDlq(self.queue), self.queue.queue_arn, self.queue.queue_url

    def alarms(self, metrics: SinkMetrics) -> tuple[AlarmSpec, ...]:
        oldest = self.queue.metric_approximate_age_of_oldest_message(
            statistic="Maximum", period=PERIOD
        )
        waiting = AlarmSpec(
            "DiscardNoticesWaiting",
            oldest,
            threshold=NOTICE_WAITING_SECONDS,
            what=(
                "a discard notice has waited in the queue for a day: its records are"
                " only in Kafka, until the topic's retention removes them"
            ),
        )
        return (*super().alarms(metrics), waiting)

    def widgets(self) -> list[cw.IWidget]:
        return [
            cw.GraphWidget(
                title="Discard notices (SQS): waiting, and age of the oldest (s)",
                left=[self.queue.metric_approximate_number_of_messages_visible(period=PERIOD)],
                right=[
                    self.queue.metric_approximate_age_of_oldest_message(
                        statistic="Maximum", period=PERIOD
                    )
                ],
                right_annotations=[
                    cw.HorizontalAnnotation(value=NOTICE_WAITING_SECONDS, label="alarm")
                ],
                width=WIDTH,
            )
        ]


class SnsDestination(_NoticeDestination):
    """Exposes the `topic` of notices and its `key`."""

    short = "SNS"
    label = "the discard-notice topic"
    holder = "topic"
    output = ("DiscardNoticeTopicArn", "Subscribe to hear of each batch the mappings gave up on")
    grant = ("PublishDiscardNotices", "sns:Publish")

    def _build_holder(self, key: kms.IKey) -> tuple[lambda_.IEventSourceDlq, str, str]:
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name="MSK -> Kinesis sink: discarded batches",
            master_key=key,
            enforce_ssl=True,
        )
        return sources.SnsDlq(self.topic), self.topic.topic_arn, self.topic.topic_arn

    def alarms(self, metrics: SinkMetrics) -> tuple[AlarmSpec, ...]:
        failed = AlarmSpec(
            "DiscardNoticesFailed",
            self.topic.metric_number_of_notifications_failed(statistic="Sum", period=PERIOD),
            what="SNS could not deliver a discard notice to a subscriber",
        )
        return (*super().alarms(metrics), failed)

    def widgets(self) -> list[cw.IWidget]:
        return [
            cw.GraphWidget(
                title="Discard notices (SNS): published, delivered, failed",
                left=[
                    self.topic.metric_number_of_messages_published(period=PERIOD),
                    self.topic.metric_number_of_notifications_delivered(period=PERIOD),
                    self.topic.metric_number_of_notifications_failed(period=PERIOD),
                ],
                width=WIDTH,
            )
        ]
