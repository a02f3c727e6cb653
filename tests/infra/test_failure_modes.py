"""failureMode=divert|block and OVERSIZE_RECORDS=claim_check as the stack reads and builds them:
what each mode sets on the mappings, what it refuses, and what the role may do."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.config import ConfigError, FailureMode, SinkConfig
from infra.destinations import NoDestination, S3Destination, destination_for
from localloop.esm import EsmConfig
from localloop.failure_mode import with_failure_mode
from msk_kinesis_sink.settings import OversizeRecords
from tests.infra.conftest import (
    CLAIM_CHECK_BUCKET,
    CLUSTER_ARN,
    SECRET_KEY_ARN,
    STREAM_ARN,
    VARIANTS,
    Synth,
    shipped_context,
)
from tests.infra.test_stack import alarms_by_name, logical_id, statement, statements, watched

MINIMAL: dict[str, Any] = {"clusterArn": CLUSTER_ARN, "topics": ["orders"]}
CLAIM_CHECKS: dict[str, Any] = {"recordFormat": "envelope", "oversizeRecords": "claim_check"}


def parse(**overrides: object) -> SinkConfig:
    return SinkConfig.from_context({**MINIMAL, **overrides})


def mapping(synth: Synth) -> dict[str, Any]:
    [props] = [m["Properties"] for m in synth.resources("AWS::Lambda::EventSourceMapping").values()]
    return props


def environment(synth: Synth) -> dict[str, Any]:
    function = synth.resources("AWS::Lambda::Function")[logical_id(synth, "AWS::Lambda::Function")]
    variables: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    return variables


# --- failureMode: what the settings mean ------------------------------------------------------


def test_failure_mode_block_reads_the_shipped_cdk_json_as_it_is() -> None:
    # GIVEN the shipped cdk.json, which spells out retryAttempts=10, maxRecordAgeSeconds=-1 and
    # onFailureDestination=s3, switched to block
    context = {**shipped_context(), "failureMode": "block"}
    # WHEN it is parsed
    config = SinkConfig.from_context(context)
    # THEN those defaults say nothing against block: there is no destination to send to
    assert config.source.failure_mode is FailureMode.BLOCK
    assert destination_for(config.source) is NoDestination
    # ...while divert (the default) keeps the destination it names
    assert parse().source.failure_mode is FailureMode.DIVERT
    assert destination_for(parse().source) is S3Destination


@given(st.integers(min_value=-1, max_value=10_000), st.sampled_from(FailureMode))
def test_failure_mode_retry_attempts_accepted_exactly_where_they_mean_something(
    attempts: int, mode: FailureMode
) -> None:
    # GIVEN any retryAttempts AWS takes, under either mode
    # WHEN parsed
    try:
        config = parse(failureMode=mode.value, retryAttempts=attempts)
    except ConfigError as error:
        # THEN divert refuses only -1 (Lambda caps it at 10 with a destination), block every
        # finite count but the default (without a destination Lambda would drop the batch)
        assert (mode, attempts == -1) in ((FailureMode.DIVERT, True), (FailureMode.BLOCK, False))
        assert attempts != 10
        assert f"retryAttempts={attempts}" in str(error)
    else:
        assert (attempts != -1) if mode is FailureMode.DIVERT else attempts in (-1, 10)
        assert config.source.retry_attempts == attempts


@pytest.mark.parametrize("bisect", [True, False])
def test_failure_mode_block_keeps_bisect_and_unlimited_record_age(bisect: bool) -> None:
    # GIVEN block with bisectOnError either way and maxRecordAgeSeconds=-1 (never too old)
    # WHEN parsed / THEN both are taken: bisect halves a failing batch, and skips nothing
    config = parse(failureMode="block", bisectOnError=bisect, maxRecordAgeSeconds=-1)
    assert config.source.bisect_on_error is bisect


def test_failure_mode_block_refuses_a_schema_registry_naming_both_keys() -> None:
    # GIVEN a Glue registry: Lambda discards records that fail validation without a destination
    registry = "arn:aws:glue:eu-west-1:123456789012:registry/orders"
    # WHEN block asks for none / THEN refused in one line, and divert takes it
    with pytest.raises(ConfigError, match=r"on-failure destination \(failureMode=divert\)"):
        parse(failureMode="block", schemaRegistryUri=registry)
    assert parse(schemaRegistryUri=registry).source.schema_registry is not None


# --- failureMode: what the mappings get -------------------------------------------------------


def test_failure_mode_block_mapping_retries_until_the_fault_clears(
    variant_synths: dict[str, Synth], default_synth: Synth
) -> None:
    # GIVEN the block variant and the shipped (divert) configuration
    block, divert = mapping(variant_synths["block_claim_checks"]), mapping(default_synth)
    # WHEN their mappings are read
    # THEN block has no destination, unlimited retries and unlimited record age, bisect kept
    assert "DestinationConfig" not in block
    assert (block["MaximumRetryAttempts"], block["MaximumRecordAgeInSeconds"]) == (-1, -1)
    assert block["BisectBatchOnFunctionError"] is True
    assert block["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # ...and divert keeps the bucket and at most 10 retries, with Lambda's record age
    assert "DestinationConfig" in divert and divert["MaximumRetryAttempts"] == 10
    assert "MaximumRecordAgeInSeconds" not in divert


def test_failure_mode_block_gives_the_mappings_no_bucket_grants(
    variant_synths: dict[str, Synth], default_synth: Synth
) -> None:
    # GIVEN block (nothing delivered anywhere) and divert to the dead-letter bucket
    block = variant_synths["block_claim_checks"]
    # WHEN the roles are read
    # THEN with block the role writes only the function's own prefixes, and never lists
    assert "ListDeadLetterBucket" not in {s.get("Sid") for s in statements(block)}
    bucket = logical_id(block, "AWS::S3::Bucket")
    assert statement(block, "WriteDeadLetters")["Resource"] == {
        "Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/records/*"]]
    }
    # ...while divert's mappings write whole batches anywhere in the bucket
    assert statement(default_synth, "ListDeadLetterBucket")["Action"] == "s3:ListBucket"


def test_failure_mode_block_alarms_on_any_dropped_record(
    variant_synths: dict[str, Synth],
) -> None:
    # GIVEN the block variant
    alarms = alarms_by_name(variant_synths["block_claim_checks"])
    # WHEN its alarms are read
    # THEN a dropped record pages (nothing should be), no delivery alarm exists (nothing is
    # delivered), and the function's errors say the partition waits
    dropped = alarms["MappingDropped-orders"]
    assert [m["MetricName"] for m in watched(dropped)] == ["DroppedEventCount"]
    assert "DestinationDeliveryFailures" not in alarms
    assert "partition waits" in alarms["FunctionErrors"]["AlarmDescription"]
    assert {"OffsetLag", "MappingNotPolling-orders"} <= set(alarms)


def test_failure_mode_local_emulator_runs_the_mapping_synth_builds(
    variant_synths: dict[str, Synth], default_synth: Synth
) -> None:
    for context, synth in (
        (shipped_context(), default_synth),
        (VARIANTS["block_claim_checks"], variant_synths["block_claim_checks"]),
    ):
        # GIVEN a context, and the mapping synth built from it
        props = mapping(synth)
        # WHEN the local loop derives its emulated mapping from the same context
        config, diverts = with_failure_mode(EsmConfig(bootstrap_servers="local:9092"), context)
        # THEN retries, record age, bisect and the destination are the same
        assert config.maximum_retry_attempts == props["MaximumRetryAttempts"]
        assert config.maximum_record_age_s == props.get("MaximumRecordAgeInSeconds", -1)
        assert config.bisect_batch_on_function_error is props["BisectBatchOnFunctionError"]
        assert diverts is ("DestinationConfig" in props)


# --- OVERSIZE_RECORDS=claim_check -------------------------------------------------------------


def test_claim_checks_off_by_default_leave_environment_and_role_as_they_were(
    default_synth: Synth,
) -> None:
    # GIVEN the shipped configuration / WHEN read
    # THEN no claim-check variable is written and the role gets nothing for them
    assert not {"OVERSIZE_RECORDS", "CLAIM_CHECK_BUCKET"} & set(environment(default_synth))
    sids = {s.get("Sid") for s in statements(default_synth)}
    assert not {"WriteClaimChecks", "EncryptClaimChecks"} & sids


def test_claim_checks_in_the_dead_letter_bucket_may_write_their_prefix_only(
    variant_synths: dict[str, Synth],
) -> None:
    # GIVEN claim checks kept in the dead-letter bucket
    synth = variant_synths["block_claim_checks"]
    bucket = logical_id(synth, "AWS::S3::Bucket")
    # WHEN the function's environment and role are read
    env = environment(synth)
    write = statement(synth, "WriteClaimChecks")
    # THEN the function claim-checks into its dead-letter bucket...
    assert env["OVERSIZE_RECORDS"] == "claim_check" and "CLAIM_CHECK_BUCKET" not in env
    assert env["DEAD_LETTER_BUCKET"] == {"Ref": bucket}
    # ...may put objects under claim-checks/ of that bucket, in this account only...
    assert write["Action"] == "s3:PutObject"
    assert write["Resource"] == {
        "Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/claim-checks/*"]]
    }
    assert write["Condition"] == {"StringEquals": {"s3:ResourceAccount": {"Ref": "AWS::AccountId"}}}
    # ...and encrypt them with the bucket's key, which it may use for dead letters already
    key = synth.stack.get_logical_id(synth.stack.dead_letters.key.node.default_child)
    encrypt = statement(synth, "EncryptDeadLetters")
    assert encrypt["Resource"] == {"Fn::GetAtt": [key, "Arn"]}
    assert "EncryptClaimChecks" not in {s.get("Sid") for s in statements(synth)}


def test_claim_checks_in_a_bucket_of_their_own_get_its_prefix_and_key(
    variant_synths: dict[str, Synth],
) -> None:
    # GIVEN claimCheckBucket and claimCheckKmsKeyArn
    synth = variant_synths["claim_checks_own_bucket"]
    # WHEN the environment and the role are read
    env = environment(synth)
    # THEN the function names the bucket, may write its claim-check prefix and use its key
    assert env["CLAIM_CHECK_BUCKET"] == CLAIM_CHECK_BUCKET
    assert statement(synth, "WriteClaimChecks")["Resource"] == {
        "Fn::Join": [
            "",
            ["arn:", {"Ref": "AWS::Partition"}, f":s3:::{CLAIM_CHECK_BUCKET}/claim-checks/*"],
        ]
    }
    encrypt = statement(synth, "EncryptClaimChecks")
    assert (encrypt["Action"], encrypt["Resource"]) == ("kms:GenerateDataKey", SECRET_KEY_ARN)


def test_claim_checks_must_outlive_the_pointers_of_created_streams() -> None:
    # GIVEN claim checks in the dead-letter bucket, kept 1 day, and a stream keeping 48 hours
    short = {**CLAIM_CHECKS, "deadLetterRetentionDays": 1, "streamRetentionHours": 48}
    # WHEN parsed / THEN refused: a pointer could outlive its object
    with pytest.raises(ConfigError, match=r"streamRetentionHours=48 outlives the claim checks"):
        parse(**short)
    # ...but a bucket of their own, an imported stream, or a day's retention is fine
    assert parse(**short, claimCheckBucket=CLAIM_CHECK_BUCKET).function.settings.claim_check_bucket
    imported = {k: v for k, v in short.items() if k != "streamRetentionHours"}
    assert parse(**imported, streamArn=STREAM_ARN)
    assert parse(**{**short, "streamRetentionHours": 24})


def test_claim_checks_reach_the_function_as_its_own_settings() -> None:
    # GIVEN the context keys
    config = parse(**CLAIM_CHECKS, claimCheckBucket=CLAIM_CHECK_BUCKET)
    # WHEN the function's settings are read / THEN they are the function's own parse of them
    settings = config.function.settings
    assert settings.oversize_records is OversizeRecords.CLAIM_CHECK
    assert settings.claim_check_bucket == CLAIM_CHECK_BUCKET
