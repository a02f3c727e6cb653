"""Service limits the sink plans around, each with the AWS fact it encodes."""

from __future__ import annotations

from typing import Final

MIB: Final = 1024 * 1024

# PutRecords accepts at most 500 records per request.
MAX_RECORDS_PER_REQUEST: Final = 500

# A PutRecords request may carry at most 5 MiB, counting data blobs *and* partition keys.
MAX_REQUEST_BYTES: Final = 5 * MIB

# A record (data blob + partition key) may be at most 1 MiB by default; a stream raised with
# UpdateMaxRecordSize (MaxRecordSizeInKiB) accepts up to 10 MiB per record.
DEFAULT_MAX_RECORD_BYTES: Final = 1 * MIB
MAX_RECORD_BYTES_CEILING: Final = 10 * MIB
MIN_RECORD_BYTES: Final = 1024

# A partition key is 1-256 Unicode characters.
MAX_PARTITION_KEY_CHARS: Final = 256

# Provisioned streams bill one PUT payload unit per started 25 KB of each record.
PUT_PAYLOAD_UNIT_BYTES: Final = 25 * 1024


def max_request_bytes(max_record_bytes: int) -> int:
    """Request byte ceiling: 5 MiB, or one record's ceiling when the stream was raised above it."""
    return max(MAX_REQUEST_BYTES, max_record_bytes)
