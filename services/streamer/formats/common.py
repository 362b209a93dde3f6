"""What every format reads from an event the same way: its kind, its outcome, its times.

``classify`` reads an action such as ``user.login_failed`` or
``admin.log_stream.created`` as words (split on ``.``, ``_`` and ``-``)
and decides, in this order:

1. ``logon`` / ``logoff``: a word ``login``, ``logon``, ``signin`` (or
   ``log in``, ``sign in``); ``logout``, ``logoff``, ``signout``.
2. ``account``: the first part is ``user``, ``account``, ``member`` or
   ``membership``, or a word names a credential (``password``, ``mfa``,
   ``2fa``, ``totp``, ``passkey``, ``api key``, ``apikey``, ``credential``,
   ``token``).
3. ``entity``: Chainlog's own management events (``admin.*``, category
   ``admin``) and the categories ``configuration``, ``settings``.
4. ``api``: everything else.

The verb is the last word that names one (``created``, ``delete``,
``viewed``, ``enabled``, ``reset``...). The outcome is ``failure`` for a
word such as ``failed`` or ``denied``, ``success`` for ``succeeded`` or
``success``, and unknown otherwise: an audit event says what happened,
rarely whether it worked.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from libs.common.patterns import check_pattern, compile_pattern
from libs.common.timeutil import parse_rfc3339

Event = Mapping[str, Any]
#: ``(path below the setting, message)``: the caller names the setting.
Problems = list[tuple[str, str]]

Family = Literal["logon", "logoff", "account", "entity", "api"]
Outcome = Literal["success", "failure"]

PRODUCT = "Chainlog"
VENDOR = "Chainlog"
MAX_RULES = 100

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WORD_RE = re.compile(r"[._-]+")

_LOGON = frozenset({"login", "logon", "signin", "authenticated", "authenticate"})
_LOGOFF = frozenset({"logout", "logoff", "signout"})
_ACCOUNT_SUBJECTS = frozenset({"user", "users", "account", "accounts", "member", "members"})
_ACCOUNT_SUBJECTS |= {"membership", "memberships"}
_PASSWORD = frozenset({"password", "passwd", "passphrase"})
_MFA = frozenset({"mfa", "2fa", "totp", "otp", "passkey", "webauthn", "authenticator"})
_CREDENTIAL = frozenset({"apikey", "credential", "credentials", "token", "secret"})
_ENTITY_CATEGORIES = frozenset({"admin", "configuration", "config", "settings"})
_VERBS: dict[str, str] = {}
for _verb, _words in {
    "create": "create created creates add added insert inserted invite invited register"
    " registered provision provisioned upload uploaded generate generated issue issued new",
    "read": "read view viewed get fetch fetched list listed download downloaded export"
    " exported search searched query queried access accessed open opened",
    "update": "update updated edit edited change changed modify modified set rename renamed"
    " move moved patch patched replace replaced configure configured",
    "delete": "delete deleted remove removed destroy destroyed purge purged erase erased",
    "enable": "enable enabled activate activated reactivate reactivated unsuspend"
    " unsuspended restore restored",
    "disable": "disable disabled deactivate deactivated suspend suspended block blocked ban banned",
    "lock": "lock locked lockout",
    "unlock": "unlock unlocked",
    "grant": "grant granted assign assigned attach attached promote promoted",
    "revoke": "revoke revoked unassign unassigned detach detached demote demoted",
    "reset": "reset forgot recover recovered",
}.items():
    _VERBS.update(dict.fromkeys(_words.split(), _verb))
_FAILURE = frozenset({"fail", "failed", "failure", "denied", "rejected", "refused", "invalid"})
_SUCCESS = frozenset({"succeeded", "success", "successful", "ok"})


@dataclass(frozen=True, slots=True)
class Kind:
    """What an action is: ``subject`` is ``user``, ``password``, ``mfa``,
    ``credential`` for an account change, else None."""

    family: Family
    verb: str | None
    subject: str | None
    outcome: Outcome | None


def words(action: str) -> list[str]:
    return [w for w in _WORD_RE.split(action.lower()) if w]


def _pairs(ws: Sequence[str]) -> set[str]:
    """Two adjacent words joined (``log in`` -> ``login``), for actions spelt with a separator."""
    return {a + b for a, b in itertools.pairwise(ws)}


@functools.lru_cache(maxsize=4096)
def classify(action: str, category: str | None = None) -> Kind:
    ws = words(action)
    joined = set(ws) | _pairs(ws)
    outcome: Outcome | None = None
    if joined & _FAILURE:
        outcome = "failure"
    elif joined & _SUCCESS:
        outcome = "success"
    verb = next((_VERBS[w] for w in reversed(ws) if w in _VERBS), None)
    if joined & _LOGON:
        return Kind("logon", verb, None, outcome)
    if joined & _LOGOFF:
        return Kind("logoff", verb, None, outcome)
    subject: str | None = None
    if joined & _PASSWORD:
        subject = "password"
    elif joined & _MFA:
        subject = "mfa"
    elif joined & _CREDENTIAL or "apikey" in joined:
        subject = "credential"
    elif ws and (ws[0] in _ACCOUNT_SUBJECTS or (ws[0] == "admin" and ws[1:2] == ["member"])):
        subject = "user"
    if subject is not None:
        return Kind("account", verb, subject, outcome)
    if (ws and ws[0] == "admin") or (category or "").lower() in _ENTITY_CATEGORIES:
        return Kind("entity", verb, None, outcome)
    return Kind("api", verb, None, outcome)


def kind(event: Event) -> Kind:
    category = event.get("action_category")
    return classify(str(event["action"]), category if isinstance(category, str) else None)


# ---- times ------------------------------------------------------------------------------------


def epoch_us(ts: str) -> int:
    """Microseconds since the epoch, exactly (no float on the way)."""
    return (parse_rfc3339(ts) - _EPOCH) // timedelta(microseconds=1)


def epoch_ms(ts: str) -> int:
    return epoch_us(ts) // 1000


def event_time(event: Event) -> str:
    """When it happened: the producer's ``occurred_at`` when sent, else ``received_at``."""
    return str(event.get("occurred_at") or event["received_at"])


def nouns(event: Event) -> list[dict[str, Any]]:
    """What the event acted on: its ``resource`` fields, then its ``targets``, as
    ``{type, id, name, metadata}`` without the keys it lacks."""
    out: list[dict[str, Any]] = []
    if any(event.get(k) for k in ("resource", "resource_id", "resource_name")):
        resource = {
            "type": event.get("resource"),
            "id": event.get("resource_id"),
            "name": event.get("resource_name"),
        }
        out.append({k: v for k, v in resource.items() if v is not None})
    for target in event.get("targets") or ():
        if isinstance(target, Mapping):
            keys = ("type", "id", "name", "metadata")
            out.append({k: target[k] for k in keys if target.get(k) is not None})
    return out


def action_object(action: str) -> str:
    """The thing an action is about: ``admin.log_stream.created`` -> ``log_stream``."""
    parts = action.split(".")
    return parts[-2] if len(parts) > 1 else parts[0]


# ---- nested documents -------------------------------------------------------------------------


def put(doc: dict[str, Any], path: Sequence[str], value: Any) -> None:
    """``doc[path[0]][path[1]]... = value``, making the objects on the way."""
    for key in path[:-1]:
        doc = doc.setdefault(key, {})
    doc[path[-1]] = value


def get(doc: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = doc
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


# ---- per-stream mapping rules -----------------------------------------------------------------


def check_rules(
    value: object, check_item: Callable[[Mapping[str, Any]], Problems], keys: Sequence[str]
) -> tuple[list[dict[str, Any]], Problems]:
    """A list of at most ``MAX_RULES`` objects ``{"pattern", ...}``; every problem by its path."""
    if not isinstance(value, list) or len(value) > MAX_RULES:
        return [], [("", f"must be a list of at most {MAX_RULES} rules")]
    problems: Problems = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            problems.append((f"[{i}]", "must be an object"))
            continue
        problems.extend(
            (f"[{i}].{k}", f"{k} is not a setting of a rule ({', '.join(keys)})")
            for k in item
            if k not in keys
        )
        problem = check_pattern(item.get("pattern"))
        if problem is not None:
            problems.append((f"[{i}].pattern", f"pattern {problem}"))
        problems.extend((f"[{i}]{path}", message) for path, message in check_item(item))
    return ([dict(item) for item in value] if not problems else []), problems


def first_rule(rules: Sequence[Mapping[str, Any]], action: str) -> Mapping[str, Any] | None:
    """The first rule whose pattern matches ``action``, as alert rules match."""
    return next((r for r in rules if compile_pattern(str(r["pattern"]))(action)), None)
