"""S3 on loopback for the local loop: moto's server in a process of its own, and a client for it.

It holds what S3 holds in AWS: the function's dead letters and the mapping's on-failure batches,
which the replay reads back.
"""

from __future__ import annotations

import http.client
import sys
from typing import TYPE_CHECKING

from localloop.kinesis_local import DEFAULT_REGION, local_session
from localloop.procs import LOOPBACK, LocalServer, ManagedProcess

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def s3_client(endpoint: str, region: str = DEFAULT_REGION) -> S3Client:
    """An S3 client for a local endpoint (dummy credentials: moto checks none)."""
    return local_session(region).client("s3", endpoint_url=endpoint)


def moto_ready(port: int) -> bool:
    """True when moto answers on the port (its dashboard page: an open port alone could be
    someone else's)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=2)
    try:
        conn.request("GET", "/moto-api/")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class MotoServer(LocalServer):
    """moto's server (every service over HTTP; the local loop uses its S3) on a free loopback
    port, in a process of its own."""

    what = "moto server"

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _launch(self, port: int) -> ManagedProcess:
        argv = [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)]
        return ManagedProcess("moto", argv, self._log_path)

    def _ready(self, port: int) -> bool:
        return moto_ready(port)
