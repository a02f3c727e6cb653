"""Template assertions on the synthesized stack: mappings, IAM scoping, encryption, monitoring."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aws_cdk.assertions import Match

from infra.config import LogLevel, MskCluster
from tests.infra.conftest import (
    CLUSTER_ARN,
    MTLS_SECRET_ARN,
    SCRAM_SECRET_ARN,
    SECRET_KEY_ARN,
    STREAM_ARN,
    STREAM_KEY_ARN,
    Synth,
    feature_flags,
    shipped_context,
)

pytestmark = pytest.mark.infra

ENI_ACTIONS = {
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcs",
}
SCOPED_SERVICES = (
    "kinesis:",
    "s3:",
    "kafka-cluster:",
    "kafka:",
    "kms:",
    "secretsmanager:",
    "sqs:",
    "sns:",
)
ALARMS = {
    "OffsetLag",
    "FunctionErrors",
    "FunctionThrottles",
    "RecordsDeadLettered",
    "StreamHeldByGuard",
    "RecordsMalformed",
    "StreamWriteThrottling",
    "DurationNearTimeout",
    "DestinationDeliveryFailures",
}
MAPPING_ALARMS = {
    "MappingNotPolling",
    "MappingPollingErrors",
    "MappingInvokeErrors",
    "MappingCommitErrors",
}
# Per destination kind: the extra stack alarms, and the per-mapping discard and delivery alarms.
DESTINATION_ALARMS = {
    "s3": (set(), {"MappingDiscarded", "MappingDeliveryErrors"}),
    "kafka": (set(), {"MappingDiscardedToKafka", "MappingKafkaDeliveryErrors"}),
    "sqs": ({"DiscardNoticesWaiting"}, {"MappingDiscardedToNotice", "MappingNoticeDeliveryErrors"}),
    "sns": ({"DiscardNoticesFailed"}, {"MappingDiscardedToNotice", "MappingNoticeDeliveryErrors"}),
}
# failureMode=block: no destination, so no delivery alarms; an alarm if a mapping drops anyway.
BLOCK_ALARMS = (set(), {"MappingDropped"})


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(synth: Synth) -> Iterator[dict[str, Any]]:
    """Every identity-policy statement in the stack (inline role policies and policy resources)."""
    for resource in synth.template_json["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                yield from policy["PolicyDocument"]["Statement"]
        elif resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield from props["PolicyDocument"]["Statement"]


def statement(synth: Synth, sid: str) -> dict[str, Any]:
    found = [s for s in statements(synth) if s.get("Sid") == sid]
    assert len(found) == 1, sid
    return found[0]


def only(mapping: dict[str, Any]) -> Any:
    assert len(mapping) == 1
    return next(iter(mapping.values()))


def logical_id(synth: Synth, type_name: str) -> str:
    ids = list(synth.resources(type_name))
    assert len(ids) == 1, type_name
    return ids[0]


# --- event source mappings --------------------------------------------------------------------


def test_stack_mapping_reports_partial_failures_with_pollers_retries_and_s3_destination(
    default_synth: Synth,
) -> None:
    # GIVEN the shipped configuration
    # WHEN synthesized
    # THEN its one mapping reads the topic with everything the sink's guarantee depends on
    bucket = logical_id(default_synth, "AWS::S3::Bucket")
    default_synth.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": shipped_context()["clusterArn"],
            "Topics": ["example-topic"],
            "AmazonManagedKafkaEventSourceConfig": {
                "ConsumerGroupId": "msk-kinesis-sink-example-topic"
            },
            "StartingPosition": "TRIM_HORIZON",
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ProvisionedPollerConfig": {"MinimumPollers": 1, "MaximumPollers": 10},
            "BatchSize": 500,
            "MaximumBatchingWindowInSeconds": 1,
            "MaximumRetryAttempts": 10,
            "BisectBatchOnFunctionError": True,
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [bucket, "Arn"]}}},
            "MetricsConfig": {"Metrics": ["EventCount", "ErrorCount", "KafkaMetrics"]},
            "SourceAccessConfigurations": Match.absent(),
        },
    )


def test_stack_one_mapping_per_topic_each_with_its_own_group(
    variant_synths: dict[str, Synth],
) -> None:
    # GIVEN three topics, AT_TIMESTAMP, a max record age and a filter
    synth = variant_synths["multi_topic"]
    # WHEN synthesized
    mappings = synth.resources("AWS::Lambda::EventSourceMapping").values()
    # THEN there is one mapping per topic, all feeding the one function, each fully configured
    by_topic = {m["Properties"]["Topics"][0]: m["Properties"] for m in mappings}
    assert set(by_topic) == {"orders", "payments", "refunds"}
    function = logical_id(synth, "AWS::Lambda::Function")
    for topic, props in by_topic.items():
        assert props["FunctionName"] == {"Ref": function}
        assert props["AmazonManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": f"sink-{topic}"}
        assert props["StartingPosition"] == "AT_TIMESTAMP"
        assert props["StartingPositionTimestamp"] == 1_767_225_600
        assert props["MaximumRecordAgeInSeconds"] == 3600
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert json.loads(props["FilterCriteria"]["Filters"][0]["Pattern"]) == {
            "value": {"type": ["order"]}
        }


def mappings_by_topic(synth: Synth) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each mapping's logical id and properties, by topic."""
    return {
        resource["Properties"]["Topics"][0]: (logical, resource["Properties"])
        for logical, resource in synth.resources("AWS::Lambda::EventSourceMapping").items()
    }


def test_stack_adding_a_topic_leaves_the_existing_mapping_untouched(
    builder: Callable[..., Synth],
) -> None:
    # GIVEN a deployment reading one topic, and the same deployment with a second topic added
    base = {**feature_flags(), "clusterArn": CLUSTER_ARN, "consumerGroupId": "sink"}
    before = mappings_by_topic(builder({**base, "topics": "orders"}))
    after = mappings_by_topic(builder({**base, "topics": "orders,payments"}))
    # WHEN the first topic's mapping is compared
    # THEN it keeps its logical id and every property, its group included: CloudFormation
    # neither replaces it nor re-reads the topic from startingPosition
    assert after["orders"] == before["orders"]
    assert before["orders"][1]["AmazonManagedKafkaEventSourceConfig"] == {
        "ConsumerGroupId": "sink-orders"
    }
    assert after["payments"][1]["AmazonManagedKafkaEventSourceConfig"] == {
        "ConsumerGroupId": "sink-payments"
    }


def test_stack_explicit_group_is_used_for_its_topic(variant_synths: dict[str, Synth]) -> None:
    # GIVEN consumerGroups naming an existing group for one topic
    synth = variant_synths["quiet_named_groups"]
    # WHEN synthesized
    groups = {
        topic: props["AmazonManagedKafkaEventSourceConfig"]["ConsumerGroupId"]
        for topic, (_, props) in mappings_by_topic(synth).items()
    }
    # THEN that topic's mapping joins it, and the role may join exactly those groups
    assert groups["orders"] == "legacy-orders"
    cluster = MskCluster.from_arn(CLUSTER_ARN)
    assert sorted(statement(synth, "JoinConsumerGroups")["Resource"]) == sorted(
        cluster.group_arn(group) for group in groups.values()
    )


def test_stack_scram_mapping_uses_the_secret(variant_synths: dict[str, Synth]) -> None:
    # GIVEN SASL/SCRAM authentication
    synth = variant_synths["scram_imported_stream"]
    # WHEN synthesized
    props = only(synth.resources("AWS::Lambda::EventSourceMapping"))["Properties"]
    # THEN the mapping authenticates with the secret, and the role may read (and decrypt) it
    assert props["SourceAccessConfigurations"] == [
        {"Type": "SASL_SCRAM_512_AUTH", "URI": SCRAM_SECRET_ARN}
    ]
    assert statement(synth, "ReadClusterCredentials")["Resource"] == SCRAM_SECRET_ARN
    assert statement(synth, "DecryptClusterCredentials")["Resource"] == SECRET_KEY_ARN
    assert "kafka:ListScramSecrets" in statement(synth, "DescribeCluster")["Action"]
    # ...and has no IAM-auth data-plane actions it would not use
    assert not [s for s in statements(synth) if "kafka-cluster:" in json.dumps(s["Action"])]


def test_stack_mtls_mapping_uses_client_certificate_auth(variant_synths: dict[str, Synth]) -> None:
    # GIVEN mTLS authentication
    synth = variant_synths["mtls"]
    # WHEN synthesized
    props = only(synth.resources("AWS::Lambda::EventSourceMapping"))["Properties"]
    # THEN the secret is presented as a client certificate, not SCRAM credentials, and readable
    assert statement(synth, "ReadClusterCredentials")["Resource"] == MTLS_SECRET_ARN
    assert props["SourceAccessConfigurations"] == [
        {"Type": "CLIENT_CERTIFICATE_TLS_AUTH", "URI": MTLS_SECRET_ARN}
    ]


# --- IAM --------------------------------------------------------------------------------------


def test_stack_iam_has_no_wildcard_actions(all_synths: dict[str, Synth]) -> None:
    # GIVEN every synthesized variant
    for name, synth in all_synths.items():
        # WHEN its identity policies are read
        actions = [a for s in statements(synth) for a in as_list(s["Action"])]
        # THEN no action is a wildcard
        assert actions, name
        assert [a for a in actions if "*" in a] == [], name


def test_stack_iam_scopes_data_actions_to_named_resources(all_synths: dict[str, Synth]) -> None:
    # GIVEN every synthesized variant
    for name, synth in all_synths.items():
        for s in statements(synth):
            actions = as_list(s["Action"])
            resources = as_list(s["Resource"])
            if "*" in resources:
                # THEN the only unscoped statement is ENI management for the mapping
                assert set(actions) == ENI_ACTIONS, (name, s)
            # THEN kinesis, s3, kafka, kms and secrets actions never apply to every resource
            if any(a.startswith(SCOPED_SERVICES) for a in actions):
                assert "*" not in resources, (name, s)


def test_stack_role_has_no_managed_policies(all_synths: dict[str, Synth]) -> None:
    # GIVEN every variant
    for name, synth in all_synths.items():
        # WHEN its roles are read
        roles = synth.resources("AWS::IAM::Role").values()
        # THEN none carries a broad AWS managed policy (AWSLambdaMSKExecutionRole and the like)
        assert [r["Properties"].get("ManagedPolicyArns") for r in roles] == [None], name
        assert synth.resources("AWS::IAM::Policy") == {}, name


def test_stack_kafka_cluster_actions_scoped_to_cluster_topics_and_groups(
    variant_synths: dict[str, Synth],
) -> None:
    # GIVEN IAM authentication and three topics
    synth = variant_synths["multi_topic"]
    cluster = MskCluster.from_arn(CLUSTER_ARN)
    # WHEN the kafka-cluster statements are read
    connect = statement(synth, "ConnectToCluster")
    read = statement(synth, "ReadTopics")
    join = statement(synth, "JoinConsumerGroups")
    # THEN each names exactly the ARNs derived from the cluster ARN
    topics = ["orders", "payments", "refunds"]
    assert sorted(connect["Action"]) == [
        "kafka-cluster:Connect",
        "kafka-cluster:DescribeClusterDynamicConfiguration",
    ]
    assert connect["Resource"] == CLUSTER_ARN
    assert sorted(read["Action"]) == ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
    assert sorted(read["Resource"]) == [cluster.topic_arn(t) for t in topics]
    assert sorted(join["Action"]) == ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"]
    assert sorted(join["Resource"]) == [cluster.group_arn(f"sink-{t}") for t in topics]


def test_stack_kinesis_and_s3_permissions_are_the_minimum(default_synth: Synth) -> None:
    # GIVEN the shipped configuration
    stream = logical_id(default_synth, "AWS::Kinesis::Stream")
    bucket = logical_id(default_synth, "AWS::S3::Bucket")
    # WHEN the stream and bucket statements are read
    publish = statement(default_synth, "PublishToStream")
    encrypt = statement(default_synth, "EncryptStreamRecords")
    dead_letters = statement(default_synth, "WriteDeadLetters")
    listing = statement(default_synth, "ListDeadLetterBucket")
    # THEN put/list/describe on the stream, its key for encryption, and on the dead-letter
    # bucket what AWS's Kafka on-failure page asks for: PutObject and ListBucket, only while
    # the bucket is in this account
    assert sorted(publish["Action"]) == [
        "kinesis:DescribeStream",
        "kinesis:DescribeStreamSummary",
        "kinesis:ListShards",
        "kinesis:PutRecord",
        "kinesis:PutRecords",
    ]
    assert publish["Resource"] == {"Fn::GetAtt": [stream, "Arn"]}
    assert encrypt["Action"] == "kms:GenerateDataKey"
    assert encrypt["Resource"] == {"Fn::GetAtt": [logical_id_of_key(default_synth, stream), "Arn"]}
    own_account = {"StringEquals": {"s3:ResourceAccount": {"Ref": "AWS::AccountId"}}}
    assert dead_letters["Action"] == "s3:PutObject"
    assert dead_letters["Resource"] == {"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/*"]]}
    assert dead_letters["Condition"] == own_account
    assert listing == {
        "Action": "s3:ListBucket",
        "Condition": own_account,
        "Effect": "Allow",
        "Resource": {"Fn::GetAtt": [bucket, "Arn"]},
        "Sid": "ListDeadLetterBucket",
    }


def logical_id_of_key(synth: Synth, stream: str) -> str:
    key_ref = synth.template_json["Resources"][stream]["Properties"]["StreamEncryption"]["KeyId"]
    return str(key_ref["Fn::GetAtt"][0])


def test_stack_imported_stream_is_used_by_arn(variant_synths: dict[str, Synth]) -> None:
    # GIVEN an existing stream and its key
    synth = variant_synths["scram_imported_stream"]
    # WHEN synthesized
    # THEN no stream is created, and the function writes to (and encrypts for) the given ones
    assert synth.resources("AWS::Kinesis::Stream") == {}
    assert statement(synth, "PublishToStream")["Resource"] == STREAM_ARN
    assert statement(synth, "EncryptStreamRecords")["Resource"] == STREAM_KEY_ARN
    env = only(synth.resources("AWS::Lambda::Function"))["Properties"]["Environment"]
    assert env["Variables"]["STREAM_NAME"] == STREAM_ARN


# --- encryption and data protection -------------------------------------------------------------


def test_stack_created_stream_is_kms_encrypted_with_a_rotating_key(default_synth: Synth) -> None:
    # GIVEN the shipped configuration (creates the stream)
    stream = only(default_synth.resources("AWS::Kinesis::Stream"))["Properties"]
    # WHEN its encryption is read
    key_id = logical_id_of_key(default_synth, logical_id(default_synth, "AWS::Kinesis::Stream"))
    key = default_synth.template_json["Resources"][key_id]
    # THEN it is KMS-encrypted with a customer managed key that rotates
    assert stream["StreamEncryption"]["EncryptionType"] == "KMS"
    assert key["Properties"]["EnableKeyRotation"] is True
    assert stream["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert stream["RetentionPeriodHours"] == 24
    assert stream["MaxRecordSizeInKiB"] == 1024


def test_stack_provisioned_stream_has_its_shards_and_record_size(
    variant_synths: dict[str, Synth],
) -> None:
    # GIVEN streamMode=provisioned, 4 shards, 4 MiB records
    synth = variant_synths["multi_topic"]
    # WHEN synthesized
    stream = only(synth.resources("AWS::Kinesis::Stream"))["Properties"]
    env = only(synth.resources("AWS::Lambda::Function"))["Properties"]["Environment"]["Variables"]
    # THEN the stream and the function agree on the record size
    assert stream["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert stream["ShardCount"] == 4
    assert stream["MaxRecordSizeInKiB"] == 4096
    assert env["MAX_RECORD_BYTES"] == str(4096 * 1024)


def test_stack_dead_letter_bucket_is_encrypted_private_tls_only_and_expires(
    default_synth: Synth,
) -> None:
    # GIVEN the shipped configuration
    bucket_id = logical_id(default_synth, "AWS::S3::Bucket")
    bucket = default_synth.template_json["Resources"][bucket_id]
    props = bucket["Properties"]
    # WHEN its protection is read
    # THEN SSE-KMS with a customer managed key, public access blocked, lifecycle expiry,
    # retained on stack deletion (its key too: the objects are unreadable without it)
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    key_id = sse["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]["Fn::GetAtt"][0]
    key = default_synth.template_json["Resources"][key_id]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"
    # ...and the role (which the mappings' S3 destination writes with) may encrypt with it
    encrypt = statement(default_synth, "EncryptDeadLetters")
    assert encrypt["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert "kms:GenerateDataKey" in encrypt["Action"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    rule = props["LifecycleConfiguration"]["Rules"][0]
    assert (rule["Status"], rule["ExpirationInDays"]) == ("Enabled", 90)
    assert bucket["DeletionPolicy"] == "Retain"
    # ...and a bucket policy denies every request not made over TLS
    default_synth.template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_stack_alarm_topic_is_encrypted_and_tls_only(default_synth: Synth) -> None:
    # GIVEN the shipped configuration
    topic = only(default_synth.resources("AWS::SNS::Topic"))["Properties"]
    # WHEN the topic is read
    # THEN it is KMS-encrypted and its policy refuses plain-text publishing
    key_id = topic["KmsMasterKeyId"]["Fn::GetAtt"][0]
    key = default_synth.template_json["Resources"][key_id]["Properties"]
    assert key["EnableKeyRotation"] is True
    # ...and CloudWatch may use the key and publish, or encrypted alarm notifications would
    # never arrive; but only for alarms of this account (no confused deputy)
    this_account = {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert {
        "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
        "Condition": this_account,
        "Effect": "Allow",
        "Principal": {"Service": "cloudwatch.amazonaws.com"},
        "Resource": "*",
        "Sid": "AlarmsPublishToEncryptedTopic",
    } in key["KeyPolicy"]["Statement"]
    for statement_ in key["KeyPolicy"]["Statement"]:
        if "Service" in statement_["Principal"]:
            assert statement_["Condition"] == this_account
    default_synth.template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Allow",
                                "Action": "sns:Publish",
                                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                "Condition": this_account,
                            }
                        )
                    ]
                )
            }
        },
    )
    default_synth.template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


# --- function ---------------------------------------------------------------------------------


def test_stack_function_runtime_logging_and_environment(default_synth: Synth) -> None:
    # GIVEN the shipped configuration
    function = only(default_synth.resources("AWS::Lambda::Function"))["Properties"]
    log_group_id = logical_id(default_synth, "AWS::Logs::LogGroup")
    bucket = logical_id(default_synth, "AWS::S3::Bucket")
    # WHEN the function is read
    env = function["Environment"]["Variables"]
    # THEN arm64, the newest Python runtime, JSON logs into a retained log group, and settings
    assert function["Runtime"] == "python3.14"
    assert function["Architectures"] == ["arm64"]
    assert function["Handler"] == "msk_kinesis_sink.handler.handler"
    assert (function["MemorySize"], function["Timeout"]) == (1024, 120)
    assert function["LoggingConfig"]["LogFormat"] == "JSON"
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": log_group_id}
    assert (
        default_synth.template_json["Resources"][log_group_id]["Properties"]["RetentionInDays"]
        == 30
    )
    assert env["DEAD_LETTER_BUCKET"] == {"Ref": bucket}
    assert env["DEAD_LETTER_PREFIX"] == "records/"
    assert (env["RECORD_FORMAT"], env["PARTITION_KEY"], env["AGGREGATION"]) == ("raw", "key", "on")
    assert env["MAX_RECORD_BYTES"] == "1048576"
    assert env["POWERTOOLS_SERVICE_NAME"] == "msk-kinesis-sink"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "MskKinesisSink"
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
    assert "ReservedConcurrentExecutions" not in function


def lambda_keeps(line: dict[str, Any], application_level: str) -> bool:
    """Lambda's documented application log filter: lines without a `level` count as INFO."""
    order = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
    level = str(line.get("level", "INFO")).upper().replace("WARNING", "WARN")
    level = level if level in order else "INFO"
    return order.index(level) >= order.index(application_level)


def emf_line() -> dict[str, Any]:
    """One metric line exactly as Powertools writes it (EMF, printed to stdout)."""
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    metrics = Metrics(namespace="MskKinesisSink", service="msk-kinesis-sink")
    metrics.add_metric(name="RecordsPublished", unit=MetricUnit.Count, value=1)
    line: dict[str, Any] = metrics.serialize_metric_set()
    return line


@pytest.mark.parametrize("level", list(LogLevel))
def test_stack_log_level_never_filters_metrics_or_report_lines(
    level: LogLevel, builder: Callable[..., Synth]
) -> None:
    # GIVEN any logLevel
    synth = builder(
        {**feature_flags(), "clusterArn": CLUSTER_ARN, "topics": "orders", "logLevel": level.value}
    )
    function = only(synth.resources("AWS::Lambda::Function"))["Properties"]
    logging_config = function["LoggingConfig"]
    # WHEN Lambda's filters are applied to a Powertools metric line
    kept = lambda_keeps(emf_line(), logging_config["ApplicationLogLevel"])
    # THEN the metric line survives, REPORT lines (INFO system logs) survive, and logLevel
    # reaches the function as its own setting
    assert kept
    assert logging_config["SystemLogLevel"] == "INFO"
    assert function["Environment"]["Variables"]["POWERTOOLS_LOG_LEVEL"] == level.value


def test_stack_log_filter_model_drops_metrics_above_info() -> None:
    # GIVEN the filter model the test above relies on, and a real Powertools metric line
    line = emf_line()
    # WHEN it is applied at levels stricter than INFO
    # THEN the line is dropped: the model is strict enough to catch the original bug
    assert "level" not in line
    assert not lambda_keeps(line, "WARN")
    assert not lambda_keeps(line, "ERROR")


def test_stack_function_reserved_concurrency_and_architecture_follow_config(
    variant_synths: dict[str, Synth],
) -> None:
    # GIVEN reservedConcurrency=20 in one variant and x86_64 in another
    reserved = only(variant_synths["multi_topic"].resources("AWS::Lambda::Function"))
    x86 = only(variant_synths["scram_imported_stream"].resources("AWS::Lambda::Function"))
    # WHEN synthesized
    # THEN both are applied
    assert reserved["Properties"]["ReservedConcurrentExecutions"] == 20
    assert x86["Properties"]["Architectures"] == ["x86_64"]


# --- monitoring -------------------------------------------------------------------------------


def alarms_by_name(synth: Synth) -> dict[str, dict[str, Any]]:
    """Alarm properties by the name the monitoring construct gave them."""
    resources = synth.template_json["Resources"]
    named = {}
    for name, alarm in synth.stack.monitoring.alarms.items():
        logical = synth.stack.get_logical_id(alarm.node.default_child)
        named[name] = resources[logical]["Properties"]
    assert len(named) == len(synth.resources("AWS::CloudWatch::Alarm"))
    return named


def test_stack_alarms_present_named_and_notify_the_topic(all_synths: dict[str, Synth]) -> None:
    for name, synth in all_synths.items():
        # GIVEN a synthesized variant with its topics
        topics = list(mappings_by_topic(synth))
        topic_id = synth.stack.get_logical_id(synth.stack.monitoring.topic.node.default_child)
        stack = synth.stack.stack_name
        config = synth.stack.config
        # WHEN its alarms are read
        alarms = alarms_by_name(synth)
        # THEN every alarm is there (six for the mappings, their discard alarms named after the
        # destination kind, each watching every mapping of these few; one more per routed
        # stream), each notifying the topic, each with an explicit name: the stack, then the
        # name its runbook entry carries
        source = config.source
        block = source.failure_mode.value == "block"
        extra, per_mapping = BLOCK_ALARMS if block else DESTINATION_ALARMS[source.on_failure.value]
        entries = MAPPING_ALARMS | per_mapping
        if source.schema_registry is not None:
            entries |= {"MappingSchemaRegistryErrors"}
        assert len(topics) <= 5  # one alarm reads up to 5 mappings' discards, 10 of the others
        watched_topics = (
            topics[0] if len(topics) == 1 else f"{topics[0]} and {len(topics) - 1} more"
        )
        stack_alarms = ALARMS - {"DestinationDeliveryFailures"} if block else ALARMS
        expected = stack_alarms | extra | {f"{entry}-{watched_topics}" for entry in entries}
        if config.alarms.delivery_delay_seconds is not None:
            expected.add("DeliveryDelay")
        expected |= {f"StreamWriteThrottling-{stream_id}" for stream_id in config.streams}
        if not config.default_stream:
            expected.remove("StreamWriteThrottling")
        assert set(alarms) == expected, name
        for alarm, props in alarms.items():
            assert props["AlarmActions"] == [{"Ref": topic_id}]
            assert props["OKActions"] == [{"Ref": topic_id}]
            assert props["AlarmName"].startswith(f"{stack}-")
            assert len(props["AlarmName"]) <= 255
            assert len(props["AlarmDescription"]) <= 1024  # CloudWatch's limit
            if len(f"{stack}-{alarm}") <= 255:
                assert props["AlarmName"] == f"{stack}-{alarm}"
            missing = "breaching" if alarm.startswith("MappingNotPolling-") else "notBreaching"
            assert props["TreatMissingData"] == missing, alarm
        assert len({props["AlarmName"] for props in alarms.values()}) == len(alarms)


def test_stack_mapping_alarms_watch_the_mappings_own_error_metrics(default_synth: Synth) -> None:
    # GIVEN the shipped configuration (one mapping)
    mapping_id = logical_id(default_synth, "AWS::Lambda::EventSourceMapping")
    alarms = alarms_by_name(default_synth)
    # WHEN the per-mapping alarms are read
    metrics = {name: watched(alarm) for name, alarm in alarms.items()}
    # THEN each watches the metric AWS documents for it, on that mapping's UUID
    expected = {
        "MappingPollingErrors": "PollingErrorCount",
        "MappingInvokeErrors": "InvokeErrorCount",
        "MappingCommitErrors": "CommitErrorCount",
        "MappingDeliveryErrors": "OnFailureDestinationDeliveryErrorCount",
        "MappingNotPolling": "PolledEventCount",
    }
    for entry, metric in expected.items():
        [watched_metric] = metrics[f"{entry}-example-topic"]
        assert watched_metric["MetricName"] == metric
        assert watched_metric["Namespace"] == "AWS/Lambda"
        assert watched_metric["Dimensions"] == [
            {"Name": "EventSourceMappingUUID", "Value": {"Ref": mapping_id}}
        ]


def test_stack_stalled_mapping_breaches(default_synth: Synth) -> None:
    # GIVEN the not-polling alarm of the shipped mapping
    alarm = alarms_by_name(default_synth)["MappingNotPolling-example-topic"]
    # WHEN its evaluation is read
    # THEN no poll datapoints at all (a mapping that can't reach the cluster, or was disabled)
    # is a breach, held for 15 minutes
    [stat] = [m["MetricStat"] for m in alarm["Metrics"]]
    assert (stat["Metric"]["MetricName"], stat["Stat"], stat["Period"]) == (
        "PolledEventCount",
        "SampleCount",
        300,
    )
    assert alarm["ComparisonOperator"] == "LessThanThreshold"
    assert alarm["Threshold"] == 1
    assert alarm["TreatMissingData"] == "breaching"
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 3)


def test_stack_discarded_sum_is_defined_when_one_side_is_missing(default_synth: Synth) -> None:
    # GIVEN the discard alarm: dropped + sent to S3, both emitted only when it happens
    alarm = alarms_by_name(default_synth)["MappingDiscarded-example-topic"]
    # WHEN its expression is read
    [expression] = [m["Expression"] for m in alarm["Metrics"] if "Expression" in m]
    ids = {m["Id"] for m in alarm["Metrics"] if "MetricStat" in m}
    # THEN each side is filled with 0, so one missing side leaves the other visible
    assert ids == {"dropped", "delivered"}
    assert expression.replace(" ", "") == "FILL(dropped,0)+FILL(delivered,0)"


def watched(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics an alarm evaluates (plain metric, or the inputs of its expression)."""
    if "MetricName" in alarm:
        return [{k: alarm.get(k) for k in ("MetricName", "Namespace", "Dimensions")}]
    return [m["MetricStat"]["Metric"] for m in alarm["Metrics"] if "MetricStat" in m]


def test_stack_alarm_metrics_and_thresholds(default_synth: Synth) -> None:
    # GIVEN the shipped configuration (timeout 120 s, alarm at 80 %, lag threshold 10,000)
    alarms = alarms_by_name(default_synth)
    # WHEN the alarms are read
    metrics = {name: watched(alarm) for name, alarm in alarms.items()}
    # THEN each watches the metric its runbook entry describes, at the configured threshold
    assert [m["MetricName"] for m in metrics["OffsetLag"]] == ["OffsetLag"]
    assert alarms["OffsetLag"]["Threshold"] == 10_000
    assert alarms["OffsetLag"]["EvaluationPeriods"] == 3
    assert [m["MetricName"] for m in metrics["FunctionErrors"]] == ["Errors"]
    assert [m["MetricName"] for m in metrics["FunctionThrottles"]] == ["Throttles"]
    assert metrics["RecordsDeadLettered"] == [
        {
            "MetricName": "RecordsDeadLettered",
            "Namespace": "MskKinesisSink",
            "Dimensions": [{"Name": "service", "Value": "msk-kinesis-sink"}],
        }
    ]
    assert [m["MetricName"] for m in metrics["StreamWriteThrottling"]] == [
        "WriteProvisionedThroughputExceeded"
    ]
    assert [m["MetricName"] for m in metrics["DurationNearTimeout"]] == ["Duration"]
    assert [m["MetricName"] for m in metrics["DestinationDeliveryFailures"]] == [
        "DestinationDeliveryFailures"
    ]
    assert alarms["DurationNearTimeout"]["Threshold"] == 96_000
    discarded = metrics["MappingDiscarded-example-topic"]
    assert {m["MetricName"] for m in discarded} == {
        "DroppedEventCount",
        "OnFailureDestinationDeliveredEventCount",
    }
    assert {m["Dimensions"][0]["Name"] for m in discarded} == {"EventSourceMappingUUID"}


def test_stack_dashboard_shows_lag_function_sink_and_stream_metrics(default_synth: Synth) -> None:
    # GIVEN the shipped configuration
    dashboard = only(default_synth.resources("AWS::CloudWatch::Dashboard"))["Properties"]
    # WHEN its body is rendered (tokens left as they are)
    body = json.dumps(dashboard["DashboardBody"])
    # THEN every signal an on-call needs is on it
    for metric in (
        "OffsetLag",
        "SumOffsetLag",
        "PolledEventCount",
        "DroppedEventCount",
        "OnFailureDestinationDeliveredEventCount",
        "Invocations",
        "Errors",
        "Throttles",
        "Duration",
        "ConcurrentExecutions",
        "RecordsPublished",
        "RecordsFailed",
        "RecordsDeadLettered",
        "RecordsThrottled",
        "RetryAttempts",
        "PublishLatency",
        "DeliveryDelay",
        "IncomingRecords",
        "IncomingBytes",
        "WriteProvisionedThroughputExceeded",
    ):
        assert metric in body, metric
    assert "timeout" in body
    assert "alarm" in body


def test_stack_delivery_delay_alarm_only_when_configured(all_synths: dict[str, Synth]) -> None:
    # GIVEN a variant with deliveryDelayAlarmSeconds=300, and the shipped one without
    configured = alarms_by_name(all_synths["multi_topic"])["DeliveryDelay"]
    # WHEN the alarms are read
    # THEN the configured one fires when the latest record of each of 3 periods of 5 minutes
    # reached the stream at least 300 s after its Kafka timestamp (no records: no alarm)
    assert watched(configured) == [
        {
            "MetricName": "DeliveryDelay",
            "Namespace": "MskKinesisSink",
            "Dimensions": [{"Name": "service", "Value": "msk-kinesis-sink"}],
        }
    ]
    [stat] = [m["MetricStat"] for m in configured["Metrics"]]
    assert (stat["Stat"], stat["Period"], configured["Threshold"]) == ("Maximum", 300, 300_000)
    assert (configured["EvaluationPeriods"], configured["DatapointsToAlarm"]) == (3, 3)
    assert configured["TreatMissingData"] == "notBreaching"
    # ...and the shipped configuration has none, but draws the delay on its dashboard
    assert "DeliveryDelay" not in alarms_by_name(all_synths["default"])
    dashboard = only(all_synths["default"].resources("AWS::CloudWatch::Dashboard"))
    assert "Delivery delay" in json.dumps(dashboard["Properties"]["DashboardBody"])


def test_stack_email_subscription_only_when_configured(all_synths: dict[str, Synth]) -> None:
    # GIVEN one variant with alarmEmail and others without
    # WHEN subscriptions are read
    with_email = all_synths["multi_topic"].resources("AWS::SNS::Subscription")
    without = all_synths["default"].resources("AWS::SNS::Subscription")
    # THEN only the configured one subscribes, by e-mail
    assert [s["Properties"]["Protocol"] for s in with_email.values()] == ["email"]
    assert [s["Properties"]["Endpoint"] for s in with_email.values()] == ["oncall@example.com"]
    assert without == {}
