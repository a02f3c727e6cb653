"""One rehearsal of a synthesized stack in the moto server: set the account up, deploy, install
the role's policy and turn access control on, run the function under its role, read back and
audit, ask the doctor. Each step says what it did, in one line, to `say`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from msk_kinesis_sink.limits import DEFAULT_MAX_RECORD_BYTES
from msk_kinesis_sink.settings import Settings
from rehearse import iam
from rehearse.aws import SETUP, Identity, client
from rehearse.deploy import Deployed, deploy
from rehearse.doctor import DoctorRun, EmulatedMappings, examine, mapping_states, moto_deployment
from rehearse.gateway import Call, EncryptionKeys, Gateway
from rehearse.invoke import (
    DeployedFunction,
    FunctionRun,
    deployed_function,
    lambda_environment,
    mapping_jobs,
    run_function,
    unpack_code,
)
from rehearse.moto_server import ACCOUNT, MotoServer
from rehearse.permissions import Policy
from rehearse.readback import Sent, audit_dead_letters, audit_streams
from rehearse.runtime import MappingJob
from rehearse.synth import Synthesized
from rehearse.variants import Variant

Say = Callable[[str, str], None]
# What no emulator here can show (docs/deploy.md#what-only-a-real-account-can-tell).
CANNOT_CHECK: Final = (
    "ESM polling: reaching the brokers, authentication, consumer groups and offsets, scaling"
    " (the emulator stands in for the mappings)",
    "KMS key policies and the alarm topic's policy (moto does not evaluate them), and the"
    " bucket's TLS-only policy (moto's CloudFormation does not create it)",
    "alarm metrics: nothing publishes Lambda's or the function's metrics here, so no alarm is"
    " evaluated (moto starts each in OK) and OffsetLag has no datapoint",
    "VPC reachability: subnets, security groups, endpoints, NAT",
    "IAM condition keys: moto passes every condition (the role's are listed above, under iam)",
    "the logs actions, which Lambda's runtime uses, not the function",
    "MaxRecordSizeInKiB and RecordDistributionStrategy (moto's Kinesis has neither)",
)


class RehearsalInputError(ValueError):
    """An option the rehearsal can't use against this stack (its message says why)."""


@dataclass(frozen=True, slots=True)
class Account:
    """The emulated account once the stack is in it."""

    endpoint: str
    operator: Identity
    doctor: Identity
    deployed: Deployed
    function: DeployedFunction
    role: iam.RolePolicy


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    denied: tuple[Call, ...] = ()
    doctor: DoctorRun | None = None


def set_up(server: MotoServer, synthesized: Synthesized, say: Say) -> Account:
    """A fresh account with the stack deployed (access control still off)."""
    server.reset()
    endpoint = server.endpoint
    operator = iam.operator(endpoint, SETUP)
    doctor = iam.doctor(endpoint, SETUP)
    deployed = deploy(endpoint, operator, synthesized)
    say("publish", f"{len(deployed.published)} assets to s3://{deployed.asset_bucket}")
    say("deploy", f"{deployed.stack.name}: {deployed.stack.status} in {deployed.seconds:.1f} s")
    for note in deployed.notes:
        say("moto", note)
    function = deployed_function(endpoint, operator, deployed)
    role = iam.role_policy(endpoint, operator, function.role_arn)
    return Account(endpoint, operator, doctor, deployed, function, role)


def rehearse(
    server: MotoServer,
    synthesized: Synthesized,
    variant: Variant,
    *,
    without: str | None,
    workdir: Path,
    say: Say,
) -> Outcome:
    workdir = workdir.resolve()  # the function's process runs in it, and reads from it
    account = set_up(server, synthesized, say)
    policy = _policy(account.role, without, say)
    iam.install(account.endpoint, account.operator, account.role, policy.for_moto())
    session = iam.assume(account.endpoint, account.operator, account.role.role_arn, "rehearsal")
    server.enforce_access_control()
    say(
        "iam",
        "access control on: " + iam.prove_enforced(account.endpoint, session, account.operator),
    )
    code_dir = workdir / "code"
    files = unpack_code(account.endpoint, account.operator, account.function, code_dir)
    say(
        "code",
        f"{files} files of s3://{account.function.code_bucket}/{account.function.code_key};"
        f" handler {account.function.handler} (runtime {account.function.runtime}, run here by"
        " this machine's Python)",
    )
    max_record = int(account.function.variables.get("MAX_RECORD_BYTES", DEFAULT_MAX_RECORD_BYTES))
    jobs = mapping_jobs(
        account.deployed, variant.records, variant.partitions, variant.oversize, max_record + 1
    )
    keys = _encryption_keys(account)
    gateway = Gateway(account.endpoint, policy=policy, caller=session, account=ACCOUNT, keys=keys)
    with gateway.serving():
        env = lambda_environment(account.function, session, gateway.endpoint, code_dir)
        say("run", _run_intro(account, jobs_count=len(jobs), records=variant.records, env=env))
        run = run_function(account.function, jobs, env, workdir, gateway.denied)
        calls = gateway.calls()
    denied = tuple(call for call in calls if call.denied_by is not None)
    _report_run(run, calls, policy, say)
    if denied or not run.finished:
        return Outcome(False, denied)
    audits_ok = _audit(account, jobs, say)
    doctor = _doctor(account, run, say)
    return Outcome(audits_ok and doctor.status == 0, denied, doctor)


def _policy(role: iam.RolePolicy, without: str | None, say: Say) -> Policy:
    policy = role.policy
    say(
        "iam",
        f"role {role.role_name}: policy {role.policy_name!r}, {len(policy.statements)} statements;"
        ' moto compares the Resource only for S3, so the other statements get Resource "*" in'
        " moto and each call's resource is checked against them here",
    )
    conditions = policy.condition_keys()
    if conditions:
        say("iam", f"condition keys not evaluated (moto passes them): {', '.join(conditions)}")
    if without is None:
        return policy
    reduced, removed = policy.without(without)
    if not removed:
        raise RehearsalInputError(
            f"{without} is not in the role's policy (its actions: {', '.join(policy.actions())})"
        )
    say("iam", f"without {without} (taken out of {removed} statement{'s' * (removed > 1)})")
    return reduced


def _encryption_keys(account: Account) -> EncryptionKeys:
    """The customer managed keys of the streams and the bucket the function writes to."""
    settings = Settings.from_env(account.function.variables)
    kinesis = client("kinesis", account.endpoint, account.operator)
    streams = {}
    targets = {settings.default_stream, *(r.stream for r in settings.stream_routes)} - {None}
    for target in sorted(str(t) for t in targets):
        field = "StreamARN" if target.startswith("arn:") else "StreamName"
        summary = kinesis.describe_stream_summary(**{field: target})["StreamDescriptionSummary"]
        key = summary.get("KeyId") or ""
        if summary.get("EncryptionType") == "KMS" and ":key/" in key:
            streams[summary["StreamARN"]] = key
    buckets = {}
    if settings.dead_letter_bucket:
        s3 = client("s3", account.endpoint, account.operator)
        rules = s3.get_bucket_encryption(Bucket=settings.dead_letter_bucket)[
            "ServerSideEncryptionConfiguration"
        ]["Rules"]
        key = rules[0]["ApplyServerSideEncryptionByDefault"].get("KMSMasterKeyID") or ""
        if ":key/" in key:
            buckets[settings.dead_letter_bucket] = key
    return EncryptionKeys(streams, buckets)


def _run_intro(account: Account, *, jobs_count: int, records: int, env: dict[str, str]) -> str:
    added = len(env) - len(account.function.variables)
    return (
        f"function {account.function.name}: its {len(account.function.variables)} variables from"
        f" GetFunctionConfiguration, {added} of Lambda's runtime (the role's session from"
        f" sts:AssumeRole, AWS_ENDPOINT_URL = the gateway to moto); {records} records through"
        f" {jobs_count} mapping emulator{'s' * (jobs_count > 1)} with the template's settings"
    )


def _report_run(run: FunctionRun, calls: Sequence[Call], policy: Policy, say: Say) -> None:
    counts: dict[tuple[str, str | None, str | None], int] = {}
    for call in calls:
        key = (call.action, call.denied_by, call.on_behalf_of)
        counts[key] = counts.get(key, 0) + 1
    for (action, denied_by, on_behalf_of), count in sorted(counts.items(), key=str):
        verdict = "allowed" if denied_by is None else f"DENIED by {denied_by}"
        behalf = f" (asked by the service for {on_behalf_of})" if on_behalf_of else ""
        say("calls", f"{action} x{count} {verdict}{behalf}")
    refused = {(c.action, c.resource, c.denied_by) for c in calls if c.denied_by is not None}
    for action, resource, denied_by in sorted(refused, key=str):
        say("denied", f"{action} on {resource}: refused by {denied_by}")
    called = {call.action.lower() for call in calls}
    unused = [a for a in policy.actions() if a.lower() not in called]
    if unused:
        say(
            "unused",
            "granted, not called by the function in this run (the mappings, Lambda's"
            f" runtime or a path not taken may use them): {', '.join(unused)}",
        )
    stats = [m["stats"] for m in run.mappings]
    summary = f"{run.outcome} in {run.seconds:.1f} s"
    if stats:
        summary += (
            f": {sum(s['invocations'] for s in stats)} invocations,"
            f" {sum(s['function_errors'] for s in stats)} function errors,"
            f" {sum(s['records_discarded'] for s in stats)} records discarded;"
            f" the handler ran from {run.code_path}"
        )
    say("run", f"{summary}; the function's log: {run.log_path}")


def _audit(account: Account, jobs: Sequence[MappingJob], say: Say) -> bool:
    sent = Sent.of(jobs)
    variables = account.function.variables
    ok = True
    for stream in audit_streams(account.endpoint, account.operator, variables, sent):
        r = stream.report
        ok &= r.ok and r.unexpected == 0
        say(
            "audit",
            f"stream {stream.stream} ({', '.join(stream.topics)}): {r.stream_records} records in"
            f" {r.shards} shards: {r.delivered} of {r.records} delivered, {r.duplicates}"
            f" duplicates, {r.lost} lost, {r.out_of_order} out of order, {r.corrupted} corrupted,"
            f" {r.unexpected} from elsewhere",
        )
    letters = audit_dead_letters(account.endpoint, account.operator, variables, sent)
    if letters is not None:
        ok &= letters.ok
        wrong = ", ".join(letters.missing + letters.unexpected + letters.not_as_expected)
        say(
            "audit",
            f"dead letters s3://{letters.bucket}: {letters.found} of {letters.expected} expected,"
            f" SSE-KMS with the bucket's key {letters.key}; {letters.discarded_batches} batches"
            f" discarded by the mappings" + (f"; not as expected: {wrong}" if wrong else ""),
        )
    return ok


def _doctor(account: Account, run: FunctionRun, say: Say) -> DoctorRun:
    healthy = run.finished and not any(m["stats"]["function_errors"] for m in run.mappings)
    deployment = EmulatedMappings(
        moto_deployment(account.endpoint, account.doctor),
        account.deployed.stand_ins,
        mapping_states(account.deployed.stand_ins, healthy),
    )
    result = examine(deployment, account.deployed.stack.name)
    say(
        "doctor",
        f"as {account.doctor.name} (the read-only policy of docs/runbook.md),"
        " the emulator's mappings in place of the stack's",
    )
    for line in result.lines:
        say("doctor", line)
    return result
