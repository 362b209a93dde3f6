"""The audit event a producer sends: its fields, their limits, validation.

Validation is pure and hand-written rather than a model class: it runs for
every event on the ingest hot path, and it must name every offending field
in the error a producer gets back.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from typing import Any

import orjson

from libs.common.timeutil import normalize_rfc3339

MAX_SAFE_INT = 2**53 - 1
MAX_METADATA_KEYS = 50
MAX_METADATA_BYTES = 64 * 1024
MAX_TARGETS = 50
MAX_DEPTH = 8

# ``\Z``, not ``$``: ``$`` also matches before a trailing newline.
ACTION_RE = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*\Z")

#: Fields the system assigns; a producer may not send them.
SYSTEM_FIELDS = frozenset(
    {
        "id",
        "workspace_id",
        "seq",
        "prev_hash",
        "hash",
        "received_at",
        "ip_country",
        "ip_city",
        "schema_violation",
    }
)
#: Chainlog's own management events (the admin audit log) use this category
#: and the ``admin.`` actions; producers may not, so none can be forged.
ADMIN_CATEGORY = "admin"

Violation = dict[str, str]


class _Fail(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


def _string(max_len: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, str):
            raise _Fail("must be a string")
        if not value:
            raise _Fail("must not be empty")
        if len(value) > max_len:
            raise _Fail(f"must be at most {max_len} characters")
        if "\x00" in value:
            raise _Fail("must not contain the NUL character")
        return value

    return check


def _action(value: Any) -> Any:
    value = _string(128)(value)
    if ACTION_RE.match(value) is None:
        raise _Fail("must be dotted words of letters, digits, '_' or '-', e.g. document.delete")
    return value


def _timestamp(value: Any) -> Any:
    if not isinstance(value, str):
        raise _Fail("must be an RFC 3339 date-time string")
    try:
        return normalize_rfc3339(value)
    except (ValueError, OverflowError) as exc:
        raise _Fail(str(exc)) from None


def _ip(value: Any) -> Any:
    if not isinstance(value, str):
        raise _Fail("must be an IPv4 or IPv6 address string")
    try:
        # Hot path: a dotted quad that inet_pton reads and writes back the
        # same is already what ipaddress would print.
        if socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, value)) == value:
            return value
    except (OSError, ValueError):  # ValueError: an embedded NUL
        pass
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise _Fail("must be an IPv4 or IPv6 address") from None


def _version(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**31 - 1:
        raise _Fail("must be a positive integer")
    return value


def _check_json(value: Any, depth: int) -> None:
    """Free-form JSON: bounded depth, no NUL, numbers within ±2^53."""
    if depth > MAX_DEPTH:
        raise _Fail(f"must not nest deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for k, v in value.items():
            if "\x00" in k:
                raise _Fail("keys must not contain the NUL character")
            if isinstance(v, (dict, list, int, float, str)):
                _check_json(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, (dict, list, int, float, str)):
                _check_json(v, depth + 1)
    elif isinstance(value, str):
        if "\x00" in value:
            raise _Fail("strings must not contain the NUL character")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise _Fail(
                "numbers must lie within ±9007199254740991 (I-JSON); send larger ones as strings"
            )


def _metadata(value: Any) -> Any:
    if not isinstance(value, dict):
        raise _Fail("must be an object")
    if len(value) > MAX_METADATA_KEYS:
        raise _Fail(f"must have at most {MAX_METADATA_KEYS} keys")
    _check_json(value, 1)
    if len(orjson.dumps(value)) > MAX_METADATA_BYTES:
        raise _Fail(f"must be at most {MAX_METADATA_BYTES} bytes as JSON")
    return value


_TARGET_FIELDS: dict[str, Callable[[Any], Any]] = {
    "type": _string(128),
    "id": _string(256),
    "name": _string(256),
    "metadata": _metadata,
}


def _targets(value: Any) -> Any:
    if not isinstance(value, list):
        raise _Fail("must be an array")
    if len(value) > MAX_TARGETS:
        raise _Fail(f"must have at most {MAX_TARGETS} items")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise _Fail(f"[{i}] must be an object")
        if "type" not in item or item["type"] is None:
            raise _Fail(f"[{i}].type is required")
        clean = {}
        for k, v in item.items():
            check = _TARGET_FIELDS.get(k)
            if check is None:
                raise _Fail(f"[{i}].{k} is not a target field (type, id, name, metadata)")
            if v is None:
                continue
            try:
                clean[k] = check(v)
            except _Fail as fail:
                raise _Fail(f"[{i}].{k} {fail.message}") from None
        out.append(clean)
    return out


#: Producer-supplied fields, each with its check (which may normalise).
FIELDS: dict[str, Callable[[Any], Any]] = {
    "actor_id": _string(256),
    "actor_name": _string(256),
    "actor_type": _string(64),
    "action": _action,
    "action_category": _string(64),
    "resource": _string(256),
    "resource_id": _string(256),
    "resource_name": _string(256),
    "targets": _targets,
    "metadata": _metadata,
    "occurred_at": _timestamp,
    "session_id": _string(256),
    "tenant_id": _string(256),
    "ip_address": _ip,
    "user_agent": _string(1024),
    "idempotency_key": _string(256),
    "version": _version,
}
REQUIRED = ("actor_id", "action")


def validate_event(raw: Any, prefix: str = "") -> tuple[dict[str, Any] | None, list[Violation]]:
    """Check one producer event; returns (normalised event, []) or (None, violations).

    ``null`` means absent. Unknown and system-assigned fields are refused,
    so a typo never silently drops data.
    """
    if not isinstance(raw, dict):
        return None, [{"field": prefix.rstrip(".") or "body", "message": "must be a JSON object"}]
    violations: list[Violation] = []
    out: dict[str, Any] = {}
    for name, value in raw.items():
        check = FIELDS.get(name)
        if check is None:
            msg = (
                "is assigned by the system and cannot be sent"
                if name in SYSTEM_FIELDS
                else "is not a known event field"
            )
            violations.append({"field": prefix + name, "message": f"{name} {msg}"})
            continue
        if value is None:
            continue
        try:
            out[name] = check(value)
        except _Fail as fail:
            path, message = name, fail.message
            if message.startswith("["):  # "[2].type is required": a nested field
                sub, message = message.split(" ", 1)
                path += sub
            violations.append({"field": prefix + path, "message": f"{path} {message}"})
    for name in REQUIRED:
        if name not in out and not any(v["field"] == prefix + name for v in violations):
            violations.append({"field": prefix + name, "message": f"{name} is required"})
    if violations:
        return None, violations
    return out, []
