"""AWS limits the sink plans around, each once with the AWS fact it encodes: the function, the
stack, the capacity planner, the local emulator and the benchmark import them from here."""

from __future__ import annotations

from typing import Final

MIB: Final = 1024 * 1024

# --- Kinesis Data Streams ------------------------------------------------------------------

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

# "Quotas and limits" (Kinesis Data Streams) / "PutRecords": a shard takes 1 MiB/s and
# 1,000 records/s of writes.
SHARD_WRITE_BYTES_PER_S: Final = 1 * MIB
SHARD_WRITE_RECORDS_PER_S: Final = 1_000

# "Quotas and limits" (Kinesis Data Streams): a new on-demand stream has 4 MB/s of write
# throughput and scales from there (warm throughput raises it ahead of a load); AWS states it in
# MB/s only, which is four shards' worth.
ON_DEMAND_START_BYTES_PER_S: Final = 4_000_000
ON_DEMAND_START_SHARDS: Final = 4

# --- Lambda -----------------------------------------------------------------------------------

# "Lambda quotas": a synchronous invocation's payload is at most "6 MB"; Invoke refuses a request
# of 6,291,456 bytes (6 MiB) or more. It caps every batch an event source mapping sends.
MAX_INVOCATION_BYTES: Final = 6 * MIB

# "Lambda quotas": a function's timeout is 1-900 seconds.
MAX_FUNCTION_TIMEOUT_SECONDS: Final = 900

# "Using Lambda with Amazon MSK" / "... self-managed Apache Kafka": Kafka event source mappings
# "only support functions with maximum timeout limits of 14 minutes".
MAX_KAFKA_FUNCTION_TIMEOUT_SECONDS: Final = 840

# --- Kafka event source mappings (Amazon MSK and self-managed Apache Kafka) ------------------

# BatchSize: 1-10,000 records per invocation.
MAX_BATCH_SIZE: Final = 10_000

# MaximumBatchingWindowInSeconds: 0-300 s.
MAX_BATCHING_WINDOW_SECONDS: Final = 300

# MaximumRetryAttempts: -1 (infinite) or 0-10,000. With an on-failure destination Lambda turns
# -1 into 10 ("Configuring error handling controls for Kafka event sources").
MAX_RETRY_ATTEMPTS: Final = 10_000
INFINITE_RETRIES_CAP: Final = 10

# "Event poller scaling modes in Lambda": ProvisionedPollerConfig MinimumPollers 1-200,
# MaximumPollers 1-2,000; Lambda keeps MaximumPollers to the topic's partition count.
MAX_MIN_POLLERS: Final = 200
MAX_MAX_POLLERS: Final = 2_000

# "Low latency processing for Kafka event sources": an event poller "allocates up to 5 MB/s
# throughput" and "supports up to 5 concurrent Lambda invocations".
POLLER_BYTES_PER_S: Final = 5_000_000
POLLER_INVOCATIONS: Final = 5

# ProvisionedPollerConfig.PollerGroupName ("Apache Kafka event poller scaling modes in Lambda",
# ESM grouping): at most 100 mappings per group, at most 2,000 maximum pollers summed.
MAX_MAPPINGS_PER_POLLER_GROUP: Final = 100
MAX_POLLERS_PER_POLLER_GROUP: Final = 2_000

# MaximumRecordAgeInSeconds: -1 (infinite) or 60-604,800 s (7 days).
MIN_RECORD_AGE_SECONDS: Final = 60
MAX_RECORD_AGE_SECONDS: Final = 604_800

# KafkaConsumerGroupId: 1-200 characters of [a-zA-Z0-9-/*:_+=.@-].
MAX_CONSUMER_GROUP_ID_CHARS: Final = 200

# SourceAccessConfigurations: at most 29 entries per mapping (subnets, security group, secrets).
MAX_ACCESS_CONFIGURATIONS: Final = 29

# Event filtering: at most 5 filter patterns per event source mapping (default quota).
MAX_FILTERS: Final = 5

# SelfManagedEventSource KafkaBootstrapServers: 1-10 unique host:port of <= 300 characters.
MAX_BOOTSTRAP_SERVERS: Final = 10

# --- Amazon S3 ------------------------------------------------------------------------------

# "Naming Amazon S3 objects": an object key is at most 1,024 bytes of UTF-8.
MAX_S3_KEY_BYTES: Final = 1024


# --- The stack: CloudFormation and CloudWatch ----------------------------------------------

# "CloudFormation quotas": at most 500 resources in a stack, and a template of at most 1 MB in an
# S3 object (as `cdk deploy` uploads it).
MAX_STACK_RESOURCES: Final = 500
MAX_TEMPLATE_BYTES: Final = 1_000_000

# "CloudWatch service quotas": an alarm on a metric math expression reads at most 10 metrics;
# PutMetricAlarm takes at most 10 expressions beside them.
MAX_ALARM_METRICS: Final = 10
MAX_ALARM_EXPRESSIONS: Final = 10

# "Dashboard body structure and syntax" / "CloudWatch service quotas": a metric widget shows at
# most 500 metrics, an alarm status widget 1-100 alarms.
MAX_WIDGET_METRICS: Final = 500
MAX_STATUS_WIDGET_ALARMS: Final = 100

# DescribeAlarms: AlarmNames takes at most 100 names.
MAX_ALARM_NAMES_PER_DESCRIBE: Final = 100


def max_request_bytes(max_record_bytes: int) -> int:
    """Request byte ceiling: 5 MiB, or one record's ceiling when the stream was raised above it."""
    return max(MAX_REQUEST_BYTES, max_record_bytes)
