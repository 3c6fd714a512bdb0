"""What the response stores keep of one Responses API response, and the contract they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["ResponseStore", "StoredResponse"]


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """``body``: the ``response`` object (JSON bytes) as the client got it; ``conversation``: the chat
    messages (JSON array) a ``previous_response_id`` continues; ``created_at`` in unix seconds."""

    response_id: str
    tenant: str
    created_at: float
    body: bytes
    conversation: bytes


class ResponseStore(Protocol):
    """Reads see only the ``tenant``'s own rows made at or after ``since_s`` (the retention)."""

    async def put(self, record: StoredResponse) -> None: ...

    async def get(self, response_id: str, tenant: str, since_s: float) -> StoredResponse | None: ...

    async def delete(self, response_id: str, tenant: str) -> bool: ...

    async def purge(self, before_s: float) -> int: ...

    async def close(self) -> None: ...
