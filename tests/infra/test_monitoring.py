"""Alarm names: stack-prefixed, within CloudWatch's limit, one per alarm whatever the topic."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from infra.monitoring import MAX_ALARM_NAME_CHARS, alarm_name

_STACKS = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,127}", fullmatch=True)
_TOPICS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=2, max_size=249)


@given(_STACKS, st.lists(_TOPICS, min_size=1, max_size=5, unique=True))
def test_monitoring_alarm_names_fit_and_stay_unique(stack: str, topics: list[str]) -> None:
    # GIVEN any stack name and topics CloudFormation and Kafka accept
    # WHEN the longest per-mapping alarm is named for each topic
    names = [alarm_name(stack, "MappingDeliveryErrors", topic) for topic in topics]
    # THEN every name fits, starts with the stack and entry, and no two topics share a name
    assert all(len(name) <= MAX_ALARM_NAME_CHARS for name in names)
    assert all(name.startswith(f"{stack}-MappingDeliveryErrors-") for name in names)
    assert len(set(names)) == len(names)


@given(_STACKS, _TOPICS)
def test_monitoring_alarm_name_is_exact_when_it_fits(stack: str, topic: str) -> None:
    # GIVEN a stack and topic whose plain name fits
    plain = f"{stack}-MappingDiscarded-{topic}"
    # WHEN named
    # THEN the name is exactly `<stack>-<entry>-<topic>` (so it reads like the runbook entry)
    if len(plain) <= MAX_ALARM_NAME_CHARS:
        assert alarm_name(stack, "MappingDiscarded", topic) == plain
    assert alarm_name(stack, "OffsetLag") == f"{stack}-OffsetLag"
