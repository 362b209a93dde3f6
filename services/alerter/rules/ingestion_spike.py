"""``ingestion_spike``: a workspace suddenly receives far more events than usual.

Time is cut into tumbling buckets of ``window_seconds`` aligned to the epoch
(bucket = floor(received_at / window)). The baseline is the mean count of the
``baseline_windows`` buckets before the current one; a bucket with no events,
or from before the workspace existed, counts 0. The rule fires for the event
that makes the current count reach ``min_events`` AND exceed
``multiplier`` × baseline, and at most once per bucket.

A brand-new workspace has a baseline of 0, so its first bucket that reaches
``min_events`` fires: ``min_events`` is the floor that keeps quiet workspaces
quiet, and what a new workspace must reach before it can alert.

All events of the workspace share one key, ``""``. State:
``{"window_seconds": w, "bucket": current bucket, "counts": [oldest, ..., current],
"fired": bool}`` with at most ``baseline_windows + 1`` counts. An event that
arrives late, for a bucket before the current one, is counted in the current
one. A state kept for another ``window_seconds`` is discarded, since its
buckets mean different times.
"""

from __future__ import annotations

from typing import Any

from services.alerter.rules.base import (
    AlertEvent,
    Field,
    Verdict,
    check_fields,
    epoch_ms,
    integer,
    number,
    plural,
)

FIELDS = {
    "window_seconds": Field(integer(10, 86_400), default=300),
    "multiplier": Field(number(1, 1000), default=5),
    "baseline_windows": Field(integer(1, 1000), default=12),
    "min_events": Field(integer(1, 1_000_000_000), default=100),
}


class IngestionSpike:
    name = "ingestion_spike"

    def validate(self, conditions: object) -> dict[str, Any]:
        return check_fields(conditions, FIELDS)

    def key(self, conditions: dict[str, Any], event: AlertEvent) -> str | None:
        return ""

    def evaluate(
        self, conditions: dict[str, Any], state: dict[str, Any] | None, event: AlertEvent
    ) -> Verdict:
        window = int(conditions["window_seconds"])
        history = int(conditions["baseline_windows"])
        bucket = epoch_ms(event.received_at) // (window * 1000)

        if state is None or state.get("window_seconds") != window:
            state = {"bucket": bucket, "counts": [0], "fired": False}
        counts: list[int] = list(state["counts"])
        fired = bool(state["fired"])
        current = int(state["bucket"])
        if bucket > current:
            # Bounded however long the silence was: older buckets are dropped below.
            counts += [0] * min(bucket - current, history + 1)
            current, fired = bucket, False
        counts = counts[-(history + 1) :]
        counts[-1] += 1

        count = counts[-1]
        baseline = sum(counts[:-1]) / history
        reason: str | None = None
        if (
            not fired
            and count >= int(conditions["min_events"])
            and count > conditions["multiplier"] * baseline
        ):
            fired = True
            per = f"per {window} s (last {plural(history, 'window')})"
            ratio = (
                f"{count / baseline:.1f}× its baseline of" if baseline else "against a baseline of"
            )
            reason = (
                f"workspace received {count} events in {window} s, {ratio} {baseline:.1f} {per}"
            )
        new = {"window_seconds": window, "bucket": current, "counts": counts, "fired": fired}
        return Verdict(state=new, reason=reason)
