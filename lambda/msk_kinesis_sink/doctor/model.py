"""What the doctor reads of a deployment, as values, and the seam it reads them through."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

ESM_TYPE = "AWS::Lambda::EventSourceMapping"
FUNCTION_TYPE = "AWS::Lambda::Function"
STREAM_TYPE = "AWS::Kinesis::Stream"
ALARM_TYPE = "AWS::CloudWatch::Alarm"


@dataclass(frozen=True, slots=True)
class StackResource:
    """One resource the stack lists: its logical id, type and physical id (its name or id)."""

    logical_id: str
    resource_type: str
    physical_id: str


@dataclass(frozen=True, slots=True)
class StackView:
    """A stack as CloudFormation describes it, with the template it was deployed from."""

    name: str
    stack_id: str  # arn:<partition>:cloudformation:<region>:<account>:stack/<name>/<id>
    status: str
    outputs: Mapping[str, str]
    resources: tuple[StackResource, ...]
    template: Mapping[str, Any]

    def physical_ids(self, resource_type: str) -> list[str]:
        return [r.physical_id for r in self.resources if r.resource_type == resource_type]

    def declared(self, resource_type: str) -> dict[str, Mapping[str, Any]]:
        """The template's resources of one type, by logical id."""
        resources: Mapping[str, Mapping[str, Any]] = self.template.get("Resources") or {}
        return {
            logical_id: resource
            for logical_id, resource in resources.items()
            if resource.get("Type") == resource_type
        }


@dataclass(frozen=True, slots=True)
class MappingState:
    """An event source mapping as Lambda reports it (GetEventSourceMapping)."""

    uuid: str
    topics: tuple[str, ...]
    state: str  # Creating, Enabling, Enabled, Disabling, Disabled, Updating, Deleting
    state_transition_reason: str
    last_processing_result: str


@dataclass(frozen=True, slots=True)
class StreamSummary:
    """A stream as DescribeStreamSummary reports it; None where the answer leaves a field out."""

    name: str
    arn: str
    status: str
    mode: str | None
    record_distribution: str | None
    max_record_kib: int | None
    encryption: str
    key_id: str | None


@dataclass(frozen=True, slots=True)
class AlarmState:
    """A CloudWatch alarm: its state, why, what it says (with its runbook link) and threshold."""

    name: str
    state: str  # OK, ALARM, INSUFFICIENT_DATA
    reason: str
    description: str
    threshold: float | None


@dataclass(frozen=True, slots=True)
class RecentObjects:
    """Objects of a bucket written since a moment, by the first part of their key."""

    by_prefix: Mapping[str, int]
    listed: int  # objects looked at
    complete: bool  # False: the listing stopped at its bound, so the counts are lower bounds

    @property
    def count(self) -> int:
        return sum(self.by_prefix.values())


class Deployment(Protocol):
    """What the doctor reads (aws_access in AWS; fakes and the rehearsal's stand-ins in tests).

    A missing function, stream or bucket reads as None, a missing mapping or alarm is left out:
    the checks report them. Anything else that stops a read raises DoctorError.
    """

    def stack(self, name: str) -> StackView: ...

    def function_environment(self, name: str) -> dict[str, str] | None: ...

    def mappings(self, uuids: Sequence[str]) -> list[MappingState]: ...

    def stream(self, reference: str) -> StreamSummary | None: ...

    def alarms(self, names: Sequence[str]) -> list[AlarmState]: ...

    def recent_objects(self, bucket: str, since: datetime) -> RecentObjects | None: ...

    def latest_offset_lag(self, function_name: str, since: datetime) -> float | None: ...
