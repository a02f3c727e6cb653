"""The README and the pages it links keep up with the code: every key, every setting, every alarm,
every link."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.config import CONTEXT_KEYS, SinkConfig
from infra.monitoring import RUNBOOK_PATH, runbook_anchor
from msk_kinesis_sink.settings import SETTING_KEYS, Settings
from tests.infra.conftest import REPO, Synth, shipped_context

README = REPO / "README.md"
RUNBOOK = REPO / RUNBOOK_PATH
DEPLOY = REPO / "docs" / "deploy.md"
GUARANTEE = REPO / "docs" / "guarantee.md"
SOURCES = REPO / "docs" / "sources.md"
# Every page a reader reaches from the README.
PAGES = (README, *sorted((REPO / "docs").glob("*.md")), REPO / "bench" / "README.md")


def _prose_lines(path: Path) -> Iterator[str]:
    """The lines of a Markdown file outside fenced code blocks."""
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            yield line


def section(path: Path, heading: str) -> str:
    """The text under a heading, up to the next heading of the same or a higher level."""
    text = path.read_text(encoding="utf-8")
    match = re.search(rf"^(#+) {re.escape(heading)}\n", text, re.M)
    assert match is not None, (path, heading)
    level = len(match.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(text, match.end())
    return text[match.end() : end.start() if end else len(text)]


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    headings = (re.match(r"^#{1,6} (.+)$", line) for line in _prose_lines(path))
    return {runbook_anchor(match.group(1).strip()) for match in headings if match}


def runbook_entries() -> set[str]:
    """The entries of docs/runbook.md: its "### `<entry>`" headings."""
    text = RUNBOOK.read_text(encoding="utf-8")
    return set(re.findall(r"^### `([^`]+)`$", text, re.M))


def entry_of(alarm: str) -> str:
    """The runbook entry of an alarm: per-mapping alarms share one, `<Entry>-<topic>`; a
    routed stream's alarms share the stream's entry."""
    alarm = re.sub(r"^(Stream[A-Za-z]+)-.*$", r"\1", alarm)
    return re.sub(r"^(Mapping[A-Za-z]+)-.*$", r"\1-<topic>", alarm)


class _ReadingEnv(dict[str, str]):
    """An environment that remembers every variable asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return super().__contains__(key)


def test_readme_first_commands_are_make_demo_and_make_test() -> None:
    # GIVEN the README's first code block
    text = README.read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block is not None
    # WHEN its commands are read
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    # THEN they are the two a fresh machine needs, in that order
    assert commands == ["make demo", "make test"]


def test_docs_deploy_documents_every_context_key() -> None:
    # GIVEN the configuration table of docs/deploy.md
    table = section(DEPLOY, "Configuration (CDK context keys)")
    # WHEN each context key the stack accepts is looked up (but the function's own settings,
    # which the function's configuration table names beside their variables)
    missing = [key for key in CONTEXT_KEYS if key not in SETTING_KEYS and f"`{key}`" not in table]
    # THEN none is missing
    assert missing == []


def test_docs_guarantee_names_the_context_key_of_each_function_setting() -> None:
    # GIVEN the function configuration table, a row per variable
    table = section(GUARANTEE, "Function configuration")
    rows = {row.split("`")[1]: row for row in table.splitlines() if row.startswith("| `")}
    # WHEN each context key of the function's settings is looked up in its variable's row
    misplaced = [
        key for key, variable in SETTING_KEYS.items() if f"(`{key}`)" not in rows[variable.name]
    ]
    # THEN each is named there, and the deploy page points to that table
    assert misplaced == []
    assert "guarantee.md#function-configuration" in section(
        DEPLOY, "Configuration (CDK context keys)"
    )


def test_docs_guarantee_documents_every_function_setting() -> None:
    # GIVEN every environment variable the function's settings parser reads
    env = _ReadingEnv({"STREAM_NAME": "orders-mirror"})
    Settings.from_env(env)
    assert len(env.asked) >= 10  # the parser really went through its variables
    # WHEN each is looked up in the function configuration table
    table = section(GUARANTEE, "Function configuration")
    missing = sorted(name for name in env.asked if f"`{name}`" not in table)
    # THEN none is missing
    assert missing == []


def test_readme_points_to_the_runbook() -> None:
    # GIVEN the README / WHEN read / THEN it links docs/runbook.md, which exists
    assert f"]({RUNBOOK_PATH})" in README.read_text(encoding="utf-8")
    assert RUNBOOK.is_file()


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_docs_links_resolve(page: Path) -> None:
    # GIVEN a page of the documentation
    assert page.is_file()
    broken = []
    for line in _prose_lines(page):
        # WHEN each relative link on it is followed (files and anchors)
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not followed offline
            path_part, _, anchor = target.partition("#")
            linked = (page.parent / path_part).resolve() if path_part else page
            lands = linked.exists() and (
                not anchor or linked.suffix != ".md" or anchor in anchors(linked)
            )
            if not lands:
                broken.append(target)
    # THEN every one lands on a file, and on a heading of it
    assert broken == []


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


def test_sources_doc_every_example_is_accepted_by_synth() -> None:
    # GIVEN each cdk.json example of docs/sources.md
    text = SOURCES.read_text(encoding="utf-8")
    examples = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]
    assert len(examples) == 5
    for example in examples:
        # WHEN it is merged into the shipped cdk.json, as a reader would edit it
        config = SinkConfig.from_context({**shipped_context(), **example})
        # THEN it is accepted, with the keys it shows
        assert config.source.topics[0].topic == example["topics"][0]
