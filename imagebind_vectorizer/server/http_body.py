"""Reading an HTTP request body under a byte budget and a deadline.

The budget (`max_inflight_bytes`, all requests together) is charged for the bytes that have
actually arrived, as they arrive, and released once the request is answered: a client that
declares `Content-Length: 1 GiB` and sends nothing holds nothing. A declared length is only used
to refuse early (413 over `max_request_bytes`; 429 when it could not fit the budget now), never
to reserve. The whole body must arrive within `body_timeout_s` of the handler starting to read it
(408 otherwise), so a stalled upload gives its bytes back within that time. A client that sent
`Expect: 100-continue` gets its `100 Continue` only once these checks (and whatever the handler
checked before) have passed: a refused client never uploads."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from imagebind_vectorizer.server.connections import send_continue


@dataclass
class BodyRefused(Exception):
    """The body cannot be taken: the status and message of the answer (the connection then closes,
    since the rest of the body was not read)."""

    status: int
    message: str
    reason: str
    retry_after: int | None = None

    def __str__(self) -> str:
        return self.message


class InflightBytes:
    """Request-body bytes received and not yet answered, all HTTP requests together."""

    def __init__(self, limit: int) -> None:
        self.limit, self.held = limit, 0

    def fits(self, size: int, mine: int = 0) -> bool:
        """Would `size` more bytes fit, for a request already holding `mine`? A request that holds
        everything that is held may always grow (up to `max_request_bytes`): one request alone is
        never refused for the budget."""
        return self.held + size <= self.limit or self.held == mine


@contextlib.asynccontextmanager
async def read_body(request: web.BaseRequest, budget: InflightBytes, *, max_bytes: int,
                    timeout_s: float) -> AsyncIterator[bytearray]:
    """The whole body, its bytes charged to `budget` until the block ends. Raises BodyRefused."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise BodyRefused(413, f"request body is larger than the limit of {max_bytes} bytes", "too_large")
    if declared and not budget.fits(declared):
        raise BodyRefused(429, "too many request bytes in flight; retry later", "overloaded", retry_after=1)
    send_continue(request)
    body = bytearray()
    try:
        try:
            async with asyncio.timeout(timeout_s):
                while chunk := await request.content.readany():
                    if len(body) + len(chunk) > max_bytes:
                        raise BodyRefused(413, f"request body is larger than the limit of {max_bytes} bytes",
                                          "too_large")
                    if not budget.fits(len(chunk), len(body)):
                        raise BodyRefused(429, "too many request bytes in flight; retry later", "overloaded",
                                          retry_after=1)
                    budget.held += len(chunk)
                    body += chunk
        except TimeoutError:
            raise BodyRefused(408, f"request body not received within {timeout_s:g} s "
                                   f"({len(body)} bytes arrived)", "body_timeout") from None
        if declared is not None and len(body) < declared:
            raise BodyRefused(400, f"request body ended after {len(body)} of its {declared} bytes", "truncated")
        yield body
    finally:
        budget.held -= len(body)
