"""The benchmark as a picture: each system's records/s against its bound, per workload and endpoint.

`panels()` decides what is drawn from a results document (pure code, tested); `draw()` renders
it with matplotlib's Agg backend (no display needed), which only the bench's venv installs.

python -m bench.chart [bench/results/latest.json]   # redraws latest.png from a saved run
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.report import HARNESS_BASELINE, cross_ratio, ratio

# W1-W6 and W8 run against `bound`, the client-side ceiling; W7 against Quix Streams without faults,
# the independent harness's baseline (it has no bound: its records go through the fault proxy).
CLASSIC_REFERENCE: Final = "bound"
CLASSIC_SYSTEMS: Final = ("handler", "handler-agg", "quix")
HARNESS_ENDPOINTS: Final = ("kinesalite20", "kinesalite20-faults")
HARNESS_SYSTEMS: Final = ("handler", "handler-agg", "handler-default", "quix")
LABELS: Final = {
    "handler": "handler, AGGREGATION=off",
    "handler-agg": "handler, AGGREGATION=on",
    "handler-default": "handler, default settings",
    "quix": "Quix Streams KinesisSink",
}
COLORS: Final = {
    "handler": "#9e9e9e",
    "handler-agg": "#1f77b4",
    "handler-default": "#2ca02c",
    "quix": "#ff7f0e",
}
MARKERS: Final = {"handler": "s", "handler-agg": "o", "handler-default": "D", "quix": "^"}
WORKLOAD_TITLES: Final = {
    "W1": "W1 distinct keys",
    "W2": "W2 keys x5",
    "W3": "W3 3 hot keys",
    "W4": "W4 null keys",
    "W5": "W5 100 B, by partition",
    "W6": "W6 one 6 MB event",
    "W8": "W8 36 headers a record",
}
ENDPOINT_TITLES: Final = {
    "kinesalite": "kinesalite (4 shards)",
    "stub": "stub: answers at once",
    "stub15": "stub15: 15 ms per call",
    "kinesalite20": "no faults",
    "kinesalite20-faults": "with faults\n(5 % record, 3 %\nrequest, 2 % lost)",
}


@dataclass(frozen=True, slots=True)
class Bar:
    system: str
    ratio: float  # records/s over the reference's records/s


@dataclass(frozen=True, slots=True)
class Group:
    label: str
    bars: tuple[Bar, ...]


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    reference: str  # what 1.0 means in this panel
    groups: tuple[Group, ...]


def panels(document: Mapping[str, Any]) -> list[Panel]:
    """One panel per endpoint of W1-W6 and W8 (workloads against `bound` there), then one for W7
    (each endpoint against Quix without faults, as the W7 goals count it)."""
    runs: Sequence[Mapping[str, Any]] = document["runs"]
    out: list[Panel] = []
    classic = [run for run in runs if run["endpoint"] not in HARNESS_ENDPOINTS]
    for endpoint in dict.fromkeys(run["endpoint"] for run in classic):
        groups = []
        for workload in sorted({run["workload"] for run in classic if run["endpoint"] == endpoint}):
            bars = []
            for system in CLASSIC_SYSTEMS:
                value = ratio(runs, workload, endpoint, system, CLASSIC_REFERENCE)
                if value is not None:
                    bars.append(Bar(system, value))
            if bars:
                groups.append(Group(WORKLOAD_TITLES.get(workload, workload), tuple(bars)))
        if groups:
            title = ENDPOINT_TITLES.get(endpoint, endpoint)
            out.append(Panel(f"W1-W6, W8 at {title}", "bound", tuple(groups)))
    harness_groups = []
    for endpoint in HARNESS_ENDPOINTS:
        bars = []
        for system in HARNESS_SYSTEMS:
            found = cross_ratio(runs, "W7", (endpoint, system), HARNESS_BASELINE)
            if found is not None:
                bars.append(Bar(system, found[0]))
        if bars:
            harness_groups.append(Group(ENDPOINT_TITLES[endpoint], tuple(bars)))
    if harness_groups:
        out.append(
            Panel(
                "W7 harness shape at kinesalite + 20 ms per call",
                "Quix without faults",
                tuple(harness_groups),
            )
        )
    return out


def draw(document: Mapping[str, Any], path: Path) -> Path:
    """Render `panels(document)` to a PNG at `path` (no display, no network): a dot per system
    and workload on a log axis, the reference at 1."""
    shown = panels(document)
    if not shown:
        raise ValueError("nothing to draw: the results hold no run with its reference")
    import matplotlib  # the bench's venv only; the panels above need nothing of it

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    columns = 2
    rows = -(-len(shown) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(12, 3.4 * rows + 0.8), squeeze=False)
    systems_seen: dict[str, None] = {}
    for axis, panel in zip(axes.flat, shown, strict=False):
        for row, group in enumerate(panel.groups):
            spread = len(group.bars) - 1
            for k, bar in enumerate(group.bars):
                systems_seen[bar.system] = None
                y = row + (k - spread / 2) * 0.16
                axis.scatter(
                    bar.ratio,
                    y,
                    s=36,
                    marker=MARKERS.get(bar.system, "o"),
                    color=COLORS.get(bar.system, "#444444"),
                    zorder=3,
                )
        axis.set_xscale("log")
        axis.set_xlim(0.002, 20)
        axis.axvline(1.0, color="black", linewidth=1)
        axis.set_yticks(range(len(panel.groups)), [group.label for group in panel.groups])
        axis.set_ylim(len(panel.groups) - 0.5, -0.5)
        axis.set_title(f"{panel.title}\nrecords/s ÷ {panel.reference}", fontsize=9, loc="left")
        axis.grid(axis="x", which="major", linewidth=0.5)
        axis.grid(axis="x", which="minor", linewidth=0.2)
        axis.tick_params(labelsize=8)
    for axis in list(axes.flat)[len(shown) :]:
        axis.set_visible(False)
    handles = [
        plt.Line2D(
            [],
            [],
            linestyle="",
            marker=MARKERS.get(system, "o"),
            color=COLORS.get(system, "#444444"),
        )
        for system in sorted(systems_seen, key=_order)
    ]
    figure.legend(
        handles,
        [LABELS.get(system, system) for system in sorted(systems_seen, key=_order)],
        loc="lower center",
        ncol=len(handles),
        fontsize=8,
        frameon=False,
    )
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _order(system: str) -> int:
    return list(LABELS).index(system) if system in LABELS else len(LABELS)


def main(argv: list[str]) -> int:
    results = Path(argv[0]) if argv else Path(__file__).parent / "results" / "latest.json"
    path = draw(json.loads(results.read_text()), results.with_suffix(".png"))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
