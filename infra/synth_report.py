"""What `make synth` built: where the template is, cdk-nag's verdict, and what still needs setting.

Reads only the cloud assembly (cdk.out/): `python -m infra.synth_report cdk.out`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

# The example values cdk.json ships with (tests/infra keeps these in step with it).
EXAMPLE_ACCOUNT: Final = "123456789012"
EXAMPLE_CLUSTER: Final = "example-cluster"
EXAMPLE_TOPIC: Final = "example-topic"
# Alarm descriptions point here when runbookUrl is not set (see infra.monitoring).
_UNLINKED_RUNBOOK: Final = "Runbook: docs/runbook.md#"


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _stacks(out_dir: Path, manifest: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, artifact in manifest.get("artifacts", {}).items():
        if artifact.get("type") == "aws:cloudformation:stack":
            yield name, artifact


def _acknowledged(out_dir: Path, artifact: dict[str, Any]) -> int:
    metadata_file = artifact.get("additionalMetadataFile")
    if metadata_file is None or not (out_dir / metadata_file).is_file():
        return 0
    entries = _read(out_dir / metadata_file).values()
    return sum(
        len(entry["data"])
        for per_path in entries
        for entry in per_path
        if entry.get("type") == "aws:cdk:acknowledged-rules"
    )


def _violations(out_dir: Path) -> list[dict[str, Any]]:
    path = out_dir / "validation-report.json"
    if not path.is_file():
        return []
    return [
        violation
        for plugin in _read(path).get("pluginReports", [])
        for violation in plugin.get("violations", [])
    ]


def _is_warning(violation: dict[str, Any]) -> bool:
    """A construct's own warning annotation (e.g. capacity), not a rule finding."""
    return violation.get("severity") == "warning" and bool(
        violation.get("ruleMetadata", {}).get("cdk:annotation")
    )


def _findings(out_dir: Path) -> int:
    return sum(
        max(1, len(violation.get("violatingResources", [])))
        for violation in _violations(out_dir)
        if not _is_warning(violation)
    )


def _warnings(out_dir: Path) -> list[str]:
    """The stack's own warnings, e.g. capacity settings that can't help (infra.plan)."""
    return [str(v.get("description", "")) for v in _violations(out_dir) if _is_warning(v)]


def _placeholders(template: dict[str, Any], environment: str) -> list[str]:
    found = []
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") != "AWS::Lambda::EventSourceMapping":
            continue
        props = resource.get("Properties", {})
        arn = str(props.get("EventSourceArn", ""))
        if f":{EXAMPLE_ACCOUNT}:" in arn:
            found.append(f"account {EXAMPLE_ACCOUNT}")
        if f":cluster/{EXAMPLE_CLUSTER}/" in arn:
            found.append(f"cluster {EXAMPLE_CLUSTER}")
        if EXAMPLE_TOPIC in props.get("Topics", []):
            found.append(f"topic {EXAMPLE_TOPIC}")
    if f"//{EXAMPLE_ACCOUNT}/" in environment:
        found.append(f"account {EXAMPLE_ACCOUNT}")
    return sorted(set(found))


def report(out_dir: Path) -> tuple[list[str], bool]:
    """Lines to print, and whether the assembly is fit to deploy as far as synth can tell."""
    manifest = _read(out_dir / "manifest.json")
    lines: list[str] = []
    acknowledged = 0
    placeholders: list[str] = []
    unlinked = False
    for name, artifact in _stacks(out_dir, manifest):
        template_path = out_dir / artifact["properties"]["templateFile"]
        template = _read(template_path)
        resources = template.get("Resources", {})
        lines.append(
            f"template  {_shown(template_path)}"
            f" (stack {artifact.get('displayName', name)}, {len(resources)} resources)"
        )
        acknowledged += _acknowledged(out_dir, artifact)
        placeholders += _placeholders(template, str(artifact.get("environment", "")))
        unlinked = unlinked or any(
            _UNLINKED_RUNBOOK in str(r.get("Properties", {}).get("AlarmDescription", ""))
            for r in resources.values()
        )
    findings = _findings(out_dir)
    if findings:
        lines.append(
            f"cdk-nag   AwsSolutions: {findings} unacknowledged finding(s);"
            f" see {_shown(out_dir / 'validation-report.json')}"
        )
    else:
        lines.append(
            f"cdk-nag   AwsSolutions: no unacknowledged findings ({acknowledged} acknowledged,"
            " each with its reason beside its resource)"
        )
    if placeholders:
        lines.append(
            f"warning   placeholders from the shipped cdk.json ({', '.join(placeholders)}):"
            ' set clusterArn and topics (cdk.json, or CDK_ARGS="-c key=value") before deploying'
        )
    lines += [f"warning   {warning}" for warning in _warnings(out_dir)]
    if unlinked:
        lines.append(
            "note      alarm descriptions name docs/runbook.md; set runbookUrl to where your"
            " team reads it to make them links"
        )
    return lines, findings == 0


def main(argv: Sequence[str]) -> int:
    out_dir = Path(argv[0] if argv else "cdk.out")
    lines, clean = report(out_dir)
    print("\n".join(lines))
    return 0 if clean else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
