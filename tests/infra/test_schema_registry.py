"""infra.schema_registry: the setting's refusals, the CloudFormation it renders, cfn-lint."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template
from cfnlint.api import lint_all
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.context import ConfigError
from infra.schema_registry import (
    EventRecordFormat,
    RegistryAuth,
    RegistryKind,
    SchemaRegistry,
    ValidatedAttribute,
    check_mapping,
    parse_validate,
    role_statements,
    schema_registry_property,
)
from tests.infra.conftest import CLUSTER_ARN

pytestmark = pytest.mark.infra

GLUE_ARN = "arn:aws:glue:eu-west-1:123456789012:registry/orders-registry"
CONFLUENT_URL = "https://psrc-abc12.eu-west-1.aws.confluent.cloud"
AUTH_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:registry/basic-AbCdEf"
CA_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:registry/root-ca-AbCdEf"
KEY, VALUE = ValidatedAttribute.KEY, ValidatedAttribute.VALUE

VARIANTS: Mapping[str, SchemaRegistry] = {
    "glue_json_value": SchemaRegistry(GLUE_ARN),
    "glue_source_key_value": SchemaRegistry(
        GLUE_ARN, event_record_format=EventRecordFormat.SOURCE, validate=(KEY, VALUE)
    ),
    "confluent_basic_with_ca": SchemaRegistry(
        CONFLUENT_URL,
        validate=(VALUE, KEY),
        auth=RegistryAuth.BASIC_AUTH,
        auth_secret_arn=AUTH_SECRET,
        root_ca_secret_arn=CA_SECRET,
    ),
    "confluent_mtls": SchemaRegistry(
        "https://registry.internal.example.com:8081",
        auth=RegistryAuth.CLIENT_CERTIFICATE_TLS_AUTH,
        auth_secret_arn=AUTH_SECRET,
    ),
    "confluent_oauth": SchemaRegistry(
        CONFLUENT_URL, auth=RegistryAuth.OAUTHBEARER_AUTH, auth_secret_arn=AUTH_SECRET
    ),
    "confluent_ca_only": SchemaRegistry(CONFLUENT_URL, root_ca_secret_arn=CA_SECRET),
}


def _stack(registries: Mapping[str, SchemaRegistry]) -> dict[str, Any]:
    """A template with one MSK mapping per registry, as this stack's mapping is set up, and a
    role holding each registry's statements."""
    app = cdk.App()
    stack = cdk.Stack(
        app, "Registry", env=cdk.Environment(account="123456789012", region="eu-west-1")
    )
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    for name, registry in registries.items():
        lambda_.CfnEventSourceMapping(
            stack,
            f"Mapping{name.title().replace('_', '')}",
            function_name="sink",
            event_source_arn=CLUSTER_ARN,
            topics=["orders"],
            starting_position="TRIM_HORIZON",
            batch_size=500,
            provisioned_poller_config=lambda_.CfnEventSourceMapping.ProvisionedPollerConfigProperty(
                minimum_pollers=1, maximum_pollers=4
            ),
            destination_config=lambda_.CfnEventSourceMapping.DestinationConfigProperty(
                on_failure=lambda_.CfnEventSourceMapping.OnFailureProperty(
                    destination="arn:aws:s3:::sink-dead-letters"
                )
            ),
            amazon_managed_kafka_event_source_config=(
                lambda_.CfnEventSourceMapping.AmazonManagedKafkaEventSourceConfigProperty(
                    consumer_group_id=f"sink-{name.replace('_', '-')}",
                    schema_registry_config=schema_registry_property(registry),
                )
            ),
        )
        statements = role_statements(registry)
        if statements:
            iam.Policy(
                stack, f"Policy{name.title().replace('_', '')}", statements=statements, roles=[role]
            )
    template: dict[str, Any] = Template.from_stack(stack).to_json()
    return template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return _stack(VARIANTS)


def _registry_configs(template: dict[str, Any]) -> dict[str, Any]:
    return {
        resource["Properties"]["AmazonManagedKafkaEventSourceConfig"]["ConsumerGroupId"]: (
            resource["Properties"]["AmazonManagedKafkaEventSourceConfig"]["SchemaRegistryConfig"]
        )
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Lambda::EventSourceMapping"
    }


# -- what it renders ---------------------------------------------------------------------


def test_schema_registry_property_glue_json_value(template: dict[str, Any]) -> None:
    # GIVEN the default setting for a Glue registry
    # WHEN it is rendered into the mapping
    config = _registry_configs(template)["sink-glue-json-value"]

    # THEN it is the registry ARN, JSON records, the value validated, and no access config
    assert config == {
        "SchemaRegistryURI": GLUE_ARN,
        "EventRecordFormat": "JSON",
        "SchemaValidationConfigs": [{"Attribute": "VALUE"}],
    }


def test_schema_registry_property_confluent_auth_then_root_ca(template: dict[str, Any]) -> None:
    # GIVEN a Confluent registry with basic authentication and a private root CA
    # WHEN it is rendered into the mapping
    config = _registry_configs(template)["sink-confluent-basic-with-ca"]

    # THEN both secrets are access configs, and the attributes keep their order
    assert config == {
        "SchemaRegistryURI": CONFLUENT_URL,
        "EventRecordFormat": "JSON",
        "SchemaValidationConfigs": [{"Attribute": "VALUE"}, {"Attribute": "KEY"}],
        "AccessConfigs": [
            {"Type": "BASIC_AUTH", "URI": AUTH_SECRET},
            {"Type": "SERVER_ROOT_CA_CERTIFICATE", "URI": CA_SECRET},
        ],
    }


def test_schema_registry_cfn_lint_finds_nothing(template: dict[str, Any]) -> None:
    # GIVEN a template with a mapping for every kind of registry setting
    # WHEN cfn-lint checks it
    matches = list(lint_all(json.dumps(template)))

    # THEN it has no error and no warning
    assert [str(m) for m in matches if m.rule.id[0] in "EW"] == []


def test_role_statements_glue_registry_and_its_schemas() -> None:
    # GIVEN a Glue registry setting
    # WHEN the role's statements are made
    statements = [s.to_json() for s in role_statements(VARIANTS["glue_json_value"])]

    # THEN the registry can be read, and its schemas' versions (as aws-cdk-lib grants them)
    assert statements == [
        {"Action": "glue:GetRegistry", "Effect": "Allow", "Resource": GLUE_ARN},
        {
            "Action": "glue:GetSchemaVersion",
            "Effect": "Allow",
            "Resource": [
                GLUE_ARN,
                "arn:aws:glue:eu-west-1:123456789012:schema/orders-registry/*",
            ],
        },
    ]


def test_role_statements_confluent_reads_its_secrets_only() -> None:
    # GIVEN Confluent settings with two secrets, and with none
    # WHEN the role's statements are made
    both = [s.to_json() for s in role_statements(VARIANTS["confluent_basic_with_ca"])]
    none = role_statements(SchemaRegistry(CONFLUENT_URL))

    # THEN exactly those secrets can be read; without secrets nothing is granted
    assert both == [
        {
            "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            "Effect": "Allow",
            "Resource": [AUTH_SECRET, CA_SECRET],
        }
    ]
    assert none == []


def test_role_statements_confluent_secrets_under_their_key_can_be_decrypted() -> None:
    # GIVEN a Confluent registry whose login secret a customer managed key encrypts
    key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    registry = SchemaRegistry(
        CONFLUENT_URL,
        auth=RegistryAuth.BASIC_AUTH,
        auth_secret_arn=AUTH_SECRET,
        secrets_kms_key_arn=key,
    )
    # WHEN the role's statements are made
    statements = [s.to_json() for s in role_statements(registry)]
    # THEN the secret can be read, and decrypted with that key only
    assert statements[1:] == [{"Action": "kms:Decrypt", "Effect": "Allow", "Resource": key}]
    assert statements[0]["Resource"] == AUTH_SECRET


@settings(max_examples=40, deadline=None)
@given(
    glue=st.booleans(),
    record_format=st.sampled_from(EventRecordFormat),
    validate=st.sampled_from([(KEY,), (VALUE,), (KEY, VALUE), (VALUE, KEY)]),
    auth=st.sampled_from([None, *RegistryAuth]),
    root_ca=st.booleans(),
)
def test_schema_registry_property_any_valid_setting_renders_what_was_set(
    glue: bool,
    record_format: EventRecordFormat,
    validate: tuple[ValidatedAttribute, ...],
    auth: RegistryAuth | None,
    root_ca: bool,
) -> None:
    # GIVEN any setting the type accepts
    confluent_auth = None if glue else auth
    registry = SchemaRegistry(
        GLUE_ARN if glue else CONFLUENT_URL,
        event_record_format=record_format,
        validate=validate,
        auth=confluent_auth,
        auth_secret_arn=None if confluent_auth is None else AUTH_SECRET,
        root_ca_secret_arn=CA_SECRET if root_ca and not glue else None,
    )

    # WHEN it is rendered
    rendered = schema_registry_property(registry)

    # THEN it holds the URI, the format, the attributes in order, and one access config per
    # secret (none for Glue)
    assert rendered.schema_registry_uri == registry.uri
    assert rendered.event_record_format == record_format.value
    attributes = [config.attribute for config in rendered.schema_validation_configs]
    assert attributes == [attribute.value for attribute in validate]
    secrets = [s for s in (registry.auth_secret_arn, registry.root_ca_secret_arn) if s]
    assert [config.uri for config in rendered.access_configs or []] == secrets
    assert (registry.kind is RegistryKind.GLUE) == glue


# -- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: SchemaRegistry(""), "URI '' must be 1-10,000 characters"),
        (lambda: SchemaRegistry("https://r.example.com/?a=1"), "must be 1-10,000 characters"),
        (lambda: SchemaRegistry("https://" + "a" * 10_000), "must be 1-10,000 characters"),
        (lambda: SchemaRegistry("arn:aws:glue:eu-west-1:1:registry/x"), "not a Glue registry ARN"),
        (
            lambda: SchemaRegistry("arn:aws:kafka:eu-west-1:123456789012:cluster/x"),
            "not a Glue registry ARN",
        ),
        (lambda: SchemaRegistry("registry.example.com"), "neither a Glue registry ARN nor"),
        (lambda: SchemaRegistry(GLUE_ARN, validate=()), "validate one or both of KEY, VALUE"),
        (lambda: SchemaRegistry(GLUE_ARN, validate=(KEY, KEY)), "each once"),
        (
            lambda: SchemaRegistry(CONFLUENT_URL, auth=RegistryAuth.BASIC_AUTH),
            "an authentication type and its secret go together",
        ),
        (
            lambda: SchemaRegistry(CONFLUENT_URL, auth_secret_arn=AUTH_SECRET),
            "an authentication type and its secret go together",
        ),
        (
            lambda: SchemaRegistry(
                CONFLUENT_URL, auth=RegistryAuth.BASIC_AUTH, auth_secret_arn="my-secret"
            ),
            "'my-secret' is not a Secrets Manager secret ARN",
        ),
        (
            lambda: SchemaRegistry(CONFLUENT_URL, root_ca_secret_arn=GLUE_ARN),
            "is not a Secrets Manager secret ARN",
        ),
        (
            lambda: SchemaRegistry(
                GLUE_ARN, auth=RegistryAuth.BASIC_AUTH, auth_secret_arn=AUTH_SECRET
            ),
            "a Glue registry takes no authentication secret",
        ),
        (
            lambda: SchemaRegistry(GLUE_ARN, root_ca_secret_arn=CA_SECRET),
            "a Glue registry takes no authentication secret",
        ),
    ],
)
def test_schema_registry_refuses_what_aws_refuses_in_one_line(make: Any, problem: str) -> None:
    # GIVEN / WHEN a setting AWS would refuse is made
    with pytest.raises(ConfigError) as raised:
        make()

    # THEN one line names the problem
    message = str(raised.value)
    assert problem in message
    assert "\n" not in message


def test_check_mapping_needs_provisioned_mode() -> None:
    # GIVEN / WHEN a registry on a mapping in on-demand mode
    with pytest.raises(ConfigError, match="provisioned mode") as raised:
        check_mapping(VARIANTS["glue_json_value"], provisioned=False, on_failure_destination=True)

    # THEN the message cites the page that says so
    assert "Using schema registries with Kafka event sources in Lambda" in str(raised.value)


def test_check_mapping_needs_an_on_failure_destination() -> None:
    # GIVEN / WHEN a registry on a mapping without an on-failure destination
    # THEN it is refused: Lambda would discard the records that fail deserialization
    with pytest.raises(ConfigError, match="discards records that fail"):
        check_mapping(VARIANTS["glue_json_value"], provisioned=True, on_failure_destination=False)


def test_check_mapping_accepts_provisioned_with_destination() -> None:
    # GIVEN / WHEN a registry on a provisioned mapping with a destination
    # THEN nothing is refused
    check_mapping(VARIANTS["confluent_mtls"], provisioned=True, on_failure_destination=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("VALUE", (VALUE,)),
        ("key", (KEY,)),
        ("KEY, VALUE", (KEY, VALUE)),
        (["value", "key"], (VALUE, KEY)),
    ],
)
def test_parse_validate_reads_key_value_or_both(
    text: str | list[str], expected: tuple[ValidatedAttribute, ...]
) -> None:
    assert parse_validate(text) == expected


def test_parse_validate_refuses_other_names() -> None:
    with pytest.raises(ConfigError, match="must name KEY, VALUE or both"):
        parse_validate("VALUE,HEADERS")
