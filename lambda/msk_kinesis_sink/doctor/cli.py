"""`python -m msk_kinesis_sink.doctor --stack NAME`: one line per check, then the summary.

Exit status 0 when no check fails, 1 when one does, 2 for a bad argument or a deployment that
can't be read (no such stack, no credentials, access denied), said in one line.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import NoReturn, TextIO

from msk_kinesis_sink.doctor.checks import Status, summary_line
from msk_kinesis_sink.doctor.diagnosis import Diagnosis, diagnose
from msk_kinesis_sink.doctor.model import Deployment
from msk_kinesis_sink.errors import DoctorError, UnresolvedTemplateError

# CloudFormation stack names: a letter, then letters, digits and '-', at most 128 characters.
_STACK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}", re.ASCII)
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]+", re.ASCII)


class _Parser(argparse.ArgumentParser):
    """Argument mistakes in one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"doctor: error: {message}\n")


def _stack_name(text: str) -> str:
    if not _STACK_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a CloudFormation stack name (a letter, then letters, digits and"
            " '-', at most 128 characters)"
        )
    return text


def _region(text: str) -> str:
    if not _REGION.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an AWS region (e.g. eu-west-1)")
    return text


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _Parser(
        prog="python -m msk_kinesis_sink.doctor",
        description="Read-only health check of a deployed MSK -> Kinesis sink stack: mappings,"
        " the function's environment, streams, alarms, dead letters and offset lag.",
    )
    parser.add_argument("--stack", required=True, type=_stack_name, help="the stack's name")
    parser.add_argument("--region", type=_region, help="default: AWS_REGION or the profile's")
    return parser.parse_args(argv)


def run(
    deployment: Deployment,
    stack: str,
    *,
    out: TextIO,
    err: TextIO,
    now: Callable[[], datetime] = lambda: datetime.now(tz=UTC),
) -> int:
    """Diagnose and print; the exit status."""
    try:
        diagnosis = diagnose(deployment, stack, now())
    except (DoctorError, UnresolvedTemplateError) as error:
        print(f"doctor: error: {error}", file=err)
        return 2
    report(diagnosis, out)
    return 1 if any(check.status is Status.FAIL for check in diagnosis.checks) else 0


def report(diagnosis: Diagnosis, out: TextIO) -> None:
    for line in diagnosis.lines():
        print(line, file=out)
    print(summary_line(diagnosis.checks), file=out)


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = parse(argv)
    # boto3 is imported only once the arguments are valid.
    from msk_kinesis_sink.doctor.aws_access import AwsDeployment

    try:
        deployment = AwsDeployment(os.environ if environ is None else environ, args.region)
    except DoctorError as error:
        print(f"doctor: error: {error}", file=err)
        return 2
    return run(deployment, args.stack, out=out, err=err)
