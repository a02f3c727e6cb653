"""What an AWS request asks, read from the request itself: service, action, and the resource ARN
IAM authorizes it on (where the rehearsal can tell), and the answer a service gives a denial."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

_SCOPE: Final = re.compile(r"Credential=[^/]+/[0-9]{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/")
# "User: <arn> is not authorized to perform: <action> [on resource: <arn>]", as IAM (and moto)
# words a denial.
_DENIAL: Final = re.compile(r"not authorized to perform:? (?P<action>[A-Za-z0-9-]+:[A-Za-z0-9*]+)")
DENIAL_STATUS: Final = 403


@dataclass(frozen=True, slots=True)
class Request:
    """An AWS request: `service:Action`, and the resource it is authorized on (None: unknown)."""

    service: str
    action: str
    region: str
    resource: str | None
    json_protocol: bool  # the JSON protocols (Kinesis, KMS): errors are JSON with `__type`

    @property
    def name(self) -> str:
        return f"{self.service}:{self.action}"


def describe(
    method: str, target: str, headers: Mapping[str, str], body: bytes, account: str
) -> Request:
    """Read a signed request (its Authorization scope, X-Amz-Target, body or REST path)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    scope = _SCOPE.search(lowered.get("authorization", ""))
    service = scope["service"] if scope else "unknown"
    region = scope["region"] if scope else "unknown"
    amz_target = lowered.get("x-amz-target")
    if amz_target:
        action = amz_target.rpartition(".")[2]
        document = _json(body)
        resource = _json_resource(service, region, account, document)
        return Request(service, action, region, resource, json_protocol=True)
    parts = urlsplit(target)
    if service == "s3":
        action, resource = _s3(method, parts.path, parse_qs(parts.query), lowered)
        return Request(service, action, region, resource, json_protocol=False)
    form = parse_qs(body.decode("utf-8", "replace")) if body else parse_qs(parts.query)
    action = (form.get("Action") or ["Unknown"])[0]
    return Request(service, action, region, None, json_protocol=False)


def _json(body: bytes) -> Mapping[str, object]:
    try:
        document = json.loads(body or b"{}")
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _json_resource(
    service: str, region: str, account: str, document: Mapping[str, object]
) -> str | None:
    if service == "kinesis":
        arn = document.get("StreamARN")
        name = document.get("StreamName")
        if isinstance(arn, str):
            return arn
        return f"arn:aws:kinesis:{region}:{account}:stream/{name}" if name else None
    if service == "kms":
        key = document.get("KeyId")
        if not isinstance(key, str):
            return None
        return key if key.startswith("arn:") else f"arn:aws:kms:{region}:{account}:key/{key}"
    return None


def _s3(
    method: str, path: str, query: Mapping[str, list[str]], headers: Mapping[str, str]
) -> tuple[str, str]:
    """S3's REST calls (path style, as the SDK addresses an IP endpoint): action and resource,
    as S3 authorizes them ("Actions, resources, and condition keys for Amazon S3")."""
    bucket, _, key = unquote(path).lstrip("/").partition("/")
    if not bucket:
        return "ListAllMyBuckets", "*"
    if key:
        resource = f"arn:aws:s3:::{bucket}/{key}"
        actions = {
            "PUT": "PutObject",
            "POST": "PutObject",  # multipart uploads
            "GET": "GetObject",
            "HEAD": "GetObject",
            "DELETE": "DeleteObject",
        }
        return actions.get(method, f"Unknown{method.title()}Object"), resource
    resource = f"arn:aws:s3:::{bucket}"
    if method in ("GET", "HEAD") and not (set(query) - {"list-type", "prefix", "max-keys"}):
        return "ListBucket", resource
    return f"Unknown{method.title()}Bucket", resource


def denied_action(request: Request, status: int, body: bytes) -> str | None:
    """The action refused, if the answer is a refusal: the one it names, or (S3 says only
    "Access Denied") the request's own."""
    if status not in (DENIAL_STATUS, 400):
        return None
    text = body.decode("utf-8", "replace")
    match = _DENIAL.search(text)
    if match:
        return match["action"]
    if status == DENIAL_STATUS and "<Code>AccessDenied</Code>" in text:
        return request.name
    return None


def denial_answer(request: Request, caller: str, action: str, resource: str) -> tuple[int, bytes]:
    """What the service answers when IAM refuses the caller `action` on `resource` (KMS's
    refusal of a key a call needs comes back as the service's own KMS error)."""
    message = (
        f"User: {caller} is not authorized to perform: {action} on resource: {resource}"
        f" because no identity-based policy allows the {action} action"
    )
    if request.json_protocol:
        kms = action.startswith("kms:") and request.service != "kms"
        kind = "KMSAccessDeniedException" if kms else "AccessDeniedException"
        return 400, json.dumps({"__type": kind, "message": message}).encode()
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>AccessDenied</Code><Message>{message}</Message></Error>"
    )
    return DENIAL_STATUS, xml.encode()
