"""One measured run (workload x endpoint x system) in a fresh interpreter.

A fresh process per run keeps peak RSS and CPU time attributable to one system. Results go to
the file named by --out as JSON; stdout is the handler's log stream and is discarded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.workloads import WORKLOADS, msk_event, put_payload_units

MB = 1_000_000
SLOW_RUN_S = 3.0


class CallCounter:
    """PutRecords calls and PUT payload units, counted from the requests actually sent.

    Counted where botocore's endpoint hands a signed request to its HTTP session, from the body
    on the wire, so every system is counted the same way whatever it hands to botocore (the
    handler builds its PutRecords body itself) and whatever session sends it (the handler's is
    its own deadline-bounded transport). The CPU the counting takes is measured and subtracted
    from the run's CPU figure.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.put_units = 0
        self.overhead_s = 0.0
        self._lock = threading.Lock()

    def install(self) -> None:
        from botocore.endpoint import Endpoint

        original: Callable[..., Any] = Endpoint._send
        counter = self

        def counted(endpoint: Any, request: Any) -> Any:
            target = request.headers.get("X-Amz-Target", b"")
            if isinstance(target, bytes):
                target = target.decode("ascii", "replace")
            if target.endswith(".PutRecords"):
                started = time.thread_time()
                units = put_units_of_body(request.body)
                with counter._lock:
                    counter.calls += 1
                    counter.put_units += units
                    counter.overhead_s += time.thread_time() - started
            return original(endpoint, request)

        Endpoint._send = counted  # type: ignore[method-assign]

    def reset(self) -> None:
        with self._lock:
            self.calls = 0
            self.put_units = 0
            self.overhead_s = 0.0


def put_units_of_body(body: bytes | str) -> int:
    """PUT payload units of a PutRecords JSON body: per record, data (base64) + partition key."""
    units = 0
    for record in json.loads(body)["Records"]:
        encoded: str = record["Data"]
        data_bytes = len(encoded) * 3 // 4 - encoded[-2:].count("=")
        units += put_payload_units(data_bytes + len(record["PartitionKey"].encode("utf-8")))
    return units


@dataclass(frozen=True, slots=True)
class Measurement:
    records: int
    delivered: int
    seconds: float
    cpu_seconds: float
    calls: int
    put_units: int
    rss_before_mb: float
    peak_rss_mb: float


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak_rss() -> None:
    # Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so each repetition has its own peak.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def measure(
    warm_up: Callable[[], int], run: Callable[[], int], records: int, counter: CallCounter
) -> Measurement:
    warm_up()
    counter.reset()
    _reset_peak_rss()
    rss_before = _status_kib("VmRSS") / 1024
    cpu0, t0 = time.process_time(), time.perf_counter()
    delivered = run()
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0 - counter.overhead_s
    return Measurement(
        records=records,
        delivered=delivered,
        seconds=seconds,
        cpu_seconds=cpu,
        calls=counter.calls,
        put_units=counter.put_units,
        rss_before_mb=rss_before,
        peak_rss_mb=_status_kib("VmHWM") / 1024,
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", required=True, choices=sorted(WORKLOADS))
    parser.add_argument("--system", required=True)
    parser.add_argument("--endpoint", required=True, help="endpoint name, for the record")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)

    # The handler logs JSON to stdout; the bench's own output is the --out file.
    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    sys.stdout = devnull
    # Library deprecation notices and Powertools' "no metrics" notice are not results.
    warnings.simplefilter("ignore")

    from bench.systems import prepare

    workload = WORKLOADS[args.workload]()
    counter = CallCounter()
    counter.install()
    env = dict(os.environ)
    prepared = prepare(args.system, workload, env)
    runs = [measure(prepared.warm_up, prepared.run, len(workload.records), counter)]
    # Repeat quick runs to steady the figure; a slow one (seconds of round trips) is steady.
    while len(runs) < args.repeat and runs[0].seconds < SLOW_RUN_S:
        runs.append(measure(prepared.warm_up, prepared.run, len(workload.records), counter))
    # The median repetition by throughput stands for the run; peak RSS is the worst seen.
    median = sorted(runs, key=lambda m: m.seconds)[len(runs) // 2]
    payload_mb = len(json.dumps(msk_event(workload.records))) / MB
    result = {
        "workload": args.workload,
        "endpoint": args.endpoint,
        "system": args.system,
        **summarise(median, workload.payload_bytes),
        "peak_rss_mb": round(max(m.peak_rss_mb for m in runs), 1),
        "rss_growth_mb": round(max(m.peak_rss_mb - m.rss_before_mb for m in runs), 1),
        "event_mb": round(payload_mb, 2),
        "repeats": [asdict(m) for m in runs],
        "seconds_spread": round(statistics.pstdev(m.seconds for m in runs), 4),
        "notes": prepared.notes(),  # of the last repetition
    }
    args.out.write_text(json.dumps(result))


def summarise(m: Measurement, payload_bytes: int) -> dict[str, Any]:
    per_1k = 1000 / m.records
    return {
        "records": m.records,
        "delivered": m.delivered,
        "seconds": round(m.seconds, 4),
        "records_per_s": round(m.delivered / m.seconds, 1),
        "mb_per_s": round(payload_bytes * m.delivered / m.records / MB / m.seconds, 2),
        "calls_per_1k": round(m.calls * per_1k, 2),
        "put_units_per_1k": round(m.put_units * per_1k, 2),
        "cpu_us_per_record": round(m.cpu_seconds * 1e6 / m.records, 1),
    }


if __name__ == "__main__":
    main(sys.argv[1:])
