"""The identities of a rehearsal: the operator (everything the rehearsal does itself), the
doctor (exactly the doctor's read-only policy) and the function (its role's session); the role's
policy installed as moto must see it; and the proof that moto denies once access control is on."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any, Final

from botocore.exceptions import ClientError

from msk_kinesis_sink.doctor.aws_access import read_only_policy
from rehearse.aws import Identity, client
from rehearse.permissions import Policy

OPERATOR: Final = "rehearsal-operator"
DOCTOR: Final = "rehearsal-doctor"
# What the role's policy does not allow, asked under the role once access control is on: moto
# must refuse it, or nothing the rehearsal says about permissions would mean anything.
UNGRANTED_ACTION: Final = "kinesis:ListStreams"
_SESSION_SECONDS: Final = 3600


class AccessControlError(RuntimeError):
    """moto's access control is not doing what the rehearsal relies on."""


@dataclass(frozen=True, slots=True)
class RolePolicy:
    """The function role's inline policy, as deployed."""

    role_name: str
    role_arn: str
    policy_name: str
    policy: Policy


def create_user(endpoint: str, setup: Identity, name: str, policy: dict[str, Any]) -> Identity:
    iam = client("iam", endpoint, setup)
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Identity(name, key["AccessKeyId"], key["SecretAccessKey"])


def operator(endpoint: str, setup: Identity) -> Identity:
    everything = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
    return create_user(endpoint, setup, OPERATOR, everything)


def doctor(endpoint: str, setup: Identity) -> Identity:
    """A user with the doctor's read-only policy; moto names CloudWatch's actions after its
    signing name (`monitoring:`, where IAM says `cloudwatch:`), so those are given twice."""
    policy = read_only_policy()
    for statement in policy["Statement"]:
        statement["Action"] += [
            "monitoring:" + action.partition(":")[2]
            for action in statement["Action"]
            if action.startswith("cloudwatch:")
        ]
    return create_user(endpoint, setup, DOCTOR, policy)


def role_policy(endpoint: str, identity: Identity, role_arn: str) -> RolePolicy:
    """The role's one inline policy (the stack declares one: infra/sink_function.py)."""
    iam = client("iam", endpoint, identity)
    role_name = role_arn.rpartition("/")[2]
    names = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    if len(names) != 1:
        raise AccessControlError(f"role {role_name} has {len(names)} inline policies, not one")
    document = iam.get_role_policy(RoleName=role_name, PolicyName=names[0])["PolicyDocument"]
    return RolePolicy(role_name, role_arn, names[0], Policy.from_document(_document(document)))


def _document(document: object) -> dict[str, Any]:
    """A policy document as GetRolePolicy answers it: parsed, or JSON text, or (moto's
    CloudFormation stores an inline policy as Python's text of it) a Python literal."""
    if isinstance(document, dict):
        return document
    text = str(document)
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = ast.literal_eval(text)
    if not isinstance(parsed, dict):
        raise AccessControlError(f"the role's policy is not a JSON object: {text[:80]}")
    return parsed


def install(endpoint: str, identity: Identity, role: RolePolicy, policy: Policy) -> None:
    """Put `policy` in place of the role's inline policy."""
    client("iam", endpoint, identity).put_role_policy(
        RoleName=role.role_name,
        PolicyName=role.policy_name,
        PolicyDocument=json.dumps(policy.document()),
    )


def assume(endpoint: str, identity: Identity, role_arn: str, session: str) -> Identity:
    """The role's session credentials from STS AssumeRole.

    Asked before access control is on: the role trusts lambda.amazonaws.com alone, which only
    Lambda can be (moto's trust check has no answer for a service principal).
    """
    answer = client("sts", endpoint, identity).assume_role(
        RoleArn=role_arn, RoleSessionName=session, DurationSeconds=_SESSION_SECONDS
    )
    credentials = answer["Credentials"]
    return Identity(
        answer["AssumedRoleUser"]["Arn"],
        credentials["AccessKeyId"],
        credentials["SecretAccessKey"],
        credentials["SessionToken"],
    )


def prove_enforced(endpoint: str, role: Identity, operator_identity: Identity) -> str:
    """Access control is on: the role is refused an action its policy lacks, the operator is
    not. Returns what was shown; raises AccessControlError otherwise."""
    try:
        client("kinesis", endpoint, role).list_streams()
    except ClientError as error:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status != 403:
            raise AccessControlError(
                f"{UNGRANTED_ACTION} under the role failed with {status}, not 403"
            ) from None
    else:
        raise AccessControlError(
            f"moto allowed {UNGRANTED_ACTION} to the role, whose policy does not grant it:"
            " access control is not on"
        )
    client("kinesis", endpoint, operator_identity).list_streams()
    return f"the role is refused {UNGRANTED_ACTION} (not in its policy); the operator is not"
