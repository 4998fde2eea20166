"""Authentication of an ingest request, from its headers before any body byte is read.

`from_headers` decides from the headers alone: accepted (a bearer token or basic credential,
with the principal it is bound to), refused (401/403), or pending a body-borne proof — a
signature of the source's scheme (`Source.signature`) whose secret is configured and whose
timestamp, when the scheme has one, is fresh; or a PagerDuty routing key where the route takes
one. Only then is the body read (within the size limit and the body deadline), and the proof
checked on it. Nothing here logs or returns a presented credential; every comparison is
`hmac.compare_digest` over every candidate.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ingest_worker.service.gateway.credentials import (
    CredentialStore,
    SourceCredentials,
    source_principal,
)
from ingest_worker.service.gateway.principal import Principal, bearer_token, dev_principal
from ingest_worker.service.gateway.problems import Problem
from ingest_worker.service.gateway.refusals import Refusal, unauthorized
from ingest_worker.sources.signatures import SignatureScheme


@dataclass(frozen=True, slots=True)
class Pending:
    """What the body must prove: `scheme` (with the presented signature and timestamp), or a
    routing key (`routing_key`)."""

    source: str
    scheme: SignatureScheme | None = None
    signature: str = ""
    timestamp: str | None = None
    routing_key: bool = False


#: The verdict of the headers: the principal, or what the body must prove.
HeaderVerdict = Principal | Pending


def _basic(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _any(candidates: tuple[bytes, ...], presented: bytes) -> bool:
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(candidate, presented)
    return found


class IngestAuthenticator:
    def __init__(
        self,
        store: CredentialStore,
        *,
        dev: bool,
        schemes: Mapping[str, SignatureScheme],
        max_age_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.dev = dev
        self.schemes = dict(schemes)
        self.max_age_seconds = max_age_seconds
        self.clock = clock

    def from_headers(
        self, source: str, headers: Mapping[str, str], *, routing_key: bool = False
    ) -> HeaderVerdict:
        """The principal or the pending proof of a request for `source`; raises Refusal.

        `headers` with lower-case names. Any one valid credential is enough.
        """
        if not self.store.ingests(source):
            if not self.dev:
                raise unauthorized(
                    f"no credentials are configured for source {source}: refused (fail closed)"
                )
            try:
                return dev_principal(headers)
            except Problem as problem:
                raise Refusal(problem.status, problem.reason, problem.detail) from None
        creds = self.store.of(source)
        failure: Refusal | None = None
        if headers.get("authorization"):
            verdict = self._authorization(source, creds, headers)
            if isinstance(verdict, Principal):
                return verdict
            failure = verdict
        pending = self._signature(source, creds, headers)
        if pending is not None:
            return pending
        if routing_key and failure is None and self.store.takes_tokens(source):
            return Pending(source, routing_key=True)
        raise failure or unauthorized(
            "credentials required (bearer token, basic auth or signature)"
        )

    def _authorization(
        self, source: str, creds: SourceCredentials, headers: Mapping[str, str]
    ) -> Principal | Refusal:
        token = bearer_token(headers)
        if token is not None:
            bindings = self.store.bindings_of(token)
            for binding in bindings:
                if binding.ingests(source):
                    return binding.principal
            if bindings:
                return Refusal(
                    403, "forbidden", f"these credentials are not valid for source {source}"
                )
            return unauthorized("invalid credentials")
        scheme, _, value = (headers.get("authorization") or "").strip().partition(" ")
        pair = _basic(value) if scheme.lower() == "basic" else None
        if pair is None:
            return unauthorized("invalid credentials")
        if _any(creds.basic, pair):
            return source_principal(source)
        if self.store.others_accept_basic(source, pair):
            return Refusal(403, "forbidden", f"these credentials are not valid for source {source}")
        return unauthorized("invalid credentials")

    def _signature(
        self, source: str, creds: SourceCredentials, headers: Mapping[str, str]
    ) -> Pending | None:
        scheme = self.schemes.get(source)
        signature = headers.get(scheme.header) if scheme is not None else None
        if scheme is None or not signature or not creds.hmac:
            return None
        timestamp = headers.get(scheme.timestamp_header) if scheme.timestamp_header else None
        if timestamp is not None and not self._fresh(timestamp):
            raise unauthorized(
                f"the signed timestamp is not within {self.max_age_seconds:g} s of now: refused "
                "(a replayed or delayed request)",
                "stale_signature",
            )
        return Pending(source, scheme, signature, timestamp)

    def _fresh(self, timestamp: str) -> bool:
        try:
            moment = float(int(timestamp.strip()))
        except ValueError:
            return False
        if moment > 1e11:  # milliseconds since the epoch
            moment /= 1000
        return abs(self.clock() - moment) <= self.max_age_seconds

    def verify(self, pending: Pending, body: bytes) -> Principal:
        """The principal of a signed request once its body is read; raises Refusal."""
        assert pending.scheme is not None
        secrets = self.store.of(pending.source).hmac
        if pending.scheme.verify(secrets, pending.signature, body, pending.timestamp):
            return source_principal(pending.source)
        raise unauthorized("invalid credentials")

    def routing_key(self, source: str, key: object) -> Principal:
        """The principal a routing key is bound to; raises Refusal."""
        if not isinstance(key, str) or not key:
            raise unauthorized("credentials required (routing_key or bearer token)")
        bindings = self.store.bindings_of(key.encode())
        for binding in bindings:
            if binding.ingests(source):
                return binding.principal
        if bindings:
            raise Refusal(403, "forbidden", f"this routing key is not valid for source {source}")
        raise unauthorized("invalid credentials")
