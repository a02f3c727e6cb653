"""What the documents promise a newcomer: sample output that matches its command, terms spelled
out, one name per setting and context, the first run's cost."""

from __future__ import annotations

import re
from pathlib import Path

from localloop.demo import ROUTED_LANES

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", ROOT / "bench" / "README.md", *(ROOT / "docs").glob("*.md")])
# What fits on a first screen of the README, about 40 lines.
FIRST_SCREEN = 3_000


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_routing_sample_output_is_what_its_command_prints() -> None:
    # GIVEN the routing demo's command and sample output in docs/routing.md
    section = (ROOT / "docs" / "routing.md").read_text().split("## Trying it locally", 1)[1]
    command = re.search(r"`(make demo DEMO_ARGS=[^`]+)`", section)
    assert command is not None
    records = re.search(r"--records (\d+)", command.group(1))
    sample = re.findall(r"^stream +([\w.-]+): (\d+) records .*?: (\d+) delivered", section, re.M)

    # THEN the sample has one line per routed stream, and together they deliver the records
    # the command produces (the demo splits them between the two topics)
    assert "--routes" in command.group(1)
    assert {name for name, _, _ in sample} == set(ROUTED_LANES.values())
    total = int(records.group(1)) if records else 20_000
    assert sum(int(delivered) for _, _, delivered in sample) == total
    assert all(int(read) >= int(delivered) for _, read, delivered in sample)


def test_readme_spells_out_esm_on_its_first_screen_before_using_it() -> None:
    # GIVEN the README as a newcomer reads it
    text = _flat((ROOT / "README.md").read_text())
    # THEN "ESM" is first met as "event source mapping (ESM)", on the first screen
    first = text.index("ESM")
    assert text[: first + 4].endswith("event source mapping (ESM)")
    assert first < FIRST_SCREEN


def test_readme_first_screen_says_what_the_first_run_costs() -> None:
    # GIVEN the README's first screen
    screen = _flat((ROOT / "README.md").read_text())[:FIRST_SCREEN]
    # THEN it says how long the first run takes and how much disk it fills, the bench's too
    cost = screen[screen.index("The first run") :]
    assert re.search(r"\d+ minutes?", cost)
    assert re.search(r"\d+(\.\d+)? GB", cost)
    assert re.search(r"\d+ MB", cost) and "bench" in cost


def test_aggregation_setting_has_one_name_per_context() -> None:
    # GIVEN every code span that sets or names the aggregation setting, in every document
    spans = {
        (path.relative_to(ROOT).as_posix(), span)
        for path in DOCS
        for span in re.findall(r"`([^`\n]+)`", path.read_text())
        if re.search(r"(?i)\baggregation\b\s*[\"']?\s*[=:]", span)
    }
    # THEN the function's variable is AGGREGATION, the cdk.json key is aggregation (as JSON or
    # with -c), and no other spelling appears
    function = re.compile(r"(.* )?AGGREGATION=(on|off)")
    context = re.compile(
        r'"aggregation": "(on|off)"|aggregation: "(on|off)"|-c aggregation=(on|off)'
    )
    wrong = [
        (where, span)
        for where, span in spans
        if not (function.fullmatch(span) or context.fullmatch(span))
    ]
    assert spans and not wrong, wrong
