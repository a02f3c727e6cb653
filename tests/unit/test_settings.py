"""Unit tests for Settings: from_env (every variable, its default, each invalid value), to_env
(read back as the same settings) and from_keys (the context keys, named in refusals)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, reject
from hypothesis import strategies as st

from msk_kinesis_sink.errors import ConfigurationError
from msk_kinesis_sink.limits import DEFAULT_MAX_RECORD_BYTES, MAX_RECORD_BYTES_CEILING, MIB
from msk_kinesis_sink.settings import (
    ENDPOINT_VARIABLES,
    SETTING_KEYS,
    Aggregation,
    OversizeRecords,
    PartitionKeyMode,
    RecordFormat,
    Settings,
    StreamRoute,
)
from msk_kinesis_sink.variables import LOG_LEVELS, bucket_name_problem

STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/orders-stream"


def _settings(**env: str) -> Settings:
    return Settings.from_env({"STREAM_NAME": "orders-stream", **env})


def test_settings_defaults():
    # GIVEN only the required stream name
    # WHEN the environment is parsed
    settings = Settings.from_env({"STREAM_NAME": "orders-stream"})

    # THEN every other setting has its documented default
    assert settings == Settings(
        stream_name="orders-stream",
        stream_arn=None,
        record_format=RecordFormat.RAW,
        partition_key=PartitionKeyMode.KEY,
        aggregation=Aggregation.ON,
        max_record_bytes=1 * MIB,
        dead_letter_bucket=None,
        dead_letter_prefix="records/",
        max_concurrency=8,
        request_timeout_seconds=5.0,
        retry_base_ms=10,
        retry_max_ms=2_000,
        stream_check_seconds=60,
    )
    assert settings.max_record_bytes == DEFAULT_MAX_RECORD_BYTES


def test_settings_every_variable_set():
    # GIVEN every variable set to a valid non-default value
    env = {
        "STREAM_NAME": STREAM_ARN,
        "RECORD_FORMAT": "envelope",
        "PARTITION_KEY": "partition",
        "AGGREGATION": "on",
        "MAX_RECORD_BYTES": str(10 * MIB),
        "DEAD_LETTER_BUCKET": "my-dlq.bucket-1",
        "DEAD_LETTER_PREFIX": "dlq/msk",
        "MAX_CONCURRENCY": "16",
        "KINESIS_TIMEOUT_SECONDS": "2.5",
        "RETRY_BASE_MS": "10",
        "RETRY_MAX_MS": "500",
        "STREAM_CHECK_SECONDS": "300",
    }

    # WHEN it is parsed
    settings = Settings.from_env(env)

    # THEN each value is taken
    assert settings == Settings(
        stream_name="orders-stream",
        stream_arn=STREAM_ARN,
        record_format=RecordFormat.ENVELOPE,
        partition_key=PartitionKeyMode.PARTITION,
        aggregation=Aggregation.ON,
        max_record_bytes=10 * MIB,
        dead_letter_bucket="my-dlq.bucket-1",
        dead_letter_prefix="dlq/msk/",
        max_concurrency=16,
        request_timeout_seconds=2.5,
        retry_base_ms=10,
        retry_max_ms=500,
        stream_check_seconds=300,
    )


def test_settings_are_frozen():
    # GIVEN parsed settings
    settings = _settings()

    # WHEN / THEN they can not be changed afterwards
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.stream_name = "other"  # type: ignore[misc]


# -- STREAM_NAME --------------------------------------------------------------------------


@pytest.mark.parametrize("env", [{}, {"STREAM_NAME": ""}, {"STREAM_NAME": "   "}])
def test_settings_stream_name_required(env: dict[str, str]):
    # GIVEN / WHEN / THEN a missing stream is named, with what to set
    with pytest.raises(ConfigurationError, match=r"STREAM_NAME is required.*name or stream ARN"):
        Settings.from_env(env)


@pytest.mark.parametrize("name", ["s", "orders-stream", "a.b_c-D9", "x" * 128, " padded "])
def test_settings_stream_name_plain(name: str):
    # GIVEN a valid stream name
    settings = _settings(STREAM_NAME=name)

    # THEN it is used as the name and there is no ARN
    assert settings.stream_name == name.strip()
    assert settings.stream_arn is None


@pytest.mark.parametrize(
    "arn",
    [
        STREAM_ARN,
        "arn:aws-cn:kinesis:cn-north-1:123456789012:stream/s",
        "arn:aws-us-gov:kinesis:us-gov-west-1:123456789012:stream/s.1_2-3",
    ],
)
def test_settings_stream_arn_gives_name_and_arn(arn: str):
    # GIVEN a stream ARN in any AWS partition
    settings = _settings(STREAM_NAME=arn)

    # THEN the ARN is kept and the name is taken from it
    assert settings.stream_arn == arn
    assert settings.stream_name == arn.rsplit("/", 1)[1]


@pytest.mark.parametrize(
    "value",
    [
        "x" * 129,
        "has space",
        "slash/name",
        "name:colon",
        "arn:aws:kinesis:us-east-1:12345:stream/s",
        "arn:aws:sqs:us-east-1:123456789012:queue",
        "arn:aws:kinesis:us-east-1:123456789012:stream/",
        "arn:aws:kinesis:us-east-1:123456789012:stream/bad name",
    ],
)
def test_settings_stream_name_invalid(value: str):
    # GIVEN / WHEN / THEN an invalid name or ARN is named with both accepted forms
    with pytest.raises(ConfigurationError, match="STREAM_NAME=") as raised:
        _settings(STREAM_NAME=value)
    assert "stream name" in str(raised.value)
    assert "stream ARN" in str(raised.value)


# -- choices ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "raw", "expected"),
    [
        ("RECORD_FORMAT", "raw", RecordFormat.RAW),
        ("RECORD_FORMAT", "ENVELOPE", RecordFormat.ENVELOPE),
        ("RECORD_FORMAT", " Envelope ", RecordFormat.ENVELOPE),
        ("RECORD_FORMAT", "", RecordFormat.RAW),
        ("PARTITION_KEY", "key", PartitionKeyMode.KEY),
        ("PARTITION_KEY", "Partition", PartitionKeyMode.PARTITION),
        ("PARTITION_KEY", "", PartitionKeyMode.KEY),
        ("AGGREGATION", "ON", Aggregation.ON),
        ("AGGREGATION", "off", Aggregation.OFF),
        ("AGGREGATION", "", Aggregation.ON),
    ],
)
def test_settings_choice_values_case_and_blank(variable: str, raw: str, expected: object):
    # GIVEN a choice variable in any case, or blank
    settings = _settings(**{variable: raw})

    # THEN it is read case-insensitively and blank means the default
    field = {
        "RECORD_FORMAT": "record_format",
        "PARTITION_KEY": "partition_key",
        "AGGREGATION": "aggregation",
    }[variable]
    assert getattr(settings, field) is expected


@pytest.mark.parametrize(
    ("variable", "raw", "allowed"),
    [
        ("RECORD_FORMAT", "json", "raw, envelope"),
        ("RECORD_FORMAT", "avro", "raw, envelope"),
        ("PARTITION_KEY", "random", "key, partition"),
        ("PARTITION_KEY", "keys", "key, partition"),
        ("AGGREGATION", "true", "off, on"),
        ("AGGREGATION", "1", "off, on"),
    ],
)
def test_settings_choice_invalid_names_variable_and_allowed(variable: str, raw: str, allowed: str):
    # GIVEN / WHEN / THEN an unknown choice is named with the allowed values
    with pytest.raises(ConfigurationError) as raised:
        _settings(**{variable: raw})
    message = str(raised.value)
    assert message.startswith(f"{variable}=")
    assert raw in message
    assert allowed in message


# -- numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "raw", "field", "expected"),
    [
        ("MAX_RECORD_BYTES", "1024", "max_record_bytes", 1024),
        ("MAX_RECORD_BYTES", str(MAX_RECORD_BYTES_CEILING), "max_record_bytes", 10 * MIB),
        ("MAX_RECORD_BYTES", " 2097152 ", "max_record_bytes", 2 * MIB),
        ("MAX_CONCURRENCY", "1", "max_concurrency", 1),
        ("MAX_CONCURRENCY", "64", "max_concurrency", 64),
        ("KINESIS_TIMEOUT_SECONDS", "0.1", "request_timeout_seconds", 0.1),
        ("KINESIS_TIMEOUT_SECONDS", "60", "request_timeout_seconds", 60.0),
        ("RETRY_BASE_MS", "1", "retry_base_ms", 1),
        ("RETRY_MAX_MS", "60000", "retry_max_ms", 60_000),
        ("STREAM_CHECK_SECONDS", "1", "stream_check_seconds", 1),
        ("STREAM_CHECK_SECONDS", "3600", "stream_check_seconds", 3_600),
    ],
)
def test_settings_numbers_at_their_bounds(variable: str, raw: str, field: str, expected: float):
    # GIVEN a number at an edge of its range
    settings = _settings(**{variable: raw})

    # THEN it is accepted
    assert getattr(settings, field) == expected


@pytest.mark.parametrize(
    ("variable", "raw", "allowed"),
    [
        ("MAX_RECORD_BYTES", "1023", "1024-10485760"),
        ("MAX_RECORD_BYTES", str(MAX_RECORD_BYTES_CEILING + 1), "1024-10485760"),
        ("MAX_RECORD_BYTES", "0", "1024-10485760"),
        ("MAX_RECORD_BYTES", "-1", "1024-10485760"),
        ("MAX_RECORD_BYTES", "1MiB", "1024-10485760"),
        ("MAX_RECORD_BYTES", "1048576.0", "1024-10485760"),
        ("MAX_CONCURRENCY", "0", "1-64"),
        ("MAX_CONCURRENCY", "65", "1-64"),
        ("MAX_CONCURRENCY", "eight", "1-64"),
        ("KINESIS_TIMEOUT_SECONDS", "0.09", "0.1-60.0"),
        ("KINESIS_TIMEOUT_SECONDS", "61", "0.1-60.0"),
        ("KINESIS_TIMEOUT_SECONDS", "nan", "0.1-60.0"),
        ("KINESIS_TIMEOUT_SECONDS", "inf", "0.1-60.0"),
        ("KINESIS_TIMEOUT_SECONDS", "5s", "0.1-60.0"),
        ("RETRY_BASE_MS", "0", "1-10000"),
        ("RETRY_BASE_MS", "10001", "1-10000"),
        ("RETRY_MAX_MS", "0", "1-60000"),
        ("RETRY_MAX_MS", "60001", "1-60000"),
        ("RETRY_MAX_MS", "2.5", "1-60000"),
        ("STREAM_CHECK_SECONDS", "0", "1-3600"),
        ("STREAM_CHECK_SECONDS", "3601", "1-3600"),
        ("STREAM_CHECK_SECONDS", "0.5", "1-3600"),
    ],
)
def test_settings_number_invalid_names_variable_and_range(variable: str, raw: str, allowed: str):
    # GIVEN / WHEN / THEN a bad number is named with its allowed range
    with pytest.raises(ConfigurationError) as raised:
        _settings(**{variable: raw})
    message = str(raised.value)
    assert message.startswith(f"{variable}=")
    assert f"allowed: {allowed}" in message


def test_settings_retry_max_below_base_is_rejected():
    # GIVEN a backoff cap below its base
    # WHEN / THEN both variables are named
    with pytest.raises(ConfigurationError, match="RETRY_MAX_MS=100 must be >= RETRY_BASE_MS=200"):
        _settings(RETRY_BASE_MS="200", RETRY_MAX_MS="100")


def test_settings_retry_max_equal_to_base_is_accepted():
    # GIVEN a cap equal to the base
    settings = _settings(RETRY_BASE_MS="300", RETRY_MAX_MS="300")

    # THEN both are kept
    assert (settings.retry_base_ms, settings.retry_max_ms) == (300, 300)


def test_settings_retry_max_default_below_large_base_is_rejected():
    # GIVEN only a base above the default cap of 2000 ms
    # WHEN / THEN the conflict with the default cap is reported
    with pytest.raises(ConfigurationError, match="RETRY_MAX_MS=2000 must be >= RETRY_BASE_MS"):
        _settings(RETRY_BASE_MS="5000")


# -- dead letters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bucket",
    [
        "abc",
        "my-dlq",
        "logs.example.com",
        "a" * 63,
        "1bucket9",
        "1.2.3",
        "10.0.0.1.backup",
        "dlq-111122223333-us-west-2-an",  # a bucket in an account regional namespace
        "my-xn--bucket",
        "s3alias-dlq",
    ],
)
def test_settings_dead_letter_bucket_valid(bucket: str):
    # GIVEN a valid bucket name
    # THEN it is kept
    assert _settings(DEAD_LETTER_BUCKET=bucket).dead_letter_bucket == bucket


@pytest.mark.parametrize("bucket", ["", "  "])
def test_settings_dead_letter_bucket_blank_means_none(bucket: str):
    # GIVEN an empty bucket variable
    # THEN no dead-letter bucket is configured
    assert _settings(DEAD_LETTER_BUCKET=bucket).dead_letter_bucket is None


@pytest.mark.parametrize(
    "bucket",
    ["ab", "a" * 64, "My-Bucket", "-bucket", "bucket-", "under_score", "s3://bucket", "bücket"],
)
def test_settings_dead_letter_bucket_invalid(bucket: str):
    # GIVEN / WHEN / THEN an invalid bucket name is named with the naming rules
    with pytest.raises(ConfigurationError) as raised:
        _settings(DEAD_LETTER_BUCKET=bucket)
    message = str(raised.value)
    assert message.startswith("DEAD_LETTER_BUCKET=")
    assert "3-63 characters" in message


@pytest.mark.parametrize(
    ("bucket", "problem"),
    [
        ("a..b", "two adjacent periods"),
        ("my..dlq", "two adjacent periods"),
        ("192.168.1.1", "formatted as an IP address"),
        ("10.0.0.255", "formatted as an IP address"),
        ("xn--abc", "the prefix 'xn--' is reserved"),
        ("sthree-dlq", "the prefix 'sthree-' is reserved"),
        ("sthree-configurator-1", "the prefix 'sthree-' is reserved"),
        ("amzn-s3-demo-bucket", "the prefix 'amzn-s3-demo-' is reserved"),
        ("dlq-s3alias", "the suffix '-s3alias' is reserved"),
        ("dlq--ol-s3", "the suffix '--ol-s3' is reserved"),
        ("dlq.mrap", "the suffix '.mrap' is reserved"),
        ("dlq--usw2-az1--x-s3", "the suffix '--x-s3' is reserved"),
        ("dlq--table-s3", "the suffix '--table-s3' is reserved"),
    ],
)
def test_settings_dead_letter_bucket_breaking_a_naming_rule_names_the_rule(
    bucket: str, problem: str
):
    # GIVEN a bucket name of valid characters that breaks one of S3's other naming rules
    # WHEN / THEN it is refused, naming the variable, the value and the rule
    with pytest.raises(ConfigurationError) as raised:
        _settings(DEAD_LETTER_BUCKET=bucket)
    assert str(raised.value) == (
        f"DEAD_LETTER_BUCKET={bucket!r} is not a valid S3 bucket name: {problem}"
    )


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("records/", "records/"), ("dlq", "dlq/"), ("a/b", "a/b/"), ("", ""), (" x/ ", "x/")],
)
def test_settings_dead_letter_prefix_ends_with_slash(prefix: str, expected: str):
    # GIVEN a dead-letter prefix with or without a trailing slash
    # THEN it is used as a folder (or as nothing when empty)
    assert _settings(DEAD_LETTER_PREFIX=prefix).dead_letter_prefix == expected


# -- ASCII only ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "account",
    [
        "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660\u0661\u0662",
        "\uff11" * 12,
        "12345678901\u0662",
    ],
)
def test_settings_stream_arn_with_other_scripts_digits_is_invalid(account: str):
    # GIVEN an ARN whose account "digits" are Arabic-Indic or full-width digits
    arn = f"arn:aws:kinesis:us-east-1:{account}:stream/s"

    # WHEN / THEN it is neither an ARN nor a stream name
    with pytest.raises(ConfigurationError, match="STREAM_NAME="):
        _settings(STREAM_NAME=arn)


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("MAX_CONCURRENCY", "\u0668"),
        ("MAX_CONCURRENCY", "\uff18"),
        ("MAX_CONCURRENCY", "1_6"),
        ("MAX_RECORD_BYTES", "9" * 5_000),
        ("KINESIS_TIMEOUT_SECONDS", "\u0665"),
        ("KINESIS_TIMEOUT_SECONDS", "2_5"),
        ("RETRY_BASE_MS", "\u0665\u0660"),
    ],
)
def test_settings_numbers_accept_only_ascii_digits(variable: str, raw: str):
    # GIVEN a number written with other scripts' digits, separators, or 5,000 digits
    # WHEN / THEN it is refused as not a number, naming the variable
    with pytest.raises(ConfigurationError, match=rf"^{variable}=.* is not (an integer|a number)"):
        _settings(**{variable: raw})


@pytest.mark.parametrize(("raw", "expected"), [("+8", 8), ("08", 8), (" 16 ", 16)])
def test_settings_integers_in_plain_ascii_forms(raw: str, expected: int):
    # GIVEN an integer with a sign, a leading zero or spaces
    # THEN it is read
    assert _settings(MAX_CONCURRENCY=raw).max_concurrency == expected


@pytest.mark.parametrize(
    ("variable", "raw"),
    [("RECORD_FORMAT", "XML"), ("PARTITION_KEY", "Random"), ("AGGREGATION", " Maybe ")],
)
def test_settings_choice_error_shows_the_value_as_given(variable: str, raw: str):
    # GIVEN a choice in upper or mixed case that is not allowed
    # WHEN / THEN the message shows it exactly as it was set
    with pytest.raises(ConfigurationError) as raised:
        _settings(**{variable: raw})
    assert str(raised.value).startswith(f"{variable}={raw!r} is not one of: ")


# -- variables read by Powertools and the AWS SDK -----------------------------------------


@pytest.mark.parametrize(
    "level", ["DEBUG", "debug", "Info", "WARNING", "warn", "ERROR", "CRITICAL"]
)
def test_settings_powertools_log_level_valid(level: str):
    # GIVEN a log level Powertools understands, in any case
    # THEN the settings are accepted
    assert _settings(POWERTOOLS_LOG_LEVEL=level).stream_name == "orders-stream"


@pytest.mark.parametrize("level", ["verbose", "TRACE", "10", " DEBUG", "INFO "])
def test_settings_powertools_log_level_invalid_names_the_variable(level: str):
    # GIVEN a log level Powertools would fail on with a bare ValueError
    # WHEN / THEN it is refused, naming the variable and the allowed levels
    with pytest.raises(ConfigurationError) as raised:
        _settings(POWERTOOLS_LOG_LEVEL=level)
    assert str(raised.value).startswith(f"POWERTOOLS_LOG_LEVEL={level!r} is not a log level")
    assert "DEBUG, INFO, WARNING, ERROR, CRITICAL" in str(raised.value)


def test_settings_legacy_log_level_is_checked_when_powertools_reads_it():
    # GIVEN the legacy LOG_LEVEL, which Powertools reads when POWERTOOLS_LOG_LEVEL is unset
    # WHEN / THEN a bad one is named; with POWERTOOLS_LOG_LEVEL set it is not read at all
    with pytest.raises(ConfigurationError, match=r"^LOG_LEVEL='loud' is not a log level"):
        _settings(LOG_LEVEL="loud")
    assert _settings(LOG_LEVEL="loud", POWERTOOLS_LOG_LEVEL="INFO").stream_name


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:4566",
        "http://127.0.0.1:9000/",
        "https://kinesis.eu-west-1.amazonaws.com",
        "https://vpce-0a1b-c2d3.kinesis.us-east-1.vpce.amazonaws.com",
        "http://[::1]:4566",
        "http://moto:5000/path",
    ],
)
@pytest.mark.parametrize("variable", ENDPOINT_VARIABLES)
def test_settings_endpoint_url_valid(variable: str, url: str):
    # GIVEN an SDK endpoint override that botocore accepts
    # THEN the settings are accepted
    assert _settings(**{variable: url}).stream_name == "orders-stream"


@pytest.mark.parametrize(
    "url",
    [
        "localhost:4566",
        "not a url",
        "ftp://example.com",
        "http://",
        "http://a_b:80",
        "http://host:port",
        "http://localhost:99999",
        " http://localhost:4566",
        "http://[zz::1]:4566",
        "http://b\u00fccket.example.com",
        "http://-bad.example.com",
    ],
)
@pytest.mark.parametrize("variable", ENDPOINT_VARIABLES)
def test_settings_endpoint_url_invalid_names_the_variable(variable: str, url: str):
    # GIVEN an endpoint override boto3 would refuse with "ValueError: Invalid endpoint"
    # WHEN / THEN it is refused at once, naming the variable
    with pytest.raises(ConfigurationError) as raised:
        _settings(**{variable: url})
    assert str(raised.value).startswith(f"{variable}={url!r} is not an endpoint URL")


# -- STREAM_ROUTES ------------------------------------------------------------------------


def test_settings_stream_routes_first_match_wins_and_default_takes_the_rest():
    # GIVEN routes with a glob, an exact name and an ARN, and a default stream
    settings = _settings(
        STREAM_ROUTES=f"orders.eu=eu-orders, orders.*=orders-all,payments={STREAM_ARN}"
    )
    # WHEN topics are routed
    # THEN the first matching pattern wins and unmatched topics go to STREAM_NAME
    assert settings.stream_for("orders.eu") == "eu-orders"
    assert settings.stream_for("orders.us") == "orders-all"
    assert settings.stream_for("payments") == STREAM_ARN
    assert settings.stream_for("audit") == "orders-stream"
    assert [route.pattern for route in settings.stream_routes] == [
        "orders.eu",
        "orders.*",
        "payments",
    ]


def test_settings_stream_routes_without_default_stream():
    # GIVEN routes and no STREAM_NAME
    settings = Settings.from_env({"STREAM_ROUTES": "a-*=s1"})
    # THEN routed topics have a stream and others have none (an invocation error, named)
    assert settings.stream_for("a-1") == "s1"
    assert settings.stream_for("b") is None
    assert settings.default_stream is None


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ("orders", "'orders' is not pattern=stream"),
        ("orders=", "'orders=' is not pattern=stream"),
        ("=s", "'=s' is not pattern=stream"),
        ("or ders=s", "pattern 'or ders' is not a topic name or glob"),
        ("a=s1,a=s2", "pattern 'a' appears twice"),
        ("a=bad stream", "STREAM_ROUTES stream for a='bad stream' is neither a stream name"),
        ("a=s,,b=t", "'' is not pattern=stream"),
    ],
)
def test_settings_stream_routes_invalid_says_which_item(routes: str, message: str):
    with pytest.raises(ConfigurationError) as raised:
        _settings(STREAM_ROUTES=routes)
    assert message in str(raised.value)


# -- PARTITION_KEY=header:<name> ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "header"), [("header:tenant", "tenant"), ("Header:x-trace id", "x-trace id")]
)
def test_settings_partition_key_header(raw: str, header: str):
    settings = _settings(PARTITION_KEY=raw)
    assert (settings.partition_key, settings.partition_key_header) == (
        PartitionKeyMode.HEADER,
        header,
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("header", "names no header: use header:<name>"),
        ("header:", "needs a header name after 'header:'"),
        ("header:a,b", "needs a header name after 'header:'"),
        ("header:tab\there", "needs a header name after 'header:'"),
    ],
)
def test_settings_partition_key_header_invalid(raw: str, message: str):
    with pytest.raises(ConfigurationError, match=message) as raised:
        _settings(PARTITION_KEY=raw)
    assert str(raised.value).startswith("PARTITION_KEY=")


# -- to_env: the environment the stack writes ----------------------------------------------

_NAMES = st.from_regex(r"[a-zA-Z0-9_.-]{1,30}", fullmatch=True)
_ARNS = st.builds(
    "arn:{}:kinesis:{}:{}:stream/{}".format,
    st.sampled_from(["aws", "aws-cn", "aws-us-gov"]),
    st.from_regex(r"[a-z0-9-]{1,16}", fullmatch=True),
    st.from_regex(r"[0-9]{12}", fullmatch=True),
    _NAMES,
)
_ROUTES = st.lists(
    st.builds(
        StreamRoute,
        st.from_regex(r"[a-zA-Z0-9._*?\[\]!-]{1,20}", fullmatch=True),
        st.one_of(_NAMES, _ARNS),
    ),
    max_size=4,
    unique_by=lambda route: route.pattern,
).map(tuple)
# A header name as PARTITION_KEY=header:<name> leaves it: no control character or ',', and no
# trailing space (the variable's text is stripped).
_HEADERS = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters=","),
    min_size=1,
    max_size=12,
).filter(lambda name: not name[-1].isspace())
_BUCKETS = st.from_regex(r"[a-z0-9][a-z0-9.-]{1,20}[a-z0-9]", fullmatch=True).filter(
    lambda name: bucket_name_problem(name) is None
)
_PREFIXES = st.from_regex(r"[a-zA-Z0-9!_.*'()/-]{0,12}", fullmatch=True).map(
    lambda prefix: prefix if not prefix or prefix.endswith("/") else prefix + "/"
)


@st.composite
def valid_settings(draw: st.DrawFn) -> Settings:
    """Any Settings that from_env can produce."""
    routes = draw(_ROUTES)
    stream = draw(st.one_of(_NAMES, _ARNS) if not routes else st.none() | _NAMES | _ARNS)
    header = draw(st.none() | _HEADERS)
    mode = (
        PartitionKeyMode.HEADER
        if header is not None
        else draw(st.sampled_from(["key", "partition"]))
    )
    retry_base = draw(st.integers(1, 10_000))
    record_format = draw(st.sampled_from(RecordFormat))
    dead_letter_bucket = draw(st.none() | _BUCKETS)
    # Claim checks: envelopes only, and a bucket of their own or the dead-letter one.
    claim_check = record_format is RecordFormat.ENVELOPE and draw(st.booleans())
    claim_check_bucket = draw(st.none() | _BUCKETS) if claim_check else None
    if claim_check and claim_check_bucket is None and dead_letter_bucket is None:
        claim_check_bucket = draw(_BUCKETS)
    return Settings(
        stream_name=stream.rsplit("/", 1)[-1] if stream is not None else None,
        stream_arn=stream if stream is not None and stream.startswith("arn:") else None,
        record_format=record_format,
        partition_key=PartitionKeyMode(mode),
        partition_key_header=header,
        aggregation=draw(st.sampled_from(Aggregation)),
        max_record_bytes=draw(st.integers(1024, MAX_RECORD_BYTES_CEILING)),
        dead_letter_bucket=dead_letter_bucket,
        dead_letter_prefix=draw(_PREFIXES),
        max_concurrency=draw(st.integers(1, 64)),
        request_timeout_seconds=draw(st.floats(0.1, 60.0)),
        log_level=draw(st.sampled_from(LOG_LEVELS)),
        retry_base_ms=retry_base,
        retry_max_ms=draw(st.integers(retry_base, 60_000)),
        stream_check_seconds=draw(st.integers(1, 3_600)),
        stream_routes=routes,
        oversize_records=OversizeRecords.CLAIM_CHECK
        if claim_check
        else OversizeRecords.DEAD_LETTER,
        claim_check_bucket=claim_check_bucket,
    )


@given(valid_settings())
def test_settings_from_env_reads_to_env_back(settings: Settings):
    # GIVEN any valid settings
    # WHEN they are written as an environment and read again
    env = settings.to_env()
    # THEN the same settings come back, from text alone
    assert Settings.from_env(env) == settings
    assert all(isinstance(value, str) for value in env.values())


# Drawn valid for the most part (a rejected draw proves nothing): a default stream always (no
# route here covers every topic), and the claim-check settings only together, with envelopes.
_OVERSIZE_SETTINGS = st.sampled_from(
    [
        {},
        {"OVERSIZE_RECORDS": "dead_letter"},
        {"OVERSIZE_RECORDS": ""},
        {"OVERSIZE_RECORDS": "", "CLAIM_CHECK_BUCKET": ""},
        {
            "OVERSIZE_RECORDS": " Claim_Check",
            "CLAIM_CHECK_BUCKET": "claims",
            "RECORD_FORMAT": "envelope",
        },
        {
            "OVERSIZE_RECORDS": "claim_check",
            "CLAIM_CHECK_BUCKET": " claims ",
            "RECORD_FORMAT": " Envelope ",
        },
    ]
)
_ENVIRONMENTS = st.builds(
    lambda base, oversize: {**base, **oversize},
    st.fixed_dictionaries(
        {"STREAM_NAME": st.sampled_from(["orders", " orders ", STREAM_ARN, f"{STREAM_ARN} "])},
        optional={
            "STREAM_ROUTES": st.sampled_from(["", " a=s1 , b*=s2", f"pay*={STREAM_ARN}"]),
            "RECORD_FORMAT": st.sampled_from(["raw", " Envelope ", "RAW", ""]),
            "PARTITION_KEY": st.sampled_from(
                ["key", "Partition ", " header:tenant", "HEADER:x id"]
            ),
            "AGGREGATION": st.sampled_from(["on", " OFF", ""]),
            "MAX_RECORD_BYTES": st.sampled_from(["1024", " 2097152", "+1048576", "010485760", ""]),
            "DEAD_LETTER_BUCKET": st.sampled_from(["my-dlq", " my-dlq ", ""]),
            "DEAD_LETTER_PREFIX": st.sampled_from(["dlq", " a/b/ ", "", "records/"]),
            "MAX_CONCURRENCY": st.sampled_from(["8", "+16", " 064", ""]),
            "KINESIS_TIMEOUT_SECONDS": st.sampled_from(["2.50", "5", "0.1", "6e1", " 1.0 ", ""]),
            "RETRY_BASE_MS": st.sampled_from(["1", "10", " 0100 "]),
            "RETRY_MAX_MS": st.sampled_from(["100", "2000", "+60000"]),
            "STREAM_CHECK_SECONDS": st.sampled_from(["1", " 60", "+3600", "0120", ""]),
            "POWERTOOLS_LOG_LEVEL": st.sampled_from(["debug", "Warn", "", "INFO"]),
            "LOG_LEVEL": st.sampled_from(["error", ""]),
            "AWS_ENDPOINT_URL_KINESIS": st.just("http://localhost:4566"),
        },
    ),
    _OVERSIZE_SETTINGS,
)


@given(_ENVIRONMENTS)
def test_settings_to_env_is_the_normal_form_of_an_environment(env: dict[str, str]):
    # GIVEN an environment the function accepts, written any way it accepts
    try:
        settings = Settings.from_env(env)
    except ConfigurationError:
        reject()
    # WHEN the settings it gives are written back
    normal = settings.to_env()
    # THEN that environment means the same, is its own normal form, and holds only the
    # function's settings, unpadded (the SDK's and the legacy variables are not written)
    assert Settings.from_env(normal) == settings
    assert Settings.from_env(normal).to_env() == normal
    assert all(value == value.strip() for value in normal.values())
    assert not {"LOG_LEVEL", *ENDPOINT_VARIABLES} & set(normal)


def test_settings_to_env_writes_every_setting_and_leaves_out_what_is_unset():
    # GIVEN the defaults, with a stream name
    # WHEN written
    env = Settings.from_env({"STREAM_NAME": "orders-stream"}).to_env()
    # THEN every setting is written, a float as its shortest text, and no bucket or routes
    assert env == {
        "STREAM_NAME": "orders-stream",
        "RECORD_FORMAT": "raw",
        "PARTITION_KEY": "key",
        "AGGREGATION": "on",
        "MAX_RECORD_BYTES": "1048576",
        "DEAD_LETTER_PREFIX": "records/",
        "MAX_CONCURRENCY": "8",
        "KINESIS_TIMEOUT_SECONDS": "5",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "RETRY_BASE_MS": "10",
        "RETRY_MAX_MS": "2000",
        "STREAM_CHECK_SECONDS": "60",
    }


def test_settings_to_env_writes_deploy_time_tokens_as_they_are():
    # GIVEN settings whose stream and bucket are known only at deploy time (CDK tokens)
    settings = Settings(
        stream_name="${Token[TOKEN.1]}",
        stream_arn="${Token[TOKEN.2]}",
        dead_letter_bucket="${Token[TOKEN.3]}",
        stream_routes=(StreamRoute("pay*", "${Token[TOKEN.4]}"),),
    )
    # WHEN written
    env = settings.to_env()
    # THEN each token is the variable's text, for CloudFormation to fill in (by ARN)
    assert env["STREAM_NAME"] == "${Token[TOKEN.2]}"
    assert env["DEAD_LETTER_BUCKET"] == "${Token[TOKEN.3]}"
    assert env["STREAM_ROUTES"] == "pay*=${Token[TOKEN.4]}"


# -- from_keys: the settings a deployment's context keys set --------------------------------


def test_settings_from_keys_reads_each_key_as_its_variable():
    # GIVEN context keys for the function's settings, as text
    context = {
        "recordFormat": "Envelope",
        "partitionKey": "header:tenant",
        "maxConcurrency": "16",
        "kinesisTimeoutSeconds": "2.5",
        "MAX_RECORD_BYTES": "2048",  # a variable's name is not a key
    }
    # WHEN read
    settings = Settings.from_keys(context)
    # THEN each key sets its field as the variable would; every other field keeps its default
    assert settings == Settings(
        record_format=RecordFormat.ENVELOPE,
        partition_key=PartitionKeyMode.HEADER,
        partition_key_header="tenant",
        max_concurrency=16,
        request_timeout_seconds=2.5,
    )


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"maxConcurrency": "65"}, "maxConcurrency=65 is out of range (allowed: 1-64)"),
        ({"aggregation": "yes"}, "aggregation='yes' is not one of: off, on"),
        ({"retryBaseMs": "500", "retryMaxMs": "100"}, "retryMaxMs=100 must be >= retryBaseMs=500"),
        ({"retryBaseMs": "5000"}, "retryMaxMs=2000 must be >= retryBaseMs=5000"),
    ],
)
def test_settings_from_keys_refusal_names_the_key(context: dict[str, str], message: str):
    # GIVEN / WHEN / THEN a refusal is the function's, naming the context key
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_keys(context)
    assert str(raised.value) == message


def test_settings_every_context_key_names_a_variable_of_its_own():
    # GIVEN the keys the settings declare / WHEN compared / THEN one key per variable
    variables = [variable.name for variable in SETTING_KEYS.values()]
    assert len(set(variables)) == len(variables) == len(SETTING_KEYS)
    assert {key: variable.key for key, variable in SETTING_KEYS.items()} == {
        key: key for key in SETTING_KEYS
    }
