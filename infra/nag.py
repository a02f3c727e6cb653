"""cdk-nag findings acknowledged beside the resource they concern, each with its written reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge finding `rule` (cdk-nag's "AwsSolutions-S1", or a CloudFormation Validate rule)
    on `construct`, with why."""
    Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))
