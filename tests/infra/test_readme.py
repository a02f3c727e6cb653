"""The README's deploy and runbook sections keep up with the code: every key, every alarm."""

from __future__ import annotations

import re

import pytest

from infra.config import CONTEXT_KEYS
from tests.infra.conftest import REPO, Synth


def section(name: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- SECTION: {name} .*?-->(.*?)<!-- /SECTION: {name} -->", text, re.S)
    assert match is not None, name
    return match.group(1)


def test_readme_documents_every_context_key() -> None:
    # GIVEN the deploy section's configuration table
    deploy = section("deploy")
    # WHEN each documented context key is looked up
    missing = [key for key in CONTEXT_KEYS if f"`{key}`" not in deploy]
    # THEN none is missing
    assert missing == []


@pytest.mark.infra
def test_readme_runbook_has_an_entry_per_alarm(all_synths: dict[str, Synth]) -> None:
    # GIVEN the runbook and the alarms of every variant
    runbook = section("runbook")
    names = {
        re.sub(r"^MappingDiscarded-.*$", "MappingDiscarded-<topic>", name)
        for synth in all_synths.values()
        for name in synth.stack.monitoring.alarms
    }
    # WHEN each alarm is looked up
    missing = [name for name in sorted(names) if f"| `{name}` |" not in runbook]
    # THEN each has a line saying what it means and what to do
    assert missing == []
