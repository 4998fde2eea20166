"""How the senders that sign their bodies do it: the header, how its value is checked, and the
header of the signed timestamp where the scheme has one. A source declares its scheme on its
registry entry (`Source.signature`); the gateway checks it.

Every comparison is `hmac.compare_digest`, over every candidate (no early exit).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass

#: (secrets, the signature header's value, the body, the signed timestamp or None) → valid?
Verifier = Callable[[Iterable[bytes], str, bytes, str | None], bool]


@dataclass(frozen=True, slots=True)
class SignatureScheme:
    """`header` (lower case) carries the signature; `timestamp_header`, when the scheme has one,
    a Unix time (seconds) that the signature covers: the gateway refuses it outside its
    freshness window."""

    header: str
    verify: Verifier
    timestamp_header: str | None = None


def sign(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def _pagerduty(secrets: Iterable[bytes], value: str, body: bytes, _: str | None) -> bool:
    """`X-PagerDuty-Signature: v1=<hex>[,v1=<hex>…]` (several while a secret rotates)."""
    presented = [
        part.strip()[3:].lower().encode()
        for part in value.split(",")
        if part.strip().startswith("v1=")
    ]
    found = False
    for secret in secrets:
        expected = sign(secret, body).encode()
        for signature in presented:
            found |= hmac.compare_digest(expected, signature)
    return found


def _grafana(secrets: Iterable[bytes], value: str, body: bytes, timestamp: str | None) -> bool:
    """`X-Grafana-Alerting-Signature: <hex>` of the body, or of `<timestamp>:<body>` when Grafana
    sends a timestamp header."""
    message = body if timestamp is None else timestamp.encode() + b":" + body
    presented = value.strip().lower().encode()
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(sign(secret, message).encode(), presented)
    return found


#: PagerDuty webhooks (v3): no timestamp is signed; a replay is absorbed by de-duplication.
PAGERDUTY_SIGNATURE = SignatureScheme("x-pagerduty-signature", _pagerduty)
GRAFANA_SIGNATURE = SignatureScheme(
    "x-grafana-alerting-signature", _grafana, timestamp_header="x-grafana-alerting-timestamp"
)
