"""What the sink's alarms and dashboard are made of, for the monitoring and each on-failure
destination alike: the metrics (all over one period), alarm specs and the dashboard's grid.

infra.config imports infra.destinations, which imports this module: nothing here may import
infra.config at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_lambda as lambda_

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
