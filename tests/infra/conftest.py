"""Shared, session-scoped synths: starting jsii costs seconds, so each stack is built once."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CDK_JSON = REPO / "cdk.json"

CLUSTER_ARN = (
    "arn:aws:kafka:eu-west-1:123456789012:cluster/orders/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-1"
)
SCRAM_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:AmazonMSK_sink-AbCdEf"
MTLS_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:sink/client-cert-AbCdEf"
SECRET_KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
STREAM_ARN = "arn:aws:kinesis:eu-west-1:123456789012:stream/existing-stream"
STREAM_KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/abcd1234-ab12-cd34-ef56-abcdef123456"
RUNBOOK_URL = "https://git.example.com/data/msk-kinesis-sink/blob/main/docs/runbook.md"
# A cluster of account 444455556666 reached through a multi-VPC connection of this account.
VPC_CONNECTION_ARN = (
    "arn:aws:kafka:eu-west-1:123456789012:vpc-connection/444455556666/orders/"
    "51ab98b4-0a61-46cc-b0a6-61f9a3d797d5-7"
)
BROKERS = ["b-1.kafka.example.com:9096", "b-2.kafka.example.com:9096", "b-3.kafka.example.com:9096"]
KAFKA_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kafka/sink-login-AbCdEf"
ROOT_CA_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kafka/root-ca-GhIjKl"
GLUE_REGISTRY_ARN = "arn:aws:glue:eu-west-1:123456789012:registry/orders-schemas"
REGISTRY_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:registry/login-MnOpQr"
REGISTRY_KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/5678efab-56ef-78ab-90cd-5678efab90cd"
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
CLAIM_CHECK_BUCKET = "orders-claim-checks"
SECURITY_GROUP = "sg-0123456789abcdef0"
SELF_MANAGED_VPC: Mapping[str, object] = {
    "bootstrapServers": BROKERS,
    "subnetIds": SUBNETS,
    "securityGroupId": SECURITY_GROUP,
}
# Long enough that "<stack>-MappingDeliveryErrors-<topic>" exceeds CloudWatch's 255 characters.
LONG_TOPIC = "events." + "x" * 230

# Variants beside the shipped cdk.json, each covering settings the default leaves off.
VARIANTS: Mapping[str, Mapping[str, object]] = {
    "multi_topic": {
        "clusterArn": CLUSTER_ARN,
        "topics": "orders,payments,refunds",
        "consumerGroupId": "sink",
        "startingPosition": "AT_TIMESTAMP",
        "startingPositionTimestamp": "2026-01-01T00:00:00Z",
        "maxRecordAgeSeconds": 3600,
        "filters": [{"value": {"type": ["order"]}}],
        "reservedConcurrency": 20,
        "alarmEmail": "oncall@example.com",
        "deliveryDelayAlarmSeconds": 300,
        "streamMode": "provisioned",
        "shardCount": 4,
        "streamMaxRecordSizeKiB": 4096,
    },
    "scram_imported_stream": {
        "clusterArn": CLUSTER_ARN,
        "topics": ["orders"],
        "authentication": "sasl_scram",
        "authSecretArn": SCRAM_SECRET_ARN,
        "authSecretKmsKeyArn": SECRET_KEY_ARN,
        "streamArn": STREAM_ARN,
        "streamKmsKeyArn": STREAM_KEY_ARN,
        "architecture": "x86_64",
    },
    "mtls": {
        "clusterArn": CLUSTER_ARN,
        "topics": ["orders"],
        "authentication": "mtls",
        "authSecretArn": MTLS_SECRET_ARN,
        "logLevel": "DEBUG",
    },
    "quiet_named_groups": {
        "clusterArn": CLUSTER_ARN,
        "topics": ["orders", LONG_TOPIC],
        "consumerGroupId": "team-sink",
        "consumerGroups": {"orders": "legacy-orders", LONG_TOPIC: "team-sink-events"},
        "logLevel": "ERROR",
        "retryAttempts": 0,
        "aggregation": "off",
        "runbookUrl": RUNBOOK_URL,
    },
    # Self-managed Kafka: one variant per authentication, and each destination kind.
    "self_managed_scram256_kafka_dlq_poller_group": {
        **SELF_MANAGED_VPC,
        "topics": ["orders", "payments"],
        "authentication": "sasl_scram_256",
        "authSecretArn": KAFKA_SECRET_ARN,
        "authSecretKmsKeyArn": SECRET_KEY_ARN,
        "rootCaSecretArn": ROOT_CA_SECRET_ARN,
        "onFailureDestination": "kafka",
        "onFailureTopic": "orders-dlq",
        "pollerGroupName": "sink-pollers",
    },
    "self_managed_scram512_internet_sqs_low_latency": {
        "bootstrapServers": "kafka.example.com:9096",
        "topics": ["orders"],
        "authentication": "sasl_scram",
        "authSecretArn": KAFKA_SECRET_ARN,
        "onFailureDestination": "sqs",
        "lowLatency": True,
        "maxPollers": 4,
    },
    "self_managed_plain_sns": {
        **SELF_MANAGED_VPC,
        "topics": ["orders"],
        "authentication": "sasl_plain",
        "authSecretArn": KAFKA_SECRET_ARN,
        "rootCaSecretArn": ROOT_CA_SECRET_ARN,
        "onFailureDestination": "sns",
    },
    "self_managed_mtls": {
        **SELF_MANAGED_VPC,
        "topics": ["orders"],
        "authentication": "mtls",
        "authSecretArn": MTLS_SECRET_ARN,
        "rootCaSecretArn": ROOT_CA_SECRET_ARN,
        "rootCaSecretKmsKeyArn": SECRET_KEY_ARN,
    },
    "self_managed_unauthenticated": {
        **SELF_MANAGED_VPC,
        "topics": ["orders"],
        "authentication": "none",
        "consumerGroupId": "team:sink",
    },
    # MSK of another account through a multi-VPC connection; MSK with a Kafka destination.
    "vpc_connection_iam_sns": {
        "clusterArn": VPC_CONNECTION_ARN,
        "topics": ["orders"],
        "onFailureDestination": "sns",
    },
    "msk_kafka_dlq_low_latency_poller_group": {
        "clusterArn": CLUSTER_ARN,
        "topics": ["orders", "payments"],
        "onFailureDestination": "kafka",
        "onFailureTopic": "sink-failures",
        "lowLatency": True,
        "maxPollers": 3,
        "pollerGroupName": "sink-pollers",
    },
    # Routing (docs/routing.md): no default stream, two created streams, a glob after a name.
    "two_created_streams": {
        "clusterArn": CLUSTER_ARN,
        "topics": "orders,orders.eu,payments",
        "defaultStream": False,
        "streams": {
            "orders": {
                "topics": ["orders.eu", "orders*"],
                "streamMode": "provisioned",
                "shardCount": 2,
                "streamRetentionHours": 48,
                "streamMaxRecordSizeKiB": 2048,
            },
            "payments": {"topics": "payments", "streamName": "payments-mirror"},
        },
    },
    # A Glue registry validating keys and values; a Confluent one with a login, on Kafka.
    "msk_glue_schema_registry": {
        "clusterArn": CLUSTER_ARN,
        "topics": ["orders"],
        "schemaRegistryUri": GLUE_REGISTRY_ARN,
        "schemaRegistryValidate": "KEY,VALUE",
    },
    "self_managed_confluent_schema_registry": {
        **SELF_MANAGED_VPC,
        "topics": ["orders"],
        "authentication": "sasl_scram_256",
        "authSecretArn": KAFKA_SECRET_ARN,
        "schemaRegistryUri": "https://registry.example.com",
        "schemaRegistryRecordFormat": "SOURCE",
        "schemaRegistryAuth": "BASIC_AUTH",
        "schemaRegistryAuthSecretArn": REGISTRY_SECRET_ARN,
        "schemaRegistryRootCaSecretArn": ROOT_CA_SECRET_ARN,
        "schemaRegistrySecretKmsKeyArn": REGISTRY_KEY_ARN,
    },
    # failureMode=block (no destination, unlimited retries and age) with claim checks in the
    # dead-letter bucket; claim checks in a bucket of their own, with its key.
    "block_claim_checks": {
        "clusterArn": CLUSTER_ARN,
        "topics": ["orders"],
        "failureMode": "block",
        "recordFormat": "envelope",
        "oversizeRecords": "claim_check",
    },
    "claim_checks_own_bucket": {
        "clusterArn": CLUSTER_ARN,
        "topics": ["orders"],
        "recordFormat": "envelope",
        "oversizeRecords": "claim_check",
        "claimCheckBucket": CLAIM_CHECK_BUCKET,
        "claimCheckKmsKeyArn": SECRET_KEY_ARN,
    },
    # The default stream created, one topic routed to an imported stream with its own key.
    "created_and_imported_streams": {
        "clusterArn": CLUSTER_ARN,
        "topics": ["orders", "payments"],
        "streamMaxRecordSizeKiB": 4096,
        "streams": {
            "payments": {
                "topics": ["payments"],
                "streamArn": STREAM_ARN,
                "streamKmsKeyArn": STREAM_KEY_ARN,
                "streamMaxRecordSizeKiB": 2048,
            }
        },
    },
}


def shipped_context() -> dict[str, Any]:
    """The context in the shipped cdk.json (feature flags and our example values)."""
    context: dict[str, Any] = json.loads(CDK_JSON.read_text(encoding="utf-8"))["context"]
    return context


def feature_flags() -> dict[str, Any]:
    return {k: v for k, v in shipped_context().items() if k.startswith("@")}


@dataclass(frozen=True)
class Synth:
    """One synthesized stack: the stack, its template (as assertions and as JSON)."""

    stack: Any
    template: Any  # aws_cdk.assertions.Template
    template_json: dict[str, Any]

    def resources(self, type_name: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.template_json["Resources"].items()
            if resource["Type"] == type_name
        }


def build(context: Mapping[str, object], *, bundle: bool = False) -> Synth:
    """Build one app with the stack from `context`, as app.py does (minus synth to disk)."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.config import SinkConfig
    from infra.stack import MskKinesisSinkStack

    app_context: dict[str, object] = dict(context)
    if not bundle:
        # Bundling is tested once, on the shipped configuration; variants skip it.
        app_context["aws:cdk:bundling-stacks"] = []
    app = cdk.App(context=app_context)
    config = SinkConfig.from_context(app.node.get_all_context())
    stack = MskKinesisSinkStack(app, config.stack_name, config=config)
    template = Template.from_stack(stack)
    return Synth(stack=stack, template=template, template_json=template.to_json())


@pytest.fixture(scope="session")
def default_synth() -> Synth:
    """The shipped cdk.json, bundled exactly as `make synth` does."""
    return build(shipped_context(), bundle=True)


@pytest.fixture(scope="session")
def variant_synths() -> dict[str, Synth]:
    return {name: build({**feature_flags(), **ctx}) for name, ctx in VARIANTS.items()}


@pytest.fixture(scope="session")
def all_synths(default_synth: Synth, variant_synths: dict[str, Synth]) -> dict[str, Synth]:
    return {"default": default_synth, **variant_synths}


@pytest.fixture(scope="session")
def builder() -> Iterator[Callable[..., Synth]]:
    yield build
