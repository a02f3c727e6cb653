"""deaggregate's time on crafted and real records of 40 KB, 1 MiB and 10 MiB (never gates CI).

.venv/bin/python -m bench.deaggregate [--sizes 40000,1048576,10485760] [--repeat 3]

Each shape is framed as an aggregate (magic, MD5) so deaggregators parse it: the run of varint
continuation bytes that once took minutes, a real aggregate as the sink writes it, and floods of
the smallest fields (the costliest bytes for a parser written in Python). Prints the best of
`--repeat` runs and its time per byte (the same at every size: linear), and aws-kinesis-agg's time
on the same bytes when it is importable (the test venv).
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable
from typing import Final

from msk_kinesis_sink.kpl import (
    KPL_DIGEST_BYTES,
    KPL_MAGIC,
    aggregate_overhead,
    deaggregate,
    encode_aggregate,
    record_frame_size,
)

DEFAULT_SIZES: Final = (40_000, 1 << 20, 10 << 20)
_KEY_TABLE: Final = b"\x0a\x01k"
_FRAMING: Final = len(KPL_MAGIC) + KPL_DIGEST_BYTES


def _framed(body: bytes) -> bytes:
    return KPL_MAGIC + body + hashlib.md5(body).digest()


def _flood(unit: bytes) -> Callable[[int], bytes]:
    """A key table, then `unit` over and over: `size` bytes in all (within a unit)."""

    def make(size: int) -> bytes:
        count = (size - _FRAMING - len(_KEY_TABLE)) // len(unit)
        return _framed(_KEY_TABLE + unit * count)

    return make


def _real(size: int) -> bytes:
    """An aggregate of 100-byte records as the sink writes it: `size` bytes within a record."""
    key = "customer-42"
    count = (size - aggregate_overhead(len(key))) // record_frame_size(100)
    return encode_aggregate(key, [bytes([i % 251]) * 100 for i in range(count)])


SHAPES: Final[dict[str, Callable[[int], bytes]]] = {
    "continuation bytes (0xFF...)": lambda size: _framed(b"\xff" * (size - _FRAMING)),
    "sink aggregate, 100 B records": _real,
    "flood: empty records": _flood(b"\x1a\x00"),
    "flood: unknown varint fields": _flood(b"\x20\x00"),
    "flood: empty groups": _flood(b"\x23\x24"),
}


def _best_seconds(read: Callable[[bytes], object], data: bytes, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        read(data)
        best = min(best, time.perf_counter() - start)
    return best


def _library() -> Callable[[bytes], object] | None:
    try:
        from aws_kinesis_agg.deaggregator import iter_deaggregate_records
    except ImportError:
        return None

    def read(data: bytes) -> object:
        record = {
            "Data": data,
            "PartitionKey": "k",
            "SequenceNumber": "1",
            "ApproximateArrivalTimestamp": 0,
        }
        return list(iter_deaggregate_records([record], data_format="Boto3"))

    return read


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    library = _library()
    for name, make in SHAPES.items():
        for size in sizes:
            data = make(size)
            ours = _best_seconds(deaggregate, data, args.repeat)
            reference = ""
            if library is not None:
                theirs = _best_seconds(library, data, 1)
                reference = f"  aws-kinesis-agg {theirs * 1000:9.1f} ms (ours x{ours / theirs:.2f})"
            measured = f"{ours * 1000:9.1f} ms {ours / len(data) * 1e9:6.1f} ns/B"
            print(f"{name:30} {len(data):>10,} B {measured}{reference}")


if __name__ == "__main__":
    main()
