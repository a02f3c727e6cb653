"""`make bench`: every system on the same records and endpoints, one table, one JSON file.

python -m bench.run [--workloads W1,W2] [--endpoints stub,stub15] [--systems handler,bound]
                    [--repeat 3] [--out bench/results/latest.json]
"""

from __future__ import annotations

import argparse
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
from bench.report import goals, table
from bench.systems import SYSTEMS
from bench.workloads import WORKLOADS

ROOT: Final = ep.ROOT
DEFAULT_OUT: Final = ROOT / "bench" / "results" / "latest.json"
ENDPOINTS: Final = ("kinesalite", "stub", "stub15")
IMPORT_SAMPLES: Final = 7
_RUN_TIMEOUT_S: Final = 300


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


def run_one(workload: str, endpoint: ep.Endpoint, system: str, repeat: int) -> dict[str, Any]:
    if endpoint.resets_stream:
        ep.reset_stream(endpoint)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
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
            env=_worker_env(endpoint),
            check=True,
            timeout=_RUN_TIMEOUT_S,
        )
        result: dict[str, Any] = json.loads(out.read_text())
        return result


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
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per run (median kept)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    workloads = _csv(args.workloads, list(WORKLOADS))
    endpoint_names = _csv(args.endpoints, ENDPOINTS)
    systems = _csv(args.systems, SYSTEMS)

    started = time.monotonic()
    runs: list[dict[str, Any]] = []
    with ep.running(endpoint_names) as endpoints:
        for endpoint in endpoints:
            for workload in workloads:
                for system in systems:
                    # Kinesalite is a slow single-threaded server: fewer repetitions there.
                    repeat = 1 if endpoint.name == "kinesalite" else args.repeat
                    result = run_one(workload, endpoint, system, repeat)
                    runs.append(result)
                    print(
                        f"  {workload} {endpoint.name:<10} {system:<12}"
                        f" {result['records_per_s']:>10,.0f} rec/s"
                        f"  ({time.monotonic() - started:.0f}s)",
                        flush=True,
                    )

    import_env = {
        **_worker_env(ep.Endpoint("none", "http://127.0.0.1:9")),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    # The handler module builds its Sink (settings, boto3 client) at import, as at a cold start.
    times = import_times_ms(["msk_kinesis_sink.handler", "boto3"], import_env)
    import_ms = {"handler": times["msk_kinesis_sink.handler"], "boto3": times["boto3"]}
    checked = goals(runs, import_ms)
    document = {
        "runs": runs,
        "import_ms": import_ms,
        "goals": [goal.as_dict() for goal in checked],
        "machine": machine(),
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=1) + "\n")
    tmp.replace(args.out)

    print()
    print(table(runs))
    print()
    print(f"import: handler {import_ms['handler']} ms, boto3 {import_ms['boto3']} ms")
    for goal in checked:
        print(goal.line())
    mach = machine()
    print(f"\nmachine: {mach['cpu']}, {mach['cores']} cores, Python {mach['python']}")
    print(f"wrote {args.out} in {document['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
