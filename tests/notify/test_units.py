"""Pure parts of the notifier: the subscriptions file, filters, signatures, formats, offsets,
the destination policy and Retry-After."""

from __future__ import annotations

import base64
import ipaddress
import json
from pathlib import Path

import pytest

from ingest_worker.notify.destinations import DestinationPolicy, DestinationRefused
from ingest_worker.notify.dispatch import RetryPolicy
from ingest_worker.notify.formats import decode_event, render
from ingest_worker.notify.offsets import OffsetBook, PartitionOffsets
from ingest_worker.notify.sender import retry_after_seconds
from ingest_worker.notify.signing import SigningError, secret_key, signed_headers
from ingest_worker.notify.subscriptions import (
    EventFacts,
    SubscriptionsError,
    load_subscriptions,
    matches,
    parse_subscriptions,
)
from tests.notify.events import SECRET_A, SECRET_B, event_record
from tests.notify.standard_webhooks import VerificationFailed, verify

FULL = {
    "subscriptions": [
        {
            "id": "ops-slack",
            "tenant": "default",
            "url": "https://hooks.example.com/services/T/B/x",
            "format": "slack",
            "secrets": [SECRET_A],
            "filter": {
                "types": ["incident.created", "incident.resolved"],
                "minSeverity": "RED",
                "sources": ["alertmanager"],
                "env": ["prod"],
            },
            "maxAgeSeconds": 3600,
        },
        {"id": "audit", "url": "https://audit.example.com/in", "format": "generic"},
    ]
}


def test_the_documented_file_parses_and_defaults_apply() -> None:
    first, second = parse_subscriptions(FULL)
    assert first.filter.min_severity == "RED" and first.max_age_seconds == 3600
    assert second.tenant == "default" and second.max_age_seconds == 86400
    assert second.filter.types == () and second.secrets == ()


def test_a_yaml_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "subs.yaml"
    path.write_text(
        "subscriptions:\n  - id: a\n    url: https://a.example.com/\n    format: cloudevents\n"
    )
    (sub,) = load_subscriptions(path)
    assert sub.format == "cloudevents"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"subscriptions": [{"id": "a", "url": "https://x.example"}]}', "subscriptions.0.format"),
        (
            '{"subscriptions": [{"id": "a", "url": "ftp://x", "format": "generic"}]}',
            "subscriptions.0.url",
        ),
        (
            '{"subscriptions": [{"id": "a", "url": "https://x.example", "format": "xml"}]}',
            "subscriptions.0.format",
        ),
        (
            '{"subscriptions": [{"id": "a", "url": "https://x.example", "format": "slack", "secrets": ["nope"]}]}',
            "whsec_",
        ),
        (
            '{"subscriptions": [{"id": "a", "url": "https://x.example", "format": "slack", "filter": {"minSeverity": "PURPLE"}}]}',
            "minSeverity",
        ),
        (
            '{"subscriptions": [{"id": "a", "url": "https://x.example", "format": "slack", "colour": 1}]}',
            "colour",
        ),
        (
            '{"subscriptions": [{"id": "a", "url": "https://x.example", "format": "slack"}, {"id": "a", "url": "https://y.example", "format": "slack"}]}',
            "appears twice",
        ),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_the_problem(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "subs.json"
    path.write_text(content)
    with pytest.raises(SubscriptionsError) as caught:
        load_subscriptions(path)
    message = str(caught.value)
    assert str(path) in message and problem in message and "\n" not in message


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SubscriptionsError, match="cannot read"):
        load_subscriptions(tmp_path / "absent.json")


def test_filters_compare_type_severity_after_the_event_source_env_and_tenant() -> None:
    ops, audit = parse_subscriptions(FULL)
    red = EventFacts("incident.created", "default", "RED", "alertmanager", "prod")
    assert matches(ops, red) and matches(audit, red)
    assert not matches(
        ops, EventFacts("incident.updated", "default", "RED", "alertmanager", "prod")
    )
    assert not matches(
        ops, EventFacts("incident.created", "default", "YELLOW", "alertmanager", "prod")
    )
    assert not matches(ops, EventFacts("incident.created", "default", "RED", "datadog", "prod"))
    assert not matches(ops, EventFacts("incident.created", "default", "RED", "alertmanager", "dev"))
    assert not matches(audit, EventFacts("incident.created", "acme", "RED", "alertmanager", "prod"))


def test_signatures_match_the_specification_example() -> None:
    """The published example: secret, id, timestamp, payload and the expected signature."""
    key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    headers = signed_headers(
        [key], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_during_rotation_either_secret_verifies_and_a_third_does_not() -> None:
    body = b'{"a":1}'
    headers = signed_headers([secret_key(SECRET_A), secret_key(SECRET_B)], "evt-1", _now(), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    verify(SECRET_A, headers, body)
    verify(SECRET_B, headers, body)
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(VerificationFailed):
        verify(other, headers, body)
    with pytest.raises(VerificationFailed):
        verify(SECRET_A, headers, body + b" ")


@pytest.mark.parametrize(
    "secret", ["abc", "whsec_***", "whsec_" + base64.b64encode(b"short").decode()]
)
def test_unusable_secrets_are_refused(secret: str) -> None:
    with pytest.raises(SigningError):
        secret_key(secret)


def _now() -> int:
    import time

    return int(time.time())


def test_generic_format_carries_event_and_snapshot() -> None:
    event = decode_event(*event_record("inc-1", 2, "incident.acknowledged", tenant="acme"))
    body, content_type = render(event, "generic", None)
    document = json.loads(body)
    assert content_type == "application/json"
    assert set(document) == {"id", "type", "time", "tenant", "event", "incident"}
    assert document["tenant"] == "acme" and document["type"] == "incident.acknowledged"
    assert document["event"] == event.body and document["incident"] == event.body["snapshot"]


def test_tenant_defaults_to_default_without_a_header() -> None:
    event = decode_event(*event_record("inc-1", 1, "incident.created"))
    assert event.tenant == "default"


def test_cloudevents_format_is_structured_mode() -> None:
    event = decode_event(*event_record("inc-1", 1, "incident.created"))
    body, content_type = render(event, "cloudevents", None)
    document = json.loads(body)
    assert content_type == "application/cloudevents+json"
    assert document["specversion"] == "1.0" and document["id"] == event.id
    assert document["type"] == "incident.created" and document["source"] == "ingest-worker"
    assert document["datacontenttype"] == "application/json" and document["data"] == event.body


def test_slack_format_has_title_severity_status_and_console_link() -> None:
    event = decode_event(*event_record("inc-1", 1, "incident.created", title="DB <down> & out"))
    document = json.loads(render(event, "slack", "https://console.example.com/")[0])
    text = document["text"]
    assert "DB &lt;down&gt; &amp; out" in text and "RED" in text and "OPEN" in text
    assert "<https://console.example.com/incidents/inc-1|open in console>" in text
    button = document["blocks"][-1]["elements"][0]
    assert button["url"] == "https://console.example.com/incidents/inc-1"
    plain = json.loads(render(event, "slack", None)[0])
    assert "console" not in plain["text"] and all(b["type"] != "actions" for b in plain["blocks"])


def test_committable_offset_is_the_lowest_not_done() -> None:
    book = PartitionOffsets()
    book.read(10, 2)
    book.read(11, 0)
    book.read(12, 1)
    assert book.committable() == 10
    book.done(12)
    book.done(10)
    assert book.committable() == 10  # one subscription still owes offset 10
    book.done(10)
    assert book.committable() == 13


def test_a_revoked_partition_ignores_late_acknowledgements() -> None:
    book = OffsetBook()
    generation = book.read("t", 0, 5, 1)
    book.revoke("t", 0)
    assert not book.owned("t", 0, generation)
    book.done("t", 0, 5, generation)
    assert book.to_commit() == {}
    fresh = book.read("t", 0, 5, 1)
    assert fresh != generation and book.to_commit() == {("t", 0): 5}


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("10.1.2.3", False),
        ("192.168.0.1", False),
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("::1", False),
        ("fe80::1", False),
        ("::ffff:10.0.0.1", False),
        ("0.0.0.0", False),
    ],
)
def test_non_global_destinations_are_refused_by_default(address: str, allowed: bool) -> None:
    policy = DestinationPolicy.from_config([], allow_loopback=False)
    assert policy.permits(ipaddress.ip_address(address)) is allowed


def test_configured_networks_and_dev_loopback_are_allowed() -> None:
    policy = DestinationPolicy.from_config(["10.0.0.0/8"], allow_loopback=True)
    assert policy.permits(ipaddress.ip_address("10.9.9.9"))
    assert policy.permits(ipaddress.ip_address("127.0.0.1"))
    assert not policy.permits(ipaddress.ip_address("192.168.1.1"))


async def test_a_literal_private_address_is_refused_before_connecting() -> None:
    policy = DestinationPolicy.from_config([], allow_loopback=False)
    with pytest.raises(DestinationRefused):
        await policy.resolve("169.254.169.254", 80)
    with pytest.raises(DestinationRefused):
        await policy.resolve("localhost", 80)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
    assert retry_after_seconds("999999") == 3600.0


def test_backoff_doubles_is_capped_and_jittered() -> None:
    policy = RetryPolicy(initial=1.0, cap=8.0, queue_size=10, lanes=1, pause_seconds=1)
    delays = [policy.delay(n) for n in range(1, 8)]
    assert 0.5 <= delays[0] <= 1.0 and 2.0 <= delays[2] <= 4.0
    assert all(d <= 8.0 for d in delays) and delays[-1] >= 4.0
    assert len({policy.delay(3) for _ in range(20)}) > 1


def test_the_documented_verification_snippet_verifies_our_signatures() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "notifications.md").read_text()
    snippet = docs.split("Verifying, in Python")[1].split("```python\n")[1].split("```")[0]
    namespace: dict[str, object] = {}
    exec(snippet, namespace)  # noqa: S102 - the documentation's own code
    doc_verify = namespace["verify"]
    body = b'{"id":"evt-9"}'
    headers = signed_headers([secret_key(SECRET_A), secret_key(SECRET_B)], "evt-9", _now(), body)
    assert doc_verify(SECRET_A, headers, body) and doc_verify(SECRET_B, headers, body)  # type: ignore[operator]
    assert not doc_verify(SECRET_A, headers, body + b"x")  # type: ignore[operator]


async def test_a_checked_name_is_reused_for_a_while_and_a_refusal_is_never_cached() -> None:
    policy = DestinationPolicy.from_config([], allow_loopback=True)
    first = await policy.resolve("localhost", 80)
    assert first.is_loopback
    assert ("localhost", 80) in policy._cache
    assert await policy.resolve("localhost", 80) == first
    strict = DestinationPolicy.from_config([], allow_loopback=False)
    for _ in range(2):
        with pytest.raises(DestinationRefused):
            await strict.resolve("localhost", 80)
    assert strict._cache == {}
