"""Sources and destinations: self-managed Kafka, MSK through a multi-VPC connection, Kafka/SQS/SNS
on-failure destinations, poller groups and the low-latency profile, as synthesized."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.destinations import DestinationKind, destination_type
from tests.infra.conftest import (
    BROKERS,
    GLUE_REGISTRY_ARN,
    KAFKA_SECRET_ARN,
    MTLS_SECRET_ARN,
    REGISTRY_KEY_ARN,
    REGISTRY_SECRET_ARN,
    ROOT_CA_SECRET_ARN,
    SECRET_KEY_ARN,
    SECURITY_GROUP,
    SUBNETS,
    VPC_CONNECTION_ARN,
    Synth,
)
from tests.infra.test_stack import (
    ENI_ACTIONS,
    alarms_by_name,
    as_list,
    logical_id,
    only,
    statement,
    statements,
    watched,
)

pytestmark = pytest.mark.infra

VPC_ACCESS = [{"Type": "VPC_SUBNET", "URI": f"subnet:{subnet}"} for subnet in SUBNETS] + [
    {"Type": "VPC_SECURITY_GROUP", "URI": f"security_group:{SECURITY_GROUP}"}
]
ROOT_CA = {"Type": "SERVER_ROOT_CA_CERTIFICATE", "URI": ROOT_CA_SECRET_ARN}
# Each self-managed variant's access configurations: credentials, root CA, then the VPC.
SELF_MANAGED_ACCESS: dict[str, list[dict[str, str]]] = {
    "self_managed_scram256_kafka_dlq_poller_group": [
        {"Type": "SASL_SCRAM_256_AUTH", "URI": KAFKA_SECRET_ARN},
        ROOT_CA,
        *VPC_ACCESS,
    ],
    "self_managed_scram512_internet_sqs_low_latency": [
        {"Type": "SASL_SCRAM_512_AUTH", "URI": KAFKA_SECRET_ARN}
    ],
    "self_managed_plain_sns": [
        {"Type": "BASIC_AUTH", "URI": KAFKA_SECRET_ARN},
        ROOT_CA,
        *VPC_ACCESS,
    ],
    "self_managed_mtls": [
        {"Type": "CLIENT_CERTIFICATE_TLS_AUTH", "URI": MTLS_SECRET_ARN},
        ROOT_CA,
        *VPC_ACCESS,
    ],
    "self_managed_unauthenticated": VPC_ACCESS,
}


def mapping_props(synth: Synth) -> list[dict[str, Any]]:
    return [m["Properties"] for m in synth.resources("AWS::Lambda::EventSourceMapping").values()]


def actions(synth: Synth) -> set[str]:
    return {action for s in statements(synth) for action in as_list(s["Action"])}


def sids(synth: Synth) -> set[str]:
    return {s["Sid"] for s in statements(synth)}


def dashboard_body(synth: Synth) -> str:
    dashboard = only(synth.resources("AWS::CloudWatch::Dashboard"))["Properties"]
    return json.dumps(dashboard["DashboardBody"])


# --- mappings ---------------------------------------------------------------------------------


def test_sources_msk_mapping_keeps_the_logical_id_earlier_versions_deployed(
    default_synth: Synth,
) -> None:
    # GIVEN the shipped configuration
    # WHEN its mapping is synthesized
    # THEN its logical id is the one ManagedKafkaEventSource gave it: a new id would make
    # CloudFormation create a second mapping in the same consumer group
    assert list(default_synth.resources("AWS::Lambda::EventSourceMapping")) == [
        "SinkFunctionKafkaEventSourceMskKinesisSinkFunction7DEDEB83exampletopic1F4878E6"
    ]


@pytest.mark.parametrize("variant", sorted(SELF_MANAGED_ACCESS))
def test_sources_self_managed_mapping_reads_the_brokers_with_its_authentication(
    variant: str, variant_synths: dict[str, Synth]
) -> None:
    # GIVEN a self-managed variant (SCRAM-SHA-256, SCRAM-SHA-512, SASL/PLAIN, mTLS, none)
    synth = variant_synths[variant]
    brokers = list(synth.stack.config.source.bootstrap_servers)
    # WHEN its mappings are read
    for props in mapping_props(synth):
        # THEN each reads the brokers (no cluster ARN), joins its group, and authenticates,
        # trusts the root CA and places its pollers exactly as configured
        assert "EventSourceArn" not in props
        assert "AmazonManagedKafkaEventSourceConfig" not in props
        assert props["SelfManagedEventSource"] == {"Endpoints": {"KafkaBootstrapServers": brokers}}
        group = props["SelfManagedKafkaEventSourceConfig"]["ConsumerGroupId"]
        assert group.endswith(f"-{props['Topics'][0]}")
        assert props["SourceAccessConfigurations"] == SELF_MANAGED_ACCESS[variant]
        # ...with the sink's guarantees as on MSK
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert props["MetricsConfig"] == {"Metrics": ["EventCount", "ErrorCount", "KafkaMetrics"]}
        assert "DestinationConfig" in props


def test_sources_self_managed_role_reads_its_secrets_and_calls_no_kafka_api(
    variant_synths: dict[str, Synth],
) -> None:
    for variant in SELF_MANAGED_ACCESS:
        # GIVEN a self-managed variant
        synth = variant_synths[variant]
        source = synth.stack.config.source
        # WHEN its role is read
        granted = actions(synth)
        # THEN no MSK action at all, its secrets readable (and decryptable with their keys)
        assert not [a for a in granted if a.startswith(("kafka:", "kafka-cluster:"))], variant
        secrets = [secret for secret, _ in source.secrets]
        if secrets:
            read = statement(synth, "ReadClusterCredentials")
            assert read["Action"] == "secretsmanager:GetSecretValue"
            assert sorted(as_list(read["Resource"])) == sorted(secrets), variant
        keys = {key for _, key in source.secrets if key is not None}
        if keys:
            assert statement(synth, "DecryptClusterCredentials")["Resource"] == SECRET_KEY_ARN
        else:
            assert "DecryptClusterCredentials" not in sids(synth), variant
        # ...and ENI management only when the pollers run in the VPC's subnets
        assert (granted >= ENI_ACTIONS) == bool(source.subnet_ids), variant


def test_sources_vpc_connection_mapping_reads_the_connection(
    variant_synths: dict[str, Synth],
) -> None:
    # GIVEN MSK of account 444455556666 through this account's multi-VPC connection (IAM)
    synth = variant_synths["vpc_connection_iam_sns"]
    # WHEN its mapping and role are read
    props = only(synth.resources("AWS::Lambda::EventSourceMapping"))["Properties"]
    # THEN the mapping reads the connection ARN, as an MSK mapping needing no credentials
    assert props["EventSourceArn"] == VPC_CONNECTION_ARN
    assert props["AmazonManagedKafkaEventSourceConfig"] == {
        "ConsumerGroupId": "msk-kinesis-sink-orders"
    }
    assert "SourceAccessConfigurations" not in props
    # ...the role may describe the connection, and reaches the owner's cluster by name
    assert statement(synth, "DescribeVpcConnection")["Resource"] == VPC_CONNECTION_ARN
    owner = "arn:aws:kafka:eu-west-1:444455556666"
    assert statement(synth, "DescribeCluster")["Resource"] == f"{owner}:cluster/orders/*"
    assert statement(synth, "ConnectToCluster")["Resource"] == f"{owner}:cluster/orders/*"
    assert statement(synth, "ReadTopics")["Resource"] == f"{owner}:topic/orders/*/orders"
    assert statement(synth, "JoinConsumerGroups")["Resource"] == (
        f"{owner}:group/orders/*/msk-kinesis-sink-orders"
    )


def test_sources_poller_group_joins_every_mapping(variant_synths: dict[str, Synth]) -> None:
    for variant in (
        "self_managed_scram256_kafka_dlq_poller_group",
        "msk_kafka_dlq_low_latency_poller_group",
    ):
        # GIVEN pollerGroupName and two topics
        synth = variant_synths[variant]
        # WHEN the mappings are read
        groups = [p["ProvisionedPollerConfig"].get("PollerGroupName") for p in mapping_props(synth)]
        # THEN both share the named group's capacity
        assert groups == ["sink-pollers", "sink-pollers"], variant
    # ...and a mapping without one has none (dedicated capacity)
    shipped = variant_synths["multi_topic"]
    assert all(
        "PollerGroupName" not in p["ProvisionedPollerConfig"] for p in mapping_props(shipped)
    )


def test_sources_low_latency_invokes_without_waiting_on_fixed_pollers(
    variant_synths: dict[str, Synth],
) -> None:
    for variant, pollers in (
        ("self_managed_scram512_internet_sqs_low_latency", 4),
        ("msk_kafka_dlq_low_latency_poller_group", 3),
    ):
        # GIVEN lowLatency=true and maxPollers
        synth = variant_synths[variant]
        # WHEN the mappings are read
        for props in mapping_props(synth):
            # THEN no batching window, and minimum = maximum pollers (no scaling, no rebalance)
            assert props["MaximumBatchingWindowInSeconds"] == 0, variant
            assert props["ProvisionedPollerConfig"]["MinimumPollers"] == pollers, variant
            assert props["ProvisionedPollerConfig"]["MaximumPollers"] == pollers, variant


# --- on-failure destinations ------------------------------------------------------------------


def test_sources_every_destination_kind_has_a_class_of_its_own() -> None:
    # GIVEN every value onFailureDestination accepts
    # WHEN each is dispatched to its class
    classes = {kind: destination_type(kind) for kind in DestinationKind}
    # THEN no kind is left out or shares another's class
    assert len(set(classes.values())) == len(DestinationKind)


def test_sources_kafka_destination_carries_the_records_to_the_topic(
    variant_synths: dict[str, Synth],
) -> None:
    # GIVEN MSK (IAM) and self-managed Kafka (SCRAM) with a Kafka on-failure destination
    msk = variant_synths["msk_kafka_dlq_low_latency_poller_group"]
    self_managed = variant_synths["self_managed_scram256_kafka_dlq_poller_group"]
    # WHEN their mappings and roles are read
    # THEN the mappings send failed records to the topic (kafka://, as the CDK's KafkaDlq writes)
    for synth, topic in ((msk, "sink-failures"), (self_managed, "orders-dlq")):
        for props in mapping_props(synth):
            assert props["DestinationConfig"] == {"OnFailure": {"Destination": f"kafka://{topic}"}}
    # ...with IAM access control the role may write that topic only
    write = statement(msk, "WriteFailureTopic")
    assert sorted(write["Action"]) == ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]
    assert write["Resource"] == msk.stack.config.source.cluster.topic_arn("sink-failures")
    # ...with SCRAM the cluster's ACLs decide, so the role gets nothing for it
    assert "WriteFailureTopic" not in sids(self_managed)


@pytest.mark.parametrize(
    "variant",
    [
        "msk_kafka_dlq_low_latency_poller_group",
        "self_managed_scram512_internet_sqs_low_latency",
        "vpc_connection_iam_sns",
    ],
)
def test_sources_mappings_not_writing_s3_leave_the_bucket_to_the_function(
    variant: str, variant_synths: dict[str, Synth]
) -> None:
    # GIVEN a destination other than S3
    synth = variant_synths[variant]
    bucket = logical_id(synth, "AWS::S3::Bucket")
    # WHEN the dead-letter statements are read
    write = statement(synth, "WriteDeadLetters")
    # THEN the role writes only under the function's own prefix, needs no listing, and only
    # encrypts (the mappings' multipart uploads were the reason for kms:Decrypt)
    assert write["Resource"] == {"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/records/*"]]}
    assert "ListDeadLetterBucket" not in sids(synth)
    assert statement(synth, "EncryptDeadLetters")["Action"] == "kms:GenerateDataKey"


def test_sources_sqs_destination_gets_notices_in_an_encrypted_retained_queue(
    variant_synths: dict[str, Synth],
) -> None:
    # GIVEN onFailureDestination=sqs
    synth = variant_synths["self_managed_scram512_internet_sqs_low_latency"]
    queue_id = logical_id(synth, "AWS::SQS::Queue")
    queue = synth.template_json["Resources"][queue_id]
    key_id = queue["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
    # WHEN the queue, the mapping and the role are read
    props = only(synth.resources("AWS::Lambda::EventSourceMapping"))["Properties"]
    # THEN the mapping sends its notices to the queue: KMS-encrypted with a rotating key, kept
    # 14 days (SQS's longest) and when the stack is deleted, TLS only
    assert props["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": [queue_id, "Arn"]
    }
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 86_400
    assert queue["DeletionPolicy"] == "Retain"
    assert synth.template_json["Resources"][key_id]["Properties"]["EnableKeyRotation"] is True
    policy = only(synth.resources("AWS::SQS::QueuePolicy"))["Properties"]["PolicyDocument"]
    assert [s["Condition"] for s in policy["Statement"] if s["Effect"] == "Deny"] == [
        {"Bool": {"aws:SecureTransport": "false"}}
    ]
    # ...and the role may send there and use the key, nothing more
    send = statement(synth, "SendDiscardNotices")
    assert (send["Action"], send["Resource"]) == (
        "sqs:SendMessage",
        {"Fn::GetAtt": [queue_id, "Arn"]},
    )
    encrypt = statement(synth, "EncryptDiscardNotices")
    assert sorted(encrypt["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert encrypt["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]}
    # ...and the stack says where the notices are
    assert "DiscardNoticeQueueUrl" in synth.template_json["Outputs"]


def test_sources_sns_destination_publishes_notices_to_an_encrypted_topic(
    variant_synths: dict[str, Synth],
) -> None:
    for variant in ("self_managed_plain_sns", "vpc_connection_iam_sns"):
        # GIVEN onFailureDestination=sns
        synth = variant_synths[variant]
        topic_id = synth.stack.get_logical_id(synth.stack.on_failure.topic.node.default_child)
        topic = synth.template_json["Resources"][topic_id]["Properties"]
        # WHEN the mapping and the role are read
        props = mapping_props(synth)[0]
        # THEN notices go to a KMS-encrypted topic the role may publish to
        assert props["DestinationConfig"]["OnFailure"]["Destination"] == {"Ref": topic_id}
        key_id = topic["KmsMasterKeyId"]["Fn::GetAtt"][0]
        publish = statement(synth, "PublishDiscardNotices")
        assert (publish["Action"], publish["Resource"]) == ("sns:Publish", {"Ref": topic_id})
        assert statement(synth, "EncryptDiscardNotices")["Resource"] == {
            "Fn::GetAtt": [key_id, "Arn"]
        }
        assert "DiscardNoticeTopicArn" in synth.template_json["Outputs"]


# --- monitoring -------------------------------------------------------------------------------


def test_sources_notice_destinations_have_their_own_alarm(
    variant_synths: dict[str, Synth],
) -> None:
    # GIVEN the SQS and SNS destinations
    sqs = alarms_by_name(variant_synths["self_managed_scram512_internet_sqs_low_latency"])
    sns = alarms_by_name(variant_synths["self_managed_plain_sns"])
    # WHEN their destination alarms are read
    # THEN a notice left unread for a day raises one (its records are only in Kafka, until
    # the topic's retention), and so does a notice SNS could not deliver
    [waiting] = watched(sqs["DiscardNoticesWaiting"])
    assert (waiting["MetricName"], waiting["Namespace"]) == (
        "ApproximateAgeOfOldestMessage",
        "AWS/SQS",
    )
    assert sqs["DiscardNoticesWaiting"]["Threshold"] == 86_400
    [failed] = watched(sns["DiscardNoticesFailed"])
    assert (failed["MetricName"], failed["Namespace"]) == ("NumberOfNotificationsFailed", "AWS/SNS")


@pytest.mark.parametrize(
    ("variant", "label"),
    [
        ("default", "the dead-letter bucket"),
        ("msk_kafka_dlq_low_latency_poller_group", "topic sink-failures"),
        ("self_managed_scram512_internet_sqs_low_latency", "the discard-notice queue"),
        ("self_managed_plain_sns", "the discard-notice topic"),
    ],
)
def test_sources_discard_alarms_say_where_the_batches_went(
    variant: str, label: str, all_synths: dict[str, Synth]
) -> None:
    # GIVEN each destination kind
    alarms = alarms_by_name(all_synths[variant])
    # WHEN the discard and delivery alarms are read
    discarded = [a for name, a in alarms.items() if name.startswith("MappingDiscarded")]
    delivery = [
        a for name, a in alarms.items() if name.startswith("Mapping") and "Delivery" in name
    ]
    # THEN their descriptions name the destination the batches went to (or failed to reach)
    assert discarded and delivery
    for alarm in discarded + delivery + [alarms["DestinationDeliveryFailures"]]:
        assert label in alarm["AlarmDescription"], alarm["AlarmName"]


@pytest.mark.parametrize(
    ("variant", "short", "fate"),
    [
        ("default", "S3", "then sent to S3"),
        (
            "msk_kafka_dlq_low_latency_poller_group",
            "Kafka",
            "then sent to Kafka topic sink-failures",
        ),
        (
            "self_managed_scram512_internet_sqs_low_latency",
            "SQS",
            "then given up with a notice to SQS",
        ),
        ("self_managed_plain_sns", "SNS", "then given up with a notice to SNS"),
    ],
)
def test_sources_function_errors_alarm_names_the_configured_destination(
    variant: str, short: str, fate: str, all_synths: dict[str, Synth]
) -> None:
    # GIVEN each destination kind
    alarm = alarms_by_name(all_synths[variant])["FunctionErrors"]
    # WHEN the description of the alarm on failed invocations is read
    description = alarm["AlarmDescription"]
    # THEN it says where a batch goes once its retries are spent, and names no other destination
    assert f"(the batch is retried, {fate})" in description
    for other in {"S3", "Kafka", "SQS", "SNS"} - {short}:
        assert other not in description, other


def test_sources_dashboard_shows_msk_lag_only_where_msk_publishes_it(
    all_synths: dict[str, Synth],
) -> None:
    # GIVEN an MSK cluster of this account, a self-managed one, and one through a connection
    # WHEN their dashboards are rendered
    # THEN MSK's SumOffsetLag appears only for the cluster of this account (the others publish
    # none here), while Lambda's own OffsetLag and MaxOffsetLag appear everywhere
    assert "SumOffsetLag" in dashboard_body(all_synths["default"])
    for variant in ("self_managed_mtls", "vpc_connection_iam_sns"):
        body = dashboard_body(all_synths[variant])
        assert "SumOffsetLag" not in body, variant
        assert "OffsetLag" in body and "MaxOffsetLag" in body, variant
    # ...and a self-managed dashboard names its brokers
    assert BROKERS[0] in dashboard_body(all_synths["self_managed_mtls"])


# -- schema registry -----------------------------------------------------------------------


def test_sources_glue_schema_registry_on_every_msk_mapping(
    variant_synths: dict[str, Synth],
) -> None:
    # GIVEN a Glue registry validating keys and values
    synth = variant_synths["msk_glue_schema_registry"]
    mapping = only(synth.resources("AWS::Lambda::EventSourceMapping"))["Properties"]
    # THEN it sits beside the group id in the mapping's MSK config, and the role may read it
    config = mapping["AmazonManagedKafkaEventSourceConfig"]
    assert config["ConsumerGroupId"] == "msk-kinesis-sink-orders"
    assert config["SchemaRegistryConfig"] == {
        "SchemaRegistryURI": GLUE_REGISTRY_ARN,
        "EventRecordFormat": "JSON",
        "SchemaValidationConfigs": [{"Attribute": "KEY"}, {"Attribute": "VALUE"}],
    }
    actions = {a for s in statements(synth) for a in as_list(s["Action"])}
    assert {"glue:GetRegistry", "glue:GetSchemaVersion"} <= actions


def test_sources_confluent_schema_registry_with_its_secrets(
    variant_synths: dict[str, Synth],
) -> None:
    # GIVEN a Confluent registry with a login and a private CA, on self-managed Kafka
    synth = variant_synths["self_managed_confluent_schema_registry"]
    mapping = only(synth.resources("AWS::Lambda::EventSourceMapping"))["Properties"]
    # THEN the mapping names both secrets, and the role may read them
    registry = mapping["SelfManagedKafkaEventSourceConfig"]["SchemaRegistryConfig"]
    assert registry["EventRecordFormat"] == "SOURCE"
    assert registry["AccessConfigs"] == [
        {"Type": "BASIC_AUTH", "URI": REGISTRY_SECRET_ARN},
        {"Type": "SERVER_ROOT_CA_CERTIFICATE", "URI": ROOT_CA_SECRET_ARN},
    ]
    readable = {
        r
        for s in statements(synth)
        if "secretsmanager:GetSecretValue" in as_list(s["Action"])
        for r in as_list(s["Resource"])
    }
    assert REGISTRY_SECRET_ARN in readable


def test_sources_registry_secrets_under_a_customer_managed_key_can_be_decrypted(
    variant_synths: dict[str, Synth],
) -> None:
    # GIVEN a Confluent registry whose secrets a customer managed key encrypts
    synth = variant_synths["self_managed_confluent_schema_registry"]
    # WHEN the role's statements are read
    naming_it = [s for s in statements(synth) if REGISTRY_KEY_ARN in as_list(s["Resource"])]
    # THEN the role may decrypt with that key, and do nothing else with it (as
    # authSecretKmsKeyArn grants its own)
    assert [(as_list(s["Action"]), as_list(s["Resource"])) for s in naming_it] == [
        (["kms:Decrypt"], [REGISTRY_KEY_ARN])
    ]


@pytest.mark.parametrize(
    "variant", ["msk_glue_schema_registry", "self_managed_confluent_schema_registry"]
)
def test_sources_schema_registry_errors_alarm_and_dashboard_row(
    variant: str, variant_synths: dict[str, Synth]
) -> None:
    # GIVEN a mapping that validates records against a schema registry
    synth = variant_synths[variant]
    mapping = only(synth.resources("AWS::Lambda::EventSourceMapping"))
    mapping_id = next(iter(synth.resources("AWS::Lambda::EventSourceMapping")))
    # WHEN its alarms and dashboard are read
    alarm = alarms_by_name(synth)["MappingSchemaRegistryErrors-orders"]
    # THEN one alarm fires on the first record the registry refused (Lambda emits the count
    # only when it is not 0: no data is no refusal), on that mapping's own metric
    assert watched(alarm) == [
        {
            "MetricName": "SchemaRegistryErrorCount",
            "Namespace": "AWS/Lambda",
            "Dimensions": [{"Name": "EventSourceMappingUUID", "Value": {"Ref": mapping_id}}],
        }
    ]
    assert (alarm["Threshold"], alarm["EvaluationPeriods"], alarm["TreatMissingData"]) == (
        1,
        1,
        "notBreaching",
    )
    assert mapping["Properties"]["Topics"] == ["orders"]
    # ...and the dashboard has a row for it
    assert "SchemaRegistryErrorCount" in dashboard_body(synth)


def test_sources_no_schema_registry_no_registry_alarm_or_row(default_synth: Synth) -> None:
    # GIVEN the shipped configuration, without a registry
    # THEN nothing watches a metric its mappings never emit
    assert not [name for name in alarms_by_name(default_synth) if "SchemaRegistry" in name]
    assert "SchemaRegistryErrorCount" not in dashboard_body(default_synth)


def test_sources_no_schema_registry_leaves_the_mapping_as_before(default_synth: Synth) -> None:
    mapping = only(default_synth.resources("AWS::Lambda::EventSourceMapping"))["Properties"]
    assert "SchemaRegistryConfig" not in mapping["AmazonManagedKafkaEventSourceConfig"]
