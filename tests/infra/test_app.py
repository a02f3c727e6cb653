"""app.py and `cdk synth` as a user runs them: offline, no credentials, shipped cdk.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from tests.infra.conftest import REPO, Synth, shipped_context

pytestmark = pytest.mark.infra

# Synth must never need (or find) credentials: strip them, and the metadata endpoint too.
_CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
)


def offline_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CREDENTIAL_VARS}
    env.update(
        {
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            "CDK_DISABLE_CLI_TELEMETRY": "1",
        }
    )
    return env


CLUSTER = "arn:aws:kafka:eu-west-1:123456789012:cluster/c/0f1e2d3c-4b5a-1"


def run_app(context: Mapping[str, object], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """app.py as `cdk synth` runs it (the CLI hands it the context), offline, without
    bundling the function."""
    env = offline_env(tmp_path) | {
        "CDK_CONTEXT_JSON": json.dumps({**context, "aws:cdk:bundling-stacks": []}),
        "CDK_OUTDIR": str(tmp_path / "out"),
    }
    return subprocess.run(
        [sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"batchSize": "20000"}, "batchSize=20000 is out of range (allowed: 1-10000)"),
        (
            # Lambda takes 900 s, but a Kafka mapping refuses a function above 14 minutes.
            {"functionTimeoutSeconds": "900"},
            "functionTimeoutSeconds=900 is out of range (allowed: 1-840: Kafka event source"
            " mappings take functions of at most 14 minutes)",
        ),
        (
            # A partial ARN used to reach CDK and end in a jsii traceback.
            {
                "authentication": "mtls",
                "authSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:sink/cert",
            },
            "authSecretArn='arn:aws:secretsmanager:eu-west-1:123456789012:secret:sink/cert'"
            " is a partial ARN",
        ),
        (
            {"bootstrapServers": "kafka.example.com:9096", "authentication": "sasl_scram_256"},
            "clusterArn and bootstrapServers exclude each other",
        ),
        (
            {"onFailureDestination": "kafka", "onFailureTopic": "orders"},
            "onFailureTopic='orders' is also in topics: Lambda refuses a destination topic that"
            " is a source topic",
        ),
        (
            # A topic routed nowhere would fail every invocation (RoutingError) until retired.
            {
                "topics": "orders,refunds",
                "defaultStream": "false",
                "streams": '{"o": {"topics": "o*"}}',
            },
            "topics: 'refunds' matches no pattern in streams and defaultStream=false",
        ),
        (
            {"streams": '{"payments": {"topics": "paymnts"}}'},
            "streams.payments.topics: 'paymnts' matches no topic in topics",
        ),
    ],
    ids=[
        "out-of-range",
        "kafka-timeout",
        "partial-secret-arn",
        "two-clusters",
        "failure-topic-is-a-source",
        "unrouted-topic",
        "typo-route",
    ],
)
def test_app_bad_context_exits_with_one_line_naming_the_key(
    tmp_path: Path, bad: dict[str, str], message: str
) -> None:
    # GIVEN a context with one bad value (as the CLI hands context to the app)
    context = {"clusterArn": CLUSTER, "topics": "orders", **bad}
    # WHEN app.py runs
    result = run_app(context, tmp_path)
    # THEN it stops with one line naming the key and what is wrong, and no traceback
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("configuration error")]
    assert len(errors) == 1
    assert f"configuration error: {message}" in errors[0]
    assert "Traceback" not in result.stderr


def test_app_every_bad_key_is_named_in_one_run(tmp_path: Path) -> None:
    # GIVEN a context with a bad value, a typo, and an MSK SASL/SCRAM secret that is neither
    # complete, named for MSK, nor given its key (once, each took a synth of its own to find)
    context = {
        "clusterArn": CLUSTER,
        "topics": "orders",
        "batchSize": "0",
        "retryAtempts": "3",
        "authentication": "sasl_scram",
        "authSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:sink-login",
    }
    # WHEN app.py runs
    result = run_app(context, tmp_path)
    # THEN it stops with one line per problem, each naming its key, and no traceback
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("configuration")]
    named = ["batchSize=0", "'retryAtempts'", "partial ARN", "authSecretKmsKeyArn", "AmazonMSK_"]
    assert len(errors) == len(named)
    for key in named:
        assert sum(key in line for line in errors) == 1, (key, errors)


def test_app_json_list_from_the_command_line_synthesizes_a_mapping_each(
    builder: Callable[..., Synth],
) -> None:
    # GIVEN topics as `cdk synth -c topics='["orders","payments"]'` hands them to the app
    context = {**shipped_context(), "topics": '["orders","payments"]'}
    # WHEN synthesized
    synth = builder(context)
    # THEN each topic has its mapping
    mappings = synth.resources("AWS::Lambda::EventSourceMapping").values()
    assert sorted(m["Properties"]["Topics"][0] for m in mappings) == ["orders", "payments"]


def test_app_without_the_function_wheels_exits_with_one_line(tmp_path: Path) -> None:
    # GIVEN a valid context, and no wheelhouse (a synth before `make install`)
    context = {"clusterArn": CLUSTER, "topics": "orders"}
    env = offline_env(tmp_path) | {
        "CDK_CONTEXT_JSON": json.dumps(context),
        "CDK_OUTDIR": str(tmp_path / "out"),
    }
    wheelhouse = tmp_path / "wheelhouse"
    code = (
        "import pathlib, sys, infra.bundling, app;"
        "infra.bundling.WHEELHOUSE = pathlib.Path(sys.argv[1]); app.main()"
    )
    # WHEN app.py runs
    result = subprocess.run(
        [sys.executable, "-c", code, str(wheelhouse)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    # THEN it stops before bundling with one line naming the missing wheels and what to run
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("bundling error")]
    assert errors == [
        "bundling error: aws-lambda-powertools==3.37.0, jmespath==1.1.0,"
        f" typing-extensions==4.16.0: not in the arm64 wheelhouse {wheelhouse / 'arm64'}"
        " (run `make install`)"
    ]


def test_app_make_synth_offline_reports_template_nag_and_placeholders(tmp_path: Path) -> None:
    # GIVEN the pinned CDK CLI, the shipped cdk.json, and no AWS credentials anywhere
    out = tmp_path / "cdk.out"
    command = ["make", "--no-print-directory", "synth", f"CDK_OUT={out}"]
    # WHEN `make synth` runs
    result = subprocess.run(
        command, cwd=REPO, env=offline_env(tmp_path), capture_output=True, text=True, check=False
    )
    # THEN it succeeds with a template, a bundled asset, and a clean cdk-nag report
    assert result.returncode == 0, result.stdout + result.stderr
    template = json.loads((out / "MskKinesisSink.template.json").read_text(encoding="utf-8"))
    assert "AWS::Lambda::EventSourceMapping" in {r["Type"] for r in template["Resources"].values()}
    assets = [p for p in out.iterdir() if p.name.startswith("asset.") and p.is_dir()]
    assert [p.name for p in assets[0].iterdir() if p.name == "msk_kinesis_sink"] == [
        "msk_kinesis_sink"
    ]
    report = json.loads((out / "validation-report.json").read_text(encoding="utf-8"))
    assert [plugin["violations"] for plugin in report["pluginReports"]] in ([], [[]])
    # ...and it says so: where the template is, that cdk-nag found nothing unacknowledged,
    # and that the shipped cluster, account and topic are placeholders
    lines = result.stdout.splitlines()
    assert f"template  {out / 'MskKinesisSink.template.json'} (stack MskKinesisSink," in "\n".join(
        lines
    )
    assert any(
        line.startswith("cdk-nag   AwsSolutions: no unacknowledged findings (") for line in lines
    )
    [warning] = [line for line in lines if line.startswith("warning")]
    for placeholder in ("account 123456789012", "cluster example-cluster", "topic example-topic"):
        assert placeholder in warning
