"""What the function logs about a record it can not write: where it is, its size and why, and
never its key or value."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msk_kinesis_sink.events import KafkaRecord
from msk_kinesis_sink.runtime import Sink
from msk_kinesis_sink.settings import Settings
from msk_kinesis_sink.settlement import record_fields
from tests.factories import b64, sources_event
from tests.fakes import FakeContext, FakeDeadLetters, FakeKinesis

KEY = b"customer-4711"
VALUE = b"secret-" * 600  # 4,200 bytes: over MAX_RECORD_BYTES=2048 once encoded


def _handled(caplog: pytest.LogCaptureFixture, dead_letters: FakeDeadLetters | None) -> None:
    settings = Settings.from_env(
        {"STREAM_NAME": "s", "RECORD_FORMAT": "envelope", "MAX_RECORD_BYTES": "2048"}
    )
    sink = Sink(settings, writer=FakeKinesis(), dead_letters=dead_letters)
    try:
        with caplog.at_level(logging.INFO, logger="msk_kinesis_sink"):
            sink.handle(sources_event([(3, 17, KEY, VALUE)], "orders"), FakeContext())
    finally:
        sink.close()


@pytest.mark.parametrize("bucket", [True, False], ids=["dead-lettered", "no-bucket"])
def test_dead_letter_log_line_names_the_record_its_size_and_reason(
    bucket: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a record too large for MAX_RECORD_BYTES, with and without a dead-letter bucket
    # WHEN the function handles it
    _handled(caplog, FakeDeadLetters() if bucket else None)

    # THEN one line says where the record is, how large it is and why it can not be written
    (line,) = [r for r in caplog.records if r.levelno >= logging.WARNING and hasattr(r, "reason")]
    fields = {name: getattr(line, name) for name in ("topic", "partition", "offset", "size")}
    assert fields == {"topic": "orders", "partition": 3, "offset": 17, "size": len(KEY + VALUE)}
    assert "MAX_RECORD_BYTES=2048" in line.reason  # type: ignore[attr-defined]
    # AND nothing logged holds the key or the value, in any form
    logged = caplog.text + " ".join(str(vars(r)) for r in caplog.records)
    for secret in (KEY.decode(), "secret-", b64(KEY) or "", (b64(VALUE) or "")[:40]):
        assert secret not in logged


@given(key=st.none() | st.binary(max_size=300), value=st.none() | st.binary(max_size=3000))
def test_record_fields_size_is_the_decoded_key_and_value(
    key: bytes | None, value: bytes | None
) -> None:
    # GIVEN any key and value, as the event carries them (base64, or null)
    record = KafkaRecord("t", 0, 1, 0, "CREATE_TIME", b64(key), b64(value))
    # WHEN its log fields are made / THEN the size is their bytes, found without decoding
    assert record_fields(record)["size"] == len(key or b"") + len(value or b"")
