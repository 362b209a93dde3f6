"""Errors a user can cause: a code and a message, the same shape everywhere.

``{"error": "validation_failed", "message": "...", "violations": [...]}``
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answered to the client as ``{"error": code, "message": ...}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


def unauthenticated(
    message: str = "a valid API key is required: Authorization: Bearer <key>",
) -> ApiError:
    return ApiError(401, "unauthenticated", message, headers={"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def validation_failed(violations: list[dict[str, str]], message: str | None = None) -> ApiError:
    if message is None:
        first = violations[0]["message"] if violations else "invalid request"
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        message = first + more
    return ApiError(422, "validation_failed", message, violations=violations)


class Pushback(ApiError):
    """The pipeline cannot take the write now: 503 with Retry-After; retry later."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(503, "unavailable", message, headers={"Retry-After": str(retry_after_s)})
