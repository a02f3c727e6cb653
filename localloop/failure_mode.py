"""The mappings' failure mode as cdk.json sets it (`failureMode`, with `retryAttempts`,
`maxRecordAgeSeconds` and `bisectOnError`), for the emulator: the retries, record age and
on-failure destination the stack gives its mappings (infra.failure_modes decides both)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from infra.failure_modes import UNLIMITED, FailureMode, MappingRetries, mapping_retries
from localloop.esm import EsmConfig

CDK_JSON: Final = Path(__file__).resolve().parent.parent / "cdk.json"
# The stack's defaults for the keys the shipped cdk.json might leave out.
_DEFAULTS: Final[Mapping[str, object]] = {
    "failureMode": FailureMode.DIVERT.value,
    "retryAttempts": 10,
    "maxRecordAgeSeconds": UNLIMITED,
    "bisectOnError": True,
}


def cdk_context(path: Path = CDK_JSON) -> dict[str, object]:
    """The context of a cdk.json (the repository's by default)."""
    context: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))["context"]
    return context


def read_failure_mode(text: object) -> FailureMode:
    """A failureMode value, in any case; raises ValueError naming the key and what is allowed."""
    for mode in FailureMode:
        if isinstance(text, str) and text.strip().lower() == mode.value:
            return mode
    allowed = ", ".join(mode.value for mode in FailureMode)
    raise ValueError(f"failureMode={text!r} is not one of: {allowed}")


def failure_settings(context: Mapping[str, object]) -> tuple[MappingRetries, bool]:
    """What the stack's mappings get from `context`: their retries, record age and destination,
    and bisect-on-error. The stack refuses contradictions at synth; here a value that isn't one
    raises ValueError naming its key."""
    values = {**_DEFAULTS, **{k: v for k, v in context.items() if k in _DEFAULTS}}
    mode = read_failure_mode(values["failureMode"])
    age = _integer(values, "maxRecordAgeSeconds")
    retries = mapping_retries(
        mode, _integer(values, "retryAttempts"), None if age == UNLIMITED else age
    )
    bisect = str(values["bisectOnError"]).strip().lower()
    if bisect not in ("true", "false"):
        raise ValueError(f"bisectOnError={values['bisectOnError']!r} is not true or false")
    return retries, bisect == "true"


def with_failure_mode(config: EsmConfig, context: Mapping[str, object]) -> tuple[EsmConfig, bool]:
    """`config` with the retries, record age and bisect-on-error `context` gives the stack's
    mappings, and whether they have an on-failure destination (give the emulator one only then)."""
    retries, bisect = failure_settings(context)
    age = retries.max_record_age_seconds
    emulated = dataclasses.replace(
        config,
        maximum_retry_attempts=retries.retry_attempts,
        maximum_record_age_s=UNLIMITED if age is None else age,
        bisect_batch_on_function_error=bisect,
    )
    return emulated, retries.has_destination


def _integer(values: Mapping[str, object], key: str) -> int:
    value = values[key]
    text = str(value).strip()
    if isinstance(value, bool) or not text.lstrip("-").isdigit() or not text.isascii():
        raise ValueError(f"{key}={value!r} is not an integer")
    return int(text)
