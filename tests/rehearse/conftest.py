"""The rehearsal's fixtures: the CI variant synthesized once (cdk synth, as `make rehearse` runs
it) and one moto server for the session; each test deploys into it afresh."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rehearse.moto_server import MotoServer
from rehearse.synth import Synthesized, synthesize
from rehearse.variants import CI_VARIANT, Variant, variant


@pytest.fixture(scope="session")
def ci_variant() -> Variant:
    return variant(CI_VARIANT)


@pytest.fixture(scope="session")
def ci_synth(ci_variant: Variant, tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(ci_variant.full_context(), tmp_path_factory.mktemp("rehearse") / "cdk.out")


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(log_path=tmp_path_factory.mktemp("logs") / "moto.log") as server:
        yield server
