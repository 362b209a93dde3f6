"""Config validation for destinations: ``Checker`` reads a config key by key and names each problem.

Every problem is ``{"field": "config.<key>", "message": ...}``; a message
never echoes a value that may be a secret.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from libs.common.ssrf import UnsafeDestination, check_url_syntax
from services.streamer.formats import ocsf
from services.streamer.formats.common import Problems

Violations = list[dict[str, str]]

#: What a JSON destination sends per event: the served event, or its OCSF record.
RECORD_FORMATS = ("chainlog", "ocsf")
#: The config keys that choose it; every JSON destination allows them.
FORMAT_KEYS = ("format", "ocsf_mappings")
MAX_HEADERS = 20
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}\Z")
_HEADER_VALUE_RE = re.compile(r"^[\t\x20-\x7e]{0,1024}\Z")
#: Set by us, or a credential that ``public`` would show.
_RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "host",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "user-agent",
    }
)
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_PEM_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")


def bad(key: str, message: str) -> dict[str, str]:
    return {"field": f"config.{key}", "message": message}


class Checker:
    """Reads a config object key by key, collecting violations instead of stopping at the first."""

    def __init__(self, config: object, allowed: Sequence[str]) -> None:
        self.violations: Violations = []
        self.out: dict[str, Any] = {}
        self.is_object = isinstance(config, dict)
        if not isinstance(config, dict):
            self.raw: dict[str, Any] = {}
            self.violations.append({"field": "config", "message": "config must be a JSON object"})
            return
        self.raw = config
        self.violations.extend(
            bad(str(k), f"{k} is not a setting of this destination type")
            for k in config
            if k not in allowed
        )

    def fail(self, key: str, message: str) -> None:
        # a config that is no object has one violation, not one per missing key
        if self.is_object:
            self.violations.append(bad(key, message))

    def string(
        self,
        key: str,
        *,
        default: str | None = None,
        required: bool = False,
        max_len: int = 256,
        pattern: re.Pattern[str] | None = None,
        hint: str = "",
    ) -> str | None:
        value = self.raw.get(key)
        if value is None:
            if required:
                self.fail(key, f"{key} is required")
                return None
            if default is not None:
                self.out[key] = default
            return default
        if not isinstance(value, str) or not value or len(value) > max_len or "\x00" in value:
            self.fail(key, f"{key} must be a non-empty string of at most {max_len} characters")
            return None
        if pattern is not None and pattern.match(value) is None:
            self.fail(key, f"{key} {hint or 'has an invalid format'}")
            return None
        self.out[key] = value
        return value

    def secret(self, key: str, *, required: bool = True, max_len: int = 1024) -> str | None:
        """Secret values are never echoed back in a message."""
        value = self.raw.get(key)
        if value is None:
            if required:
                self.fail(key, f"{key} is required")
            return None
        if (
            not isinstance(value, str)
            or not value.strip()
            or len(value) > max_len
            or any(c in value for c in "\r\n\x00")
        ):
            self.fail(key, f"{key} must be a non-empty single-line string")
            return None
        self.out[key] = value
        return value

    def boolean(self, key: str, *, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"{key} must be true or false")
            return default
        self.out[key] = value
        return value

    def integer(self, key: str, *, default: int | None, low: int, high: int) -> int | None:
        value = self.raw.get(key, default)
        if value is None:
            self.fail(key, f"{key} is required")
            return None
        if type(value) is not int or not low <= value <= high:
            self.fail(key, f"{key} must be an integer from {low} to {high}")
            return None
        self.out[key] = value
        return value

    def choice(self, key: str, options: Sequence[str], *, default: str) -> str:
        value = self.raw.get(key, default)
        if value not in options:
            self.fail(key, f"{key} must be one of: {', '.join(options)}")
            return default
        self.out[key] = value
        return str(value)

    def pem(self, key: str, *, kinds: Sequence[str], max_len: int = 65536) -> str | None:
        """PEM text of blocks of ``kinds`` only (``CERTIFICATE``, ``PRIVATE KEY``...).

        Only the armour is checked here; the caller parses it. The value is
        never echoed (it may be a key).
        """
        value = self.raw.get(key)
        if value is None:
            return None
        found = _PEM_RE.findall(value) if isinstance(value, str) and len(value) <= max_len else []
        if not found or any(k not in kinds for k in found) or "\x00" in value:
            shown = " or ".join(kinds)
            self.fail(
                key, f"{key} must be PEM text of {shown} blocks, at most {max_len} characters"
            )
            return None
        self.out[key] = value
        return str(value)

    def headers(self, key: str, *, secret: bool = False) -> dict[str, str] | None:
        """Extra HTTP headers: names we do not set ourselves, printable ASCII values.

        Credentials (``Authorization``...) only when the headers are a
        ``secret``: stored sealed, never returned.
        """
        reserved = _RESERVED_HEADERS - _CREDENTIAL_HEADERS if secret else _RESERVED_HEADERS
        headers = self.raw.get(key, {})
        if not isinstance(headers, dict) or len(headers) > MAX_HEADERS:
            self.fail(key, f"{key} must be an object of at most {MAX_HEADERS} headers")
            return None
        ok = True
        for name, value in headers.items():
            where = f"{key}.{name}"
            lower = name.lower()
            if _HEADER_NAME_RE.match(name) is None:
                self.fail(where, "must be an HTTP header name: letters, digits and -")
            elif lower in reserved or lower.startswith("webhook-"):
                self.fail(where, f"{name} is set by Chainlog or is a credential")
            elif not isinstance(value, str) or _HEADER_VALUE_RE.match(value) is None:
                self.fail(where, "must be printable ASCII of at most 1024 characters")
            else:
                continue
            ok = False
        if ok:
            self.out[key] = dict(headers)
        return dict(headers) if ok else None

    def rules(
        self, key: str, check: Callable[[object], tuple[list[dict[str, Any]], Problems]]
    ) -> None:
        """A mapping-rule list (``ocsf_mappings``, ``udm_mappings``), each problem by its path."""
        if self.raw.get(key) is None:
            return
        rules, problems = check(self.raw[key])
        for path, message in problems:
            self.violations.append(bad(f"{key}{path}", message))
        if not problems:
            self.out[key] = rules

    def record_format(self) -> str:
        """``format`` (``chainlog`` or ``ocsf``) and ``ocsf_mappings``: see ``shaper``."""
        chosen = self.choice("format", RECORD_FORMATS, default="chainlog")
        self.rules("ocsf_mappings", ocsf.check_mappings)
        return chosen

    def url(self, key: str, *, required: bool = True, base: bool = False) -> str | None:
        """An absolute http(s) URL (syntax only); ``base`` ones take no query and lose a final '/'."""
        value = self.raw.get(key)
        if value is None:
            if required:
                self.fail(key, f"{key} is required")
            return None
        if not isinstance(value, str):
            self.fail(key, f"{key} must be an absolute http(s) URL")
            return None
        try:
            normal = check_url_syntax(value)
        except UnsafeDestination as exc:
            # the reason starts with "url:" whatever the key is called
            self.fail(key, f"{key}{exc.reason.removeprefix('url')}")
            return None
        if base:
            parsed = httpx.URL(normal)
            if parsed.query:
                self.fail(key, f"{key} must be a base URL without a query string")
                return None
            normal = normal.rstrip("/")
        self.out[key] = normal
        return normal
