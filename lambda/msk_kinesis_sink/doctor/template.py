"""A template's values as CloudFormation resolved them for a deployed stack: Ref, Fn::GetAtt
(ARNs), Fn::Join, Fn::Sub and Fn::Select, from the stack's own resources and pseudo parameters.

What the doctor compares (the function's environment) and what the rehearsal creates in moto's
place (alarms) use no other intrinsic; anything else raises UnresolvedTemplateError.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from msk_kinesis_sink.doctor.model import StackResource
from msk_kinesis_sink.errors import UnresolvedTemplateError

# The ARN `Fn::GetAtt <id>.Arn` gives, per resource type, from the physical id.
_ARNS: Final = {
    "AWS::Kinesis::Stream": "arn:{p}:kinesis:{r}:{a}:stream/{id}",
    "AWS::S3::Bucket": "arn:{p}:s3:::{id}",
    "AWS::KMS::Key": "arn:{p}:kms:{r}:{a}:key/{id}",
    "AWS::Lambda::Function": "arn:{p}:lambda:{r}:{a}:function:{id}",
    "AWS::Logs::LogGroup": "arn:{p}:logs:{r}:{a}:log-group:{id}:*",
    "AWS::IAM::Role": "arn:{p}:iam::{a}:role/{id}",
    "AWS::CloudWatch::Alarm": "arn:{p}:cloudwatch:{r}:{a}:alarm:{id}",
    "AWS::SNS::Topic": "{id}",  # a topic's physical id is its ARN
}
_STACK_ARN = re.compile(
    r"arn:(?P<p>[a-z-]+):cloudformation:(?P<r>[a-z0-9-]+):(?P<a>[0-9]{12}):stack/(?P<name>[^/]+)/"
)
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")
# AWS::NoValue removes the property it stands for.
_NO_VALUE: Final = object()


@dataclass(frozen=True, slots=True)
class StackNames:
    """What Ref and Fn::GetAtt name in one deployed stack."""

    partition: str
    region: str
    account: str
    stack_name: str
    stack_id: str
    resources: Mapping[str, StackResource] = field(default_factory=dict)
    # Values given for logical ids the stack does not list (the rehearsal's stand-ins).
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        stack_id: str,
        resources: Iterable[StackResource],
        extra: Mapping[str, str] | None = None,
    ) -> StackNames:
        match = _STACK_ARN.match(stack_id)
        if match is None:
            raise UnresolvedTemplateError(f"{stack_id!r} is not a CloudFormation stack ARN")
        return cls(
            partition=match["p"],
            region=match["r"],
            account=match["a"],
            stack_name=match["name"],
            stack_id=stack_id,
            resources={r.logical_id: r for r in resources},
            extra=dict(extra or {}),
        )

    def ref(self, name: str) -> str:
        pseudo = {
            "AWS::Partition": self.partition,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": self.stack_id,
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.extra:
            return self.extra[name]
        resource = self.resources.get(name)
        if resource is None:
            raise UnresolvedTemplateError(f"Ref {name}: the stack lists no such resource")
        return resource.physical_id

    def get_att(self, name: str, attribute: str) -> str:
        resource = self.resources.get(name)
        pattern = None if resource is None else _ARNS.get(resource.resource_type)
        if resource is None or pattern is None or attribute != "Arn":
            raise UnresolvedTemplateError(f"Fn::GetAtt {name}.{attribute} can't be worked out")
        return pattern.format(
            p=self.partition, r=self.region, a=self.account, id=resource.physical_id
        )


def resolve(value: Any, names: StackNames) -> Any:
    """`value` with every intrinsic function replaced by what it stands for in the stack."""
    resolved = _resolve(value, names)
    return None if resolved is _NO_VALUE else resolved


def _resolve(value: Any, names: StackNames) -> Any:
    if isinstance(value, list):
        items = (_resolve(item, names) for item in value)
        return [item for item in items if item is not _NO_VALUE]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, argument),) = value.items()
        if key == "Ref" or key.startswith("Fn::"):
            return _intrinsic(key, argument, names)
    members = ((key, _resolve(item, names)) for key, item in value.items())
    return {key: item for key, item in members if item is not _NO_VALUE}


def _intrinsic(key: str, argument: Any, names: StackNames) -> Any:
    if key == "Ref":
        return _NO_VALUE if argument == "AWS::NoValue" else names.ref(str(argument))
    if key == "Fn::GetAtt":
        target, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
        return names.get_att(str(target), str(attribute))
    if key == "Fn::Join":
        separator, items = argument
        return str(separator).join(str(item) for item in _resolve(items, names))
    if key == "Fn::Select":
        index, items = argument
        return _resolve(items, names)[int(_resolve(index, names))]
    if key == "Fn::Sub":
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        given = {name: _resolve(item, names) for name, item in variables.items()}
        return _SUB_VARIABLE.sub(lambda m: _sub_variable(m.group(1), given, names), text)
    raise UnresolvedTemplateError(f"{key} can't be worked out offline")


def _sub_variable(name: str, given: Mapping[str, Any], names: StackNames) -> str:
    if name in given:
        return str(given[name])
    if "." in name:
        target, attribute = name.split(".", 1)
        return names.get_att(target, attribute)
    return names.ref(name)
