"""The doctor's judgments: one check per thing it looked at, OK, WARN or FAIL, with the runbook
entry that says what to do when it is not OK. Pure functions of what was read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from msk_kinesis_sink.claim_checks import CLAIM_CHECK_PREFIX
from msk_kinesis_sink.doctor.model import AlarmState, MappingState, RecentObjects, StreamSummary
from msk_kinesis_sink.limits import DEFAULT_MAX_RECORD_BYTES
from msk_kinesis_sink.runbook import RUNBOOK_PATH, runbook_anchor

KIB: Final = 1024
# Stream distribution strategies: only this one keeps per-key order.
KEYED: Final = "USER_PARTITION_KEY"
_ALARM_REASON_CHARS: Final = 160


class Status(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


class Entry(StrEnum):
    """The docs/runbook.md heading to read when a check is not OK: the doctor's own (under "The
    doctor"), or an alarm's entry that covers the same ground."""

    STACK = "Stack status"
    ENVIRONMENT = "Function environment"
    MAPPING = "MappingNotPolling-<topic>"
    STREAM = "Stream settings"
    ALARMS = "Alarms"
    DEAD_LETTERS = "Reading dead letters"
    OFFSET_LAG = "OffsetLag"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's report."""

    status: Status
    subject: str
    detail: str
    # The runbook entry for when it is not OK, or a whole link (an alarm names its own).
    entry: Entry | None = None
    link: str | None = None

    def line(self, runbook: str = RUNBOOK_PATH) -> str:
        text = f"{self.status.value:<5} {self.subject}: {self.detail}"
        if self.status is Status.OK:
            return text
        link = self.link or (f"{runbook}#{runbook_anchor(self.entry)}" if self.entry else None)
        return f"{text} (runbook: {link})" if link else text


def worst(statuses: Iterable[Status]) -> Status:
    ranked = list(statuses)
    for status in (Status.FAIL, Status.WARN):
        if status in ranked:
            return status
    return Status.OK


def summary_line(checks: Sequence[Check]) -> str:
    counts = {status: sum(c.status is status for c in checks) for status in Status}
    return (
        f"checks={len(checks)} ok={counts[Status.OK]} warn={counts[Status.WARN]}"
        f" fail={counts[Status.FAIL]}"
    )


def stack_check(name: str, status: str) -> Check:
    """A stack that is settled is OK; one moving or rolled back is not."""
    if status.endswith("_FAILED") or status in ("ROLLBACK_COMPLETE", "DELETE_COMPLETE"):
        verdict, why = Status.FAIL, ": the last operation failed"
    elif status.endswith("_IN_PROGRESS"):
        verdict, why = Status.WARN, ": an operation is under way, look again when it ends"
    elif status == "UPDATE_ROLLBACK_COMPLETE":
        verdict, why = Status.WARN, ": the last update was rolled back"
    else:
        verdict, why = Status.OK, ""
    return Check(verdict, f"stack {name}", f"{status}{why}", Entry.STACK)


def environment_check(
    function: str,
    expected: Mapping[str, str],
    unresolved: Sequence[str],
    actual: Mapping[str, str] | None,
) -> Check:
    """The function's variables against those the stack set; names only (values may be private)."""
    subject = f"function {function} environment"
    if actual is None:
        return Check(Status.FAIL, subject, "the function was not found", Entry.ENVIRONMENT)
    compared = {name: value for name, value in expected.items() if name not in unresolved}
    changed = sorted(n for n in compared if n in actual and actual[n] != compared[n])
    missing = sorted(n for n in compared if n not in actual)
    added = sorted(set(actual) - set(expected))
    not_compared = f"; not compared: {', '.join(sorted(unresolved))}" if unresolved else ""
    if not (changed or missing or added):
        detail = f"{len(compared)} variables as the stack set them{not_compared}"
        return Check(Status.OK, subject, detail)
    parts = [
        f"{label}: {', '.join(names)}"
        for label, names in (
            ("changed by hand", changed),
            ("removed", missing),
            ("added by hand", added),
        )
        if names
    ]
    detail = "; ".join(parts) + " (the stack's values come back with the next deploy)"
    return Check(Status.FAIL, subject, detail + not_compared, Entry.ENVIRONMENT)


def mapping_check(topics: str, uuid: str, state: MappingState | None) -> Check:
    """Enabled and not reporting a problem is OK; moving states warn; the rest fail."""
    subject = f"mapping {topics} ({uuid})"
    if state is None:
        return Check(Status.FAIL, subject, "not found", Entry.MAPPING)
    if state.state == "Enabled":
        verdict = Status.OK
    elif state.state in ("Creating", "Enabling", "Updating"):
        verdict = Status.WARN
    else:
        verdict = Status.FAIL
    result = state.last_processing_result or "none yet"
    if result.upper().startswith("PROBLEM"):
        verdict = Status.FAIL
    reason = f" ({state.state_transition_reason})" if state.state_transition_reason else ""
    detail = f"{state.state}{reason}, last processing result: {result}"
    return Check(verdict, subject, detail, Entry.MAPPING)


def stream_check(
    reference: str,
    summary: StreamSummary | None,
    *,
    max_record_bytes: int | None,
    encrypted_by_stack: bool,
) -> Check:
    """Status, record distribution, record size against the function's, and encryption."""
    if summary is None:
        return Check(Status.FAIL, f"stream {reference}", "not found", Entry.STREAM)
    found = [
        _stream_status(summary),
        _distribution(summary),
        _record_size(summary, max_record_bytes),
        _encryption(summary, encrypted_by_stack),
    ]
    detail = "; ".join(_problems_first(found))
    return Check(worst(s for s, _ in found), f"stream {summary.name}", detail, Entry.STREAM)


def _problems_first(found: Sequence[tuple[Status, str]]) -> list[str]:
    """Failures, then warnings, then what is fine; each group in the order found."""
    rank = {Status.FAIL: 0, Status.WARN: 1, Status.OK: 2}
    return [text for _, text in sorted(found, key=lambda item: rank[item[0]])]


def _stream_status(summary: StreamSummary) -> tuple[Status, str]:
    # UPDATING (a resharding or a mode change) still takes writes.
    if summary.status in ("ACTIVE", "UPDATING"):
        return Status.OK, summary.status
    return Status.FAIL, f"{summary.status}: it takes no writes"


def _distribution(summary: StreamSummary) -> tuple[Status, str]:
    strategy = summary.record_distribution
    if strategy is None:
        return Status.OK, f"{KEYED} (not reported: the default)"
    if strategy != KEYED:
        return Status.FAIL, (
            f"RecordDistributionStrategy {strategy}: Kinesis ignores partition keys, so records"
            f" of one key lose their order (must be {KEYED})"
        )
    return Status.OK, strategy


def _record_size(summary: StreamSummary, max_record_bytes: int | None) -> tuple[Status, str]:
    reported = summary.max_record_kib
    kib = reported if reported is not None else DEFAULT_MAX_RECORD_BYTES // KIB
    stream_text = f"max record {kib} KiB" + ("" if reported is not None else " (the default)")
    if max_record_bytes is None:
        return Status.OK, stream_text
    if max_record_bytes > kib * KIB:
        return Status.FAIL, (
            f"{stream_text} is below the function's MAX_RECORD_BYTES={max_record_bytes}:"
            " records between the two are refused by the stream"
        )
    return Status.OK, f"{stream_text} >= MAX_RECORD_BYTES={max_record_bytes}"


def _encryption(summary: StreamSummary, encrypted_by_stack: bool) -> tuple[Status, str]:
    if summary.encryption == "KMS":
        return Status.OK, "KMS-encrypted"
    if encrypted_by_stack:
        return Status.FAIL, f"encryption {summary.encryption}, where the stack set KMS"
    return Status.WARN, f"encryption {summary.encryption}: records are stored unencrypted"


def alarm_checks(declared: Sequence[str], found: Sequence[AlarmState]) -> list[Check]:
    """One FAIL per alarm in ALARM (with the runbook link its description gives), one WARN per
    alarm the stack declares that CloudWatch does not have, and one line for the rest."""
    checks: list[Check] = []
    by_name = {alarm.name: alarm for alarm in found}
    for alarm in found:
        if alarm.state == "ALARM":
            reason = alarm.reason[:_ALARM_REASON_CHARS]
            checks.append(
                Check(
                    Status.FAIL,
                    f"alarm {alarm.name}",
                    f"in ALARM: {reason}",
                    Entry.ALARMS,
                    link=alarm_runbook_link(alarm.description),
                )
            )
    for name in declared:
        if name not in by_name:
            checks.append(
                Check(
                    Status.WARN, f"alarm {name}", "declared by the stack, not found", Entry.ALARMS
                )
            )
    quiet = [alarm for alarm in found if alarm.state != "ALARM"]
    if quiet or not checks:
        states = sorted({alarm.state for alarm in quiet})
        counts = ", ".join(f"{sum(a.state == s for a in quiet)} {s}" for s in states)
        detail = f"{len(quiet)} not in ALARM" + (f" ({counts})" if counts else "")
        checks.append(Check(Status.OK, "alarms", detail))
    return checks


def alarm_runbook_link(description: str) -> str | None:
    """The runbook link an alarm's description ends with ("... Runbook: <url>#<anchor>")."""
    _, marker, link = description.rpartition("Runbook: ")
    return (link.strip() or None) if marker else None


def dead_letter_check(bucket: str, recent: RecentObjects | None, hours: int) -> Check:
    subject = f"dead letters s3://{bucket}"
    if recent is None:
        return Check(Status.FAIL, subject, "the bucket was not found", Entry.DEAD_LETTERS)
    at_least = "" if recent.complete else "at least "
    # Claim-check objects are records kept whole by design (OVERSIZE_RECORDS=claim_check), in
    # their key's turn: no dead letters, nothing to replay.
    dead = {p: n for p, n in sorted(recent.by_prefix.items()) if p != CLAIM_CHECK_PREFIX}
    claimed = recent.by_prefix.get(CLAIM_CHECK_PREFIX, 0)
    kept = f"; {at_least}{claimed} claim-check objects (records kept whole)" if claimed else ""
    if not dead:
        detail = f"no dead letters written in the last {hours} hours{kept}"
        if not recent.complete:
            detail += (
                f" among the {recent.listed} objects listed (the listing stopped at its bound)"
            )
        return Check(Status.OK, subject, detail)
    prefixes = ", ".join(f"{p}: {n}" for p, n in dead.items())
    count = sum(dead.values())
    detail = f"{at_least}{count} objects written in the last {hours} hours ({prefixes}){kept}"
    return Check(Status.WARN, subject, detail, Entry.DEAD_LETTERS)


def offset_lag_check(
    function: str, latest: float | None, threshold: float | None, minutes: int
) -> Check:
    subject = f"offset lag of {function}"
    if latest is None:
        detail = (
            f"no OffsetLag datapoint in the last {minutes} minutes (Lambda publishes it while"
            " a mapping polls)"
        )
        return Check(Status.WARN, subject, detail, Entry.OFFSET_LAG)
    shown = f"latest OffsetLag {latest:.0f}"
    if threshold is None:
        return Check(Status.OK, subject, shown)
    if latest >= threshold:
        detail = f"{shown}, at or above the OffsetLag alarm's threshold {threshold:.0f}"
        return Check(Status.WARN, subject, detail, Entry.OFFSET_LAG)
    return Check(Status.OK, subject, f"{shown}, below the alarm's threshold {threshold:.0f}")
