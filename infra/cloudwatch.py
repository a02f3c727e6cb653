"""What the sink's alarms and dashboard are made of, for the monitoring and each on-failure
destination alike: the metrics (all over one period), alarm specs and the dashboard's grid.

infra.config imports infra.destinations, which imports this module: nothing here may import
infra.config at run time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_lambda as lambda_

from msk_kinesis_sink.limits import MAX_ALARM_EXPRESSIONS, MAX_ALARM_METRICS

if TYPE_CHECKING:
    from infra.event_sources import TopicMapping
    from infra.stream import StreamTarget

PERIOD: Final = Duration.minutes(5)
WIDTH: Final = 24  # dashboard grid columns
# The runbook entry of a per-mapping alarm: `<Entry>-<topic>`.
PER_MAPPING: Final = "<topic>"


@dataclass(frozen=True, slots=True)
class AlarmSpec:
    """One alarm: its runbook entry (docs/runbook.md), what it watches and when it fires.

    With `topic` it is a mapping's alarm, named `<Entry>-<topic>` (runbook entry
    `<Entry>-<topic>`); with `stream` a routed stream's, `<Entry>-<stream id>` (entry `<Entry>`).
    """

    entry: str
    metric: cw.Metric | cw.MathExpression
    what: str  # the description, before the runbook link
    # By default it fires on one occurrence, in the first period that has one.
    threshold: float = 1
    periods: int = 1  # evaluated
    breaching: int = 1  # of those, breaching to fire
    topic: str | None = None
    stream: str | None = None
    comparison: cw.ComparisonOperator = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
    # No data means no traffic (or no failures), which is not a problem in itself.
    missing: cw.TreatMissingData = cw.TreatMissingData.NOT_BREACHING

    @property
    def subject(self) -> str | None:
        return self.topic or self.stream

    @property
    def name(self) -> str:
        """The alarm's name after the stack prefix (and its construct id)."""
        return self.entry if self.subject is None else f"{self.entry}-{self.subject}"

    @property
    def runbook_entry(self) -> str:
        # A stream's alarms share their entry; a mapping's are `<Entry>-<topic>`.
        return self.entry if self.topic is None else f"{self.entry}-{PER_MAPPING}"


# What one mapping's alarm names it by, to be said of a group (`the event source mapping for
# one of a, b, c could not poll ...`).
_FOR_MAPPING: Final = "the event source mapping for {topic} "
# Topics named in a group's description, at most (the rest are counted): CloudWatch keeps an
# alarm's description within 1,024 characters, the runbook link included.
_DESCRIBED_TOPICS_CHARS: Final = 300
# Where a group's alarm may meet its threshold, and how it reads its mappings: any of them
# (MAX of counts for `>=`, MIN for an alarm on too few), a missing value filled with 0, which
# stands for what the alarm takes missing data as (not breaching `>= 1`, breaching `< 1`).
_ANY_OF: Final = {
    (cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD, cw.TreatMissingData.NOT_BREACHING): (
        "MAX"
    ),
    (cw.ComparisonOperator.LESS_THAN_THRESHOLD, cw.TreatMissingData.BREACHING): "MIN",
}


def across_mappings(specs: Sequence[AlarmSpec]) -> tuple[AlarmSpec, ...]:
    """The mappings' alarms (`topic` set), each entry's in alarms of as many mappings as one
    alarm may read (MAX_ALARM_METRICS); every other alarm as it is. In the order given.

    An alarm of several mappings fires in each period where one of theirs would; an M-of-N
    alarm may count periods of different mappings of its group. An alarm of one is that one.
    """
    by_entry: dict[str, list[AlarmSpec]] = {}
    for spec in specs:
        by_entry.setdefault(spec.entry if spec.topic else spec.name, []).append(spec)
    return tuple(group for same in by_entry.values() for group in _grouped(same))


def _grouped(same: list[AlarmSpec]) -> Iterator[AlarmSpec]:
    group: list[AlarmSpec] = []
    for spec in same:
        if group and not _fits([*group, spec]):
            yield _any_of(group)
            group = []
        group.append(spec)
    if group:
        yield _any_of(group)


def _fits(group: Sequence[AlarmSpec]) -> bool:
    metrics = sum(_metric_count(spec.metric) for spec in group)
    expressions = sum(isinstance(spec.metric, cw.MathExpression) for spec in group)
    return metrics <= MAX_ALARM_METRICS and expressions < MAX_ALARM_EXPRESSIONS


def _metric_count(metric: cw.Metric | cw.MathExpression) -> int:
    return len(metric.using_metrics) if isinstance(metric, cw.MathExpression) else 1


def _any_of(group: Sequence[AlarmSpec]) -> AlarmSpec:
    """One alarm for the same alarm of several mappings (of one: that alarm)."""
    first = group[0]
    if len(group) == 1 or first.topic is None:
        return first
    combine = _ANY_OF[(first.comparison, first.missing)]
    assert first.threshold >= 1  # so that a filled 0 is what missing data means to the alarm
    parts = {f"m{index}": _renamed(spec.metric, index) for index, spec in enumerate(group)}
    topics = [str(spec.topic) for spec in group]
    prefix = _FOR_MAPPING.format(topic=first.topic)
    rest = first.what.removeprefix(prefix)
    assert all(spec.what == _FOR_MAPPING.format(topic=spec.topic) + rest for spec in group)
    return replace(
        first,
        metric=cw.MathExpression(
            expression=f"{combine}([{', '.join(f'FILL({key}, 0)' for key in parts)}])",
            using_metrics=parts,
            label=f"{first.entry}: any of {len(group)} mappings",
            period=PERIOD,
        ),
        what=_FOR_MAPPING.format(topic=f"one of {_listed(topics)}") + rest,
        topic=f"{topics[0]} and {len(topics) - 1} more",
    )


def _renamed(metric: cw.Metric | cw.MathExpression, index: int) -> cw.Metric | cw.MathExpression:
    """A mapping's metric in the group's alarm: an expression's own metrics under ids of their
    own (a group's ids must all differ), and no labels (an alarm shows none; a template of many
    topics keeps within CloudFormation's size)."""
    if isinstance(metric, cw.Metric):
        return _unlabelled(metric)
    expression = metric.expression
    for name in metric.using_metrics:
        expression = re.sub(rf"\b{re.escape(name)}\b", f"{name}{index}", expression)
    return cw.MathExpression(
        expression=expression,
        using_metrics={
            f"{name}{index}": _unlabelled(m) if isinstance(m, cw.Metric) else m
            for name, m in metric.using_metrics.items()
        },
        period=PERIOD,
    )


def _unlabelled(metric: cw.Metric) -> cw.Metric:
    return cw.Metric(
        namespace=metric.namespace,
        metric_name=metric.metric_name,
        dimensions_map=metric.dimensions,
        statistic=metric.statistic,
        period=metric.period,
    )


def _listed(topics: Sequence[str]) -> str:
    """The topics by name, as many as fit a description; the others counted."""
    named: list[str] = []
    for topic in topics:
        if named and len(", ".join([*named, topic])) > _DESCRIBED_TOPICS_CHARS:
            return f"{', '.join(named)} and {len(topics) - len(named)} more"
        named.append(topic)
    return ", ".join(named)


@dataclass(frozen=True, slots=True)
class SinkMetrics:
    """Makes each metric of the sink; `namespace` and `service` are the function's EMF ones."""

    function: lambda_.IFunction
    namespace: str
    service: str

    def of_function(self, name: str, statistic: str, label: str) -> cw.Metric:
        """Lambda's metric of the function (AWS/Lambda, dimension FunctionName)."""
        return self.function.metric(name, statistic=statistic, period=PERIOD, label=label)

    def of_sink(self, name: str, statistic: str, label: str | None = None) -> cw.Metric:
        """The function's own metric (Powertools EMF, dimension `service`)."""
        return cw.Metric(
            namespace=self.namespace,
            metric_name=name,
            dimensions_map={"service": self.service},
            statistic=statistic,
            period=PERIOD,
            label=label or name,
        )

    @staticmethod
    def of_stream(
        target: StreamTarget, name: str, statistic: str, label: str | None = None
    ) -> cw.Metric:
        """Kinesis's metric of one target stream."""
        return cw.Metric(
            namespace="AWS/Kinesis",
            metric_name=name,
            dimensions_map={"StreamName": target.stream.stream_name},
            statistic=statistic,
            period=PERIOD,
            label=label or name,
        )

    @staticmethod
    def of_mapping(
        mapping: TopicMapping, name: str, label: str | None = None, *, statistic: str = "Sum"
    ) -> cw.Metric:
        """An event source mapping's own metric (AWS: "Types of metrics for Lambda functions",
        section "Event source mapping metrics"; dimension EventSourceMappingUUID)."""
        return cw.Metric(
            namespace="AWS/Lambda",
            metric_name=name,
            dimensions_map={"EventSourceMappingUUID": mapping.mapping_id},
            statistic=statistic,
            period=PERIOD,
            label=label or f"{mapping.topic} {name}",
        )
