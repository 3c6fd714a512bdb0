"""What happened to one upstream attempt, decided once for retries, breakers and stats alike.

Finagle's lesson: if the retry filter, the circuit breaker and the metrics each decide for
themselves what a "failure" is, they disagree, and the disagreement is where outages hide (a
breaker that opens on upstream 429s turns a rate limit into a full outage). So every attempt is
classified once, by :func:`classify`, into an :class:`Outcome`, and every consumer reads that.

This module also holds :class:`SlidingCounts`, the bucketed sliding window that the breaker (attempts,
failures) and the retry budget (requests, retries) both count in.
"""

from __future__ import annotations

import enum

__all__ = ["ERROR_KINDS", "Outcome", "classify"]

#: Error kinds the upstream edge reports when no (complete) response arrived. Any other non-None
#: kind is treated like these (a failure); only ``"cancelled"`` is special.
ERROR_KINDS = frozenset({"connect", "timeout", "read", "protocol", "cancelled", "deadline"})


class Outcome(enum.Enum):
    """The class of one attempt's result.

    - ``SUCCESS``: 2xx, completed. Evidence the deployment works.
    - ``FAILURE``: the deployment is broken: no connection, timeout, broken stream, 5xx.
      Counts against the breaker; worth retrying elsewhere.
    - ``OVERLOADED``: the deployment is alive but rate-limiting (429, Anthropic's 529). Never counts
      against the breaker (its headroom signal and the adaptive limit handle it); worth retrying
      elsewhere.
    - ``CLIENT_ERROR``: the request itself is wrong (400, 404, 413, 422...). Neither a failure nor a
      success; retrying cannot help.
    - ``CANCELLED``: the caller gave up (client disconnect, hedge lost). Tells nothing about the
      deployment; never retried.
    """

    SUCCESS = "success"
    FAILURE = "failure"
    OVERLOADED = "overloaded"
    CLIENT_ERROR = "client_error"
    CANCELLED = "cancelled"

    @property
    def retryable(self) -> bool:
        """Whether another attempt (on another deployment, within the retry budget) may help."""
        return self is Outcome.FAILURE or self is Outcome.OVERLOADED


def classify(status: int | None, error_kind: str | None) -> Outcome:
    """Classify one upstream attempt from its HTTP status and/or the edge's error kind.

    ``status`` is the upstream HTTP status if a response head arrived, else ``None``.
    ``error_kind`` is set by the upstream edge when the exchange did not complete (see
    :data:`ERROR_KINDS`); it wins over ``status`` because a stream that breaks after a 200 head is
    a failure, not a success.

    Rules, first match wins:

    1. ``error_kind == "cancelled"`` -> ``CANCELLED``; ``"deadline"`` (the request's own deadline,
       the client's budget, ended the attempt before the deployment's timeouts did) -> ``CANCELLED``
       too: the deployment was slow for this client, not broken, and a flood of impatient clients
       must not open the breaker that patient ones still need.
    2. any other ``error_kind`` (connect, timeout, read, protocol, ...) -> ``FAILURE``.
    3. no status and no error -> ``FAILURE`` (nothing usable came back).
    4. 499 (client closed request, as proxies report it) -> ``CANCELLED``; 2xx -> ``SUCCESS``.
    5. 429, 529 -> ``OVERLOADED``.
    6. 401, 403 -> ``FAILURE``: the client was already authenticated by the gateway, so an
       upstream auth refusal means *this deployment's* credentials are wrong; failing over to a
       deployment with working credentials is the right response.
    7. 408 (upstream request timeout) -> ``FAILURE``, like a timeout seen by the edge.
    8. other 4xx -> ``CLIENT_ERROR``.
    9. 5xx, and anything else (1xx, 3xx: a misbehaving upstream) -> ``FAILURE``.
    """
    if error_kind is not None:
        return Outcome.CANCELLED if error_kind == "cancelled" or error_kind == "deadline" else Outcome.FAILURE
    if status is None:
        return Outcome.FAILURE
    if status == 499:
        return Outcome.CANCELLED
    if 200 <= status < 300:
        return Outcome.SUCCESS
    if status == 429 or status == 529:
        return Outcome.OVERLOADED
    if 400 <= status < 500 and status not in (401, 403, 408):
        return Outcome.CLIENT_ERROR
    return Outcome.FAILURE
