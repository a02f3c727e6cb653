"""A moto server on a free loopback port: the AWS account a rehearsal deploys into.

Its state is reset before each deployment, and its IAM access control is switched on once the
setup is done (moto's `/moto-api/reset-auth`: every later request must be signed by an IAM
identity whose policies allow the action).
"""

from __future__ import annotations

import http.client
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Final

from localloop.procs import LOOPBACK, LocalServer, ManagedProcess

REGION: Final = "us-east-1"
# The account moto gives every request (its default).
ACCOUNT: Final = "123456789012"
_TIMEOUT_S: Final = 30.0


class MotoServerError(RuntimeError):
    """The moto server did not answer a control request as expected."""


class MotoServer(LocalServer):
    """`python -m moto.server` for the lifetime of a `with` block."""

    what = "moto server"

    def __init__(self, *, port: int | None = None, log_path: Path | None = None) -> None:
        super().__init__(port=port, log_path=log_path)

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def version(self) -> str:
        return version("moto")

    def _launch(self, port: int) -> ManagedProcess:
        argv = [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)]
        return ManagedProcess("moto", argv, self._log_path)

    def _ready(self, port: int) -> bool:
        """moto's own API answers (an open port alone could be someone else's)."""
        try:
            status, body = _request(port, "GET", "/moto-api/data.json", b"", timeout_s=2.0)
        except (OSError, http.client.HTTPException):
            return False
        return status == 200 and body.startswith(b"{")

    def reset(self) -> None:
        """Forget every resource, and let every request through again (access control off)."""
        self._control("/moto-api/reset", b"")
        self._control("/moto-api/reset-auth", b"inf")

    def enforce_access_control(self) -> None:
        """From the next request on, moto checks each one's signature and IAM policies."""
        self._control("/moto-api/reset-auth", b"0")

    def _control(self, path: str, body: bytes) -> None:
        status, answer = _request(self.port, "POST", path, body, timeout_s=_TIMEOUT_S)
        if status != 200:
            raise MotoServerError(f"moto answered {status} to {path}: {answer[:200]!r}")


def _request(
    port: int, method: str, path: str, body: bytes, *, timeout_s: float
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout_s)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
