"""A receiver-side verifier of Standard Webhooks signatures, written from the specification's text
and independent of `ingest_worker.notify.signing` (which the tests check against it).

From the specification (standard-webhooks, "Verifying webhooks"):
- headers `webhook-id`, `webhook-timestamp` (integer Unix seconds), `webhook-signature`;
- the signed content is the id, the timestamp and the raw body joined by full stops;
- the signature is HMAC-SHA256 of it with the key (the base64 part of a `whsec_` secret),
  base64-encoded, and listed as `v1,<signature>`; the header holds a space-delimited list of
  versioned signatures, and a receiver accepts when any `v1` one matches;
- a receiver rejects timestamps too far from its clock (tolerance, five minutes by default).

The known-answer vector in the tests comes from the specification's published example.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping


class VerificationFailed(Exception):
    pass


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, tolerance: int = 300) -> None:
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not stamp or not signatures:
        raise VerificationFailed("missing headers")
    if abs(time.time() - int(stamp)) > tolerance:
        raise VerificationFailed("timestamp outside tolerance")
    key = base64.b64decode(secret.split("_", 1)[1] if secret.startswith("whsec_") else secret)
    to_sign = f"{msg_id}.{stamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, to_sign, hashlib.sha256).digest()).decode()
    for versioned in signatures.split(" "):
        version, _, value = versioned.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return
    raise VerificationFailed("no matching signature")
