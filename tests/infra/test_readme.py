"""The README's deploy section and docs/runbook.md keep up with the code: every key, every alarm."""

from __future__ import annotations

import re

import pytest

from infra.config import CONTEXT_KEYS
from infra.monitoring import RUNBOOK_PATH, runbook_anchor
from tests.infra.conftest import REPO, Synth

RUNBOOK = REPO / RUNBOOK_PATH


def section(name: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- SECTION: {name} .*?-->(.*?)<!-- /SECTION: {name} -->", text, re.S)
    assert match is not None, name
    return match.group(1)


def runbook_entries() -> set[str]:
    """The entries of docs/runbook.md: its "### `<entry>`" headings."""
    text = RUNBOOK.read_text(encoding="utf-8")
    return set(re.findall(r"^### `([^`]+)`$", text, re.M))


def entry_of(alarm: str) -> str:
    """The runbook entry of an alarm: per-mapping alarms share one, `<Entry>-<topic>`; a
    routed stream's alarms share the stream's entry."""
    alarm = re.sub(r"^(Stream[A-Za-z]+)-.*$", r"\1", alarm)
    return re.sub(r"^(Mapping[A-Za-z]+)-.*$", r"\1-<topic>", alarm)


def test_readme_documents_every_context_key() -> None:
    # GIVEN the deploy section's configuration table (and the routing keys' own page)
    deploy = section("deploy") + (REPO / "docs" / "routing.md").read_text(encoding="utf-8")
    # WHEN each documented context key is looked up
    missing = [key for key in CONTEXT_KEYS if f"`{key}`" not in deploy]
    # THEN none is missing
    assert missing == []


def test_readme_runbook_section_points_to_the_runbook() -> None:
    # GIVEN the README's runbook section
    # WHEN read
    # THEN it sends the reader to docs/runbook.md, which exists
    assert f"]({RUNBOOK_PATH})" in section("runbook")
    assert RUNBOOK.is_file()


@pytest.mark.infra
def test_runbook_has_exactly_one_entry_per_alarm(all_synths: dict[str, Synth]) -> None:
    # GIVEN the runbook and the alarms of every variant
    alarms = {
        entry_of(name) for synth in all_synths.values() for name in synth.stack.monitoring.alarms
    }
    # WHEN they are compared
    entries = runbook_entries()
    # THEN each alarm has an entry, and no entry describes an alarm that does not exist
    assert sorted(alarms - entries) == []
    assert sorted(entries - alarms) == []


@pytest.mark.infra
def test_runbook_every_alarm_description_links_to_its_entry(all_synths: dict[str, Synth]) -> None:
    for variant, synth in all_synths.items():
        # GIVEN a variant's alarms and the runbook location it was configured with
        base = synth.stack.config.alarms.runbook_url or RUNBOOK_PATH
        resources = synth.template_json["Resources"]
        for name, alarm in synth.stack.monitoring.alarms.items():
            # WHEN the alarm's description is read
            props = resources[synth.stack.get_logical_id(alarm.node.default_child)]["Properties"]
            # THEN it ends with a link to its own entry, at an anchor the runbook has
            link = f"Runbook: {base}#{runbook_anchor(entry_of(name))}"
            assert props["AlarmDescription"].endswith(link), (variant, name)
            assert runbook_anchor(entry_of(name)) in {runbook_anchor(e) for e in runbook_entries()}


def test_runbook_anchor_follows_github_headings() -> None:
    # GIVEN runbook headings as GitHub renders them
    # WHEN their anchors are derived
    # THEN they are GitHub's: lower case, punctuation other than - and _ dropped
    assert runbook_anchor("OffsetLag") == "offsetlag"
    assert runbook_anchor("MappingNotPolling-<topic>") == "mappingnotpolling-topic"
