"""CORS for browser clients: preflights answered at the edge, allowed origins echoed on answers.

Off by default (no origin is allowed until ``server.cors.allow_origins`` lists one). A preflight
(``OPTIONS`` with ``Access-Control-Request-Method``) is answered here, before auth, quota or
admission see anything: it carries no credentials by design, and a preflight refused for load
would break the real request that follows. Only the response headers change for an allowed
origin's real requests; a request from an origin not allowed is served as any other request,
without CORS headers, so the browser (not the gateway) withholds the answer, as the standard says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seawall.config.schema import CorsSettings

__all__ = ["Cors"]


class Cors:
    __slots__ = ("_any_header", "_any_origin", "_credentials", "_expose", "_headers", "_max_age", "_methods",
                 "_origins")

    def __init__(self, settings: CorsSettings) -> None:
        self._origins = frozenset(settings.allow_origins)
        self._any_origin = "*" in self._origins
        self._methods = ", ".join(m.upper() for m in settings.allow_methods).encode()
        self._any_header = "*" in settings.allow_headers
        self._headers = ", ".join(settings.allow_headers).encode()
        self._expose = ", ".join(settings.expose_headers).encode()
        self._credentials = settings.allow_credentials
        self._max_age = str(settings.max_age_s).encode()

    @classmethod
    def from_settings(cls, settings: CorsSettings) -> Cors | None:
        return cls(settings) if settings.allow_origins else None

    def allows(self, origin: str) -> bool:
        return self._any_origin or origin in self._origins

    def _origin_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        # With credentials the origin must be echoed, never '*'; echoing always keeps caches honest.
        headers = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"origin")]
        if self._credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers

    def response_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        """Headers for an allowed origin's real request ([] for any other)."""
        if not self.allows(origin):
            return []
        return [*self._origin_headers(origin), (b"access-control-expose-headers", self._expose)]

    def preflight_headers(self, origin: str, requested_headers: str) -> list[tuple[bytes, bytes]]:
        """What a preflight from ``origin`` adds to :meth:`response_headers` ([] when it is not
        allowed: the browser then refuses the real request)."""
        if not self.allows(origin):
            return []
        allow_headers = requested_headers.encode("latin-1") if self._any_header else self._headers
        return [(b"access-control-allow-methods", self._methods), (b"access-control-allow-headers", allow_headers),
                (b"access-control-max-age", self._max_age)]
