"""The synthesized template made deployable by moto's CloudFormation, changing no more than it
must; each change is listed for the report.

- moto refuses Kafka event source mappings (it creates mappings for SQS, Kinesis and DynamoDB
  sources only): each is taken out and the ESM emulator stands in for it, under a UUID given
  here. Wherever the template refers to a mapping (the alarms, the dashboard), that UUID is put.
- moto creates no CloudWatch alarms (it has no model for AWS::CloudWatch::Alarm) and then can't
  resolve the dashboard's Fn::GetAtt of each alarm's ARN: those become the ARN itself, made
  from the alarm's name as CloudFormation would. The alarms stay in the template: the rehearsal
  creates them with PutMetricAlarm after the stack.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from msk_kinesis_sink.doctor.model import ALARM_TYPE, ESM_TYPE

KAFKA_SOURCE_KEYS: Final = ("AmazonManagedKafkaEventSourceConfig", "SelfManagedEventSource")


@dataclass(frozen=True, slots=True)
class StandIn:
    """A Kafka mapping the template declares, which the ESM emulator stands in for."""

    logical_id: str
    uuid: str
    properties: Mapping[str, Any]  # as the template has them (unresolved)

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(str(topic) for topic in self.properties.get("Topics", ()))


@dataclass(frozen=True, slots=True)
class PreparedTemplate:
    template: dict[str, Any]
    stand_ins: tuple[StandIn, ...]
    alarm_arns: int  # Fn::GetAtt <alarm>.Arn replaced by the ARN itself


def is_kafka_mapping(resource: Mapping[str, Any]) -> bool:
    properties = resource.get("Properties") or {}
    return resource.get("Type") == ESM_TYPE and (
        any(key in properties for key in KAFKA_SOURCE_KEYS)
        or str(properties.get("EventSourceArn", "")).startswith("arn:aws:kafka:")
    )


def prepare_template(
    template: Mapping[str, Any], new_uuid: Callable[[], str] = lambda: str(uuid.uuid4())
) -> PreparedTemplate:
    resources: dict[str, Any] = dict(template.get("Resources") or {})
    stand_ins = tuple(
        StandIn(logical_id, new_uuid(), resource.get("Properties") or {})
        for logical_id, resource in resources.items()
        if is_kafka_mapping(resource)
    )
    for stand_in in stand_ins:
        del resources[stand_in.logical_id]
    alarm_names = {
        logical_id: str(resource["Properties"]["AlarmName"])
        for logical_id, resource in resources.items()
        if resource.get("Type") == ALARM_TYPE
        and isinstance((resource.get("Properties") or {}).get("AlarmName"), str)
    }
    uuids = {stand_in.logical_id: stand_in.uuid for stand_in in stand_ins}
    replaced = [0]

    def rewrite(value: Any) -> Any:
        if isinstance(value, list):
            return [rewrite(item) for item in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Ref"} and value["Ref"] in uuids:
            return uuids[value["Ref"]]
        target = value.get("Fn::GetAtt") if len(value) == 1 else None
        if isinstance(target, list) and target[0] in alarm_names and target[1] == "Arn":
            replaced[0] += 1
            return {
                "Fn::Sub": "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}"
                f":alarm:{alarm_names[target[0]]}"
            }
        return {key: rewrite(item) for key, item in value.items()}

    prepared = {key: value for key, value in template.items() if key != "Resources"}
    prepared["Resources"] = rewrite(resources)
    return PreparedTemplate(prepared, stand_ins, replaced[0])
