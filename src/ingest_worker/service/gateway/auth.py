"""Authentication of a request for one source: bearer tokens, basic auth, HMAC signatures.

Every comparison is `hmac.compare_digest`, over every candidate (no early exit). Nothing here
logs or returns a presented credential.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from ingest_worker.service.gateway.settings import CredentialStore, SourceCredentials


class Verdict(Enum):
    ACCEPTED = "accepted"
    #: No credential configured for the source, and the gateway is in dev mode.
    UNAUTHENTICATED_DEV = "unauthenticated_dev"
    #: No credential configured for the source: fail closed.
    NOT_CONFIGURED = "not_configured"
    MISSING = "missing"
    INVALID = "invalid"
    #: A valid credential of another source.
    FORBIDDEN = "forbidden"


def _matches(candidates: Iterable[bytes], presented: bytes) -> bool:
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(candidate, presented)
    return found


def _sign(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class SignatureScheme:
    """How one sender signs its bodies: the header, and how its value is checked."""

    header: str
    check: Callable[[Iterable[bytes], str, bytes, Mapping[str, str]], bool]


def _pagerduty(secrets: Iterable[bytes], value: str, body: bytes, _: Mapping[str, str]) -> bool:
    """`X-PagerDuty-Signature: v1=<hex>[,v1=<hex>…]` (several while a secret rotates)."""
    presented = [
        part.strip()[3:].lower().encode()
        for part in value.split(",")
        if part.strip().startswith("v1=")
    ]
    found = False
    for secret in secrets:
        expected = _sign(secret, body).encode()
        for signature in presented:
            found |= hmac.compare_digest(expected, signature)
    return found


def grafana_scheme(timestamp_header: str) -> SignatureScheme:
    """`X-Grafana-Alerting-Signature: <hex>` of the body, or of `<timestamp>:<body>` when
    Grafana is configured with a timestamp header."""

    def check(
        secrets: Iterable[bytes], value: str, body: bytes, headers: Mapping[str, str]
    ) -> bool:
        timestamp = headers.get(timestamp_header.lower())
        message = body if timestamp is None else timestamp.encode() + b":" + body
        presented = value.strip().lower().encode()
        found = False
        for secret in secrets:
            found |= hmac.compare_digest(_sign(secret, message).encode(), presented)
        return found

    return SignatureScheme("x-grafana-alerting-signature", check)


PAGERDUTY_SIGNATURE = SignatureScheme("x-pagerduty-signature", _pagerduty)


def default_schemes(grafana_timestamp_header: str) -> dict[str, SignatureScheme]:
    """The senders that sign, by source name."""
    return {"pagerduty": PAGERDUTY_SIGNATURE, "grafana": grafana_scheme(grafana_timestamp_header)}


def _basic(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _header_accepted(creds: SourceCredentials, authorization: str) -> bool:
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return _matches(creds.tokens, value.strip().encode())
    if scheme.lower() == "basic":
        decoded = _basic(value)
        return decoded is not None and _matches(creds.basic, decoded)
    return False


class Authenticator:
    def __init__(
        self,
        store: CredentialStore,
        *,
        dev: bool,
        schemes: Mapping[str, SignatureScheme],
    ) -> None:
        self.store = store
        self.dev = dev
        self.schemes = dict(schemes)

    def check(
        self,
        source: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        tokens: Iterable[str] = (),
    ) -> Verdict:
        """The verdict for a request for `source` (`headers` with lower-case names).

        `tokens`: credentials carried in the body (the routing key of a PagerDuty event).
        Any one valid credential is enough.
        """
        creds = self.store.of(source)
        if creds.empty:
            return Verdict.UNAUTHENTICATED_DEV if self.dev else Verdict.NOT_CONFIGURED
        presented = False
        accepted = False
        authorization = headers.get("authorization")
        if authorization:
            presented = True
            accepted |= _header_accepted(creds, authorization)
        body_tokens = [t.encode() for t in tokens if t]
        for token in body_tokens:
            presented = True
            accepted |= _matches(creds.tokens, token)
        scheme = self.schemes.get(source)
        signature = headers.get(scheme.header) if scheme is not None else None
        if scheme is not None and signature:
            presented = True
            accepted |= bool(creds.hmac) and scheme.check(creds.hmac, signature, body, headers)
        if accepted:
            return Verdict.ACCEPTED
        if not presented:
            return Verdict.MISSING
        for other in self.store.others(source):
            if (authorization and _header_accepted(other, authorization)) or any(
                _matches(other.tokens, token) for token in body_tokens
            ):
                return Verdict.FORBIDDEN
        return Verdict.INVALID
