"""Types, the policy protocol, typed errors and the outcome classifier."""

from seawall.core.compose import Handler, Policy, compose
from seawall.core.errors import GatewayError
from seawall.core.types import Criticality, Principal, Request, Response

__all__ = [
    "Criticality",
    "GatewayError",
    "Handler",
    "Policy",
    "Principal",
    "Request",
    "Response",
    "compose",
]
