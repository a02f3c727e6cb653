"""kinesalite (in-memory Kinesis from npm) on loopback, plus boto3 clients for local endpoints."""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import TYPE_CHECKING, Final

import boto3
from botocore.config import Config

from localloop.procs import (
    LOOPBACK,
    LocalServer,
    ManagedProcess,
    ProcessFailedError,
    wait_until,
)

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
KINESALITE_MODULE: Final = REPO_ROOT / "node_modules" / "kinesalite"
# kinesalite's own CLI listens on every interface; this binds it to loopback only. Streams become
# ACTIVE at once (0 ms state changes) so callers wait on state, never on time.
_KINESALITE_LOOPBACK_JS: Final = (
    "const k = require(process.argv[1])"
    "({createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 100});"
    "k.listen(Number(process.argv[2]), process.argv[3]);"
    "process.on('SIGTERM', () => process.exit(0));"
)
DEFAULT_REGION: Final = "us-east-1"
# kinesalite does not check credentials, but botocore refuses to sign without some.
DUMMY_CREDENTIALS: Final = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
_STREAM_ACTIVE_TIMEOUT_S: Final = 30.0
# Headers for raw requests to kinesalite, which checks that a signature is present and well
# formed, not that it is valid.
LOCAL_SIGNATURE_HEADERS: Final = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/kinesis/aws4_request,"
    " SignedHeaders=host;x-amz-date, Signature=0",
    "X-Amz-Date": "20260101T000000Z",
}


def kinesis_client(endpoint: str | None, region: str = DEFAULT_REGION) -> KinesisClient:
    """A Kinesis client for `endpoint` (None = the default AWS endpoint and credential chain)."""
    config = Config(retries={"max_attempts": 5, "mode": "standard"}, read_timeout=30)
    if endpoint is None:
        return boto3.client("kinesis", region_name=region, config=config)
    return local_session(region).client("kinesis", endpoint_url=endpoint, config=config)


def local_session(region: str = DEFAULT_REGION) -> boto3.Session:
    """A session with the dummy credentials local servers take."""
    return boto3.Session(
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=region,
    )


def kinesalite_ready(port: int) -> bool:
    """True when a Kinesis API answers ListStreams on the port (an open port alone could be
    someone else's)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=2)
    try:
        conn.request(
            "POST",
            "/",
            body=b"{}",
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": "Kinesis_20131202.ListStreams",
                **LOCAL_SIGNATURE_HEADERS,
            },
        )
        response = conn.getresponse()
        return response.status == 200 and b"StreamNames" in response.read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def create_stream(client: KinesisClient, name: str, shards: int) -> None:
    """Create a provisioned stream and wait (bounded) until it is ACTIVE."""
    client.create_stream(StreamName=name, ShardCount=shards)

    def active() -> bool:
        summary = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        return summary["StreamStatus"] == "ACTIVE"

    wait_until(active, timeout_s=_STREAM_ACTIVE_TIMEOUT_S, what=f"stream {name}")


class Kinesalite(LocalServer):
    """kinesalite on a free loopback port, in memory, for the lifetime of a `with` block."""

    what = "kinesalite"

    def __init__(self, *, port: int | None = None, log_path: Path | None = None) -> None:
        if not KINESALITE_MODULE.exists():
            raise ProcessFailedError(f"{KINESALITE_MODULE} not found: run `make install` (npm ci)")
        super().__init__(port=port, log_path=log_path)

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _launch(self, port: int) -> ManagedProcess:
        argv = ["node", "-e", _KINESALITE_LOOPBACK_JS, str(KINESALITE_MODULE), str(port), LOOPBACK]
        return ManagedProcess("kinesalite", argv, self._log_path)

    def _ready(self, port: int) -> bool:
        return kinesalite_ready(port)
