"""A Kafka mapping's schema registry: a typed setting, the refusals AWS documents, and the
`SchemaRegistryConfig` property and role statements it becomes (pure: no construct is built).

AWS::Lambda::EventSourceMapping takes it inside `AmazonManagedKafkaEventSourceConfig` (MSK) or
`SelfManagedKafkaEventSourceConfig`, beside `ConsumerGroupId`:

    SchemaRegistryConfig:
      SchemaRegistryURI: <Glue registry ARN | Confluent registry URL>   (1-10,000 characters)
      EventRecordFormat: JSON | SOURCE
      SchemaValidationConfigs: [{Attribute: KEY | VALUE}]              (1-2, unique)
      AccessConfigs: [{Type: <auth type>, URI: <Secrets Manager ARN>}]  (0-2; Confluent only)

What the function then receives, and what it writes, is in docs/schema-registry.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_

from infra.context import ConfigError

# SchemaRegistryURI: 1-10,000 characters of [a-zA-Z0-9-/*:_+=.@-] (Lambda API Reference,
# "KafkaSchemaRegistryConfig").
MAX_URI_CHARS: Final = 10_000
_URI_CHARACTERS = re.compile(r"[a-zA-Z0-9\-/*:_+=.@]+", re.ASCII)
# A Glue registry ARN, as aws-cdk-lib's GlueSchemaRegistry accepts it.
_GLUE_REGISTRY_ARN = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):glue:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12})"
    r":registry/(?P<name>[a-zA-Z0-9_$#.-]{1,255})",
    re.ASCII,
)
_CONFLUENT_URL = re.compile(r"https?://[a-zA-Z0-9\-/:_+=.@]+", re.ASCII)
_SECRET_ARN = re.compile(
    r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+", re.ASCII
)
# The registry setting's documentation, named in refusals.
_PAGE: Final = "'Using schema registries with Kafka event sources in Lambda'"


class EventRecordFormat(StrEnum):
    """What Lambda delivers for a validated attribute ("KafkaSchemaRegistryConfig")."""

    JSON = "JSON"  # deserialized to JSON text (Avro and Protobuf become JSON)
    SOURCE = "SOURCE"  # the source bytes, without the registry's schema id


class ValidatedAttribute(StrEnum):
    """Which part of each record the registry validates (and, with JSON, deserializes)."""

    KEY = "KEY"
    VALUE = "VALUE"


class RegistryAuth(StrEnum):
    """How Lambda authenticates to a Confluent registry ("KafkaSchemaRegistryAccessConfig");
    each names a Secrets Manager secret. A Glue registry takes none: the role's permissions."""

    BASIC_AUTH = "BASIC_AUTH"
    CLIENT_CERTIFICATE_TLS_AUTH = "CLIENT_CERTIFICATE_TLS_AUTH"
    OAUTHBEARER_AUTH = "OAUTHBEARER_AUTH"


# Names the secret with the registry's root CA certificate (TLS with a private CA).
SERVER_ROOT_CA_CERTIFICATE: Final = "SERVER_ROOT_CA_CERTIFICATE"


class RegistryKind(StrEnum):
    GLUE = "glue"
    CONFLUENT = "confluent"


@dataclass(frozen=True, slots=True)
class SchemaRegistry:
    """The schema registry setting of one mapping, checked in full when made.

    `uri`: a Glue registry ARN, or the URL of a Confluent (Cloud or self-managed) registry.
    `auth` + `auth_secret_arn` and `root_ca_secret_arn`: Confluent only.
    """

    uri: str
    event_record_format: EventRecordFormat = EventRecordFormat.JSON
    # Value only by default: with the key validated, the partition key is derived from what
    # the registry delivers for it (docs/schema-registry.md, "Partition keys").
    validate: tuple[ValidatedAttribute, ...] = (ValidatedAttribute.VALUE,)
    auth: RegistryAuth | None = None
    auth_secret_arn: str | None = None
    root_ca_secret_arn: str | None = None
    # The customer managed key that encrypts those secrets: the role may decrypt with it.
    secrets_kms_key_arn: str | None = None

    def __post_init__(self) -> None:
        _check_uri(self.uri)
        if not 1 <= len(self.validate) <= 2 or len(set(self.validate)) != len(self.validate):
            raise ConfigError(
                "schemaRegistryValidate: validate one or both of KEY, VALUE, each once"
                f" (got {[attribute.value for attribute in self.validate]})"
            )
        if (self.auth is None) != (self.auth_secret_arn is None):
            raise ConfigError(
                "schemaRegistryAuth: an authentication type and its secret go together"
                f" (got auth={self.auth}, secret={'set' if self.auth_secret_arn else 'unset'})"
            )
        for key, secret in (
            ("schemaRegistryAuthSecretArn", self.auth_secret_arn),
            ("schemaRegistryRootCaSecretArn", self.root_ca_secret_arn),
        ):
            if secret is not None and not _SECRET_ARN.fullmatch(secret):
                raise ConfigError(f"{key}: {secret!r} is not a Secrets Manager secret ARN")
        if self.secrets_kms_key_arn is not None and not _access_configs(self):
            raise ConfigError(
                "schemaRegistrySecretKmsKeyArn only applies with schemaRegistryAuthSecretArn or"
                " schemaRegistryRootCaSecretArn (the key that encrypts them)"
            )
        if self.kind is RegistryKind.GLUE and (self.auth or self.root_ca_secret_arn):
            # "KafkaSchemaRegistryAccessConfig": for a Glue registry, don't provide
            # authentication details; the execution role's permissions are used.
            raise ConfigError(
                "schemaRegistryAuth: a Glue registry takes no authentication secret"
                " (Lambda uses the function role's permissions)"
            )

    @property
    def kind(self) -> RegistryKind:
        return RegistryKind.GLUE if self.uri.startswith("arn:") else RegistryKind.CONFLUENT


def _check_uri(uri: str) -> None:
    if not 1 <= len(uri) <= MAX_URI_CHARS or not _URI_CHARACTERS.fullmatch(uri):
        raise ConfigError(
            f"schemaRegistryUri: URI {uri[:80]!r} must be 1-{MAX_URI_CHARS:,} characters of"
            " a-z A-Z 0-9 - / * : _ + = . @"
        )
    if uri.startswith("arn:"):
        if not _GLUE_REGISTRY_ARN.fullmatch(uri):
            raise ConfigError(
                f"schemaRegistryUri: {uri!r} is not a Glue registry ARN"
                " (arn:aws:glue:<region>:<account>:registry/<name>)"
            )
    elif not _CONFLUENT_URL.fullmatch(uri):
        raise ConfigError(
            f"schemaRegistryUri: {uri!r} is neither a Glue registry ARN nor a registry URL"
        )


def check_mapping(
    registry: SchemaRegistry, *, provisioned: bool, on_failure_destination: bool
) -> None:
    """Refuse the mapping settings AWS documents a schema registry can't work with."""
    if not provisioned:
        raise ConfigError(
            "a schema registry needs a mapping in provisioned mode (minPollers/maxPollers):"
            f" {_PAGE}"
        )
    if not on_failure_destination:
        # "How Lambda performs schema validation": a record that fails deserialization (or
        # whose schema is not found) goes to the on-failure destination; without one, Lambda
        # discards it.
        raise ConfigError(
            "a schema registry needs an on-failure destination (failureMode=divert): without"
            f" one Lambda discards records that fail validation or deserialization ({_PAGE})"
        )


def schema_registry_property(
    registry: SchemaRegistry,
) -> lambda_.CfnEventSourceMapping.SchemaRegistryConfigProperty:
    """The `SchemaRegistryConfig` for `AmazonManagedKafkaEventSourceConfig` (or the
    self-managed one) of a `CfnEventSourceMapping`."""
    access = [
        lambda_.CfnEventSourceMapping.SchemaRegistryAccessConfigProperty(type=kind, uri=secret)
        for kind, secret in _access_configs(registry)
    ]
    return lambda_.CfnEventSourceMapping.SchemaRegistryConfigProperty(
        schema_registry_uri=registry.uri,
        event_record_format=registry.event_record_format.value,
        schema_validation_configs=[
            lambda_.CfnEventSourceMapping.SchemaValidationConfigProperty(attribute=attribute.value)
            for attribute in registry.validate
        ],
        access_configs=access or None,
    )


def _access_configs(registry: SchemaRegistry) -> list[tuple[str, str]]:
    configs: list[tuple[str, str]] = []
    if registry.auth is not None and registry.auth_secret_arn is not None:
        configs.append((registry.auth.value, registry.auth_secret_arn))
    if registry.root_ca_secret_arn is not None:
        configs.append((SERVER_ROOT_CA_CERTIFICATE, registry.root_ca_secret_arn))
    return configs


def role_statements(registry: SchemaRegistry) -> list[iam.PolicyStatement]:
    """What the function's role must allow for the mapping to reach the registry (the grants
    aws-cdk-lib's GlueSchemaRegistry and ConfluentSchemaRegistry make)."""
    if registry.kind is RegistryKind.GLUE:
        match = _GLUE_REGISTRY_ARN.fullmatch(registry.uri)
        assert match is not None  # checked when the setting was made
        schemas = (
            f"arn:{match['partition']}:glue:{match['region']}:{match['account']}"
            f":schema/{match['name']}/*"
        )
        return [
            iam.PolicyStatement(actions=["glue:GetRegistry"], resources=[registry.uri]),
            iam.PolicyStatement(
                actions=["glue:GetSchemaVersion"], resources=[registry.uri, schemas]
            ),
        ]
    secrets = [secret for _, secret in _access_configs(registry)]
    if not secrets:
        return []
    statements = [
        iam.PolicyStatement(
            actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            resources=secrets,
        )
    ]
    if registry.secrets_kms_key_arn is not None:
        # A secret under a customer managed key reads only with kms:Decrypt on that key.
        statements.append(
            iam.PolicyStatement(actions=["kms:Decrypt"], resources=[registry.secrets_kms_key_arn])
        )
    return statements


def parse_validate(text: str | Sequence[str]) -> tuple[ValidatedAttribute, ...]:
    """`KEY`, `VALUE`, `KEY,VALUE` (or a list) as the validated attributes, in that order."""
    names = text.split(",") if isinstance(text, str) else list(text)
    try:
        return tuple(ValidatedAttribute(name.strip().upper()) for name in names if name.strip())
    except ValueError:
        raise ConfigError(
            f"schemaRegistryValidate: validate {text!r} must name KEY, VALUE or both"
        ) from None
