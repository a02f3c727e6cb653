"""cdk-nag (AwsSolutions, via the Validations API) and cfn-lint over every synthesized variant."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from cdk_nag import AwsSolutionsChecks
from cfnlint.api import lint_all

from tests.infra.conftest import VARIANTS, Synth, feature_flags, shipped_context

pytestmark = pytest.mark.infra

# A written reason, not a placeholder: long enough to say what and why.
MIN_REASON_CHARS = 60
# Rules of synth's CloudFormation Validate plugin (not cdk-nag's), acknowledged the same way.
VALIDATE_RULES = "CloudFormation-Validate::"


def nag_findings(synth: Synth) -> list[str]:
    report = AwsSolutionsChecks().validate_scope(synth.stack)
    return sorted(
        f"{violation.rule_name} @ {resource.resource_logical_id}"
        for violation in report.violations
        for resource in violation.violating_resources
    )


def test_nag_no_unacknowledged_findings(all_synths: dict[str, Synth]) -> None:
    for name, synth in all_synths.items():
        # GIVEN a synthesized variant
        # WHEN the AwsSolutions pack validates it
        report = AwsSolutionsChecks().validate_scope(synth.stack)
        # THEN nothing is left unacknowledged
        assert nag_findings(synth) == [], name
        assert report.success, name


def build_recording(
    builder: Callable[..., Synth], context: Mapping[str, object]
) -> tuple[list[tuple[str, str]], Synth]:
    """Build a stack with its cdk-nag acknowledgements recorded instead of applied."""
    recorded: list[tuple[str, str]] = []
    original = cdk.Validations.acknowledge

    def record(self: cdk.Validations, *rules: cdk.Acknowledgment) -> None:
        recorded.extend((rule.id, rule.reason) for rule in rules)
        # CloudFormation Validate findings fail the synth itself: those still apply.
        validate = [rule for rule in rules if rule.id.startswith(VALIDATE_RULES)]
        if validate:
            original(self, *validate)

    cdk.Validations.acknowledge = record  # type: ignore[method-assign]
    try:
        synth = builder(context)
    finally:
        cdk.Validations.acknowledge = original  # type: ignore[method-assign]
    return recorded, synth


CONTEXTS: Mapping[str, Mapping[str, object]] = {
    "default": shipped_context(),
    **{name: {**feature_flags(), **context} for name, context in VARIANTS.items()},
}


@pytest.mark.parametrize("variant", sorted(CONTEXTS))
def test_nag_every_acknowledgement_has_a_reason_and_a_finding(
    variant: str, builder: Callable[..., Synth]
) -> None:
    # GIVEN a variant built without its acknowledgements applied
    recorded, bare = build_recording(builder, CONTEXTS[variant])
    # WHEN the AwsSolutions pack validates it
    findings = {finding.split(" @ ")[0] for finding in nag_findings(bare)}
    # THEN each acknowledgement answers a real finding, every finding is acknowledged,
    # and every acknowledgement carries a written reason
    nag = {rule_id for rule_id, _ in recorded if not rule_id.startswith(VALIDATE_RULES)}
    assert nag == findings
    for rule_id, reason in recorded:
        assert len(reason) >= MIN_REASON_CHARS, rule_id
    # AND the CloudFormation Validate acknowledgements are one per stream that states its
    # RecordDistributionStrategy (the plugin's schema lags CloudFormation's)
    stating = [
        resource
        for resource in bare.template_json["Resources"].values()
        if "RecordDistributionStrategy" in resource.get("Properties", {})
    ]
    validate = [rule_id for rule_id, _ in recorded if rule_id.startswith(VALIDATE_RULES)]
    assert validate == [f"{VALIDATE_RULES}F3002"] * len(stating)


def cfn_lint_matches(template: dict[str, Any]) -> list[Any]:
    return list(lint_all(json.dumps(template)))


@pytest.mark.parametrize("variant", sorted(CONTEXTS))
def test_cfn_lint_reports_no_errors(variant: str, all_synths: dict[str, Synth]) -> None:
    # GIVEN a synthesized template (one per test: cfn-lint takes seconds over each)
    # WHEN cfn-lint checks it
    matches = cfn_lint_matches(all_synths[variant].template_json)
    # THEN it finds no errors (other findings are printed for the record)
    errors = [str(m) for m in matches if m.rule.id.startswith("E")]
    assert errors == []
    for match in matches:
        print(variant, match)


def test_cfn_lint_reports_only_the_known_cdk_warning(default_synth: Synth) -> None:
    # GIVEN the shipped template
    # WHEN cfn-lint checks it
    ids = {m.rule.id for m in cfn_lint_matches(default_synth.template_json)}
    errors_and_warnings = {rule_id for rule_id in ids if rule_id[0] in "EW"}
    # THEN at most W3005 remains: CDK makes the function DependsOn its role, which the
    # role ARN reference already implies; harmless, and not ours to remove
    assert errors_and_warnings <= {"W3005"}


def test_bundled_asset_is_in_the_template(default_synth: Synth, tmp_path: Path) -> None:
    # GIVEN the shipped stack, bundled
    function = next(iter(default_synth.resources("AWS::Lambda::Function").values()))
    # WHEN the function's code is read
    code = function["Properties"]["Code"]
    # THEN it points at a zipped asset (no Docker, no inline code)
    assert code["S3Key"].endswith(".zip")
