"""Lambda entry point: wires Powertools logging and metrics around one `Sink` per container."""

from __future__ import annotations

import logging
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from msk_kinesis_sink.report import InvocationReport
from msk_kinesis_sink.response import PartialBatchResponse
from msk_kinesis_sink.runtime import Sink
from msk_kinesis_sink.settings import Settings

DEFAULT_NAMESPACE = "MskKinesisSink"
DEFAULT_SERVICE = "msk-kinesis-sink"

# Checked before Powertools and boto3 read the environment (POWERTOOLS_LOG_LEVEL,
# AWS_ENDPOINT_URL_*): a bad value fails the cold start with a ConfigurationError naming the
# variable, where theirs would be a bare ValueError.
settings = Settings.from_env(os.environ)

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", DEFAULT_SERVICE))
# Powertools follows Lambda's application log level when one is set, and the stack keeps that at
# INFO (metric lines carry no level, and Lambda files those under INFO). The function's own
# verbosity is POWERTOOLS_LOG_LEVEL, applied to its loggers here.
logging.getLogger(logger.name).setLevel(settings.log_level)
metrics = Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", DEFAULT_NAMESPACE),
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", DEFAULT_SERVICE),
)
# The core logs through the standard library; give its loggers the same JSON format, context and
# level.
copy_config_to_registered_loggers(
    source_logger=logger, log_level=settings.log_level, include={"msk_kinesis_sink"}
)


def publish_metrics(report: InvocationReport) -> None:
    for name, unit, value in report.metric_values():
        metrics.add_metric(name, MetricUnit(unit.value), value)


# Built at cold start: a bad setting fails the init phase with a message naming the variable.
sink = Sink.from_env(os.environ, settings=settings, on_report=publish_metrics)


@metrics.log_metrics
# log_event=False: the event holds keys, values and headers, so POWERTOOLS_LOGGER_LOG_EVENT
# must not be able to log it.
@logger.inject_lambda_context(clear_state=True, log_event=False)
def handler(event: dict[str, Any], context: LambdaContext) -> PartialBatchResponse:
    return sink.handle(event, context)
