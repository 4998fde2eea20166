"""Per-source rate limits (token buckets) and the bounded reading of a request body."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from ingest_worker.service.gateway.settings import GatewaySettings, RateLimit


@dataclass
class TokenBucket:
    rate: float
    burst: int
    tokens: float = field(default=-1.0)
    updated: float = field(default=0.0)

    def take(self, now: float) -> float:
        """0 when a request may pass now (one token taken), else the seconds until it could."""
        if self.tokens < 0:
            self.tokens, self.updated = float(self.burst), now
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """One bucket per source, in this process (each replica limits on its own)."""

    def __init__(
        self, settings: GatewaySettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def retry_after(self, source: str) -> int | None:
        """None when the request may pass, else the whole seconds to announce in Retry-After."""
        bucket = self._buckets.get(source)
        if bucket is None:
            limit: RateLimit = self._settings.rate_limit_of(source)
            bucket = self._buckets[source] = TokenBucket(limit.rate, limit.burst)
        wait = bucket.take(self._clock())
        return None if wait == 0 else max(1, math.ceil(wait))


class BodyTooLarge(Exception):
    def __init__(self, limit: int, seen: int) -> None:
        super().__init__(f"the body is more than the limit of {limit} bytes")
        self.limit = limit
        self.seen = seen


class BadContentLength(Exception):
    pass


def check_content_length(value: str | None, limit: int) -> None:
    """Refuse up front a declared length over the limit."""
    if value is None:
        return
    try:
        declared = int(value)
    except ValueError:
        raise BadContentLength("Content-Length is not a number") from None
    if declared > limit:
        raise BodyTooLarge(limit, declared)


async def read_bounded(stream: AsyncIterator[bytes], limit: int) -> bytes:
    """The body, read chunk by chunk; BodyTooLarge as soon as more than `limit` bytes arrived,
    without waiting for (or keeping) the rest."""
    body = bytearray()
    async for chunk in stream:
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(limit, len(body))
    return bytes(body)


def is_json_media_type(content_type: str | None) -> bool:
    """`application/json` or `application/<anything>+json`, any parameters (charset)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )
