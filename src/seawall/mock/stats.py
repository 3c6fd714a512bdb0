"""Counters the mock keeps so tests and benchmarks can see what the upstream experienced.

Single event loop, so plain integers are enough; ``GET /mock/stats`` renders :meth:`to_dict`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["MockStats"]


@dataclass(slots=True)
class MockStats:
    """Request outcomes since start or the last ``POST /mock/reset-stats``.

    ``in_flight`` counts chat, messages and embeddings requests between admission and completion (the
    ones ``max_in_flight`` limits); ``cancelled`` counts those whose client went away first;
    ``served`` counts successful ``/v1/*`` answers; ``rejected_429`` and ``overloaded_529`` count
    capacity refusals (real or injected); ``by_path`` counts every request received, by URL path.
    """

    in_flight: int = 0
    max_in_flight_seen: int = 0
    served: int = 0
    cancelled: int = 0
    rejected_429: int = 0
    overloaded_529: int = 0
    errors_500: int = 0
    resets: int = 0
    stalls: int = 0
    invalid_400: int = 0
    by_path: dict[str, int] = field(default_factory=dict)

    def enter(self) -> None:
        self.in_flight += 1
        if self.in_flight > self.max_in_flight_seen:
            self.max_in_flight_seen = self.in_flight

    def reset(self) -> None:
        """Zero the counters; requests still in flight stay counted so ``in_flight`` stays true."""
        in_flight = self.in_flight
        fresh = MockStats(in_flight=in_flight, max_in_flight_seen=in_flight)
        for f in fields(self):
            setattr(self, f.name, getattr(fresh, f.name))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
