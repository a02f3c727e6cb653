"""The fault proxy's decisions, without a proxy: a poisoned key, bounded or not."""

from __future__ import annotations

import pytest

from localloop.faults import FaultDecider, FaultSpec, FaultSpecError, RecordFault, record_identity

REFUSED = RecordFault.INTERNAL


def test_fault_decider_poison_lifts_after_its_failures() -> None:
    # GIVEN two poisoned keys that fail their first 3 attempts
    decider = FaultDecider(FaultSpec.parse("poison=p|q,poison_failures=3"))
    identity = record_identity("p", b"x")

    # WHEN key p is tried 5 times, then key q once
    tries = [decider.record_fault(identity, "p") for _ in range(5)]
    first_of_q = decider.record_fault(record_identity("q", b"y"), "q")

    # THEN p's first 3 attempts fail and the next are written; q has a count of its own
    assert tries == [REFUSED, REFUSED, REFUSED, None, None]
    assert first_of_q is REFUSED
    assert decider.poisoned_attempts == 4


def test_fault_decider_poison_without_a_bound_never_lifts() -> None:
    # GIVEN a poisoned key with no bound (the default)
    decider = FaultDecider(FaultSpec(poison=("p",)))
    identity = record_identity("p", b"x")

    # WHEN it is tried 200 times / THEN every attempt fails, and each is counted
    assert all(decider.record_fault(identity, "p") is REFUSED for _ in range(200))
    assert decider.poisoned_attempts == 200


def test_fault_spec_poison_failures_reads_a_count() -> None:
    # GIVEN / WHEN the bound as FAULTS gives it / THEN it is read and printed back
    spec = FaultSpec.parse("default,poison=p,poison_failures=60")
    assert (spec.poison, spec.poison_failures) == (("p",), 60)
    assert FaultSpec.parse(spec.describe()) == spec
    # AND what is no count is refused naming it
    with pytest.raises(FaultSpecError, match="poison_failures"):
        FaultSpec.parse("poison_failures=-1")
    with pytest.raises(FaultSpecError, match="poison_failures"):
        FaultSpec.parse("poison_failures=many")
