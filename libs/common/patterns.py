"""Action patterns: a glob over event actions where ``*`` matches any run.

One matcher for every feature that selects events by action (alert rules,
event schemas), so that ``document.*`` means the same thing everywhere.
Matching uses no regex: a user's ``*a*a*a*…`` MUST NOT backtrack
exponentially on a hot path.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable

MAX_PATTERN_LEN = 200

# The characters an action may contain (libs.common.event.ACTION_RE) plus ``*``:
# a pattern with any other character could never match.
_PATTERN_RE = re.compile(r"^[A-Za-z0-9_.*\-]+\Z")


def check_pattern(pattern: object) -> str | None:
    """None if ``pattern`` is a usable action pattern, else what is wrong with it.

    The message has no subject, e.g. ``must be a non-empty string of at most
    200 characters``: the caller names the field.
    """
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_LEN:
        return f"must be a non-empty string of at most {MAX_PATTERN_LEN} characters"
    if _PATTERN_RE.match(pattern) is None:
        return (
            "must be an action pattern of letters, digits, '.', '_', '-' and '*'"
            " (any run of characters), e.g. *.delete"
        )
    return None


@functools.lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> Callable[[str], bool]:
    """A matcher for a glob where ``*`` matches any run of characters.

    Matched by prefix, suffix and an in-order search for the pieces between
    stars: the leftmost placement of each piece is never worse for the pieces
    after it, so one forward pass decides, in time linear in the action.
    """
    pieces = pattern.split("*")
    if len(pieces) == 1:
        return pattern.__eq__
    head, *middle, tail = pieces
    inner = [p for p in middle if p]
    min_len = sum(len(p) for p in pieces)

    def match(action: str) -> bool:
        if len(action) < min_len or not action.startswith(head) or not action.endswith(tail):
            return False
        pos, end = len(head), len(action) - len(tail)
        for piece in inner:
            found = action.find(piece, pos, end)
            if found < 0:
                return False
            pos = found + len(piece)
        return True

    return match


def matches_any(patterns: Iterable[str], action: str) -> bool:
    return any(compile_pattern(p)(action) for p in patterns)
