"""The demo's stories as data: what each changes from the plain loop, and the replay step.

A scenario names the function settings, mapping settings and local services a story needs; the
demo (localloop.demo) runs any of them the same way: produce, deliver, (replay), audit. Each
story but the plain one is an option of the demo named after it (`--replay`, `--keep`).
"""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from infra.failure_modes import FailureMode
from localloop.audit import Replayed, replayed_records
from localloop.workload import WorkloadSpec, generate
from msk_kinesis_sink.limits import DEFAULT_MAX_RECORD_BYTES
from msk_kinesis_sink.replay.cli import main as replay_main
from msk_kinesis_sink.replay.objects import REPLAYED_PREFIX

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# The replay story's record limit: the workload's largest values (100 - 400 KB, a third more as
# envelope JSON) are over it, so a few dozen of 20,000 records are dead-lettered.
SMALL_MAX_RECORD_BYTES: Final = 256 * 1024
# The poisoned record's value is small: only the poison holds it up, never its size.
_POISON_MAX_VALUE_BYTES: Final = 1024
# The keep story's poison lifts after this many failed attempts. With the demo's 4 s function
# timeout and the function's backoff (about ten attempts an invocation), its partition waits
# through several invocations of its batch, more than the replay story's mapping makes before it
# discards one (1 + 2), then resumes.
KEEP_POISON_FAILURES: Final = 60


@dataclass(frozen=True, slots=True)
class Scenario:
    """What a demo story changes from the plain loop."""

    name: str
    # The demo option's help (the plain story has no option).
    help: str = ""
    # The function's settings for the run, over the demo's (a `make` variable of the same name,
    # such as MAX_RECORD_BYTES, wins over these).
    function_env: Mapping[str, str] = field(default_factory=dict)
    # The mapping's MaximumRetryAttempts for the story; None leaves the mapping's own.
    maximum_retry_attempts: int | None = None
    # The mapping's failureMode the story needs (over cdk.json's; refused when given otherwise)
    # and why; None: --failure-mode, FAILURE_MODE or cdk.json's.
    failure_mode: FailureMode | None = None
    failure_mode_reason: str = ""
    # A local S3 (moto) holds the dead-letter bucket and the mapping's on-failure destination;
    # without it, the destination is a folder and the function has no dead-letter bucket.
    local_s3: bool = False
    # One record Kinesis refuses (the fault proxy's poison): with divert, its batch is
    # discarded to the on-failure destination (the replay writes it to kinesalite directly);
    # with block, its partition waits.
    poison_one_record: bool = False
    # Attempts the poisoned record fails before Kinesis takes it; 0: every attempt.
    poison_failures: int = 0
    # The replay's settings over the run's (the raised record limit); None: no replay step.
    replay_env: Mapping[str, str] | None = None

    @property
    def replays(self) -> bool:
        return self.replay_env is not None


PLAIN: Final = Scenario("plain")
# make demo DEMO_ARGS=--replay (docs/replay.md, "Trying it locally").
REPLAY: Final = Scenario(
    "replay",
    help="dead-letter and discard some records into a local S3, raise the limit, replay them,"
    " audit (docs/replay.md)",
    function_env={"MAX_RECORD_BYTES": str(SMALL_MAX_RECORD_BYTES)},
    # Each invocation of the poisoned batch lasts the whole function timeout: give up on it
    # after two retries, not Lambda's ten.
    maximum_retry_attempts=2,
    failure_mode=FailureMode.DIVERT,
    failure_mode_reason="its story discards a batch to the on-failure destination, and with"
    " block that batch would be retried forever",
    local_s3=True,
    poison_one_record=True,
    # The limit raised to the function's default; the function's default request timeout too
    # (an empty value), as a replay's invocations have a minute each, not the demo's 4 s.
    replay_env={
        "MAX_RECORD_BYTES": str(DEFAULT_MAX_RECORD_BYTES),
        "KINESIS_TIMEOUT_SECONDS": "",
    },
)
# make demo DEMO_ARGS=--keep (docs/local-loop.md, "Keeping every record"): the replay story's
# workload, limit and poison, with nothing given up. Oversize records keep their place as claim
# checks; the poisoned partition waits (block retries it without limit) until the poison lifts.
KEEP: Final = Scenario(
    "keep",
    help="the replay story with failureMode=block and OVERSIZE_RECORDS=claim_check: oversize"
    " records go to a local S3 as claim checks, a poisoned partition waits until the fault"
    " clears; nothing dead-lettered or discarded, order kept (docs/local-loop.md)",
    function_env={
        "MAX_RECORD_BYTES": str(SMALL_MAX_RECORD_BYTES),
        "OVERSIZE_RECORDS": "claim_check",
    },
    failure_mode=FailureMode.BLOCK,
    failure_mode_reason="its story gives nothing up, and divert gives a batch that keeps"
    " failing up to the on-failure destination after its retries",
    local_s3=True,
    poison_one_record=True,
    poison_failures=KEEP_POISON_FAILURES,
)
SCENARIOS: Final = {scenario.name: scenario for scenario in (PLAIN, REPLAY, KEEP)}
# The stories a demo option picks (all but the plain one).
STORIES: Final = tuple(scenario for scenario in SCENARIOS.values() if scenario is not PLAIN)


def poison_key(spec: WorkloadSpec) -> str:
    """The partition key of one small record whose key no other record has, a tenth of the way
    into the workload: the fault proxy fails it (until the mapping discards its batch, or the
    poison lifts)."""
    planned = list(generate(spec))
    counts = Counter(record.key for record in planned)
    for record in planned[len(planned) // 10 :] + planned[: len(planned) // 10]:
        key = record.key
        if (
            key is not None
            and counts[key] == 1
            and key.isascii()
            and key.decode().isprintable()
            and len(record.value or b"") <= _POISON_MAX_VALUE_BYTES
        ):
            return key.decode()
    raise ValueError("the workload has no record with a key of its own to poison")


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """The replay's two runs (their summary lines as dicts) and what it put back."""

    dry_run: dict[str, str]
    applied: dict[str, str]
    status: int  # 0 when both runs exited 0; else the first non-zero status
    replayed: Replayed


def run_replay(
    env: Mapping[str, str], *, s3: S3Client, bucket: str, log_path: Path
) -> ReplayResult:
    """`python -m msk_kinesis_sink.replay`, a dry run and then `--apply`, with `env` (the run's
    settings with the raised limit, pointed at the local endpoints); its output goes to
    `log_path`. What it delivered is read back from the objects it moved under `replayed/`."""
    with log_path.open("w") as log:
        dry_status, dry_run = _replay([], env, log)  # a dry run: the replay's default
        started_ms = time.time() * 1000
        apply_status, applied = _replay(["--apply"], env, log)
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=REPLAYED_PREFIX
        )
        for item in page.get("Contents", [])
    ]
    bodies = ((key, s3.get_object(Bucket=bucket, Key=key)["Body"].read()) for key in keys)
    return ReplayResult(
        dry_run=dry_run,
        applied=applied,
        status=dry_status or apply_status,
        replayed=Replayed(replayed_records(bodies), started_ms),
    )


def _replay(argv: list[str], env: Mapping[str, str], log: TextIO) -> tuple[int, dict[str, str]]:
    out, err = io.StringIO(), io.StringIO()
    status = replay_main(argv, env, stdout=out, stderr=err)
    command = " ".join(["python -m msk_kinesis_sink.replay", *argv])
    log.write(f"$ {command}\n{out.getvalue()}{err.getvalue()}(exit status {status})\n\n")
    lines = out.getvalue().strip().splitlines()
    summary = dict(item.split("=", 1) for item in lines[-1].split() if "=" in item) if lines else {}
    return status, summary
