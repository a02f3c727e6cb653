"""The benchmark's table and goal ratios, computed from one run's results (pure code)."""

from __future__ import annotations

import statistics
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


def audit_verdict(run: Mapping[str, Any]) -> str:
    """`ok`, what the audit of the stream found wrong, or `-` when the run was not audited."""
    audit = run.get("audit")
    if audit is None:
        return "-"
    if audit["ok"]:
        return f"ok ({audit['duplicates']:,} dup)"
    problems = ("lost", "out_of_order", "corrupted", "undecodable", "unexpected")
    return "FAILED: " + ", ".join(f"{name} {audit[name]}" for name in problems if audit[name])


def median_of_rounds(rounds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One run standing for several rounds of the same (workload, endpoint, system).

    The median round by time gives the figures; every round's records/s is kept. A round whose
    audit failed makes the whole run fail it (its audit is the one kept): a fast round that lost
    records must not hide behind a median.
    """
    by_time = sorted(rounds, key=lambda run: float(run["seconds"]))
    out = dict(by_time[len(by_time) // 2])
    out["rounds_records_per_s"] = [run["records_per_s"] for run in rounds]
    audits = [run["audit"] for run in rounds if "audit" in run]
    if audits:
        failed = [audit for audit in audits if not audit["ok"]]
        out["audit"] = failed[0] if failed else out["audit"]
        out["audits_ok"] = f"{len(audits) - len(failed)}/{len(audits)}"
    return out


def table(runs: Sequence[Mapping[str, Any]]) -> str:
    """A fixed-width text table (also valid Markdown)."""
    header = [*(title for _, title, _ in COLUMNS), "audit"]
    rows = [
        [*(fmt.format(run[key]) for key, _, fmt in COLUMNS), audit_verdict(run)] for run in runs
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.ljust(width) if i < 3 or i == len(cells) - 1 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def harness_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """Where each harness run's time went: every round's records/s, who was busy for how long
    (the sink's process, kinesalite, the fault proxy), invocations and what was injected."""
    header = (
        "endpoint",
        "system",
        "rec/s per round",
        "wall s",
        "sink CPU s",
        "kinesalite CPU s",
        "proxy CPU s",
        "invocations",
        "records sent",
        "in handler s",
        "put p50 ms",
        "injected: rec thr / req thr / 5xx / lost",
    )
    rows = []
    for run in runs:
        if "rounds_records_per_s" not in run:
            continue
        notes = run.get("notes", {})
        proxy = run.get("proxy", {})
        injected = (
            proxy.get("records_throttled", 0),
            proxy.get("requests_throttled", 0),
            proxy.get("requests_5xx", 0),
            proxy.get("responses_lost", 0),
        )
        rows.append(
            [
                run["endpoint"],
                run["system"],
                " / ".join(f"{rate:,.0f}" for rate in run["rounds_records_per_s"]),
                f"{run['seconds']:.2f}",
                f"{run['cpu_us_per_record'] * run['records'] / 1e6:.2f}",
                str(run.get("server_cpu_s", "-")),
                str(run.get("proxy_cpu_s", "-")),
                str(notes.get("invocations", "-")),
                f"{notes['records_sent']:,}" if "records_sent" in notes else "-",
                str(notes.get("handler_s", "-")),
                str(notes.get("put_latency_p50_ms", "-")),
                " / ".join(str(n) for n in injected) if proxy else "-",
            ]
        )
    return _grid(header, rows) if rows else ""


@dataclass(frozen=True, slots=True)
class Goal:
    name: str
    measured: float | None
    target: float
    detail: str
    # Why the figure can not count (a run it comes from failed its audit); the goal is missed.
    invalid: str | None = None

    @property
    def met(self) -> bool | None:
        if self.invalid is not None:
            return False
        return None if self.measured is None else self.measured >= self.target

    def line(self) -> str:
        if self.measured is None:
            return f"[ -- ] {self.name}: not measured in this run"
        mark = "ok" if self.met else "MISS"
        invalid = f" INVALID: {self.invalid}" if self.invalid else ""
        return (
            f"[{mark:^4}] {self.name}: {self.measured:.2f} (goal >= {self.target:g})"
            f"{invalid} {self.detail}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "goal": self.name,
            "ratio": None if self.measured is None else round(self.measured, 3),
            "target": self.target,
            "met": self.met,
            "detail": self.detail,
            "invalid": self.invalid,
        }


def _find(
    runs: Sequence[Mapping[str, Any]], workload: str, endpoint: str, system: str
) -> Mapping[str, Any] | None:
    for run in runs:
        if (run["workload"], run["endpoint"], run["system"]) == (workload, endpoint, system):
            return run
    return None


def ratio(
    runs: Sequence[Mapping[str, Any]],
    workload: str,
    endpoint: str,
    a: str,
    b: str,
    field: str = "records_per_s",
) -> float | None:
    """`field` of system `a` over system `b` on one workload and endpoint; None when missing."""
    first, second = _find(runs, workload, endpoint, a), _find(runs, workload, endpoint, b)
    if first is None or second is None or not second[field]:
        return None
    return float(first[field]) / float(second[field])


def cross_ratio(
    runs: Sequence[Mapping[str, Any]], workload: str, a: tuple[str, str], b: tuple[str, str]
) -> tuple[float, str | None] | None:
    """records/s of (endpoint, system) `a` over `b`, with what failed the audit of either run
    (None: both passed or were not audited); None when either run is missing.

    With rounds on both sides, the median of the per-round ratios: the runs of one round ran
    minutes apart at most, so a slow spell of a shared machine weighs on both sides of a ratio.
    """
    first, second = _find(runs, workload, *a), _find(runs, workload, *b)
    if first is None or second is None or not second["records_per_s"]:
        return None
    failed = [
        f"{run['system']} at {run['endpoint']}: {audit_verdict(run)}"
        for run in (first, second)
        if "audit" in run and not run["audit"]["ok"]
    ]
    value = float(first["records_per_s"]) / float(second["records_per_s"])
    rounds_a, rounds_b = first.get("rounds_records_per_s"), second.get("rounds_records_per_s")
    if rounds_a and rounds_b and len(rounds_a) == len(rounds_b) and all(rounds_b):
        value = statistics.median(x / y for x, y in zip(rounds_a, rounds_b, strict=True))
    return value, "; ".join(failed) or None


HARNESS_BASELINE: Final = ("kinesalite20", "quix")
# Issue 8's "fast by default" goals on W7: (name, (endpoint, system), target, what it means).
HARNESS_GOALS: Final = (
    (
        "W7 kinesalite20: handler-default / quix records/s",
        ("kinesalite20", "handler-default"),
        1.2,
        "default settings, no faults",
    ),
    (
        "W7 kinesalite20-faults: handler-agg / quix without faults",
        ("kinesalite20-faults", "handler-agg"),
        0.9,
        "AGGREGATION=on under 5 % record, 3 % request, 2 % lost-response faults",
    ),
)


def harness_goals(runs: Sequence[Mapping[str, Any]]) -> list[Goal]:
    """The W7 goals, each against Quix without faults, with every explicit setting's ratio."""
    explicit = []
    for endpoint in ("kinesalite20", "kinesalite20-faults"):
        for system, label in (("handler", "off"), ("handler-agg", "on")):
            found = cross_ratio(runs, "W7", (endpoint, system), HARNESS_BASELINE)
            if found is not None:
                faults = " with faults" if endpoint.endswith("faults") else ""
                explicit.append(f"{label}{faults} {found[0]:.2f}")
    out = []
    for name, subject, target, meaning in HARNESS_GOALS:
        detail = f"{meaning}; AGGREGATION vs quix: {', '.join(explicit) or 'n/a'}"
        found = cross_ratio(runs, "W7", subject, HARNESS_BASELINE)
        if found is None:
            out.append(Goal(name, None, target, detail))
        else:
            out.append(Goal(name, found[0], target, detail, invalid=found[1]))
    return out


def reading_goals(reading: Sequence[Mapping[str, Any]]) -> list[Goal]:
    """Reading records with headers (W8's, 36 a record): the fast path against every field
    checked, and what they cost against none (bench.reading's table)."""
    envelopes = sorted(
        (cost for cost in reading if cost["record_format"] == "envelope"),
        key=lambda cost: int(cost["headers"]),
    )
    heavy = envelopes[-1] if envelopes and envelopes[-1]["headers"] else None
    bare = envelopes[0] if envelopes and not envelopes[0]["headers"] else None
    if heavy is None:
        return [Goal("reading, 36 headers a record: checked / fast parse", None, 3.0, "")]
    detail = f"parse {heavy['parse_us']:.1f} us a record, checked {heavy['parse_checked_us']:.1f}"
    if bare is not None:
        total = heavy["outline_us"] + heavy["parse_us"] + heavy["encode_us"]
        bare_total = bare["outline_us"] + bare["parse_us"] + bare["encode_us"]
        detail += (
            f"; reading an envelope record with {heavy['headers']} headers {total:.1f} us, without"
            f" {bare_total:.1f} us ({total / bare_total:.1f} x)"
        )
    return [
        Goal(
            "reading, 36 headers a record: checked / fast parse",
            heavy["parse_checked_us"] / heavy["parse_us"] if heavy["parse_us"] else None,
            3.0,
            detail,
        )
    ]


def goals(
    runs: Sequence[Mapping[str, Any]],
    import_ms: Mapping[str, float],
    reading: Sequence[Mapping[str, Any]] = (),
) -> list[Goal]:
    """Every goal of the benchmark, as a ratio where bigger is better."""
    out: list[Goal] = []
    endpoints = sorted({run["endpoint"] for run in runs if run["workload"] == "W1"})
    for endpoint in endpoints:
        out.append(
            Goal(
                f"W1 {endpoint}: handler / bound records/s",
                ratio(runs, "W1", endpoint, "handler", "bound"),
                0.9,
                "distinct keys: strict order costs nothing, any gap is overhead",
            )
        )
    for endpoint in endpoints:
        out.append(
            Goal(
                f"W1 {endpoint}: handler-routes / handler records/s",
                ratio(runs, "W1", endpoint, "handler-routes", "handler"),
                0.95,
                "STREAM_ROUTES with nine patterns vs STREAM_NAME alone: what routing costs",
            )
        )
    out.append(
        Goal(
            "W1 stub15: handler / quix records/s",
            ratio(runs, "W1", "stub15", "handler", "quix"),
            3.0,
            "parallel partitions vs one worker",
        )
    )
    for workload in ("W2", "W3", "W4"):
        plain = ratio(runs, workload, "stub15", "handler", "bound")
        out.append(
            Goal(
                f"{workload} stub15: handler-agg / bound records/s",
                ratio(runs, workload, "stub15", "handler-agg", "bound"),
                1.0,
                "plain handler / bound: " + ("n/a" if plain is None else f"{plain:.2f}"),
            )
        )
    for endpoint in sorted({run["endpoint"] for run in runs if run["workload"] == "W8"}):
        out.append(
            Goal(
                f"W8 {endpoint}: handler / bound records/s",
                ratio(runs, "W8", endpoint, "handler", "bound"),
                0.33,
                "36 headers a record: the handler reads and encodes them (about 40 us a record)"
                " on the thread that also sends; bound's envelopes are built before its clock"
                " starts",
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
    out.extend(harness_goals(runs))
    if reading:
        out.extend(reading_goals(reading))
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
