"""MockStats bookkeeping."""

from __future__ import annotations

from seawall.mock.stats import MockStats


def test_enter_tracks_the_high_water_mark() -> None:
    stats = MockStats()
    stats.enter()
    stats.enter()
    stats.in_flight -= 1
    stats.enter()
    assert (stats.in_flight, stats.max_in_flight_seen) == (2, 2)


def test_reset_zeroes_counters_but_keeps_requests_in_flight() -> None:
    stats = MockStats(served=5, cancelled=2, rejected_429=1, by_path={"/v1/models": 3})
    stats.enter()
    stats.enter()
    stats.reset()
    assert stats.to_dict() == {
        "in_flight": 2,
        "max_in_flight_seen": 2,
        "served": 0,
        "cancelled": 0,
        "rejected_429": 0,
        "overloaded_529": 0,
        "errors_500": 0,
        "resets": 0,
        "stalls": 0,
        "invalid_400": 0,
        "by_path": {},
    }
