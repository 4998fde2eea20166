"""One HTTP delivery attempt of one event to one subscription, with the outbound limits.

- The destination is checked (`destinations`) and the request sent to the checked address.
- Connect and read timeouts, and a cap on the whole attempt.
- Redirects: only 307/308 to the same scheme, host and port (at most `MAX_REDIRECTS`); any
  other redirect is a failed attempt, so a body and its signature never reach another host.
- At most `MAX_RESPONSE_BYTES` of a response body are read (kept for the log, truncated).
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass
from datetime import UTC
from urllib.parse import urljoin, urlsplit

import aiohttp

from ingest_worker.notify.destinations import DestinationPolicy, DestinationRefused
from ingest_worker.notify.formats import IncidentEvent, render
from ingest_worker.notify.signing import signed_headers
from ingest_worker.notify.subscriptions import Subscription

MAX_RESPONSE_BYTES = 4096
MAX_REDIRECTS = 3
USER_AGENT = "ingest-worker-notify/1"
#: Longest `Retry-After` honoured: a larger one is capped (the event's maxAge still applies).
MAX_RETRY_AFTER_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt gave: delivered, or a failure with a stable reason."""

    delivered: bool
    reason: str
    status: int | None = None
    retry_after: float | None = None
    detail: str = ""


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    current = now if now is not None else time.time()
    return min(max(0.0, moment.timestamp() - current), MAX_RETRY_AFTER_SECONDS)


@dataclass(frozen=True)
class SenderConfig:
    connect_timeout: float
    read_timeout: float
    console_url: str | None
    policy: DestinationPolicy


class Sender:
    """Sends events; one HTTP client session (connection pool) for every subscription.

    aiohttp rather than httpx: the notifier's cost per event is almost all in the HTTP client,
    and at the same concurrency aiohttp's spends several times less CPU per request."""

    def __init__(self, config: SenderConfig) -> None:
        self._config = config
        # Everything an attempt may spend: connect, write, read, plus redirects.
        self._attempt_cap = (config.connect_timeout + 2 * config.read_timeout) * (MAX_REDIRECTS + 1)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=self._config.connect_timeout,
                    sock_read=self._config.read_timeout,
                ),
                connector=aiohttp.TCPConnector(limit=512, limit_per_host=64),
                trust_env=False,  # no proxy or netrc from the environment
                auto_decompress=False,
                headers={"user-agent": USER_AGENT},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, subscription: Subscription, event: IncidentEvent) -> Outcome:
        body, content_type = render(event, subscription.format, self._config.console_url)
        headers = {
            "content-type": content_type,
            **signed_headers(subscription.keys(), event.id, int(time.time()), body),
        }
        try:
            async with asyncio.timeout(self._attempt_cap):
                return await self._post(subscription.url, body, headers)
        except DestinationRefused as exc:
            return Outcome(False, "destination_refused", detail=str(exc))
        except TimeoutError:
            return Outcome(False, "timeout")
        except aiohttp.ClientError as exc:
            return Outcome(False, "connection_error", detail=type(exc).__name__)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            host = parts.hostname or ""
            port = parts.port or (443 if parts.scheme == "https" else 80)
            address = await self._config.policy.resolve(host, port)
            literal = f"[{address}]" if address.version == 6 else str(address)
            target = parts._replace(netloc=f"{literal}:{port}").geturl()
            async with self._client().post(
                target,
                data=body,
                headers={**headers, "host": parts.netloc.rpartition("@")[2]},
                allow_redirects=False,
                server_hostname=host if parts.scheme == "https" else None,
            ) as response:
                # Read a few KB at most; leaving the rest unread closes the connection.
                snippet = await response.content.read(MAX_RESPONSE_BYTES)
                status = response.status
                location = response.headers.get("location")
                retry_after = response.headers.get("retry-after")
            if 200 <= status < 300:
                return Outcome(True, "delivered", status)
            if status in (307, 308) and location:
                following = urljoin(url, location)
                if not _same_origin(url, following):
                    return Outcome(False, "redirect_refused", status, detail="another host")
                url = following
                continue
            if 300 <= status < 400:
                return Outcome(False, "redirect_refused", status)
            wait = retry_after_seconds(retry_after) if status in (429, 503) else None
            detail = snippet.decode("utf-8", "replace")[:200]
            return Outcome(False, f"http_{status}", status, wait, detail)
        return Outcome(False, "redirect_refused", detail="too many redirects")


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)
