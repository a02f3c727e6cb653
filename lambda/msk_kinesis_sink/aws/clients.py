"""The container's boto3 session and clients: single attempts, bounded time, quiet SDK loggers."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import boto3
from botocore.config import Config

from msk_kinesis_sink.aws.http import bound_every_request
from msk_kinesis_sink.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_s3 import S3Client

# With logLevel=DEBUG the Lambda Python runtime puts the root logger at DEBUG, and botocore then
# logs every request and response body: partition keys (often the Kafka key itself) and the
# base64 data of every record. The SDK's loggers stay at WARNING whatever the root level, so
# no log level can put customer data in the logs. Set here, where every client is made.
SDK_LOGGERS = ("boto3", "botocore", "s3transfer", "urllib3")


def _quiet_sdk_loggers() -> None:
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


_quiet_sdk_loggers()


def _client_config(settings: Settings) -> Config:
    return Config(
        connect_timeout=settings.request_timeout_seconds,
        read_timeout=settings.request_timeout_seconds,
        # The publisher retries only what failed, with its own backoff and deadline; botocore's
        # own retries would resend whole requests (duplicates) and hide the clock.
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=max(10, settings.max_concurrency),
        tcp_keepalive=True,
    )


def session(env: Mapping[str, str]) -> boto3.session.Session:
    """One session per container: both clients share its loaded models and credentials."""
    return boto3.session.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=env.get("AWS_SESSION_TOKEN"),
        region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
    )


def endpoint_url(env: Mapping[str, str], service: str) -> str | None:
    """The environment's endpoint override for `service` (KINESIS, S3, LAMBDA), if any."""
    # boto3 reads these from os.environ itself; passing them through lets tools run the sink
    # in-process with an environment of their own.
    return env.get(f"AWS_ENDPOINT_URL_{service}") or env.get("AWS_ENDPOINT_URL") or None


def kinesis_client(
    settings: Settings, env: Mapping[str, str], aws_session: boto3.session.Session | None = None
) -> KinesisClient:
    client: KinesisClient = _function_client("kinesis", settings, env, aws_session)
    return client


def s3_client(
    settings: Settings, env: Mapping[str, str], aws_session: boto3.session.Session | None = None
) -> S3Client:
    client: S3Client = _function_client("s3", settings, env, aws_session)
    return client


def _function_client(
    service: Literal["kinesis", "s3"],
    settings: Settings,
    env: Mapping[str, str],
    aws_session: boto3.session.Session | None,
) -> Any:
    """A client with the function's policy: one attempt, bounded time. A dead-letter write, too,
    must fit in the deadline margin; if it fails, the record is reported and the ESM retries it."""
    client = (aws_session or session(env)).client(
        service, endpoint_url=endpoint_url(env, service.upper()), config=_client_config(settings)
    )
    bound_every_request(client, env, settings.request_timeout_seconds)
    return client
