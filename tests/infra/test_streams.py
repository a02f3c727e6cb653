"""Routing in the stack (docs/routing.md): the `streams` map as synthesized templates.

The one-stream templates are compared with golden copies taken before `streams` existed
(tests/infra/golden/); after a change meant to alter them, rewrite the copies with
`UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/infra/test_streams.py` and review the diff.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from msk_kinesis_sink.settings import Settings
from tests.infra.conftest import (
    CLUSTER_ARN,
    STREAM_ARN,
    STREAM_KEY_ARN,
    Synth,
    feature_flags,
    shipped_context,
)

pytestmark = pytest.mark.infra

GOLDEN = Path(__file__).resolve().parent / "golden"


def normalized(template: dict[str, Any]) -> dict[str, Any]:
    """The template as JSON text holds it, the function's asset hash aside (it follows lambda/)."""
    copy: dict[str, Any] = json.loads(json.dumps(template))
    for resource in copy["Resources"].values():
        if resource["Type"] == "AWS::Lambda::Function":
            resource["Properties"]["Code"]["S3Key"] = "<function asset>.zip"
    return copy


def only_id(synth: Synth, type_name: str) -> str:
    [logical] = synth.resources(type_name)
    return logical


def function_env(synth: Synth) -> dict[str, Any]:
    function = synth.resources("AWS::Lambda::Function")[only_id(synth, "AWS::Lambda::Function")]
    env: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    return env


def role_statement(synth: Synth, sid: str) -> dict[str, Any]:
    role = synth.resources("AWS::IAM::Role")[only_id(synth, "AWS::IAM::Role")]
    [found] = [
        s
        for s in role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        if s["Sid"] == sid
    ]
    return found


def streams_by_id(synth: Synth) -> dict[str, str]:
    """Logical id of each created stream, by its `streams` id ("" for the default stream)."""
    from aws_cdk.aws_kinesis import CfnStream

    return {
        target.stream_id or "": synth.stack.get_logical_id(target.stream.node.default_child)
        for target in synth.stack.streams.targets
        if isinstance(target.stream.node.default_child, CfnStream)  # not an imported one
    }


def key_of(synth: Synth, stream_logical_id: str) -> str:
    stream = synth.template_json["Resources"][stream_logical_id]["Properties"]
    return str(stream["StreamEncryption"]["KeyId"]["Fn::GetAtt"][0])


def get_att(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def resolved(value: Any, arns: Mapping[str, str]) -> str:
    """A template value with each stream's Fn::GetAtt Arn replaced by a deploy-time ARN."""
    if isinstance(value, str):
        return value
    if "Fn::GetAtt" in value:
        return arns[value["Fn::GetAtt"][0]]
    separator, parts = value["Fn::Join"]
    return str(separator).join(resolved(part, arns) for part in parts)


# --- one stream: the template of before `streams` -------------------------------------------


@pytest.mark.parametrize(
    ("golden", "variant"),
    [("one_stream_created", "default"), ("one_stream_imported", "scram_imported_stream")],
)
def test_streams_one_stream_template_is_unchanged(
    golden: str, variant: str, all_synths: dict[str, Synth]
) -> None:
    # GIVEN a one-stream configuration (no `streams`): created, and imported with its key
    path = GOLDEN / f"{golden}.template.json"
    # WHEN synthesized
    template = normalized(all_synths[variant].template_json)
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(json.dumps(template, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    # THEN the template is the one the stack made before routing existed, value for value:
    # same resources, logical ids, grants, environment, alarms, dashboard and outputs
    assert template == json.loads(path.read_text(encoding="utf-8")), (
        f"the one-stream template changed; if intended, rewrite {path.name} (module docstring)"
    )


def test_streams_adding_a_routed_stream_replaces_nothing_of_the_default_stream(
    builder: Callable[..., Synth],
) -> None:
    # GIVEN a deployment writing two topics to its one stream, and the same deployment with
    # one topic routed to a stream of its own
    base = {**shipped_context(), "topics": ["example-topic", "payments"]}
    before = builder(base).template_json
    after = builder({**base, "streams": {"payments": {"topics": ["payments"]}}}).template_json
    # WHEN the templates are compared resource by resource
    old, new = before["Resources"], after["Resources"]
    changed = {logical for logical in old if old[logical] != new.get(logical)}
    added = set(new) - set(old)
    # THEN nothing is removed or replaced: only what must change changes in place (the role's
    # grants, the function's STREAM_ROUTES, the dashboard), and the new stream comes with its
    # own key and alarm; the default stream, its key and alarm keep their logical ids
    assert {old[logical]["Type"] for logical in changed} == {
        "AWS::IAM::Role",
        "AWS::Lambda::Function",
        "AWS::CloudWatch::Dashboard",
    }
    assert sorted(new[logical]["Type"] for logical in added) == [
        "AWS::CloudWatch::Alarm",
        "AWS::KMS::Key",
        "AWS::Kinesis::Stream",
    ]
    assert set(before["Outputs"]) < set(after["Outputs"])
    env_before = function_env_of(before)
    env_after = function_env_of(after)
    assert {k: v for k, v in env_after.items() if k != "STREAM_ROUTES"} == env_before


def function_env_of(template: dict[str, Any]) -> dict[str, Any]:
    [function] = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    env: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    return env


def test_streams_role_may_describe_every_stream_it_writes_to(
    all_synths: dict[str, Synth],
) -> None:
    for name, synth in all_synths.items():
        # GIVEN a variant's streams: created, imported by ARN, default or routed
        targets = [synth.stack.resolve(t.stream.stream_arn) for t in synth.stack.streams.targets]
        # WHEN the role's stream statement is read
        statement = role_statement(synth, "PublishToStream")
        resources = (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        # THEN the function's stream guard may read each one's summary (without it, nothing
        # would be written to the stream)
        assert "kinesis:DescribeStreamSummary" in statement["Action"], name
        assert sorted(map(json.dumps, resources)) == sorted(map(json.dumps, targets)), name


# --- several streams --------------------------------------------------------------------------


def test_streams_two_created_streams_each_with_its_own_key_settings_and_grants(
    variant_synths: dict[str, Synth],
) -> None:
    # GIVEN two created streams, no default stream (variant two_created_streams)
    synth = variant_synths["two_created_streams"]
    resources = synth.template_json["Resources"]
    # WHEN synthesized
    streams = streams_by_id(synth)
    # THEN exactly the two streams exist, each with its settings and its own rotating key
    assert set(streams) == {"orders", "payments"}
    orders = resources[streams["orders"]]["Properties"]
    payments = resources[streams["payments"]]["Properties"]
    assert orders["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert (orders["ShardCount"], orders["RetentionPeriodHours"]) == (2, 48)
    assert orders["MaxRecordSizeInKiB"] == 2048
    assert payments["Name"] == "payments-mirror"
    assert payments["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert payments["MaxRecordSizeInKiB"] == 1024
    # ...the on-demand one placing records by partition key, explicitly (CloudFormation takes
    # the property for ON_DEMAND streams only)
    assert payments["RecordDistributionStrategy"] == "USER_PARTITION_KEY"
    assert "RecordDistributionStrategy" not in orders
    keys = {stream_id: key_of(synth, logical) for stream_id, logical in streams.items()}
    assert len(set(keys.values())) == 2
    assert all(resources[key]["Properties"]["EnableKeyRotation"] for key in keys.values())
    # ...the role may write to both and encrypt with both keys, nothing else
    publish = role_statement(synth, "PublishToStream")["Resource"]
    encrypt = role_statement(synth, "EncryptStreamRecords")["Resource"]
    assert sorted(map(json.dumps, publish)) == sorted(
        json.dumps(get_att(s)) for s in streams.values()
    )
    assert sorted(map(json.dumps, encrypt)) == sorted(json.dumps(get_att(k)) for k in keys.values())
    # ...the function has no default stream, its routes in order, and the smaller record size
    env = function_env(synth)
    assert "STREAM_NAME" not in env
    assert env["MAX_RECORD_BYTES"] == str(1024 * 1024)
    arns = {
        logical: f"arn:aws:kinesis:eu-west-1:111122223333:stream/{i}"
        for i, logical in streams.items()
    }
    assert resolved(env["STREAM_ROUTES"], arns) == (
        f"orders.eu={arns[streams['orders']]},orders*={arns[streams['orders']]},"
        f"payments={arns[streams['payments']]}"
    )
    # ...and each stream has an output, the default stream none
    outputs = synth.template_json["Outputs"]
    assert "StreamArn" not in outputs
    assert sorted(o["Value"]["Fn::GetAtt"][0] for k, o in outputs.items() if "Streams" in k) == (
        sorted(streams.values())
    )


def test_streams_created_default_and_imported_stream_with_its_key(
    variant_synths: dict[str, Synth],
) -> None:
    # GIVEN the default stream created, and payments routed to an imported stream and its key
    synth = variant_synths["created_and_imported_streams"]
    # WHEN synthesized
    streams = streams_by_id(synth)
    default_key = key_of(synth, streams[""])
    # THEN only the default stream is created; the role writes to both, and encrypts with the
    # default stream's key and with the imported stream's own (streams.payments.streamKmsKeyArn)
    assert set(streams) == {""}
    publish = role_statement(synth, "PublishToStream")["Resource"]
    encrypt = role_statement(synth, "EncryptStreamRecords")["Resource"]
    assert sorted(map(json.dumps, publish)) == sorted(
        map(json.dumps, [get_att(streams[""]), STREAM_ARN])
    )
    assert sorted(map(json.dumps, encrypt)) == sorted(
        map(json.dumps, [get_att(default_key), STREAM_KEY_ARN])
    )
    # ...the function's default is the created stream, payments goes to the imported one, and
    # its one record limit is the smaller of 4096 and 2048 KiB
    env = function_env(synth)
    assert env["STREAM_NAME"] == get_att(streams[""])
    assert env["STREAM_ROUTES"] == f"payments={STREAM_ARN}"
    assert env["MAX_RECORD_BYTES"] == str(2048 * 1024)
    # ...and the imported stream's alarm watches it by the name in its ARN
    alarm = synth.stack.monitoring.alarms["StreamWriteThrottling-payments"]
    props = synth.template_json["Resources"][synth.stack.get_logical_id(alarm.node.default_child)]
    [metric] = props["Properties"]["Metrics"]
    assert metric["MetricStat"]["Metric"]["Dimensions"] == [
        {"Name": "StreamName", "Value": "existing-stream"}
    ]
    assert props["Properties"]["AlarmName"] == "MskKinesisSink-StreamWriteThrottling-payments"


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        (
            "two_created_streams",
            {"orders": "orders", "orders.eu": "orders", "payments": "payments"},
        ),
        ("created_and_imported_streams", {"orders": "", "payments": "payments"}),
    ],
)
def test_streams_function_routes_each_configured_topic_to_its_stream(
    variant: str, expected: dict[str, str], variant_synths: dict[str, Synth]
) -> None:
    # GIVEN a synthesized routing variant, its streams given deploy-time ARNs
    synth = variant_synths[variant]
    streams = streams_by_id(synth)
    arns = {
        logical: f"arn:aws:kinesis:eu-west-1:111122223333:stream/s-{i}"
        for i, logical in streams.items()
    }
    imported = {i: s.existing_arn for i, s in synth.stack.config.streams.items() if s.existing_arn}
    variables = function_env(synth)
    env = {
        k: resolved(variables[k], arns) for k in ("STREAM_NAME", "STREAM_ROUTES") if k in variables
    }
    # WHEN the function reads its environment and routes each configured topic
    settings = Settings.from_env(env)
    chosen = {topic: settings.stream_for(topic) for topic in expected}
    # THEN each topic goes to the stream its configuration names
    stream_arn = {i: arns[logical] for i, logical in streams.items()} | imported
    assert chosen == {topic: stream_arn[stream_id] for topic, stream_id in expected.items()}


def dashboard_titles(synth: Synth) -> list[str]:
    """Every widget title, read from the dashboard body with its tokens blanked out."""
    dashboard = only_value(synth.resources("AWS::CloudWatch::Dashboard"))["Properties"]
    parts = dashboard["DashboardBody"]["Fn::Join"][1]
    body = json.loads("".join(part if isinstance(part, str) else "token" for part in parts))
    return [w["properties"]["title"] for w in body["widgets"] if "title" in w["properties"]]


def only_value(mapping: dict[str, Any]) -> Any:
    [value] = mapping.values()
    return value


def test_streams_dashboard_has_a_stream_row_per_stream(all_synths: dict[str, Synth]) -> None:
    # GIVEN one stream, two routed streams, and a default stream beside a routed one
    variants = ("default", "two_created_streams", "created_and_imported_streams")
    # WHEN each dashboard's stream widgets are read
    rows = {
        variant: [t for t in dashboard_titles(all_synths[variant]) if "tream" in t.split(":")[0]]
        for variant in variants
    }
    # THEN each stream has its row of three, named as one-stream dashboards always named it
    assert rows["default"] == [
        "Stream: incoming records",
        "Stream: incoming bytes",
        "Stream: write throttling",
    ]
    assert rows["two_created_streams"] == [
        f"Stream {i}: {what}"
        for i in ("orders", "payments")
        for what in ("incoming records", "incoming bytes", "write throttling")
    ]
    assert rows["created_and_imported_streams"] == [
        f"{stream}: {what}"
        for stream in ("Default stream", "Stream payments")
        for what in ("incoming records", "incoming bytes", "write throttling")
    ]


# --- refusals at synth ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"defaultStream": False, "streams": {"orders": {"topics": ["orders"]}}},
            "topics: 'payments' matches no pattern in streams and defaultStream=false",
        ),
        (
            {"streams": {"orders": {"topics": ["ordres"]}}},
            "streams.orders.topics: 'ordres' matches no topic in topics",
        ),
        (
            {"streams": {"all": {"topics": ["*"]}, "orders": {"topics": ["orders"]}}},
            "streams.orders.topics: 'orders' is never used: 'orders' goes to streams.all",
        ),
    ],
    ids=["unrouted-topic", "typo-route", "shadowed-route"],
)
def test_streams_synth_refuses_a_lost_topic_or_a_dead_route_in_one_line(
    overrides: dict[str, object], message: str, builder: Callable[..., Synth]
) -> None:
    # GIVEN two topics and a routing mistake
    from infra.config import ConfigError

    context = {**feature_flags(), "clusterArn": CLUSTER_ARN, "topics": "orders,payments"}
    # WHEN the stack is built from it
    with pytest.raises(ConfigError) as raised:
        builder({**context, **overrides})
    # THEN it is refused before any construct, in one line naming the topic or the route
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)
