"""Standard Webhooks signatures: `webhook-id`, `webhook-timestamp`, `webhook-signature`.

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the signature is the base64 of
its HMAC-SHA256 under the secret's key, prefixed `v1,`. A secret is written `whsec_` followed by
the base64 of its key (24 to 64 bytes, as the convention asks). With several secrets (a rotation)
the header carries one signature per secret, separated by spaces, so that a receiver holding
either secret verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of every secret, not a secret
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64


class SigningError(ValueError):
    """A secret that is not a usable Standard Webhooks secret."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise SigningError("a secret starts with 'whsec_' followed by base64")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise SigningError("a secret's part after 'whsec_' must be base64") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise SigningError(
            f"a secret's key must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, not {len(key)}"
        )
    return key


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature."""
    content = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    keys: Sequence[bytes], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three headers of a delivery (no `webhook-signature` without a secret)."""
    headers = {"webhook-id": message_id, "webhook-timestamp": str(timestamp)}
    if keys:
        headers["webhook-signature"] = " ".join(
            signature(key, message_id, timestamp, body) for key in keys
        )
    return headers
