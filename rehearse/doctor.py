"""The doctor run against the rehearsal's deployment, as the doctor's own IAM user (exactly the
read-only policy of docs/runbook.md), with the emulator's mappings where the stack has none."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from msk_kinesis_sink.doctor.aws_access import AwsDeployment
from msk_kinesis_sink.doctor.cli import run
from msk_kinesis_sink.doctor.model import (
    ESM_TYPE,
    AlarmState,
    Deployment,
    MappingState,
    RecentObjects,
    StackResource,
    StackView,
    StreamSummary,
)
from rehearse.aws import Identity, session
from rehearse.moto_server import REGION
from rehearse.prepare import StandIn


def mapping_states(stand_ins: Sequence[StandIn], healthy: bool) -> dict[str, MappingState]:
    """How Lambda would report each mapping the emulator stood in for."""
    return {
        s.uuid: MappingState(
            uuid=s.uuid,
            topics=s.topics,
            state="Enabled",
            state_transition_reason="USER_INITIATED",
            last_processing_result="OK" if healthy else "PROBLEM: Function call failed",
        )
        for s in stand_ins
    }


@dataclass(frozen=True, slots=True)
class EmulatedMappings:
    """A deployment read from moto, whose Kafka mappings are the emulator's: they are listed
    among the stack's resources, and read as `states` says."""

    inner: Deployment
    stand_ins: tuple[StandIn, ...]
    states: Mapping[str, MappingState]

    def with_state(self, uuid: str, state: str, reason: str) -> EmulatedMappings:
        """The same, with one mapping in another state (as `aws lambda update-event-source-
        mapping --no-enabled` would leave it, say)."""
        states = dict(self.states)
        states[uuid] = replace(states[uuid], state=state, state_transition_reason=reason)
        return replace(self, states=states)

    def stack(self, name: str) -> StackView:
        view = self.inner.stack(name)
        added = tuple(StackResource(s.logical_id, ESM_TYPE, s.uuid) for s in self.stand_ins)
        return replace(view, resources=view.resources + added)

    def function_environment(self, name: str) -> dict[str, str] | None:
        return self.inner.function_environment(name)

    def mappings(self, uuids: Sequence[str]) -> list[MappingState]:
        ours = [self.states[u] for u in uuids if u in self.states]
        return ours + self.inner.mappings([u for u in uuids if u not in self.states])

    def stream(self, reference: str) -> StreamSummary | None:
        return self.inner.stream(reference)

    def alarms(self, names: Sequence[str]) -> list[AlarmState]:
        return self.inner.alarms(names)

    def recent_objects(self, bucket: str, since: datetime) -> RecentObjects | None:
        return self.inner.recent_objects(bucket, since)

    def latest_offset_lag(self, function_name: str, since: datetime) -> float | None:
        return self.inner.latest_offset_lag(function_name, since)


def moto_deployment(endpoint: str, identity: Identity) -> AwsDeployment:
    """The doctor's reader, at moto, signing as `identity`."""
    return AwsDeployment({"AWS_ENDPOINT_URL": endpoint}, REGION, aws_session=session(identity))


@dataclass(frozen=True, slots=True)
class DoctorRun:
    status: int
    lines: tuple[str, ...]  # the report, its summary last (or the one error line)


def examine(deployment: Deployment, stack: str) -> DoctorRun:
    out, err = io.StringIO(), io.StringIO()
    status = run(deployment, stack, out=out, err=err)
    lines = (out.getvalue() + err.getvalue()).splitlines()
    return DoctorRun(status, tuple(lines))
