"""Audited reads: reads of the audit log, summarised into ``admin.read.*`` events.

Every read route notes what it served (who, which kind of read, which
filter, how many rows) with :meth:`ReadAudit.note`, which only touches
memory. Requests with the same workspace, reader, kind and filter (paging
parameters left out, so paging through a result is one group) are counted
in one group; a group is written as ONE admin event when it is
``window_s`` old, and every group is written when the gateway stops. The
rule, what is recorded and what is not guaranteed: docs/audited-reads.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import Counter

from libs.common.logs import Logger
from libs.common.timeutil import now_ts
from services.ingest.adminlog import Actor, AdminEventRefused

#: Paging is not a filter: the pages of one result are one read.
PAGING = frozenset({"cursor", "limit"})
#: A filter is shown as at most this many parameters of at most this many characters.
MAX_FILTERS = 32
MAX_VALUE = 256
#: Ids of the items read (events, exports, packs) listed per group.
MAX_ITEMS = 100
RESOURCE = "audit_log"

GroupKey = tuple[str, str, str, tuple[tuple[str, str], ...]]


class Recorder(Protocol):
    """What records an admin event (services/ingest/adminlog.py)."""

    async def record(
        self,
        workspace_id: str,
        actor: Actor,
        action: str,
        resource: str,
        resource_id: str,
        *,
        before: Any = None,
        after: Any = None,
    ) -> str: ...


def normalise(params: Mapping[str, str]) -> dict[str, str]:
    """The filter of a read: its parameters without paging, bounded in size."""
    kept = sorted((k, v) for k, v in params.items() if k not in PAGING)[:MAX_FILTERS]
    return {k[:MAX_VALUE]: v if len(v) <= MAX_VALUE else v[: MAX_VALUE - 1] + "…" for k, v in kept}


@dataclass(slots=True)
class Group:
    """The reads of one reader, of one kind, with one filter, in one window."""

    workspace_id: str
    actor: Actor
    kind: str
    filters: dict[str, str]
    started: float  # the clock when the first read was noted
    first_at: str
    last_at: str
    requests: int = 0
    rows: int = 0
    items: list[str] = field(default_factory=list)
    items_left_out: int = 0

    def add(self, rows: int, item: str | None, at: str) -> None:
        self.requests += 1
        self.rows += rows
        self.last_at = at
        if item is not None:
            self._keep(item)

    def _keep(self, item: str) -> None:
        if item in self.items:
            return
        if len(self.items) < MAX_ITEMS:
            self.items.append(item)
        else:
            self.items_left_out += 1

    def absorb(self, later: Group) -> None:
        """Take in the reads a newer group of the same key noted meanwhile."""
        self.requests += later.requests
        self.rows += later.rows
        self.last_at = later.last_at
        for item in later.items:
            self._keep(item)
        self.items_left_out += later.items_left_out

    def summary(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "requests": self.requests,
            "rows": self.rows,
            "filters": self.filters,
            "first_at": self.first_at,
            "last_at": self.last_at,
        }
        if self.items:
            doc["items"] = self.items
        if self.items_left_out:
            doc["items_left_out"] = self.items_left_out
        return doc


class ReadAudit:
    """Notes reads in memory and writes one admin event per group.

    MUST NOT block or fail a read: :meth:`note` never awaits and never
    raises for a full table (the read is counted as dropped instead).
    MUST NOT lose a group to back-pressure: a group Kafka did not take is
    kept and retried on the next tick; memory is bounded by ``max_groups``
    (groups being written count against it).
    """

    def __init__(
        self,
        recorder: Recorder,
        *,
        window_s: float,
        max_groups: int,
        default_on: bool,
        dropped: Counter,
        log: Logger,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], str] = now_ts,
    ) -> None:
        self.recorder = recorder
        self.window_s = window_s
        self.max_groups = max_groups
        self.default_on = default_on
        self.dropped = dropped
        self.log = log
        self.clock = clock
        self.wall = wall
        self._groups: dict[GroupKey, Group] = {}
        self._writing = 0
        self._full = 0  # reads dropped for a full table since the last tick
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._groups)

    def reader(self, workspace_id: str, actor: Actor, audit_reads: bool | None) -> Reader:
        """How one request notes its read; ``audit_reads`` None: the default."""
        on = self.default_on if audit_reads is None else audit_reads
        return Reader(self if on else None, workspace_id, actor)

    def note(
        self,
        workspace_id: str,
        actor: Actor,
        kind: str,
        params: Mapping[str, str],
        rows: int,
        item: str | None = None,
    ) -> None:
        filters = normalise(params)
        key: GroupKey = (workspace_id, actor.id, kind, tuple(filters.items()))
        group = self._groups.get(key)
        at = self.wall()
        if group is None:
            if len(self._groups) + self._writing >= self.max_groups:
                self.dropped.labels("full").inc()
                self._full += 1
                return
            group = Group(workspace_id, actor, kind, filters, self.clock(), at, at)
            self._groups[key] = group
        group.add(rows, item, at)

    async def flush(self, *, everything: bool = False) -> int:
        """Write the groups that are a window old (all of them with ``everything``).

        Returns how many were written. Stops at the first one Kafka does not
        take and keeps it and the rest for the next try.
        """
        if self._full:
            self.log.warning("read_audit.dropped", reason="full", requests=self._full)
            self._full = 0
        now = self.clock()
        keys = [
            k for k, g in self._groups.items() if everything or now - g.started >= self.window_s
        ]
        taken = [(k, self._groups.pop(k)) for k in keys]
        self._writing += len(taken)
        done = written = 0  # tried (written or refused), written
        try:
            for key, group in taken:
                try:
                    await self.recorder.record(
                        group.workspace_id,
                        group.actor,
                        f"read.{group.kind}",
                        RESOURCE,
                        group.workspace_id,
                        after=group.summary(),
                    )
                    written += 1
                except AdminEventRefused as exc:
                    self.dropped.labels("refused").inc(group.requests)
                    self.log.error(
                        "read_audit.refused", workspace_id=key[0], kind=key[2], error=str(exc)
                    )
                except Exception as exc:
                    self.log.warning(
                        "read_audit.deferred", groups=len(taken) - done, error=repr(exc)
                    )
                    break
                done += 1
        finally:
            self._writing -= len(taken)
            for key, group in taken[done:]:
                later = self._groups.get(key)
                if later is not None:
                    group.absorb(later)
                self._groups[key] = group
        return written

    async def run(self) -> None:
        """Flush due groups a few times per window until cancelled."""
        tick = min(self.window_s / 4, 5.0)
        while True:
            await asyncio.sleep(tick)
            try:
                await self.flush()
            except Exception as exc:  # the loop must outlive any one failure
                self.log.error("read_audit.flush_failed", error=repr(exc))

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="read-audit")

    async def close(self, timeout_s: float = 10.0) -> None:
        """Stop the loop and write every group; what cannot be written is counted and logged."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.flush(everything=True)
        if self._groups:
            lost = sum(g.requests for g in self._groups.values())
            self.dropped.labels("shutdown").inc(lost)
            self.log.error("read_audit.lost", groups=len(self._groups), requests=lost)


@dataclass(frozen=True, slots=True)
class Reader:
    """One request's way to note its read; a no-op where reads are not audited."""

    audit: ReadAudit | None
    workspace_id: str
    actor: Actor

    @property
    def on(self) -> bool:
        """Whether this workspace's reads are audited (worth a look-up for ``rows``)."""
        return self.audit is not None

    def __call__(
        self, kind: str, params: Mapping[str, str], rows: int, item: str | None = None
    ) -> None:
        if self.audit is not None:
            self.audit.note(self.workspace_id, self.actor, kind, params, rows, item)
