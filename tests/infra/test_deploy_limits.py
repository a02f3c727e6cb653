"""The stack within what CloudFormation and the event source mappings accept, measured on synths:
the function's timeout, the number of topics, the template's size."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from msk_kinesis_sink.limits import MAX_KAFKA_FUNCTION_TIMEOUT_SECONDS
from tests.infra.conftest import Synth, shipped_context

pytestmark = pytest.mark.infra


def test_limits_longest_timeout_a_kafka_mapping_takes_synthesizes(
    builder: Callable[..., Synth],
) -> None:
    # GIVEN the longest timeout a Kafka event source mapping invokes (14 minutes)
    context = {**shipped_context(), "functionTimeoutSeconds": MAX_KAFKA_FUNCTION_TIMEOUT_SECONDS}
    # WHEN synthesized
    synth = builder(context)
    # THEN the function has it, and its duration alarm follows it
    [function] = synth.resources("AWS::Lambda::Function").values()
    assert function["Properties"]["Timeout"] == 840
    alarm = synth.stack.monitoring.alarms["DurationNearTimeout"].node.default_child
    props = synth.template_json["Resources"][synth.stack.get_logical_id(alarm)]["Properties"]
    assert props["Threshold"] == 840_000 * 0.8
