"""Deploy a synthesized stack into the moto server as `cdk deploy` would: the account bootstrapped
(the asset bucket, the version parameter), the assets published as the asset manifest says, the
stack created from the template's S3 URL; then what moto's CloudFormation leaves out applied
through each service's API, and said."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from msk_kinesis_sink.doctor.model import ALARM_TYPE, STREAM_TYPE, StackView
from msk_kinesis_sink.doctor.template import StackNames, resolve
from rehearse.aws import Identity, client
from rehearse.doctor import moto_deployment
from rehearse.moto_server import ACCOUNT, REGION
from rehearse.prepare import StandIn, prepare_template
from rehearse.synth import FileAsset, Synthesized

# `cdk bootstrap`'s stack version; the stack requires at least the one its manifest names.
BOOTSTRAP_VERSION: Final = 30
# Where the prepared template is uploaded beside the assets (cdk deploy uploads its template as
# an asset too, and gives CloudFormation its URL).
TEMPLATE_KEY: Final = "rehearsal/{stack}.template.json"
_STACK_TIMEOUT_S: Final = 120.0
_POLL_S: Final = 0.1
# PutMetricAlarm's parameters: an alarm's CloudFormation properties of the same names.
_ALARM_PARAMETERS: Final = (
    "AlarmName", "AlarmDescription", "ActionsEnabled", "OKActions", "AlarmActions",
    "InsufficientDataActions", "MetricName", "Namespace", "Statistic", "ExtendedStatistic",
    "Dimensions", "Period", "Unit", "EvaluationPeriods", "DatapointsToAlarm", "Threshold",
    "ComparisonOperator", "TreatMissingData", "EvaluateLowSampleCountPercentile", "Metrics",
    "ThresholdMetricId",
)  # fmt: skip


class DeployError(RuntimeError):
    """The stack could not be deployed into the emulator."""


@dataclass(frozen=True, slots=True)
class Deployed:
    """A stack in the emulator, with what stands in for the parts moto can't create."""

    stack: StackView
    names: StackNames  # Ref / Fn::GetAtt in this stack (the stand-ins' UUIDs too)
    stand_ins: tuple[StandIn, ...]
    asset_bucket: str
    published: tuple[str, ...]  # s3://... of each asset
    notes: tuple[str, ...]  # what moto's CloudFormation left out, and what was done about it
    seconds: float

    def resolved(self, value: Any) -> Any:
        return resolve(value, self.names)


@lru_cache(maxsize=8)
def asset_bytes(asset: FileAsset) -> bytes:
    """The object `cdk deploy` uploads for an asset: the file, or the folder zipped."""
    if asset.packaging == "file":
        return asset.source.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in asset.source.rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(asset.source).as_posix())
    return buffer.getvalue()


def deploy(endpoint: str, identity: Identity, synthesized: Synthesized) -> Deployed:
    """Bootstrap, publish, create the stack, then complete what moto left out."""
    started = time.monotonic()
    s3 = client("s3", endpoint, identity)
    bucket = _bootstrap(endpoint, identity, synthesized)
    published = []
    for asset in synthesized.assets:
        name = asset.bucket_pattern.replace("${AWS::AccountId}", ACCOUNT).replace(
            "${AWS::Region}", REGION
        )
        s3.put_object(Bucket=name, Key=asset.object_key, Body=asset_bytes(asset))
        published.append(f"s3://{name}/{asset.object_key}")
    prepared = prepare_template(synthesized.template)
    key = TEMPLATE_KEY.format(stack=synthesized.stack_name)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(prepared.template).encode())
    _create_stack(endpoint, identity, synthesized.stack_name, bucket, key)
    stack = moto_deployment(endpoint, identity).stack(synthesized.stack_name)
    uuids = {stand_in.logical_id: stand_in.uuid for stand_in in prepared.stand_ins}
    names = StackNames.of(stack.stack_id, stack.resources, uuids)
    notes = [_taken_out(prepared.stand_ins)] if prepared.stand_ins else []
    notes += _complete_streams(endpoint, identity, stack, names)
    notes += _create_alarms(endpoint, identity, stack, names)
    notes += _not_created(synthesized.template, stack, prepared.stand_ins)
    return Deployed(
        stack=stack,
        names=names,
        stand_ins=prepared.stand_ins,
        asset_bucket=bucket,
        published=tuple(published),
        notes=tuple(notes),
        seconds=time.monotonic() - started,
    )


def _bootstrap(endpoint: str, identity: Identity, synthesized: Synthesized) -> str:
    """What `cdk bootstrap` leaves in an account that deploys need: the asset bucket and the
    bootstrap version parameter the template checks."""
    buckets = {a.bucket_pattern for a in synthesized.assets}
    if len(buckets) != 1:
        raise DeployError(f"expected the assets in one bucket, found {sorted(buckets)}")
    bucket = buckets.pop().replace("${AWS::AccountId}", ACCOUNT).replace("${AWS::Region}", REGION)
    client("s3", endpoint, identity).create_bucket(Bucket=bucket)
    if synthesized.bootstrap_parameter:
        required = synthesized.bootstrap_version or 0
        if required > BOOTSTRAP_VERSION:
            raise DeployError(f"the stack needs bootstrap version {required}")
        client("ssm", endpoint, identity).put_parameter(
            Name=synthesized.bootstrap_parameter, Value=str(BOOTSTRAP_VERSION), Type="String"
        )
    return bucket


def _create_stack(endpoint: str, identity: Identity, name: str, bucket: str, key: str) -> None:
    cloudformation = client("cloudformation", endpoint, identity)
    url = f"https://s3.{REGION}.amazonaws.com/{bucket}/{key}"
    cloudformation.create_stack(
        StackName=name,
        TemplateURL=url,
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    deadline = time.monotonic() + _STACK_TIMEOUT_S
    while True:
        stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        status = stack["StackStatus"]
        if status == "CREATE_COMPLETE":
            return
        if not status.endswith("_IN_PROGRESS"):
            reason = stack.get("StackStatusReason") or "no reason given"
            raise DeployError(f"stack {name}: {status}: {reason}")
        if time.monotonic() > deadline:
            raise DeployError(f"stack {name} still {status} after {_STACK_TIMEOUT_S:.0f} s")
        time.sleep(_POLL_S)  # polling a status with a bounded wait, not a synchronisation


def _taken_out(stand_ins: tuple[StandIn, ...]) -> str:
    topics = ", ".join(topic for s in stand_ins for topic in s.topics)
    return (
        f"moto's CloudFormation refuses Kafka event source mappings: {len(stand_ins)} taken out"
        f" of the template (topics {topics}); the ESM emulator stands in for each"
    )


def _complete_streams(
    endpoint: str, identity: Identity, stack: StackView, names: StackNames
) -> list[str]:
    """Apply the stream properties moto's CloudFormation ignores, as their APIs set them."""
    kinesis = client("kinesis", endpoint, identity)
    notes = []
    for logical_id, resource in stack.declared(STREAM_TYPE).items():
        if logical_id not in names.resources:
            continue
        stream = names.ref(logical_id)
        properties: Mapping[str, Any] = resolve(resource.get("Properties") or {}, names)
        summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        encryption = properties.get("StreamEncryption")
        if encryption and summary.get("EncryptionType", "NONE") == "NONE":
            kinesis.start_stream_encryption(
                StreamName=stream,
                EncryptionType=encryption["EncryptionType"],
                KeyId=encryption["KeyId"],
            )
            notes.append(f"stream {stream}: StreamEncryption ignored; set by StartStreamEncryption")
        mode = (properties.get("StreamModeDetails") or {}).get("StreamMode")
        if mode and (summary.get("StreamModeDetails") or {}).get("StreamMode") != mode:
            kinesis.update_stream_mode(
                StreamARN=summary["StreamARN"], StreamModeDetails={"StreamMode": mode}
            )
            notes.append(f"stream {stream}: StreamModeDetails ignored; set by UpdateStreamMode")
        if "MaxRecordSizeInKiB" in properties:
            notes.append(
                f"stream {stream}: MaxRecordSizeInKiB {properties['MaxRecordSizeInKiB']} ignored"
                " (moto's Kinesis has no such setting, and its DescribeStreamSummary none)"
            )
    return notes


def _create_alarms(
    endpoint: str, identity: Identity, stack: StackView, names: StackNames
) -> list[str]:
    """Each alarm of the template, created with PutMetricAlarm from its resolved properties."""
    declared = stack.declared(ALARM_TYPE)
    if not declared:
        return []
    cloudwatch = client("cloudwatch", endpoint, identity)
    for resource in declared.values():
        properties = resolve(resource.get("Properties") or {}, names)
        cloudwatch.put_metric_alarm(
            **{key: properties[key] for key in _ALARM_PARAMETERS if key in properties}
        )
    return [
        f"moto's CloudFormation skips {ALARM_TYPE}: {len(declared)} alarms created with"
        " PutMetricAlarm from the template's properties"
    ]


def _not_created(
    template: Mapping[str, Any], stack: StackView, stand_ins: tuple[StandIn, ...]
) -> list[str]:
    """The resource types the template declares and the stack does not list (moto has no model
    for them), beside the mappings and alarms accounted for above."""
    listed = {resource.logical_id for resource in stack.resources}
    handled = {stand_in.logical_id for stand_in in stand_ins}
    missing = Counter(
        str(resource.get("Type"))
        for logical_id, resource in (template.get("Resources") or {}).items()
        if logical_id not in listed
        and logical_id not in handled
        and resource.get("Type") != ALARM_TYPE
    )
    if not missing:
        return []
    kinds = ", ".join(f"{kind} ({count})" for kind, count in sorted(missing.items()))
    return [f"not created by moto's CloudFormation (no model): {kinds}"]
