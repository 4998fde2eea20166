"""The console over plain HTTP (no JavaScript), on the real gateway, worker, PostgreSQL and
broker: sign-in into a signed session cookie, the list and its URL-borne filters and pages,
the detail, quick actions through the command path, CSRF refusals, tenant isolation, dev mode
and the live rows' stream."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from ingest_worker.service.console.session import COOKIE
from tests.console.conftest import (
    COMMAND_ID_FIELD,
    FILE_TOKEN,
    TOKENS,
    ConsoleSide,
    browser_like,
    csrf_of,
    deploy,
    write_secrets,
)
from tests.support import eventually

pytestmark = pytest.mark.integration

ROW = re.compile(r'<tr id="row-([0-9a-f-]{36})"')


@pytest.fixture
async def acme(console_side: ConsoleSide) -> AsyncIterator[httpx.AsyncClient]:
    async with console_side.signed_in("acme") as client:
        yield client


def rows(html: str) -> list[str]:
    return ROW.findall(html)


async def test_a_signed_out_visitor_is_sent_to_sign_in(console_side: ConsoleSide) -> None:
    async with httpx.AsyncClient(base_url=console_side.url) as client:
        answer = await client.get("/?status=OPEN")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/sign-in?next=%2F%3Fstatus%3DOPEN"
        page = await client.get("/console/sign-in")
        assert page.status_code == 200
        assert '<label for="token">Access token</label>' in page.text


async def test_sign_in_sets_a_strict_http_only_secure_session_cookie(
    console_side: ConsoleSide,
) -> None:
    async with browser_like(console_side.url) as client:
        page = await client.get("/console/sign-in")
        answer = await client.post(
            "/console/sign-in",
            data={"csrf": csrf_of(page.text), "token": TOKENS["acme"], "next": "/?status=OPEN"},
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/?status=OPEN"
        cookie = answer.headers["set-cookie"].lower()
        for flag in ("httponly", "samesite=strict", "secure", "path=/"):
            assert flag in cookie, cookie
        assert TOKENS["acme"].lower() not in cookie  # the token itself is never in the session


@pytest.mark.parametrize("token", ["not-a-token", TOKENS["acme-ingest"]])
async def test_sign_in_refuses_unknown_tokens_and_tokens_without_read(
    console_side: ConsoleSide, token: str
) -> None:
    async with browser_like(console_side.url) as client:
        page = await client.get("/console/sign-in")
        answer = await client.post(
            "/console/sign-in", data={"csrf": csrf_of(page.text), "token": token}
        )
        assert answer.status_code == 401
        assert "not valid" in answer.text
        assert (await client.get("/")).status_code == 303


async def test_the_list_shows_the_signed_in_tenant_only(console_side: ConsoleSide) -> None:
    acme_ids = {await console_side.incident_id("acme", d) for d in ("d-1", "d-2", "d-3")}
    globex_ids = {await console_side.incident_id("globex", d) for d in ("d-1", "d-2", "d-3")}
    for name, own, other in (("acme", acme_ids, globex_ids), ("globex", globex_ids, acme_ids)):
        async with console_side.signed_in(name) as client:
            page = await client.get("/")
            assert page.status_code == 200
            shown = set(rows(page.text))
            assert own <= shown and not shown & other
            for incident in other:  # another tenant's incident is not found
                detail = await client.get(f"/console/incidents/{incident}")
                assert detail.status_code == 404


async def test_filters_live_in_the_url_with_the_read_api_names(
    acme: httpx.AsyncClient, console_side: ConsoleSide
) -> None:
    yellow = await console_side.incident_id("acme", "d-3")
    page = await acme.get("/", params={"severity": "YELLOW", "env": "prod"})
    assert rows(page.text) == [yellow]
    assert 'name="severity" value="YELLOW" checked' in page.text
    assert 'name="env" value="prod"' in page.text
    staging = await acme.get("/", params={"env": "staging"})
    assert rows(staging.text) == [await console_side.incident_id("acme", "d-2")]
    bad = await acme.get("/", params={"since": "yesterday"})
    assert bad.status_code == 200 and "since: not an RFC 3339 time" in bad.text


async def test_keyset_pages_follow_the_next_link(acme: httpx.AsyncClient) -> None:
    first = await acme.get("/", params={"limit": "2"})
    assert len(rows(first.text)) == 2
    found = re.search(r'<a href="([^"]+)" rel="next">Next page</a>', first.text)
    assert found is not None
    link = found.group(1).replace("&amp;", "&")
    assert "cursor=" in link and "limit=2" in link
    second = await acme.get(link)
    assert len(rows(second.text)) >= 1
    assert not set(rows(first.text)) & set(rows(second.text))


async def test_reading_needs_no_javascript_and_the_page_runs_no_inline_script(
    acme: httpx.AsyncClient, console_side: ConsoleSide
) -> None:
    incident = await console_side.incident_id("acme", "d-1")
    for path in ("/", f"/console/incidents/{incident}", "/console/sign-in"):
        page = await acme.get(path)
        assert page.status_code == 200, (path, page.text[:3000])
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) is None
        assert re.search(r"\son[a-z]+\s*=", page.text) is None  # no inline event handlers
        assert "<time datetime=" in page.text or path == "/console/sign-in"


async def test_the_detail_shows_times_keys_evidence_and_a_verified_timeline(
    acme: httpx.AsyncClient, console_side: ConsoleSide
) -> None:
    incident = await console_side.incident_id("acme", "d-1")
    page = await acme.get(f"/console/incidents/{incident}")
    text = page.text
    assert page.status_code == 200
    assert "Hash chain verified" in text and "incident.created" in text
    for label in (
        "First seen",
        "Time to acknowledge (MTTA)",
        "Correlation keys",
        "Evidence",
        "Previous episode" if 'rel="prev"' in text else "No previous episode",
    ):
        assert label in text
    assert 'class="badge status-' in text and 'class="badge severity-red"' in text
    assert "deploy_status:prod:d-1" in text


async def action(client: httpx.AsyncClient, incident: str, **fields: str) -> httpx.Response:
    page = await client.get(f"/console/incidents/{incident}")
    command_id = COMMAND_ID_FIELD.search(page.text)
    assert command_id is not None
    data = {"csrf": csrf_of(page.text), "commandId": command_id.group(1), **fields}
    return await client.post(f"/console/incidents/{incident}/actions", data=data)


async def test_a_quick_action_goes_through_the_command_path(
    acme: httpx.AsyncClient, console_side: ConsoleSide
) -> None:
    incident = await console_side.incident_id("acme", "d-2")
    answer = await action(acme, incident, type="acknowledge")
    assert answer.status_code == 200
    assert "Acknowledge: applied" in answer.text and "status ACKNOWLEDGED" in answer.text
    assert await console_side.status_of(incident) == "ACKNOWLEDGED"
    actor = await console_side.admin.fetchval(
        "SELECT payload->'cause'->'actor'->>'id' FROM incident_events "
        "WHERE incident_id = $1::uuid AND type = 'incident.acknowledged'", incident,
    )  # fmt: skip
    assert actor == "acme-bot"  # the token's actor, never the form's


async def test_a_rejection_is_shown_with_its_reason(
    acme: httpx.AsyncClient, console_side: ConsoleSide
) -> None:
    incident = await console_side.incident_id("acme", "d-1")
    before = await console_side.status_of(incident)
    answer = await action(acme, incident, type="resolve", rationale="")
    assert answer.status_code == 200
    assert "Resolve rejected (rationale_required)" in answer.text
    assert await console_side.status_of(incident) == before


async def test_a_read_only_sign_in_cannot_act(console_side: ConsoleSide) -> None:
    incident = await console_side.incident_id("acme", "d-3")
    async with console_side.signed_in("acme-read") as client:
        page = await client.get(f"/console/incidents/{incident}")
        assert "can read but not act" in page.text
        answer = await client.post(
            f"/console/incidents/{incident}/actions",
            data={"csrf": csrf_of(page.text), "commandId": "console-" + "0" * 32,
                  "type": "acknowledge"},
        )  # fmt: skip
        assert answer.status_code == 403 and "command scope" in answer.text
    assert await console_side.status_of(incident) == "OPEN"


@pytest.mark.parametrize("csrf", [None, "forged-token-forged-token-forged-token"])
async def test_a_post_without_the_sessions_csrf_token_is_refused(
    acme: httpx.AsyncClient, console_side: ConsoleSide, csrf: str | None
) -> None:
    incident = await console_side.incident_id("acme", "d-3")
    data = {"commandId": "console-" + "1" * 32, "type": "acknowledge"}
    if csrf is not None:
        data["csrf"] = csrf
    answer = await acme.post(f"/console/incidents/{incident}/actions", data=data)
    assert answer.status_code == 403 and "CSRF" in answer.text
    assert await console_side.status_of(incident) == "OPEN"
    async with httpx.AsyncClient(base_url=console_side.url) as fresh:  # no session at all
        refused = await fresh.post(
            "/console/sign-in", data={"csrf": csrf or "x", "token": TOKENS["acme"]}
        )
        assert refused.status_code == 403


async def test_dev_mode_is_open_with_a_tenant_control_kept_in_the_url(
    console_side: ConsoleSide,
) -> None:
    globex = await console_side.incident_id("globex", "d-3")
    acme = await console_side.incident_id("acme", "d-3")
    async with httpx.AsyncClient(base_url=console_side.dev_url, timeout=30) as client:
        page = await client.get("/", params={"tenant": "globex", "severity": "YELLOW"})
        assert page.status_code == 200
        assert '<label for="tenant-picker">Tenant</label>' in page.text
        assert rows(page.text) == [globex]
        assert f'href="/console/incidents/{globex}?tenant=globex"' in page.text
        assert "secure" not in page.headers["set-cookie"].lower()
        assert (await client.get(f"/console/incidents/{acme}?tenant=globex")).status_code == 404
        detail = await client.get(f"/console/incidents/{globex}?tenant=globex")
        command_id = COMMAND_ID_FIELD.search(detail.text)
        assert command_id is not None
        answer = await client.post(
            f"/console/incidents/{globex}/actions?tenant=globex",
            data={"csrf": csrf_of(detail.text), "commandId": command_id.group(1),
                  "type": "change_severity", "severity": "RED", "rationale": "customer impact"},
        )  # fmt: skip
        assert "Change severity: applied" in answer.text
    actor = await console_side.admin.fetchval(
        "SELECT payload->'cause'->'actor' FROM incident_events "
        "WHERE incident_id = $1::uuid AND type = 'incident.severity_changed'", globex,
    )  # fmt: skip
    assert '"console"' in actor and "SRE_LEAD" in actor


async def test_the_live_stream_sends_rendered_rows_of_matching_incidents(
    acme: httpx.AsyncClient, console_side: ConsoleSide
) -> None:
    async with acme.stream("GET", "/console/stream", params={"env": "live"}) as stream:
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        assert await anext(lines) == ": open"
        await console_side.signal("globex", deploy("d-live-g", env="live", minute=8))
        await console_side.signal("acme", deploy("d-live", env="live", minute=9))
        incident = None
        async with asyncio.timeout(30):
            async for line in lines:
                if line.startswith('data: <tr id="row-') and "data-gone" not in line:
                    incident = line.split('"row-')[1].split('"')[0]
                    break
        assert incident == await console_side.incident_id("acme", "d-live")


async def test_vendored_scripts_and_their_licences_are_served(acme: httpx.AsyncClient) -> None:
    for name in ("vendor/htmx-2.0.11.min.js", "vendor/htmx-ext-sse-2.2.4.min.js",
                 "vendor/htmx.LICENSE", "vendor/htmx-ext-sse.LICENSE", "console.js",
                 "console.css"):  # fmt: skip
        answer = await acme.get(f"/console/static/{name}")
        assert answer.status_code == 200 and answer.content, name
    assert (await acme.get("/console/static/../settings.py")).status_code == 404


async def test_a_tampered_session_cookie_is_no_session(console_side: ConsoleSide) -> None:
    async with console_side.signed_in("acme") as client:
        cookie = next(c.value for c in client.cookies.jar if c.name == COOKIE and not c.secure)
        assert cookie
        client.cookies.set(COOKIE, cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"))
        assert (await client.get("/")).status_code == 303
        stream = await client.get("/console/stream")
        assert stream.status_code == 401


async def test_sign_out_ends_the_session(console_side: ConsoleSide) -> None:
    async with console_side.signed_in("acme") as client:
        page = await client.get("/")
        answer = await client.post("/console/sign-out", data={"csrf": csrf_of(page.text)})
        assert answer.status_code == 303
        assert (await client.get("/")).status_code == 303


async def test_a_form_that_is_not_url_encoded_is_refused(acme: httpx.AsyncClient) -> None:
    answer = await acme.post("/console/sign-out", json={"csrf": "x"})
    assert answer.status_code == 415
    big = await acme.post("/console/sign-out", data={"csrf": "x" * 20_000})
    assert big.status_code == 413


async def test_a_tampered_timeline_is_marked_as_not_verifying(
    acme: httpx.AsyncClient, console_side: ConsoleSide
) -> None:
    incident = await console_side.new_incident("acme", "h-tamper", minute=40)
    assert "Hash chain verified" in (await acme.get(f"/console/incidents/{incident}")).text
    async with console_side.admin.acquire() as conn, conn.transaction():
        # Past the append-only trigger, as someone with the database's keys could.
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "UPDATE incident_events SET payload = jsonb_set(payload, '{title}', '\"edited\"') "
            "WHERE incident_id = $1::uuid AND seq = 1", incident,
        )  # fmt: skip
    page = await acme.get(f"/console/incidents/{incident}")
    assert "The hash chain does not verify" in page.text
    assert "does not match the recomputed" in page.text


async def first_row(lines: AsyncIterator[str]) -> tuple[str | None, str]:
    """The position and incident of the next row sent."""
    position = None
    async with asyncio.timeout(30):
        async for line in lines:
            if line.startswith("id: "):
                position = line[4:]
            elif line.startswith('data: <tr id="row-') and "data-gone" not in line:
                return position, line.split('"row-')[1].split('"')[0]
    raise AssertionError("the stream ended")


async def test_a_dropped_stream_resumes_with_what_it_missed(
    acme: httpx.AsyncClient, console_side: ConsoleSide
) -> None:
    params = {"env": "resume"}
    async with acme.stream("GET", "/console/stream", params=params) as stream:
        lines = stream.aiter_lines()
        assert await anext(lines) == ": open"
        await console_side.signal("acme", deploy("d-resume-1", env="resume", minute=11))
        position, incident = await first_row(lines)
        assert incident == await console_side.incident_id("acme", "d-resume-1")
        assert position is not None
    # Dropped. Another page, open meanwhile, sees the next incident arrive live ...
    async with acme.stream("GET", "/console/stream", params=params) as other:
        lines = other.aiter_lines()
        assert await anext(lines) == ": open"
        await console_side.signal("acme", deploy("d-resume-2", env="resume", minute=12))
        _, missed = await first_row(lines)
    assert missed == await console_side.incident_id("acme", "d-resume-2")
    # ... and the dropped one, back with Last-Event-ID, gets it from the store.
    headers = {"Last-Event-ID": position}
    async with acme.stream("GET", "/console/stream", params=params, headers=headers) as back:
        lines = back.aiter_lines()
        assert await anext(lines) == ": open"
        _, replayed = await first_row(lines)
        assert replayed == missed


async def test_removing_a_token_ends_its_sessions(console_side: ConsoleSide) -> None:
    async with console_side.signed_in(FILE_TOKEN) as client:
        assert (await client.get("/")).status_code == 200
        write_secrets(console_side.secrets_file, with_file_token=False)
        try:

            async def signed_out() -> bool:  # the gateway re-reads the file within a second
                return (await client.get("/")).status_code == 303

            await eventually(signed_out, what="the session ended with its token")
        finally:
            write_secrets(console_side.secrets_file, with_file_token=True)
