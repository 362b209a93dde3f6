"""When to send a request again, and after how long: pure, with the randomness passed in.

What is retried:

* 429 always: the API refuses before doing any work.
* A network failure before the request was sent (connection refused, connect
  timeout) always.
* 5xx (503 included) and a network failure after sending only for
  idempotent requests: reads, and events, which always carry an
  ``idempotency_key``, so the server keeps one copy (24 h). Creating an
  export or an alert rule is not retried then: it could happen twice.
* Other 4xx never: the request itself is wrong.

The wait is exponential with jitter, and never shorter than ``Retry-After``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from chainlog_sdk.errors import ChainlogError, NetworkError, RateLimited, ServerError


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with "equal jitter": attempt ``n`` waits in ``[d/2, d]``,
    ``d = min(cap, base * 2**n)``."""

    base: float = 0.5
    cap: float = 30.0
    #: A float in [0, 1); tests pass a constant.
    rng: Callable[[], float] = field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError("Backoff needs 0 < base <= cap")

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** min(attempt, 62))
        return ceiling / 2 + self.rng() * ceiling / 2


def retryable(error: ChainlogError, *, idempotent: bool) -> bool:
    if isinstance(error, RateLimited):
        return True
    if isinstance(error, NetworkError):
        return idempotent or not error.sent
    if isinstance(error, ServerError):
        return idempotent
    return False


def next_delay(
    backoff: Backoff,
    attempt: int,
    error: ChainlogError,
    *,
    idempotent: bool,
    max_retries: int | None,
) -> float | None:
    """Seconds to wait before retry number ``attempt + 1``, or None to give up.

    ``max_retries`` None retries for as long as the error is retryable.
    """
    if max_retries is not None and attempt >= max_retries:
        return None
    if not retryable(error, idempotent=idempotent):
        return None
    wait = backoff.delay(attempt)
    after = error.retry_after
    return wait if after is None else max(wait, after)
