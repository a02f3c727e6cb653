"""KPL aggregation: pack a run of same-key user records into one atomic Kinesis record.

The format itself (writing and reading it) is in `kpl`; `deaggregate` is importable from here
too, where consumers have always found it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from msk_kinesis_sink.encoding import EncodedRecord
from msk_kinesis_sink.kpl import (
    deaggregate,
    encode_aggregate,
    has_kpl_framing,
    looks_aggregated,
    record_frame_size,
    wrapped_size,
)
from msk_kinesis_sink.planning import Entry

__all__ = ["AggregatingPacker", "deaggregate"]


class AggregatingPacker:
    """Packs the longest same-key prefix of a run that fits the budget into one Kinesis record.

    A run of one goes out as the plain record (what the KPL does too; deaggregators pass
    non-aggregated records through unchanged), so lone records cost no extra bytes. The one
    exception: plain data that itself starts with the KPL magic is wrapped in an aggregate of
    one, so a deaggregator returns the producer's bytes instead of reading them as an aggregate.
    Data that would be read as one (magic and MD5 match) only ever goes wrapped; encoding made
    it a dead letter when even a record of its own could not hold it wrapped.

    Sizes are computed as records are added (O(1) each); the aggregate is encoded once.
    """

    def pack(self, run: Iterable[EncodedRecord], budget: int) -> Entry | None:
        records = iter(run)
        head = next(records, None)
        if head is None:
            return None
        key = head.partition_key
        second = next(records, None)
        if second is None or second.partition_key != key:
            # The common case with distinct keys: no aggregate to size or build.
            return self._single(head, budget)
        size = wrapped_size(_key_bytes(head), len(head.data))
        taken = [head]
        if size <= budget:
            for record in itertools.chain((second,), records):
                if record.partition_key != key:
                    break  # the planner's queues hold one key; never mix keys (shard routing)
                grown = size + record_frame_size(len(record.data))
                if grown > budget:
                    break
                size = grown
                taken.append(record)
        if len(taken) == 1:
            return self._single(head, budget)
        data = encode_aggregate(key, [record.data for record in taken])
        return Entry.of(key, data, tuple(taken))

    @staticmethod
    def _single(record: EncodedRecord, budget: int) -> Entry | None:
        key = record.partition_key
        if looks_aggregated(record.data):
            if wrapped_size(_key_bytes(record), len(record.data)) <= budget:
                return Entry.of(key, encode_aggregate(key, [record.data]), (record,))
            if has_kpl_framing(record.data):
                return None  # never plain: it waits for a request with room for it wrapped
        if record.size > budget:
            return None
        return Entry(key, record.data, (record,), record.size)


def _key_bytes(record: EncodedRecord) -> int:
    return record.size - len(record.data)  # the record measured its key already
