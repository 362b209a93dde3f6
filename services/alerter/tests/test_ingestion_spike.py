"""ingestion_spike: a bucket far above the mean of the buckets before it."""

from __future__ import annotations

from services.alerter.rules import RULE_TYPES
from services.alerter.rules.base import AlertEvent
from services.alerter.tests.test_rules import errors_of, event, fired, replay

RULE = RULE_TYPES["ingestion_spike"]
# T0 is on a whole hour, so bucket n of a 60 s window starts at 60 n seconds.
COND = {"window_seconds": 60, "baseline_windows": 3, "multiplier": 2, "min_events": 5}


def bucket(n: int, count: int) -> list[AlertEvent]:
    return [event(n * 60 + i * 0.01) for i in range(count)]


def test_defaults() -> None:
    out = RULE.validate({})
    assert out == {
        "window_seconds": 300,
        "multiplier": 5.0,
        "baseline_windows": 12,
        "min_events": 100,
    }
    assert isinstance(out["multiplier"], float)


def test_every_bad_field_is_named() -> None:
    assert errors_of(
        "ingestion_spike",
        {"window_seconds": 9, "multiplier": 1, "baseline_windows": 0, "min_events": 0},
    ) == [
        ("conditions.window_seconds", "must be an integer between 10 and 86400"),
        ("conditions.multiplier", "must be a number greater than 1 and at most 1000"),
        ("conditions.baseline_windows", "must be an integer between 1 and 1000"),
        ("conditions.min_events", "must be an integer between 1 and 1000000000"),
    ]


def test_multiplier_range() -> None:
    for bad in (1.0, 1000.5, True, "5", float("nan"), float("inf")):
        assert [f for f, _ in errors_of("ingestion_spike", {"multiplier": bad})] == [
            "conditions.multiplier"
        ]
    assert RULE.validate({"multiplier": 1.5})["multiplier"] == 1.5
    assert RULE.validate({"multiplier": 1000})["multiplier"] == 1000.0


def test_every_event_shares_the_workspace_key() -> None:
    assert RULE.key(RULE.validate({}), event(actor="anyone", action="x.y")) == ""


def test_fires_once_per_bucket_above_the_baseline() -> None:
    events = bucket(0, 2) + bucket(1, 2) + bucket(2, 2) + bucket(3, 8)
    reasons, _ = replay("ingestion_spike", COND, events)
    # Baseline 2, multiplier 2: the 5th event is both >= min_events and > 4.
    assert fired(reasons) == [6 + 4]
    assert reasons[10] == (
        "workspace received 5 events in 60 s, 2.5× its baseline of 2.0 per 60 s (last 3 windows)"
    )


def test_count_must_exceed_multiplier_times_baseline() -> None:
    cond = COND | {"min_events": 1}
    events = bucket(0, 3) + bucket(1, 3) + bucket(2, 3) + bucket(3, 7)
    reasons, _ = replay("ingestion_spike", cond, events)
    # Equal to 2 × 3 after the 6th event of bucket 3: fires only on the 7th.
    assert [i for i in fired(reasons) if i >= 9] == [9 + 6]


def test_min_events_is_reached_not_exceeded() -> None:
    events = bucket(5, 5)
    assert fired(replay("ingestion_spike", COND, events)[0]) == [4]
    assert fired(replay("ingestion_spike", COND | {"min_events": 6}, events)[0]) == []


def test_a_new_workspace_fires_when_its_first_bucket_reaches_min_events() -> None:
    reasons, _ = replay("ingestion_spike", COND, bucket(0, 6))
    assert fired(reasons) == [4]
    assert reasons[4] == (
        "workspace received 5 events in 60 s, against a baseline of 0.0 per 60 s (last 3 windows)"
    )


def test_fires_again_in_a_later_bucket() -> None:
    events = bucket(0, 5) + bucket(1, 20) + bucket(2, 5)
    reasons, _ = replay("ingestion_spike", COND | {"baseline_windows": 1}, events)
    # Bucket 1: baseline 5, fires at 11; bucket 2: baseline 20, 5 is no spike.
    assert fired(reasons) == [4, 5 + 10]
    assert reasons[15] is not None and "(last 1 window)" in reasons[15]


def test_buckets_align_to_the_epoch() -> None:
    edge = [event(59.999)] * 4 + [event(60)]
    assert fired(replay("ingestion_spike", COND, edge)[0]) == []
    inside = [event(59.999)] * 4 + [event(59.9995)]
    assert fired(replay("ingestion_spike", COND, inside)[0]) == [4]


def test_missing_buckets_count_zero() -> None:
    cond = COND | {"min_events": 1}
    # Bucket 0 had 4, buckets 1 and 2 none: baseline 4/3, so 3 events are a spike.
    events = bucket(0, 4) + bucket(3, 3)
    assert fired(replay("ingestion_spike", cond, events)[0]) == [0, 4 + 2]


def test_state_stays_bounded_over_long_silences() -> None:
    events = bucket(0, 3) + bucket(10, 1) + bucket(10**7, 1)
    _, states = replay("ingestion_spike", COND, events)
    assert states[""]["counts"] == [0, 0, 0, 1]
    many = [e for n in range(50) for e in bucket(n, 2)]
    _, states = replay("ingestion_spike", COND, many)
    assert states[""]["counts"] == [2, 2, 2, 2]


def test_a_late_event_counts_in_the_current_bucket() -> None:
    events = [*bucket(1, 2), event(59)]
    _, states = replay("ingestion_spike", COND, events)
    assert states[""]["counts"] == [3]


def test_a_changed_window_starts_over() -> None:
    conds = RULE.validate(COND)
    state = RULE.evaluate(conds, None, event(0)).state
    wider = RULE.validate(COND | {"window_seconds": 300})
    verdict = RULE.evaluate(wider, state, event(1))
    assert verdict.state is not None
    assert verdict.state["counts"] == [1] and verdict.state["window_seconds"] == 300


def test_the_documented_example() -> None:
    cond = {"min_events": 540}
    events = [event(n * 300 + i * 0.1) for n in range(12) for i in range(90)]
    events += [event(12 * 300 + i * 0.1) for i in range(540)]
    reasons, _ = replay("ingestion_spike", cond, events)
    assert fired(reasons) == [len(events) - 1]
    assert reasons[-1] == (
        "workspace received 540 events in 300 s, 6.0× its baseline of 90.0 per 300 s"
        " (last 12 windows)"
    )
