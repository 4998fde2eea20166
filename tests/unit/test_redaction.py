"""Redaction: secrets never reach storage, publication or logs; everything else is kept as it is."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest_worker.core.canonical import canonical_json
from ingest_worker.core.redaction import (
    REDACTED,
    any_identifier_holds_credential,
    identifier_holds_credential,
    is_secret_key,
    may_contain_secrets,
    redact,
    redact_text,
)

GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7v\nabc123\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "db_password",
        "dbPassword",
        "passwd",
        "passphrase",
        "token",
        "githubToken",
        "access_token",
        "refresh-token",
        "secret",
        "clientSecret",
        "client_secret",
        "Authorization",
        "authorization",
        "api_key",
        "apiKey",
        "apikey",
        "X-Api-Key",
        "x-api-key",
        "private_key",
        "privateKey",
        "credentials",
        "awsCredentials",
        "Cookie",
        "set-cookie",
        "session",
        "sessionId",
        "auth",
        "pwd",
        "jwt",
    ],
)
def test_values_under_secret_looking_keys_are_redacted(key: str) -> None:
    assert is_secret_key(key)
    assert redact({key: "hunter2", "env": "prod"}) == {key: REDACTED, "env": "prod"}


@pytest.mark.parametrize(
    "key", ["env", "author", "status", "message", "passenger", "monkey", "cwd", "keys_url"]
)
def test_ordinary_keys_are_kept(key: str) -> None:
    assert not is_secret_key(key)
    assert redact({key: "value"}) == {key: "value"}


def test_a_whole_object_or_list_under_a_secret_key_is_redacted() -> None:
    value = {"credentials": {"user": "u", "password": "p"}, "tokens": ["a", "b"]}
    assert redact(value) == {"credentials": REDACTED, "tokens": REDACTED}


def test_null_and_booleans_under_secret_keys_are_kept() -> None:
    assert redact({"password": None, "hasToken": True}) == {"password": None, "hasToken": True}


def test_numbers_under_secret_keys_are_redacted() -> None:
    assert redact({"pin_token": 1234}) == {"pin_token": REDACTED}


def test_values_of_name_value_pairs_naming_a_secret_are_redacted() -> None:
    environment = [
        {"name": "DB_PASSWORD", "value": "hunter2"},
        {"Name": "githubToken", "Value": "abc"},
        {"key": "LOG_LEVEL", "value": "debug"},
        {"name": "privateIPv4Address", "value": "10.0.0.139"},
        {"name": "API_KEY", "value": None},
    ]
    assert redact(environment) == [
        {"name": "DB_PASSWORD", "value": REDACTED},
        {"Name": "githubToken", "Value": REDACTED},
        {"key": "LOG_LEVEL", "value": "debug"},
        {"name": "privateIPv4Address", "value": "10.0.0.139"},
        {"name": "API_KEY", "value": None},
    ]


def test_secret_keys_are_found_at_any_depth() -> None:
    value = {"a": [{"b": {"apiKey": "k", "name": "n"}}]}
    assert redact(value) == {"a": [{"b": {"apiKey": REDACTED, "name": "n"}}]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key AKIAIOSFODNN7EXAMPLE used", f"key {REDACTED} used"),
        ("temporary ASIAY34FZKBOKMUTVV7A here", f"temporary {REDACTED} here"),
        (f"cloned with {GITHUB_TOKEN}.", f"cloned with {REDACTED}."),
        ("pat github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", f"pat {REDACTED}"),
        (f"jwt={JWT}", f"jwt={REDACTED}"),
        (f"token {JWT} expired", f"token {REDACTED} expired"),
        ("Authorization: Bearer abc.def-ghi_jkl", f"Authorization: {REDACTED}"),
        ("header bearer 0123456789abcdef", f"header {REDACTED}"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", f"Authorization: {REDACTED}"),
        (f"key:\n{PEM}\nafter", f"key:\n{REDACTED}\nafter"),
        ("-----BEGIN PRIVATE KEY-----\nMIIE truncated", REDACTED),
        ("postgresql://app:s3cr3t@db:5432/app", f"postgresql://{REDACTED}@db:5432/app"),
        (
            "clone https://x-access-token:abc@github.com/o/r",
            f"clone https://{REDACTED}@github.com/o/r",
        ),
        (
            "connect failed: password=hunter2 host=db",
            f"connect failed: password={REDACTED} host=db",
        ),
        ('{"apiKey": "abcd1234"}', f'{{"apiKey": "{REDACTED}"}}'),
        ("client_secret: shhh-123", f"client_secret: {REDACTED}"),
        ("slack xoxb-1234567890-abcdefghij", f"slack {REDACTED}"),
        ("stripe sk_live_0123456789abcdefABCD", f"stripe {REDACTED}"),
    ],
)
def test_credential_looking_substrings_are_replaced_and_the_rest_is_kept(
    text: str, expected: str
) -> None:
    assert redact_text(text) == expected
    assert redact({"message": text}) == {"message": expected}


@pytest.mark.parametrize(
    "text",
    [
        "Health check failed",
        "Essential container in task exited",
        "HTTP Basic Authentication failed",
        "https://github.com/Codertocat/Hello-World",
        "git@github.com:Codertocat/Hello-World.git",
        "arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/c13b4cb40f1f4fe4a2971f76ae5a47ad",
        "sha256:74b2c688c700ec95a93e478cdb959737c148df3fbf5ea706abe0318726e885e6",
        "2021-08-05T10:26:28.000Z",
        "Run yarn run format-check",
        "the password policy changed",
        "",
    ],
)
def test_ordinary_text_is_kept_unchanged(text: str) -> None:
    assert redact_text(text) == text


def test_redact_returns_a_deep_copy_and_leaves_the_input_alone() -> None:
    value = {"a": [{"password": "p"}], "b": ("x", "y")}
    original = copy.deepcopy(value)
    result = redact(value)
    assert value == original
    assert result == {"a": [{"password": REDACTED}], "b": ["x", "y"]}
    assert result["a"] is not value["a"]


def test_scalars_are_returned_as_they_are() -> None:
    for scalar in (None, True, 0, 1.5, -3):
        assert redact(scalar) == scalar


def test_redaction_is_idempotent() -> None:
    text = f"{GITHUB_TOKEN} password=abc {JWT} postgresql://a:b@h/db"
    once = redact_text(text)
    assert redact_text(once) == once
    assert GITHUB_TOKEN not in once and "abc" not in once.replace(REDACTED, "")


def test_the_pre_filter_flags_every_kind_of_secret() -> None:
    for text in (GITHUB_TOKEN, JWT, PEM, "AKIAIOSFODNN7EXAMPLE", "Bearer abcdefgh", "u://a:b@h"):
        assert may_contain_secrets(text)
    assert may_contain_secrets(canonical_json({"db_pass_word": 1}))
    assert not may_contain_secrets(canonical_json({"env": "prod", "status": "RED"}))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)

secretish_text = st.sampled_from(
    [
        "password=x1y2z3",
        GITHUB_TOKEN,
        "Bearer abcdefgh1",
        "s://u:p@h",
        "AKIAIOSFODNN7EXAMPLE",
        "ok",
        "DB_PASSWORD",
        "LOG_LEVEL",
    ]
)
secretish_keys = st.sampled_from(
    ["token", "Pass_Word", "env", "x-api-key", "auth", "name", "value", "Key", "Value"]
)
mixed_values = st.recursive(
    st.none() | st.integers() | st.text(max_size=20) | secretish_text,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(secretish_keys | st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(mixed_values)
def test_a_clean_pre_filter_verdict_guarantees_redaction_changes_nothing(value: Any) -> None:
    if not may_contain_secrets(canonical_json(value)):
        assert redact(value) == value


@settings(max_examples=200, deadline=None)
@given(json_values | mixed_values)
def test_redact_is_deterministic_idempotent_and_never_raises(value: Any) -> None:
    once = redact(value)
    assert redact(value) == once
    assert redact(once) == once


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_redact_text_never_raises_and_keeps_clean_text(text: str) -> None:
    result = redact_text(text)
    if not may_contain_secrets(text):
        assert result == text


def test_alerting_tool_integration_keys_are_secret_keys() -> None:
    from ingest_worker.core.redaction import may_contain_secrets, redact

    value = {"routing_key": "R0ABCDEF0123456789ABCDEF01234567", "integration-key": "abc", "x": 1}
    assert redact(value) == {"routing_key": "[REDACTED]", "integration-key": "[REDACTED]", "x": 1}
    assert may_contain_secrets('{"routing_key": "R0ABCDEF"}')


identifier_fragments = st.sampled_from(
    ["runner", ":", "@", "://", "u:p", "/", " ", "\n", "token", "BEARER", "abcdefgh1", "=", "x"]
)
identifier_parts = st.lists(
    st.lists(identifier_fragments | secretish_text | st.text(max_size=6), max_size=6).map("".join),
    max_size=6,
)


@settings(max_examples=500, deadline=None)
@given(identifier_parts)
def test_the_joined_identifier_check_agrees_with_checking_each_part(parts: list[str]) -> None:
    assert any_identifier_holds_credential(parts) == any(
        identifier_holds_credential(part) for part in parts
    )


def test_the_joined_identifier_check_finds_a_credential_in_any_part() -> None:
    assert any_identifier_holds_credential(["deploy:prod", "https://u:pw@host/x"])
    assert any_identifier_holds_credential(["ok", GITHUB_TOKEN])
    # `BEARER` ending one part and a token beginning the next is no `Bearer <token>`.
    assert not any_identifier_holds_credential(["step BEARER", "abcdefgh12345"])
    assert not any_identifier_holds_credential(["runner:1:build:failure", "prod"])


# --- credentials as keys, AWS secret access keys, JWTs in other base64url forms -----------------

AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#: `{ "alg": "HS256", "typ": "JWT" }` (spaces inside the braces): the header starts `eyAi`.
SPACED_JWT = (
    "eyAiYWxnIjogIkhTMjU2IiwgInR5cCI6ICJKV1QiIH0"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIn0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
#: `{\n  "alg": "none"\n}` (pretty-printed): the header starts `ewog`; unsigned (no signature).
PRETTY_JWT = "ewogICJhbGciOiAibm9uZSIKfQ.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
#: The compact header with its `=` padding kept on every part.
PADDED_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0=.c2lnbmF0dXJl"


def test_a_credential_used_as_a_key_is_redacted_in_the_key() -> None:
    value = {"labels": {GITHUB_TOKEN: "team-a", "env": "prod"}, "AKIAIOSFODNN7EXAMPLE": 1}
    assert redact(value) == {"labels": {REDACTED: "team-a", "env": "prod"}, REDACTED: 1}
    assert may_contain_secrets(canonical_json(value))


def test_keys_that_redact_to_the_same_text_are_all_kept() -> None:
    value = {GITHUB_TOKEN: 1, AWS_KEY_ID: 2, REDACTED: 3}
    result = redact(value)
    assert result == {f"{REDACTED} (2)": 1, f"{REDACTED} (3)": 2, REDACTED: 3}
    assert redact(result) == result


def test_a_key_that_names_a_secret_is_kept_and_only_its_value_goes() -> None:
    assert redact({"githubToken": GITHUB_TOKEN}) == {"githubToken": REDACTED}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{AWS_KEY_ID} {AWS_SECRET}", f"{REDACTED} {REDACTED}"),
        (
            f"aws_access_key_id={AWS_KEY_ID}\naws_secret_access_key={AWS_SECRET}\nregion=eu",
            f"aws_access_key_id={REDACTED}\naws_secret_access_key={REDACTED}\nregion=eu",
        ),
        (f'"SecretAccessKey": "{AWS_SECRET}"', f'"SecretAccessKey": "{REDACTED}"'),
        (f"the secret is {AWS_SECRET}.", f"the secret is {REDACTED}."),
        (f"token {SPACED_JWT} expired", f"token {REDACTED} expired"),
        (f"unsigned {PRETTY_JWT} here", f"unsigned {REDACTED} here"),
        (f"padded {PADDED_JWT}", f"padded {REDACTED}"),
    ],
)
def test_aws_secret_keys_and_jwts_of_every_form_are_redacted(text: str, expected: str) -> None:
    assert may_contain_secrets(text)
    assert redact_text(text) == expected
    assert identifier_holds_credential(text)


@pytest.mark.parametrize(
    "text",
    [
        # 40 base64 characters without an access key id or the word secret nearby.
        f"build {AWS_SECRET} done",
        # A commit sha (hex, one case) next to a secret word.
        "secret rotation at 4b28363aa29ea4c5f1e2d3c4b5a697887766aa11",
        # A base64 sha256 digest (padded) next to a secret word.
        "secret digest n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=",
        # Words that start like a JWT header but are no JWT.
        "ewok.and.friends",
        "eyAbc.def.ghi",
        "they went to Brewood.then.home",
    ],
)
def test_text_that_only_resembles_aws_secrets_or_jwts_is_kept(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    "opening", ["{", "{ ", "{  ", "{ \t", "{ \n", "{ \r\n", "{\n", "{\r\n", "{\t", "{\n\t"]
)
def test_a_jwt_is_redacted_whatever_whitespace_opens_its_header(opening: str) -> None:
    header = base64.urlsafe_b64encode(f'{opening}"alg": "HS256"}}'.encode()).decode().rstrip("=")
    token = f"{header}.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    assert may_contain_secrets(token)
    assert redact_text(f"id_token={token};") == f"id_token={REDACTED};"
    assert redact_text(f"seen {token} twice") == f"seen {REDACTED} twice"
