"""The local loop's failure mode: cdk.json's failureMode (and retry keys) as the ESM emulator runs
them, and the demo's FAILURE_MODE / --failure-mode."""

from __future__ import annotations

import pytest

from infra.failure_modes import UNLIMITED
from localloop.demo import DemoInputError, _parse
from localloop.esm import EsmConfig
from localloop.failure_mode import cdk_context, failure_settings, with_failure_mode

BASE = EsmConfig(bootstrap_servers="127.0.0.1:9092")


def test_local_failure_mode_divert_from_the_shipped_cdk_json() -> None:
    # GIVEN the shipped cdk.json (failureMode=divert, retryAttempts=10, maxRecordAgeSeconds=-1)
    # WHEN the emulator's mapping is derived from it
    config, diverts = with_failure_mode(BASE, cdk_context())
    # THEN it retries 10 times, never drops a record for its age, bisects, and has a destination
    assert (config.maximum_retry_attempts, config.maximum_record_age_s) == (10, UNLIMITED)
    assert config.bisect_batch_on_function_error is True
    assert diverts is True
    assert config.retry_limit(has_destination=diverts) == 10


@pytest.mark.parametrize("mode", ["block", " Block "])
def test_local_failure_mode_block_retries_until_the_fault_clears(mode: str) -> None:
    # GIVEN block, as cdk.json or `-c failureMode=...` gives it, beside the shipped retry keys
    # WHEN the emulator's mapping is derived
    config, diverts = with_failure_mode(BASE, {**cdk_context(), "failureMode": mode})
    # THEN no destination, no retry limit, no record age: the partition waits
    assert diverts is False
    assert (config.maximum_retry_attempts, config.maximum_record_age_s) == (UNLIMITED, UNLIMITED)
    assert config.retry_limit(has_destination=diverts) is None


def test_local_failure_mode_reads_values_as_the_command_line_gives_them() -> None:
    # GIVEN text values, as `-c key=value` hands them over
    retries, bisect = failure_settings(
        {"retryAttempts": "3", "maxRecordAgeSeconds": "600", "bisectOnError": "false"}
    )
    # THEN they read as numbers and booleans, divert by default
    assert (retries.retry_attempts, retries.max_record_age_seconds) == (3, 600)
    assert (retries.has_destination, bisect) == (True, False)


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"failureMode": "wait"}, "failureMode='wait' is not one of: divert, block"),
        ({"retryAttempts": "ten"}, "retryAttempts='ten' is not an integer"),
        ({"retryAttempts": True}, "retryAttempts=True is not an integer"),
        ({"bisectOnError": "yes"}, "bisectOnError='yes' is not true or false"),
    ],
)
def test_local_failure_mode_bad_value_names_its_key(
    context: dict[str, object], message: str
) -> None:
    # GIVEN / WHEN / THEN a value that isn't one is refused in one line naming the key
    with pytest.raises(ValueError) as raised:
        failure_settings(context)
    assert str(raised.value) == message


def test_demo_failure_mode_from_option_variable_or_cdk_json() -> None:
    # GIVEN no option and no variable / WHEN parsed / THEN cdk.json's failureMode
    assert _parse([], {}).failure_mode == cdk_context()["failureMode"] == "divert"
    # ...the variable, in any case, over cdk.json; the option over the variable
    assert _parse([], {"FAILURE_MODE": "Block"}).failure_mode == "block"
    assert _parse(["--failure-mode", "divert"], {"FAILURE_MODE": "block"}).failure_mode == "divert"
    # ...and a typo is refused naming where it came from
    with pytest.raises(DemoInputError, match=r"^FAILURE_MODE='blok' is not a failure mode"):
        _parse([], {"FAILURE_MODE": "blok"})
    with pytest.raises(DemoInputError, match=r"^--failure-mode='x' is not a failure mode"):
        _parse(["--failure-mode", "x"], {})


def test_demo_story_takes_its_own_failure_mode_over_cdk_json() -> None:
    # GIVEN cdk.json's divert / WHEN the keep story is parsed / THEN it runs block, its own
    assert _parse(["--keep"], {}).failure_mode == "block"
    assert _parse(["--keep"], {"FAILURE_MODE": "BLOCK"}).failure_mode == "block"
    # AND a failure mode given otherwise, by variable or option, is refused naming the story's
    with pytest.raises(DemoInputError, match=r"^--keep needs failureMode=block: "):
        _parse(["--keep"], {"FAILURE_MODE": "divert"})
    with pytest.raises(DemoInputError, match=r"^--replay needs failureMode=divert: "):
        _parse(["--replay", "--failure-mode", "block"], {})
