"""repeated_action: the same actor repeats the same action `threshold` times."""

from __future__ import annotations

from services.alerter.rules import RULE_TYPES
from services.alerter.tests.test_rules import errors_of, event, fired, replay

RULE = RULE_TYPES["repeated_action"]
COND = {"threshold": 3, "window_seconds": 60}


def test_defaults() -> None:
    assert RULE.validate({"threshold": 5}) == {
        "threshold": 5,
        "window_seconds": 300,
        "action_pattern": None,
    }


def test_every_bad_field_is_named() -> None:
    assert errors_of(
        "repeated_action", {"threshold": 1, "window_seconds": 0, "action_pattern": ""}
    ) == [
        ("conditions.threshold", "must be an integer between 2 and 1000000"),
        ("conditions.window_seconds", "must be an integer between 1 and 604800"),
        ("conditions.action_pattern", "must be a non-empty string of at most 200 characters"),
    ]


def test_fires_at_threshold() -> None:
    events = [event(t, action="user.login_failed") for t in (0, 20, 40, 50)]
    reasons, _ = replay("repeated_action", COND, events)
    assert reasons[:3] == [
        None,
        None,
        "actor u_42 performed user.login_failed 3 times in 60 s (threshold 3)",
    ]
    assert (
        reasons[3]
        == "actor u_42 performed user.login_failed at least 4 times in 60 s (threshold 3)"
    )


def test_window_edge() -> None:
    before = [event(0), event(30)]
    assert fired(replay("repeated_action", COND, [*before, event(60)])[0]) == []
    assert fired(replay("repeated_action", COND, [*before, event(59.999)])[0]) == [2]


def test_each_action_counts_separately() -> None:
    events = [event(i, action=a) for i, a in enumerate(["a.x", "a.y", "a.x", "a.y", "a.x"])]
    reasons, states = replay("repeated_action", COND, events)
    assert fired(reasons) == [4]
    assert set(states) == {"u_42\x1fa.x", "u_42\x1fa.y"}


def test_each_actor_counts_separately() -> None:
    events = [event(i, actor="ab"[i % 2]) for i in range(4)]
    assert fired(replay("repeated_action", COND, events)[0]) == []


def test_action_pattern_filters() -> None:
    conds = RULE.validate({"threshold": 2, "action_pattern": "user.login_*"})
    assert RULE.key(conds, event(action="user.login_failed")) == "u_42\x1fuser.login_failed"
    assert RULE.key(conds, event(action="user.logout")) is None
    assert RULE.key(RULE.validate({"threshold": 2}), event(action="user.logout")) is not None


def test_state_stays_bounded() -> None:
    reasons, states = replay("repeated_action", {"threshold": 4}, [event(i) for i in range(500)])
    assert len(states["u_42\x1fdocument.delete"]["times"]) == 3
    assert fired(reasons) == list(range(3, 500))


def test_counts_are_exact_again_once_dropped_times_expire() -> None:
    events = [event(i) for i in range(4)] + [event(100 + i) for i in range(3)]
    reasons, _ = replay("repeated_action", COND, events)
    assert reasons[6] == "actor u_42 performed document.delete 3 times in 60 s (threshold 3)"
