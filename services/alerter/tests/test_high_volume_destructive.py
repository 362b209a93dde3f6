"""high_volume_destructive: more than `threshold` destructive actions in a window."""

from __future__ import annotations

from services.alerter.rules import RULE_TYPES
from services.alerter.rules.base import epoch_ms
from services.alerter.tests.test_rules import T0, errors_of, event, fired, replay

RULE = RULE_TYPES["high_volume_destructive"]
COND = {"threshold": 3, "window_seconds": 60}


def test_defaults() -> None:
    assert RULE.validate({"threshold": 10}) == {
        "threshold": 10,
        "window_seconds": 300,
        "action_patterns": ["*.delete", "*.destroy", "*.remove", "*.purge", "*.revoke"],
    }


def test_every_bad_field_is_named() -> None:
    assert errors_of(
        "high_volume_destructive",
        {"window_seconds": 604_801, "action_patterns": ["", "ok.*", "a b", 5]},
    ) == [
        ("conditions.threshold", "is required"),
        ("conditions.window_seconds", "must be an integer between 1 and 604800"),
        ("conditions.action_patterns[0]", "must be a non-empty string of at most 200 characters"),
        (
            "conditions.action_patterns[2]",
            "must be an action pattern of letters, digits, '.', '_', '-' and '*'"
            " (any run of characters), e.g. *.delete",
        ),
        ("conditions.action_patterns[3]", "must be a non-empty string of at most 200 characters"),
    ]


def test_pattern_list_shape() -> None:
    for bad in ([], "*.delete", ["x"] * 51):
        [(field, _)] = errors_of(
            "high_volume_destructive", {"threshold": 1, "action_patterns": bad}
        )
        assert field == "conditions.action_patterns"
    for bad_threshold in (0, 1_000_001, 2.5, "3"):
        [(field, _)] = errors_of("high_volume_destructive", {"threshold": bad_threshold})
        assert field == "conditions.threshold"


def test_fires_above_threshold_not_at_it() -> None:
    reasons, _ = replay("high_volume_destructive", COND, [event(t) for t in (0, 10, 20, 30, 40)])
    assert reasons[:3] == [None, None, None]
    assert reasons[3] == (
        "actor u_42 performed 4 destructive actions in 60 s (threshold 3); latest: document.delete"
    )
    # No cooldown here: it reports every event while the condition holds.
    assert reasons[4] is not None and "at least 5 destructive actions" in reasons[4]


def test_threshold_one() -> None:
    reasons, _ = replay("high_volume_destructive", {"threshold": 1}, [event(0), event(1)])
    assert fired(reasons) == [1]


def test_window_edge() -> None:
    before = [event(0), event(10), event(20)]
    # The event at 0 is exactly 60 s old at 60: it has left the window.
    assert fired(replay("high_volume_destructive", COND, [*before, event(60)])[0]) == []
    assert fired(replay("high_volume_destructive", COND, [*before, event(59.999)])[0]) == [3]


def test_only_matching_actions_count() -> None:
    conds = RULE.validate({"threshold": 1})
    for action in ("document.delete", "api_key.revoke", "bucket.purge", "team.member.remove"):
        assert RULE.key(conds, event(action=action)) == "u_42"
    for action in ("document.deleted", "document.read", "delete"):
        assert RULE.key(conds, event(action=action)) is None
    custom = RULE.validate({"threshold": 1, "action_patterns": ["billing.*"]})
    assert RULE.key(custom, event(action="billing.export")) == "u_42"
    assert RULE.key(custom, event(action="document.delete")) is None


def test_mixed_destructive_actions_add_up() -> None:
    actions = ["document.delete", "document.read", "api_key.revoke", "user.remove", "bucket.purge"]
    reasons, _ = replay(
        "high_volume_destructive", COND, [event(i, action=a) for i, a in enumerate(actions)]
    )
    assert fired(reasons) == [4]
    assert reasons[4] is not None and reasons[4].endswith("latest: bucket.purge")


def test_actors_are_separate() -> None:
    events = [event(i, actor="ab"[i % 2]) for i in range(6)]
    assert fired(replay("high_volume_destructive", COND, events)[0]) == []


def test_state_stays_bounded() -> None:
    events = [event(i * 0.5) for i in range(2000)]
    reasons, states = replay(
        "high_volume_destructive", {"threshold": 5, "window_seconds": 600}, events
    )
    assert len(states["u_42"]["times"]) == 5
    assert fired(reasons) == list(range(5, 2000))


def test_quiet_again_after_the_window() -> None:
    burst = [event(i) for i in range(5)]
    reasons, states = replay("high_volume_destructive", COND, [*burst, event(200)])
    assert fired(reasons) == [3, 4]
    assert states["u_42"] == {"times": [epoch_ms(T0) + 200_000]}
