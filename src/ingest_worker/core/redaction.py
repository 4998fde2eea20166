"""Secret redaction: values under secret-looking keys and credential-looking text → `[REDACTED]`.

Keys are text too: a credential used as a mapping key (a token as a label name) is replaced in
the key as well.

Everything stored, published or logged about a signal goes through here first, so that evidence
keeps references, never secrets. Pure and deterministic: the same value always redacts the same way.

Fast: `may_contain_secrets` is a conservative pre-filter made of substring tests (no regex scan of
ordinary text), so a clean signal costs a few microseconds; the regexes run only on suspects.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, Final

REDACTED: Final = "[REDACTED]"

#: Key fragments that mark a secret wherever they appear in a key, once the key is lowercased and
#: stripped of `_`, `-`, `.` and spaces (`githubToken`, `X-Api-Key`, `db.password`, `api_key`).
SECRET_KEY_FRAGMENTS: Final = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "authorization",
    "apikey",
    "privatekey",
    "credential",
    "cookie",
    "session",
    # integration keys of alerting tools (PagerDuty routing_key / integration_key)
    "routingkey",
    "integrationkey",
)
#: Keys that are secrets only when they are exactly this, once normalized (as substrings they are
#: too common: `author`, `cwd`, `passenger`).
SECRET_KEYS_EXACT: Final = frozenset({"auth", "pwd", "pass", "jwt", "bearer", "signingkey"})


# One alternation, compiled once. Each branch is a credential shape that is rare in ordinary text.
_CREDENTIAL: Final = re.compile(
    "|".join(
        (
            # PEM private keys, also when truncated before their END line.
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----|.*)",
            # AWS access key ids (long-term AKIA…, temporary ASIA…, and the other id prefixes).
            r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b",
            # GitHub tokens: classic (ghp_, gho_, ghs_, ghu_, ghr_) and fine-grained (github_pat_).
            r"\bgh[pousr]_[A-Za-z0-9]{20,255}\b",
            r"\bgithub_pat_[A-Za-z0-9_]{20,255}",
            # JSON Web Tokens: base64url header starting with `{"`, payload, optional signature
            # (each part may keep its `=` padding). Other header forms: `_LOOSE_JWT`.
            r"\beyJ[A-Za-z0-9_-]{2,}={0,2}\.[A-Za-z0-9_-]{2,}={0,2}\.[A-Za-z0-9_-]*={0,2}",
            # Slack, Stripe, npm, Google API keys.
            r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
            r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",
            r"\bnpm_[A-Za-z0-9]{36}\b",
            r"\bAIza[0-9A-Za-z_-]{35}",
            # HTTP credentials in text: `Bearer <token>`, `Basic <base64>` (the base64 must mix
            # cases and hold a digit or a symbol, so that "Basic Authentication" stays readable).
            r"\b(?i:bearer)\s+[A-Za-z0-9\-._~+/]{8,}=*",
            r"\bBasic\s+(?=[A-Za-z0-9+/]*[a-z])(?=[A-Za-z0-9+/]*[A-Z])"
            r"(?=[A-Za-z0-9+/]*[0-9+/])[A-Za-z0-9+/]{8,}={0,2}",
        )
    ),
    re.DOTALL | re.ASCII,
)

#: JWTs whose header is JSON with whitespace after its `{` (`{ "` → `eyAi`, `{ ` then a space, a
#: tab or a line break → `eyAg` / `eyAJ` / `eyAK` / `eyAN`, `{\n` → `ewo`, `{\r` → `ew0`, `{\t` →
#: `ewk`): redacted only when the header decodes to `{`, whitespace, then `"`.
_LOOSE_JWT: Final = re.compile(
    r"\be(?:yA[igKNJ]|w[o0k])[A-Za-z0-9_-]{2,}={0,2}"
    r"\.[A-Za-z0-9_-]{2,}={0,2}\.[A-Za-z0-9_-]*={0,2}",
    re.ASCII,
)

#: AWS access key ids alone (the context of a secret access key).
_AWS_KEY_ID: Final = re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b", re.ASCII)
#: An AWS secret access key: 40 base64 characters standing alone, both cases and a digit or
#: `/` or `+` (a hex digest has one case; a base64 digest ends with `=`). Redacted only near an
#: access key id or the word `secret` (`_AWS_SECRET_NEAR` characters either side).
_AWS_SECRET: Final = re.compile(
    r"(?<![A-Za-z0-9/+])(?=[A-Za-z0-9/+]{0,39}[a-z])(?=[A-Za-z0-9/+]{0,39}[A-Z])"
    r"(?=[A-Za-z0-9/+]{0,39}[0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])",
    re.ASCII,
)
_AWS_SECRET_CONTEXT: Final = re.compile(
    r"(?i:secret)|\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b", re.ASCII
)
_AWS_SECRET_NEAR: Final = 120

#: `scheme://user:password@host` → `scheme://[REDACTED]@host` (the user part may be a token too).
_URL_CREDENTIALS: Final = re.compile(r"(?<=://)[^\s/@:]+:[^\s/@]+(?=@)")
_USERINFO: Final = re.compile(r"[^\s/@:]+:[^\s/@]+")

#: The words that name a secret in an assignment (`password=…`, `token: …`).
_ASSIGNED_NAMES: Final = (
    r"(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|"
    r"client[_-]?secret|private[_-]?key|auth[_-]?token|session[_-]?id)"
)

#: `password=hunter2`, `token: abc`, `"apiKey": "…"` inside free text: only the value goes.
_ASSIGNMENT: Final = re.compile(
    rf"(?P<name>\b{_ASSIGNED_NAMES}\b[\"']?\s*[=:]\s*[\"']?)"
    r"(?P<value>[^\s\"'&,;]{3,})",
    re.IGNORECASE | re.ASCII,
)

# Pre-filter: a text that contains none of these cannot match any rule above (or hold a secret
# key). Hints sharing a first letter are one regex: sre scans for a literal prefix faster than
# several `in` tests.
_RAW_HINT_GROUPS: Final = (
    re.compile(r"A(?:KIA|SIA|BIA|CCA|3T|Iza)"),  # AWS key ids, Google API keys
    re.compile(r"g(?:h[pousr]_|ithub_pat_)"),  # GitHub tokens
)
_RAW_HINT_GROUPS_JWT: Final = re.compile(r"e(?:yJ|yA[igKNJ]|w[o0k])")  # JWT headers (_LOOSE_JWT)
_RAW_HINTS: Final = ("-----BEGIN", "xox", "k_live_", "k_test_", "npm_")
#: Checked in the lowercased text stripped of `_-. `; each covers secret keys, assignment names or
#: HTTP schemes (`pass` covers password, passwd, passphrase; `auth` covers authorization).
_FOLDED_HINT_GROUP: Final = re.compile(r"p(?:ass|wd|rivatekey)")
_FOLDED_HINTS: Final = (
    "secret",
    "token",
    "auth",
    "apikey",
    "accesskey",
    "signingkey",
    "credential",
    "cookie",
    "session",
    "jwt",
    "bearer",
    "basic",
    "routingkey",
    "integrationkey",
)


def _fold(text: str) -> str:
    """Lowercased, without `_`, `-`, `.` and spaces (str.replace is faster than str.translate)."""
    return text.lower().replace("_", "").replace("-", "").replace(".", "").replace(" ", "")


def _url_credentials_hint(text: str) -> bool:
    """Whether `://userinfo@` may be in `text` (a superset of what `_URL_CREDENTIALS` finds)."""
    previous = -1
    at = text.find("@")
    while at != -1:
        start = text.rfind("://", previous + 1, at)
        if start != -1 and _USERINFO.fullmatch(text, start + 3, at):
            return True
        previous = at
        at = text.find("@", at + 1)
    return False


def may_contain_secrets(text: str) -> bool:
    """Conservative pre-filter: False guarantees that `redact_text(text)` is `text` and, for the
    JSON serialization (ensure_ascii=False) of a value, that `redact(value)` equals the value."""
    for group in _RAW_HINT_GROUPS:
        if group.search(text) is not None:
            return True
    if _RAW_HINT_GROUPS_JWT.search(text) is not None:
        return True
    for hint in _RAW_HINTS:
        if hint in text:
            return True
    folded = _fold(text)
    if _FOLDED_HINT_GROUP.search(folded) is not None:
        return True
    for hint in _FOLDED_HINTS:
        if hint in folded:
            return True
    return "@" in text and _url_credentials_hint(text)


@lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a secret (case, `_`, `-`, `.` and spaces ignored)."""
    normalized = _fold(key)
    if normalized in SECRET_KEYS_EXACT:
        return True
    return any(fragment in normalized for fragment in SECRET_KEY_FRAGMENTS)


def redact_text(text: str) -> str:
    """`text` with every credential-looking substring replaced by `[REDACTED]`; the rest is kept."""
    if not may_contain_secrets(text):
        return text
    text = _redact_aws_secrets(text)  # first: its context, the access key id, goes next
    text = _CREDENTIAL.sub(REDACTED, text)
    if "e" in text:
        text = _LOOSE_JWT.sub(_redact_loose_jwt, text)
    if "://" in text:
        text = _URL_CREDENTIALS.sub(REDACTED, text)
    return _ASSIGNMENT.sub(_redact_assignment, text)


def _aws_secret_spans(text: str) -> list[tuple[int, int]]:
    """Where `text` holds an AWS secret access key (40 base64 characters in its context)."""
    if _AWS_SECRET_CONTEXT.search(text) is None:
        return []
    spans = []
    for match in _AWS_SECRET.finditer(text):
        start, end = match.span()
        window = text[max(0, start - _AWS_SECRET_NEAR) : end + _AWS_SECRET_NEAR]
        if _AWS_SECRET_CONTEXT.search(window) is not None:
            spans.append((start, end))
    return spans


def _redact_aws_secrets(text: str) -> str:
    spans = _aws_secret_spans(text)
    for start, end in reversed(spans):
        text = text[:start] + REDACTED + text[end:]
    return text


def _is_jwt_header(match: re.Match[str]) -> bool:
    """Whether the first part of a `_LOOSE_JWT` match decodes to `{`, whitespace, then `"`."""
    part = match.group(0).split(".", 1)[0].rstrip("=")
    try:
        header = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        return False
    return header.startswith(b"{") and header[1:].lstrip(b" \t\r\n").startswith(b'"')


def _redact_loose_jwt(match: re.Match[str]) -> str:
    return REDACTED if _is_jwt_header(match) else match.group(0)


#: In identifiers, `:` separates the parts of a key (`runner:<runId>:<step>:<conclusion>`), so
#: `token:failure` is no assignment there: only `name=value` or `name: value` (space after `:`) is.
_IDENTIFIER_ASSIGNMENT: Final = re.compile(
    rf"\b{_ASSIGNED_NAMES}\b[\"']?"
    r"(?:\s*=|\s*:\s)\s*[\"']?[^\s\"'&,;]{3,}",
    re.IGNORECASE | re.ASCII,
)


def identifier_holds_credential(text: str) -> bool:
    """Whether an identifier (a key, a ref, an env; parts joined by `:`) holds a credential.

    The same shapes as `redact_text`, except that `<secret word>:<next part>` is read as two parts
    of a key, not as an assignment: a step named `Refresh token` or a task id `APIKEY` is no secret.
    """
    if not may_contain_secrets(text):
        return False
    if _CREDENTIAL.search(text) is not None or _aws_secret_spans(text):
        return True
    if any(_is_jwt_header(match) for match in _LOOSE_JWT.finditer(text)):
        return True
    if "://" in text and _URL_CREDENTIALS.search(text) is not None:
        return True
    return _IDENTIFIER_ASSIGNMENT.search(text) is not None


def any_identifier_holds_credential(parts: Iterable[str]) -> bool:
    """Whether any of `parts` holds a credential (`identifier_holds_credential` on each).

    One pre-filter pass over the parts joined by newlines first: no hint contains a newline and
    the URL-userinfo hint stops at whitespace, so a joined text without hints guarantees parts
    without hints (property-tested). Only when it has one is each part checked on its own.
    """
    parts = list(parts)
    if not may_contain_secrets("\n".join(parts)):
        return False
    return any(identifier_holds_credential(part) for part in parts)


def _redact_assignment(match: re.Match[str]) -> str:
    if match.group("value").startswith(REDACTED):
        return match.group(0)
    return match.group("name") + REDACTED


def redact(value: Any) -> Any:
    """A deep copy of a JSON-like value with secrets replaced by `[REDACTED]`.

    - Under a secret-looking key, any value except `null` and booleans becomes `"[REDACTED]"`
      (a whole object or list included).
    - Every other string has its credential-looking substrings replaced (see `redact_text`).
    - A `{"name": <secret-looking>, "value": …}` pair (environment variables, ECS overrides,
      tags; also `Name` / `key` / `Key` and `Value`) has its value redacted the same way.
    - A key holding a credential (a token as a label name) has it replaced like any text; should
      two keys then read the same, the later ones get ` (2)`, ` (3)`, … so that no entry is lost.
    - Mappings become dicts, lists and tuples become lists; other scalars are returned as they are.
    """
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        result: dict[Any, Any] = {}
        for key, item in value.items():
            redacted = _redact_entry(key, item)
            if isinstance(key, str) and (clean := _redact_key(key)) != key:
                key = _unique_key(clean, result, value)
            result[key] = redacted
        if _names_a_secret(value):
            for key in _PAIR_VALUE_KEYS:
                item = result.get(key)
                if item is not None and not isinstance(item, bool):
                    result[key] = REDACTED
        return result
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


_redact_key: Final = lru_cache(maxsize=4096)(redact_text)


def _unique_key(key: str, taken: dict[Any, Any], original: dict[Any, Any]) -> str:
    """`key`, or `key (n)` with the smallest n ≥ 2 that neither mapping uses."""
    candidate, number = key, 1
    while candidate in taken or candidate in original:
        number += 1
        candidate = f"{key} ({number})"
    return candidate


_PAIR_NAME_KEYS: Final = ("name", "Name", "key", "Key")
_PAIR_VALUE_KEYS: Final = ("value", "Value")


def _names_a_secret(mapping: dict[Any, Any]) -> bool:
    for key in _PAIR_NAME_KEYS:
        name = mapping.get(key)
        if isinstance(name, str) and is_secret_key(name):
            return True
    return False


def _redact_entry(key: Any, item: Any) -> Any:
    if (
        item is not None
        and not isinstance(item, bool)
        and isinstance(key, str)
        and is_secret_key(key)
    ):
        return REDACTED
    return redact(item)
