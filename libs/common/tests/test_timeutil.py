"""Identifiers and timestamps."""

from __future__ import annotations

import uuid

from libs.common.timeutil import format_epoch_us, normalize_rfc3339, uuid7_batch


def test_uuid7_batch_is_valid_ordered_and_unique() -> None:
    ids = uuid7_batch(4096, epoch_ms=1_795_813_501_208)
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert [str(u) for u in parsed] == ids  # canonical lowercase text
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(u.int >> 80 == 1_795_813_501_208 for u in parsed)


def test_normal_timestamps_pass_through_and_others_are_normalised() -> None:
    t = format_epoch_us(1_795_813_501_208_123)
    assert t == "2026-11-27T21:05:01.208123Z"
    assert normalize_rfc3339(t) == t
    assert normalize_rfc3339("2026-11-27T22:05:01.208123+01:00") == t
