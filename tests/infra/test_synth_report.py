"""infra.synth_report over real cloud assemblies: what `make synth` tells the user."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from infra.synth_report import EXAMPLE_ACCOUNT, EXAMPLE_CLUSTER, EXAMPLE_TOPIC, report
from tests.infra.conftest import RUNBOOK_URL, feature_flags, shipped_context

pytestmark = pytest.mark.infra

OWN_CLUSTER = (
    "arn:aws:kafka:eu-west-1:111122223333:cluster/prod/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-1"
)


def assemble(out: Path, context: Mapping[str, object]) -> Path:
    """Synthesize the app into `out` as app.py does (cdk-nag included), bundling skipped."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    import aws_cdk as cdk
    from cdk_nag import AwsSolutionsChecks

    from infra.config import SinkConfig
    from infra.stack import MskKinesisSinkStack

    app = cdk.App(outdir=str(out), context={**context, "aws:cdk:bundling-stacks": []})
    config = SinkConfig.from_context(app.node.get_all_context())
    MskKinesisSinkStack(app, config.stack_name, config=config)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()
    return out


def test_synth_report_shipped_example_values_are_the_ones_it_warns_about() -> None:
    # GIVEN the shipped cdk.json
    context = shipped_context()
    # WHEN its example values are compared with what the report looks for
    # THEN they are the same, so the warning cannot drift away from cdk.json
    assert f":{EXAMPLE_ACCOUNT}:cluster/{EXAMPLE_CLUSTER}/" in context["clusterArn"]
    assert context["topics"] == [EXAMPLE_TOPIC]


def test_synth_report_own_values_no_warning_and_linked_runbook(tmp_path: Path) -> None:
    # GIVEN an assembly for a real-looking cluster with a runbook URL
    out = assemble(
        tmp_path / "out",
        {
            **feature_flags(),
            "clusterArn": OWN_CLUSTER,
            "topics": "orders",
            "runbookUrl": RUNBOOK_URL,
        },
    )
    # WHEN reported
    lines, clean = report(out)
    # THEN the template and a clean cdk-nag verdict are named, and nothing is left to set
    assert clean
    assert lines[0].startswith(f"template  {out / 'MskKinesisSink.template.json'} (stack ")
    assert lines[1].startswith("cdk-nag   AwsSolutions: no unacknowledged findings (")
    assert len(lines) == 2


def test_synth_report_unlinked_runbook_is_noted(tmp_path: Path) -> None:
    # GIVEN an assembly without runbookUrl
    out = assemble(
        tmp_path / "out", {**feature_flags(), "clusterArn": OWN_CLUSTER, "topics": "orders"}
    )
    # WHEN reported
    lines, _ = report(out)
    # THEN a note says alarm descriptions are not links yet, and no placeholder warning appears
    assert [line.split()[0] for line in lines] == ["template", "cdk-nag", "note"]
    assert "runbookUrl" in lines[2]


def test_synth_report_counts_unacknowledged_findings(tmp_path: Path) -> None:
    # GIVEN an assembly whose validation report holds a finding (as cdk-nag writes one)
    out = assemble(
        tmp_path / "out", {**feature_flags(), "clusterArn": OWN_CLUSTER, "topics": "orders"}
    )
    finding = {
        "pluginName": "AwsSolutionsChecks",
        "violations": [
            {"ruleName": "AwsSolutions-IAM5", "violatingResources": [{"resourceLogicalId": "R"}]}
        ],
    }
    (out / "validation-report.json").write_text(json.dumps({"pluginReports": [finding]}))
    # WHEN reported
    lines, clean = report(out)
    # THEN it is not clean, and the line says how many and where to look
    assert not clean
    assert "1 unacknowledged finding(s); see " in lines[1]


def test_synth_report_capacity_warnings_are_shown_not_counted_as_findings(
    tmp_path: Path,
) -> None:
    # GIVEN an assembly whose settings can't carry the stated target: 10 pollers on 4
    # partitions, 2 provisioned shards for 20 MB/s
    out = assemble(
        tmp_path / "out",
        {
            **feature_flags(),
            "clusterArn": OWN_CLUSTER,
            "topics": "orders",
            "runbookUrl": RUNBOOK_URL,
            "maxPollers": 10,
            "streamMode": "provisioned",
            "shardCount": 2,
            "topicPartitions": 4,
            "targetMbPerSecond": 20,
            "averageRecordBytes": 2000,
        },
    )
    # WHEN reported
    lines, clean = report(out)
    # THEN synth is still clean (warnings never refuse), and each warning has its line
    assert clean
    assert lines[1].startswith("cdk-nag   AwsSolutions: no unacknowledged findings (")
    warnings = [line for line in lines if line.startswith("warning ")]
    assert any("maxPollers=10 is above the topic's 4 partitions" in w for w in warnings)
    assert any("a provisioned stream of 2 shards" in w and "needs" in w for w in warnings)
