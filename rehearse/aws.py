"""boto3 clients for the emulated account, each under an identity of its own."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import boto3
from botocore.awsrequest import AWSRequest
from botocore.config import Config

from rehearse.moto_server import REGION

_CONFIG: Final = Config(
    connect_timeout=10, read_timeout=60, retries={"total_max_attempts": 3, "mode": "standard"}
)


@dataclass(frozen=True, slots=True)
class Identity:
    """Credentials of one IAM identity (a user's keys, or a role's session)."""

    name: str
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def env(self) -> dict[str, str]:
        """The variables the SDK reads these credentials from."""
        env = {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }
        if self.session_token is not None:
            env["AWS_SESSION_TOKEN"] = self.session_token
        return env


# Before access control is on, moto takes any signature: this identity sets the account up.
SETUP: Final = Identity("setup", "AKIASETUPSETUPSETUP0", "setup")


def sign_payload_hash(request: AWSRequest, **_: Any) -> None:
    """Sign the payload's hash as a header, as S3 requests do (SigV4 allows it for any service).

    moto's signature check rebuilds a request that has neither a body nor a query string with
    its headers as form data (moto/core/responses.py: `querystring.update(headers)`), so such a
    request (Lambda's GetFunctionConfiguration) fails it; with the hash signed as a header, the
    check takes the hash from there.
    """
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    if isinstance(body, bytes | bytearray):
        request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()


@lru_cache(maxsize=32)
def session(identity: Identity) -> boto3.session.Session:
    """A session signing as `identity`; its clients sign the payload hash as a header. One per
    identity: a session loads each service's model once, for all its clients."""
    aws = boto3.session.Session(
        aws_access_key_id=identity.access_key_id,
        aws_secret_access_key=identity.secret_access_key,
        aws_session_token=identity.session_token,
        region_name=REGION,
    )
    aws.events.register("before-sign", sign_payload_hash)
    return aws


@lru_cache(maxsize=128)
def client(service: str, endpoint: str, identity: Identity) -> Any:
    """A client of `service` at `endpoint`, signing as `identity` (made once; clients are
    thread-safe)."""
    return session(identity).client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint,
        config=_CONFIG,
    )
