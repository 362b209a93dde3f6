"""new_country: a country not seen for the actor within the lookback."""

from __future__ import annotations

from services.alerter.rules import RULE_TYPES
from services.alerter.rules.new_country import MAX_COUNTRIES
from services.alerter.tests.test_rules import errors_of, event, fired, replay

DAY = 86_400.0
RULE = RULE_TYPES["new_country"]


def test_defaults() -> None:
    assert RULE.validate({}) == {"lookback_days": 90, "alert_on_first_seen": False}


def test_every_bad_field_is_named() -> None:
    assert errors_of(
        "new_country", {"lookback_days": True, "alert_on_first_seen": 1, "city": "x"}
    ) == [
        ("conditions.lookback_days", "must be an integer between 1 and 3650"),
        ("conditions.alert_on_first_seen", "must be true or false"),
        ("conditions.city", "is not a known condition (lookback_days, alert_on_first_seen)"),
    ]


def test_lookback_range() -> None:
    for bad in (0, 3651, "90", 90.0):
        assert errors_of("new_country", {"lookback_days": bad})[0][0] == "conditions.lookback_days"
    assert RULE.validate({"lookback_days": 3650})["lookback_days"] == 3650


def test_first_event_sets_the_baseline_then_a_new_country_fires() -> None:
    reasons, states = replay(
        "new_country",
        {},
        [
            event(0, action="user.login", country="DE"),
            event(10, action="user.login", country="FR", city="Paris"),
            event(20, action="user.login", country="DE"),
            event(30, action="user.login", country="BR", city="São Paulo"),
            event(40, action="user.login", country="BR"),
        ],
    )
    assert reasons == [
        None,
        "actor u_42 performed user.login from FR (Paris); seen in the last 90 days: DE",
        None,
        "actor u_42 performed user.login from BR (São Paulo); seen in the last 90 days: DE, FR",
        None,
    ]
    assert sorted(states["u_42"]["countries"]) == ["BR", "DE", "FR"]


def test_alert_on_first_seen() -> None:
    reasons, _ = replay(
        "new_country",
        {"alert_on_first_seen": True, "lookback_days": 1},
        [event(0, action="user.login", country="JP"), event(1, action="user.login", country="JP")],
    )
    assert reasons == [
        "actor u_42 performed user.login from JP; no country seen in the last 1 day",
        None,
    ]


def test_events_without_a_country_are_ignored() -> None:
    no_country = event(5, country=None)
    assert RULE.key(RULE.validate({}), no_country) is None
    reasons, _ = replay(
        "new_country", {}, [event(0, country="DE"), no_country, event(9, country="DE")]
    )
    assert reasons == [None, None, None]


def test_actors_are_separate() -> None:
    reasons, states = replay(
        "new_country",
        {},
        [event(0, actor="a", country="DE"), event(1, actor="b", country="FR")],
    )
    assert reasons == [None, None]
    assert set(states) == {"a", "b"}


def test_lookback_edge() -> None:
    history = [event(0, country="DE"), event(DAY, country="FR")]
    # 1 ms short of 90 days DE is still recent; at exactly 90 days it has left.
    just_inside = replay("new_country", {}, [*history, event(90 * DAY - 0.001, country="DE")])
    at_edge, states = replay("new_country", {}, [*history, event(90 * DAY, country="DE")])
    assert fired(just_inside[0]) == [1]
    assert fired(at_edge) == [1, 2]
    assert at_edge[2] is not None and at_edge[2].endswith("seen in the last 90 days: FR")
    assert sorted(states["u_42"]["countries"]) == ["DE", "FR"]


def test_a_country_seen_again_stays_recent() -> None:
    # DE first seen on day 0 but seen again on day 60: still recent on day 100.
    events = [event(0, country="DE"), event(60 * DAY, country="DE"), event(100 * DAY, country="DE")]
    assert fired(replay("new_country", {}, events)[0]) == []


def test_an_actor_whose_history_expired_starts_over() -> None:
    reasons, states = replay(
        "new_country", {}, [event(0, country="DE"), event(91 * DAY, country="FR")]
    )
    assert reasons == [None, None]
    assert list(states["u_42"]["countries"]) == ["FR"]


def test_old_countries_are_pruned() -> None:
    events = [event(i * DAY, country=c) for i, c in enumerate(["DE", "FR", "IT", "ES", "PT"])]
    _, states = replay("new_country", {"lookback_days": 2}, events)
    assert sorted(states["u_42"]["countries"]) == ["ES", "PT"]


def test_state_is_capped() -> None:
    codes = [f"{a}{b}" for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for b in "ABCDEFGHIJKLMNOP"]
    events = [event(i, country=c) for i, c in enumerate(codes)]
    reasons, states = replay("new_country", {}, events)
    assert len(codes) > MAX_COUNTRIES
    assert len(states["u_42"]["countries"]) == MAX_COUNTRIES
    assert "ZP" in states["u_42"]["countries"] and "AA" not in states["u_42"]["countries"]
    assert fired(reasons) == list(range(1, len(codes)))
