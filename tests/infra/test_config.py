"""SinkConfig.from_context: defaults, parsing, and one clear error per bad key (no jsii needed)."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.config import (
    CONTEXT_KEYS,
    MAX_BATCH_SIZE,
    MAX_RECORD_SIZE_KIB,
    AuthMode,
    ConfigError,
    DestinationKind,
    MskCluster,
    SinkConfig,
    SourceKind,
    StartingPosition,
    StreamMode,
)
from infra.context import STREAM_ID
from msk_kinesis_sink.errors import ConfigurationError
from msk_kinesis_sink.settings import SETTING_KEYS, Settings
from tests.infra.conftest import (
    BROKERS,
    CLUSTER_ARN,
    KAFKA_SECRET_ARN,
    MTLS_SECRET_ARN,
    ROOT_CA_SECRET_ARN,
    SCRAM_SECRET_ARN,
    SECRET_KEY_ARN,
    SECURITY_GROUP,
    STREAM_ARN,
    SUBNETS,
    VPC_CONNECTION_ARN,
    shipped_context,
)

MINIMAL: dict[str, Any] = {"clusterArn": CLUSTER_ARN, "topics": ["orders"]}
# Self-managed Kafka over the internet with SCRAM-SHA-256 (clusterArn=None removes MINIMAL's).
SELF_MANAGED: dict[str, Any] = {
    "clusterArn": None,
    "bootstrapServers": BROKERS,
    "authentication": "sasl_scram_256",
    "authSecretArn": KAFKA_SECRET_ARN,
}
VPC: dict[str, Any] = {"subnetIds": SUBNETS, "securityGroupId": SECURITY_GROUP}
OTHER_REGION_SECRET = KAFKA_SECRET_ARN.replace("eu-west-1", "us-east-1")


def parse(**overrides: object) -> SinkConfig:
    context = {**MINIMAL, **overrides}
    return SinkConfig.from_context({k: v for k, v in context.items() if v is not None})


def test_config_shipped_cdk_json_is_valid_and_every_key_documented() -> None:
    # GIVEN the context shipped in cdk.json
    context = shipped_context()
    # WHEN it is parsed
    config = SinkConfig.from_context(context)
    # THEN it validates, and every non-flag key it sets is a documented key
    assert config.source.topics[0].topic == "example-topic"
    ours = {k for k in context if not k.startswith(("@", "//"))}
    assert ours <= set(CONTEXT_KEYS)


def test_config_defaults_are_production_defaults() -> None:
    # GIVEN only the two required keys
    # WHEN parsed
    config = parse()
    # THEN the defaults are the documented ones
    assert config.stack_name == "MskKinesisSink"
    assert (config.account, config.region) == (None, None)
    source = config.source
    assert source.auth is AuthMode.IAM
    assert source.starting_position is StartingPosition.TRIM_HORIZON
    assert (source.batch_size, source.batching_window_seconds) == (500, 1)
    assert (source.min_pollers, source.max_pollers, source.retry_attempts) == (1, 10, 10)
    assert source.max_record_age_seconds is None
    assert source.bisect_on_error is True
    assert source.kind is SourceKind.MSK
    assert source.on_failure is DestinationKind.S3
    assert (source.poller_group_name, source.low_latency) == (None, False)
    assert config.stream.existing_arn is None
    assert config.stream.mode is StreamMode.ON_DEMAND
    assert config.stream.shard_count is None
    assert config.function.architecture.value == "arm64"
    assert config.function.settings.record_format == "raw"
    assert config.function.settings.aggregation == "on"
    assert config.alarms.runbook_url is None


def test_config_cluster_arn_derives_topic_and_group_arns() -> None:
    # GIVEN a cluster ARN
    cluster = MskCluster.from_arn(CLUSTER_ARN)
    # WHEN topic and group ARNs are derived
    topic_arn, group_arn = cluster.topic_arn("orders"), cluster.group_arn("sink")
    # THEN they follow MSK's resource layout
    prefix = "arn:aws:kafka:eu-west-1:123456789012"
    uuid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-1"
    assert topic_arn == f"{prefix}:topic/orders/{uuid}/orders"
    assert group_arn == f"{prefix}:group/orders/{uuid}/sink"


def test_config_several_topics_get_one_group_each() -> None:
    # GIVEN three topics as a comma-separated -c value
    # WHEN parsed
    config = parse(topics="aa, bb,cc", consumerGroupId="sink")
    # THEN each mapping joins its own consumer group (Lambda requires unique group ids)
    assert [(t.topic, t.consumer_group_id) for t in config.source.topics] == [
        ("aa", "sink-aa"),
        ("bb", "sink-bb"),
        ("cc", "sink-cc"),
    ]


def test_config_one_topic_gets_the_same_group_as_with_several() -> None:
    # GIVEN one topic
    # WHEN parsed
    config = parse(consumerGroupId="sink")
    # THEN its group is named after the topic too, so a second topic later renames nothing
    assert config.source.topics[0].consumer_group_id == "sink-orders"


def test_config_explicit_group_keeps_an_existing_group() -> None:
    # GIVEN an existing group for one topic (a JSON string, as `-c consumerGroups=...` gives it)
    # WHEN parsed
    config = parse(topics="orders,payments", consumerGroups='{"orders": "legacy-orders"}')
    # THEN that topic joins the given group (its committed offsets are reused), the other
    # topic gets the prefixed one
    assert [(t.topic, t.consumer_group_id) for t in config.source.topics] == [
        ("orders", "legacy-orders"),
        ("payments", "msk-kinesis-sink-payments"),
    ]


_TOPIC_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=2, max_size=20)


@given(
    st.lists(
        _TOPIC_NAMES.filter(lambda t: not t.startswith(".")), min_size=1, max_size=6, unique=True
    ),
    st.integers(min_value=0, max_value=6),
)
def test_config_adding_or_removing_a_topic_renames_no_other_group(
    topics: list[str], split: int
) -> None:
    # GIVEN a deployment reading some of the topics, and a later one reading all of them
    before = parse(topics=topics[: max(1, split)], consumerGroupId="sink")
    after = parse(topics=topics, consumerGroupId="sink")
    # WHEN the groups of the topics both deployments read are compared
    groups_before = {t.topic: t.consumer_group_id for t in before.source.topics}
    groups_after = {t.topic: t.consumer_group_id for t in after.source.topics}
    # THEN every such topic keeps its group (a renamed group would replay the topic)
    assert {t: groups_after[t] for t in groups_before} == groups_before


def test_config_strings_from_command_line_are_parsed() -> None:
    # GIVEN values as `-c key=value` delivers them: strings
    # WHEN parsed
    config = parse(
        batchSize="1000",
        bisectOnError="false",
        kinesisTimeoutSeconds="2.5",
        startingPosition="at_timestamp",
        startingPositionTimestamp="1767225600",
        filters='[{"value": {"kind": ["a"]}}]',
    )
    # THEN they become typed values
    assert config.source.batch_size == 1000
    assert config.source.bisect_on_error is False
    assert config.function.settings.request_timeout_seconds == 2.5
    assert config.source.starting_position is StartingPosition.AT_TIMESTAMP
    assert config.source.starting_position_timestamp == 1_767_225_600
    assert config.source.filters == ({"value": {"kind": ["a"]}},)


def test_config_json_lists_from_command_line_are_lists() -> None:
    # GIVEN every list-valued key as `-c key='[...]'` delivers it: a JSON list as a string
    # WHEN parsed
    config = parse(
        clusterArn=None,
        topics='["orders", "payments"]',
        bootstrapServers=json.dumps(BROKERS),
        subnetIds=json.dumps(SUBNETS),
        securityGroupId=SECURITY_GROUP,
        authentication="none",
        schemaRegistryUri="https://registry.example.com",
        schemaRegistryValidate='["KEY", "VALUE"]',
        streams='{"p": {"topics": "[\\"payments\\"]"}}',
    )
    # THEN each is the list it spells, as the same list in cdk.json would be
    assert config.source.topic_names == ("orders", "payments")
    assert config.source.bootstrap_servers == tuple(BROKERS)
    assert config.source.subnet_ids == tuple(SUBNETS)
    registry = config.source.schema_registry
    assert registry is not None
    assert [attribute.value for attribute in registry.validate] == ["KEY", "VALUE"]
    assert config.routes == (("payments", "p"),)


@pytest.mark.parametrize(
    ("key", "text"),
    [("topics", '["orders", '), ("subnetIds", "[subnet-0123456789abcdef0]")],
)
def test_config_broken_json_list_is_refused_as_json(key: str, text: str) -> None:
    # GIVEN a list-valued key given as a JSON list that does not parse
    # WHEN parsed
    with pytest.raises(ConfigError) as raised:
        parse(**{key: text})
    # THEN the one line says so, rather than reading it as comma-separated names
    assert str(raised.value) == f"{key} is not valid JSON (a JSON list of " + (
        "strings)" if key == "topics" else "subnet ids)"
    )


def test_config_every_problem_of_a_sasl_scram_setup_in_one_run() -> None:
    # GIVEN an MSK SASL/SCRAM setup with three independent mistakes: a partial secret ARN, a
    # secret MSK would not associate (no AmazonMSK_ prefix), and no key for it
    secret = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:sink-login"
    # WHEN parsed
    with pytest.raises(ConfigError) as raised:
        parse(authentication="sasl_scram", authSecretArn=secret)
    # THEN all three are named, one line each
    assert raised.value.problems == (
        f"authSecretArn={secret!r} is a partial ARN: give the complete one, ending in the 6"
        " characters Secrets Manager appends to the name (...:secret:<name>-AbCdEf)",
        "authSecretKmsKeyArn is required when authentication=sasl_scram: MSK only uses SCRAM"
        " secrets encrypted with a customer managed KMS key, and the role needs kms:Decrypt on"
        " it",
        "authSecretArn: secret 'sink-login' must be named AmazonMSK_... for sasl_scram (MSK"
        " associates no other SCRAM secrets)",
    )
    assert str(raised.value) == "\n".join(raised.value.problems)


def test_config_bad_values_unknown_keys_and_rules_between_keys_in_one_run() -> None:
    # GIVEN bad values of several sections, a typo, function settings the function refuses, a
    # rule between two keys of a section with a bad value, and two bad `streams` entries
    # WHEN parsed
    bad = {"batchSize": 20_000, "minPollers": 5, "maxPollers": 2, "functionTimeoutSeconds": 900}
    bad |= {"streamRetentionHours": 1, "batchsiez": 10, "maxConcurrency": 0, "aggregation": "yes"}
    bad["streams"] = {"a": {"topics": "orders", "shardCount": 0}, "b": {"topics": []}}
    with pytest.raises(ConfigError) as raised:
        parse(**bad)
    problems = raised.value.problems
    # THEN each is named once, on a line of its own
    expected = [
        "batchSize=20000 is out of range",
        "minPollers=5 must be <= maxPollers=2",
        "functionTimeoutSeconds=900 is out of range",
        "streamRetentionHours=1 is out of range",
        "unknown context key 'batchsiez' (did you mean 'batchSize'?)",
        "maxConcurrency",
        "aggregation",
        "streams.a.shardCount",
        "streams.b.topics is required",
    ]
    for start in expected:
        assert sum(start in problem for problem in problems) == 1, (start, problems)
    assert len(problems) == len(expected)
    assert all("\n" not in problem for problem in problems)


def test_config_authentication_is_not_judged_without_one_cluster() -> None:
    # GIVEN both an MSK cluster and self-managed brokers, with a self-managed authentication
    # WHEN parsed
    with pytest.raises(ConfigError) as raised:
        parse(bootstrapServers=BROKERS, authentication="sasl_scram_256")
    # THEN the one problem is named, not what follows from it (an MSK cluster's authentications)
    [problem] = raised.value.problems
    assert problem.startswith("clusterArn and bootstrapServers exclude each other")


def test_config_problem_of_a_refused_keys_absence_is_not_named() -> None:
    # GIVEN an mTLS setup whose secret is not an ARN at all, and a bad batch size
    # WHEN parsed
    with pytest.raises(ConfigError) as raised:
        parse(authentication="mtls", authSecretArn="sink/client-cert", batchSize=0)
    # THEN the secret is named for what is wrong with it, not again as missing once set aside
    assert raised.value.problems == (
        "authSecretArn='sink/client-cert' is not a Secrets Manager secret ARN",
        "batchSize=0 is out of range (allowed: 1-10000)",
    )


def test_config_short_function_timeout_is_allowed_with_any_request_timeout() -> None:
    # GIVEN a 3 s function timeout and requests allowed 5 s each
    # WHEN parsed
    config = parse(functionTimeoutSeconds=3, kinesisTimeoutSeconds=5)
    # THEN it is accepted: the function bounds each request by the time the invocation has left
    assert (config.function.timeout_seconds, config.function.settings.request_timeout_seconds) == (
        3,
        5.0,
    )


def test_config_iso_timestamp_is_converted_to_unix_seconds() -> None:
    # GIVEN an ISO-8601 start time
    # WHEN parsed
    config = parse(
        startingPosition="AT_TIMESTAMP", startingPositionTimestamp="2026-01-01T00:00:00Z"
    )
    # THEN it is Unix seconds (UTC)
    assert config.source.starting_position_timestamp == 1_767_225_600


def test_config_mtls_secret_may_have_any_name() -> None:
    # GIVEN mTLS with a client-certificate secret outside the AmazonMSK_ naming
    # WHEN parsed
    config = parse(authentication="mtls", authSecretArn=MTLS_SECRET_ARN)
    # THEN it is accepted (only SCRAM secrets must carry the prefix)
    assert config.source.auth is AuthMode.MTLS
    assert config.source.auth_secret_arn == MTLS_SECRET_ARN


def test_config_self_managed_cluster_reads_brokers_vpc_and_secrets() -> None:
    # GIVEN self-managed brokers in a VPC, SCRAM-SHA-256 and a private root CA
    # WHEN parsed
    source = parse(
        **SELF_MANAGED,
        **VPC,
        authSecretKmsKeyArn=SECRET_KEY_ARN,
        rootCaSecretArn=ROOT_CA_SECRET_ARN,
    ).source
    # THEN it is a self-managed source in a VPC whose two secrets the mappings read
    assert source.kind is SourceKind.SELF_MANAGED
    assert (source.cluster, source.bootstrap_servers) == (None, tuple(BROKERS))
    assert (source.subnet_ids, source.security_group_id) == (tuple(SUBNETS), SECURITY_GROUP)
    assert source.in_vpc
    assert source.secrets == ((KAFKA_SECRET_ARN, SECRET_KEY_ARN), (ROOT_CA_SECRET_ARN, None))
    assert source.region == "eu-west-1"


def test_config_self_managed_scram_secret_needs_no_msk_prefix_or_key() -> None:
    # GIVEN SCRAM-SHA-512 on a self-managed cluster, with a secret of any name and default key
    # WHEN parsed
    source = parse(**{**SELF_MANAGED, "authentication": "sasl_scram"}).source
    # THEN it is accepted: the AmazonMSK_ name and the customer managed key are MSK's rules
    assert source.auth is AuthMode.SASL_SCRAM
    assert not source.in_vpc


def test_config_self_managed_group_may_contain_a_colon() -> None:
    # GIVEN a group id with ':' on a self-managed cluster
    # WHEN parsed
    source = parse(**SELF_MANAGED, consumerGroupId="team:sink").source
    # THEN it is accepted: the refusal is about MSK's lag metrics, which do not apply
    assert source.topics[0].consumer_group_id == "team:sink-orders"


def test_config_vpc_connection_reads_another_accounts_cluster() -> None:
    # GIVEN a multi-VPC connection of this account to a cluster of account 444455556666
    # WHEN parsed
    cluster = parse(clusterArn=VPC_CONNECTION_ARN).source.cluster
    # THEN the mapping reads the connection, and IAM resources name the owner's cluster by name
    assert cluster is not None
    assert cluster.arn == VPC_CONNECTION_ARN
    assert cluster.through_connection
    prefix = "arn:aws:kafka:eu-west-1:444455556666"
    assert cluster.cluster_arn == f"{prefix}:cluster/orders/*"
    assert cluster.topic_arn("t") == f"{prefix}:topic/orders/*/t"
    assert cluster.group_arn("g") == f"{prefix}:group/orders/*/g"


def test_config_vpc_connection_scram_secret_of_the_functions_account_is_its_own_copy() -> None:
    # GIVEN SASL/SCRAM through a multi-VPC connection, with a secret kept in this account
    # WHEN parsed
    source = parse(
        clusterArn=VPC_CONNECTION_ARN, authentication="sasl_scram", authSecretArn=KAFKA_SECRET_ARN
    ).source
    # THEN neither MSK's AmazonMSK_ name nor its key applies (AWS allows a synced copy)
    assert source.kind is SourceKind.MSK_VPC_CONNECTION
    assert source.auth_secret_kms_key_arn is None


def test_config_low_latency_profile_sets_window_and_pollers() -> None:
    # GIVEN the low-latency profile with 4 pollers (as `-c lowLatency=true` gives it)
    # WHEN parsed
    source = parse(lowLatency="true", maxPollers=4).source
    # THEN no batching window, and as many pollers at least as at most
    assert source.low_latency is True
    assert (source.batching_window_seconds, source.min_pollers, source.max_pollers) == (0, 4, 4)
    # ...and the same values given explicitly agree with the profile
    explicit = parse(lowLatency=True, batchingWindowSeconds=0, minPollers=4, maxPollers=4)
    assert explicit.source == source


@given(st.integers(min_value=1, max_value=2000))
def test_config_low_latency_keeps_pollers_fixed(pollers: int) -> None:
    # GIVEN the profile with any maxPollers
    # WHEN parsed
    try:
        source = parse(lowLatency=True, maxPollers=pollers).source
    except ConfigError as error:
        # THEN more pollers than MinimumPollers allows (200) are refused, naming the limit...
        assert pollers > 200
        assert str(error).startswith(f"maxPollers={pollers} is too many for lowLatency=true")
    else:
        # ...and otherwise min = max (Lambda never scales, so never rebalances), no batching
        assert source.min_pollers == source.max_pollers == pollers <= 200
        assert source.batching_window_seconds == 0


@given(st.integers(min_value=1, max_value=120), st.integers(min_value=1, max_value=2000))
def test_config_poller_group_accepted_iff_within_aws_limits(topics: int, pollers: int) -> None:
    # GIVEN a poller group for any number of topics and maxPollers
    names = [f"topic-{i}" for i in range(topics)]
    # WHEN parsed
    try:
        source = parse(topics=names, maxPollers=pollers, pollerGroupName="shared").source
    except ConfigError as error:
        # THEN it is refused exactly when AWS would: > 100 mappings (more topics than a stack
        # takes), or > 2,000 pollers summed
        if topics > 100:
            assert str(error).startswith("topics lists ")
        else:
            assert topics * pollers > 2000
            assert str(error).startswith("pollerGroupName: ")
    else:
        assert topics <= 100 and topics * pollers <= 2000
        assert source.poller_group_name == "shared"


def test_config_kafka_destination_names_its_topic() -> None:
    # GIVEN the failed records sent to another topic of the cluster
    # WHEN parsed
    source = parse(onFailureDestination="KAFKA", onFailureTopic="orders.dlq").source
    # THEN the destination is that topic
    assert (source.on_failure, source.on_failure_topic) == (DestinationKind.KAFKA, "orders.dlq")


# (overrides, key the message must name, a fragment of what is allowed)
BAD_VALUES: list[tuple[dict[str, object], str, str]] = [
    ({"clusterArn": None}, "clusterArn", "required"),
    (
        {"clusterArn": "arn:aws:kafka:eu-west-1:123:cluster/x"},
        "clusterArn",
        "cluster/<name>/<uuid>",
    ),
    ({"clusterArn": STREAM_ARN}, "clusterArn", "not an MSK cluster ARN"),
    ({"topics": []}, "topics", "required"),
    ({"topics": ["bad topic!"]}, "topics", "topic name"),
    ({"topics": ["x"]}, "topics", "2-249"),
    ({"topics": [".hidden"]}, "topics", "not starting with '.'"),
    ({"topics": ["aa", "aa"]}, "topics", "twice"),
    ({"topics": 7}, "topics", "list of strings"),
    ({"consumerGroupId": "no spaces"}, "consumerGroupId", "group id"),
    ({"consumerGroupId": "g" * 201}, "consumerGroupId", "200"),
    ({"consumerGroupId": "team:sink"}, "consumerGroupId", "contains ':'"),
    ({"consumerGroups": {"orders": "team:orders"}}, "consumerGroups", "no lag metrics"),
    ({"consumerGroups": {"refunds": "g"}}, "consumerGroups", "not in topics"),
    ({"consumerGroups": '["orders"]'}, "consumerGroups", "JSON object"),
    ({"consumerGroups": {"orders": "bad group"}}, "consumerGroups", "group id"),
    (
        {"topics": "orders,payments", "consumerGroups": {"orders": "msk-kinesis-sink-payments"}},
        "consumerGroupId",
        "two topics",
    ),
    ({"startingPosition": "EARLIEST"}, "startingPosition", "TRIM_HORIZON, LATEST, AT_TIMESTAMP"),
    ({"startingPosition": "AT_TIMESTAMP"}, "startingPositionTimestamp", "required"),
    ({"startingPositionTimestamp": "1767225600"}, "startingPositionTimestamp", "only allowed"),
    (
        {"startingPosition": "AT_TIMESTAMP", "startingPositionTimestamp": "yesterday"},
        "startingPositionTimestamp",
        "ISO-8601",
    ),
    (
        {"authentication": "plaintext"},
        "authentication",
        "iam, sasl_scram, sasl_scram_256, sasl_plain, mtls, none",
    ),
    (
        {"authentication": "sasl_scram_256", "authSecretArn": KAFKA_SECRET_ARN},
        "authentication",
        "not available with Amazon MSK (allowed: iam, sasl_scram, mtls)",
    ),
    (
        {"authentication": "sasl_plain", "authSecretArn": KAFKA_SECRET_ARN},
        "authentication",
        "not available with Amazon MSK",
    ),
    ({"authentication": "none"}, "authentication", "not available with Amazon MSK"),
    ({**SELF_MANAGED, "authentication": None}, "authentication", "required with bootstrapServers"),
    (
        {**SELF_MANAGED, "authentication": "iam", "authSecretArn": None},
        "authentication",
        "not available with self-managed Kafka",
    ),
    (
        {**SELF_MANAGED, "authentication": "none", "authSecretArn": None},
        "authentication",
        "only inside a VPC",
    ),
    (
        {**SELF_MANAGED, **VPC, "authentication": "none"},
        "authSecretArn",
        "only used with authentication=sasl_scram_256, sasl_scram, sasl_plain, mtls",
    ),
    ({**SELF_MANAGED, "authSecretArn": None}, "authSecretArn", "required"),
    (
        {**SELF_MANAGED, **VPC, "authentication": "none", "authSecretArn": None}
        | {"rootCaSecretArn": ROOT_CA_SECRET_ARN},
        "rootCaSecretArn",
        "not to authentication=none",
    ),
    ({"rootCaSecretArn": ROOT_CA_SECRET_ARN}, "rootCaSecretArn", "only applies with bootstrap"),
    (
        {**SELF_MANAGED, "rootCaSecretArn": ROOT_CA_SECRET_ARN[:-7]},
        "rootCaSecretArn",
        "partial ARN",
    ),
    (
        {**SELF_MANAGED, "rootCaSecretArn": OTHER_REGION_SECRET},
        "rootCaSecretArn",
        "Lambda reads secrets only in the function's region",
    ),
    (
        {**SELF_MANAGED, "rootCaSecretKmsKeyArn": SECRET_KEY_ARN},
        "rootCaSecretKmsKeyArn",
        "only applies with rootCaSecretArn",
    ),
    (
        {**SELF_MANAGED, "rootCaSecretArn": ROOT_CA_SECRET_ARN, "rootCaSecretKmsKeyArn": "k"},
        "rootCaSecretKmsKeyArn",
        "KMS key ARN",
    ),
    (
        {"authentication": "mtls", "authSecretArn": OTHER_REGION_SECRET},
        "authSecretArn",
        "is in 'us-east-1' but clusterArn is in 'eu-west-1'",
    ),
    ({**SELF_MANAGED, "region": "us-east-1"}, "region", "differs from the secrets' region"),
    (
        {**SELF_MANAGED, "clusterArn": CLUSTER_ARN},
        "bootstrapServers",
        "exclude each other",
    ),
    ({**SELF_MANAGED, "bootstrapServers": "kafka.example.com"}, "bootstrapServers", "host:port"),
    (
        {**SELF_MANAGED, "bootstrapServers": "kafka.example.com:70000"},
        "bootstrapServers",
        "port 1-65535",
    ),
    (
        {**SELF_MANAGED, "bootstrapServers": [f"b-{i}.example.com:9092" for i in range(11)]},
        "bootstrapServers",
        "allowed: 1-10",
    ),
    (
        {**SELF_MANAGED, "bootstrapServers": "a.example.com:9092,a.example.com:9092"},
        "bootstrapServers",
        "twice",
    ),
    ({**SELF_MANAGED, "subnetIds": "subnet-12"}, "subnetIds", "not a subnet id"),
    ({**SELF_MANAGED, "subnetIds": SUBNETS}, "subnetIds", "go together"),
    (
        {**SELF_MANAGED, "securityGroupId": SECURITY_GROUP},
        "securityGroupId",
        "go together",
    ),
    ({**SELF_MANAGED, **VPC, "securityGroupId": "sg-1"}, "securityGroupId", "security group id"),
    (VPC, "subnetIds", "only applies with bootstrapServers"),
    (
        {**SELF_MANAGED, **VPC, "subnetIds": [f"subnet-{i:017x}" for i in range(28)]},
        "subnetIds",
        "29 access configurations",
    ),
    ({"authentication": "sasl_scram"}, "authSecretArn", "required"),
    ({"authSecretArn": SCRAM_SECRET_ARN}, "authSecretArn", "only used with"),
    (
        {"authentication": "mtls", "authSecretArn": "arn:aws:secretsmanager:eu-west-1:1:secret:x"},
        "authSecretArn",
        "secret ARN",
    ),
    (
        {
            "authentication": "sasl_scram",
            "authSecretArn": MTLS_SECRET_ARN,
            "authSecretKmsKeyArn": SECRET_KEY_ARN,
        },
        "authSecretArn",
        "AmazonMSK_",
    ),
    (
        {"authentication": "sasl_scram", "authSecretArn": SCRAM_SECRET_ARN},
        "authSecretKmsKeyArn",
        "customer managed KMS key",
    ),
    (
        {
            "authentication": "mtls",
            "authSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:sink/cert",
        },
        "authSecretArn",
        "partial ARN",
    ),
    (
        {
            "authentication": "sasl_scram",
            "authSecretArn": SCRAM_SECRET_ARN,
            "authSecretKmsKeyArn": "k",
        },
        "authSecretKmsKeyArn",
        "KMS key ARN",
    ),
    ({"serviceName": "has space"}, "serviceName", "A-Z a-z 0-9"),
    ({"metricsNamespace": "bad namespace"}, "metricsNamespace", "CloudWatch namespace"),
    ({"batchSize": 0}, "batchSize", f"1-{MAX_BATCH_SIZE}"),
    ({"batchSize": 10_001}, "batchSize", "1-10000"),
    ({"batchSize": "many"}, "batchSize", "not an integer"),
    ({"batchSize": True}, "batchSize", "not an integer"),
    ({"batchingWindowSeconds": 301}, "batchingWindowSeconds", "0-300"),
    ({"minPollers": 0}, "minPollers", "1-200"),
    ({"maxPollers": 2001}, "maxPollers", "1-2000"),
    ({"minPollers": 5, "maxPollers": 4}, "minPollers", "<= maxPollers"),
    ({"retryAttempts": -2}, "retryAttempts", "0-10000"),
    ({"retryAttempts": -1}, "retryAttempts", "caps retries at 10"),
    ({"retryAttempts": "-1"}, "retryAttempts", "on-failure destination"),
    ({"failureMode": "wait"}, "failureMode", "divert, block"),
    ({"oversizeRecords": "split"}, "oversizeRecords", "dead_letter, claim_check"),
    (
        {"oversizeRecords": "claim_check"},
        "oversizeRecords",
        "needs recordFormat=envelope (recordFormat=raw)",
    ),
    ({"claimCheckBucket": "claims"}, "claimCheckBucket", "only applies with oversizeRecords"),
    (
        {"recordFormat": "envelope", "oversizeRecords": "claim_check", "claimCheckBucket": "A"},
        "claimCheckBucket",
        "not a valid S3 bucket name",
    ),
    ({"claimCheckKmsKeyArn": SECRET_KEY_ARN}, "claimCheckKmsKeyArn", "only applies with"),
    ({"failureMode": "block", "retryAttempts": 3}, "retryAttempts", "remove it or set -1"),
    (
        {"failureMode": "block", "maxRecordAgeSeconds": 3600},
        "maxRecordAgeSeconds",
        "contradicts failureMode=block",
    ),
    (
        {"failureMode": "block", "onFailureDestination": "sqs"},
        "onFailureDestination",
        "contradicts failureMode=block",
    ),
    ({"failureMode": "block", "onFailureTopic": "x"}, "onFailureTopic", "failureMode=divert"),
    (
        {"failureMode": "block", "schemaRegistryUri": "https://r.example.com"},
        "failureMode",
        "a schema registry needs an on-failure destination",
    ),
    ({"maxRecordAgeSeconds": 30}, "maxRecordAgeSeconds", "60-604800"),
    ({"maxRecordAgeSeconds": 604_801}, "maxRecordAgeSeconds", "604800"),
    ({"bisectOnError": "yes"}, "bisectOnError", "true or false"),
    ({"filters": "{not json"}, "filters", "not valid JSON"),
    ({"filters": [{}]}, "filters", "empty pattern"),
    ({"filters": [{"value": {"a": [1]}}] * 6}, "filters", "at most 5"),
    ({"pollerGroupName": "shared pollers"}, "pollerGroupName", "poller group name"),
    ({"pollerGroupName": "g" * 129}, "pollerGroupName", "1-128"),
    (
        {"pollerGroupName": "g", "topics": "aa,bb,cc", "maxPollers": 700},
        "pollerGroupName",
        "3 mappings x maxPollers=700 = 2100 pollers in one group (AWS allows at most 2,000",
    ),
    ({"lowLatency": "fast"}, "lowLatency", "true or false"),
    (
        {"lowLatency": True, "batchingWindowSeconds": 1},
        "batchingWindowSeconds",
        "contradicts lowLatency=true",
    ),
    (
        {"lowLatency": True, "minPollers": 1, "maxPollers": 4},
        "minPollers",
        "remove it or set 4",
    ),
    ({"lowLatency": True, "maxPollers": 201}, "maxPollers", "MinimumPollers allows 1-200"),
    ({"onFailureDestination": "lambda"}, "onFailureDestination", "s3, kafka, sqs, sns"),
    ({"onFailureDestination": "kafka"}, "onFailureTopic", "required"),
    ({"onFailureTopic": "failures"}, "onFailureTopic", "only applies with onFailureDestination"),
    (
        {"onFailureDestination": "kafka", "onFailureTopic": "orders"},
        "onFailureTopic",
        "Lambda refuses a destination topic that is a source topic",
    ),
    (
        {"onFailureDestination": "kafka", "onFailureTopic": ".failures"},
        "onFailureTopic",
        "topic name",
    ),
    (
        {"clusterArn": "arn:aws:kafka:eu-west-1:123456789012:vpc-connection/444455556666/c"},
        "clusterArn",
        "vpc-connection/<cluster-account>/<name>/<uuid>",
    ),
    (
        {
            "clusterArn": VPC_CONNECTION_ARN,
            "authentication": "sasl_scram",
            "authSecretArn": SCRAM_SECRET_ARN.replace("123456789012", "444455556666"),
        },
        "authSecretKmsKeyArn",
        "customer managed KMS key",
    ),
    ({"streamArn": "arn:aws:kinesis:eu-west-1:1:stream/x"}, "streamArn", "Kinesis stream ARN"),
    (
        {"streamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/x"},
        "streamArn",
        "own region",
    ),
    ({"streamArn": STREAM_ARN, "shardCount": 2}, "shardCount", "created stream"),
    ({"streamArn": STREAM_ARN, "streamMode": "provisioned"}, "streamMode", "created stream"),
    (
        {"streamKmsKeyArn": SECRET_KEY_ARN},
        "streamKmsKeyArn",
        "only applies with streamArn",
    ),
    ({"streamMode": "serverless"}, "streamMode", "on_demand, provisioned"),
    ({"shardCount": 2}, "shardCount", "streamMode=provisioned"),
    ({"streamMode": "provisioned", "shardCount": 0}, "shardCount", "1-100000"),
    ({"streamRetentionHours": 23}, "streamRetentionHours", "24-8760"),
    ({"streamMaxRecordSizeKiB": 1023}, "streamMaxRecordSizeKiB", f"1024-{MAX_RECORD_SIZE_KIB}"),
    ({"streamName": "bad name"}, "streamName", "stream name"),
    ({"streams": "[1]"}, "streams", "JSON object"),
    ({"streams": "{not json"}, "streams", "not valid JSON"),
    ({"streams": {"1st": {"topics": "orders"}}}, "streams", "not a stream id"),
    ({"streams": {"a": ["orders"]}}, "streams.a", "JSON object"),
    ({"streams": {"a": {}}}, "streams.a.topics", "required"),
    ({"streams": {"a": {"topics": []}}}, "streams.a.topics", "required"),
    ({"streams": {"a": {"topics": "orders", "shardcount": 2}}}, "streams.a", "'shardCount'"),
    (
        {"streams": {"a": {"topics": "orders", "shardCount": 2}}},
        "streams.a.shardCount",
        "streamMode=provisioned",
    ),
    (
        {"streams": {"a": {"topics": "orders", "streamRetentionHours": 9000}}},
        "streams.a.streamRetentionHours",
        "24-8760",
    ),
    (
        {"streams": {"a": {"topics": "orders", "streamKmsKeyArn": SECRET_KEY_ARN}}},
        "streams.a.streamKmsKeyArn",
        "only applies with streamArn",
    ),
    ({"streams": {"a": {"topics": "or ders"}}}, "streams.a.topics", "not a topic name or glob"),
    ({"streams": {"a": {"topics": "orders=x"}}}, "streams.a.topics", "not a topic name or glob"),
    ({"streams": {"a": {"topics": "orders,orders"}}}, "streams.a.topics", "twice"),
    (
        {"streams": {"a": {"topics": "orders"}, "b": {"topics": "orders"}}},
        "streams",
        "appears twice",
    ),
    ({"streams": {"a": {"topics": "ordrs"}}}, "streams.a.topics", "'ordrs' matches no topic"),
    (
        {
            "topics": "orders.eu",
            "streams": {"all": {"topics": "orders.*"}, "eu": {"topics": "orders.eu"}},
        },
        "streams.eu.topics",
        "'orders.eu' is never used: 'orders.eu' goes to streams.all by the earlier 'orders.*'",
    ),
    (
        {"topics": "orders,payments", "defaultStream": False, "streams": {"a": {"topics": "o*"}}},
        "topics",
        "'payments' matches no pattern in streams and defaultStream=false",
    ),
    ({"defaultStream": "false"}, "defaultStream", "needs streams"),
    ({"defaultStream": "maybe"}, "defaultStream", "true or false"),
    (
        {"defaultStream": False, "streams": {"a": {"topics": "o*"}}, "streamMode": "provisioned"},
        "streamMode",
        "defaultStream=false turns off",
    ),
    (
        {
            "streams": {
                "a": {
                    "topics": "orders",
                    "streamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/x",
                }
            }
        },
        "streams.a.streamArn",
        "own region",
    ),
    (
        {"streamArn": STREAM_ARN, "streams": {"a": {"topics": "orders", "streamArn": STREAM_ARN}}},
        "streams.a.streamArn",
        "is also streamArn",
    ),
    (
        {
            "topics": "orders,payments",
            "streamName": "mirror",
            "streams": {"a": {"topics": "payments", "streamName": "mirror"}},
        },
        "streams.a.streamName",
        "is also streamName",
    ),
    ({"functionMemoryMb": 64}, "functionMemoryMb", "128-10240"),
    (
        {"functionTimeoutSeconds": 900},
        "functionTimeoutSeconds",
        "=900 is out of range (allowed: 1-840: Kafka event source mappings take functions of at"
        " most 14 minutes)",
    ),
    ({"architecture": "arm"}, "architecture", "arm64, x86_64"),
    ({"reservedConcurrency": 0}, "reservedConcurrency", "1-10000"),
    ({"logRetentionDays": 31}, "logRetentionDays", "30, 60"),
    ({"logLevel": "TRACE"}, "logLevel", "DEBUG, INFO, WARNING, ERROR"),
    ({"recordFormat": "avro"}, "recordFormat", "raw, envelope"),
    ({"partitionKey": "random"}, "partitionKey", "key, partition"),
    ({"aggregation": "yes"}, "aggregation", "off, on"),
    ({"maxConcurrency": 65}, "maxConcurrency", "1-64"),
    ({"kinesisTimeoutSeconds": 0}, "kinesisTimeoutSeconds", "0.1-60"),
    ({"retryBaseMs": 500, "retryMaxMs": 100}, "retryMaxMs", ">= retryBaseMs"),
    ({"streamCheckSeconds": 0}, "streamCheckSeconds", "1-3600"),
    ({"deadLetterRetentionDays": 0}, "deadLetterRetentionDays", "1-3650"),
    ({"alarmEmail": "not-an-address"}, "alarmEmail", "e-mail"),
    ({"offsetLagAlarmThreshold": 0}, "offsetLagAlarmThreshold", "1-"),
    ({"durationAlarmPercent": 101}, "durationAlarmPercent", "10-100"),
    ({"runbookUrl": "wiki/runbook"}, "runbookUrl", "http(s) URL"),
    ({"runbookUrl": "https://example.com/runbook.md#x"}, "runbookUrl", "without #fragment"),
    ({"region": "us-east-1"}, "region", "cluster's region"),
    ({"region": "Europe"}, "region", "AWS region"),
    ({"account": "12345"}, "account", "12-digit"),
    ({"stackName": "1stack"}, "stackName", "stack name"),
    ({"batchsize": 100}, "batchsize", "did you mean 'batchSize'"),
    ({"schemaRegistryUri": "ftp://registry"}, "schemaRegistryUri", "neither a Glue registry ARN"),
    ({"schemaRegistryUri": "arn:aws:glue:eu-west-1:1:registry/x"}, "schemaRegistryUri", "Glue"),
    (
        {"schemaRegistryUri": "https://r.example.com", "schemaRegistryValidate": "BOTH"},
        "schemaRegistryValidate",
        "KEY, VALUE or both",
    ),
    (
        {"schemaRegistryUri": "https://r.example.com", "schemaRegistryRecordFormat": "AVRO"},
        "schemaRegistryRecordFormat",
        "JSON, SOURCE",
    ),
    ({"schemaRegistryAuth": "BASIC_AUTH"}, "schemaRegistryAuth", "needs schemaRegistryUri"),
    (
        {"schemaRegistryUri": "https://r.example.com", "schemaRegistryAuth": "BASIC_AUTH"},
        "schemaRegistryAuth",
        "its secret go together",
    ),
    (
        {"schemaRegistryAuthSecretArn": "secret"},
        "schemaRegistryAuthSecretArn",
        "secret",
    ),
    (
        {
            "schemaRegistryUri": "arn:aws:glue:eu-west-1:123456789012:registry/r",
            "schemaRegistryRootCaSecretArn": SCRAM_SECRET_ARN,
        },
        "schemaRegistryAuth",
        "a Glue registry takes no authentication secret",
    ),
    (
        {"schemaRegistrySecretKmsKeyArn": SECRET_KEY_ARN},
        "schemaRegistrySecretKmsKeyArn",
        "needs schemaRegistryUri",
    ),
    (
        {"schemaRegistryUri": "https://r.example.com", "schemaRegistrySecretKmsKeyArn": "key"},
        "schemaRegistrySecretKmsKeyArn",
        "KMS key ARN",
    ),
    (
        {
            "schemaRegistryUri": "arn:aws:glue:eu-west-1:123456789012:registry/r",
            "schemaRegistrySecretKmsKeyArn": SECRET_KEY_ARN,
        },
        "schemaRegistrySecretKmsKeyArn",
        "only applies with schemaRegistryAuthSecretArn or schemaRegistryRootCaSecretArn",
    ),
    (
        {"topics": [f"topic-{index}" for index in range(101)]},
        "topics",
        "lists 101 topics; one stack deploys at most 100",
    ),
    ({"deliveryDelayAlarmSeconds": 0}, "deliveryDelayAlarmSeconds", "1-604800"),
    ({"topicPartitions": 0}, "topicPartitions", "1-100000"),
    ({"targetMbPerSecond": 5}, "targetMbPerSecond", "averageRecordBytes go together"),
    (
        {"targetMbPerSecond": 5, "averageRecordBytes": 100},
        "targetMbPerSecond",
        "needs topicPartitions",
    ),
    ({"averageRecordBytes": 0}, "averageRecordBytes", "1-10485760"),
    ({"hotKeyShare": 1.5}, "hotKeyShare", "0-1"),
]


@pytest.mark.parametrize(
    ("overrides", "key", "allowed"),
    BAD_VALUES,
    ids=[f"{k}-{i}" for i, (_, k, _) in enumerate(BAD_VALUES)],
)
def test_config_bad_value_names_the_key_and_what_is_allowed(
    overrides: dict[str, object], key: str, allowed: str
) -> None:
    # GIVEN a context with one bad value
    context = {**MINIMAL, **overrides}
    # WHEN it is parsed
    with pytest.raises(ConfigError) as raised:
        SinkConfig.from_context({k: v for k, v in context.items() if v is not None})
    # THEN the message names the key and what would be accepted
    message = str(raised.value)
    assert key in message
    assert allowed in message


def test_config_every_documented_key_has_a_bad_value_test() -> None:
    # GIVEN the documented keys and the bad-value table
    tested = {key for _, key, _ in BAD_VALUES} | {
        k for overrides, _, _ in BAD_VALUES for k in overrides
    }
    # WHEN compared
    untested = set(CONTEXT_KEYS) - tested
    # THEN every key is exercised (topics/cluster included)
    assert untested == set()


@given(st.integers(min_value=-(10**6), max_value=10**6))
def test_config_batch_size_accepted_exactly_within_limits(size: int) -> None:
    # GIVEN any integer batch size
    # WHEN parsed
    try:
        config = parse(batchSize=size)
    except ConfigError as error:
        # THEN out-of-range sizes are refused with the range...
        assert not 1 <= size <= MAX_BATCH_SIZE
        assert re.search(r"batchSize=-?\d+ is out of range \(allowed: 1-10000\)", str(error))
    else:
        # ...and in-range ones kept as given
        assert 1 <= size <= MAX_BATCH_SIZE
        assert config.source.batch_size == size


@given(
    st.integers(min_value=1, max_value=200),
    st.integers(min_value=1, max_value=2000),
)
def test_config_pollers_accepted_iff_min_not_above_max(low: int, high: int) -> None:
    # GIVEN any poller pair within the individual limits
    # WHEN parsed
    try:
        config = parse(minPollers=low, maxPollers=high)
    except ConfigError:
        # THEN only min > max is refused
        assert low > high
    else:
        assert (config.source.min_pollers, config.source.max_pollers) == (low, high)


def test_config_sink_settings_are_the_function_settings() -> None:
    # GIVEN the function's own settings parser, and its defaults
    from infra import config
    from msk_kinesis_sink import limits

    defaults = Settings.from_env({"STREAM_NAME": "s"})
    # WHEN the stack reads a context that sets none of the sink's keys
    function = parse().function
    # THEN its settings are the function's: its enums and its defaults (no copies to keep in
    # step), with no stream yet (the stack adds the streams it builds)
    assert function.settings == replace(defaults, stream_name=None)
    assert config.MAX_RECORD_SIZE_KIB * 1024 == limits.MAX_RECORD_BYTES_CEILING
    assert config.MIN_RECORD_SIZE_KIB * 1024 == limits.DEFAULT_MAX_RECORD_BYTES


_SINK_KEYS = st.sampled_from(sorted(SETTING_KEYS))
_SINK_VALUES = st.one_of(
    st.integers(min_value=-100, max_value=100_000),
    st.floats(min_value=-1, max_value=100, allow_nan=False),
    st.sampled_from(["raw", "ENVELOPE", "key", "partition", "on", "Off", "yes", "2.5", "1e3", ""]),
    st.text(alphabet="0123456789.-eEabc ", max_size=6),
)


@given(_SINK_KEYS, _SINK_VALUES)
def test_config_sink_key_accepted_exactly_when_the_function_accepts_it(
    key: str, value: object
) -> None:
    # GIVEN any value for one of the keys the function reads as its own setting
    variable = SETTING_KEYS[key].name
    text = value.strip() if isinstance(value, str) else str(value)  # cdk.json text is stripped
    try:
        expected: object = Settings.from_env({"STREAM_NAME": "s", variable: text})
    except ConfigurationError as error:
        expected = error
    # WHEN the stack parses it
    try:
        config = parse(**{key: value})
    except ConfigError as error:
        # THEN it refuses exactly what the function refuses, in the function's words, by key
        assert isinstance(expected, ConfigurationError)
        words = str(expected)
        for other_key, other in SETTING_KEYS.items():
            words = words.replace(other.name, other_key)
        assert str(error) == words
    else:
        # ...and keeps what it accepts, as the function reads it
        assert isinstance(expected, Settings)
        assert config.function.settings == replace(expected, stream_name=None)


def test_config_function_refusal_names_the_context_key() -> None:
    # GIVEN a backoff cap below its base: a rule of the function's across two of its settings
    # WHEN the stack reads the keys that set them
    with pytest.raises(ConfigError) as raised:
        parse(retryBaseMs=500, retryMaxMs=100)
    # THEN the function's one-line refusal names the cdk.json keys, not its variables
    assert str(raised.value) == "retryMaxMs=100 must be >= retryBaseMs=500"


def test_config_environment_is_accepted_by_the_function_settings() -> None:
    # GIVEN a config with every sink setting away from its default, and a routed stream
    from infra.sink_function import _environment  # the env the function will receive
    from infra.stream import StreamTarget, StreamTargets
    from msk_kinesis_sink.settings import Settings

    config = parse(
        recordFormat="envelope",
        partitionKey="partition",
        aggregation="on",
        maxConcurrency=16,
        kinesisTimeoutSeconds=2.5,
        retryBaseMs=20,
        retryMaxMs=900,
        streamMaxRecordSizeKiB=2048,
    )

    class _Stream:
        stream_name = "existing-stream"
        stream_arn = STREAM_ARN

    class _RoutedStream:
        stream_name = "payments"
        stream_arn = STREAM_ARN.replace("existing-stream", "payments")

    class _Bucket:
        bucket_name = "dead-letters-bucket"

    streams = StreamTargets(
        (
            StreamTarget(None, _Stream(), None),  # type: ignore[arg-type]
            StreamTarget("payments", _RoutedStream(), None, ("pay*",)),  # type: ignore[arg-type]
        ),
        max_record_bytes=config.max_record_size_kib * 1024,
    )
    # WHEN the function parses the environment the stack would give it
    env = _environment(
        config.function,
        streams=streams,
        bucket=_Bucket(),  # type: ignore[arg-type]
    )
    settings = Settings.from_env(env)
    # THEN every value arrives as configured
    assert settings.stream_name == "existing-stream"
    assert settings.stream_for("payments.eu") == _RoutedStream.stream_arn
    assert settings.stream_for("orders") == STREAM_ARN
    assert settings.record_format.value == "envelope"
    assert settings.partition_key.value == "partition"
    assert settings.aggregation.value == "on"
    assert settings.max_record_bytes == 2048 * 1024
    assert settings.dead_letter_bucket == "dead-letters-bucket"
    assert settings.dead_letter_prefix == "records/"
    assert settings.max_concurrency == 16
    assert settings.request_timeout_seconds == 2.5
    assert (settings.retry_base_ms, settings.retry_max_ms) == (20, 900)


def test_config_partition_key_from_a_header_reaches_the_function_whole() -> None:
    # GIVEN partitionKey=header:<name>
    # WHEN the function's environment is built
    env = parse(partitionKey="header:tenant-id").function.settings.to_env()
    # THEN the function gets the header's name too, and a bare "header" is refused, named
    assert env["PARTITION_KEY"] == "header:tenant-id"
    with pytest.raises(ConfigError, match=r"^partitionKey='header' names no header"):
        parse(partitionKey="header")


# --- streams (docs/routing.md) -----------------------------------------------------------------

ROUTED: dict[str, Any] = {
    "topics": "orders,orders.eu,payments,audit",
    "streams": {
        "orders": {"topics": ["orders.eu", "orders*"], "streamMaxRecordSizeKiB": 4096},
        "payments": {"topics": "payments", "streamArn": STREAM_ARN, "streamMaxRecordSizeKiB": 2048},
    },
    "streamMaxRecordSizeKiB": 8192,
}


def test_config_streams_routes_in_the_order_written() -> None:
    # GIVEN two streams beside the default one, as cdk.json holds them and as `-c` gives them
    # WHEN parsed
    from_json = parse(**ROUTED)
    from_text = parse(**{**ROUTED, "streams": json.dumps(ROUTED["streams"])})
    # THEN the routes are the entries as written, each entry's topics in order, and the
    # function's one record limit is the smallest stream's
    expected = (("orders.eu", "orders"), ("orders*", "orders"), ("payments", "payments"))
    assert from_json.routes == from_text.routes == expected
    assert from_json.max_record_size_kib == 2048
    assert from_json.default_stream is True
    assert from_json.streams["payments"].existing_arn == STREAM_ARN
    assert from_json.streams["orders"].mode is StreamMode.ON_DEMAND


def test_config_streams_without_a_default_stream_use_only_their_own_sizes() -> None:
    # GIVEN every topic routed and no default stream
    # WHEN parsed
    config = parse(
        topics="orders,payments",
        defaultStream="false",
        streams={"a": {"topics": "orders"}, "b": {"topics": "pay*"}},
    )
    # THEN there is no default stream, and its (default) record size does not count
    assert config.default_stream is False
    assert config.max_record_size_kib == 1024
    assert [stream_id for _, stream_id in config.routes] == ["a", "b"]


def test_config_no_default_stream_with_the_shipped_cdk_json() -> None:
    # GIVEN the shipped cdk.json (it sets some default-stream keys to their defaults), every
    # topic routed, and defaultStream=false
    context = {
        **shipped_context(),
        "defaultStream": False,
        "streams": {"mirror": {"topics": ["example-*"]}},
    }
    # WHEN parsed
    config = SinkConfig.from_context(context)
    # THEN it is accepted (keys at their defaults say nothing), and a key that would shape the
    # absent default stream is refused, named
    assert config.default_stream is False
    with pytest.raises(ConfigError, match=r"^streamRetentionHours describes the default stream"):
        SinkConfig.from_context({**context, "streamRetentionHours": 48})


def test_config_streams_order_survives_the_cdk_cli() -> None:
    # GIVEN a streams map as cdk.json holds it; the CDK CLI (JavaScript) parses cdk.json and
    # hands the app its context as JSON.stringify output
    text = json.dumps({"zeta": {"topics": "a"}, "alpha-1": {"topics": "b"}, "Mid": {}, "10": {}})
    script = "process.stdout.write(JSON.stringify(JSON.parse(require('fs').readFileSync(0))))"
    # WHEN it takes that trip through node
    result = subprocess.run(
        ["node", "-e", script], input=text, capture_output=True, text=True, check=True
    )
    # THEN keys that are stream ids keep the order written; an integer-like key would move
    # to the front, which is why a stream id starts with a letter
    assert list(json.loads(result.stdout)) == ["10", "zeta", "alpha-1", "Mid"]
    assert [STREAM_ID.match(key) is not None for key in ("zeta", "alpha-1", "Mid", "10")] == [
        True,
        True,
        True,
        False,
    ]


_ROUTE_TOPICS = st.sampled_from(["orders", "orders.eu", "orders.us", "payments", "refunds"])
_ROUTE_PATTERNS = st.sampled_from(
    ["orders", "orders.eu", "orders.*", "orders*", "pay*", "payments", "r?funds", "*", "ordrs"]
)


@given(
    st.lists(_ROUTE_TOPICS, min_size=1, max_size=5, unique=True),
    st.lists(st.lists(_ROUTE_PATTERNS, min_size=1, max_size=3, unique=True), max_size=3),
    st.booleans(),
)
def test_config_routing_accepted_exactly_when_every_topic_and_every_route_is_used(
    topics: list[str], entries: list[list[str]], default_stream: bool
) -> None:
    # GIVEN any topics and routes, with or without a default stream
    streams = {f"s{i}": {"topics": patterns} for i, patterns in enumerate(entries)}
    routes = [(p, stream_id) for stream_id, entry in streams.items() for p in entry["topics"]]
    # ...and a model of first-match routing: each topic takes the first route matching it
    first = {
        topic: next((i for i, (p, _) in enumerate(routes) if fnmatch.fnmatchcase(topic, p)), None)
        for topic in topics
    }
    patterns_unique = len({p for p, _ in routes}) == len(routes)
    every_topic_routed = default_stream or None not in first.values()
    every_route_used = set(range(len(routes))) <= set(first.values())
    no_default_without_streams = default_stream or bool(streams)
    # WHEN the stack parses it
    try:
        config = parse(topics=topics, streams=streams, defaultStream=default_stream)
    except ConfigError:
        # THEN it refuses exactly the configurations the model finds a topic or route lost in
        accepted = False
    else:
        accepted = True
        assert config.routes == tuple(routes)
    assert accepted == (
        patterns_unique and every_topic_routed and every_route_used and no_default_without_streams
    )


def test_config_routing_doc_examples_route_as_the_doc_says() -> None:
    # GIVEN the two examples of docs/routing.md: the function's variables, the cdk.json map
    doc = (Path(__file__).resolve().parents[2] / "docs" / "routing.md").read_text()
    variables = re.search(r"```sh\n(STREAM_ROUTES=.*?)```", doc, re.S)
    context = re.search(r"```json\n(.*?)```", doc, re.S)
    assert variables is not None and context is not None
    env = dict(line.split("=", 1) for line in variables[1].strip().splitlines())
    cluster = "arn:aws:kafka:eu-west-1:111122223333:cluster/c/0f1e2d3c-4b5a-1"
    # WHEN the function and the stack read them
    settings = Settings.from_env(env)
    config = SinkConfig.from_context({**json.loads(context[1])["context"], "clusterArn": cluster})
    # THEN each topic goes where the text after each example says
    assert [settings.stream_for(t) for t in ("orders.eu", "orders.us", "payments", "audit")] == [
        "arn:aws:kinesis:eu-west-1:111122223333:stream/orders-eu",
        "orders",
        "payments",
        "everything-else",
    ]
    assert config.routes == (("orders.*", "orders"), ("payments", "payments"))
    assert config.default_stream is True
