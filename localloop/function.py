"""The function the emulator invokes: the real sink, in-process, with an environment of its own."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from localloop.context import LambdaContext
from localloop.esm import Function
from localloop.kinesis_local import DEFAULT_REGION, DUMMY_CREDENTIALS


def sink_env(
    *,
    stream: str | None,
    endpoint: str | None,
    region: str = DEFAULT_REGION,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Function environment for a local run: stream, endpoint, region, dummy credentials.

    `stream` is STREAM_NAME, the default stream; None leaves it to STREAM_ROUTES in `extra`.
    """
    env = {"AWS_REGION": region, "AWS_DEFAULT_REGION": region}
    if stream is not None:
        env["STREAM_NAME"] = stream
    if endpoint is not None:
        env["AWS_ENDPOINT_URL_KINESIS"] = endpoint
        env.update(DUMMY_CREDENTIALS)
    env.update(extra or {})
    return env


def check_function_env(env: Mapping[str, str]) -> None:
    """Refuse an environment the function would fail to initialise with, before anything starts:
    raises `ConfigurationError` naming the variable and what is allowed (the function's own
    parser, so the rule and the message are the function's)."""
    from msk_kinesis_sink.settings import Settings

    Settings.from_env(env)


class SinkFunction:
    """`msk_kinesis_sink.runtime.Sink` as a Function: one instance = one warm Lambda container.

    Given `delivery_delays`, each invocation adds its records' delivery delays (ms) to it.
    """

    def __init__(self, env: Mapping[str, str], delivery_delays: list[float] | None = None) -> None:
        from msk_kinesis_sink.report import InvocationReport
        from msk_kinesis_sink.runtime import Sink  # the function's package lives under lambda/

        def keep_delays(report: InvocationReport) -> None:
            if delivery_delays is not None:
                delivery_delays.extend(report.stats.delivery_delays_ms)

        self._sink = Sink.from_env(env, on_report=keep_delays)

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> object:
        return self._sink.handle(event, context)

    def last_stats(self) -> dict[str, Any] | None:
        """The last invocation's numbers (`InvocationStats` as plain data), None before one."""
        report = self._sink.last_report
        return None if report is None else dataclasses.asdict(report.stats)

    def close(self) -> None:
        self._sink.close()


__all__ = ["Function", "SinkFunction", "check_function_env", "sink_env"]
