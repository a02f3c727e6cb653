"""Alarm names: stack-prefixed, within CloudWatch's limit, one per alarm whatever the topic; the
mappings' alarms, each reading as many mappings as CloudWatch lets one alarm read."""

from __future__ import annotations

from dataclasses import replace

from aws_cdk import aws_cloudwatch as cw
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.cloudwatch import PERIOD, AlarmSpec, across_mappings
from infra.monitoring import MAX_ALARM_NAME_CHARS, alarm_name
from msk_kinesis_sink.limits import MAX_ALARM_METRICS

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


# --- alarms across mappings ---------------------------------------------------------------------


def mapping_spec(index: int, *, discard: bool = False) -> AlarmSpec:
    """A mapping's alarm as the stack makes it: on one metric, or (the discard alarm) on an
    expression of two."""
    topic = f"topic-{index}"

    def of(name: str) -> cw.Metric:
        return cw.Metric(
            namespace="AWS/Lambda",
            metric_name=name,
            dimensions_map={"EventSourceMappingUUID": f"uuid-{index}"},
            statistic="Sum",
            period=PERIOD,
        )

    if not discard:
        return AlarmSpec(
            "MappingCommitErrors",
            of("CommitErrorCount"),
            what=f"the event source mapping for {topic} could not commit offsets",
            topic=topic,
        )
    return AlarmSpec(
        "MappingDiscarded",
        cw.MathExpression(
            expression="FILL(dropped, 0) + FILL(delivered, 0)",
            using_metrics={
                "dropped": of("DroppedEventCount"),
                "delivered": of("OnFailureDestinationDeliveredEventCount"),
            },
            period=PERIOD,
        ),
        what=f"the event source mapping for {topic} gave up on records",
        topic=topic,
    )


def read(spec: AlarmSpec) -> list[tuple[str, str]]:
    """(metric, mapping) of every metric an alarm reads."""
    metric = spec.metric
    found: list[tuple[str, str]] = []
    parts = metric.using_metrics.values() if isinstance(metric, cw.MathExpression) else [metric]
    for part in parts:
        if isinstance(part, cw.MathExpression):
            found += read(replace(spec, metric=part))
        else:
            assert isinstance(part, cw.Metric)
            found.append((part.metric_name, str(part.dimensions["EventSourceMappingUUID"])))
    return found


@settings(max_examples=15, deadline=None)
@given(st.integers(min_value=1, max_value=23), st.integers(min_value=0, max_value=23))
def test_monitoring_each_mapping_alarm_reads_every_mapping_once_within_cloudwatch_limits(
    plain: int, discard: int
) -> None:
    # GIVEN the alarms of many mappings, of two entries: one metric each, and two each
    specs = [mapping_spec(i) for i in range(plain)] + [
        mapping_spec(i, discard=True) for i in range(discard)
    ]
    # WHEN they become alarms across mappings
    alarms = across_mappings(specs)
    # THEN each entry's alarms read every mapping's metrics exactly once...
    for entry, count in (("MappingCommitErrors", plain), ("MappingDiscarded", discard)):
        mine = [alarm for alarm in alarms if alarm.entry == entry]
        metrics = [pair for alarm in mine for pair in read(alarm)]
        per_mapping = 1 if entry == "MappingCommitErrors" else 2
        assert sorted(metrics) == sorted(
            pair for spec in specs if spec.entry == entry for pair in read(spec)
        )
        assert len(metrics) == count * per_mapping
        # ...in as few alarms as CloudWatch's 10 metrics an alarm allow
        assert len(mine) == -(-count * per_mapping // MAX_ALARM_METRICS)
    for alarm in alarms:
        assert len(read(alarm)) <= MAX_ALARM_METRICS


def test_monitoring_alarm_of_one_mapping_is_that_mappings_alarm() -> None:
    # GIVEN one mapping's alarms
    specs = [mapping_spec(0), mapping_spec(0, discard=True)]
    # WHEN they become alarms across mappings
    # THEN they are the same alarms (a stack of one topic keeps its template)
    assert across_mappings(specs) == tuple(specs)


def test_monitoring_alarm_of_several_mappings_fires_where_any_of_theirs_would() -> None:
    # GIVEN the discard alarms of three mappings, each on dropped + delivered
    specs = [mapping_spec(index, discard=True) for index in range(3)]
    # WHEN they become one alarm
    [alarm] = across_mappings(specs)
    metric = alarm.metric
    assert isinstance(metric, cw.MathExpression)
    # THEN it takes the largest of the three (each missing value as 0, as the alarm takes
    # missing data), each mapping's own expression under ids of its own
    assert metric.expression == "MAX([FILL(m0, 0), FILL(m1, 0), FILL(m2, 0)])"
    nested = [metric.using_metrics[f"m{index}"] for index in range(3)]
    assert [m.expression for m in nested if isinstance(m, cw.MathExpression)] == [
        f"FILL(dropped{index}, 0) + FILL(delivered{index}, 0)" for index in range(3)
    ]
    # ...with the same threshold and evaluation, named after the first topic and the count,
    # described with every topic
    assert (alarm.threshold, alarm.periods, alarm.missing) == (
        1,
        1,
        cw.TreatMissingData.NOT_BREACHING,
    )
    assert alarm.name == "MappingDiscarded-topic-0 and 2 more"
    assert alarm.runbook_entry == "MappingDiscarded-<topic>"
    assert alarm.what == (
        "the event source mapping for one of topic-0, topic-1, topic-2 gave up on records"
    )


def test_monitoring_not_polling_across_mappings_breaches_when_any_one_is_silent() -> None:
    # GIVEN the not-polling alarm of two mappings: fewer than 1 poll, no data breaching
    specs = [
        AlarmSpec(
            "MappingNotPolling",
            cw.Metric(
                namespace="AWS/Lambda",
                metric_name="PolledEventCount",
                dimensions_map={"EventSourceMappingUUID": f"uuid-{index}"},
                statistic="SampleCount",
                period=PERIOD,
            ),
            what=f"the event source mapping for topic-{index} has not polled",
            topic=f"topic-{index}",
            periods=3,
            breaching=3,
            comparison=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            missing=cw.TreatMissingData.BREACHING,
        )
        for index in range(2)
    ]
    # WHEN they become one alarm
    [alarm] = across_mappings(specs)
    # THEN it reads the smallest, a silent mapping's missing polls counting as 0
    assert isinstance(alarm.metric, cw.MathExpression)
    assert alarm.metric.expression == "MIN([FILL(m0, 0), FILL(m1, 0)])"
    assert (alarm.comparison, alarm.missing, alarm.periods, alarm.breaching) == (
        cw.ComparisonOperator.LESS_THAN_THRESHOLD,
        cw.TreatMissingData.BREACHING,
        3,
        3,
    )


def test_monitoring_alarm_description_of_many_long_topics_stays_short() -> None:
    # GIVEN ten mappings of topics of 240 characters
    specs = [
        replace(
            mapping_spec(index),
            topic=f"{index}" + "x" * 239,
            what=f"the event source mapping for {index}{'x' * 239} could not commit offsets",
        )
        for index in range(10)
    ]
    # WHEN they become one alarm
    [alarm] = across_mappings(specs)
    # THEN its description names the first topics and counts the rest, within what CloudWatch
    # takes beside a runbook link of 500 characters
    assert alarm.what.endswith(" and 9 more could not commit offsets")
    assert len(alarm.what) + len(". Runbook: ") + 500 + 40 <= 1024
