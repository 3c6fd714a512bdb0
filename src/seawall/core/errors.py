"""The gateway's one error hierarchy.

Every failure that reaches a client is a :class:`GatewayError`: a status, a machine-readable
``code``, a human message, optionally the offending ``param``, and for overload a ``retry_after_s``
and a ``reason``. Edges render it in the client's own API format (see ``providers/``); library
exceptions are mapped to these at the edge that raised them, so nothing else leaks.
"""

from __future__ import annotations

__all__ = [
    "MAX_RETRY_AFTER_S",
    "AuthenticationFailed",
    "GatewayError",
    "InvalidRequest",
    "ModelNotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "UpstreamError",
    "UpstreamTimeout",
    "advertised_retry_after_s",
    "retry_after_ms",
]

MAX_RETRY_AFTER_S = 60.0  # the official SDKs ignore longer hints and fall back to their own backoff


def advertised_retry_after_s(status: int, retry_after_s: float | None) -> float | None:
    """The wait a client is told (``retry-after``/``retry-after-ms``), in [0.001, 60] s; 1 s for a
    429 or 503 that gave none (every "try later" says when); None when nothing is said."""
    if retry_after_s is None:
        if status != 429 and status != 503:
            return None
        return 1.0
    if retry_after_s < 0.001:
        return 0.001
    return retry_after_s if retry_after_s < MAX_RETRY_AFTER_S else MAX_RETRY_AFTER_S


def retry_after_ms(wait_s: float) -> int:
    """``retry-after-ms`` for an advertised wait: whole milliseconds, at least 1."""
    ms = round(wait_s * 1000)
    return ms if ms > 1 else 1


class GatewayError(Exception):
    status = 500
    type = "server_error"
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
        reason: str | None = None,
        should_retry: bool | None = None,
        status: int | None = None,
        upstream_status: int | None = None,
        error_kind: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.retry_after_s = retry_after_s
        self.reason = reason or self.code
        self.should_retry = should_retry
        # For failures of an upstream attempt, what the response classifier reads
        # (seawall.algorithms.outcome.classify): the upstream's HTTP status if a response head
        # arrived, and the edge's error kind (connect, timeout, read, protocol) if it did not
        # complete.
        self.upstream_status = upstream_status
        self.error_kind = error_kind
        # Extra response headers any layer may attach (the quota's x-ratelimit-*); rendered by the
        # server edge after the standard ones.
        self.headers = headers


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "model_not_allowed"


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(GatewayError):
    """429: the caller's own quota or failure throttle; retrying later helps."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class Overloaded(GatewayError):
    """503: the service is short of capacity; the reason header says which guard said no."""

    status = 503
    type = "service_unavailable"
    code = "overloaded"


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    code = "bad_gateway"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"
