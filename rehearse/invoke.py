"""Run the deployed function as Lambda would: its code from the asset CloudFormation points it to,
its environment as GetFunctionConfiguration reads it, its role's session, in a process of its own
(rehearse.runtime) that the ESM emulator drives. The run stops at the first refused call."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from rehearse.aws import Identity, client
from rehearse.deploy import Deployed, DeployError
from rehearse.moto_server import REGION
from rehearse.runtime import MappingJob
from rehearse.synth import REPO
from rehearse.workload import TopicWorkload

RUN_TIMEOUT_S: Final = 300.0
_STOP_GRACE_S: Final = 5.0
_WATCH_S: Final = 0.2


@dataclass(frozen=True, slots=True)
class DeployedFunction:
    """The function as Lambda knows it after the deploy."""

    name: str
    handler: str
    runtime: str
    timeout_s: int
    memory_mb: int
    role_arn: str
    variables: Mapping[str, str]
    code_bucket: str
    code_key: str


@dataclass(frozen=True, slots=True)
class FunctionRun:
    """How the run ended, and what each mapping did (the stats of rehearse.runtime)."""

    outcome: str  # finished | stopped at a refused call | timed out | failed
    mappings: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    code_path: str | None = None
    seconds: float = 0.0
    log_path: Path | None = None

    @property
    def finished(self) -> bool:
        return self.outcome == "finished"


def deployed_function(endpoint: str, operator: Identity, deployed: Deployed) -> DeployedFunction:
    """GetFunctionConfiguration, and where the function's code is (its template's Code)."""
    name = deployed.stack.outputs["FunctionName"]
    configuration = client("lambda", endpoint, operator).get_function_configuration(
        FunctionName=name
    )
    logical = next((r.logical_id for r in deployed.stack.resources if r.physical_id == name), None)
    if logical is None:
        raise DeployError(f"the stack lists no resource for its function {name}")
    code = deployed.resolved(deployed.stack.template["Resources"][logical]["Properties"]["Code"])
    return DeployedFunction(
        name=name,
        handler=configuration["Handler"],
        runtime=configuration["Runtime"],
        timeout_s=int(configuration["Timeout"]),
        memory_mb=int(configuration["MemorySize"]),
        role_arn=configuration["Role"],
        variables=dict((configuration.get("Environment") or {}).get("Variables") or {}),
        code_bucket=code["S3Bucket"],
        code_key=code["S3Key"],
    )


def unpack_code(endpoint: str, operator: Identity, function: DeployedFunction, to: Path) -> int:
    """The deployed code, from the bucket, unpacked into `to`; the number of files."""
    body = (
        client("s3", endpoint, operator)
        .get_object(Bucket=function.code_bucket, Key=function.code_key)["Body"]
        .read()
    )
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        archive.extractall(to)
        return len(archive.namelist())


def lambda_environment(
    function: DeployedFunction, role: Identity, gateway: str, code_dir: Path
) -> dict[str, str]:
    """The function's variables, then what Lambda's runtime sets beside them (credentials,
    region, names), then the one addition: where the account is (the gateway)."""
    env = dict(function.variables)
    env.update(role.env())
    env.update(
        {
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "rehearsal",
            "LAMBDA_TASK_ROOT": str(code_dir),
            "_HANDLER": function.handler,
            "TZ": ":UTC",
            "AWS_ENDPOINT_URL": gateway,
            # The deployed code first, then the emulator (the repository); nothing else of ours.
            "PYTHONPATH": f"{code_dir}{os.pathsep}{REPO}",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PATH": os.environ.get("PATH", ""),
        }
    )
    return env


def mapping_jobs(
    deployed: Deployed, records: int, partitions: int, oversize: int, oversize_bytes: int
) -> list[MappingJob]:
    """One job per stand-in, with the mapping's settings from the template and its share of
    the records (the oversize ones go to the first topic)."""
    jobs = []
    count = len(deployed.stand_ins)
    for index, stand_in in enumerate(deployed.stand_ins):
        properties = deployed.resolved(stand_in.properties)
        destination = ((properties.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
            "Destination", ""
        )
        jobs.append(
            MappingJob(
                uuid=stand_in.uuid,
                event_source_arn=str(properties.get("EventSourceArn", "")),
                batch_size=int(properties.get("BatchSize", 100)),
                batching_window_s=float(properties.get("MaximumBatchingWindowInSeconds", 0.5)),
                maximum_retry_attempts=int(properties.get("MaximumRetryAttempts", -1)),
                maximum_record_age_s=float(properties.get("MaximumRecordAgeInSeconds", -1)),
                bisect=bool(properties.get("BisectBatchOnFunctionError", False)),
                on_failure_bucket=(
                    destination.removeprefix("arn:aws:s3:::")
                    if destination.startswith("arn:aws:s3:::")
                    else None
                ),
                workload=TopicWorkload(
                    topic=stand_in.topics[0],
                    records=records // count + (index < records % count),
                    partitions=partitions,
                    seed=1 + index,
                    oversize=oversize if index == 0 else 0,
                    oversize_bytes=oversize_bytes,
                ),
            )
        )
    return jobs


def run_function(
    function: DeployedFunction,
    jobs: Sequence[MappingJob],
    env: Mapping[str, str],
    workdir: Path,
    denied: threading.Event,
    timeout_s: float = RUN_TIMEOUT_S,
) -> FunctionRun:
    """Start the function's process and wait (bounded) for it to end, or for a refused call."""
    result_path = workdir / "run.json"
    result_path.unlink(missing_ok=True)
    job = {
        "handler": function.handler,
        "function": {
            "name": function.name,
            "timeout_s": function.timeout_s,
            "memory_mb": function.memory_mb,
        },
        "region": REGION,
        "mappings": [j.to_json() for j in jobs],
        "result": str(result_path),
    }
    job_path = workdir / "job.json"
    job_path.write_text(json.dumps(job), encoding="utf-8")
    log_path = workdir / "function.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "rehearse.runtime", str(job_path)],
            env=dict(env),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        outcome = _watch(process, denied, started + timeout_s)
    seconds = time.monotonic() - started
    if outcome != "finished" or not result_path.exists():
        return FunctionRun(outcome, seconds=seconds, log_path=log_path)
    result = json.loads(result_path.read_text(encoding="utf-8"))
    return FunctionRun(outcome, result["mappings"], result.get("code"), seconds, log_path)


def _watch(process: subprocess.Popen[bytes], denied: threading.Event, deadline: float) -> str:
    try:
        while True:
            if denied.wait(_WATCH_S):
                return "stopped at a refused call"
            status = process.poll()
            if status is not None:
                return "finished" if status == 0 else f"failed (exit status {status})"
            if time.monotonic() > deadline:
                return "timed out"
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
