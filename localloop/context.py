"""A Lambda-like context object whose deadline is real (wall time from the invocation's start)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Final

DEFAULT_MEMORY_MB: Final = 1024
_ACCOUNT: Final = "000000000000"


@dataclass(frozen=True, slots=True)
class LambdaContext:
    """What a handler may read from Lambda's context, with a deadline that really runs out."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    deadline_monotonic: float
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    identity: None = None
    client_context: None = None

    @classmethod
    def start(
        cls,
        *,
        function_name: str,
        timeout_s: float,
        memory_mb: int = DEFAULT_MEMORY_MB,
        region: str = "us-east-1",
    ) -> LambdaContext:
        """A context for an invocation starting now that may run `timeout_s` seconds."""
        return cls(
            function_name=function_name,
            invoked_function_arn=f"arn:aws:lambda:{region}:{_ACCOUNT}:function:{function_name}",
            memory_limit_in_mb=memory_mb,
            deadline_monotonic=time.monotonic() + timeout_s,
            log_group_name=f"/aws/lambda/{function_name}",
        )

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline_monotonic - time.monotonic()) * 1000))
