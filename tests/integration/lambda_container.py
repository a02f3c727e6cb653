"""Run the real handler module as a fresh Lambda container would, and read a stream back."""

from __future__ import annotations

import importlib
import logging
import sys
from types import ModuleType
from typing import Any

import boto3
import pytest

from tests.integration.conftest import REGION

# moto's Kinesis is not safe for concurrent writes (its Shard.put_record says so): two requests
# at once can store records under one sequence number, and one of them is lost while both
# were acknowledged. Every handler here writes to moto, so with one worker; concurrent writes
# are tested against kinesalite (tests/e2e) and FakeKinesis.
MOTO_SAFE_CONCURRENCY = "1"


def load_handler(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    """Import the handler module afresh with `env` set (a cold start), one worker by default."""
    env.setdefault("MAX_CONCURRENCY", MOTO_SAFE_CONCURRENCY)
    if env["MAX_CONCURRENCY"] != MOTO_SAFE_CONCURRENCY:
        raise ValueError("moto's Kinesis loses concurrent writes: use kinesalite for that")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sys.modules.pop("msk_kinesis_sink.handler", None)
    module = importlib.import_module("msk_kinesis_sink.handler")
    # Logging outlives a module reload: point its handlers at this test's (captured) stdout.
    for name in ("msk-kinesis-sink", *_package_loggers()):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.stream = sys.stdout
    return module


def _package_loggers() -> list[str]:
    return [name for name in logging.root.manager.loggerDict if name.startswith("msk_kinesis_sink")]


def read_stream(stream: str) -> list[dict[str, Any]]:
    """Every record of every shard, from the start (moto's GetRecords)."""
    kinesis = boto3.client("kinesis", region_name=REGION)
    records: list[dict[str, Any]] = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records.extend(kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"])
    return records
