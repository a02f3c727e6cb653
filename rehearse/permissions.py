"""The function role's identity policy as the rehearsal uses it: one action taken out, the copy
moto enforces, and the resource check moto can't make.

moto checks an identity policy's Action for every service, but compares the Resource only for
S3: every other call is checked against the resource "*" (moto/core/responses.py, `call_action`,
uses `_determine_resource` only where a service defines it: IAM, SQS, STS), so a statement
scoped to a stream or key ARN would never allow anything there. The copy moto enforces therefore
has "*" as the Resource of those statements, and `Policy.covers` checks the real resource of
each call against the statements that allow its action. Conditions are not evaluated by either
(moto passes a condition it has no values for), so `condition_keys` lists them for the report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Final

# The services whose calls moto checks against the real resource ARN.
RESOURCE_CHECKED_BY_MOTO: Final = frozenset({"s3"})


def _as_tuple(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(str(item) for item in value)
    raise ValueError(f"{value!r} is neither a string nor a list of strings")


@lru_cache(maxsize=1024)
def _pattern(text: str, *, ignore_case: bool) -> re.Pattern[str]:
    """IAM's wildcards: `*` any run of characters, `?` any one; everything else literal."""
    body = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in text
    )
    flags = (re.IGNORECASE | re.DOTALL) if ignore_case else re.DOTALL
    return re.compile(body, flags)


def matches_action(pattern: str, action: str) -> bool:
    """Action names compare without case (IAM: "not case sensitive")."""
    return _pattern(pattern, ignore_case=True).fullmatch(action) is not None


def matches_resource(pattern: str, resource: str) -> bool:
    return _pattern(pattern, ignore_case=False).fullmatch(resource) is not None


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of an identity policy (no Principal: it is attached to the role)."""

    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    condition: Mapping[str, Mapping[str, Any]] | None = None
    sid: str | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Statement:
        return cls(
            effect=str(document["Effect"]),
            actions=_as_tuple(document.get("Action")),
            not_actions=_as_tuple(document.get("NotAction")),
            resources=_as_tuple(document.get("Resource")),
            not_resources=_as_tuple(document.get("NotResource")),
            condition=document.get("Condition"),
            sid=document.get("Sid"),
        )

    def document(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Effect": self.effect}
        if self.sid is not None:
            out["Sid"] = self.sid
        for name, values in (
            ("Action", self.actions),
            ("NotAction", self.not_actions),
            ("Resource", self.resources),
            ("NotResource", self.not_resources),
        ):
            if values:
                out[name] = list(values)
        if self.condition:
            out["Condition"] = dict(self.condition)
        return out

    def applies_to(self, action: str) -> bool:
        if self.not_actions:
            return not any(matches_action(p, action) for p in self.not_actions)
        return any(matches_action(p, action) for p in self.actions)

    def covers(self, resource: str) -> bool:
        if self.not_resources:
            return not any(matches_resource(p, resource) for p in self.not_resources)
        return any(matches_resource(p, resource) for p in self.resources)

    @property
    def services(self) -> frozenset[str]:
        return frozenset(a.split(":", 1)[0].lower() for a in (*self.actions, *self.not_actions))


@dataclass(frozen=True, slots=True)
class Policy:
    """An identity policy document, as statements."""

    statements: tuple[Statement, ...]
    version: str = "2012-10-17"

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Policy:
        raw = document.get("Statement") or []
        statements = [raw] if isinstance(raw, Mapping) else list(raw)
        return cls(
            tuple(Statement.from_document(s) for s in statements),
            str(document.get("Version", "2012-10-17")),
        )

    def document(self) -> dict[str, Any]:
        return {"Version": self.version, "Statement": [s.document() for s in self.statements]}

    def actions(self) -> list[str]:
        """Every action an Allow statement names, as written, in order, once."""
        seen: dict[str, str] = {}
        for statement in self.statements:
            if statement.effect == "Allow":
                for action in statement.actions:
                    seen.setdefault(action.lower(), action)
        return list(seen.values())

    def without(self, action: str) -> tuple[Policy, int]:
        """The policy with `action` (as named, any case) taken out of every Allow statement, and
        how many statements named it; a statement left with no action goes."""
        kept: list[Statement] = []
        removed = 0
        for statement in self.statements:
            remaining = tuple(a for a in statement.actions if a.lower() != action.lower())
            if statement.effect != "Allow" or len(remaining) == len(statement.actions):
                kept.append(statement)
                continue
            removed += 1
            if remaining:
                kept.append(replace(statement, actions=remaining))
        return Policy(tuple(kept), self.version), removed

    def for_moto(self) -> Policy:
        """The copy moto enforces: Resource "*" in every statement whose service moto checks
        against "*" (every service but S3)."""
        widened = tuple(
            s
            if s.services <= RESOURCE_CHECKED_BY_MOTO
            else replace(s, resources=("*",), not_resources=())
            for s in self.statements
        )
        return Policy(widened, self.version)

    def allows_action(self, action: str) -> bool:
        """Some Allow statement names the action (on some resource)."""
        return any(s.effect == "Allow" and s.applies_to(action) for s in self.statements)

    def covers(self, action: str, resource: str) -> bool:
        """An Allow statement for `action` covers `resource`, and no Deny statement does."""
        concerned = [s for s in self.statements if s.applies_to(action) and s.covers(resource)]
        if any(s.effect == "Deny" for s in concerned):
            return False
        return any(s.effect == "Allow" for s in concerned)

    def condition_keys(self) -> list[str]:
        keys: dict[str, None] = {}
        for statement in self.statements:
            for operator in (statement.condition or {}).values():
                keys.update(dict.fromkeys(operator))
        return list(keys)
