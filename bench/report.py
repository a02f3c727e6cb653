"""The benchmark's table and goal ratios, computed from one run's results (pure code)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

COLUMNS: Final = (
    ("workload", "wl", "{}"),
    ("endpoint", "endpoint", "{}"),
    ("system", "system", "{}"),
    ("records_per_s", "rec/s", "{:,.0f}"),
    ("mb_per_s", "MB/s", "{:.2f}"),
    ("calls_per_1k", "calls/1k", "{:.1f}"),
    ("put_units_per_1k", "PUT u/1k", "{:.1f}"),
    ("cpu_us_per_record", "CPU us/rec", "{:.1f}"),
    ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
)


def table(runs: Sequence[Mapping[str, Any]]) -> str:
    """A fixed-width text table (also valid Markdown)."""
    header = [title for _, title, _ in COLUMNS]
    rows = [[fmt.format(run[key]) for key, _, fmt in COLUMNS] for run in runs]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.ljust(width) if i < 3 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


@dataclass(frozen=True, slots=True)
class Goal:
    name: str
    measured: float | None
    target: float
    detail: str

    @property
    def met(self) -> bool | None:
        return None if self.measured is None else self.measured >= self.target

    def line(self) -> str:
        if self.measured is None:
            return f"[ -- ] {self.name}: not measured in this run"
        mark = "ok" if self.met else "MISS"
        return (
            f"[{mark:^4}] {self.name}: {self.measured:.2f} (goal >= {self.target:g}) {self.detail}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "goal": self.name,
            "ratio": None if self.measured is None else round(self.measured, 3),
            "target": self.target,
            "met": self.met,
            "detail": self.detail,
        }


def _find(
    runs: Sequence[Mapping[str, Any]], workload: str, endpoint: str, system: str
) -> Mapping[str, Any] | None:
    for run in runs:
        if (run["workload"], run["endpoint"], run["system"]) == (workload, endpoint, system):
            return run
    return None


def _ratio(
    runs: Sequence[Mapping[str, Any]],
    workload: str,
    endpoint: str,
    a: str,
    b: str,
    field: str = "records_per_s",
) -> float | None:
    first, second = _find(runs, workload, endpoint, a), _find(runs, workload, endpoint, b)
    if first is None or second is None or not second[field]:
        return None
    return float(first[field]) / float(second[field])


def goals(runs: Sequence[Mapping[str, Any]], import_ms: Mapping[str, float]) -> list[Goal]:
    """Every goal of the benchmark, as a ratio where bigger is better."""
    out: list[Goal] = []
    endpoints = sorted({run["endpoint"] for run in runs if run["workload"] == "W1"})
    for endpoint in endpoints:
        out.append(
            Goal(
                f"W1 {endpoint}: handler / bound records/s",
                _ratio(runs, "W1", endpoint, "handler", "bound"),
                0.9,
                "distinct keys: strict order costs nothing, any gap is overhead",
            )
        )
    out.append(
        Goal(
            "W1 stub15: handler / quix records/s",
            _ratio(runs, "W1", "stub15", "handler", "quix"),
            3.0,
            "parallel partitions vs one worker",
        )
    )
    for workload in ("W2", "W3", "W4"):
        plain = _ratio(runs, workload, "stub15", "handler", "bound")
        out.append(
            Goal(
                f"{workload} stub15: handler-agg / bound records/s",
                _ratio(runs, workload, "stub15", "handler-agg", "bound"),
                1.0,
                "plain handler / bound: " + ("n/a" if plain is None else f"{plain:.2f}"),
            )
        )
    plain_units = _find(runs, "W5", "stub", "handler")
    agg_units = _find(runs, "W5", "stub", "handler-agg")
    units = None
    if plain_units and agg_units and agg_units["put_units_per_1k"]:
        units = plain_units["put_units_per_1k"] / agg_units["put_units_per_1k"]
    out.append(Goal("W5 stub: PUT payload units, handler / handler-agg", units, 50.0, "x fewer"))
    w6 = [run for run in runs if run["workload"] == "W6" and run["system"] == "handler"]
    for run in w6:
        growth = float(run.get("rss_growth_mb", 0.0))
        out.append(
            Goal(
                f"W6 {run['endpoint']}: 4 x payload / handler peak RSS growth",
                4 * float(run["event_mb"]) / growth if growth > 0 else None,
                1.0,
                f"growth {growth:.0f} MB for a {run['event_mb']:.1f} MB event;"
                f" peak RSS {run['peak_rss_mb']:.0f} MB of a 512 MB function",
            )
        )
    if import_ms.get("handler") and import_ms.get("boto3"):
        out.append(
            Goal(
                "cold start: 1.5 x import boto3 / import handler",
                1.5 * import_ms["boto3"] / import_ms["handler"],
                1.0,
                f"handler {import_ms['handler']:.0f} ms, boto3 {import_ms['boto3']:.0f} ms",
            )
        )
    return out
