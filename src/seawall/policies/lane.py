"""Lane: a listener (its own process) reserved for the criticalities that must survive a flood.

The API that stayed up in the March 2026 outage ran on separate capacity. A lane is seawall's
bulkhead: a process with its own port, event loop and CPU time that serves only keys at or above
``min_criticality``. A flood of consumer traffic can saturate the public listener's process (the
first thing a flood exhausts is the gateway's own CPU) without delaying a single request on the
critical lane. This policy sits right after auth and turns away keys that belong elsewhere.
"""

from __future__ import annotations

from seawall.core.compose import Handler
from seawall.core.errors import PermissionDenied
from seawall.core.types import Criticality, Request, Response

__all__ = ["LanePolicy"]


class LanePolicy:
    def __init__(self, name: str, min_criticality: Criticality) -> None:
        self.name = name
        self.min_criticality = min_criticality

    async def __call__(self, request: Request, next_handler: Handler) -> Response:
        if request.principal.criticality < self.min_criticality:
            raise PermissionDenied(
                f"The '{self.name}' lane serves {self.min_criticality.label} traffic and above; "
                "use the public endpoint.", code="wrong_lane", reason="wrong_lane", should_retry=False)
        return await next_handler(request)
