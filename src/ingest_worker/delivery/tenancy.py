"""The tenant of a consumed record: its `tenant` header, or its topic's `<tenant>.` prefix.

Never the payload. Who may write which tenant's records is the broker's business: ACLs on who
may produce the header (or, in prefix mode, prefixed ACLs on `<tenant>.` topics).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from ingest_worker.core.errors import InvalidSignal, RejectReason
from ingest_worker.core.tenants import DEFAULT_TENANT, TENANT_PATTERN

#: The Kafka header naming a record's tenant (on consumed and on published records).
TENANT_HEADER = "tenant"

_INVALID = (
    "the tenant header is not a tenant id (1-63 characters of a-z, 0-9 and '-', "
    "starting with a letter or digit)"
)


def header_tenant(headers: Sequence[tuple[str, bytes]]) -> str | None:
    """The tenant a record's headers name; None when none does (absent or empty).

    Raises InvalidSignal(`invalid_tenant`) for a malformed value, or for two headers that
    name different tenants."""
    found: str | None = None
    for name, value in headers:
        if name != TENANT_HEADER or not value:
            continue
        try:
            tenant = value.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidSignal(RejectReason.INVALID_TENANT, _INVALID) from None
        if TENANT_PATTERN.fullmatch(tenant) is None:
            raise InvalidSignal(RejectReason.INVALID_TENANT, _INVALID)
        if found is not None and found != tenant:
            raise InvalidSignal(RejectReason.INVALID_TENANT, "two tenant headers disagree")
        found = tenant
    return found


def split_topic(topic: str, known: Collection[str]) -> tuple[str, str] | None:
    """(tenant, configured topic) of a topic consumed in prefix mode: a configured topic is
    the default tenant's, `<tenant>.<configured topic>` is `tenant`'s; None: neither."""
    if topic in known:
        return DEFAULT_TENANT, topic
    prefix, dot, rest = topic.partition(".")
    if dot and rest in known and TENANT_PATTERN.fullmatch(prefix) is not None:
        return prefix, rest
    return None


def topic_pattern(topics: Collection[str]) -> str:
    """The subscription pattern of prefix mode: every configured topic, bare or prefixed."""
    names = "|".join(re.escape(t) for t in sorted(topics))
    return rf"^(?:[a-z0-9][a-z0-9-]{{0,62}}\.)?(?:{names})$"


def record_tenant(
    topic: str, headers: Sequence[tuple[str, bytes]], known: Collection[str] | None
) -> tuple[str, str]:
    """(tenant, configured topic) of a record; `known` is None unless in prefix mode.

    In prefix mode the topic decides, and a `tenant` header naming another tenant is
    `invalid_tenant` (a producer believing it writes elsewhere)."""
    named = header_tenant(headers) if headers else None
    if known is None:
        return named or DEFAULT_TENANT, topic
    split = split_topic(topic, known)
    if split is None:
        return DEFAULT_TENANT, topic  # not a signal topic: the caller reports it unmappable
    if named is not None and named != split[0]:
        raise InvalidSignal(
            RejectReason.INVALID_TENANT, "the tenant header disagrees with the topic's tenant"
        )
    return split
