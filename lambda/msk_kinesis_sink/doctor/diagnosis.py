"""Find what a stack deployed (its function, mappings, streams, bucket and alarms, from its
resources, outputs and template) and check each, in the order an on-call engineer reads them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from msk_kinesis_sink.doctor.checks import (
    Check,
    Entry,
    Status,
    alarm_checks,
    alarm_runbook_link,
    dead_letter_check,
    environment_check,
    mapping_check,
    offset_lag_check,
    stack_check,
    stream_check,
)
from msk_kinesis_sink.doctor.model import (
    ALARM_TYPE,
    ESM_TYPE,
    FUNCTION_TYPE,
    STREAM_TYPE,
    Deployment,
    StackView,
)
from msk_kinesis_sink.doctor.template import StackNames, resolve
from msk_kinesis_sink.errors import ConfigurationError, UnresolvedTemplateError
from msk_kinesis_sink.runbook import RUNBOOK_PATH
from msk_kinesis_sink.settings import Settings

DEAD_LETTER_HOURS: Final = 24
OFFSET_LAG_MINUTES: Final = 15
# Outputs the stack writes (infra/stack.py).
FUNCTION_OUTPUT: Final = "FunctionName"
BUCKET_OUTPUT: Final = "DeadLetterBucketName"
# The alarm whose threshold the offset lag is compared with: `<stack>-OffsetLag`.
OFFSET_LAG_ALARM: Final = "OffsetLag"


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The checks, in report order, and where the runbook's links point."""

    checks: tuple[Check, ...]
    runbook: str = RUNBOOK_PATH

    def lines(self) -> list[str]:
        return [check.line(self.runbook) for check in self.checks]


@dataclass(frozen=True, slots=True)
class _Function:
    """The stack's function: its name and its environment, as deployed and as the stack set it."""

    name: str | None
    actual: Mapping[str, str] | None
    expected: dict[str, str] = field(default_factory=dict)
    unresolved: tuple[str, ...] = ()

    def value(self, variable: str) -> str | None:
        """The deployed value, else the stack's."""
        if self.actual is not None and variable in self.actual:
            return self.actual[variable]
        return self.expected.get(variable)


def diagnose(deployment: Deployment, stack_name: str, now: datetime) -> Diagnosis:
    """Every check of the stack named `stack_name`; raises DoctorError if it can't be read."""
    stack = deployment.stack(stack_name)
    names = StackNames.of(stack.stack_id, stack.resources)
    function = _function(deployment, stack, names)
    checks = [stack_check(stack.name, stack.status)]
    if function.name is None:
        missing = "the stack has no function (no FunctionName output, no function resource)"
        checks.append(Check(Status.FAIL, "function", missing, Entry.ENVIRONMENT))
    else:
        checks.append(
            environment_check(
                function.name, function.expected, function.unresolved, function.actual
            )
        )
    checks += _mapping_checks(deployment, stack)
    checks += _stream_checks(deployment, stack, names, function)
    alarms_declared = _alarm_names(stack)
    alarms = deployment.alarms(alarms_declared)
    checks += alarm_checks(alarms_declared, alarms)
    bucket = stack.outputs.get(BUCKET_OUTPUT) or function.value("DEAD_LETTER_BUCKET")
    if bucket:
        since = now - timedelta(hours=DEAD_LETTER_HOURS)
        recent = deployment.recent_objects(bucket, since)
        checks.append(dead_letter_check(bucket, recent, DEAD_LETTER_HOURS))
    if function.name is not None:
        lag_alarm = next((a for a in alarms if a.name == f"{stack.name}-{OFFSET_LAG_ALARM}"), None)
        since = now - timedelta(minutes=OFFSET_LAG_MINUTES)
        latest = deployment.latest_offset_lag(function.name, since)
        threshold = None if lag_alarm is None else lag_alarm.threshold
        checks.append(offset_lag_check(function.name, latest, threshold, OFFSET_LAG_MINUTES))
    links = (alarm_runbook_link(alarm.description) for alarm in alarms)
    runbook = next((link.partition("#")[0] for link in links if link), RUNBOOK_PATH)
    return Diagnosis(tuple(checks), runbook)


def _function(deployment: Deployment, stack: StackView, names: StackNames) -> _Function:
    """The function the stack outputs (or its one function resource), both environments."""
    name = stack.outputs.get(FUNCTION_OUTPUT) or next(iter(stack.physical_ids(FUNCTION_TYPE)), None)
    if name is None:
        return _Function(None, None)
    functions = stack.declared(FUNCTION_TYPE)
    listed = (r.logical_id for r in stack.resources if r.physical_id == name)
    logical = next(listed, None) or next(iter(functions), "")
    declared = functions.get(logical, {})
    variables: Mapping[str, Any] = (
        (declared.get("Properties") or {}).get("Environment", {}).get("Variables", {})
    )
    expected: dict[str, str] = {}
    unresolved: list[str] = []
    for variable, value in variables.items():
        try:
            expected[variable] = str(resolve(value, names))
        except UnresolvedTemplateError:
            expected[variable] = ""
            unresolved.append(variable)
    return _Function(name, deployment.function_environment(name), expected, tuple(unresolved))


def _mapping_checks(deployment: Deployment, stack: StackView) -> list[Check]:
    uuids = stack.physical_ids(ESM_TYPE)
    if not uuids:
        missing = "the stack has no event source mapping: nothing invokes the function"
        return [Check(Status.FAIL, "mappings", missing, Entry.MAPPING)]
    found = {state.uuid: state for state in deployment.mappings(uuids)}
    checks = []
    for uuid in uuids:
        state = found.get(uuid)
        topics = ", ".join(state.topics) if state is not None and state.topics else "(topic?)"
        checks.append(mapping_check(topics, uuid, state))
    return checks


def _stream_checks(
    deployment: Deployment, stack: StackView, names: StackNames, function: _Function
) -> list[Check]:
    """The streams the stack created, and those the function writes to (imported ones too)."""
    created = stack.physical_ids(STREAM_TYPE)
    encrypted = {
        names.ref(logical_id)
        for logical_id, resource in stack.declared(STREAM_TYPE).items()
        if (resource.get("Properties") or {}).get("StreamEncryption")
        and logical_id in names.resources
    }
    references = list(created)
    for target in _function_streams(function):
        name = target.rpartition("/")[2] if target.startswith("arn:") else target
        if name not in references:
            references.append(target)
    max_record = function.value("MAX_RECORD_BYTES")
    max_record_bytes = int(max_record) if max_record and max_record.isdigit() else None
    checks = []
    for reference in references:
        summary = deployment.stream(reference)
        name = summary.name if summary is not None else reference
        checks.append(
            stream_check(
                reference,
                summary,
                max_record_bytes=max_record_bytes,
                encrypted_by_stack=name in encrypted,
            )
        )
    return checks


def _function_streams(function: _Function) -> list[str]:
    """STREAM_NAME and STREAM_ROUTES' streams as the function reads them (none if it can't)."""
    env = function.actual if function.actual is not None else function.expected
    try:
        settings = Settings.from_env(env)
    except ConfigurationError:
        return []  # the environment check says what is wrong
    streams = [settings.default_stream] if settings.default_stream else []
    streams += [route.stream for route in settings.stream_routes]
    return streams


def _alarm_names(stack: StackView) -> list[str]:
    """The alarms the stack lists, and those its template names (a stack that skipped some)."""
    names = list(stack.physical_ids(ALARM_TYPE))
    for resource in stack.declared(ALARM_TYPE).values():
        name = (resource.get("Properties") or {}).get("AlarmName")
        if isinstance(name, str) and name not in names:
            names.append(name)
    return names
