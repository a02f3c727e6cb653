"""`make bench`: every system on the same records and endpoints, one table, one JSON file.

python -m bench.run [--workloads W1,W2] [--endpoints stub,stub15] [--systems handler,bound]
                    [--repeat 3] [--out FILE.json]   (and its chart, FILE.png)

A full run (every workload, endpoint and system, at least 3 repetitions) writes the committed
bench/results/latest.json; a run of a subset writes bench/results/partial/latest.json.

W1-W6 and W8 run on kinesalite, stub and stub15; W7 (the harness shape) runs on kinesalite20 and
kinesalite20-faults, where each run gets a fresh fault proxy and its stream is audited afterwards.
Then what reading an event costs the function per record, with and without headers
(bench.reading, in process).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from bench import endpoints as ep
from bench.chart import draw
from bench.reading import cost_lines, reading_costs, reading_costs_of
from bench.report import goals, harness_table, median_of_rounds, table
from bench.systems import SYSTEMS
from bench.workloads import WORKLOADS, Workload
from localloop.faults import FaultSpec
from localloop.proxy import FaultProxy
from msk_kinesis_sink.settings import RecordFormat

ROOT: Final = ep.ROOT
DEFAULT_OUT: Final = ROOT / "bench" / "results" / "latest.json"
# Where a run of a subset goes (ignored by git): the committed results are a full run's only.
PARTIAL_OUT: Final = ROOT / "bench" / "results" / "partial" / "latest.json"
DEFAULT_REPEAT: Final = 3
ENDPOINTS: Final = ("kinesalite", "stub", "stub15", *ep.PROXIED)
IMPORT_SAMPLES: Final = 7
_RUN_TIMEOUT_S: Final = 300

# The harness-shaped workload runs only behind the fault proxy, the others only without it.
HARNESS_WORKLOADS: Final = frozenset({"W7"})
# Systems per proxied endpoint. Under faults: only the sink, since Quix's KinesisSink does not
# look at per-record failures (it would lose records) and `bound` never retries.
HARNESS_SYSTEMS: Final = {
    "kinesalite20": ("handler", "handler-agg", "handler-default", "quix"),
    "kinesalite20-faults": ("handler", "handler-agg"),
}
# W1-W6 and W8 name their settings explicitly; `handler-default` is for the harness goal only.
CLASSIC_SYSTEMS: Final = ("handler", "handler-agg", "handler-routes", "quix", "bound")
# Routing's cost is read on W1 alone (distinct keys: the per-record path at its leanest).
ROUTING_WORKLOADS: Final = frozenset({"W1"})


def plan(
    workloads: list[str], endpoints: list[str], systems: list[str]
) -> list[tuple[str, str, str]]:
    """The (endpoint, workload, system) runs asked for that make sense together, in order."""
    runs: list[tuple[str, str, str]] = []
    for endpoint in endpoints:
        proxied = endpoint in ep.PROXIED
        allowed = HARNESS_SYSTEMS.get(endpoint, CLASSIC_SYSTEMS)
        for workload in workloads:
            if (workload in HARNESS_WORKLOADS) != proxied:
                continue
            runs.extend(
                (endpoint, workload, system)
                for system in systems
                if system in allowed
                and (system != "handler-routes" or workload in ROUTING_WORKLOADS)
            )
    return runs


def results_path(out: Path | None, runs: list[tuple[str, str, str]], repeat: int) -> Path:
    """Where a run's results go: the committed results only from a full run (every workload,
    endpoint and system, at the default repetitions or more); a partial run writes PARTIAL_OUT,
    or any --out but the committed file."""
    everything = plan(list(WORKLOADS), list(ENDPOINTS), list(SYSTEMS))
    full = set(runs) == set(everything) and repeat >= DEFAULT_REPEAT
    if out is None:
        return DEFAULT_OUT if full else PARTIAL_OUT
    if not full and out.resolve() == DEFAULT_OUT.resolve():
        raise SystemExit(
            f"a partial run does not replace {DEFAULT_OUT.relative_to(ROOT)} (the committed"
            " results of a full run): leave out --out, or name another file"
        )
    return out


def _worker_env(endpoint: ep.Endpoint) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "POWERTOOLS_", "STREAM_", "AGGREGATION", "PARTITION_KEY"))
    }
    return {
        **env,
        **ep.CREDENTIALS,
        "AWS_ENDPOINT_URL_KINESIS": endpoint.url,
        "STREAM_NAME": ep.STREAM,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "lambda"), str(ROOT)]),
    }


@functools.cache
def _workload(name: str) -> Workload:
    return WORKLOADS[name]()


def run_one(
    workload: str, endpoint: ep.Endpoint, system: str, repeat: int, *, fault_seed: int = 0
) -> dict[str, Any]:
    if endpoint.is_kinesalite:
        ep.reset_stream(endpoint)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        out = Path(tmp) / "result.json"
        proxy = None
        target = endpoint
        if endpoint.faults is not None:
            # A fresh proxy per run: its fault decisions count attempts per record and request,
            # so with the same seed every system meets the same faults on the same records.
            spec = FaultSpec.parse(f"{endpoint.faults},seed={fault_seed}")
            proxy = stack.enter_context(FaultProxy(endpoint.url, spec))
            target = dataclasses.replace(endpoint, url=proxy.endpoint)
        server_cpu0, own_cpu0 = _server_cpu_s(endpoint), time.process_time()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.worker",
                "--workload",
                workload,
                "--system",
                system,
                "--endpoint",
                endpoint.name,
                "--repeat",
                str(repeat),
                "--out",
                str(out),
            ],
            cwd=ROOT,
            env=_worker_env(target),
            check=True,
            timeout=_RUN_TIMEOUT_S,
        )
        result: dict[str, Any] = json.loads(out.read_text())
        # Who was busy while the worker ran (its start-up included): the server, and this
        # process, which does nothing but serve the fault proxy meanwhile.
        server_cpu = _server_cpu_s(endpoint)
        if server_cpu is not None and server_cpu0 is not None:
            result["server_cpu_s"] = round(server_cpu - server_cpu0, 2)
        if proxy is not None:
            result["proxy_cpu_s"] = round(time.process_time() - own_cpu0, 2)
            result["faults"] = spec.describe()
            result["proxy"] = dataclasses.asdict(proxy.stats)
    if endpoint.is_kinesalite and _workload(workload).record_format is RecordFormat.ENVELOPE:
        from bench.verify import verify

        result["audit"] = verify(_workload(workload), endpoint.url)
    return result


def _server_cpu_s(endpoint: ep.Endpoint) -> float | None:
    return None if endpoint.server_pid is None else ep.process_cpu_s(endpoint.server_pid)


def _progress(result: dict[str, Any], elapsed_s: float) -> str:
    line = (
        f"  {result['workload']} {result['endpoint']:<19} {result['system']:<15}"
        f" {result['records_per_s']:>10,.0f} rec/s"
    )
    if "audit" in result:
        audit = result["audit"]
        line += (
            f"  audit {'ok' if audit['ok'] else 'FAILED'}: lost {audit['lost']},"
            f" out of order {audit['out_of_order']}, duplicates {audit['duplicates']}"
        )
    return line + f"  ({elapsed_s:.0f}s)"


_IMPORT_LINE = re.compile(r"^import time:\s+\d+\s+\|\s+(\d+)\s+\|\s+(\S+)\s*$")


def _import_sample_ms(module: str, env: dict[str, str]) -> float:
    """Cumulative import time of `module` in a fresh interpreter (python -X importtime)."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    for line in completed.stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match and match.group(2) == module:
            return int(match.group(1)) / 1000
    raise RuntimeError(f"no import time line for {module}")


def import_times_ms(modules: list[str], env: dict[str, str]) -> dict[str, float]:
    """Median import time per module; samples interleaved so machine noise hits all alike."""
    samples: dict[str, list[float]] = {module: [] for module in modules}
    for _ in range(IMPORT_SAMPLES):
        for module in modules:
            samples[module].append(_import_sample_ms(module, env))
    return {module: round(statistics.median(values), 1) for module, values in samples.items()}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def _csv(value: str, allowed: tuple[str, ...] | list[str]) -> list[str]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise SystemExit(f"unknown {unknown}; allowed: {', '.join(allowed)}")
    return items


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so the endpoints started here are stopped on the way out


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS))
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument(
        "--repeat",
        type=int,
        default=DEFAULT_REPEAT,
        help="repetitions per run (median kept); for W7, rounds of all its runs",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results file (default: bench/results/latest.json for a full run,"
        " bench/results/partial/latest.json for a subset)",
    )
    args = parser.parse_args(argv)
    workloads = _csv(args.workloads, list(WORKLOADS))
    endpoint_names = _csv(args.endpoints, ENDPOINTS)
    systems = _csv(args.systems, SYSTEMS)

    todo = plan(workloads, endpoint_names, systems)
    out = results_path(args.out, todo, args.repeat)
    if not todo:
        raise SystemExit(
            "nothing to run: W7 runs only on kinesalite20 / kinesalite20-faults, W1-W6 and W8"
            f" only on kinesalite, stub and stub15 (systems per endpoint: {HARNESS_SYSTEMS},"
            f" otherwise {CLASSIC_SYSTEMS})"
        )

    started = time.monotonic()
    # Other work on the machine slows some runs and not others: say how busy it was.
    load_before = os.getloadavg()[0]
    runs: list[dict[str, Any]] = []
    with ep.running(sorted({name for name, _, _ in todo}, key=ENDPOINTS.index)) as endpoints:
        by_name = {endpoint.name: endpoint for endpoint in endpoints}
        classic = [run for run in todo if run[0] not in ep.PROXIED]
        harness = [run for run in todo if run[0] in ep.PROXIED]
        for endpoint_name, workload, system in classic:
            endpoint = by_name[endpoint_name]
            # Kinesalite is a slow single-threaded server: fewer repetitions there.
            repeat = 1 if endpoint.is_kinesalite else args.repeat
            result = run_one(workload, endpoint, system, repeat)
            runs.append(result)
            print(_progress(result, time.monotonic() - started), flush=True)
        # Harness runs last seconds each and kinesalite is noisy: whole rounds of every system,
        # interleaved so a slow spell of the machine hits them alike; the median round counts.
        rounds: dict[tuple[str, str, str], list[dict[str, Any]]] = {run: [] for run in harness}
        # Each round draws other faults (its own seed): the median is not one lucky draw.
        for round_number in range(1, args.repeat + 1 if harness else 1):
            for endpoint_name, workload, system in harness:
                endpoint = by_name[endpoint_name]
                result = run_one(workload, endpoint, system, 1, fault_seed=round_number)
                rounds[(endpoint_name, workload, system)].append(result)
                print(_progress(result, time.monotonic() - started), flush=True)
        runs += [median_of_rounds(results) for results in rounds.values()]

    import_env = {
        **_worker_env(ep.Endpoint("none", "http://127.0.0.1:9")),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    # The handler module builds its Sink (settings, boto3 client) at import, as at a cold start.
    times = import_times_ms(["msk_kinesis_sink.handler", "boto3"], import_env)
    import_ms = {"handler": times["msk_kinesis_sink.handler"], "boto3": times["boto3"]}
    # What reading an event costs, per record, with and without headers (in process).
    reading = [dataclasses.asdict(cost) for cost in reading_costs()]
    checked = goals(runs, import_ms, reading)
    document: dict[str, Any] = {
        "runs": runs,
        "import_ms": import_ms,
        "reading": reading,
        "goals": [goal.as_dict() for goal in checked],
        "machine": {**machine(), "load_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)]},
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=1) + "\n")
    tmp.replace(out)
    chart = draw(document, out.with_suffix(".png"))

    print()
    print(table(runs))
    details = harness_table(runs)
    if details:
        print()
        print(details)
    print()
    print("\n".join(cost_lines(reading_costs_of(reading))))
    print()
    print(f"import: handler {import_ms['handler']} ms, boto3 {import_ms['boto3']} ms")
    for goal in checked:
        print(goal.line())
    mach = document["machine"]
    print(
        f"\nmachine: {mach['cpu']}, {mach['cores']} cores, Python {mach['python']};"
        f" load average (1 min) {mach['load_1m'][0]} at start, {mach['load_1m'][1]} at end"
    )
    print(f"wrote {out} in {document['elapsed_s']} s, and its chart {chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
