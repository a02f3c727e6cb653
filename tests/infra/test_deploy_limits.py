"""The stack within what CloudFormation and the event source mappings accept, measured on synths:
the function's timeout, the number of topics, the template's size."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from infra.config import ConfigError
from infra.context import MAX_TOPICS
from msk_kinesis_sink.limits import (
    MAX_ALARM_EXPRESSIONS,
    MAX_ALARM_METRICS,
    MAX_KAFKA_FUNCTION_TIMEOUT_SECONDS,
    MAX_STACK_RESOURCES,
    MAX_STATUS_WIDGET_ALARMS,
    MAX_TEMPLATE_BYTES,
    MAX_WIDGET_METRICS,
)
from tests.infra.conftest import VARIANTS, Synth, feature_flags, shipped_context
from tests.infra.test_app import run_app

pytestmark = pytest.mark.infra


def test_limits_longest_timeout_a_kafka_mapping_takes_synthesizes(
    builder: Callable[..., Synth],
) -> None:
    # GIVEN the longest timeout a Kafka event source mapping invokes (14 minutes)
    context = {**shipped_context(), "functionTimeoutSeconds": MAX_KAFKA_FUNCTION_TIMEOUT_SECONDS}
    # WHEN synthesized
    synth = builder(context)
    # THEN the function has it, and its duration alarm follows it
    [function] = synth.resources("AWS::Lambda::Function").values()
    assert function["Properties"]["Timeout"] == 840
    alarm = synth.stack.monitoring.alarms["DurationNearTimeout"].node.default_child
    props = synth.template_json["Resources"][synth.stack.get_logical_id(alarm)]["Properties"]
    assert props["Threshold"] == 840_000 * 0.8


def synthesized(context: Mapping[str, object], out: Path) -> tuple[dict[str, Any], int]:
    """The template as `cdk synth` writes it (bundling aside), and its size in bytes."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    import aws_cdk as cdk

    from infra.config import SinkConfig
    from infra.stack import MskKinesisSinkStack

    app = cdk.App(context={**context, "aws:cdk:bundling-stacks": []}, outdir=str(out))
    config = SinkConfig.from_context(app.node.get_all_context())
    MskKinesisSinkStack(app, config.stack_name, config=config)
    artifact = app.synth().get_stack_by_name(config.stack_name)
    path = Path(artifact.template_full_path)
    template: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return template, path.stat().st_size


def topics(count: int, chars: int) -> list[str]:
    """`count` distinct topic names of `chars` characters."""
    return [f"t{index:03d}-".ljust(chars, "x") for index in range(count)]


# The most a stack is documented to carry: MAX_TOPICS topics with names of 40 characters on
# average, in the configurations that add the most per topic (a schema registry's alarm, the
# SQS destination's, routed streams) and in the shipped one.
_LARGEST: Mapping[str, Mapping[str, object]] = {
    "shipped": {**shipped_context()},
    "registry_sqs_routed": {
        **feature_flags(),
        **VARIANTS["self_managed_confluent_schema_registry"],
        "onFailureDestination": "sqs",
        "pollerGroupName": "sink-pollers",
        "maxPollers": 2,
        "streams": {"a": {"topics": ["t00*"]}, "b": {"topics": ["t01*"]}},
    },
}


@pytest.mark.parametrize("variant", sorted(_LARGEST))
def test_limits_the_most_topics_fit_one_stack(variant: str, tmp_path: Path) -> None:
    # GIVEN as many topics as one stack deploys, with long names
    context = {**_LARGEST[variant], "topics": topics(MAX_TOPICS, 40)}
    # WHEN synthesized as `cdk synth` writes it
    template, size = synthesized(context, tmp_path)
    resources = template["Resources"]
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    [dashboard] = [r for r in resources.values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    # THEN CloudFormation takes it: resources and bytes within its limits...
    assert len(resources) + 1 <= MAX_STACK_RESOURCES  # + CDK's metadata resource
    assert size <= MAX_TEMPLATE_BYTES
    # ...CloudWatch takes every alarm: at most 10 metrics and 10 expressions each, and a
    # description of at most 1,024 characters...
    for alarm in alarms:
        queries = alarm.get("Metrics", [])
        assert sum("MetricStat" in q for q in queries) <= MAX_ALARM_METRICS
        assert sum("Expression" in q for q in queries) <= MAX_ALARM_EXPRESSIONS
        assert len(alarm["AlarmDescription"]) <= 1024
    # ...and the dashboard: at most 500 metrics a graph, 100 alarms a status widget
    body = dashboard_body(dashboard)
    for widget in body["widgets"]:
        assert len(widget["properties"].get("metrics", [])) <= MAX_WIDGET_METRICS
        assert len(widget["properties"].get("alarms", [])) <= MAX_STATUS_WIDGET_ALARMS
    # ...with every mapping watched by each of its alarms
    mappings = [k for k, r in resources.items() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert len(mappings) == MAX_TOPICS
    not_polling = [a for a in alarms if "-MappingNotPolling-" in a["AlarmName"]]
    watched = [
        q["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"]
        for a in not_polling
        for q in a["Metrics"]
        if "MetricStat" in q
    ]
    assert sorted(watched) == sorted(mappings)


def dashboard_body(dashboard: Mapping[str, Any]) -> dict[str, Any]:
    """The dashboard's JSON, each deploy-time value (a mapping's id, a stream's name) as a
    placeholder string."""
    body = dashboard["Properties"]["DashboardBody"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    text = "".join(part if isinstance(part, str) else "TOKEN" for part in parts)
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def test_limits_more_topics_than_fit_are_refused_in_one_line(tmp_path: Path) -> None:
    # GIVEN one topic more than a stack deploys (once, 80 crashed synth with CloudFormation's
    # TooManyResourcesInStack in a traceback)
    context = {**shipped_context(), "topics": topics(MAX_TOPICS + 1, 12)}
    # WHEN app.py runs, as `cdk synth` runs it
    result = run_app(context, tmp_path)
    # THEN it stops with one line naming the count that fits and CloudFormation's limit
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert problems(result) == [
        "configuration error: topics lists 101 topics; one stack deploys at most 100 (an"
        " event source mapping each, with its share of the alarms, within CloudFormation's"
        " 500 resources and 1 MB per stack): split them over stacks, each with its own stackName"
    ]


def test_limits_a_template_too_big_for_cloudformation_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    # GIVEN as many topics as a stack deploys, with names far longer than usual (and groups
    # of their own, as the default <consumerGroupId>-<topic> would be too long)
    names = topics(MAX_TOPICS, 200)
    context = {
        **shipped_context(),
        "topics": names,
        "consumerGroups": {name: f"sink-{index}" for index, name in enumerate(names)},
    }
    # WHEN app.py synthesizes it
    result = run_app(context, tmp_path)
    # THEN it stops with one line: the template's size, CloudFormation's, and how many fit
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = problems(result)
    assert re.fullmatch(
        r"configuration error: topics: the template is [\d,]+ bytes, more than the 1,000,000"
        r" CloudFormation takes; about (\d+) of these 100 topics \(with names this long\) fit"
        r" one stack: split them over stacks",
        line,
    ), line


def test_limits_a_stack_of_too_many_resources_is_refused_in_one_line(
    builder: Callable[..., Synth],
) -> None:
    # GIVEN a configuration of more resources than the topics alone make: a stream (with its
    # key and alarm) for each topic, a schema registry's alarms, a queue for discard notices
    names = topics(MAX_TOPICS, 12)
    streams = {f"s{index}": {"topics": [name]} for index, name in enumerate(names)}
    shipped = {k: v for k, v in shipped_context().items() if not k.startswith("stream")}
    context = {
        **shipped,
        "topics": names,
        "defaultStream": False,
        "streams": streams,
        "schemaRegistryUri": "arn:aws:glue:eu-west-1:123456789012:registry/orders",
        "onFailureDestination": "sqs",
    }
    # WHEN the stack is built
    with pytest.raises(ConfigError) as raised:
        builder(context)
    # THEN it is refused in one line before CloudFormation would be asked
    [problem] = raised.value.problems
    assert problem.startswith("this configuration makes a stack of ")
    assert problem.endswith(
        "resources, more than the 500 CloudFormation takes: fewer topics (100) or streams"
        " entries (100) per stack"
    )


def problems(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("configuration")]
